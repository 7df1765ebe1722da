"""`roadeye demo` for real: mosquitto child, `roadeye server run`, device key registered,
replay into the broker; the collector must store the signed event and its evidence."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.services import free_port
from tests.unit.edge.edge_doubles import CarSpec, write_clip
from tests.unit.edge.edge_onnx_fixtures import write_fixture_models

pytestmark = [pytest.mark.services, pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("server.cli") is None, reason="server not installed")]
REPO = Path(__file__).resolve().parents[3]


def test_demo_end_to_end(tmp_path: Path) -> None:
    write_clip(str(tmp_path / "clip.mp4"), [CarSpec(40, 40, w=240, h=180)], 50, size=(320, 240), fps=25.0)
    (tmp_path / "clip.camera.yaml").write_text(yaml.safe_dump(
        {"camera_id": "gate-3", "image_size": [320, 240], "thresholds": {"no_seatbelt": {"min_driver_px": 20}}}))
    write_fixture_models(tmp_path / "models")
    res = subprocess.run([sys.executable, "-m", "edge.cli", "demo", "--clip", str(tmp_path / "clip.mp4"),
                          "--models", str(tmp_path / "models"), "--workdir", str(tmp_path / "work"),
                          "--http-port", str(free_port()), "--exit"], cwd=REPO, capture_output=True, text=True,
                         timeout=240)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "edge published 1 event(s)" in res.stdout
    m = re.search(r"stored rows: (\{.*\})", res.stdout)
    assert m, res.stdout
    rows = eval(m.group(1))  # a dict literal printed by the demo
    assert rows.get("events") == 1 and rows.get("evidence") == 3
    assert re.search(r"review app:\s+http://127\.0\.0\.1:\d+ +\(login admin / \S+\)", res.stdout)
    log = (tmp_path / "work" / "server.log").read_text()
    assert "dead-letter" not in log, log[-2000:]
