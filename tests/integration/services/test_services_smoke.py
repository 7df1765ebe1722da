"""Prove that the service fixtures start the real thing, not a stand-in."""

from __future__ import annotations

import os
import signal
import ssl
import threading
import time
from pathlib import Path

import cv2
import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.services import MosquittoBroker, make_test_clip

pytestmark = pytest.mark.services


def _client(client_id: str, *, clean_start: bool = True) -> mqtt.Client:
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)


def _connect(c: mqtt.Client, broker: MosquittoBroker, *, clean_start: bool = True, port: int | None = None,
             expiry: int = 300) -> None:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = expiry
    connected = threading.Event()
    c.on_connect = lambda *a, **k: connected.set()
    c.connect(broker.host, port or broker.port, keepalive=10, clean_start=clean_start, properties=props)
    c.loop_start()
    assert connected.wait(5), "no CONNACK from mosquitto"


def test_mosquitto_qos1_roundtrip_and_persistent_session(mosquitto: MosquittoBroker) -> None:
    got: list[bytes] = []
    sub = _client("smoke-sub")
    sub.on_message = lambda c, u, m: got.append(m.payload)
    _connect(sub, mosquitto, clean_start=True)
    sub.subscribe("roadeye/v1/s/c/events", qos=1)
    time.sleep(0.3)
    # Disconnect the subscriber: its persistent session must queue QoS 1 messages.
    sub.disconnect()
    sub.loop_stop()

    pub = _client("smoke-pub")
    _connect(pub, mosquitto)
    infos = [pub.publish("roadeye/v1/s/c/events", f"m{i}".encode(), qos=1) for i in range(5)]
    for info in infos:
        info.wait_for_publish(5)
        assert info.is_published()
    pub.disconnect()
    pub.loop_stop()

    sub2 = _client("smoke-sub")
    sub2.on_message = lambda c, u, m: got.append(m.payload)
    _connect(sub2, mosquitto, clean_start=False)
    deadline = time.monotonic() + 5
    while len(got) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    sub2.disconnect()
    sub2.loop_stop()
    assert sorted(got) == [f"m{i}".encode() for i in range(5)]


def test_mosquitto_restart_keeps_queued_messages(mosquitto: MosquittoBroker) -> None:
    # Persistent subscribers must connect with clean_start=False from the first CONNECT:
    # mosquitto 2.0.11 (Debian 12) does not restore a session that began with
    # clean_start=True after a broker restart, even with a SessionExpiryInterval.
    sub = _client("restart-sub")
    _connect(sub, mosquitto, clean_start=False, expiry=3600)
    sub.subscribe("t/q", qos=1)
    time.sleep(0.3)
    sub.disconnect()
    sub.loop_stop()
    pub = _client("restart-pub")
    _connect(pub, mosquitto)
    pub.publish("t/q", b"kept", qos=1).wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()
    time.sleep(1.5)  # autosave_interval 1 s
    mosquitto.stop(signal.SIGTERM)
    assert not mosquitto.running
    mosquitto.start()
    got: list[bytes] = []
    sub2 = _client("restart-sub")
    sub2.on_message = lambda c, u, m: got.append(m.payload)
    _connect(sub2, mosquitto, clean_start=False, expiry=3600)
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    sub2.disconnect()
    sub2.loop_stop()
    assert got == [b"kept"]


def test_mosquitto_tls_and_password(broker_factory) -> None:  # type: ignore[no-untyped-def]
    broker = broker_factory(tls=True, passwords={"dev1": "s3cret"})
    ok = _client("tls-ok")
    ok.username_pw_set("dev1", "s3cret")
    ok.tls_set(ca_certs=str(broker.ca_cert), cert_reqs=ssl.CERT_REQUIRED)
    _connect(ok, broker, port=broker.tls_port)
    assert ok.is_connected()
    ok.disconnect()
    ok.loop_stop()

    bad = _client("tls-bad")
    bad.username_pw_set("dev1", "wrong")
    bad.tls_set(ca_certs=str(broker.ca_cert), cert_reqs=ssl.CERT_REQUIRED)
    codes: list[object] = []
    bad.on_connect = lambda c, u, f, rc, p=None: codes.append(rc)
    bad.connect(broker.host, broker.tls_port, keepalive=5)
    bad.loop_start()
    deadline = time.monotonic() + 5
    while not codes and time.monotonic() < deadline:
        time.sleep(0.05)
    bad.loop_stop()
    assert codes and getattr(codes[0], "is_failure", True), f"wrong password accepted: {codes}"


def test_postgres_sql_roundtrip(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id int primary key, v text)"))
        conn.execute(sa.text("INSERT INTO t VALUES (1, '皖A12345')"))
    with engine.connect() as conn:
        version = conn.execute(sa.text("select version()")).scalar_one()
        value = conn.execute(sa.text("select v from t where id = 1")).scalar_one()
    engine.dispose()
    assert "PostgreSQL" in version
    assert value == "皖A12345"


def test_rtsp_served_clip_reads_over_tcp(tmp_path: Path, rtsp_server_factory) -> None:  # type: ignore[no-untyped-def]
    clip = make_test_clip(tmp_path / "clip.mp4", seconds=2, fps=10)
    server = rtsp_server_factory(clip)
    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "rtsp_transport;tcp"
    cap = cv2.VideoCapture(server.url, cv2.CAP_FFMPEG,
                           [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000])
    assert cap.isOpened(), f"cannot open {server.url}"
    frames = []
    while len(frames) < 15:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) >= 15
    assert frames[0].shape == (240, 320, 3)


def test_mosquitto_acl_limits_a_device_to_its_own_topics(broker_factory) -> None:  # type: ignore[no-untyped-def]
    acl = "user dev1\ntopic write roadeye/v1/site1/cam1/#\n\nuser collector\ntopic read roadeye/v1/#\n"
    broker = broker_factory(passwords={"dev1": "pw1", "collector": "pw2"}, acl=acl)
    got: list[str] = []
    sub = _client("acl-collector")
    sub.username_pw_set("collector", "pw2")
    sub.on_message = lambda c, u, m: got.append(m.topic)
    _connect(sub, broker)
    sub.subscribe("roadeye/v1/#", qos=1)
    time.sleep(0.3)
    dev = _client("acl-dev1")
    dev.username_pw_set("dev1", "pw1")
    _connect(dev, broker)
    dev.publish("roadeye/v1/site1/cam1/events", b"own", qos=1).wait_for_publish(5)
    # MQTT 5: mosquitto answers a denied QoS 1 publish with a PUBACK reason code, delivering nothing.
    dev.publish("roadeye/v1/site2/cam9/events", b"forged", qos=1).wait_for_publish(5)
    time.sleep(0.5)
    for c in (dev, sub):
        c.disconnect()
        c.loop_stop()
    assert got == ["roadeye/v1/site1/cam1/events"]
