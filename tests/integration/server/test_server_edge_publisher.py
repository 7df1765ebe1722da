"""The edge's own publisher (outbox -> MqttPublisher) into the collector, over TLS with
broker passwords: every event arrives once, the edge status and heartbeat are recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from edge.config import BrokerConfig
from edge.event import Heartbeat, utc_now
from edge.outbox import Outbox
from edge.publish import MqttPublisher
from server.collector import Collector
from server.config import CollectorSettings, MqttSettings
from server.db.engine import Database
from server.db.models import DeadLetter, DeviceHealth, EventRow
from server.evidence_store import LocalEvidenceStore
from server.sample import SampleDevice, make_message

from .test_server_collector import wait_until

pytestmark = pytest.mark.services


def test_edge_publisher_over_tls_arrives_once(db: Database, store: LocalEvidenceStore, ingestor,  # type: ignore[no-untyped-def]
                                              device: SampleDevice, broker_factory, tmp_path: Path) -> None:
    broker = broker_factory(tls=True, passwords={"edge-01": "edge-secret", "collector": "col-secret"})
    col = Collector(db, store, MqttSettings(host="127.0.0.1", port=broker.tls_port, tls_ca=broker.ca_cert,
                                            username="collector", password="col-secret", client_id="tls-col"),
                    CollectorSettings())
    col.start()
    assert col.connected.wait(15), broker.log_tail()
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    msgs = [make_message(device, seed=i)[0] for i in range(12)]
    for m in msgs:
        assert outbox.put(m.event.event_id, f"roadeye/v1/{m.event.site_id}/{m.event.camera_id}/events", m.to_bytes())
    assert not outbox.put(msgs[0].event.event_id, "x", b"dup")  # the outbox itself is idempotent too

    def beat() -> Heartbeat:
        return Heartbeat.model_validate({
            "device_id": device.device_id, "site_id": device.site_id, "sent_at": utc_now(), "uptime_s": 5,
            "clock": {"source": "ntp", "synchronized": True, "offset_ms": 0.2},
            "outbox_depth": outbox.depth()[0], "outbox_bytes": outbox.depth()[1]})

    pub = MqttPublisher(BrokerConfig(host="127.0.0.1", port=broker.tls_port, tls=True, ca_cert=broker.ca_cert,
                                     username="edge-01", password="edge-secret", heartbeat_s=0.5),
                        device.device_id, device.site_id, outbox, heartbeat=beat)
    pub.start()
    try:
        assert pub.wait_drained(30)
        wait_until(lambda: col.stats["stored"] >= 12, 30, "12 stored")

        def beat_stored() -> bool:
            with db.session() as s:
                h = s.get(DeviceHealth, device.device_id)
                return h is not None and h.last_heartbeat_at is not None

        wait_until(beat_stored, 15, "a heartbeat")
    finally:
        pub.stop()
    wait_until(lambda: col.stats["status"] >= 2, 10, "online + offline status")  # retained online, then offline
    col.stop()
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(EventRow)) == 12
        assert s.scalar(select(func.count()).select_from(DeadLetter)) == 0
        h = s.get(DeviceHealth, device.device_id)
        assert h is not None and h.status == "offline" and h.last_heartbeat_at is not None
