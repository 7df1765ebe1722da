"""Per-character, confidence-weighted, length-aware plate voting (table-driven)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from edge.plates import is_valid_plate, vote_plate


@dataclass(frozen=True)
class R:
    text: str
    char_confidences: tuple[float, ...]
    confidence: float


def r(text: str, conf: float = 0.9, low: dict[int, float] | None = None) -> R:
    cc = [conf] * len(text)
    for i, c in (low or {}).items():
        cc[i] = c
    return R(text, tuple(cc), conf)


CASES = [
    ("unanimous", [r("皖A12345")] * 3, "皖A12345"),
    ("one char wrong in each frame, different positions", [r("皖A12845"), r("皖A12335"), r("皖A72345")],
     "皖A12345"),
    ("confident minority beats unsure majority",
     [r("皖A12345", low={6: 0.2}), r("皖A12345", low={6: 0.2}), r("皖A12346", low={6: 0.99})], "皖A12346"),
    ("green 8-char plate wins the length vote", [r("沪AD12345"), r("沪AD12345"), r("沪AD1234")], "沪AD12345"),
    ("valid length outweighs a malformed read", [r("皖A12345", 0.6), r("皖A1234", 0.9)], "皖A12345"),
    ("suffix plates", [r("粤B1234学")] * 2, "粤B1234学"),
]


@pytest.mark.parametrize(("name", "reads", "expected"), CASES, ids=[c[0] for c in CASES])
def test_vote(name: str, reads: list[R], expected: str) -> None:
    v = vote_plate(reads)
    assert v is not None
    assert v.text == expected
    assert len(v.char_confidences) == len(v.text)
    assert 0 <= v.confidence <= 1


def test_disagreement_lowers_char_confidence_and_order_does_not_matter() -> None:
    reads = [r("皖A12345"), r("皖A12845"), r("皖A12345")]
    a, b = vote_plate(reads), vote_plate(list(reversed(reads)))
    assert a == b
    assert a is not None
    assert a.char_confidences[4] < a.char_confidences[0]
    assert a.frames == 3


def test_nothing_to_vote() -> None:
    assert vote_plate([]) is None
    assert vote_plate([R("", (), 0.0)]) is None
    assert vote_plate([r("皖A12345", 0.3)], min_read_confidence=0.5) is None


def test_invalid_result_is_flagged_by_half_confidence() -> None:
    v = vote_plate([r("XX12345", 0.9)])
    assert v is not None and v.text == "XX12345"
    assert v.confidence == pytest.approx(0.45)


@pytest.mark.parametrize(("text", "ok"), [("皖A12345", True), ("沪AD12345", True), ("粤B1234警", True),
                                          ("皖I12345", False), ("A12345", False), ("皖A1234", False)])
def test_plate_format(text: str, ok: bool) -> None:
    assert is_valid_plate(text) is ok
