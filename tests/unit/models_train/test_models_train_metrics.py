"""Detection metrics: hand-checkable AP / precision / recall cases."""

from __future__ import annotations

import numpy as np
import pytest

from models.train.metrics import average_precision, evaluate_class, match


def test_match_is_greedy_by_score_and_one_to_one() -> None:
    gt = np.array([[0, 0, 10, 10]], np.float32)
    pb = np.array([[0, 0, 10, 10], [0, 0, 10, 9]], np.float32)   # both overlap the one GT
    tp = match(pb, np.array([0.5, 0.9]), gt, np.array([0.5]))
    assert tp[:, 0].tolist() == [False, True]   # the higher score takes it, the duplicate is a FP
    tp2 = match(pb[:1], np.array([0.9]), gt, np.array([0.5, 0.95]))
    assert tp2.tolist() == [[True, True]]
    assert match(pb, np.array([0.5, 0.9]), np.zeros((0, 4)), np.array([0.5])).sum() == 0


def test_perfect_detector_has_ap_one() -> None:
    gts = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.array([[5, 5, 15, 15]], np.float32)]
    preds = [(g.copy(), np.array([0.9] * len(g), np.float32)) for g in gts]
    r = evaluate_class(preds, gts, conf=0.25)
    assert r.ap50 == pytest.approx(1.0) and r.ap50_95 == pytest.approx(1.0)
    assert (r.precision, r.recall, r.tp, r.fp, r.fn) == (1.0, 1.0, 3, 0, 0)


def test_no_true_positive_gives_zero_ap() -> None:
    gts = [np.array([[0, 0, 10, 10]], np.float32)]
    preds = [(np.array([[50, 50, 60, 60]], np.float32), np.array([0.99], np.float32))]
    r = evaluate_class(preds, gts, conf=0.25)
    assert r.ap50 == 0.0 and r.precision == 0.0 and r.recall == 0.0 and r.fp == 1 and r.fn == 1


def test_half_recall_and_ranked_false_positive() -> None:
    # 2 GT; ranked predictions: TP (0.9), FP (0.8), below-threshold TP-candidate missing -> recall 0.5
    gts = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)]
    preds = [(np.array([[0, 0, 10, 10], [50, 50, 60, 60]], np.float32), np.array([0.9, 0.8], np.float32))]
    r = evaluate_class(preds, gts, conf=0.25)
    # precision 1.0 for recall in [0, 0.5] (51 of 101 points), 0 beyond
    assert r.ap50 == pytest.approx(51 / 101)
    assert r.precision == 0.5 and r.recall == 0.5
    # operating threshold drops the FP
    r2 = evaluate_class(preds, gts, conf=0.85)
    assert r2.precision == 1.0 and r2.recall == 0.5 and r2.ap50 == pytest.approx(51 / 101)


def test_iou_thresholds_lower_ap50_95() -> None:
    gts = [np.array([[0, 0, 10, 10]], np.float32)]
    preds = [(np.array([[0, 0, 10, 8]], np.float32), np.array([0.9], np.float32))]  # IoU 0.8
    r = evaluate_class(preds, gts, conf=0.25)
    assert r.ap50 == pytest.approx(1.0)
    assert r.ap50_95 == pytest.approx(7 / 10)  # TP at 0.50..0.80 (7 thresholds), miss at 0.85..0.95


def test_class_absent_from_ground_truth() -> None:
    r = evaluate_class([(np.array([[0, 0, 1, 1]], np.float32), np.array([0.9]))], [np.zeros((0, 4))], 0.25)
    assert r.ap50 is None and r.recall is None and r.fp == 1 and r.precision == 0.0
    assert np.isnan(average_precision(np.zeros((0, 10), bool), np.zeros(0), 0)).all()
