"""Case 7: nobody in who does not belong.

- the broker with TLS, per-device passwords and an ACL: the real edge process publishes over
  TLS into a real collector that also logs in over TLS; a device publishing to another
  camera's topic is refused by the broker (PUBACK 0x87) and nothing reaches the server;
  wrong passwords, anonymous clients and plain-text connections are refused;
- a replayed old event (same event_id re-sent after a review) changes nothing;
- the running web app (`roadeye server run`, real HTTP) refuses unauthenticated access,
  state changes without a CSRF token, a reviewer acting as admin, and path traversal via
  evidence / event ids;
- `roadeye server verify` detects evidence bytes and event rows tampered with in the store.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from edge.event import event_topic
from tests.faults.fault_edge import EventFactory, expected_ids
from tests.faults.faults_helpers import (
    REPO,
    DeviceKeys,
    Owned,
    Proc,
    Store,
    assert_exactly_once,
    make_device,
    mqtt_client,
    start_collector,
    start_edge,
    tally,
    wait_subscribed,
    wait_until,
)
from tests.services import free_port, wait_port

pytestmark = [pytest.mark.services]

ADMIN_PW = "admin-pw-faults-1"
REVIEWER_PW = "reviewer-pw-faults-1"


def _connect_rc(c: mqtt.Client, host: str, port: int, timeout: float = 10.0) -> Any:
    """Connect and return the CONNACK reason (or the exception raised by connect)."""
    got: list[Any] = []
    c.on_connect = lambda cl, u, f, rc, p: got.append(rc)
    try:
        c.connect(host, port)
    except Exception as exc:  # TLS handshake failure etc.
        return exc
    c.loop_start()
    deadline = time.monotonic() + timeout
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    c.loop_stop()
    c.disconnect()
    return got[0] if got else None


@pytest.mark.timeout(150)
def test_tls_passwords_and_acl_end_to_end(broker_factory, tmp_path: Path, owned: Owned) -> None:  # type: ignore[no-untyped-def]
    dev_a = make_device(tmp_path / "keys", "box-a")
    # devices publish their own events, heartbeat and status and read only their own storage receipts;
    # only the collector may write receipts (a forged receipt would make an edge forget an event)
    acl = "".join(f"user {box}\ntopic write roadeye/v1/site-f/{cam}/events\n"
                  f"topic write roadeye/v1/site-f/{box}/heartbeat\ntopic write roadeye/v1/site-f/{box}/status\n"
                  f"topic read roadeye/v1/site-f/{box}/receipts\n\n"
                  for box, cam in (("box-a", "cam-a"), ("box-b", "cam-b")))
    acl += ("user collector\ntopic read roadeye/v1/#\ntopic read $share/#\ntopic write roadeye/v1/+/+/heartbeat\n"
            "topic write roadeye/v1/+/+/receipts\n")
    b = broker_factory(tls=True, passwords={"box-a": "pw-a", "box-b": "pw-b", "collector": "pw-c"}, acl=acl)
    db_url = f"sqlite:///{tmp_path / 'server.db'}"
    store = owned(Store(db_url))
    owned(start_collector(db_url=db_url, data_dir=tmp_path / "srv", port=b.tls_port, device=dev_a,
                          log=tmp_path / "collector.log",
                          extra=["--mqtt-username", "collector", "--mqtt-password", "pw-c",
                                 "--mqtt-tls-ca", str(b.ca_cert)]))
    wait_subscribed(store, b.host, b.tls_port, username="collector", password="pw-c", tls_ca=b.ca_cert)
    n, run = 60, "tls"
    edge = owned(start_edge(outbox=tmp_path / "outbox.db", port=b.tls_port, device=dev_a,
                            produced=tmp_path / "produced.log", log=tmp_path / "edge.log", run_id=run, count=n,
                            rate=30, extra=["--camera", "cam-a", "--username", "box-a", "--password", "pw-a",
                                            "--tls-ca", str(b.ca_cert)]))
    edge.wait_line("PRODUCED", 60)
    wait_until(lambda: store.count_events() >= n, 60, f"{n} events over TLS")
    edge.wait_line("DRAINED", 30)  # the collector's receipts reached box-a through the ACL

    # box-a (valid password, valid signing key) tries to publish as camera cam-b
    fac = EventFactory("box-a", "site-f", "cam-b", dev_a.private, 0)
    forged = fac.make("cross", 0)
    c = mqtt_client("box-a-rogue", "box-a", "pw-a", b.ca_cert)
    acks: list[int] = []
    c.on_publish = lambda cl, u, mid, rc, p: acks.append(int(rc.value))
    c.connect(b.host, b.tls_port)
    c.loop_start()
    c.publish(event_topic("site-f", "cam-b"), forged.to_bytes(), qos=1).wait_for_publish(10)
    c.loop_stop()
    c.disconnect()
    assert acks == [0x87], f"broker answered {acks}, want 0x87 (not authorized)"

    # refused connections: wrong password, anonymous, another device's password, plain text on the TLS port
    refused = {
        "wrong password": _connect_rc(mqtt_client(None, "box-a", "nope", b.ca_cert), b.host, b.tls_port),
        "anonymous": _connect_rc(mqtt_client(None, None, None, b.ca_cert), b.host, b.tls_port),
        "b's password for a": _connect_rc(mqtt_client(None, "box-a", "pw-b", b.ca_cert), b.host, b.tls_port),
        "plain text to TLS port": _connect_rc(mqtt_client(None, "box-a", "pw-a"), b.host, b.tls_port, 5),
    }
    for what, rc in refused.items():
        ok = rc is not None and not isinstance(rc, Exception) and not rc.is_failure
        assert not ok, f"{what}: connection accepted ({rc})"
    time.sleep(2.0)
    t = tally("tls-acl", expected_ids(run, n), store, None, cross_topic_puback=hex(acks[0]),
              refused={k: str(v) for k, v in refused.items()})
    assert_exactly_once(t)
    assert forged.event.event_id not in store.event_ids()
    assert t.dead_letters == 0, "the refused publish must not even reach the collector"


# -- the running server: replay, web auth, traversal, verify ----------------------------------------
@pytest.fixture
def server(mosquitto, tmp_path: Path, owned: Owned) -> Any:  # type: ignore[no-untyped-def]
    dev = make_device(tmp_path / "keys", "fault-box")
    data = tmp_path / "srv"
    cmd = [sys.executable, "-m", "edge.cli", "server"]
    r = subprocess.run([*cmd, "adduser", "rev", "--role", "reviewer", "--password-stdin", "--data-dir", str(data)],
                       input=REVIEWER_PW + "\n", text=True, capture_output=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    port = free_port()
    proc = owned(Proc([*cmd, "run", "--data-dir", str(data), "--mqtt-port", str(mosquitto.port), "--http-port",
                       str(port), "--admin", f"boss:{ADMIN_PW}",
                       "--register-device-key", f"{dev.device_id}={dev.public}",
                       "--client-id", "faults-run"], tmp_path / "server.log"))
    wait_port("127.0.0.1", port, 90, proc.proc)
    return {"url": f"http://127.0.0.1:{port}", "device": dev, "data": data,
            "db_url": f"sqlite:///{data / 'roadeye.db'}", "proc": proc}


def login(c: httpx.Client, user: str, pw: str) -> None:
    tok = c.get("/api/auth/session").json()["csrf_token"]
    r = c.post("/api/auth/login", json={"username": user, "password": pw}, headers={"X-CSRF-Token": tok})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf_token"]


def _publish(host: str, port: int, topic: str, payload: bytes) -> None:
    c = mqtt_client()
    c.connect(host, port)
    c.loop_start()
    c.publish(topic, payload, qos=1).wait_for_publish(10)
    c.loop_stop()
    c.disconnect()


@pytest.mark.timeout(150)
def test_replayed_event_web_auth_traversal_and_verify(server: dict[str, Any], mosquitto, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                      owned: Owned) -> None:
    dev: DeviceKeys = server["device"]
    store = owned(Store(server["db_url"]))
    wait_until(lambda: store.scalar("SELECT COUNT(*) FROM users") is not None, 60, "server schema")
    wait_subscribed(store, mosquitto.host, mosquitto.port)
    fac = EventFactory(dev.device_id, "site-f", "cam-f", dev.private, 0)
    msgs = [fac.make("web", i) for i in range(3)]
    topic = event_topic("site-f", "cam-f")
    for m in msgs:
        _publish(mosquitto.host, mosquitto.port, topic, m.to_bytes())
    wait_until(lambda: store.count_events() >= 3, 60, "3 events stored")
    eid = msgs[0].event.event_id
    sha = msgs[0].event.evidence[0].sha256

    anon = owned(httpx.Client(base_url=server["url"], timeout=20))
    # unauthenticated: API, evidence, pages
    assert anon.get("/api/events").status_code == 401
    assert anon.get(f"/api/events/{eid}").status_code == 401
    assert anon.get(f"/api/evidence/{sha}").status_code == 401
    assert anon.get("/api/export/events.csv").status_code == 401
    r = anon.get("/queue", follow_redirects=False)
    assert r.status_code in (302, 303, 307) and "/login" in r.headers["location"]

    rev = owned(httpx.Client(base_url=server["url"], timeout=20))
    login(rev, "rev", REVIEWER_PW)
    # no CSRF token on a state change
    token = rev.headers.pop("X-CSRF-Token")
    r = rev.post(f"/api/events/{eid}/review", json={"decision": "confirmed"})
    assert r.status_code == 403, r.text
    r = rev.post(f"/api/events/{eid}/review", json={"decision": "confirmed"}, headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403, r.text
    rev.headers["X-CSRF-Token"] = token
    r = rev.post(f"/api/events/{eid}/review", json={"decision": "confirmed", "plate_text": "皖A99999"})
    assert r.status_code == 200, r.text
    # a reviewer acting as admin
    other = make_device(tmp_path / "k2", "rogue-box")
    for method, path, body in (
        ("POST", "/api/devices", {"device_id": "rogue-box", "public_key_pem": other.public.read_text()}),
        ("POST", f"/api/devices/{dev.device_id}/deactivate", None),
        ("POST", "/api/users", {"username": "evil", "password": "evil-password-1", "role": "admin"}),
        ("GET", "/api/users", None),
        ("GET", "/api/audit", None),
        ("GET", "/api/dead-letters", None),
    ):
        r = rev.request(method, path, json=body)
        assert r.status_code == 403, (method, path, r.status_code, r.text[:200])
    # path traversal through evidence and event ids
    secret = server["data"] / "secret.txt"
    secret.write_text("do-not-serve")
    for bad in ("..%2Fsecret.txt", "..%2F..%2Fsecret.txt", "%2e%2e%2fsecret.txt", "..%252F..%252Fsecret.txt",
                "....//....//secret.txt", "..\\..\\secret.txt", "%2Fetc%2Fpasswd", sha[:2] + "%2F..%2F..%2Fsecret.txt",
                sha.upper(), sha + "%00", "a" * 64 + "/../../secret.txt"):
        for prefix in ("/api/evidence/", "/api/events/", "/evidence/"):
            r = rev.get(prefix + bad)
            assert r.status_code in (400, 404, 405, 422), (prefix + bad, r.status_code)
            assert b"do-not-serve" not in r.content and b"root:" not in r.content
    assert rev.get(f"/api/evidence/{sha}").status_code == 200

    # a replayed old event (same bytes, same event_id) after the review changes nothing
    before = rev.get(f"/api/events/{eid}").json()
    changes = "SELECT COUNT(*) FROM audit_log WHERE action <> 'event.view'"  # reading is audited too
    audit_before = store.scalar(changes)
    reviews_before = store.scalar("SELECT COUNT(*) FROM reviews")
    for _ in range(3):
        _publish(mosquitto.host, mosquitto.port, topic, msgs[0].to_bytes())
    marker = fac.make("web", 99)
    _publish(mosquitto.host, mosquitto.port, topic, marker.to_bytes())  # arrives after the replays
    wait_until(lambda: marker.event.event_id in store.event_ids(), 30, "marker stored")
    after = rev.get(f"/api/events/{eid}").json()
    assert after == before
    assert after["status"] == "confirmed"
    assert store.scalar(changes) == audit_before
    assert store.scalar("SELECT COUNT(*) FROM reviews") == reviews_before
    assert store.count_events() == 4 and store.count_dead() == 0

    # tampering with the stored evidence and rows is detected by `roadeye server verify`
    def verify() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "edge.cli", "server", "verify", "--data-dir",
                               str(server["data"])], capture_output=True, text=True, cwd=REPO, timeout=120)

    ok = verify()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    files = [p for p in (server["data"] / "evidence").rglob("*") if p.is_file() and sha in p.name]
    assert files, list((server["data"] / "evidence").rglob("*"))[:5]
    raw = bytearray(files[0].read_bytes())
    raw[len(raw) // 2] ^= 0x01
    files[0].chmod(0o644)
    files[0].write_bytes(bytes(raw))
    failed = verify()
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert sha in failed.stdout, failed.stdout
    files[0].write_bytes(bytes(raw[: len(raw) // 2]))  # and truncated
    assert verify().returncode == 1
    raw[len(raw) // 2] ^= 0x01
    files[0].write_bytes(bytes(raw))  # restored
    assert verify().returncode == 0
    # an edited event row (plate changed in the database, signed JSON edited)
    other_id = msgs[1].event.event_id
    with sqlite3.connect(server["data"] / "roadeye.db") as c:
        row = c.execute("SELECT event_json FROM events WHERE event_id = ?", (other_id,)).fetchone()
        doc = json.loads(row[0])
        doc["plate"]["text"] = "京A00000"
        c.execute("UPDATE events SET event_json = ? WHERE event_id = ?", (json.dumps(doc, ensure_ascii=False),
                                                                           other_id))
    failed = verify()
    assert failed.returncode == 1 and other_id in failed.stdout, failed.stdout
    with sqlite3.connect(server["data"] / "roadeye.db") as c:
        c.execute("UPDATE events SET event_json = ?, plate_text = ? WHERE event_id = ?",
                  (row[0], "京B11111", other_id))
    failed = verify()
    assert failed.returncode == 1 and "plate_text" in failed.stdout, failed.stdout
    print("FIGURES security-web " + json.dumps({"replays": 3, "stored": store.count_events(),
                                                  "audit_rows_unchanged": True}))
