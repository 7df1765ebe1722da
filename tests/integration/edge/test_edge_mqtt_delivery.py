"""Publishing with the REAL mosquitto: exactly once in the normal case, nothing lost across
a broker outage, retained online/offline status with last will, heartbeats."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from edge.config import BrokerConfig
from edge.event import (
    CameraHealth,
    ClockSource,
    ClockSync,
    Heartbeat,
    Receipt,
    ReceiptItem,
    ReceiptStatus,
    receipt_topic,
    utc_now,
)
from edge.outbox import Outbox
from edge.publish import MqttPublisher
from edge.runner import FanOut, OutboxSink
from tests.integration.edge.edge_mqtt_helpers import Recorder
from tests.unit.edge.test_edge_pipeline import BELTLESS, PHONER, CarSpec, make, scene_frames

pytestmark = pytest.mark.services

CARS = [BELTLESS, PHONER]


def heartbeat() -> Heartbeat:
    return Heartbeat(device_id="box-01", site_id="site-1", sent_at=utc_now(), uptime_s=1.0,
                     clock=ClockSync(source=ClockSource.NTP, synchronized=True, offset_ms=0.3),
                     outbox_depth=0, outbox_bytes=0,
                     cameras={"cam1": CameraHealth(connected=True, fps_in=25, fps_analysed=5, frames_dropped=0,
                                                   reconnects=0)})


def publisher(broker, tmp_path: Path, **kw) -> tuple[MqttPublisher, Outbox]:  # type: ignore[no-untyped-def]
    ob = Outbox(tmp_path / "outbox.sqlite3")
    kw.setdefault("require_receipt", False)  # a bare broker: no collector sends storage receipts
    cfg = BrokerConfig(host=broker.host, port=broker.port, heartbeat_s=0.3, keepalive_s=5, **kw)
    pub = MqttPublisher(cfg, "box-01", "site-1", ob, heartbeat=heartbeat)
    return pub, ob


def test_events_arrive_exactly_once_with_status_and_heartbeat(mosquitto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder(mosquitto.host, mosquitto.port)
    pub, ob = publisher(mosquitto, tmp_path)
    pub.start()
    p, out, _ = make()
    p.sink = FanOut(out.append, OutboxSink(ob, "site-1", pub.notify))
    for f in scene_frames(CARS, 10):
        p.process([f])
    p.flush()
    ids = {m.event.event_id for m in out}
    assert len(ids) == 2
    assert rec.wait_for(ids, 20), f"got {rec.counts()}"
    assert pub.wait_drained(10)
    time.sleep(1.0)  # anything duplicated would show up by now
    assert rec.counts() == {i: 1 for i in ids}
    assert rec.status.get("status") == "online"
    assert rec.heartbeats and rec.heartbeats[-1]["cameras"]["cam1"]["fps_analysed"] == 5
    assert ob.depth() == (0, 0)
    pub.stop()
    time.sleep(0.5)
    assert rec.status.get("status") == "offline"
    rec.close()


def test_broker_outage_during_replay_loses_nothing(mosquitto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder(mosquitto.host, mosquitto.port)
    pub, ob = publisher(mosquitto, tmp_path)
    pub.start()
    p, out, _ = make()
    p.sink = FanOut(out.append, OutboxSink(ob, "site-1", pub.notify))
    # four cars, one after the other: their tracks end (and events fire) at different times
    cars = [CarSpec(100 + 0 * 0, 80, vx=60, belt=False, plate_gray=250),
            CarSpec(1500, 620, vx=-60, phone=True, plate_gray=230)]
    frames = scene_frames(cars, 14)
    for f in frames[:7]:
        p.process([f])
    p.flush()  # end the first cars' tracks: their events go out while the broker is up
    first = {m.event.event_id for m in out}
    assert first and rec.wait_for(first, 20)

    mosquitto.stop(signal.SIGKILL)  # crash, not a clean shutdown
    time.sleep(0.5)
    for f in scene_frames([CarSpec(100, 80, vx=50, belt=False, phone=True, plate_gray=210)], 8,
                          start=frames[-1].captured_at):
        p.process([f])
    p.flush()
    during = {m.event.event_id for m in out} - first
    assert len(during) == 2
    time.sleep(1.0)
    assert ob.depth()[0] == 2, "events made during the outage wait in the outbox"

    mosquitto.start()
    assert rec.wait_for(first | during, 40), f"got {rec.counts()}, want {first | during}"
    assert pub.wait_drained(20)
    pub.stop()
    rec.close()


def test_outbox_resends_in_order_after_restart(mosquitto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Rows written while no publisher ran go out oldest first when one starts."""
    ob = Outbox(tmp_path / "outbox.sqlite3")
    ids = [f"0190{i:04x}-0000-7000-8000-000000000000" for i in range(30)]
    for i in ids:
        ob.put(i, "roadeye/v1/site-1/cam1/events", b'{"event":{"event_id":"%s"}}' % i.encode())
    rec = Recorder(mosquitto.host, mosquitto.port)
    pub = MqttPublisher(BrokerConfig(host=mosquitto.host, port=mosquitto.port, max_inflight=5,
                                     require_receipt=False), "box-01", "site-1", ob)
    pub.start()
    assert rec.wait_for(set(ids), 20)
    assert rec.events[:30] == ids
    assert pub.wait_drained(5)
    pub.stop()
    rec.close()


def test_tls_and_password(broker_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b = broker_factory(tls=True, passwords={"box-01": "s3cret", "rec": "r"})
    ob = Outbox(tmp_path / "o.sqlite3")
    ob.put("01900000-0000-7000-8000-000000000000", "roadeye/v1/site-1/cam1/events",
           b'{"event":{"event_id":"01900000-0000-7000-8000-000000000000"}}')
    # a subscriber must exist: a PUBACK "no matching subscribers" keeps the row for a retry
    rec = Recorder(b.host, b.port, username="rec", password="r")
    bad = MqttPublisher(BrokerConfig(host=b.host, port=b.tls_port, tls=True, ca_cert=b.ca_cert, client_id="bad",
                                     username="box-01", password="wrong", require_receipt=False),
                        "box-01", "site-1", ob)
    bad.start()
    time.sleep(1.5)
    assert not bad.connected.is_set() and ob.depth()[0] == 1
    bad.stop()
    good = MqttPublisher(BrokerConfig(host=b.host, port=b.tls_port, tls=True, ca_cert=b.ca_cert,
                                      username="box-01", password="s3cret", require_receipt=False),
                         "box-01", "site-1", ob)
    good.start()
    assert good.wait_drained(40)  # paho's reconnect backoff on a loaded machine
    assert rec.wait_for({"01900000-0000-7000-8000-000000000000"}, 10)
    good.stop()
    rec.close()


class Receipter:
    """Stands in for the collector's receipt publishing (the collector itself is tested in
    tests/integration/server and tests/faults): it answers each event with a storage receipt,
    except the first `ignore` deliveries of each event id (as if the broker lost them)."""

    def __init__(self, host: str, port: int, ignore: int = 0) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.ignore, self.seen = ignore, Counter()  # type: Counter[str]
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="receipter", protocol=mqtt.MQTTv5)
        ready = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("roadeye/v1/+/+/events", qos=1)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert ready.wait(10)

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        eid = json.loads(msg.payload)["event"]["event_id"]
        self.seen[eid] += 1
        if self.seen[eid] <= self.ignore:
            return
        site = msg.topic.split("/")[2]
        r = Receipt(collector_id="receipter", sent_at=utc_now(),
                    items=[ReceiptItem(event_id=eid, status=ReceiptStatus.STORED)])
        client.publish(receipt_topic(site, "box-01"), r.to_bytes(), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _ids(n: int) -> list[str]:
    return [f"0190{i:04x}-0000-7000-8000-00000000000{n % 10}" for i in range(n)]


def test_rows_leave_the_outbox_only_on_a_storage_receipt(mosquitto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "outbox.sqlite3"
    ob = Outbox(path)
    ids = _ids(6)
    for i in ids:
        ob.put(i, "roadeye/v1/site-1/cam1/events", b'{"event":{"event_id":"%s"}}' % i.encode())
    rec = Recorder(mosquitto.host, mosquitto.port, topic="roadeye/v1/+/+/events")  # PUBACK 0x00, no receipts
    cfg = BrokerConfig(host=mosquitto.host, port=mosquitto.port, receipt_timeout_s=3600)
    pub = MqttPublisher(cfg, "box-01", "site-1", ob)
    pub.start()
    assert rec.wait_for(set(ids), 20)
    time.sleep(1.0)
    assert ob.depth()[0] == 6 and ob.awaiting_receipt() == 6, "a PUBACK alone must not forget an event"
    assert not pub.wait_drained(0.5)
    pub.stop()
    ob.close()
    rec.close()

    r = Receipter(mosquitto.host, mosquitto.port)
    ob = Outbox(path)  # the edge restarts: it cannot know whether receipts were missed, so it resends
    pub = MqttPublisher(cfg, "box-01", "site-1", ob)
    pub.start()
    try:
        assert pub.wait_drained(20), ob.depth()
        assert pub.receipted == 6 and pub.resent == 0
        assert r.seen == {i: 1 for i in ids}
    finally:
        pub.stop()
        r.close()


def test_a_lost_event_is_resent_until_a_receipt_names_it(mosquitto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The broker PUBACKs but the collector never got it (here: the receipter ignores each event's
    first delivery): after receipt_timeout_s the edge publishes it again, then forgets it."""
    ob = Outbox(tmp_path / "outbox.sqlite3")
    ids = _ids(4)
    for i in ids:
        ob.put(i, "roadeye/v1/site-1/cam1/events", b'{"event":{"event_id":"%s"}}' % i.encode())
    r = Receipter(mosquitto.host, mosquitto.port, ignore=1)
    pub = MqttPublisher(BrokerConfig(host=mosquitto.host, port=mosquitto.port, receipt_timeout_s=1.0),
                        "box-01", "site-1", ob)
    pub.start()
    try:
        assert pub.wait_drained(30), ob.depth()
        assert r.seen == {i: 2 for i in ids}
        assert pub.resent == 4 and pub.receipted == 4
    finally:
        pub.stop()
        r.close()


def test_malformed_receipts_are_ignored(mosquitto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    ob = Outbox(tmp_path / "outbox.sqlite3")
    ob.put(_ids(1)[0], "roadeye/v1/site-1/cam1/events", b"{}")
    pub = MqttPublisher(BrokerConfig(host=mosquitto.host, port=mosquitto.port), "box-01", "site-1", ob)
    pub.start()
    evil = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="evil", protocol=mqtt.MQTTv5)
    evil.connect(mosquitto.host, mosquitto.port)
    evil.loop_start()
    try:
        assert pub.connected.wait(10)
        time.sleep(0.5)  # let the receipt subscription settle
        for junk in (b"not json", b'{"items": []}', b'{"schema_version": 2}'):
            evil.publish(receipt_topic("site-1", "box-01"), junk, qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 10
        while pub.bad_receipts < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pub.bad_receipts == 3
        assert ob.depth()[0] == 1 and pub.client._thread is not None and pub.client._thread.is_alive()
    finally:
        evil.loop_stop()
        pub.stop()
