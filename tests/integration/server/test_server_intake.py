"""Bounded intake: a QoS 0 flood (which bypasses MQTT flow control) and a burst of QoS 1
events (mosquitto 2.0.11 stops enforcing our Receive Maximum after the first PUBACKs) cannot
grow the collector's memory past its bound; every QoS 1 event still arrives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from edge.event import event_topic
from server.collector import Collector
from server.config import CollectorSettings, MqttSettings
from server.db.engine import Database
from server.db.models import EventRow
from server.evidence_store import LocalEvidenceStore
from server.ingest import Ingestor
from server.sample import SampleDevice, make_message

from .test_server_collector import Publisher, subscribed, wait_until

pytestmark = pytest.mark.services

FLOOD = r"""
import sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
host, port, topic, path, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
payload = open(path, "rb").read()
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="qos0-flood", protocol=mqtt.MQTTv5)
c.connect(host, port)
c.loop_start()
for i in range(n):
    c.publish(topic, payload, qos=0)
    while len(c._out_packet) > 50:  # keep the publisher's own memory small, not the rate
        time.sleep(0.001)
time.sleep(0.5)
c.disconnect()
c.loop_stop()
print("flooded", n, flush=True)
"""


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def test_qos0_flood_is_bounded_and_qos1_events_all_arrive(db_url: str, tmp_path: Path, mosquitto,  # type: ignore[no-untyped-def]
                                                        device: SampleDevice) -> None:
    db = Database(db_url)
    store = LocalEvidenceStore(tmp_path / "evidence")
    Ingestor(db, store)  # migrations done
    from .conftest import register
    register(db, device)
    receive_max, cap_n, cap_bytes = 10, 20, 3_000_000
    col = Collector(db, store, MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id="intake",
                                            receive_maximum=receive_max),
                    CollectorSettings(workers=0, intake_max_messages=cap_n, intake_max_bytes=cap_bytes))
    col.ingestor.keys.ttl_s = 60.0
    col.start()
    assert col.connected.wait(10)
    pub = Publisher(mosquitto.host, mosquitto.port)
    flood = None
    try:
        subscribed(db, pub, device)
        topic = event_topic(device.site_id, device.camera_id)
        big = make_message(device, seed=999, evidence_bytes=120_000)[0].to_bytes()
        (tmp_path / "flood.bin").write_bytes(big)
        n_flood = 2500  # ~0.3 GB if it were all held in memory
        rss0 = _rss_bytes()
        flood = subprocess.Popen([sys.executable, "-c", FLOOD, mosquitto.host, str(mosquitto.port), topic,
                                  str(tmp_path / "flood.bin"), str(n_flood)], stdout=subprocess.PIPE, text=True)
        wait_until(lambda: col.stats["dropped_qos0"] > 0, 60, "the intake bound to be reached")
        events = [make_message(device, seed=i)[0] for i in range(100)]
        infos = [pub.publish(topic, m.to_bytes(), wait=False) for m in events]  # QoS 1, during the flood
        for info in infos:
            info.wait_for_publish(60)
        out, _ = flood.communicate(timeout=300)
        assert f"flooded {n_flood}" in out
        ids = {m.event.event_id for m in events}

        def all_stored() -> bool:
            with db.session() as s:
                return len(set(s.scalars(select(EventRow.event_id).where(EventRow.event_id.in_(ids))))) == len(ids)
        wait_until(all_stored, 120, "every QoS 1 event stored")
        wait_until(lambda: col.intake() == (0, 0), 60, "the intake to drain")  # and its accounting to balance
        rss_growth = _rss_bytes() - rss0
    finally:
        if flood is not None and flood.poll() is None:
            flood.kill()
        pub.close()
        col.stop()
        db.dispose()
    st = col.stats
    # most of the flood was refused at the door (the broker may drop some QoS 0 itself)
    assert st["dropped_qos0"] > n_flood // 4, dict(st)
    # QoS 1 waited for room (backpressure) instead of piling up; only a wait that timed out
    # (intake_wait_s, for keep-alives during outages) may admit one message past the bound
    assert st["intake_waits"] > 0, dict(st)
    extra = st["intake_wait_timeouts"]
    assert st["intake_high_water_messages"] <= cap_n + extra, dict(st)
    assert st["intake_high_water_bytes"] <= cap_bytes + (1 + extra) * len(big), dict(st)
    assert rss_growth < 150_000_000, f"collector memory grew by {rss_growth / 1e6:.0f} MB"
