"""Plate reader pieces that need no model: CTC decoding, format check, preprocessing, split, scoring."""

from __future__ import annotations

import numpy as np
import pytest

from edge.detectors.plate_reader import (
    CHARSET,
    PlateText,
    crop_layouts,
    ctc_greedy_decode,
    plate_text_valid,
    preprocess_plate,
    split_two_row,
)
from models.train.plate_reader import score_reads
from models.train.plate_reader_data import REAL_SPLIT, RealSplit, text_from_name

VOCAB = ["<blank>", "A", "B", "1"]


def _probs(path: list[int], p: float = 0.9) -> np.ndarray:
    """[T, C] matrix whose arg-max path is `path`, winner probability p."""
    m = np.full((len(path), len(VOCAB)), (1 - p) / (len(VOCAB) - 1), np.float32)
    for t, k in enumerate(path):
        m[t, k] = p
    return m


def test_ctc_collapses_repeats_and_drops_blanks() -> None:
    r = ctc_greedy_decode(_probs([0, 1, 1, 1, 0, 0, 2, 0]), VOCAB)
    assert r.text == "AB"
    assert len(r.char_confidences) == 2


def test_ctc_blank_separates_a_real_repeat() -> None:
    assert ctc_greedy_decode(_probs([3, 3, 0, 3, 0, 1]), VOCAB).text == "11A"
    assert ctc_greedy_decode(_probs([3, 3, 3, 1]), VOCAB).text == "1A"


def test_ctc_char_confidence_is_max_over_its_run_and_total_is_product() -> None:
    m = _probs([1, 1, 0, 2])
    m[0, 1], m[1, 1], m[3, 2] = 0.6, 0.8, 0.5
    r = ctc_greedy_decode(m, VOCAB)
    assert r.text == "AB"
    assert r.char_confidences == pytest.approx((0.8, 0.5))
    assert r.confidence == pytest.approx(0.4)


def test_ctc_all_blank_is_empty_with_zero_confidence() -> None:
    r = ctc_greedy_decode(_probs([0, 0, 0]), VOCAB)
    assert r == PlateText("", (), 0.0)
    with pytest.raises(ValueError, match=r"\[T, C\]"):
        ctc_greedy_decode(np.zeros((2, 3, 4), np.float32), VOCAB)


@pytest.mark.parametrize("text", ["皖A12345", "京PL3N67", "粤B1234学", "沪A1234警", "川X1234挂",
                                  "皖AD12345", "浙BFA1234", "苏E12345D"])
def test_valid_plate_formats(text: str) -> None:
    assert plate_text_valid(text)


@pytest.mark.parametrize("text", ["", "皖A1234", "皖A123456", "XA12345", "皖112345", "皖AI2345",
                                  "皖A12警45", "皖AD12", "皖AZ12345", "皖A12345X"])
def test_invalid_plate_formats(text: str) -> None:
    assert not plate_text_valid(text)


def test_charset_matches_contract() -> None:
    assert len(CHARSET) == 31 + 10 + 24 + 3 and len(set(CHARSET)) == len(CHARSET)
    assert "I" not in CHARSET and "O" not in CHARSET


def test_preprocess_shapes_and_channels() -> None:
    bgr = np.random.default_rng(0).integers(0, 255, (24, 94, 3), np.uint8)
    x = preprocess_plate(bgr, (32, 96))
    assert x.shape == (3, 32, 96) and x.dtype == np.float32 and x.max() <= 255
    assert preprocess_plate(bgr[..., 0], (32, 96)).shape == (3, 32, 96)
    assert preprocess_plate(np.dstack([bgr, bgr[..., :1]]), (32, 96)).shape == (3, 32, 96)
    with pytest.raises(ValueError, match="non-empty"):
        preprocess_plate(np.zeros((0, 10, 3), np.uint8), (32, 96))


def test_two_row_split_puts_top_row_first() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    img[:40, 60:140] = 255  # top row content bright, bottom dark
    out = split_two_row(img)
    assert out.shape[0] == 67 and out.shape[1] > 200
    left = out[:, : out.shape[1] - 200]
    assert left.mean() > 100 and out[:, -200:].mean() < 60
    assert crop_layouts(np.zeros((120, 200, 3), np.uint8)) == (True,)
    assert crop_layouts(np.zeros((24, 94, 3), np.uint8)) == (False,)
    assert crop_layouts(np.zeros((60, 130, 3), np.uint8)) == (False, True)


def test_real_split_is_fixed_by_name_and_about_30_percent() -> None:
    names = [f"皖A{i:05d}.jpg" for i in range(5000)]
    parts = [REAL_SPLIT.part(n) for n in names]
    assert parts == [RealSplit().part(n) for n in names]  # deterministic, no state
    share = parts.count("test") / len(parts)
    assert 0.28 < share < 0.32
    assert RealSplit(salt="other").part(names[0]) in {"test", "val", "train"}
    assert REAL_SPLIT.part("皖A05279.jpg") == REAL_SPLIT.part("皖A05279.jpg")


def test_text_from_file_names() -> None:
    assert text_from_name("皖A05279") == "皖A05279"
    assert text_from_name("皖AD12345_000017") == "皖AD12345"
    with pytest.raises(ValueError, match="cannot derive"):
        text_from_name("IMG_0001")


def test_score_reads_counts_positions_cer_and_confusions() -> None:
    s = score_reads(["皖A12345", "皖A88888", "皖AD12345"], ["皖A12345", "皖A88B88", "皖AD1234"])
    assert s["n"] == 3
    assert s["exact_match"] == pytest.approx(1 / 3)
    assert s["per_position_char_accuracy"][:4] == [1.0, 1.0, 1.0, 1.0]
    assert s["per_position_char_accuracy"][4] == pytest.approx(2 / 3, abs=1e-3)
    assert s["per_position_char_accuracy"][7] == 0.0
    assert s["mean_cer"] == pytest.approx((0 + 1 / 7 + 1 / 8) / 3, abs=1e-4)
    pairs = {(c["true"], c["pred"]) for c in s["confusions_top10"]}
    assert pairs == {("8", "B"), ("5", "∅")}
