"""Per-track traces of a replay, and why a ground-truth violation was missed.

`roadeye edge replay --trace FILE` writes one JSON line per ended track: every observation
(frame, vehicle box, zone, windshield, driver, strap / phone confidences, each rule's
per-frame verdict, plate read) and what was decided. `roadeye edge score --trace FILE`
then names, for each missed violation, the first stage that failed it (the vehicle was
never tracked, never in the zone, had no windshield, no driver big enough, or too few
frames agreed), so an engineer tuning a site knows which model or threshold to look at.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from edge.camera import ViolationThreshold
from edge.event import ViolationType
from edge.observations import TrackHistory
from edge.rules import Decision, driver_observed, frame_verdict
from edge.types import box_iou


def track_record(hist: TrackHistory, thresholds: dict[str, ViolationThreshold],
                 decisions: Sequence[Decision]) -> dict[str, Any]:
    """One ended track as plain JSON (boxes rounded to 0.1 px, confidences to 1e-3)."""
    obs_out = []
    for o in hist.observations:
        occ = o.occupants
        row: dict[str, Any] = {
            "seq": o.seq, "box": [round(float(v), 1) for v in o.vehicle_box], "in_zone": o.in_zone,
            "windshield": o.windshield_box is not None,
            "driver": None if occ is None or occ.driver_box is None
            else [round(occ.driver_conf, 3), round(o.driver_height, 1)],
            "belt": None if occ is None else round(occ.seatbelt_conf, 3),
            "phone": None if occ is None else round(occ.phone_conf, 3),
            "plate": None if o.plate is None else o.plate.text,
        }
        verdicts = {}
        for v in ViolationType:
            thr = thresholds[v.value]
            verdicts[v.value] = frame_verdict(o, v, thr)[0] if driver_observed(o, thr) else None
        row["verdict"] = verdicts
        obs_out.append(row)
    return {"camera": hist.camera_id, "track_id": hist.track_id,
            "k": {v: t.k for v, t in thresholds.items()},
            "decided": sorted(d.violation.value for d in decisions), "observations": obs_out}


class TraceWriter:
    """JSONL writer the pipeline calls once per ended track."""

    def __init__(self, fh: IO[str]) -> None:
        self.fh = fh

    def __call__(self, record: dict[str, Any]) -> None:
        self.fh.write(json.dumps(record, separators=(",", ":")) + "\n")


def load_traces(path: str | Path) -> list[dict[str, Any]]:
    from edge.score import read_jsonl

    out = []
    for n, rec in read_jsonl(path):
        if not isinstance(rec, dict) or not isinstance(rec.get("observations"), list):
            raise ValueError(f"{path}:{n}: not a track trace (no 'observations' list)")
        out.append(rec)
    return out


def explain_miss(vehicle: dict[str, Any], violation: str, traces: Sequence[dict[str, Any]],
                 iou_min: float = 0.3) -> str:
    """The first stage that lost this (vehicle, violation), in words."""
    from edge.score import box_at

    obs = []
    for tr in traces:
        for o in tr["observations"]:
            gt = box_at(vehicle, int(o["seq"]))
            if gt is not None and float(box_iou(np.array([o["box"]]), np.array([gt]))[0, 0]) >= iou_min:
                obs.append((tr, o))
    if not obs:
        return f"vehicle never tracked (vehicles model: not detected, or boxes off by IoU < {iou_min:.1f})"
    tracks = {tr["track_id"] for tr, _ in obs}
    if any(violation in tr["decided"] for tr, _ in obs):
        return "decided on a track but no event kept (duplicate suppression or a split track)"
    zone = [(tr, o) for tr, o in obs if o["in_zone"]]
    if not zone:
        return f"tracked in {len(obs)} frames, never inside the capture zone"
    with_ws = [(tr, o) for tr, o in zone if o["windshield"]]
    if not with_ws:
        return f"in the zone in {len(zone)} frames, windshield never found (vehicles model)"
    judged = [(tr, o) for tr, o in with_ws if o["verdict"].get(violation) is not None]
    if not judged:
        found = sum(1 for _, o in with_ws if o["driver"] is not None)
        return (f"driver never observed well enough: found in {found} of {len(with_ws)} windshield frames "
                "but below the confidence or size threshold (occupants model)")
    k = max(int(tr["k"].get(violation, 3)) for tr, _ in judged)
    pos = sum(1 for _, o in judged if o["verdict"][violation] > 0)
    neg = sum(1 for _, o in judged if o["verdict"][violation] < 0)
    split = f" over {len(tracks)} tracks" if len(tracks) > 1 else ""
    if violation == ViolationType.NO_SEATBELT.value:
        return (f"only {pos} of {len(judged)} judged frames without a strap (need {k}){split}; "
                f"a strap was seen in {neg} (occupants model: false strap or missed absence)")
    if violation == ViolationType.PHONE_USE.value:
        return f"phone seen in {pos} of {len(judged)} judged frames (need {k}){split} (occupants model)"
    return f"{pos} of {len(judged)} judged frames agreed (need {k}){split}"
