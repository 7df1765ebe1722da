"""Detection metrics in numpy: COCO-style AP (101-point) at IoU 0.50:0.95, P/R at a threshold.

Why our own: evaluation must run on onnxruntime outputs (no torch), on datasets whose
classes are remapped, and report the operating-point precision/recall an enforcement
system is tuned at, next to threshold-free AP.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.types import box_iou

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


@dataclass
class ClassResult:
    instances: int
    predictions: int        # predictions at the operating threshold
    tp: int                 # at IoU 0.5 and the operating threshold
    fp: int
    fn: int
    precision: float | None
    recall: float | None
    ap50: float | None
    ap50_95: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(float(v), 4)

        return {"instances": self.instances, "predictions": self.predictions, "tp": self.tp, "fp": self.fp,
                "fn": self.fn, "precision": r(self.precision), "recall": r(self.recall),
                "ap50": r(self.ap50), "ap50_95": r(self.ap50_95)}


def match(pred_boxes: np.ndarray, pred_scores: np.ndarray, gt_boxes: np.ndarray,
          thresholds: np.ndarray = IOU_THRESHOLDS) -> np.ndarray:
    """Greedy COCO matching in descending score: (n_pred, n_thr) bool, True = true positive."""
    n, k = len(pred_boxes), len(thresholds)
    tp = np.zeros((n, k), bool)
    if n == 0 or len(gt_boxes) == 0:
        return tp
    order = np.argsort(-pred_scores, kind="stable")
    iou = box_iou(pred_boxes, gt_boxes)
    for j, t in enumerate(thresholds):
        taken = np.zeros(len(gt_boxes), bool)
        for i in order:
            cand = np.where(~taken & (iou[i] >= t), iou[i], -1.0)
            g = int(cand.argmax())
            if cand[g] >= 0:
                taken[g] = True
                tp[i, j] = True
    return tp


def average_precision(tp: np.ndarray, scores: np.ndarray, n_gt: int) -> np.ndarray:
    """AP per IoU threshold (101-point interpolated precision envelope, as COCO / ultralytics)."""
    if n_gt == 0:
        return np.full(tp.shape[1], np.nan)
    if len(scores) == 0:
        return np.zeros(tp.shape[1])
    order = np.argsort(-scores, kind="stable")
    tp = tp[order].astype(np.float64)
    ctp = tp.cumsum(0)
    cfp = (1 - tp).cumsum(0)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, 1e-12)
    x = np.linspace(0, 1, 101)
    aps = []
    for j in range(tp.shape[1]):
        # COCO: precision at recall r = best precision at any recall >= r; 0 beyond the max recall
        env = np.flip(np.maximum.accumulate(np.flip(precision[:, j])))
        idx = np.searchsorted(recall[:, j], x, side="left")
        ok = idx < len(env)
        aps.append(float(np.where(ok, env[np.minimum(idx, len(env) - 1)], 0.0).mean()))
    return np.array(aps)


def evaluate_class(preds: list[tuple[np.ndarray, np.ndarray]], gts: list[np.ndarray], conf: float) -> ClassResult:
    """One class over a dataset: `preds[i]` = (boxes, scores) of image i, `gts[i]` = its GT boxes."""
    all_tp, all_scores = [], []
    n_gt = int(sum(len(g) for g in gts))
    tp_op = fp_op = 0
    for (pb, ps), gb in zip(preds, gts, strict=True):
        tp = match(pb, ps, gb)
        all_tp.append(tp)
        all_scores.append(ps)
        keep = ps >= conf  # operating point: matching among the kept predictions only
        tp_k = match(pb[keep], ps[keep], gb, np.array([0.5]))[:, 0]
        tp_op += int(tp_k.sum())
        fp_op += int((~tp_k).sum())
    tp_all = np.concatenate(all_tp) if all_tp else np.zeros((0, len(IOU_THRESHOLDS)), bool)
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    ap = average_precision(tp_all, scores, n_gt)
    n_pred = tp_op + fp_op
    return ClassResult(
        instances=n_gt, predictions=n_pred, tp=tp_op, fp=fp_op, fn=n_gt - tp_op,
        precision=tp_op / n_pred if n_pred else (None if n_gt == 0 else 0.0),
        recall=tp_op / n_gt if n_gt else None,
        ap50=None if n_gt == 0 else float(ap[0]),
        ap50_95=None if n_gt == 0 else float(ap.mean()),
    )
