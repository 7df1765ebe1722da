"""The detection cascade: vehicles on the downscaled frame -> full-resolution crops ->
plates and occupants on the crops -> plate reader, each stage batched across all vehicles
of all frames handed in together (one tick may carry frames of several cameras).

Class lists are the cross-team contract (CONTRACTS.md): vehicles {car, bus, truck, van,
two_wheeler, windshield}, plates {plate}, occupants {driver, passenger, seatbelt, phone,
face}. Names are looked up in each model's own metadata, never by hard-coded index.

Driver choice: China drives on the right, so for oncoming traffic the driver sits on the
IMAGE-RIGHT half of the windshield; `driver_side` makes that explicit per deployment.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from edge.detectors.base import Detector, Image
from edge.observations import OccupantObs, PlateObs
from edge.types import Detections, Frame, box_iou


class PlateReader(Protocol):
    def read_batch(self, crops: list[Image]) -> list[Any]:
        """-> one object per crop with .text, .char_confidences, .confidence."""
        ...


VEHICLE_CLASSES = ("car", "bus", "truck", "van", "two_wheeler")
FOUR_WHEELERS = ("car", "bus", "truck", "van")


@dataclass(frozen=True, slots=True)
class VehicleResult:
    box: np.ndarray
    confidence: float
    cls: str
    windshield_box: np.ndarray | None
    plate: PlateObs | None
    occupants: OccupantObs | None


@dataclass(frozen=True, slots=True)
class CropPlan:
    """Which full-resolution crops a vehicle gets this frame."""

    plate: bool = True
    occupants: bool = True


FULL = CropPlan()
SKIP = CropPlan(plate=False, occupants=False)


@dataclass(slots=True)
class FrameResult:
    frame: Frame
    vehicles: list[VehicleResult]

    def detections(self, class_index: dict[str, int]) -> Detections:
        if not self.vehicles:
            return Detections.empty()
        return Detections(
            xyxy=np.stack([v.box for v in self.vehicles]),
            confidence=np.array([v.confidence for v in self.vehicles], np.float32),
            class_id=np.array([class_index.get(v.cls, -1) for v in self.vehicles], np.int64),
        )


def _name_map(det: Detector) -> dict[str, int]:
    return {str(n): int(i) for i, n in det.names.items()}


def _clip_box(b: np.ndarray, w: int, h: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (float(v) for v in b)
    return (max(0, int(np.floor(x1))), max(0, int(np.floor(y1))),
            min(w, int(np.ceil(x2))), min(h, int(np.ceil(y2))))


def expand(b: np.ndarray, fx: float, fy: float | None = None) -> np.ndarray:
    fy = fx if fy is None else fy
    w, h = b[2] - b[0], b[3] - b[1]
    return np.array([b[0] - w * fx, b[1] - h * fy, b[2] + w * fx, b[3] + h * fy], np.float32)


def _inter_over(a: np.ndarray, b: np.ndarray) -> float:
    """|a ∩ b| / |a|."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    area = max((a[2] - a[0]) * (a[3] - a[1]), 1e-6)
    return float(max(iw, 0) * max(ih, 0) / area)


def _dynamic_hw(det: Any) -> bool:
    """True when the detector's ONNX input has symbolic height and width."""
    sess = getattr(det, "session", None)
    if sess is None:
        return False
    shape = sess.get_inputs()[0].shape
    return len(shape) == 4 and not isinstance(shape[2], int) and not isinstance(shape[3], int)


def suppress_duplicates(d: Detections, iou: float) -> Detections:
    """Class-agnostic greedy NMS. The NMS-free YOLO export picks its top boxes over (anchor,
    class) pairs, so one vehicle can come out twice (say "car" 0.8 and "van" 0.4, same box);
    the tracker would then follow it as two vehicles and split its frames between them."""
    if len(d) < 2:
        return d
    order = np.argsort(-d.confidence, kind="stable")
    ious = box_iou(d.xyxy[order], d.xyxy[order])
    keep: list[int] = []
    for i in range(len(order)):
        if all(ious[i, j] < iou for j in keep):
            keep.append(i)
    return d[np.sort(order[keep])]


def windshield_fit(ws: np.ndarray, veh: np.ndarray) -> float:
    """How well a windshield box belongs to a vehicle box: mostly inside it, horizontally
    centred, in its upper part (0 when under 60 % inside)."""
    inside = _inter_over(ws, veh)
    if inside < 0.6:
        return 0.0
    w, h = max(veh[2] - veh[0], 1e-3), max(veh[3] - veh[1], 1e-3)
    dx = abs((ws[0] + ws[2]) / 2 - (veh[0] + veh[2]) / 2) / w
    cy = ((ws[1] + ws[3]) / 2 - veh[1]) / h
    return float(inside * max(0.0, 1.0 - dx) * (1.0 if cy < 0.65 else 0.5))


def plate_fit(plate: np.ndarray, veh: np.ndarray) -> float:
    """A plate whose centre lies inside the vehicle box, lower part preferred (0 outside)."""
    cx, cy = (plate[0] + plate[2]) / 2, (plate[1] + plate[3]) / 2
    if not (veh[0] <= cx <= veh[2] and veh[1] <= cy <= veh[3]):
        return 0.0
    rel = (cy - veh[1]) / max(veh[3] - veh[1], 1e-3)
    return 1.0 if rel >= 0.4 else 0.5


@dataclass
class Cascade:
    vehicles: Detector
    occupants: Detector | None = None
    plates: Detector | None = None
    plate_reader: PlateReader | None = None
    vehicle_conf: float = 0.35  # vehicles below it are only tracked (ByteTrack's low stage), not cropped
    track_low_conf: float = 0.1
    plate_conf: float = 0.35
    occupant_conf: float = 0.25
    evidence_conf: float = 0.1
    driver_side: str = "right"
    min_vehicle_px: int = 64  # smaller vehicles are tracked but not cropped
    windshield_margin: float = 0.08  # occupants were trained on windshield crops with 2-15 % margin
    vehicle_margin: float = 0.05
    rect_vehicles: bool = True
    duplicate_iou: float = 0.7  # two vehicle (or windshield) boxes overlapping this much are one
    timer: Callable[[str, float], None] | None = None  # (stage, seconds) for metrics
    _vnames: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self._vnames = _name_map(self.vehicles)
        self._vehicle_size: tuple[int, int] = (int(self.vehicles.input_size[0]), int(self.vehicles.input_size[1]))
        self._vehicle_dynamic_hw = _dynamic_hw(self.vehicles)
        missing = {"windshield", *VEHICLE_CLASSES[:1]} - set(self._vnames)
        if missing:
            raise ValueError(f"vehicles model lacks classes {sorted(missing)} (has {sorted(self._vnames)})")
        self._onames = _name_map(self.occupants) if self.occupants is not None else {}
        if self.occupants is not None:
            need = {"driver", "passenger", "seatbelt", "phone"} - set(self._onames)
            if need:
                raise ValueError(f"occupants model lacks classes {sorted(need)} (has {sorted(self._onames)})")

    @property
    def vehicle_class_index(self) -> dict[str, int]:
        return self._vnames

    def _time(self, stage: str, t0: float) -> float:
        t1 = time.perf_counter()
        if self.timer is not None:
            self.timer(stage, t1 - t0)
        return t1

    # -- stages ---------------------------------------------------------------------------
    def detect_vehicles(self, frames: Sequence[Frame]) -> list[Detections]:
        """Downscale and detect; boxes back in full-resolution pixels.

        The frame is area-averaged by the largest INTEGER factor that keeps it at least the
        model's input size (OpenCV's fast path: ~40 ms instead of ~100 ms for 4096x2160 on
        one core); the detector's letterbox does the small remaining step (also INTER_AREA,
        as in training).
        """
        t0 = time.perf_counter()
        smalls, scales = [], []
        for f in frames:
            assert f.image is not None
            img = f.preview if f.preview is not None else self.preview(f.image)
            smalls.append(img)
            scales.append(img.shape[1] / f.image.shape[1])
        t0 = self._time("downscale", t0)
        # group by model input size: rectangular inputs where the model allows them
        groups: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(smalls):
            groups.setdefault(self._input_for(img.shape[0], img.shape[1]), []).append(i)
        dets: list[Detections] = [Detections.empty()] * len(smalls)
        for size, idx in groups.items():
            self.vehicles.input_size = size
            for i, d in zip(idx, self.vehicles.detect_batch([smalls[i] for i in idx]), strict=True):
                dets[i] = d
        self.vehicles.input_size = self._vehicle_size
        self._time("vehicles", t0)
        return [d[d.confidence >= self.track_low_conf].offset(0, 0, 1.0 / s) if len(d) else d
                for d, s in zip(dets, scales, strict=True)]

    def preview(self, image: np.ndarray) -> np.ndarray:
        """The downscaled copy the vehicles model runs on (sources call this in their own
        thread, so it overlaps inference; `detect_vehicles` makes it when they did not)."""
        h, w = image.shape[:2]
        k = max(1, int(max(h, w) // max(self._vehicle_size)))
        if k < 2:
            return image
        return np.asarray(cv2.resize(image, None, fx=1.0 / k, fy=1.0 / k, interpolation=cv2.INTER_AREA), np.uint8)

    def _input_for(self, h: int, w: int) -> tuple[int, int]:
        """Rectangular letterbox (as ultralytics' own predict does): a 16:9 frame runs at
        352x640 instead of 640x640, a third less compute, when the ONNX input has dynamic
        height and width; otherwise the model's fixed size."""
        if not (self.rect_vehicles and self._vehicle_dynamic_hw):
            return self._vehicle_size
        side = max(self._vehicle_size)
        r = side / max(h, w)
        return (min(side, int(np.ceil(h * r / 32)) * 32), min(side, int(np.ceil(w * r / 32)) * 32))

    def locate(self, frames: Sequence[Frame]) -> list[FrameResult]:
        """Vehicles and their windshields (no crops yet): what the tracker needs. The pipeline
        tracks between `locate` and `inspect`, so only the crops a track still needs are made."""
        all_dets = self.detect_vehicles(frames)
        wid = self._vnames["windshield"]
        vehicle_ids = [self._vnames[c] for c in VEHICLE_CLASSES if c in self._vnames]
        id_to_name = {i: n for n, i in self._vnames.items()}
        out: list[FrameResult] = []
        for f, dets in zip(frames, all_dets, strict=True):
            veh = suppress_duplicates(dets.with_class(vehicle_ids), self.duplicate_iou)
            ws = dets.with_class(wid)
            ws = suppress_duplicates(ws[ws.confidence >= self.vehicle_conf * 0.7], self.duplicate_iou)
            order = np.argsort(-veh.confidence, kind="stable").tolist()
            pairs = [(windshield_fit(ws.xyxy[j], veh.xyxy[i]) * float(ws.confidence[j]), i, j)
                     for i in order if id_to_name[int(veh.class_id[i])] in FOUR_WHEELERS for j in range(len(ws))]
            owner: dict[int, int] = {}
            taken: set[int] = set()
            # global greedy: the best-fitting (vehicle, windshield) pairs first, so a car
            # partly behind a truck does not lose its windshield to the truck
            for sc, i, j in sorted(pairs, key=lambda p: -p[0]):
                if sc > 0 and i not in owner and j not in taken:
                    owner[i] = j
                    taken.add(j)
            out.append(FrameResult(f, [
                VehicleResult(veh.xyxy[i], float(veh.confidence[i]), id_to_name[int(veh.class_id[i])],
                              ws.xyxy[owner[i]] if i in owner else None, None, None)
                for i in order]))
        return out

    def inspect(self, located: Sequence[FrameResult],
                plan: Callable[[int, int, VehicleResult], CropPlan] | None = None) -> list[FrameResult]:
        """Full-resolution crops -> plates, occupants, plate reader, batched across every
        vehicle of every frame. `plan(frame index, vehicle index, vehicle)` says which crops a
        vehicle gets (default: both)."""
        frames = [r.frame for r in located]
        per_frame: list[list[dict[str, Any]]] = [
            [{"box": v.box, "conf": v.confidence, "cls": v.cls, "ws": v.windshield_box, "plate": None, "occ": None}
             for v in r.vehicles] for r in located]

        # crops at full resolution, batched across every vehicle of every frame
        t0 = time.perf_counter()
        plate_jobs: list[tuple[int, int, tuple[int, int, int, int]]] = []
        plate_imgs: list[Image] = []
        occ_jobs: list[tuple[int, int, tuple[int, int, int, int]]] = []
        occ_imgs: list[Image] = []
        for fi, (f, rows) in enumerate(zip(frames, per_frame, strict=True)):
            assert f.image is not None
            h, w = f.image.shape[:2]
            for vi, r in enumerate(rows):
                b = r["box"]
                if b[3] - b[1] < self.min_vehicle_px or r["conf"] < self.vehicle_conf:
                    continue
                want = FULL if plan is None else plan(fi, vi, located[fi].vehicles[vi])
                if self.plates is not None and want.plate:
                    # a little margin, as in training (0-12 %): a plate at the bumper's edge stays whole
                    c = _clip_box(expand(b, self.vehicle_margin), w, h)
                    if c[2] - c[0] > 8 and c[3] - c[1] > 8:
                        plate_jobs.append((fi, vi, c))
                        plate_imgs.append(f.image[c[1]:c[3], c[0]:c[2]])
                if self.occupants is not None and r["ws"] is not None and want.occupants:
                    c = _clip_box(expand(r["ws"], self.windshield_margin), w, h)
                    if c[2] - c[0] > 8 and c[3] - c[1] > 8:
                        occ_jobs.append((fi, vi, c))
                        occ_imgs.append(f.image[c[1]:c[3], c[0]:c[2]])
        t0 = self._time("crop", t0)

        if plate_imgs and self.plates is not None:
            for (fi, vi, c), d in zip(plate_jobs, self.plates.detect_batch(plate_imgs), strict=True):
                d = d[d.confidence >= self.plate_conf]
                if not len(d):
                    continue
                boxes = d.xyxy + np.array([c[0], c[1], c[0], c[1]], np.float32)
                vbox = per_frame[fi][vi]["box"]
                # the crop may show a neighbour's plate: prefer plates on this vehicle's lower front
                fit = [float(d.confidence[k]) * plate_fit(boxes[k], vbox) for k in range(len(d))]
                j = int(np.argmax(fit))
                if fit[j] <= 0:
                    continue
                box = boxes[j]
                per_frame[fi][vi]["plate"] = PlateObs(box=box, confidence=float(d.confidence[j]))
            t0 = self._time("plates", t0)

        if occ_imgs and self.occupants is not None:
            for (fi, vi, c), d in zip(occ_jobs, self.occupants.detect_batch(occ_imgs), strict=True):
                ws_full = per_frame[fi][vi]["ws"]
                # people at occupant_conf; straps and phones down to evidence_conf, so a half-seen
                # strap can keep the rules from calling "no belt"
                small = np.isin(d.class_id, [self._onames["seatbelt"], self._onames["phone"]])
                keep = np.where(small, d.confidence >= self.evidence_conf, d.confidence >= self.occupant_conf)
                d = d[keep].offset(c[0], c[1])
                per_frame[fi][vi]["occ"] = self.assign_occupants(d, ws_full)
            t0 = self._time("occupants", t0)

        if self.plate_reader is not None:
            jobs: list[tuple[int, int]] = []
            crops: list[Image] = []
            for fi, rows in enumerate(per_frame):
                img = frames[fi].image
                assert img is not None
                h, w = img.shape[:2]
                for vi, r in enumerate(rows):
                    p = r["plate"]
                    if p is None:
                        continue
                    c = _clip_box(expand(p.box, 0.06, 0.12), w, h)
                    if c[2] - c[0] > 4 and c[3] - c[1] > 4:
                        jobs.append((fi, vi))
                        crops.append(img[c[1]:c[3], c[0]:c[2]])
            if crops:
                for (fi, vi), t in zip(jobs, self.plate_reader.read_batch(crops), strict=True):
                    p = per_frame[fi][vi]["plate"]
                    per_frame[fi][vi]["plate"] = PlateObs(
                        box=p.box, confidence=p.confidence, text=str(t.text) or None,
                        char_confidences=tuple(float(x) for x in t.char_confidences),
                        read_confidence=float(t.confidence))
                self._time("plate_reader", t0)

        return [
            FrameResult(f, [VehicleResult(r["box"], r["conf"], r["cls"], r["ws"], r["plate"], r["occ"])
                            for r in rows])
            for f, rows in zip(frames, per_frame, strict=True)
        ]

    def assign_occupants(self, d: Detections, windshield: np.ndarray) -> OccupantObs:
        """Pick the driver (image-right half for oncoming traffic), their strap and phone;
        everyone else becomes a region to blur."""
        n = self._onames
        mid = float(windshield[0] + windshield[2]) / 2

        def on_driver_side(b: np.ndarray) -> bool:
            cx = float(b[0] + b[2]) / 2
            return cx >= mid if self.driver_side == "right" else cx < mid

        people = [i for i in range(len(d)) if int(d.class_id[i]) in (n["driver"], n["passenger"])]
        drivers = [i for i in people if int(d.class_id[i]) == n["driver"] and on_driver_side(d.xyxy[i])]
        drv = max(drivers, key=lambda i: float(d.confidence[i])) if drivers else None
        dbox = d.xyxy[drv] if drv is not None else None
        passengers = tuple(d.xyxy[i] for i in people if i != drv)
        belt_conf, belt_box, phone_conf, phone_box = 0.0, None, 0.0, None
        faces: list[np.ndarray] = []
        if dbox is not None:
            zone = expand(dbox, 0.1, 0.1)
            phone_zone = np.array([dbox[0] - 0.3 * (dbox[2] - dbox[0]), dbox[1],
                                   dbox[2] + 0.3 * (dbox[2] - dbox[0]), dbox[3] + 0.5 * (dbox[3] - dbox[1])],
                                  np.float32)
            for i in range(len(d)):
                c, b = int(d.class_id[i]), d.xyxy[i]
                conf = float(d.confidence[i])
                if c == n["seatbelt"] and _inter_over(b, zone) >= 0.5 and conf > belt_conf:
                    belt_conf, belt_box = conf, b
                elif (c == n["phone"] and _inter_over(b, phone_zone) >= 0.5 and conf > phone_conf
                      # a phone nearer a passenger than the driver is the passenger's
                      and not any(_inter_over(b, p) > _inter_over(b, dbox) for p in passengers)):
                    phone_conf, phone_box = conf, b
        if "face" in n:
            for i in range(len(d)):
                if int(d.class_id[i]) == n["face"] and (dbox is None or _inter_over(d.xyxy[i], dbox) < 0.5):
                    faces.append(d.xyxy[i])
        return OccupantObs(
            driver_box=dbox, driver_conf=float(d.confidence[drv]) if drv is not None else 0.0,
            seatbelt_conf=belt_conf, seatbelt_box=belt_box, phone_conf=phone_conf, phone_box=phone_box,
            passenger_boxes=passengers, face_boxes=tuple(faces),
        )
