"""Collector against a real mosquitto broker, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from edge.event import Heartbeat, event_topic, heartbeat_topic
from server.collector import Collector
from server.config import CollectorSettings, MqttSettings
from server.db.engine import Database
from server.db.models import DeadLetter, DeviceHealth, EventRow
from server.evidence_store import LocalEvidenceStore
from server.sample import SampleDevice, make_message

pytestmark = pytest.mark.services
REPO = Path(__file__).resolve().parents[3]


class Publisher:
    """A plain paho MQTT 5 publisher (what an edge box does), QoS 1, waits for PUBACK."""

    def __init__(self, host: str, port: int, client_id: str = "test-edge") -> None:
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.c.connect(host, port)
        self.c.loop_start()

    def publish(self, topic: str, payload: bytes, wait: bool = True) -> mqtt.MQTTMessageInfo:
        info = self.c.publish(topic, payload, qos=1)
        if wait:
            info.wait_for_publish(10)
            assert info.is_published()
        return info

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _heartbeat(dev: SampleDevice) -> bytes:
    return Heartbeat.model_validate({
        "device_id": dev.device_id, "site_id": dev.site_id, "sent_at": datetime.now(UTC), "uptime_s": 1,
        "clock": {"source": "ntp", "synchronized": True, "offset_ms": 0.1}, "outbox_depth": 0,
        "outbox_bytes": 0}).model_dump_json().encode()


def wait_until(pred: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def count(db: Database, model: type) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def subscribed(db: Database, pub: Publisher, dev: SampleDevice) -> None:
    """Publish heartbeats until one is stored: proves the collector's subscriptions are live."""
    def seen() -> bool:
        pub.publish(heartbeat_topic(dev.site_id, dev.device_id), _heartbeat(dev))
        time.sleep(0.1)
        with db.session() as s:
            return s.get(DeviceHealth, dev.device_id) is not None
    wait_until(seen, 20, "collector subscription")


@pytest.fixture
def collector(db: Database, store: LocalEvidenceStore, mosquitto, ingestor) -> Iterator[Collector]:  # type: ignore[no-untyped-def]
    col = Collector(db, store, MqttSettings(host=mosquitto.host, port=mosquitto.port,
                                            client_id="test-collector"),
                    CollectorSettings())
    col.ingestor.keys.ttl_s = 0.0
    col.start()
    assert col.connected.wait(10)
    yield col
    col.stop()


def test_events_arrive_once_and_duplicates_are_stored_once(db: Database, mosquitto, collector: Collector,  # type: ignore[no-untyped-def]
                                                           device: SampleDevice) -> None:
    pub = Publisher(mosquitto.host, mosquitto.port)
    subscribed(db, pub, device)
    topic = event_topic(device.site_id, device.camera_id)
    msgs = [make_message(device, seed=i)[0] for i in range(20)]
    for m in msgs:
        pub.publish(topic, m.to_bytes())
    for m in msgs[:5]:  # the same events delivered a second time
        pub.publish(topic, m.to_bytes())
    wait_until(lambda: collector.stats["stored"] + collector.stats["duplicate"] >= 25, 30, "25 deliveries")
    pub.close()
    assert count(db, EventRow) == 20
    assert collector.stats["stored"] == 20 and collector.stats["duplicate"] == 5
    with db.session() as s:
        ids = set(s.scalars(select(EventRow.event_id)))
    assert ids == {m.event.event_id for m in msgs}
    assert count(db, DeadLetter) == 0


def test_malformed_and_forged_messages_are_dead_lettered(db: Database, mosquitto, collector: Collector,  # type: ignore[no-untyped-def]
                                                         device: SampleDevice) -> None:
    pub = Publisher(mosquitto.host, mosquitto.port)
    subscribed(db, pub, device)
    topic = event_topic(device.site_id, device.camera_id)
    forged, _ = make_message(SampleDevice(device_id=device.device_id), seed=1)
    good, _ = make_message(device, seed=2)
    for payload in (b"not json at all", b'{"event": {"schema_version": 9}}', forged.to_bytes(),
                    good.to_bytes()):
        pub.publish(topic, payload)
    wait_until(lambda: collector.stats["dead_letter"] >= 3 and collector.stats["stored"] >= 1, 20)
    pub.close()
    with db.session() as s:
        reasons = [d.reason for d in s.scalars(select(DeadLetter).order_by(DeadLetter.id))]
    assert len(reasons) == 3
    assert "not JSON" in reasons[0] and "schema_version 9" in reasons[1] and "invalid signature" in reasons[2]
    assert count(db, EventRow) == 1


class FlakyStore(LocalEvidenceStore):
    """Evidence store that fails its first writes (a full or unmounted disk)."""

    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root)
        self.failures = failures

    def put_many(self, items: list[tuple[str, bytes, str]], durable: bool = True, verified: bool = False) -> int:
        if self.failures > 0:
            self.failures -= 1
            raise OSError("No space left on device (injected)")
        return super().put_many(items, durable, verified)


def test_storage_outage_is_retried_without_ack(db: Database, mosquitto, ingestor, tmp_path: Path,  # type: ignore[no-untyped-def]
                                               device: SampleDevice) -> None:
    store = FlakyStore(tmp_path / "flaky", failures=3)
    col = Collector(db, store, MqttSettings(host=mosquitto.host, port=mosquitto.port,
                                            client_id="flaky"), CollectorSettings(retry_max_s=0.2))
    col.start()
    assert col.connected.wait(10)
    pub = Publisher(mosquitto.host, mosquitto.port)
    subscribed(db, pub, device)
    msg, _ = make_message(device, seed=3)
    pub.publish(event_topic(device.site_id, device.camera_id), msg.to_bytes())
    wait_until(lambda: count(db, EventRow) == 1, 20, "event stored after the outage")
    assert col.stats["storage_errors"] == 3 and col.stats["stored"] == 1
    col.stop()
    pub.close()


def _spawn_collector(db_url: str, data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "server", "collect", "--db", db_url, "--data-dir", str(data_dir),
         "--mqtt-port", str(port), "--client-id", "killable-collector", "--workers", "1"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "ab"),
    )


@pytest.mark.slow
def test_sigkilled_collector_loses_nothing(db: Database, db_url: str, mosquitto, ingestor,  # type: ignore[no-untyped-def]
                                           tmp_path: Path, device: SampleDevice) -> None:
    n = 100
    msgs = [make_message(device, seed=i)[0].to_bytes() for i in range(n)]
    topic = event_topic(device.site_id, device.camera_id)
    log = tmp_path / "collector.log"
    proc = _spawn_collector(db_url, tmp_path / "data", mosquitto.port, log)
    pub = Publisher(mosquitto.host, mosquitto.port)
    try:
        subscribed(db, pub, device)
        done = threading.Event()

        def publish_all() -> None:
            for p in msgs:
                pub.publish(topic, p)
                time.sleep(0.01)
            done.set()

        t = threading.Thread(target=publish_all)
        t.start()
        wait_until(lambda: count(db, EventRow) >= n // 4, 30, "first quarter stored")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = count(db, EventRow)
        time.sleep(0.5)  # events keep flowing into the broker while no collector runs
        proc = _spawn_collector(db_url, tmp_path / "data", mosquitto.port, log)
        t.join(60)
        assert done.is_set()
        wait_until(lambda: count(db, EventRow) == n, 60, f"all {n} events after restart")
        time.sleep(1.0)
        assert count(db, EventRow) == n  # and no extra rows
        assert killed_at < n, "kill happened after everything was stored: the test proved nothing"
        assert count(db, DeadLetter) == 0
    finally:
        pub.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    assert proc.returncode == 0, log.read_text()[-3000:]


@pytest.mark.slow
def test_postgres_outage_nothing_acked_until_it_returns(mosquitto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A real PostgreSQL stopped under the collector: events published meanwhile are not
    acknowledged (the broker keeps them) and are all stored once it is back."""
    from server.db.models import Device
    from tests.services import PostgresServer

    with PostgresServer() as pg:
        url = pg.create_database("outage")
        db = Database(url)
        dev = SampleDevice()
        with db.session() as s:
            s.add(Device(device_id=dev.device_id, public_key_pem=dev.public_pem, site_id=dev.site_id))
        col = Collector(db, LocalEvidenceStore(tmp_path / "ev"),
                        MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id="outage"),
                        CollectorSettings(retry_max_s=0.5))
        col.start()
        assert col.connected.wait(10)
        pub = Publisher(mosquitto.host, mosquitto.port)
        subscribed(db, pub, dev)
        topic = event_topic(dev.site_id, dev.camera_id)
        first = make_message(dev, seed=1)[0]
        pub.publish(topic, first.to_bytes())
        wait_until(lambda: col.stats["stored"] == 1, 20, "first event")
        time.sleep(0.5)
        acked_before = col.stats["acked"]
        pg.stop()
        msgs = [make_message(dev, seed=i)[0] for i in range(2, 12)]
        for m in msgs:
            pub.publish(topic, m.to_bytes())
        wait_until(lambda: col.stats["storage_errors"] >= 2, 30, "storage errors while the database is down")
        assert col.stats["stored"] == 1 and col.stats["acked"] == acked_before  # nothing acknowledged
        pg.start()
        wait_until(lambda: col.stats["stored"] == 11, 60, "all events after the database came back")
        col.stop()
        pub.close()
        assert count(db, EventRow) == 11 and count(db, DeadLetter) == 0
        db.dispose()


@pytest.mark.slow
def test_two_collectors_split_the_stream_and_one_retires(db: Database, store: LocalEvidenceStore, mosquitto,  # type: ignore[no-untyped-def]
                                                         ingestor, device: SampleDevice) -> None:
    """Shared subscription: two collectors split the events. One goes away (its persistent
    session keeps receiving a share); `retire` drains that share and ends the session, after
    which the remaining collector gets everything. Nothing is lost or stored twice."""
    def make(cid: str) -> Collector:
        c = Collector(db, store, MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id=cid),
                      CollectorSettings())
        c.ingestor.keys.ttl_s = 0.0
        return c

    a, b = make("col-a").start(), make("col-b").start()
    assert a.connected.wait(10) and b.connected.wait(10)
    pub = Publisher(mosquitto.host, mosquitto.port)
    subscribed(db, pub, device)
    topic = event_topic(device.site_id, device.camera_id)
    msgs = [make_message(device, seed=i)[0] for i in range(40)]
    for m in msgs[:10]:
        pub.publish(topic, m.to_bytes())
    wait_until(lambda: count(db, EventRow) == 10, 20, "first 10")
    assert a.stats["stored"] > 0 and b.stats["stored"] > 0  # the group split the load
    a.stop()  # gone, but its session stays subscribed in the group
    for m in msgs[10:30]:
        pub.publish(topic, m.to_bytes())
    wait_until(lambda: b.stats["stored"] + a.stats["stored"] >= 10 + 5, 20, "b's share")
    time.sleep(1.0)
    held = 30 - count(db, EventRow)
    assert held > 0, "the offline member got no share: the scenario did not happen"
    drained = make("col-a").retire(idle_s=1.5, timeout_s=60)
    assert drained >= held
    assert count(db, EventRow) == 30
    for m in msgs[30:]:
        pub.publish(topic, m.to_bytes())
    wait_until(lambda: count(db, EventRow) == 40, 20, "all 40 via the remaining collector")
    b.stop()
    pub.close()
    assert count(db, DeadLetter) == 0
