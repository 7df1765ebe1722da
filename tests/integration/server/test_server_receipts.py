"""Storage receipts (collector -> edge) through a real mosquitto, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from paho.mqtt.enums import CallbackAPIVersion

from edge.event import Receipt, ReceiptStatus, event_topic
from server.collector import Collector
from server.config import CollectorSettings, MqttSettings
from server.db.engine import Database
from server.evidence_store import LocalEvidenceStore
from server.ingest import Ingestor, receipt_key
from server.sample import SampleDevice, make_message

from .conftest import register
from .test_server_collector import Publisher, subscribed, wait_until

pytestmark = pytest.mark.services


class ReceiptListener:
    """An edge-side subscriber on every device's receipt topic."""

    def __init__(self, host: str, port: int) -> None:
        self.got: list[tuple[str, Receipt]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="receipt-listener", protocol=mqtt.MQTTv5)
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *a: self._subscribed.set()
        self.c.connect(host, port)
        self.c.subscribe("roadeye/v1/+/+/receipts", qos=1)
        self.c.loop_start()
        assert self._subscribed.wait(10)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        assert not msg.retain, "receipts must not be retained"
        with self._lock:
            self.got.append((msg.topic, Receipt.from_bytes(msg.payload)))

    def statuses(self) -> dict[str, list[tuple[str, ReceiptStatus]]]:
        """event_id -> [(topic, status), ...] in arrival order."""
        out: dict[str, list[tuple[str, ReceiptStatus]]] = {}
        with self._lock:
            for topic, r in self.got:
                for item in r.items:
                    out.setdefault(item.event_id, []).append((topic, item.status))
        return out

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def listener(mosquitto) -> Iterator[ReceiptListener]:  # type: ignore[no-untyped-def]
    r = ReceiptListener(mosquitto.host, mosquitto.port)
    yield r
    r.close()


def _collector(db: Database, store: LocalEvidenceStore, mosquitto, receipts: bool = True,  # type: ignore[no-untyped-def]
               workers: int = 0) -> Collector:
    col = Collector(db, store, MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id="rcpt-collector"),
                    CollectorSettings(receipts=receipts, workers=workers))
    col.ingestor.keys.ttl_s = 0.0
    col.start()
    assert col.connected.wait(10)
    return col


def test_receipts_report_stored_duplicate_and_dead_letter(db: Database, store: LocalEvidenceStore, mosquitto,  # type: ignore[no-untyped-def]
                                                          ingestor: Ingestor, device: SampleDevice,
                                                          listener: ReceiptListener) -> None:
    other = SampleDevice(device_id="edge-02", camera_id="cam-2")
    register(db, other)
    col = _collector(db, store, mosquitto)
    pub = Publisher(mosquitto.host, mosquitto.port)
    try:
        subscribed(db, pub, device)
        topic = event_topic(device.site_id, device.camera_id)
        new = [make_message(device, seed=i)[0] for i in range(3)]
        theirs = make_message(other, seed=7)[0]
        forged = make_message(SampleDevice(device_id=device.device_id), seed=9)[0]  # right id, wrong key
        elsewhere = make_message(SampleDevice(site_id="site-b"), seed=11)[0]  # claims a site the topic is not
        for m in new:
            pub.publish(topic, m.to_bytes())
        pub.publish(event_topic(other.site_id, other.camera_id), theirs.to_bytes())
        pub.publish(topic, new[0].to_bytes())  # the same event again
        pub.publish(topic, forged.to_bytes())
        pub.publish(topic, b"not json at all")  # nothing to name: no receipt
        pub.publish(topic, elsewhere.to_bytes())  # refused; its site is not the topic's: no receipt
        wait_until(lambda: col.stats["dead_letter"] >= 3 and col.stats["duplicate"] >= 1
                   and sum(len(v) for v in listener.statuses().values()) >= 6, 30, "receipts for every named event")
        time.sleep(0.3)  # nothing more may come
        got = listener.statuses()
    finally:
        pub.close()
        col.stop()
    mine = f"roadeye/v1/{device.site_id}/{device.device_id}/receipts"
    assert got[new[0].event.event_id] == [(mine, ReceiptStatus.STORED), (mine, ReceiptStatus.DUPLICATE)]
    for m in new[1:]:
        assert got[m.event.event_id] == [(mine, ReceiptStatus.STORED)]
    assert got[theirs.event.event_id] == [(f"roadeye/v1/{other.site_id}/{other.device_id}/receipts",
                                           ReceiptStatus.STORED)]
    assert got[forged.event.event_id] == [(mine, ReceiptStatus.DEAD_LETTER)]
    assert elsewhere.event.event_id not in got
    with listener._lock:
        receipts = [r for _, r in listener.got]
    assert {r.collector_id for r in receipts} == {"rcpt-collector"}
    # one receipt per (site, device) and batch: never more receipts than items
    assert sum(len(r.items) for r in receipts) == 6 and len(receipts) <= 6
    assert col.stats["receipts_sent"] == len(receipts)


def test_receipts_from_worker_processes_and_off_switch(db: Database, store: LocalEvidenceStore, mosquitto,  # type: ignore[no-untyped-def]
                                                       ingestor: Ingestor, device: SampleDevice,
                                                       listener: ReceiptListener) -> None:
    """Validation in a worker process still yields receipts; `receipts=False` sends none."""
    col = _collector(db, store, mosquitto, workers=1)
    pub = Publisher(mosquitto.host, mosquitto.port)
    topic = event_topic(device.site_id, device.camera_id)
    try:
        subscribed(db, pub, device)
        m = make_message(device, seed=21)[0]
        pub.publish(topic, m.to_bytes())
        wait_until(lambda: m.event.event_id in listener.statuses(), 30, "receipt via the worker pool")
        assert listener.statuses()[m.event.event_id][0][1] == ReceiptStatus.STORED
    finally:
        col.stop()
    col = _collector(db, store, mosquitto, receipts=False)
    try:
        quiet = make_message(device, seed=22)[0]
        pub.publish(topic, quiet.to_bytes())
        wait_until(lambda: col.stats["stored"] >= 1, 30, "event stored with receipts off")
        probe = make_message(device, seed=23)[0]  # a receipt, had one been sent, would be here by now
        pub.publish(topic, probe.to_bytes())
        wait_until(lambda: col.stats["stored"] >= 2, 30, "second event stored")
    finally:
        pub.close()
        col.stop()
    assert quiet.event.event_id not in listener.statuses() and probe.event.event_id not in listener.statuses()
    assert col.stats["receipts_sent"] == 0


def test_receipt_key_names_only_well_formed_ids_of_the_topic_site(device: SampleDevice) -> None:
    m = make_message(device, seed=1)[0]
    raw = m.to_bytes()
    assert receipt_key(raw, device.site_id) == (device.site_id, device.device_id, m.event.event_id)
    assert receipt_key(raw, "another-site") is None
    assert receipt_key(raw, device.site_id, max_bytes=100) is None
    assert receipt_key(b"not json", device.site_id) is None
    assert receipt_key(b"[1, 2]", device.site_id) is None
    doc = json.loads(raw)
    for field, bad in (("event_id", "not-a-uuid"), ("device_id", "a/b"), ("device_id", "+"), ("site_id", 5)):
        ev = dict(doc["event"], **{field: bad})
        assert receipt_key(json.dumps({"event": ev}).encode(), device.site_id) is None, (field, bad)


def test_cli_receipts_flag_maps_to_the_settings() -> None:
    import click

    from server.cli import _mqtt_options, _storage_options
    from server.config import ServerConfig

    seen: list[bool] = []

    @click.command()
    @_storage_options
    @_mqtt_options
    def probe(cfg: ServerConfig, mqtt: MqttSettings, device_keys: tuple[str, ...]) -> None:
        seen.append(cfg.collector.receipts)

    assert CliRunner().invoke(probe, []).exit_code == 0
    assert CliRunner().invoke(probe, ["--no-receipts"]).exit_code == 0
    assert CliRunner().invoke(probe, ["--receipts"]).exit_code == 0
    assert seen == [True, False, True]
