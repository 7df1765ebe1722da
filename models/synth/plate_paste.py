"""Plates pasted onto real photographs: real clutter around real plate pixels.

With real plate pixels pasted onto rendered vehicles the detector still found only 28% of the
real CCPD plates at its threshold, and 44% of them even in a window a few plates wide around
each plate: it had learned the renders' clean vehicles as the plate's context and missed clear
plates on real cars. Here plates (real crops from the trainable part of `plates-cn-crops`, or
rendered plates of every kind) are warped in perspective, lit to the photo and pasted onto
windows of real photographs whose licences allow training and which hold no labelled Chinese
plates; the photos' own signs, grilles and text are real hard negatives.

Background sources, relative to the datasets root (the eval-only sets are never read):
- vehicles-cctv, the trainable 70% of `valid/images` (CC BY 4.0; the vehicle detector's split),
- occupants-seatbelt-incabin `valid/images`, `test/images` (CC BY 4.0),
- every 12th frame of the clips in `videos/` (MIT).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.synth.foreign_plates import render_foreign_plate
from models.synth.plates import jpeg, motion_blur, random_plate_text, render_plate_rgba
from models.synth.real_plates import RealPlates
from models.synth.real_plates import pick as pick_real_plate

Box = tuple[float, float, float, float]
CCTV_HOLDOUT = 0.3  # models/configs/vehicles.yaml: the held-back share of vehicles-cctv
VIDEO_EVERY = 12
MAX_BG_SIDE = 1024


def _pts(v: object) -> np.ndarray:
    return np.array(v, np.float32)


@dataclass(frozen=True)
class PasteBackgrounds:
    """Where the real photographs are (a datasets root) and the share of samples pasted onto them."""

    root: str
    share: float = 0.3
    foreign_share: float = 0.0  # of the pasted plates that are not real crops: EU / US style ones

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"paste share must be within 0..1, got {self.share}")
        if not 0.0 <= self.foreign_share <= 1.0:
            raise ValueError(f"foreign plate share must be within 0..1, got {self.foreign_share}")


def background_sources(root: Path) -> list[Path]:
    """Every background photo or clip under `root`, in a fixed order."""
    from models.train.data import holdout_of, list_images

    out: list[Path] = []
    cctv = root / "vehicles-cctv" / "valid" / "images"
    if cctv.is_dir():
        out += [p for p in list_images(cctv) if not holdout_of(p.name, CCTV_HOLDOUT)]
    for split in ("valid", "test"):
        d = root / "occupants-seatbelt-incabin" / split / "images"
        if d.is_dir():
            out += list_images(d)
    if (root / "videos").is_dir():
        out += sorted((root / "videos").glob("*.mp4"))
    return out


def _fit(img: np.ndarray) -> np.ndarray:
    s = MAX_BG_SIDE / max(img.shape[:2])
    return cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else img


def _read(path: Path) -> list[np.ndarray]:
    """The photo, or every VIDEO_EVERY-th frame of a clip."""
    if path.suffix == ".mp4":
        cap = cv2.VideoCapture(str(path))
        frames, k = [], 0
        while True:
            ok, f = cap.read()
            if not ok:
                break
            if k % VIDEO_EVERY == 0:
                frames.append(_fit(f))
            k += 1
        cap.release()
        if not frames:
            raise ValueError(f"cannot read any frame of background clip {path}")
        return frames
    img = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot read background photo {path}")
    return [_fit(img)]


_CACHE: dict[str, list[np.ndarray]] = {}


def backgrounds(spec: PasteBackgrounds) -> list[np.ndarray]:
    """The photos of `spec`, read once per process (render workers fork after the first call)."""
    if spec.root not in _CACHE:
        src = background_sources(Path(spec.root))
        if not src:
            raise ValueError(f"no background photos under {spec.root} (expected vehicles-cctv, "
                             "occupants-seatbelt-incabin or videos/ there)")
        _CACHE[spec.root] = [img for p in src for img in _read(p)]
    return _CACHE[spec.root]


def _plate_texture(rng: np.random.Generator, real: RealPlates | None,
                   foreign_share: float) -> tuple[np.ndarray, np.ndarray]:
    """(BGR, alpha) of one plate: a real crop when `real` is given (its share), else a rendered one
    (EU / US style for `foreign_share` of them, else Chinese)."""
    if real is not None:
        got = pick_real_plate(real, rng)
        if got is not None:
            return got[1], got[2]
    if foreign_share and rng.random() < foreign_share:  # no draw at 0: earlier seeds render the same
        return render_foreign_plate(rng, height_px=int(rng.integers(28, 80)))
    text, kind = random_plate_text(rng)  # kind drawn by KIND_WEIGHTS
    bgr, a = render_plate_rgba(text, kind, rng, height_px=int(rng.integers(28, 80)))
    # Wear and dirt: the rendered sheeting is cleaner than any plate on the road.
    bgr = np.clip(bgr.astype(np.float32) * rng.uniform(0.7, 1.05) + rng.normal(0, 6, bgr.shape), 0, 255)
    return bgr.astype(np.uint8), a


def _window(rng: np.random.Generator, bg: np.ndarray) -> np.ndarray:
    """A random window of the photo (a quarter to all of it), scaled to a 448-1024 px long side."""
    H, W = bg.shape[:2]
    area = rng.uniform(0.25, 1.0) * H * W
    aspect = rng.uniform(0.55, 1.8)
    w = int(min(W, np.sqrt(area * aspect)))
    h = int(min(H, area / max(w, 1)))
    x, y = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1))
    win = bg[y:y + h, x:x + w]
    s = rng.uniform(448, 1024) / max(win.shape[:2])
    return cv2.resize(win, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR if s > 1 else cv2.INTER_AREA)


def _paste_one(rng: np.random.Generator, img: np.ndarray, bgr: np.ndarray, alpha: np.ndarray,
               taken: list[Box]) -> Box | None:
    """Warp one plate onto `img` in place (with a mount frame sometimes); its box, or None if no room."""
    H, W = img.shape[:2]
    th_, tw_ = bgr.shape[:2]
    pw = float(np.exp(rng.uniform(np.log(0.05), np.log(0.5)))) * W
    ph = pw * th_ / tw_ * rng.uniform(0.85, 1.2)
    if ph > 0.6 * H or ph < 6:
        return None
    # Mount frame / bracket around some plates, behind the plate itself (not in its box).
    pad = float(rng.uniform(0.04, 0.14)) if rng.random() < 0.5 else 0.0
    src_plate = _pts([[0, 0], [tw_, 0], [tw_, th_], [0, th_]])
    for _ in range(10):
        x0, y0 = rng.uniform(0.02 * W, W - pw - 0.02 * W), rng.uniform(0.02 * H, H - ph - 0.02 * H)
        dst = _pts([[x0, y0], [x0 + pw, y0], [x0 + pw, y0 + ph], [x0, y0 + ph]])
        # Perspective: one side shorter (yaw), a shear (pitch / roll), a small rotation.
        yaw = rng.uniform(-0.15, 0.15) * ph
        side = 1 if yaw > 0 else 0
        dst[[side, 3 - side], 1] += _pts([abs(yaw) / 2, -abs(yaw) / 2])
        dst[:, 1] += np.float32(rng.uniform(-0.12, 0.12) * ph) * (dst[:, 0] - x0) / pw
        ang = np.deg2rad(rng.uniform(-8, 8))
        c = dst.mean(0)
        rot = _pts([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        dst = (dst - c) @ rot.T + c
        box = (float(dst[:, 0].min()), float(dst[:, 1].min()), float(dst[:, 0].max()), float(dst[:, 1].max()))
        if box[0] < 0 or box[1] < 0 or box[2] > W or box[3] > H:
            continue
        if any(not (box[2] < t[0] or box[0] > t[2] or box[3] < t[1] or box[1] > t[3]) for t in taken):
            continue
        break
    else:
        return None
    m = cv2.getPerspectiveTransform(src_plate, dst)
    if pad:
        e = pad * th_
        frame_src = _pts([[-e, -e], [tw_ + e, -e], [tw_ + e, th_ + e], [-e, th_ + e]])
        quad = cv2.perspectiveTransform(frame_src[None], m)[0]
        colour = float(rng.choice([rng.uniform(10, 70), rng.uniform(140, 210)]))
        cv2.fillConvexPoly(img, quad.round().astype(np.int32), (colour, colour, colour), cv2.LINE_AA)
    warped = cv2.warpPerspective(bgr, m, (W, H), flags=cv2.INTER_LINEAR)
    a = cv2.warpPerspective(alpha.astype(np.float32), m, (W, H), flags=cv2.INTER_LINEAR)
    a = cv2.GaussianBlur(a, (0, 0), float(rng.uniform(0.4, 1.0)))[..., None]
    # Light the plate like its surroundings: the photo's brightness there, a little colour cast.
    x0, y0, x1, y1 = (int(v) for v in box)
    local = img[y0:y1 + 1, x0:x1 + 1].reshape(-1, 3).mean(0) if x1 > x0 and y1 > y0 else np.full(3, 128.0)
    gain = np.clip(0.55 + 0.6 * local.mean() / 128.0, 0.45, 1.3) * rng.uniform(0.85, 1.15, 3)
    lit = np.clip(warped.astype(np.float32) * gain.astype(np.float32), 0, 255)
    img[:] = (lit * a + img.astype(np.float32) * (1 - a)).astype(np.uint8)
    return box


def paste_sample(seed: int, i: int, spec: PasteBackgrounds, real: RealPlates | None,
                 max_side: int = 1024) -> tuple[np.ndarray, list[tuple[int, Box]]]:
    """One image: 0-3 plates pasted onto a window of a real photo, with their boxes (class 0)."""
    rng = np.random.default_rng([seed, i, 31])
    pool = backgrounds(spec)
    img = _window(rng, pool[int(rng.integers(len(pool)))]).copy()
    n = int(rng.choice([0, 1, 2, 3], p=[0.1, 0.7, 0.15, 0.05]))
    boxes: list[Box] = []
    for _ in range(n):
        bgr, alpha = _plate_texture(rng, real, spec.foreign_share)
        box = _paste_one(rng, img, bgr, alpha, boxes)
        if box is not None:
            boxes.append(box)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 1.2)))
    if rng.random() < 0.15:
        img = motion_blur(img, float(rng.uniform(2, 6)), float(rng.uniform(-20, 20)))
    noise = rng.normal(0, rng.uniform(0, 6), img.shape)
    img = jpeg(np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8), int(rng.integers(45, 96)))
    s = max_side / max(img.shape[:2])
    if s < 1:
        img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        boxes = [(b[0] * s, b[1] * s, b[2] * s, b[3] * s) for b in boxes]
    return img, [(0, b) for b in boxes]
