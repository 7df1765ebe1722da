"""HTTP API over a real database (SQLite and PostgreSQL): auth, CSRF, filters, evidence,
reviews (one and two stage), claims, exports and the device registry."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from edge.event import ViolationType, event_topic
from server.db.engine import Database
from server.db.models import AuditLog
from server.evidence_store import LocalEvidenceStore
from server.ingest import Ingestor, Outcome
from server.sample import SampleDevice, make_message

from .conftest import PASSWORD, login, make_client

pytestmark = pytest.mark.services
BOTH = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def seed(ingestor: Ingestor, device: SampleDevice, n: int = 6) -> list:  # type: ignore[type-arg]
    """n events, one minute apart; even ones phone use, plates 皖A1000i."""
    evs = []
    for i in range(n):
        msg, _ = make_message(device, seed=i, captured_at=T0 + timedelta(minutes=i), plate=f"皖A1000{i}",
                              violation=ViolationType.PHONE_USE if i % 2 == 0 else ViolationType.NO_SEATBELT,
                              confidence=0.5 + i * 0.08)
        assert ingestor.ingest(event_topic(device.site_id, device.camera_id), msg.to_bytes()) == Outcome.STORED
        evs.append(msg.event)
    return evs


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite by default here (the storage suite covers both backends); BOTH adds PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'roadeye.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def client(db: Database, store: LocalEvidenceStore, tmp_path: Path, users) -> TestClient:  # type: ignore[no-untyped-def]
    return make_client(db, store, tmp_path / "data")


def test_auth_and_csrf(client: TestClient, ingestor: Ingestor, device: SampleDevice) -> None:
    evs = seed(ingestor, device, 1)
    sha = evs[0].evidence[0].sha256
    assert client.get("/api/events").status_code == 401
    assert client.get(f"/api/evidence/{sha}").status_code == 401
    r = client.get("/queue", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=%2Fqueue")
    # no CSRF token: refused before the password is even looked at
    r = client.post("/api/auth/login", json={"username": "admin", "password": PASSWORD})
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    token = client.get("/api/auth/session").json()["csrf_token"]
    r = client.post("/api/auth/login", json={"username": "admin", "password": "wrong password"},
                    headers={"X-CSRF-Token": token})
    assert r.status_code == 401
    new = login(client, "rev1")
    assert new != token  # rotated at login
    cookie = client.cookies.get("roadeye_session")
    set_cookie = client.get("/api/auth/session").headers.get("set-cookie")
    assert set_cookie is None  # unchanged session: no re-issue
    assert cookie
    r = client.post("/api/auth/login", json={"username": "admin", "password": PASSWORD},
                    headers={"X-CSRF-Token": token})  # the pre-login token is dead now
    assert r.status_code == 403
    assert client.get(f"/api/evidence/{sha}").status_code == 200
    # a forged cookie is just anonymous
    client.cookies.set("roadeye_session", cookie[:-3] + "abc")
    assert client.get("/api/events").status_code == 401


def test_login_cookie_flags(db: Database, store: LocalEvidenceStore, tmp_path: Path, users) -> None:  # type: ignore[no-untyped-def]
    c = make_client(db, store, tmp_path / "d")
    token = c.get("/api/auth/session").json()["csrf_token"]
    r = c.post("/api/auth/login", json={"username": "view", "password": PASSWORD}, headers={"X-CSRF-Token": token})
    sc = r.headers["set-cookie"].lower()
    assert "httponly" in sc and "samesite=strict" in sc and "path=/" in sc
    assert "default-src 'self'" in r.headers["content-security-policy"]


@BOTH
def test_event_filters_and_detail(client: TestClient, ingestor: Ingestor, device: SampleDevice) -> None:
    evs = seed(ingestor, device)
    login(client, "view")

    def ids(**params) -> list[str]:  # type: ignore[no-untyped-def]
        r = client.get("/api/events", params=params)
        assert r.status_code == 200, r.text
        return [e["event_id"] for e in r.json()["items"]]

    assert ids() == [e.event_id for e in reversed(evs)]
    assert ids(order="oldest")[0] == evs[0].event_id
    assert ids(violation="phone_use") == [evs[4].event_id, evs[2].event_id, evs[0].event_id]
    assert ids(plate="a10003") == [evs[3].event_id]  # case-insensitive on letters
    assert ids(plate="皖A1000") and len(ids(plate="皖A1000")) == 6
    assert ids(min_confidence=0.85) == [evs[5].event_id]
    assert ids(since=(T0 + timedelta(minutes=2)).isoformat(), until=(T0 + timedelta(minutes=4)).isoformat()) == [
        evs[3].event_id, evs[2].event_id]
    assert ids(since="2026-05-01T08:04:00") == [evs[5].event_id, evs[4].event_id]  # naive = UTC
    assert ids(camera_id="cam-9") == []
    assert ids(status="pending") and ids(status="confirmed") == []
    page = client.get("/api/events", params={"page_size": 4, "page": 2}).json()
    assert page["total"] == 6 and len(page["items"]) == 2
    for bad, msg in ((("status", "bogus"), "status: 'bogus' is not one of pending"),
                     (("camera_id", "../x"), "camera_id: '../x' is not a valid identifier"),
                     (("since", "yesterday"), "since: 'yesterday' is not an ISO 8601 time"),
                     (("min_confidence", "2"), "min_confidence: 2.0 is outside 0..1"),
                     (("violation", "speeding"), "violation: 'speeding' is not one of")):
        r = client.get("/api/events", params=dict([bad]))
        assert r.status_code == 422 and msg in r.json()["detail"], r.text
    # the HTML filter form submits empty fields: they mean "any"
    empty = {k: "" for k in ("plate", "violation", "status", "site_id", "camera_id", "since", "until",
                             "min_confidence")}
    assert len(ids(**empty)) == 6
    r = client.get("/events", params=empty | {"since": "2026-05-01T08:04", "violation": "phone_use"})
    assert r.status_code == 200 and "1 found" in r.text
    d = client.get(f"/api/events/{evs[1].event_id}").json()
    assert d["plate_text"] == "皖A10001" and d["evidence"][0]["kind"] == "overview"
    assert d["evidence"][0]["boxes"][0]["label"] == "car"
    assert d["signed_event"]["signature"]["key_id"] == device.device_id
    assert client.get("/api/events/0190f0d6-0000-7000-8000-000000000000").status_code == 404


def test_evidence_download_and_traversal(client: TestClient, ingestor: Ingestor, device: SampleDevice,
                                         store: LocalEvidenceStore) -> None:
    evs = seed(ingestor, device, 1)
    login(client, "view")
    item = evs[0].evidence[1]
    r = client.get(f"/api/evidence/{item.sha256}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content == store.get(item.sha256) and "private" in r.headers["cache-control"]
    secret = store.root.parent / "secret.txt"
    secret.write_text("do not serve")
    for bad in ("..%2Fsecret.txt", "..%2F..%2F..%2Fetc%2Fpasswd", item.sha256.upper(), item.sha256[:-1],
                item.sha256 + "0", "%2e%2e%2f" * 3 + "etc%2fpasswd", "a" * 63 + "%00"):
        r = client.get(f"/api/evidence/{bad}")
        assert r.status_code in (404, 422), (bad, r.status_code)
        assert b"do not serve" not in r.content and b"root:" not in r.content
    assert client.get(f"/api/evidence/{'0' * 64}").status_code == 404  # well-formed, not registered


def _review(c: TestClient, eid: str, **body) -> tuple[int, dict]:  # type: ignore[no-untyped-def, type-arg]
    r = c.post(f"/api/events/{eid}/review", json=body)
    return r.status_code, r.json()


@BOTH
def test_review_actions_and_audit(db: Database, client: TestClient, ingestor: Ingestor,
                                  device: SampleDevice) -> None:
    evs = seed(ingestor, device, 3)
    login(client, "view")
    assert _review(client, evs[0].event_id, decision="confirmed")[0] == 403
    client.post("/api/auth/logout")
    login(client, "rev1")
    st, body = _review(client, evs[0].event_id, decision="confirmed", plate_text="皖A·12O45")
    assert st == 422 and "not a valid mainland plate" in body["detail"]
    st, body = _review(client, evs[0].event_id, decision="confirmed", plate_text="皖b 88888")
    assert st == 200 and body == {"event_id": evs[0].event_id, "status": "confirmed", "plate": "皖B88888"}
    assert _review(client, evs[0].event_id, decision="rejected", reason_code="other", note="x")[0] == 409
    st, body = _review(client, evs[1].event_id, decision="rejected")
    assert st == 422 and "reason_code" in body["detail"]
    assert _review(client, evs[1].event_id, decision="rejected", reason_code="other")[0] == 422  # note needed
    assert _review(client, evs[1].event_id, decision="rejected", reason_code="not_visible")[0] == 200
    d = client.get(f"/api/events/{evs[0].event_id}").json()
    assert d["plate_corrected"] == "皖B88888" and d["plate_text"] == "皖A10000"
    assert d["reviews"][0]["reviewer"] == "rev1"
    with db.session() as s:
        rows = list(s.scalars(select(AuditLog).where(AuditLog.action.startswith("review."))
                              .order_by(AuditLog.id)))
    assert [r.action for r in rows] == ["review.confirm", "review.reject"]
    assert rows[0].username == "rev1" and rows[0].target == f"event:{evs[0].event_id}"
    assert rows[0].before == {"status": "pending", "plate": "皖A10000"}
    assert rows[0].after is not None
    assert rows[0].after["status"] == "confirmed" and rows[0].after["plate"] == "皖B88888"
    # reviews.csv follows CONTRACTS
    text = client.get("/api/export/reviews.csv").text
    rows_csv = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == "event_id,camera_id,site_id,violation,confidence,decision,reviewed_at"
    assert {(r["event_id"], r["decision"]) for r in rows_csv} == {
        (evs[0].event_id, "confirmed"), (evs[1].event_id, "rejected")}
    client.post("/api/auth/logout")
    login(client, "admin")
    audit = client.get("/api/audit", params={"action": "review."}).json()
    assert audit["total"] == 2 and audit["items"][0]["action"] == "review.reject"


def test_second_stage_review(db: Database, store: LocalEvidenceStore, tmp_path: Path, users,  # type: ignore[no-untyped-def]
                             ingestor: Ingestor, device: SampleDevice) -> None:
    evs = seed(ingestor, device, 1)
    eid = evs[0].event_id
    a, b = make_client(db, store, tmp_path / "d", True), make_client(db, store, tmp_path / "d", True)
    login(a, "rev1")
    login(b, "rev2")
    assert _review(a, eid, decision="confirmed")[1]["status"] == "second_review"
    st, body = _review(a, eid, decision="confirmed")
    assert st == 422 and "different reviewer" in body["detail"]
    assert a.post("/api/review/next", json={"stage": 2}).json()["items"] == []  # not my own first review
    q = b.post("/api/review/next", json={"stage": 2}).json()
    assert [e["event_id"] for e in q["items"]] == [eid]
    assert q["items"][0]["reviews"][0]["decision"] == "confirmed"
    assert _review(b, eid, decision="rejected", reason_code="exempt_vehicle")[1]["status"] == "rejected"
    rows = list(csv.DictReader(io.StringIO(b.get("/api/export/reviews.csv").text)))
    assert rows[0]["decision"] == "rejected"


@BOTH
def test_queue_claims_do_not_collide(db: Database, store: LocalEvidenceStore, tmp_path: Path, users,  # type: ignore[no-untyped-def]
                                     ingestor: Ingestor, device: SampleDevice) -> None:
    evs = seed(ingestor, device, 5)
    a, b = make_client(db, store, tmp_path / "d"), make_client(db, store, tmp_path / "d")
    login(a, "rev1")
    login(b, "rev2")
    qa = [e["event_id"] for e in a.post("/api/review/next", json={"count": 3}).json()["items"]]
    qb = [e["event_id"] for e in b.post("/api/review/next", json={"count": 3}).json()["items"]]
    assert qa == [e.event_id for e in evs[:3]]  # oldest first
    assert qb == [e.event_id for e in evs[3:]]
    st, body = _review(b, qa[0], decision="confirmed")
    assert st == 409 and "someone else" in body["detail"]
    assert a.post("/api/review/release", json={"event_ids": qa}).status_code == 204
    assert [e["event_id"] for e in b.post("/api/review/next", json={"count": 5}).json()["items"]][:3] == qa
    # skip list: a reviewer who skipped an event is not handed it again at once
    q = a.post("/api/review/next", json={"count": 5, "skip": qb}).json()["items"]
    assert all(e["event_id"] not in qb for e in q)


def test_exports_and_yolo(client: TestClient, ingestor: Ingestor, device: SampleDevice) -> None:
    evs = seed(ingestor, device, 4)
    login(client, "rev1")
    _review(client, evs[0].event_id, decision="confirmed")
    _review(client, evs[1].event_id, decision="rejected", reason_code="not_violation")
    rows = list(csv.DictReader(io.StringIO(client.get("/api/export/events.csv").text.lstrip("\ufeff"))))
    assert len(rows) == 4 and rows[0]["plate_text"] == "皖A10000" and rows[0]["status"] == "confirmed"
    j = client.get("/api/export/events.json", params={"status": "pending"}).json()
    assert len(j["events"]) == 2
    r = client.get("/api/export/yolo.zip")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    z = zipfile.ZipFile(io.BytesIO(r.content))
    names = z.namelist()
    assert "data.yaml" in names and "manifest.csv" in names
    images = [n for n in names if n.startswith("images/")]
    labels = [n for n in names if n.startswith("labels/")]
    assert len(images) == 6 and len(labels) == 6  # 2 reviewed events x 3 evidence images
    data_yaml = z.read("data.yaml").decode()
    assert "train: images/train" in data_yaml and "  6: plate" in data_yaml
    for name in labels:
        for line in z.read(name).decode().splitlines():
            cls, *xywh = line.split()
            assert int(cls) >= 0 and all(0.0 <= float(v) <= 1.0 for v in xywh)
    manifest = list(csv.DictReader(io.StringIO(z.read("manifest.csv").decode())))
    assert {m["decision"] for m in manifest} == {"confirmed", "rejected"}
    assert {m["reason_code"] for m in manifest if m["decision"] == "rejected"} == {"not_violation"}
    ov = next(n for n in labels if n.endswith("_overview.txt"))
    assert len(z.read(ov).decode().splitlines()) == 3  # car, windshield, plate


def test_device_registry_and_health(client: TestClient, device: SampleDevice, ingestor: Ingestor) -> None:
    other = SampleDevice(device_id="edge-02", site_id="site-b")
    login(client, "rev1")
    assert client.post("/api/devices", json={"device_id": "edge-02", "public_key_pem": other.public_pem}
                       ).status_code == 403
    client.post("/api/auth/logout")
    login(client, "admin")
    r = client.post("/api/devices", json={"device_id": "edge-02", "public_key_pem": other.public_pem,
                                          "site_id": "site-b"})
    assert r.status_code == 201, r.text
    bad = client.post("/api/devices", json={"device_id": "edge-03", "public_key_pem": "-----BEGIN PUBLIC KEY-----\n"
                                            "AAAA\n-----END PUBLIC KEY-----\n"})
    assert bad.status_code == 422 and "public key" in bad.json()["detail"]
    assert [d["device_id"] for d in client.get("/api/devices").json()] == ["edge-01", "edge-02"]
    msg, _ = make_message(other, seed=1)
    assert ingestor.ingest(event_topic("site-b", other.camera_id), msg.to_bytes()) == Outcome.STORED
    assert client.post("/api/devices/edge-02/deactivate").json()["active"] is False
    ingestor.keys.invalidate()
    msg2, _ = make_message(other, seed=2)
    assert ingestor.ingest(event_topic("site-b", other.camera_id), msg2.to_bytes()) == Outcome.DEAD_LETTER
    assert client.get("/api/health/cameras").json() == []
    dl = client.get("/api/dead-letters").json()
    assert "deactivated" in dl[0]["reason"]
    assert client.get(f"/api/dead-letters/{dl[0]['id']}/payload").content == msg2.to_bytes()


def test_pages_render_and_openapi(client: TestClient, ingestor: Ingestor, device: SampleDevice) -> None:
    evs = seed(ingestor, device, 2)
    spec = client.get("/api/openapi.json").json()
    assert "/api/events/{event_id}/review" in spec["paths"] and "/api/export/yolo.zip" in spec["paths"]
    login(client, "admin")
    for path in ("/queue", "/events", f"/events/{evs[0].event_id}", "/audit", "/health", "/devices",
                 "/dead-letters", "/events?plate=皖A&violation=phone_use"):
        r = client.get(path)
        assert r.status_code == 200, (path, r.text[:300])
        assert "<script>" not in r.text  # CSP: no inline scripts
    assert "皖A10001" in client.get("/events").text
    assert client.get("/healthz").json()["ok"] is True


def test_user_admin_and_revocation(db: Database, store: LocalEvidenceStore, tmp_path: Path, users) -> None:  # type: ignore[no-untyped-def]
    admin, rev = make_client(db, store, tmp_path / "d"), make_client(db, store, tmp_path / "d")
    login(admin, "admin")
    login(rev, "rev1")
    assert rev.post("/api/users", json={"username": "x", "password": "long-enough", "role": "admin"}
                    ).status_code == 403
    r = admin.post("/api/users", json={"username": "new.officer", "password": "long-enough", "role": "viewer"})
    assert r.status_code == 201 and r.json()["role"] == "viewer"
    r = admin.post("/api/users", json={"username": "new.officer", "password": "long-enough", "role": "viewer"})
    assert r.status_code == 422 and "already exists" in r.json()["detail"]
    assert admin.post("/api/users", json={"username": "y", "password": "short", "role": "viewer"}).status_code == 422
    assert rev.get("/api/events").status_code == 200
    assert admin.post("/api/users/rev1/active", json={"active": False}).json()["active"] is False
    assert rev.get("/api/events").status_code == 401  # the live session ends at once
    st = admin.post("/api/users/admin/active", json={"active": False})
    assert st.status_code == 422 and "yourself" in st.json()["detail"]
    assert [u["username"] for u in admin.get("/api/users").json()] == ["admin", "new.officer", "rev1", "rev2", "view"]
    assert admin.get("/users").status_code == 200
    acts = [a["action"] for a in admin.get("/api/audit", params={"action": "user."}).json()["items"]]
    assert acts[:2] == ["user.deactivate", "user.create"]
