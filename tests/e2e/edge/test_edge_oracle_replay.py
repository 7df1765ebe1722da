"""The pipeline's own logic on the real clip geometry, with perfect detections.

An oracle cascade turns each clip's ground truth into what ideal models would report
(vehicle, windshield, driver, strap, phone, plate boxes and text) at the frames the replay
schedule analyses (5 fps of 25). Tracking, zones, k-of-n rules, plate voting, evidence and
scoring then run for real. With perfect detections every decidable violation must be
found, nothing else reported, nothing twice: if this fails, the fault is in edge/, not in
the models. Uses blank frames (the logic does not look at pixels), so no decoding.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.camera import load_camera
from edge.cascade import FrameResult, VehicleResult
from edge.config import config_hash
from edge.event import EventMessage, ModelRef
from edge.eventbuild import DeviceIdentity
from edge.observations import OccupantObs, PlateObs
from edge.pipeline import CameraState, Pipeline, new_tracker
from edge.score import score
from edge.types import Frame

REPO = Path(__file__).resolve().parents[3]
DIRS = [REPO / "sample_videos", *(Path(p) for p in os.environ.get("ROADEYE_EDGE_CLIPS", "").split(":") if p)]
GTS = sorted(p for d in DIRS for p in d.glob("*.groundtruth.json"))
VEHICLE_CLASSES = ["car", "bus", "truck", "van", "two_wheeler", "windshield"]
ANALYSIS_FPS = 5.0


def _arr(b: list[float] | None) -> np.ndarray | None:
    return None if b is None else np.asarray(b, np.float32)


class OracleCascade:
    """Stands in for `edge.cascade.Cascade`: ground truth as detections. `locate` already
    knows each vehicle's plate and occupants; `inspect` keeps only what the pipeline's crop
    plan asks for, as the real cascade only crops what is planned."""

    def __init__(self, gt: dict[str, Any], noise: float = 0.0, seed: int = 0) -> None:
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.by_frame: dict[int, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
        for v in gt["vehicles"]:
            for t in v["track"]:
                self.by_frame.setdefault(int(t["frame"]), []).append((v, t))
        self.vehicle_class_index = {n: i for i, n in enumerate(VEHICLE_CLASSES)}
        self.windshield_margin = 0.08  # as Cascade: the crop plan sizes windshields with it
        self.timer = None

    def inspect(self, located: list[FrameResult], plan: Any = None) -> list[FrameResult]:
        out = []
        for fi, res in enumerate(located):
            vs = []
            for vi, v in enumerate(res.vehicles):
                want = plan(fi, vi, v) if plan is not None else None
                vs.append(VehicleResult(v.box, v.confidence, v.cls, v.windshield_box,
                                        v.plate if want is None or want.plate else None,
                                        v.occupants if want is None or want.occupants else None))
            out.append(FrameResult(res.frame, vs))
        return out

    def locate(self, frames: list[Frame]) -> list[FrameResult]:
        out = []
        for f in frames:
            vs = []
            for v, t in self.by_frame.get(f.seq, []):
                if t.get("visible_fraction", 1.0) < 0.3:
                    continue
                if self.noise and self.rng.random() < self.noise * 0.5:
                    continue  # missed vehicle this frame
                cls = v["type"] if v["type"] in VEHICLE_CLASSES else "car"
                plate = None
                if t.get("plate_box") is not None:
                    plate = PlateObs(box=_arr(t["plate_box"]), confidence=0.9, text=v["plate"],  # type: ignore[arg-type]
                                     char_confidences=tuple([0.95] * len(v["plate"])), read_confidence=0.7)
                occ = None
                if t.get("driver_box") is not None and t.get("windshield_box") is not None:
                    belt = v["belt"] == "worn"
                    phone = v["phone"] != "none"
                    if self.noise:  # a detector that misses the strap / phone or hallucinates one now and then
                        belt = belt != (self.rng.random() < self.noise)
                        phone = phone != (self.rng.random() < self.noise * (1.0 if phone else 0.2))
                    occ = OccupantObs(driver_box=_arr(t["driver_box"]), driver_conf=0.9,
                                      seatbelt_conf=0.85 if belt else 0.05, seatbelt_box=None,
                                      phone_conf=0.85 if phone else 0.05, phone_box=None)
                box = np.asarray(t["box"], np.float32)
                if self.noise:
                    wh = np.tile(box[2:] - box[:2], 2)
                    box = box + self.rng.normal(0, self.noise * 0.1, 4).astype(np.float32) * wh
                vs.append(VehicleResult(box, 0.9, cls, _arr(t.get("windshield_box")), plate, occ))
            out.append(FrameResult(f, vs))
        return out


def oracle_replay(gt_path: Path, noise: float) -> tuple[Any, dict[str, Any]]:
    gt = json.loads(gt_path.read_text())
    cam_yaml = gt_path.with_name(gt_path.name.replace(".groundtruth.json", ".camera.yaml"))
    cal = load_camera(cam_yaml)
    out: list[EventMessage] = []
    cams = {cal.camera_id: CameraState(cal, config_hash(cal), new_tracker(ANALYSIS_FPS))}
    p = Pipeline(OracleCascade(gt, noise), cams, DeviceIdentity("oracle", "oracle"),  # type: ignore[arg-type]
                 [ModelRef(name="oracle", version="1", sha256="0" * 64)], out.append, event_id_seed="oracle")
    w, h = gt["width"], gt["height"]
    blank = np.zeros((h, w, 3), np.uint8)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    fps = float(gt["fps"])
    last = -1
    for seq in range(int(gt["frames"])):
        slot = int(seq * ANALYSIS_FPS / fps + 1e-9)
        if slot <= last:
            continue
        last = slot
        p.process([Frame(cal.camera_id, seq, seq / fps, t0 + timedelta(seconds=seq / fps), blank)])
    p.flush()
    s = score(gt, [m.event for m in out], analysis_fps=ANALYSIS_FPS, zones=cal.zones)
    return s, {k: s.to_dict()[k] for k in ("precision", "recall", "plate_exact_rate", "duplicates", "events",
                                           "decidable", "false_positive_events", "missed", "plate_mismatches")}


@pytest.mark.skipif(not GTS, reason="no <clip>.groundtruth.json in sample_videos/ yet")
@pytest.mark.parametrize("gt_path", GTS, ids=[p.name.split(".")[0] for p in GTS])
def test_oracle_detections_give_perfect_scores(gt_path: Path) -> None:
    s, report = oracle_replay(gt_path, 0.0)
    assert s.duplicates == 0, report
    assert s.precision == 1.0, report
    assert s.recall == 1.0, report
    assert s.plate_exact_rate == 1.0 or s.plate_checked == 0, report


@pytest.mark.skipif(not GTS, reason="no <clip>.groundtruth.json in sample_videos/ yet")
@pytest.mark.parametrize("gt_path", GTS, ids=[p.name.split(".")[0] for p in GTS])
def test_noisy_detections_still_meet_targets(gt_path: Path) -> None:
    """Missed vehicles (10 %), jittered boxes, strap / phone misread in 20 % of frames."""
    s, report = oracle_replay(gt_path, 0.2)
    assert s.duplicates == 0, report
    assert s.precision >= 0.95, report
    assert s.recall >= 0.9, report


#: the models the edge would load ($ROADEYE_MODELS_DIR: a candidate model is checked here before it is
#: committed, e.g. a folder of links to models/ with one file replaced)
MODELS_DIR = Path(os.environ.get("ROADEYE_MODELS_DIR") or REPO / "models")


class RealCropsCascade(OracleCascade):
    """Ground-truth vehicles, windshields and plate boxes; the REAL occupants model and plate
    reader on the real full-resolution crops. Isolates occupants + rules and reader + voting
    from the vehicle and plate detectors."""

    def __init__(self, gt: dict[str, Any]) -> None:
        super().__init__(gt)
        from edge.cascade import Cascade
        from edge.detectors.plate_reader import OnnxPlateReader
        from edge.detectors.yolo import OnnxYoloDetector

        self.occ = OnnxYoloDetector(MODELS_DIR / "occupants.onnx", conf=0.1)
        self.reader = OnnxPlateReader(MODELS_DIR / "plate_reader.onnx")
        self.helper = Cascade.__new__(Cascade)
        self.helper._onames = {n: i for i, n in self.occ.names.items()}
        self.helper.driver_side = "right"

    def inspect(self, located: list[FrameResult], plan: Any = None) -> list[FrameResult]:
        from edge.cascade import _clip_box, expand

        out = []
        for res in super().inspect(located, plan):
            img = res.frame.image
            assert img is not None
            h, w = img.shape[:2]
            vs = list(res.vehicles)
            jobs, crops = [], []
            for i, v in enumerate(vs):
                if v.windshield_box is not None:
                    c = _clip_box(expand(v.windshield_box, 0.08), w, h)
                    if c[2] - c[0] > 8 and c[3] - c[1] > 8:
                        jobs.append((i, c))
                        crops.append(img[c[1]:c[3], c[0]:c[2]])
            occs: dict[int, Any] = {}
            small = [self.helper._onames["seatbelt"], self.helper._onames["phone"]]
            for (i, c), d in zip(jobs, self.occ.detect_batch(crops) if crops else [], strict=True):
                d = d[np.where(np.isin(d.class_id, small), d.confidence >= 0.1, d.confidence >= 0.25)]  # as Cascade
                occs[i] = self.helper.assign_occupants(d.offset(c[0], c[1]), vs[i].windshield_box)  # type: ignore[arg-type]
            pj, pc = [], []
            for i, v in enumerate(vs):
                if v.plate is not None:
                    c = _clip_box(expand(v.plate.box, 0.06, 0.12), w, h)
                    if c[2] - c[0] > 4 and c[3] - c[1] > 4:
                        pj.append(i)
                        pc.append(img[c[1]:c[3], c[0]:c[2]])
            reads = dict(zip(pj, self.reader.read_batch(pc), strict=True)) if pc else {}
            new = []
            for i, v in enumerate(vs):
                plate = v.plate
                if i in reads and plate is not None:
                    r = reads[i]
                    plate = PlateObs(plate.box, plate.confidence, r.text or None, tuple(r.char_confidences),
                                     r.confidence)
                new.append(VehicleResult(v.box, v.confidence, v.cls, v.windshield_box, plate,
                                         occs.get(i) if v.occupants is not None else None))
            out.append(FrameResult(res.frame, new))
        return out


@pytest.mark.slow
@pytest.mark.skipif(not GTS, reason="no <clip>.groundtruth.json in sample_videos/ yet")
@pytest.mark.skipif(not (MODELS_DIR / "occupants.onnx").is_file() or not (MODELS_DIR / "plate_reader.onnx").is_file(),
                    reason="models/occupants.onnx or models/plate_reader.onnx not committed yet")
@pytest.mark.parametrize("gt_path", GTS, ids=[p.name.split(".")[0] for p in GTS])
def test_real_occupants_and_reader_on_true_vehicles(gt_path: Path) -> None:
    """Decodes the clip; writes tests/artifacts/edge/<clip>.stages.json."""
    from edge.sources import ReplaySource

    gt = json.loads(gt_path.read_text())
    cal = load_camera(gt_path.with_name(gt_path.name.replace(".groundtruth.json", ".camera.yaml")))
    out: list[EventMessage] = []
    cams = {cal.camera_id: CameraState(cal, config_hash(cal), new_tracker(ANALYSIS_FPS))}
    p = Pipeline(RealCropsCascade(gt), cams, DeviceIdentity("oracle", "oracle"),  # type: ignore[arg-type]
                 [ModelRef(name="oracle", version="1", sha256="0" * 64)], out.append, event_id_seed="oracle")
    video = gt_path.with_name(gt_path.name.replace(".groundtruth.json", ".mp4"))
    for f in ReplaySource(cal.camera_id, video, ANALYSIS_FPS):
        p.process([f])
    p.flush()
    s = score(gt, [m.event for m in out], analysis_fps=ANALYSIS_FPS, zones=cal.zones)
    art = REPO / "tests" / "artifacts" / "edge"
    art.mkdir(parents=True, exist_ok=True)
    (art / f"{video.stem}.stages.json").write_text(json.dumps(s.to_dict(), indent=1, ensure_ascii=False))
    assert s.duplicates == 0
    assert s.precision >= 0.95, s.to_dict()
