"""`roadeye edge score`: matching events to ground-truth vehicles, precision / recall /
plate exact / duplicates, on events produced by the real pipeline over a synthetic scene."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edge.commands import edge
from edge.event import EventMessage, ViolationType
from edge.score import GroundTruthError, load_ground_truth, score
from tests.unit.edge.edge_doubles import PLATE_GRAYS, CarSpec
from tests.unit.edge.test_edge_pipeline import BELTLESS, PHONER, make, run, scene_frames

N = 10


def gt_vehicle(vid: int, c: CarSpec, violations: list[str], driver_h: float = 120) -> dict[str, Any]:
    track = []
    for t in range(N):
        x1, y1 = c.x + c.vx * t, c.y + c.vy * t
        track.append({"frame": t, "box": [x1, y1, x1 + c.w, y1 + c.h], "visible_fraction": 1.0,
                      "plate_box": None, "windshield_box": None,
                      "driver_box": [x1 + 250, y1 + 40, x1 + 330, y1 + 40 + driver_h]})
    return {"id": vid, "type": "car", "plate": PLATE_GRAYS[c.plate_gray], "violations": violations,
            "track": track}


def ground_truth(extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"schema": "roadeye-groundtruth/1", "video": "synthetic.mp4", "width": 1920, "height": 1080,
            "fps": 5.0, "frames": N,
            "vehicles": [gt_vehicle(1, BELTLESS, ["no_seatbelt"]), gt_vehicle(2, PHONER, ["phone_use"]),
                         *(extra or [])]}


@pytest.fixture(scope="module")
def messages() -> list[EventMessage]:
    p, out, _ = make()
    run(p, scene_frames([BELTLESS, PHONER], N))
    assert len(out) == 2
    return out


def test_perfect_replay(messages: list[EventMessage]) -> None:
    s = score(ground_truth(), [m.event for m in messages])
    assert (s.precision, s.recall, s.plate_exact_rate, s.duplicates) == (1.0, 1.0, 1.0, 0)
    assert s.per_violation["no_seatbelt"]["detected"] == 1


def test_duplicates_misses_and_false_positives(messages: list[EventMessage]) -> None:
    evs = [m.event for m in messages]
    nb = next(e for e in evs if e.violation.value == "no_seatbelt")
    dup = nb.model_copy(update={"event_id": "01890000-0000-7000-8000-000000000001"})
    wrong = nb.model_copy(update={"violation": ViolationType.PHONE_USE})  # that car has no phone
    missed = gt_vehicle(3, CarSpec(100, 620), ["no_seatbelt"])
    tiny = gt_vehicle(4, CarSpec(1000, 900), ["phone_use"], driver_h=20)  # not decidable: driver too small
    s = score(ground_truth([missed, tiny]), [*evs, dup, wrong])
    assert s.duplicates == 1
    assert s.false_positives == 1
    assert s.precision == pytest.approx(2 / 4)
    assert s.decidable == 3 and s.recall == pytest.approx(2 / 3, abs=1e-4)
    assert s.all_violations == 4 and s.recall_all == pytest.approx(2 / 4)
    assert [m["vehicle"] for m in s.missed] == [3]


def test_plate_mismatch(messages: list[EventMessage]) -> None:
    gt = ground_truth()
    gt["vehicles"][0]["plate"] = "皖A99999"
    s = score(gt, [m.event for m in messages])
    assert s.plate_exact == 1 and s.plate_checked == 2
    assert s.plate_mismatches == [{"vehicle": 1, "truth": "皖A99999", "read": ["皖A12345"]}]


def test_score_cli(tmp_path: Path, messages: list[EventMessage]) -> None:
    gt = tmp_path / "clip.groundtruth.json"
    gt.write_text(json.dumps(ground_truth(), ensure_ascii=False))
    ev = tmp_path / "events.jsonl"
    ev.write_bytes(b"".join(m.to_bytes() + b"\n" for m in messages))
    res = CliRunner().invoke(edge, ["score", str(gt), str(ev), "--json-out", str(tmp_path / "s.json")])
    assert res.exit_code == 0, res.output
    d = json.loads((tmp_path / "s.json").read_text())
    assert d["precision"] == 1.0 and d["recall"] == 1.0 and d["duplicates"] == 0
    assert "precision" in res.output


def test_bad_ground_truth(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"schema": "other"}))
    with pytest.raises(GroundTruthError, match="roadeye-groundtruth/1"):
        load_ground_truth(p)
