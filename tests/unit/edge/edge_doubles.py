"""Test doubles for the edge pipeline: colour-keyed detectors over synthetic scenes.

They implement the real `Detector` protocol (names, input_size, provider, detect,
detect_batch) by finding flat colour regions, so the cascade's crop / offset / batching
arithmetic is exercised for real: a detector double that returned fixed boxes could not
catch a wrong crop offset, this one does. Scenes are drawn with `draw_scene`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np

from edge.types import Detections, Frame

# BGR colours of each class in synthetic scenes
CAR = (200, 40, 40)
WINDSHIELD = (200, 200, 40)
DRIVER = (40, 180, 40)
PASSENGER = (40, 180, 180)
SEATBELT = (40, 40, 220)
PHONE = (200, 40, 200)
FACE = (120, 160, 230)
BACKGROUND = (90, 90, 90)
PLATE_GRAYS = {250: "皖A12345", 230: "皖B67890", 210: "沪AD12345", 190: "京C54321"}

VEHICLE_NAMES = {0: "car", 1: "bus", 2: "truck", 3: "van", 4: "two_wheeler", 5: "windshield"}
OCCUPANT_NAMES = {0: "driver", 1: "passenger", 2: "seatbelt", 3: "phone", 4: "face"}
PLATE_NAMES = {0: "plate"}


def _components(mask: np.ndarray, min_area: int) -> list[tuple[int, int, int, int]]:
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    out = []
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        if area >= min_area:
            out.append((int(x), int(y), int(x + w), int(y + h)))
    return out


@dataclass
class ColorDetector:
    """Detector double: class k = pixels within `tol` of colours[k]."""

    names: dict[int, str]
    colors: dict[int, tuple[int, int, int]]
    input_size: tuple[int, int] = (640, 640)
    provider: str = "CPUExecutionProvider"
    tol: int = 30
    min_area: int = 12
    confidence: dict[int, float] = field(default_factory=dict)
    calls: int = 0
    images_seen: int = 0

    def detect(self, image: np.ndarray) -> Detections:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        self.calls += 1
        self.images_seen += len(images)
        out = []
        for img in images:
            boxes, confs, cls = [], [], []
            for k, col in self.colors.items():
                lo = np.clip(np.array(col) - self.tol, 0, 255).astype(np.uint8)
                hi = np.clip(np.array(col) + self.tol, 0, 255).astype(np.uint8)
                for b in _components(cv2.inRange(img, lo, hi) > 0, self.min_area):
                    boxes.append(b)
                    confs.append(self.confidence.get(k, 0.9))
                    cls.append(k)
            out.append(Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(confs, np.float32),
                                  np.array(cls, np.int64)))
        return out


@dataclass
class GrayPlateDetector:
    """Plates = flat gray (B == G == R >= 180) regions."""

    names: dict[int, str] = field(default_factory=lambda: dict(PLATE_NAMES))
    input_size: tuple[int, int] = (320, 320)
    provider: str = "CPUExecutionProvider"
    calls: int = 0

    def detect(self, image: np.ndarray) -> Detections:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        self.calls += 1
        out = []
        for img in images:
            i16 = img.astype(np.int16)
            mask = ((np.abs(i16[..., 0] - i16[..., 1]) < 6) & (np.abs(i16[..., 1] - i16[..., 2]) < 6)
                    & (i16[..., 0] >= 180))
            boxes = _components(mask, 20)
            out.append(Detections(np.array(boxes, np.float32).reshape(-1, 4),
                                  np.full(len(boxes), 0.9, np.float32), np.zeros(len(boxes), np.int64)))
        return out


@dataclass(frozen=True)
class FakeRead:
    text: str
    char_confidences: tuple[float, ...]
    confidence: float


@dataclass
class GrayPlateReader:
    """Reads the plate text encoded by the plate's gray level; `garble` corrupts some reads."""

    garble: dict[int, int] = field(default_factory=dict)  # call number -> char position to corrupt
    calls: int = 0

    def read_batch(self, crops: list[np.ndarray]) -> list[FakeRead]:
        out = []
        for c in crops:
            self.calls += 1
            h, w = c.shape[:2]
            g = int(np.median(c[h // 3: 2 * h // 3 + 1, w // 3: 2 * w // 3 + 1, 1]))
            level = min(PLATE_GRAYS, key=lambda v: abs(v - g))
            text = PLATE_GRAYS[level]
            confs = [0.95] * len(text)
            pos = self.garble.get(self.calls)
            if pos is not None:
                text = text[:pos] + ("8" if text[pos] != "8" else "9") + text[pos + 1:]
                confs[pos] = 0.4
            out.append(FakeRead(text, tuple(confs), float(np.prod(confs))))
        return out


def vehicles_detector() -> ColorDetector:
    return ColorDetector(VEHICLE_NAMES, {0: CAR, 5: WINDSHIELD}, (640, 640))


def occupants_detector() -> ColorDetector:
    return ColorDetector(OCCUPANT_NAMES, {0: DRIVER, 1: PASSENGER, 2: SEATBELT, 3: PHONE, 4: FACE}, (320, 320),
                         min_area=6)


@dataclass
class CarSpec:
    x: float  # left edge at frame 0 (full-res px)
    y: float
    w: float = 420
    h: float = 300
    vx: float = 0.0  # px per frame
    vy: float = 0.0
    belt: bool = True
    phone: bool = False
    passenger: bool = True
    plate_gray: int = 250


def draw_scene(size: tuple[int, int], cars: list[CarSpec], t: int) -> np.ndarray:
    """One frame (w, h) with every car at time t; returns BGR uint8."""
    w, h = size
    img = np.full((h, w, 3), BACKGROUND, np.uint8)
    for c in cars:
        x1, y1 = round(c.x + c.vx * t), round(c.y + c.vy * t)
        x2, y2 = x1 + round(c.w), y1 + round(c.h)
        if x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h:
            continue
        cv2.rectangle(img, (x1, y1), (x2, y2), CAR, -1)
        # windshield: upper 45 %, inset 10 %
        wx1, wy1 = x1 + round(0.1 * c.w), y1 + round(0.08 * c.h)
        wx2, wy2 = x2 - round(0.1 * c.w), y1 + round(0.5 * c.h)
        cv2.rectangle(img, (wx1, wy1), (wx2, wy2), WINDSHIELD, -1)
        ww, wh = wx2 - wx1, wy2 - wy1
        # driver on the image-right half, passenger on the left
        dx1, dy1 = wx1 + round(0.58 * ww), wy1 + round(0.15 * wh)
        dx2, dy2 = wx1 + round(0.9 * ww), wy2 - round(0.05 * wh)
        cv2.rectangle(img, (dx1, dy1), (dx2, dy2), DRIVER, -1)
        if c.belt:
            bw, bh = dx2 - dx1, dy2 - dy1
            cv2.rectangle(img, (dx1 + round(0.3 * bw), dy1 + round(0.35 * bh)),
                          (dx1 + round(0.55 * bw), dy1 + round(0.85 * bh)), SEATBELT, -1)
        if c.phone:
            bw, bh = dx2 - dx1, dy2 - dy1
            cv2.rectangle(img, (dx1 + round(0.05 * bw), dy1 + round(0.1 * bh)),
                          (dx1 + round(0.2 * bw), dy1 + round(0.3 * bh)), PHONE, -1)
        if c.passenger:
            px1, py1 = wx1 + round(0.1 * ww), wy1 + round(0.15 * wh)
            px2, py2 = wx1 + round(0.42 * ww), wy2 - round(0.05 * wh)
            cv2.rectangle(img, (px1, py1), (px2, py2), PASSENGER, -1)
            fw = px2 - px1
            cv2.rectangle(img, (px1 + fw // 4, py1 + 2), (px2 - fw // 4, py1 + fw // 2), FACE, -1)
        # plate: bottom centre
        pw, ph = round(0.3 * c.w), round(0.09 * c.h)
        pcx = (x1 + x2) // 2
        cv2.rectangle(img, (pcx - pw // 2, y2 - round(0.2 * c.h)), (pcx + pw // 2, y2 - round(0.2 * c.h) + ph),
                      (c.plate_gray,) * 3, -1)
    return img


def scene_frames(cars: list[CarSpec], n: int, size: tuple[int, int] = (1920, 1080), camera_id: str = "cam1",
                 fps: float = 5.0, start: datetime | None = None) -> list[Frame]:
    t0 = start or datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    return [Frame(camera_id, i, i / fps, t0 + timedelta(seconds=i / fps), draw_scene(size, cars, i))
            for i in range(n)]


def write_clip(path: str, cars: list[CarSpec], n: int, size: tuple[int, int] = (640, 360),
               fps: float = 25.0) -> None:
    """An H.264-free little clip (mp4v) for source tests: frame index drawn as a bar."""
    wr = cv2.VideoWriter(path, cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    assert wr.isOpened(), f"cannot write {path}"
    for i in range(n):
        img = draw_scene(size, cars, i)
        cv2.putText(img, str(i), (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 2)
        wr.write(img)
    wr.release()
