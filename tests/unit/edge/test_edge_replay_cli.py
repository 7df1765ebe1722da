"""`roadeye edge replay` and `score` through the real CLI with real (tiny, fixed-output)
ONNX models: model loading, replay defaults (<clip>.camera.yaml, ./models), JSONL output
with evidence, determinism, and the summary table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge.event import EventMessage
from tests.unit.edge.edge_doubles import CarSpec, write_clip
from tests.unit.edge.edge_onnx_fixtures import write_fixture_models

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("replay")
    write_clip(str(d / "clip.mp4"), [CarSpec(40, 40, w=240, h=180)], 50, size=(320, 240), fps=25.0)
    (d / "clip.camera.yaml").write_text(yaml.safe_dump({"camera_id": "gate-3", "image_size": [320, 240],
                                                        "thresholds": {"no_seatbelt": {"min_driver_px": 20}}}))
    write_fixture_models(d / "models")
    return d


def replay(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge.cli", "edge", "replay", "clip.mp4", "--no-progress", *args],
                          cwd=workdir, capture_output=True, text=True, timeout=120)


def test_replay_without_config_writes_signed_events(workdir: Path) -> None:
    res = replay(workdir, "--out", "a.jsonl")
    assert res.returncode == 0, res.stderr
    lines = (workdir / "a.jsonl").read_text().splitlines()
    assert len(lines) == 1
    msg = EventMessage.from_bytes(lines[0].encode())
    ev = msg.event
    assert ev.violation.value == "no_seatbelt"
    assert ev.camera_id == "gate-3"  # from clip.camera.yaml
    assert ev.plate is not None and ev.plate.text == "皖A12345"
    assert ev.frames_observed == 10  # 50 frames at 25 fps, analysed at 5 fps
    assert {m.name for m in ev.models} == {"vehicles", "occupants", "plates", "plate_reader"}
    assert all(m.version == "fixture-1" for m in ev.models)
    assert len(msg.blobs()) == 3
    assert "frames analysed" in res.stdout and "events" in res.stdout


@pytest.mark.slow
def test_replay_is_deterministic_and_analysis_fps_applies(workdir: Path) -> None:
    assert replay(workdir, "--out", "b.jsonl").returncode == 0
    assert replay(workdir, "--out", "c.jsonl").returncode == 0
    b = [json.loads(x)["event"] for x in (workdir / "b.jsonl").read_text().splitlines()]
    c = [json.loads(x)["event"] for x in (workdir / "c.jsonl").read_text().splitlines()]
    assert [e["event_id"] for e in b] == [e["event_id"] for e in c]
    assert b == c
    res = replay(workdir, "--out", "d.jsonl", "--analysis-fps", "10")
    assert res.returncode == 0, res.stderr
    d = json.loads((workdir / "d.jsonl").read_text().splitlines()[0])["event"]
    assert d["frames_observed"] == 20


def test_replay_with_config_and_signing_key(workdir: Path) -> None:
    subprocess.run([sys.executable, "-m", "edge.cli", "edge", "keygen", "--out", "keys", "--device-id", "box-7"],
                   cwd=workdir, check=True, capture_output=True)
    cfg = {"device": {"id": "box-7", "site": "site-9", "key_path": "keys/box-7.key"},
           "cameras": [{"id": "gate-3", "source": "ignored.mp4", "calibration": "clip.camera.yaml"}],
           "models": {k: f"models/{k}.onnx" for k in ("vehicles", "plates", "occupants", "plate_reader")}}
    (workdir / "box.yaml").write_text(yaml.safe_dump(cfg))
    res = replay(workdir, "--config", "box.yaml", "--out", "e.jsonl")
    assert res.returncode == 0, res.stderr
    ev = EventMessage.from_bytes((workdir / "e.jsonl").read_bytes().splitlines()[0]).event
    from edge.keys import load_public_key

    assert ev.device_id == "box-7" and ev.site_id == "site-9"
    assert ev.verify(load_public_key(workdir / "keys/box-7.pub"))


def test_missing_models_is_a_clear_error(tmp_path: Path, workdir: Path) -> None:
    (tmp_path / "clip.mp4").write_bytes((workdir / "clip.mp4").read_bytes())
    res = subprocess.run([sys.executable, "-m", "edge.cli", "edge", "replay", "clip.mp4", "--out", "x.jsonl",
                          "--config", str(tmp_path / "nope.yaml")], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode != 0 and "nope.yaml" in res.stderr
    cfg = {"device": {"id": "b", "site": "s"}, "cameras": [{"id": "c", "source": "clip.mp4"}],
           "models": {"vehicles": "missing/vehicles.onnx"}}
    (tmp_path / "box.yaml").write_text(yaml.safe_dump(cfg))
    res = subprocess.run([sys.executable, "-m", "edge.cli", "edge", "replay", "clip.mp4", "--out", "x.jsonl",
                          "--config", "box.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode != 0 and "vehicles model not found" in res.stderr


def test_replay_trace_explains_misses_in_score(workdir: Path) -> None:
    """--trace writes one line per ended track; score --trace names why a violation was missed."""
    res = replay(workdir, "--out", "t.jsonl", "--trace", "t.trace")
    assert res.returncode == 0, res.stderr
    (rec,) = [json.loads(x) for x in (workdir / "t.trace").read_text().splitlines()]
    assert rec["decided"] == ["no_seatbelt"] and len(rec["observations"]) == 10
    assert {o["verdict"]["no_seatbelt"] for o in rec["observations"]} == {1}
    gt = {"schema": "roadeye-groundtruth/1", "fps": 25.0, "vehicles": [
        {"id": 1, "violations": ["phone_use"], "plate": "皖A12345",  # pretend it also held a phone
         "track": [{"frame": o["seq"], "box": o["box"], "driver_box": [0, 0, 50, 100]}
                   for o in rec["observations"]]}]}
    (workdir / "t.gt.json").write_text(json.dumps(gt))
    cmd = [sys.executable, "-m", "edge.cli", "edge", "score", "t.gt.json", "t.jsonl", "--trace", "t.trace",
           "--json-out", "t.score.json", "--analysis-fps", "25"]
    res = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    s = json.loads((workdir / "t.score.json").read_text())
    assert s["missed"] == [{"vehicle": 1, "violation": "phone_use", "plate": "皖A12345",
                                    "why": "phone seen in 0 of 10 judged frames (need 3) (occupants model)"}]
