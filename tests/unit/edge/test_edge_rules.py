"""Violation rules: table-driven, pure (no I/O, no models)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from edge.camera import ViolationThreshold, Zones
from edge.event import ViolationType
from edge.observations import Observation, OccupantObs
from edge.rules import decide, decide_all, in_capture_zone, point_in_polygon

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NB, PH = ViolationType.NO_SEATBELT, ViolationType.PHONE_USE


def obs(seq: int, belt: float = 0.0, phone: float = 0.0, driver: float = 0.9, driver_h: float = 120,
        vehicle: tuple[float, float, float, float] = (100, 100, 500, 400), driver_found: bool = True) -> Observation:
    dbox = np.array([300, 150, 380, 150 + driver_h], np.float32) if driver_found else None
    occ = OccupantObs(driver_box=dbox, driver_conf=driver if driver_found else 0.0, seatbelt_conf=belt,
                      seatbelt_box=None, phone_conf=phone, phone_box=None)
    return Observation(seq=seq, stream_ts=seq / 5, captured_at=T0, vehicle_box=np.array(vehicle, np.float32),
                       vehicle_conf=0.9, vehicle_class="car", in_zone=True, occupants=occ)


def seq_of(*frames: dict) -> list[Observation]:
    return [obs(i, **f) for i, f in enumerate(frames)]


NO_BELT, BELT, UNSURE = {"belt": 0.05}, {"belt": 0.9}, {"belt": 0.35}
PHONE, NO_PHONE = {"phone": 0.8}, {"phone": 0.05}
DEFAULT = ViolationThreshold(min_confidence=0.5, k=3, n=8, min_driver_px=48)

CASES = [
    # (name, violation, frames, threshold, expected decided, expected frames_agreed)
    ("3 of 3 strap-less frames", NB, [NO_BELT] * 3, DEFAULT, True, 3),
    ("2 strap-less frames are not enough", NB, [NO_BELT] * 2 + [BELT] * 4, DEFAULT, False, 0),
    ("belt seen in most frames wins", NB, [NO_BELT, BELT, NO_BELT, BELT, NO_BELT, BELT, BELT, BELT], DEFAULT,
     False, 0),
    ("3 of 8 with the rest unsure", NB, [NO_BELT, UNSURE, NO_BELT, UNSURE, UNSURE, NO_BELT, UNSURE, UNSURE],
     DEFAULT, True, 3),
    ("k spread wider than n does not count", NB,
     [NO_BELT] + [UNSURE] * 3 + [NO_BELT] + [UNSURE] * 3 + [NO_BELT], ViolationThreshold(k=3, n=4), False, 0),
    ("driver too small", NB, [{**NO_BELT, "driver_h": 30}] * 5, DEFAULT, False, 0),
    ("driver too small for this camera only", NB, [{**NO_BELT, "driver_h": 30}] * 5,
     ViolationThreshold(min_driver_px=20), True, 5),
    ("driver not confident", NB, [{**NO_BELT, "driver": 0.3}] * 5, DEFAULT, False, 0),
    ("no driver found", NB, [{"driver_found": False}] * 5, DEFAULT, False, 0),
    ("phone in 3 of 5", PH, [PHONE, NO_PHONE, PHONE, NO_PHONE, PHONE], DEFAULT, True, 3),
    ("phone weak", PH, [{"phone": 0.4}] * 6, DEFAULT, False, 0),
    # day_4k vehicle 9 on an AVX2 EPYC: three borderline phone scores among as many clear no-phone frames
    ("no-phone frames as many as phone frames", PH, [PHONE, {"phone": 0.3}, NO_PHONE, PHONE, {"phone": 0.3},
                                                     NO_PHONE, NO_PHONE, PHONE], DEFAULT, False, 0),
    ("phone in 4 of 8 beside 3 clear no-phone frames", PH, [PHONE, NO_PHONE, PHONE, {"phone": 0.3}, PHONE,
                                                           PHONE, NO_PHONE, NO_PHONE], DEFAULT, True, 4),
    ("phone with a lower per-camera threshold", PH, [{"phone": 0.4}] * 6,
     ViolationThreshold(min_confidence=0.35), True, 6),
    ("k=1 single frame", PH, [PHONE], ViolationThreshold(k=1, n=1), True, 1),
]


@pytest.mark.parametrize(("name", "violation", "frames", "thr", "decided", "agreed"), CASES,
                         ids=[c[0] for c in CASES])
def test_decide(name: str, violation: ViolationType, frames: list[dict], thr: ViolationThreshold,
                decided: bool, agreed: int) -> None:
    d = decide(seq_of(*frames), violation, thr)
    assert (d is not None) is decided
    if d is not None:
        assert d.violation == violation
        assert d.frames_agreed == agreed
        assert d.frames_agreed <= d.frames_observed
        assert 0.0 < d.confidence <= 1.0


def test_frames_outside_capture_zone_do_not_count() -> None:
    frames = [obs(i, belt=0.0) for i in range(5)]
    outside = [Observation(**{**{s: getattr(o, s) for s in o.__slots__}, "in_zone": False}) for o in frames]
    assert decide(outside, NB, DEFAULT) is None
    assert decide(frames, NB, DEFAULT) is not None


def test_decide_all_one_decision_per_type_and_evidence_frame_is_best_view() -> None:
    frames = [obs(0, belt=0.0, phone=0.9, driver_h=60), obs(1, belt=0.0, phone=0.9, driver_h=150),
              obs(2, belt=0.0, phone=0.9, driver_h=90)]
    ds = decide_all(frames, {})
    assert sorted(d.violation.value for d in ds) == ["no_seatbelt", "phone_use"]
    assert all(d.evidence_seq == 1 for d in ds)


ZONE = [[0.0, 0.0], [1000.0, 0.0], [1000.0, 1000.0], [0.0, 1000.0]]


@pytest.mark.parametrize(("box", "zones", "inside"), [
    ((100, 100, 300, 300), Zones(), True),
    ((100, 100, 300, 300), Zones(capture=ZONE), True),
    ((100, 900, 300, 1100), Zones(capture=ZONE), False),  # bottom centre below the zone
    ((100, 100, 300, 300), Zones(capture=ZONE, exclusion=[[[0, 250], [500, 250], [500, 400], [0, 400]]]), False),
])
def test_capture_zone(box: tuple, zones: Zones, inside: bool) -> None:
    assert in_capture_zone(np.array(box, np.float32), zones) is inside


def test_point_in_concave_polygon() -> None:
    u = [[0, 0], [30, 0], [30, 30], [20, 30], [20, 10], [10, 10], [10, 30], [0, 30]]
    assert point_in_polygon(5, 20, u)
    assert not point_in_polygon(15, 20, u)
