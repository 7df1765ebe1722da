"""Storage and ingest rules on both backends (SQLite file and real PostgreSQL)."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import DBAPIError

from edge.event import EventMessage, Heartbeat, event_topic, heartbeat_topic, status_topic
from server.db.engine import Database, current_revision
from server.db.models import (
    AuditLog,
    CameraHealthRow,
    DeadLetter,
    Device,
    DeviceHealth,
    EventRow,
    EvidenceRow,
    Review,
    User,
)
from server.evidence_store import LocalEvidenceStore
from server.ingest import Ingestor, Outcome
from server.sample import SampleDevice, make_message

pytestmark = pytest.mark.services


def _topic(dev: SampleDevice) -> str:
    return event_topic(dev.site_id, dev.camera_id)


def _count(db: Database, model: type) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def _dead_reasons(db: Database) -> list[str]:
    with db.session() as s:
        return [r.reason for r in s.scalars(select(DeadLetter).order_by(DeadLetter.id))]


def test_migrations_create_schema_and_are_idempotent(db: Database) -> None:
    tables = set(inspect(db.engine).get_table_names())
    assert {"events", "evidence", "devices", "device_health", "camera_health", "dead_letters",
            "users", "reviews", "audit_log", "alembic_version"} <= tables
    assert current_revision(db.engine) == "0002"
    Database(db.url).dispose()  # second start: upgrade is a no-op
    assert current_revision(db.engine) == "0002"


def test_event_and_evidence_stored(db: Database, ingestor: Ingestor, device: SampleDevice,
                                   store: LocalEvidenceStore) -> None:
    msg, blobs = make_message(device, seed=3, plate="皖A12345")
    assert ingestor.ingest(_topic(device), msg.to_bytes()) == Outcome.STORED
    with db.session() as s:
        row = s.get(EventRow, msg.event.event_id)
        assert row is not None
        assert row.plate_text == "皖A12345" and row.status == "pending"
        assert row.captured_at == msg.event.captured_at and row.captured_at.tzinfo is not None
        assert [e.kind for e in row.evidence] == ["overview", "driver_crop", "plate_crop"]
        assert row.evidence[0].boxes[0]["label"] == "car"
        assert json.loads(row.event_json)["signature"]["key_id"] == device.device_id
    for sha, data in blobs.items():
        assert store.get(sha) == data
        assert store.path_for(sha).parent.parent.name == sha[:2]


def test_redelivery_is_idempotent_and_keeps_reviews(db: Database, ingestor: Ingestor,
                                                    device: SampleDevice) -> None:
    msg, _ = make_message(device, seed=4)
    payload = msg.to_bytes()
    assert ingestor.ingest(_topic(device), payload) == Outcome.STORED
    with db.session() as s:
        u = User(username="r", password_hash="x", role="reviewer")
        s.add(u)
        s.flush()
        s.add(Review(event_id=msg.event.event_id, user_id=u.id, stage=1, decision="confirmed"))
        s.get(EventRow, msg.event.event_id).status = "confirmed"  # type: ignore[union-attr]
    # same bytes, and the same event re-encoded differently (key order / whitespace)
    reencoded = json.dumps(json.loads(payload), indent=2, sort_keys=True).encode()
    assert ingestor.ingest(_topic(device), payload) == Outcome.DUPLICATE
    assert ingestor.ingest(_topic(device), reencoded) == Outcome.DUPLICATE
    assert ingestor.commit([ingestor.prepare(_topic(device), payload)] * 2) == [Outcome.DUPLICATE] * 2
    assert _count(db, EventRow) == 1 and _count(db, EvidenceRow) == 3 and _count(db, Review) == 1
    with db.session() as s:
        assert s.get(EventRow, msg.event.event_id).status == "confirmed"  # type: ignore[union-attr]
    assert _count(db, DeadLetter) == 0


def test_same_batch_duplicate_stored_once(db: Database, ingestor: Ingestor, device: SampleDevice) -> None:
    msg, _ = make_message(device, seed=5)
    p = ingestor.prepare(_topic(device), msg.to_bytes())
    assert ingestor.commit([p, p]) == [Outcome.STORED, Outcome.DUPLICATE]
    assert _count(db, EventRow) == 1


def test_same_id_different_content_is_dead_lettered(db: Database, ingestor: Ingestor,
                                                    device: SampleDevice) -> None:
    msg, blobs = make_message(device, seed=6)
    assert ingestor.ingest(_topic(device), msg.to_bytes()) == Outcome.STORED
    altered = msg.event.model_copy(update={"confidence": 0.01, "signature": None}).signed(
        device.key, device.device_id)
    payload = EventMessage.build(altered, blobs).to_bytes()
    assert ingestor.ingest(_topic(device), payload) == Outcome.DEAD_LETTER
    assert "different content" in _dead_reasons(db)[0]
    with db.session() as s:
        assert s.get(EventRow, msg.event.event_id).confidence == msg.event.confidence  # type: ignore[union-attr]


def _tamper(payload: bytes, fn) -> bytes:  # type: ignore[no-untyped-def]
    raw = json.loads(payload)
    fn(raw)
    return json.dumps(raw).encode()


def test_invalid_messages_become_dead_letters(db: Database, ingestor: Ingestor, device: SampleDevice) -> None:
    topic = _topic(device)
    good, blobs = make_message(device, seed=7)
    payload = good.to_bytes()
    other = SampleDevice(device_id="edge-99")
    forged_key = SampleDevice(device_id=device.device_id)  # right id, wrong key
    forged, _ = make_message(forged_key, seed=8)
    unsigned, _ = make_message(device, seed=9, sign=False)
    unknown, _ = make_message(other, seed=10)
    sha0 = good.event.evidence[0].sha256
    cases: list[tuple[str, bytes, str]] = [
        ("bad json", b"{not json", "schema: message is not JSON"),
        ("binary", bytes(range(256)), "schema: message is not JSON"),
        ("version", _tamper(payload, lambda r: r["event"].__setitem__("schema_version", 2)),
         "unsupported schema_version 2"),
        ("field", _tamper(payload, lambda r: r["event"].__setitem__("confidence", 7)), "event.confidence"),
        ("unsigned", unsigned.to_bytes(), "not signed"),
        ("forged", forged.to_bytes(), "invalid signature"),
        ("edited", _tamper(payload, lambda r: r["event"]["plate"].__setitem__("text", "京A00000")),
         "invalid signature"),
        ("unknown device", unknown.to_bytes(), "'edge-99' is not registered"),
        ("hash mismatch", _tamper(payload, lambda r: r["evidence"].__setitem__(
            sha0, base64.b64encode(b"x" + blobs[sha0][1:]).decode())), "does not match its sha256"),
        ("missing evidence", _tamper(payload, lambda r: r["evidence"].pop(sha0)), "missing from the message"),
        ("oversize", payload + b" " * (ingestor.max_bytes + 1 - len(payload)), "limit is"),
    ]
    for name, data, _ in cases:
        assert ingestor.ingest(topic, data) == Outcome.DEAD_LETTER, name
    assert ingestor.ingest(event_topic("site-b", "cam-1"), payload) == Outcome.DEAD_LETTER
    reasons = _dead_reasons(db)
    for (name, _, expect), reason in zip(cases, reasons, strict=False):
        assert expect in reason, (name, reason)
    assert "topic names site-b/cam-1" in reasons[-1]
    assert _count(db, EventRow) == 0
    with db.session() as s:
        first = s.scalars(select(DeadLetter).order_by(DeadLetter.id)).first()
        assert first is not None and first.payload == b"{not json" and first.topic == topic


def test_deactivated_device_and_wrong_site(db: Database, ingestor: Ingestor, device: SampleDevice) -> None:
    msg, _ = make_message(device, seed=11)
    with db.session() as s:
        s.get(Device, device.device_id).active = False  # type: ignore[union-attr]
    assert ingestor.ingest(_topic(device), msg.to_bytes()) == Outcome.DEAD_LETTER
    with db.session() as s:
        d = s.get(Device, device.device_id)
        d.active, d.site_id = True, "site-z"  # type: ignore[union-attr]
    assert ingestor.ingest(_topic(device), msg.to_bytes()) == Outcome.DEAD_LETTER
    r = _dead_reasons(db)
    assert "deactivated" in r[0] and "registered at site 'site-z'" in r[1]


def _heartbeat(dev: SampleDevice, sent_at: datetime, depth: int) -> bytes:
    return Heartbeat.model_validate({
        "device_id": dev.device_id, "site_id": dev.site_id, "sent_at": sent_at, "uptime_s": 12.5,
        "clock": {"source": "ntp", "synchronized": True, "offset_ms": 0.4},
        "outbox_depth": depth, "outbox_bytes": depth * 1000,
        "cameras": {"cam-1": {"connected": True, "fps_in": 25, "fps_analysed": 12.5, "frames_dropped": 3,
                              "reconnects": 1, "last_frame_at": sent_at, "events_emitted": 9}},
    }).model_dump_json().encode()


def test_heartbeat_and_status(db: Database, ingestor: Ingestor, device: SampleDevice) -> None:
    t = datetime.now(UTC)
    hb_topic = heartbeat_topic(device.site_id, device.device_id)
    assert ingestor.ingest(hb_topic, _heartbeat(device, t, 4)) == Outcome.HEARTBEAT
    assert ingestor.ingest(hb_topic, _heartbeat(device, t - timedelta(minutes=1), 99)) == Outcome.HEARTBEAT
    assert ingestor.ingest(hb_topic, b"garbage") == Outcome.DEAD_LETTER
    st = status_topic(device.site_id, device.device_id)
    assert ingestor.ingest(st, b"offline") == Outcome.STATUS
    assert ingestor.ingest(st, b"") == Outcome.IGNORED
    with db.session() as s:
        h = s.get(DeviceHealth, device.device_id)
        assert h is not None and h.outbox_depth == 4 and h.status == "offline"  # late old beat ignored
        c = s.get(CameraHealthRow, (device.device_id, "cam-1"))
        assert c is not None and c.fps_analysed == 12.5 and c.events_emitted == 9


def test_audit_log_is_append_only(db: Database) -> None:
    with db.session() as s:
        s.add(AuditLog(username="admin", action="login", target=None, before=None, after={"ok": True}))
    for stmt in ("UPDATE audit_log SET username = 'mallory'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
            conn.execute(text(stmt))
    assert _count(db, AuditLog) == 1


def test_evidence_store_checks_hashes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    st = LocalEvidenceStore(tmp_path / "ev")
    data = b"jpeg bytes"
    sha = hashlib.sha256(data).hexdigest()
    assert st.put(sha, data) is True and st.put(sha, data) is False
    assert st.get(sha) == data and list(st.iter_ids()) == [sha]
    assert not list(st.path_for(sha).parent.glob(".tmp-*"))
    with pytest.raises(ValueError, match="hash to"):
        st.put("0" * 64, data)
    for bad in ("../../etc/passwd", "A" * 64, sha[:-1], sha + "/..", ""):
        with pytest.raises(ValueError, match="64 lower-case hex"):
            st.path_for(bad)
