"""The wire contract (edge.event): round trip, canonical encoding, signatures, rejections."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.event import (
    EventMessage,
    EvidenceError,
    Heartbeat,
    SchemaError,
    ViolationEvent,
    event_topic,
    new_event_id,
    parse_topic,
)

JPEG = b"\xff\xd8\xff\xe0" + b"roadeye-test-evidence" * 10 + b"\xff\xd9"
SHA = hashlib.sha256(JPEG).hexdigest()
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def event_dict(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "schema_version": 1,
        "event_id": new_event_id(),
        "violation": "no_seatbelt",
        "site_id": "hefei-01",
        "camera_id": "cam-north",
        "device_id": "box-7",
        "captured_at": "2026-11-28T05:41:00.123Z",
        "clock": {"source": "ntp", "synchronized": True, "offset_ms": -0.8},
        "frame_seq": 1234,
        "track_id": 17,
        "vehicle": {"box": {"x1": 100, "y1": 200, "x2": 900, "y2": 1000}, "cls": "car", "confidence": 0.93},
        "plate": {
            "text": "皖A12345",
            "char_confidences": [0.99, 0.98, 0.97, 0.99, 0.95, 0.96, 0.99],
            "box": {"x1": 400, "y1": 900, "x2": 560, "y2": 950},
            "confidence": 0.95,
            "frames": 6,
        },
        "confidence": 0.88,
        "frames_agreed": 5,
        "frames_observed": 7,
        "evidence": [
            {"kind": "overview", "content_type": "image/jpeg", "size": len(JPEG), "sha256": SHA,
             "width": 4096, "height": 2160,
             "boxes": [{"label": "car", "box": {"x1": 100, "y1": 200, "x2": 900, "y2": 1000},
                        "confidence": 0.93}]},
        ],
        "models": [{"name": "vehicles", "version": "1.0.0", "sha256": "a" * 64}],
        "config_hash": "b" * 64,
    }
    d.update(over)
    return d


def make_event(**over: Any) -> ViolationEvent:
    return ViolationEvent.model_validate(event_dict(**over))


def test_round_trip_json_keeps_every_field() -> None:
    ev = make_event().signed(KEY, "box-7")
    back = ViolationEvent.from_json(ev.to_json())
    assert back == ev
    assert back.plate is not None and back.plate.text == "皖A12345"
    assert ev.model_dump(mode="json")["captured_at"] == "2026-11-28T05:41:00.123Z"


def test_captured_at_is_normalised_to_utc_milliseconds() -> None:
    t = datetime(2026, 11, 28, 13, 41, 0, 123456, tzinfo=timezone(timedelta(hours=8)))
    ev = make_event(captured_at=t)
    assert ev.captured_at == datetime(2026, 11, 28, 5, 41, 0, 123000, tzinfo=UTC)
    assert ev.model_dump(mode="json")["captured_at"] == "2026-11-28T05:41:00.123Z"


def test_canonical_payload_ignores_key_order_and_whitespace() -> None:
    ev = make_event().signed(KEY, "box-7")
    raw = json.loads(ev.to_json())
    shuffled = json.dumps(dict(reversed(list(raw.items()))), indent=3, ensure_ascii=True)
    again = ViolationEvent.from_json(shuffled)
    assert again.signing_payload() == ev.signing_payload()
    assert again.verify(KEY.public_key())


def test_canonical_payload_is_sorted_compact_utf8_without_signature() -> None:
    ev = make_event().signed(KEY, "box-7")
    payload = ev.signing_payload()
    assert b"signature" not in payload
    assert "皖".encode() in payload  # UTF-8, not \u escapes
    assert payload.startswith(b'{"camera_id":"cam-north","captured_at"')
    assert b": " not in payload and b", " not in payload


@pytest.mark.parametrize(
    "path, value",
    [
        (("confidence",), 0.87),
        (("plate", "text"), "皖A12346"),
        (("vehicle", "box", "x1"), 101),
        (("evidence", 0, "sha256"), "c" * 64),
        (("captured_at",), "2026-11-28T05:41:00.124Z"),
        (("violation",), "phone_use"),
    ],
)
def test_any_change_breaks_the_signature(path: tuple[Any, ...], value: Any) -> None:
    ev = make_event().signed(KEY, "box-7")
    d = json.loads(ev.to_json())
    node = d
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    assert not ViolationEvent.model_validate(d).verify(KEY.public_key())


def test_wrong_key_and_missing_signature_do_not_verify() -> None:
    ev = make_event()
    assert not ev.verify(KEY.public_key())
    other = Ed25519PrivateKey.generate()
    assert not ev.signed(other, "box-7").verify(KEY.public_key())


def test_event_ids_are_uuid7_and_time_ordered() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [new_event_id(t0 + timedelta(milliseconds=i)) for i in range(50)]
    assert ids == sorted(ids)
    assert all(i[14] == "7" for i in ids)
    make_event(event_id=ids[0])


BAD_FIELDS = [
    ("schema_version", 2, "schema_version"),
    ("event_id", "not-a-uuid", "event_id"),
    ("event_id", "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "event_id"),  # UUIDv1
    ("violation", "speeding_maybe", "violation"),
    ("site_id", "bad/site", "site_id"),
    ("camera_id", "", "camera_id"),
    ("device_id", "x" * 65, "device_id"),
    ("captured_at", "2026-11-28T05:41:00", "captured_at"),
    ("clock", {"source": "sundial", "synchronized": True, "offset_ms": 0}, "clock.source"),
    ("frame_seq", -1, "frame_seq"),
    ("track_id", "seven", "track_id"),
    ("vehicle", {"box": {"x1": 10, "y1": 10, "x2": 5, "y2": 20}, "cls": "car", "confidence": 0.5}, "vehicle.box"),
    ("confidence", 1.5, "confidence"),
    ("confidence", float("nan"), "confidence"),
    ("frames_agreed", 0, "frames_agreed"),
    ("frames_agreed", 9, "frames_agreed"),
    ("evidence", [], "evidence"),
    ("models", [{"name": "v", "version": "1", "sha256": "XYZ"}], "models.0.sha256"),
    ("config_hash", "abc", "config_hash"),
    ("unexpected", 1, "unexpected"),
]


@pytest.mark.parametrize("field, value, named", BAD_FIELDS)
def test_malformed_field_is_rejected_with_its_name(field: str, value: Any, named: str) -> None:
    event = event_dict(**{field: value})
    blob = {"event": event, "evidence": {SHA: base64.b64encode(JPEG).decode()}}
    with pytest.raises(SchemaError) as exc:
        EventMessage.from_bytes(json.dumps(blob).encode())
    assert named in str(exc.value)


def test_plate_char_confidences_must_match_text_length() -> None:
    plate = copy.deepcopy(event_dict()["plate"])
    plate["char_confidences"] = plate["char_confidences"][:-1]
    blob = {"event": event_dict(plate=plate), "evidence": {}}
    with pytest.raises(SchemaError, match="plate"):
        EventMessage.from_bytes(json.dumps(blob).encode())


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\xff\xfe not json", "not JSON"),
        (b"[1, 2]", "object"),
        (b'{"event": {"schema_version": 99}}', "schema_version 99"),
        (b'{"event": {}}', "schema_version None"),
    ],
)
def test_garbage_messages_get_clear_errors(data: bytes, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        EventMessage.from_bytes(data)


def test_oversize_message_is_rejected_before_parsing() -> None:
    with pytest.raises(SchemaError, match="limit"):
        EventMessage.from_bytes(b"{" + b" " * 100 + b"}", max_bytes=50)


def test_message_round_trip_with_evidence() -> None:
    ev = make_event().signed(KEY, "box-7")
    msg = EventMessage.build(ev, {SHA: JPEG})
    back = EventMessage.from_bytes(msg.to_bytes())
    assert back.event.verify(KEY.public_key())
    assert back.blobs() == {SHA: JPEG}


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda ev: {}, "missing"),
        (lambda ev: {SHA: base64.b64encode(JPEG[:-1]).decode()}, "bytes"),
        (lambda ev: {SHA: base64.b64encode(JPEG[:-1] + b"X").decode()}, "sha256"),
        (lambda ev: {SHA: "!!!not base64!!!"}, "base64"),
        (lambda ev: {SHA: base64.b64encode(JPEG).decode(), "d" * 64: "AA=="}, "not listed"),
    ],
)
def test_evidence_problems_are_named(mutate: Any, message: str) -> None:
    ev = make_event()
    msg = EventMessage(event=ev, evidence=mutate(ev))
    with pytest.raises(EvidenceError, match=message):
        msg.blobs()


def test_heartbeat_round_trip() -> None:
    hb = Heartbeat(
        device_id="box-7", site_id="hefei-01", sent_at=datetime.now(UTC), uptime_s=12.5,
        clock={"source": "ntp", "synchronized": True, "offset_ms": 0.1}, outbox_depth=3, outbox_bytes=900,
        cameras={"cam-north": {"connected": True, "fps_in": 25, "fps_analysed": 5, "frames_dropped": 2,
                               "reconnects": 0}},
    )
    assert Heartbeat.model_validate_json(hb.model_dump_json()) == hb


def test_topics() -> None:
    assert event_topic("hefei-01", "cam-north") == "roadeye/v1/hefei-01/cam-north/events"
    assert parse_topic("roadeye/v1/hefei-01/cam-north/events") == ("hefei-01", "cam-north", "events")
    with pytest.raises(ValueError, match="not a roadeye v1 topic"):
        parse_topic("roadeye/v2/a/b/events")


def test_deeply_nested_json_is_a_schema_error_not_a_crash() -> None:
    with pytest.raises(SchemaError, match="not JSON"):
        EventMessage.from_bytes(b"[" * 100_000 + b"]" * 100_000)
