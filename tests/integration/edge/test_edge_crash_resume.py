"""A killed edge process loses nothing: its outbox resumes on restart; the broker tells the
world it went offline (last will)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from edge.outbox import Outbox
from tests.integration.edge.edge_mqtt_helpers import Recorder

pytestmark = pytest.mark.services
REPO = Path(__file__).resolve().parents[3]


def start_worker(outbox: Path, host: str, port: int) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.integration.edge.edge_worker", str(outbox), host,
                             str(port)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("READY "), f"worker said {line!r}"
    return proc, json.loads(line[6:])


def test_sigkilled_edge_resumes_its_outbox(mosquitto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder(mosquitto.host, mosquitto.port)  # persistent session, survives the broker restart
    mosquitto.stop()
    outbox = tmp_path / "outbox.sqlite3"
    proc, ids = start_worker(outbox, mosquitto.host, mosquitto.port)
    assert len(ids) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert Outbox(outbox).depth()[0] == 2, "both events were committed before the crash"

    mosquitto.start()
    cfg = {"device": {"id": "box-01", "site": "site-1"},
           "cameras": [{"id": "cam1", "source": "rtsp://127.0.0.1/unused"}],
           "broker": {"host": mosquitto.host, "port": mosquitto.port, "require_receipt": False},  # no collector
           "outbox": {"path": str(outbox)}}
    cfg_path = tmp_path / "box.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    # the restarted edge (the real CLI) sends what the dead one left behind
    res = subprocess.run([sys.executable, "-m", "edge.cli", "edge", "drain", "--config", str(cfg_path),
                          "--timeout", "30"], cwd=REPO, capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "sent 2 of 2" in res.stdout
    assert rec.wait_for(set(ids), 20), rec.counts()
    assert Outbox(outbox).depth()[0] == 0
    rec.close()


def test_last_will_marks_a_killed_box_offline(mosquitto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder(mosquitto.host, mosquitto.port)
    proc, ids = start_worker(tmp_path / "outbox.sqlite3", mosquitto.host, mosquitto.port)
    assert rec.wait_for(set(ids), 20)
    deadline = time.monotonic() + 10
    while rec.status.get("status") != "online" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rec.status.get("status") == "online"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 15
    while rec.status.get("status") != "offline" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rec.status == {"status": "offline", "device_id": "box-01", "at": rec.status.get("at")}
    rec.close()
