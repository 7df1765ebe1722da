"""The collector's fast paths must agree exactly with the wire contract's reference code:
one-pass canonical JSON, pydantic's JSON parser, and batched evidence durability."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

import server.evidence_store as es
from edge.event import EventMessage, SchemaError, ViolationType
from server.evidence_store import LocalEvidenceStore
from server.ingest import _jcs_fast, _jcs_plain, _NotPlain, canonical_event, parse_event_message, verify_signature
from server.sample import SampleDevice, make_message


@pytest.mark.parametrize("kw", [
    {}, {"plate": None}, {"violation": ViolationType.PHONE_USE}, {"sign": False}, {"plate": "皖AD12345"},
    {"confidence": 1.0}, {"confidence": 0.0},
])
def test_canonical_event_equals_the_reference_encodings(kw: dict[str, object]) -> None:
    dev = SampleDevice()
    ev = make_message(dev, seed=5, **kw)[0].event  # type: ignore[arg-type]
    for fast in (True, False):
        body, signed = canonical_event(ev, fast=fast)
        assert body == ev.to_json()
        assert signed == ev.signing_payload()
    assert verify_signature(ev, signed, dev.key.public_key()) == (ev.signature is not None)
    assert not verify_signature(ev, signed, SampleDevice().key.public_key())
    assert not verify_signature(ev, signed + b" ", dev.key.public_key())


_json = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4), max_leaves=25)


@settings(max_examples=500, deadline=None)
@given(_json)
def test_fast_jcs_is_byte_identical_to_rfc8785_whenever_it_applies(value: object) -> None:
    try:
        fast = _jcs_fast(_jcs_plain(value))
    except (_NotPlain, ValueError, UnicodeEncodeError):
        return  # the reference encoder handles it
    assert fast == rfc8785.dumps(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0.0, -0.0, 1.0, 120.0, 1e-4, 0.00012, 123.456, 1e15 + 0.5, 2.0**52, "é\u2028\x7f\n",
                                   {"b": 1, "a": [1.5, None, True]}])
def test_fast_jcs_edge_values(value: object) -> None:
    assert _jcs_fast(_jcs_plain(value)) == rfc8785.dumps(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [1e-5, 2.0**53, 2**60, {"é": 1}, float("nan")])
def test_fast_jcs_refuses_what_it_would_print_differently(value: object) -> None:
    with pytest.raises(_NotPlain):
        _jcs_plain(value)


def test_parse_event_message_accepts_and_refuses_like_from_bytes() -> None:
    good = make_message(SampleDevice(), seed=1)[0].to_bytes()
    assert parse_event_message(good, 1 << 23) == EventMessage.from_bytes(good)
    doc = json.loads(good)
    bad_version = json.dumps({**doc, "event": {**doc["event"], "schema_version": 2}}).encode()
    no_event = json.dumps({"evidence": {}}).encode()
    bad_field = json.dumps({**doc, "event": {**doc["event"], "confidence": 7}}).encode()
    utf16 = good.decode().encode("utf-16")  # json.loads reads UTF-16; the fast parser does not
    for payload in (b"not json", b"[]", bad_version, no_event, bad_field, b"[" * 100_000, good[:-1]):
        with pytest.raises(SchemaError) as fast:
            parse_event_message(payload, 1 << 23)
        with pytest.raises(SchemaError) as ref:
            EventMessage.from_bytes(payload)
        assert str(fast.value) == str(ref.value)
    assert parse_event_message(utf16, 1 << 23) == EventMessage.from_bytes(utf16)
    with pytest.raises(SchemaError, match="limit is 100"):
        parse_event_message(good, 100)


def _items(n: int) -> list[tuple[str, bytes, str]]:
    out = []
    for _ in range(n):
        data = os.urandom(3000)
        out.append((hashlib.sha256(data).hexdigest(), data, "image/jpeg"))
    return out


@pytest.mark.parametrize("batched", [True, False])
def test_put_many_then_sync_stores_every_item_once(tmp_path: Path, batched: bool,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    if not batched:
        monkeypatch.setattr(es, "_syncfs", None)  # the per-file fsync fallback
    elif es._syncfs is None:
        pytest.skip("no syncfs on this platform")
    st = LocalEvidenceStore(tmp_path / "ev")
    items = _items(4)
    assert st.put_many(items + items[:1], durable=False) == 4
    st.sync()
    assert st.put_many(items) == 0  # already there and intact
    for sha, data, _ in items:
        assert st.get(sha) == data
        assert oct(st.path_for(sha).stat().st_mode & 0o777) == "0o444"
    assert sorted(st.iter_ids()) == sorted(sha for sha, _, _ in items)
    assert not [p for p in (tmp_path / "ev").rglob(".tmp-*")]


def test_a_torn_file_with_the_right_size_is_rewritten(tmp_path: Path) -> None:
    """What a crash between write and flush can leave (XFS, ext4 delalloc): the right size,
    the wrong bytes. The redelivered message must repair it, not trust it."""
    st = LocalEvidenceStore(tmp_path / "ev")
    (sha, data, ct), = _items(1)
    path = st.path_for(sha)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\0" * len(data))
    assert st.put_many([(sha, data, ct)]) == 1
    assert st.get(sha) == data
    path.chmod(0o644)
    path.write_bytes(b"\0" * len(data))
    assert st.put(sha, data) is True and st.get(sha) == data
