"""`roadeye edge run` as a real process: RTSP camera in, MQTT out, Prometheus metrics,
graceful SIGTERM (tracks flushed, events delivered, retained status offline)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.integration.edge.edge_mqtt_helpers import Recorder
from tests.services import free_port, make_test_clip
from tests.unit.edge.edge_onnx_fixtures import write_fixture_models

pytestmark = pytest.mark.services
REPO = Path(__file__).resolve().parents[3]


def metric(port: int, name: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_live_run_two_rtsp_cameras_to_mqtt(mosquitto, rtsp_server_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clip = make_test_clip(tmp_path / "clip.mp4", seconds=4, fps=10)
    rtsp = rtsp_server_factory(clip, loops=20)
    rtsp2 = rtsp_server_factory(clip, loops=20)
    write_fixture_models(tmp_path / "models")
    (tmp_path / "cam.yaml").write_text(yaml.safe_dump({"camera_id": "cam1", "image_size": [320, 240],
                                                       "thresholds": {"no_seatbelt": {"min_driver_px": 20}}}))
    mport = free_port()
    cfg = {"device": {"id": "box-01", "site": "site-1"},
           "cameras": [{"id": "cam1", "source": rtsp.url, "analysis_fps": 5, "calibration": "cam.yaml",
                        "read_timeout_s": 3},
                       {"id": "cam2", "source": rtsp2.url, "analysis_fps": 5, "calibration": "cam.yaml",
                        "decoder": "pyav", "read_timeout_s": 3}],
           "models": {k: f"models/{k}.onnx" for k in ("vehicles", "plates", "occupants", "plate_reader")},
           "broker": {"host": mosquitto.host, "port": mosquitto.port, "heartbeat_s": 1},
           "outbox": {"path": "outbox.sqlite3"}, "metrics_port": mport}
    (tmp_path / "box.yaml").write_text(yaml.safe_dump(cfg))
    rec = Recorder(mosquitto.host, mosquitto.port)
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "edge", "run", "--config", "box.yaml"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        analysed = 0.0
        while time.monotonic() < deadline:
            try:
                analysed = metric(mport, "roadeye_frames_analysed_total")
            except OSError:
                analysed = 0.0
            if analysed >= 16:
                break
            time.sleep(0.5)
        assert analysed >= 16, "live pipeline did not analyse frames"
        assert metric(mport, "roadeye_stage_seconds_count") > 0
        assert rec.status.get("status") == "online"
        deadline = time.monotonic() + 10
        while not rec.heartbeats and time.monotonic() < deadline:
            time.sleep(0.2)
        assert rec.heartbeats
        assert {c: h["connected"] for c, h in rec.heartbeats[-1]["cameras"].items()} == {"cam1": True, "cam2": True}
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        # the one car each camera saw all along: decided at shutdown and delivered before exit
        deadline = time.monotonic() + 10
        while len(rec.events) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(rec.events) == 2, out
        time.sleep(0.5)
        assert rec.status.get("status") == "offline"
    finally:
        if proc.poll() is None:
            proc.kill()
        rec.close()
