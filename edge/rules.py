"""Violation rules: pure functions over one track's observations (no I/O, no state).

A frame counts only when the vehicle is inside the camera's capture zone (and outside every
exclusion polygon), the driver was found with enough confidence and is tall enough in
full-resolution pixels to judge. A violation is decided when at least k of n consecutive
such frames agree and, within them, the violating frames outnumber the frames in which
compliance was clearly seen: an arm hiding the belt for two frames is not `no_seatbelt`, and
three borderline phone scores among as many frames that clearly show no phone are not
`phone_use`. The driver is chosen in `edge.cascade` (image-right half of the windshield).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.camera import ViolationThreshold, Zones
from edge.event import ViolationType
from edge.observations import Observation

#: a strap seen below min_confidence * ABSENT_FRACTION counts as absent (0.1 at the default 0.5)
ABSENT_FRACTION = 0.2


@dataclass(frozen=True, slots=True)
class Decision:
    violation: ViolationType
    confidence: float
    frames_agreed: int
    frames_observed: int
    evidence_seq: int  # the agreeing frame with the strongest, largest view of the driver


def point_in_polygon(x: float, y: float, poly: Sequence[Sequence[float]]) -> bool:
    """Even-odd ray casting (the vertices' order does not matter)."""
    inside = False
    n = len(poly)
    for i in range(n):
        x1, y1 = poly[i][0], poly[i][1]
        x2, y2 = poly[(i + 1) % n][0], poly[(i + 1) % n][1]
        if (y1 > y) != (y2 > y):
            xin = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x < xin:
                inside = not inside
    return inside


def in_capture_zone(vehicle_box: np.ndarray, zones: Zones) -> bool:
    """The vehicle's ground-contact point (bottom centre) decides: inside capture, outside exclusions."""
    x = float(vehicle_box[0] + vehicle_box[2]) / 2
    y = float(vehicle_box[3])
    if zones.capture is not None and not point_in_polygon(x, y, zones.capture):
        return False
    return not any(point_in_polygon(x, y, poly) for poly in zones.exclusion)


def driver_observed(obs: Observation, thr: ViolationThreshold) -> bool:
    o = obs.occupants
    return (
        obs.in_zone
        and o is not None
        and o.driver_box is not None
        and o.driver_conf >= thr.min_confidence
        and obs.driver_height >= thr.min_driver_px
    )


def frame_verdict(obs: Observation, violation: ViolationType, thr: ViolationThreshold) -> tuple[int, float]:
    """(+1 violation seen, 0 undecided, -1 compliance clearly seen), and the frame's confidence."""
    o = obs.occupants
    assert o is not None
    if violation == ViolationType.NO_SEATBELT:
        if o.seatbelt_conf >= thr.min_confidence:
            return -1, 0.0
        # "no strap" needs the detector to see nothing even at a low threshold: a strap it
        # half-sees (dark cabin, glare) leaves the frame undecided rather than a violation
        if o.seatbelt_conf < thr.min_confidence * ABSENT_FRACTION:
            return 1, o.driver_conf * (1.0 - o.seatbelt_conf)
        return 0, 0.0
    if violation == ViolationType.PHONE_USE:
        if o.phone_conf >= thr.min_confidence:
            return 1, o.phone_conf * o.driver_conf ** 0.5
        return -1 if o.phone_conf < thr.min_confidence * 0.5 else 0, 0.0
    raise ValueError(f"no rule for violation {violation!r}")


def decide(observations: Sequence[Observation], violation: ViolationType,
           thr: ViolationThreshold) -> Decision | None:
    """k-of-n over the frames in which the driver was observed; None when not decided."""
    seen = [o for o in observations if driver_observed(o, thr)]
    if len(seen) < thr.k:
        return None
    verdicts = [frame_verdict(o, violation, thr) for o in seen]
    window = min(thr.n, len(seen))
    best: tuple[int, int] | None = None  # (positives, start)
    for start in range(len(seen) - window + 1):
        chunk = verdicts[start:start + window]
        pos = sum(1 for v, _ in chunk if v > 0)
        neg = sum(1 for v, _ in chunk if v < 0)
        if pos < thr.k or pos <= neg:
            continue
        if best is None or pos > best[0]:
            best = (pos, start)
    if best is None:
        return None
    pos_frames = [(o, c) for o, (v, c) in zip(seen, verdicts, strict=True) if v > 0]
    start = best[1]
    in_window = [(o, c) for o, (v, c) in zip(seen[start:start + window], verdicts[start:start + window],
                                             strict=True) if v > 0]
    confidence = float(np.mean([c for _, c in in_window]))
    ev = max(pos_frames, key=lambda oc: (oc[1] * oc[0].driver_height, -oc[0].seq))[0]
    return Decision(
        violation=violation,
        confidence=round(min(1.0, max(0.0, confidence)), 4),
        frames_agreed=len(pos_frames),
        frames_observed=len(seen),
        evidence_seq=ev.seq,
    )


def decide_all(observations: Sequence[Observation],
               thresholds: dict[str, ViolationThreshold]) -> list[Decision]:
    """Every violation type decided once for one track (one event per vehicle per type)."""
    out = []
    for v in ViolationType:
        d = decide(observations, v, thresholds.get(v.value) or ViolationThreshold.model_validate({}))
        if d is not None:
            out.append(d)
    return out
