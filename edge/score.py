"""Score a replay's events against a rendered clip's ground truth.

Matching: each event is assigned to the ground-truth vehicle whose track box at the event's
frame (`frame_seq`) overlaps the event's vehicle box best (IoU >= `iou_min`); the nearest
annotated frame within 2 frames is used when that exact frame is not annotated.

- precision: events that name a violation their vehicle really commits, first per
  (vehicle, violation), over all events (duplicates and unmatched events count against it).
- recall: detected (vehicle, violation) pairs over the decidable ones: the driver box is
  annotated and at least `min_driver_px` tall, with the vehicle inside the camera's capture
  zone (when the clip's camera YAML is given), in enough frames that the replay schedule
  (`analysis_fps`) samples at least `k` of them. A vehicle that never enters the zone, or
  whose driver is never large enough, cannot be decided by design and is reported apart
  (`recall_all` counts every violation).
- plate exact: per violating vehicle with a correct event, whether the event's plate text
  equals the ground truth exactly.
- duplicates: further events for an already reported (vehicle, violation).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.camera import Zones
from edge.event import EventMessage, ViolationEvent
from edge.rules import in_capture_zone
from edge.types import box_iou


class GroundTruthError(ValueError):
    pass


@dataclass
class Score:
    events: int = 0
    true_positives: int = 0
    false_positives: int = 0
    duplicates: int = 0
    unmatched_events: int = 0
    decidable: int = 0
    detected_decidable: int = 0
    all_violations: int = 0
    detected_all: int = 0
    plate_checked: int = 0
    plate_exact: int = 0
    precision: float = 0.0
    recall: float = 0.0
    recall_all: float = 0.0
    plate_exact_rate: float = 0.0
    per_violation: dict[str, dict[str, float]] = field(default_factory=dict)
    false_positive_events: list[dict[str, Any]] = field(default_factory=list)
    missed: list[dict[str, Any]] = field(default_factory=list)
    plate_mismatches: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_ground_truth(path: str | Path) -> dict[str, Any]:
    try:
        gt = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise GroundTruthError(f"{path}: {exc}") from exc
    if not isinstance(gt, dict) or gt.get("schema") != "roadeye-groundtruth/1":
        raise GroundTruthError(f"{path}: not a roadeye-groundtruth/1 file (schema={gt.get('schema')!r})"
                               if isinstance(gt, dict) else f"{path}: not a JSON object")
    if not isinstance(gt.get("vehicles"), list):
        raise GroundTruthError(f"{path}: 'vehicles' must be a list")
    return gt


def read_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) per non-empty line; ValueError naming the line otherwise."""
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not JSON: {exc}") from exc


def load_events(path: str | Path) -> list[ViolationEvent]:
    """JSONL of EventMessage (what `roadeye edge replay --out` writes) or of bare events."""
    events = []
    for _, raw in read_jsonl(path):
        if isinstance(raw, dict) and "event" in raw:
            events.append(EventMessage.model_validate(raw).event)
        else:
            events.append(ViolationEvent.model_validate(raw))
    return events


def box_at(vehicle: dict[str, Any], frame: int, tol: int = 2) -> list[float] | None:
    best = None
    for t in vehicle.get("track", []):
        d = abs(int(t["frame"]) - frame)
        if d <= tol and (best is None or d < best[0]):
            best = (d, t["box"])
    return None if best is None else best[1]


def decidable(vehicle: dict[str, Any], min_driver_px: float, min_frames: int, zones: Zones | None = None) -> bool:
    n = 0
    for t in vehicle.get("track", []):
        b = t.get("driver_box")
        if b is None or (b[3] - b[1]) < min_driver_px:
            continue
        if zones is not None and not in_capture_zone(np.asarray(t["box"], np.float32), zones):
            continue
        n += 1
    return n >= min_frames


def score(gt: dict[str, Any], events: list[ViolationEvent], iou_min: float = 0.3,
          min_driver_px: float = 48, k: int = 3, analysis_fps: float = 5.0,
          zones: Zones | None = None, traces: list[dict[str, Any]] | None = None) -> Score:
    """`traces` (from `replay --trace`): each missed violation gets a `why` naming the stage that lost it."""
    from edge.trace import explain_miss

    s = Score(events=len(events))
    # qualifying ground-truth frames needed so that the analysis schedule (every `step`-th
    # frame, whatever the phase) surely samples k of them
    step = max(1, round(float(gt.get("fps", 25.0)) / analysis_fps))
    min_frames = k * step
    vehicles = gt["vehicles"]
    reported: dict[tuple[int, str], ViolationEvent] = {}
    for ev in sorted(events, key=lambda e: (e.captured_at, e.event_id)):
        best_iou, best_v = 0.0, None
        for v in vehicles:
            box = box_at(v, ev.frame_seq)
            if box is None:
                continue
            iou = float(box_iou(np.array([ev.vehicle.box.as_list()]), np.array([box]))[0, 0])
            if iou > best_iou:
                best_iou, best_v = iou, v
        desc = {"event_id": ev.event_id, "violation": ev.violation.value, "frame": ev.frame_seq,
                "track_id": ev.track_id, "plate": ev.plate.text if ev.plate else None}
        if best_v is None or best_iou < iou_min:
            s.unmatched_events += 1
            s.false_positives += 1
            s.false_positive_events.append({**desc, "reason": "no ground-truth vehicle there"})
            continue
        key = (int(best_v["id"]), ev.violation.value)
        if ev.violation.value not in best_v.get("violations", []):
            s.false_positives += 1
            s.false_positive_events.append({**desc, "vehicle": best_v["id"],
                                            "reason": f"vehicle commits {best_v.get('violations')}"})
            continue
        if key in reported:
            s.duplicates += 1
            continue
        reported[key] = ev
        s.true_positives += 1

    per: dict[str, dict[str, float]] = {}
    for v in vehicles:
        dec = decidable(v, min_driver_px, min_frames, zones)
        for viol in v.get("violations", []):
            p = per.setdefault(viol, {"truth": 0, "decidable": 0, "detected": 0, "events": 0})
            p["truth"] += 1
            s.all_violations += 1
            hit = (int(v["id"]), viol) in reported
            s.detected_all += int(hit)
            if dec:
                p["decidable"] += 1
                s.decidable += 1
                s.detected_decidable += int(hit)
                p["detected"] += int(hit)
                if not hit:
                    miss = {"vehicle": v["id"], "violation": viol, "plate": v.get("plate")}
                    if traces is not None:
                        miss["why"] = explain_miss(v, viol, traces, iou_min)
                    s.missed.append(miss)
    for ev in events:
        per.setdefault(ev.violation.value, {"truth": 0, "decidable": 0, "detected": 0, "events": 0})
        per[ev.violation.value]["events"] += 1
    s.per_violation = per

    by_vehicle: dict[int, list[ViolationEvent]] = {}
    for (vid, _), ev in reported.items():
        by_vehicle.setdefault(vid, []).append(ev)
    for v in vehicles:
        evs = by_vehicle.get(int(v["id"]))
        if not evs or not v.get("plate"):
            continue
        s.plate_checked += 1
        texts = {e.plate.text if e.plate else None for e in evs}
        if texts == {v["plate"]}:
            s.plate_exact += 1
        else:
            s.plate_mismatches.append({"vehicle": v["id"], "truth": v["plate"], "read": sorted(map(str, texts))})

    s.precision = round(s.true_positives / s.events, 4) if s.events else 1.0
    s.recall = round(s.detected_decidable / s.decidable, 4) if s.decidable else 1.0
    s.recall_all = round(s.detected_all / s.all_violations, 4) if s.all_violations else 1.0
    s.plate_exact_rate = round(s.plate_exact / s.plate_checked, 4) if s.plate_checked else 0.0
    return s
