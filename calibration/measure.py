"""Measured sizes for the fitness report: run the deployed ONNX models (vehicles, then plates
and occupants on full-resolution crops, as the edge does) on frames of a recording, and
collect the plate and face heights they actually see per zone.

This checks the geometry: if the road plane predicts 20 px characters and the plate model
sees 14 px, the road points are wrong (or vehicles stop elsewhere than assumed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from calibration import homography as hg

VEHICLE_CLASSES = {"car", "bus", "truck", "van"}  # four-wheelers: front plate + windshield


@dataclass
class ZoneSamples:
    plate_char_px: list[float] = field(default_factory=list)
    predicted_char_px: list[float] = field(default_factory=list)
    face_px: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {"plates_measured": float(len(self.plate_char_px)),
                                 "faces_measured": float(len(self.face_px))}
        if self.plate_char_px:
            out["measured_plate_char_px_median"] = round(float(np.median(self.plate_char_px)), 2)
            ratio = np.asarray(self.plate_char_px) / np.maximum(np.asarray(self.predicted_char_px), 1e-6)
            out["measured_over_predicted"] = round(float(np.median(ratio)), 3)
        if self.face_px:
            out["measured_face_px_median"] = round(float(np.median(self.face_px)), 2)
        return out


def _ids(names: dict[int, str], wanted: set[str]) -> set[int]:
    return {i for i, n in names.items() if n in wanted}


def _inside(poly: list[list[float]], pt: tuple[float, float]) -> bool:
    c = np.asarray(poly, np.float32).reshape(-1, 1, 2)
    return bool(cv2.pointPolygonTest(c, pt, False) >= 0)


class ModelMeasurer:
    """Loads vehicles.onnx (required) and plates.onnx / occupants.onnx (each optional)."""

    def __init__(self, models_dir: str | Path, conf: float = 0.35):
        from edge.detectors.yolo import OnnxYoloDetector

        d = Path(models_dir)
        if not (d / "vehicles.onnx").is_file():
            raise FileNotFoundError(f"{d}/vehicles.onnx not found")
        self.vehicles = OnnxYoloDetector(d / "vehicles.onnx", conf=conf, threads=1)
        self.plates = OnnxYoloDetector(d / "plates.onnx", conf=conf, threads=1) if (d / "plates.onnx").is_file() \
            else None
        self.occupants = (OnnxYoloDetector(d / "occupants.onnx", conf=conf, threads=1)
                          if (d / "occupants.onnx").is_file() else None)
        self.vehicle_ids = _ids(self.vehicles.names, VEHICLE_CLASSES)
        self.windshield_ids = _ids(self.vehicles.names, {"windshield"})
        self.plate_ids = _ids(self.plates.names, {"plate"}) if self.plates else set()
        self.face_ids = _ids(self.occupants.names, {"face"}) if self.occupants else set()
        self.models = [m.model_path.name for m in (self.vehicles, self.plates, self.occupants) if m is not None]

    def measure(self, frames: list[npt.NDArray[np.uint8]], zones: list[tuple[str, list[list[float]]]],
                h: Any) -> dict[str, ZoneSamples]:
        out = {name: ZoneSamples() for name, _ in zones}
        for frame in frames:
            fh, fw = frame.shape[:2]
            dets = self.vehicles.detect(frame)
            boxes = dets.xyxy.astype(np.float64)
            cls = dets.class_id
            vehicles = [boxes[i] for i in range(len(boxes)) if int(cls[i]) in self.vehicle_ids]
            shields = [boxes[i] for i in range(len(boxes)) if int(cls[i]) in self.windshield_ids]
            for vb in vehicles:
                x1, y1, x2, y2 = (round(float(v)) for v in vb)
                x1, y1, x2, y2 = max(0, x1), max(0, y1), min(fw, x2), min(fh, y2)
                if x2 - x1 < 8 or y2 - y1 < 8:
                    continue
                foot = ((x1 + x2) / 2.0, float(y2))
                in_zones = [n for n, poly in zones if _inside(poly, foot)]
                if not in_zones:
                    continue
                if self.plates is not None:
                    pd = self.plates.detect(np.ascontiguousarray(frame[y1:y2, x1:x2]))
                    sel = [i for i in range(len(pd.xyxy)) if int(pd.class_id[i]) in self.plate_ids]
                    if sel:
                        best = max(sel, key=lambda i: float(pd.confidence[i]))
                        ph = float(pd.xyxy[best, 3] - pd.xyxy[best, 1])
                        pred = hg.pixels_per_metre(h, foot)[0] * hg.PLATE_CHAR_HEIGHT_M
                        for n in in_zones:
                            out[n].plate_char_px.append(ph * hg.PLATE_CHAR_HEIGHT_M / hg.PLATE_HEIGHT_M)
                            out[n].predicted_char_px.append(pred)
                if self.occupants is not None:
                    for sb in shields:
                        cx, cy = (sb[0] + sb[2]) / 2, (sb[1] + sb[3]) / 2
                        if not (x1 <= cx <= x2 and y1 <= cy <= y2):
                            continue
                        sx1, sy1, sx2, sy2 = (round(float(v)) for v in sb)
                        sx1, sy1, sx2, sy2 = max(0, sx1), max(0, sy1), min(fw, sx2), min(fh, sy2)
                        if sx2 - sx1 < 8 or sy2 - sy1 < 8:
                            continue
                        od = self.occupants.detect(np.ascontiguousarray(frame[sy1:sy2, sx1:sx2]))
                        for i in range(len(od.xyxy)):
                            if int(od.class_id[i]) in self.face_ids:
                                for n in in_zones:
                                    out[n].face_px.append(float(od.xyxy[i, 3] - od.xyxy[i, 1]))
        return out
