"""Track traces and miss explanations: each missed violation is blamed on the first stage
that lost it (table-driven over hand-made traces), and the replay/score CLI round trip."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge.cascade import suppress_duplicates
from edge.trace import explain_miss
from edge.types import Detections

GT = {"id": 7, "violations": ["no_seatbelt", "phone_use"],
      "track": [{"frame": f, "box": [100 + f, 100, 300 + f, 250]} for f in range(0, 40, 5)]}


def obs(seq: int, *, dx: float = 0, zone: bool = True, ws: bool = True, nb: int | None = None,
        ph: int | None = None, driver: list[float] | None = None) -> dict[str, Any]:
    return {"seq": seq, "box": [100 + seq + dx, 100, 300 + seq + dx, 250], "in_zone": zone, "windshield": ws,
            "driver": driver, "belt": 0.0, "phone": 0.0, "plate": None,
            "verdict": {"no_seatbelt": nb, "phone_use": ph}}


def track(tid: int, rows: list[dict[str, Any]], decided: list[str] | None = None) -> dict[str, Any]:
    return {"camera": "c", "track_id": tid, "k": {"no_seatbelt": 3, "phone_use": 3}, "decided": decided or [],
            "observations": rows}


CASES = [
    ("no track there", [track(1, [obs(5, dx=900), obs(10, dx=900)])], "no_seatbelt", "never tracked"),
    ("out of zone", [track(1, [obs(5, zone=False), obs(10, zone=False)])], "no_seatbelt", "never inside the capture"),
    ("no windshield", [track(1, [obs(5, ws=False), obs(10, ws=False)])], "phone_use", "windshield never found"),
    ("driver too weak", [track(1, [obs(5, driver=[0.2, 90]), obs(10)])], "no_seatbelt",
     "found in 1 of 2 windshield frames"),
    ("strap seen", [track(1, [obs(s, nb=-1, ph=-1, driver=[0.9, 90]) for s in (5, 10, 15)] + [obs(20, nb=1, ph=-1)])],
     "no_seatbelt", "only 1 of 4 judged frames without a strap (need 3); a strap was seen in 3"),
    ("split over tracks", [track(1, [obs(5, nb=1, ph=-1), obs(10, nb=1, ph=-1)]),
                           track(2, [obs(15, nb=1, ph=-1), obs(20, nb=0, ph=-1)])],
     "no_seatbelt", "only 3 of 4 judged frames without a strap (need 3) over 2 tracks"),
    ("no phone", [track(1, [obs(s, nb=-1, ph=-1) for s in (5, 10, 15, 20)])], "phone_use",
     "phone seen in 0 of 4 judged frames (need 3)"),
    ("decided but dropped", [track(1, [obs(5, nb=1, ph=-1)], decided=["no_seatbelt"])], "no_seatbelt",
     "no event kept"),
]


@pytest.mark.parametrize(("traces", "violation", "expect"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_explain_miss(traces: list[dict[str, Any]], violation: str, expect: str) -> None:
    assert expect in explain_miss(GT, violation, traces)


def test_duplicate_vehicle_boxes_of_different_classes_become_one() -> None:
    d = Detections(np.array([[0, 0, 100, 80], [2, 1, 101, 80], [300, 0, 400, 80], [50, 0, 150, 80]], np.float32),
                   np.array([0.4, 0.8, 0.7, 0.6], np.float32), np.array([3, 0, 0, 0]))
    kept = suppress_duplicates(d, 0.7)
    assert kept.confidence.tolist() == pytest.approx([0.8, 0.7, 0.6])  # the 0.4 "van" copy of the car goes
    assert kept.class_id.tolist() == [0, 0, 0]
