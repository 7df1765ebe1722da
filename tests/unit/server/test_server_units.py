"""Pure units of the server: auth, sessions, CSRF, plate rules, evidence ids, config, decoding."""

from __future__ import annotations

import base64
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edge.event import EventMessage, EvidenceError
from server.auth import SessionCodec, csrf_ok, has_role, hash_password, verify_password
from server.collector import subscriptions
from server.config import ServerConfig
from server.db.models import Role, User
from server.evidence_store import check_sha256
from server.ingest import decode_blobs
from server.queries import check_plate, normalize_plate
from server.sample import SampleDevice, make_message
from server.services import REVIEW_CSV_COLUMNS, ServiceError

_HASH = hash_password("s3cret-password")


def test_password_hashing() -> None:
    assert _HASH.startswith("$argon2id$")
    assert verify_password(_HASH, "s3cret-password")
    assert not verify_password(_HASH, "s3cret-passwore")
    assert not verify_password("not a hash", "x")
    with pytest.raises(ValueError, match="at least 8"):
        hash_password("short")


def test_roles_are_ordered() -> None:
    assert has_role("admin", Role.REVIEWER) and has_role("reviewer", Role.VIEWER)
    assert not has_role("viewer", Role.REVIEWER) and not has_role("reviewer", Role.ADMIN)


def test_session_cookie_is_signed_and_revocable() -> None:
    codec = SessionCodec(b"k" * 32, max_age_s=60)
    user = User(id=7, username="u", password_hash=_HASH, role="reviewer", active=True)
    data = codec.new(user)
    cookie = codec.dumps(data)
    back = codec.loads(cookie)
    assert back is not None and back.user_id == 7 and back.csrf == data.csrf and back.fp == data.fp
    assert codec.loads(cookie[:-2] + ("A" if cookie[-2] != "A" else "B") + cookie[-1]) is None
    assert SessionCodec(b"x" * 32, 60).loads(cookie) is None  # another installation's secret
    assert codec.loads("") is None and codec.loads("garbage") is None
    # a different password hash gives a different fingerprint: old cookies stop working
    assert codec.new(User(id=7, username="u", password_hash=hash_password("another-pass"), role="r")).fp != data.fp


def test_session_expires() -> None:
    codec = SessionCodec(b"k" * 32, max_age_s=1)
    cookie = codec.dumps(codec.new(None))
    time.sleep(2.1)
    assert codec.loads(cookie) is None


def test_csrf_compare() -> None:
    assert csrf_ok("abc", "abc")
    assert not csrf_ok("abc", "abd") and not csrf_ok("abc", None) and not csrf_ok(None, None)
    assert not csrf_ok("", "")


@pytest.mark.parametrize("text,expected", [("皖A12345", "皖A12345"), ("皖a·12345", "皖A12345"),
                                           ("粤B D12345", "粤BD12345"), ("京A1234学", "京A1234学"),
                                           ("沪A-1234挂", "沪A1234挂"), ("粤BD12345", "粤BD12345")])
def test_plate_accepts(text: str, expected: str) -> None:
    assert check_plate(text) == expected


@pytest.mark.parametrize("text", ["", "A12345", "皖I12345", "皖A1234O", "皖A123", "皖A1234567", "台A12345",
                                  "皖A12345学学", "皖AD1234学", "'; DROP TABLE events; --"])
def test_plate_rejects(text: str) -> None:
    with pytest.raises(ServiceError, match="not a valid mainland plate"):
        check_plate(text)


def test_normalize_plate() -> None:
    assert normalize_plate(" 皖a.123 45 ") == "皖A12345"


@pytest.mark.parametrize("bad", ["../../etc/passwd", "..", "/" + "a" * 63, "A" * 64, "g" * 64, "a" * 65,
                                 "a" * 63, "a" * 63 + "\n", "a" * 32 + "/" + "a" * 31, 123, None])
def test_evidence_ids_cannot_traverse(bad: object) -> None:
    with pytest.raises(ValueError, match="64 lower-case hex"):
        check_sha256(bad)  # type: ignore[arg-type]


def test_config_rejects_unknown_keys_by_name() -> None:
    with pytest.raises(ValidationError, match=r"web\.sesion_max_age_s"):
        ServerConfig.model_validate({"web": {"sesion_max_age_s": 5}})
    with pytest.raises(ValidationError, match=r"mqtt\.group"):
        ServerConfig.model_validate({"mqtt": {"group": "a/b"}})
    assert ServerConfig().database_url().startswith("sqlite:///")


def test_subscriptions_are_shared_and_qos1() -> None:
    subs = dict((t, o.QoS) for t, o in subscriptions("g1"))
    assert subs == {"$share/g1/roadeye/v1/+/+/events": 1, "$share/g1/roadeye/v1/+/+/heartbeat": 1,
                    "roadeye/v1/+/+/status": 1}


def test_review_csv_columns_follow_contract() -> None:
    assert ",".join(REVIEW_CSV_COLUMNS) == "event_id,camera_id,site_id,violation,confidence,decision,reviewed_at"


_DEV = SampleDevice()
_MSG, _BLOBS = make_message(_DEV, seed=1)


@settings(max_examples=60, deadline=None)
@given(pos=st.integers(0, 10_000), ch=st.sampled_from(list("A+/=!- \n")))
def test_decode_blobs_agrees_with_the_wire_contract(pos: int, ch: str) -> None:
    """The fast decoder accepts and refuses exactly what EventMessage.blobs() does."""
    raw = json.loads(_MSG.to_bytes())
    sha = _MSG.event.evidence[1].sha256
    text = raw["evidence"][sha]
    i = pos % len(text)
    raw["evidence"][sha] = text[:i] + ch + text[i + 1:]
    msg = EventMessage.model_validate(raw)
    try:
        expected: object = msg.blobs()
    except EvidenceError as exc:
        expected = type(exc)
    try:
        got: object = decode_blobs(msg)
    except EvidenceError as exc:
        got = type(exc)
    assert got == expected


def test_decode_blobs_roundtrip() -> None:
    assert decode_blobs(_MSG) == _BLOBS
    raw = json.loads(_MSG.to_bytes())
    sha = next(iter(raw["evidence"]))
    raw["evidence"][sha] = base64.b64encode(b"\x00" + base64.b64decode(raw["evidence"][sha])[1:]).decode()
    with pytest.raises(EvidenceError, match="does not match its sha256"):
        decode_blobs(EventMessage.model_validate(raw))
