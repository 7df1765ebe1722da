"""Confidence thresholds from human review: per camera and violation type, the lowest
threshold whose precision on reviewed events reaches the target (lowest = most recall).

Input is the server's review export (CONTRACTS.md): event_id, camera_id, site_id, violation,
confidence, decision (confirmed | rejected), reviewed_at. Recall is relative to the confirmed
events in the export: events the edge never sent (below its threshold at capture time) are
unknown, so a threshold can only be judged above the one that produced the export.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

COLUMNS = ("event_id", "camera_id", "site_id", "violation", "confidence", "decision", "reviewed_at")
DECISIONS = {"confirmed": True, "rejected": False}


class ReviewExportError(ValueError):
    pass


@dataclass(frozen=True)
class Review:
    event_id: str
    camera_id: str
    site_id: str
    violation: str
    confidence: float
    confirmed: bool
    reviewed_at: str


def read_reviews(path: str | Path) -> list[Review]:
    """Parse and validate the export; errors give the line number and the bad column.

    An event reviewed twice (re-review) counts once, with its latest decision.
    """
    p = Path(path)
    try:
        fh = p.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ReviewExportError(f"{p}: {exc}") from exc
    with fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ReviewExportError(f"{p}: missing column(s) {missing}; expected {','.join(COLUMNS)}")
        latest: dict[str, Review] = {}
        for lineno, row in enumerate(reader, start=2):
            dec = (row["decision"] or "").strip().lower()
            if dec not in DECISIONS:
                raise ReviewExportError(f"{p}:{lineno}: decision {row['decision']!r} is not confirmed/rejected")
            try:
                conf = float(row["confidence"])
            except (TypeError, ValueError):
                raise ReviewExportError(f"{p}:{lineno}: confidence {row['confidence']!r} is not a number") from None
            if not (0.0 <= conf <= 1.0) or math.isnan(conf):
                raise ReviewExportError(f"{p}:{lineno}: confidence {conf} is outside [0, 1]")
            for col in ("event_id", "camera_id", "violation"):
                if not (row[col] or "").strip():
                    raise ReviewExportError(f"{p}:{lineno}: empty {col}")
            r = Review(row["event_id"].strip(), row["camera_id"].strip(), (row["site_id"] or "").strip(),
                       row["violation"].strip(), conf, DECISIONS[dec], (row["reviewed_at"] or "").strip())
            prev = latest.get(r.event_id)
            if prev is None or r.reviewed_at >= prev.reviewed_at:
                latest[r.event_id] = r
    return list(latest.values())


@dataclass
class ThresholdChoice:
    camera_id: str
    violation: str
    target_precision: float
    n_confirmed: int
    n_rejected: int
    status: str  # ok | unreachable | insufficient
    message: str
    threshold: float | None = None
    precision: float | None = None
    recall: float | None = None
    precision_lower95: float | None = None  # Wilson lower bound: how sure we are of the precision
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    curve_t: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0), repr=False)
    curve_p: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0), repr=False)
    curve_r: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0), repr=False)

    def to_json(self) -> dict[str, object]:
        keys = ("camera_id", "violation", "target_precision", "n_confirmed", "n_rejected", "status", "message",
                "threshold", "precision", "recall", "precision_lower95", "tp", "fp", "fn", "tn")
        return {k: getattr(self, k) for k in keys}


def wilson_lower(successes: int, n: int, z: float = 1.96) -> float:
    if n == 0:
        return 0.0
    p = successes / n
    den = 1 + z * z / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / den


def pr_curve(conf: npt.NDArray[np.float64], pos: npt.NDArray[np.bool_]
             ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """For each distinct confidence t (ascending): TP and FP counts of `conf >= t`."""
    ts = np.unique(conf)
    order = np.argsort(conf)
    c, y = conf[order], pos[order]
    tp_ge = np.cumsum(y[::-1])[::-1]  # positives at index i or later
    fp_ge = np.cumsum(~y[::-1])[::-1]
    first = np.searchsorted(c, ts, side="left")
    return ts, tp_ge[first].astype(np.int64), fp_ge[first].astype(np.int64)


def choose_threshold(
    reviews: list[Review], camera_id: str, violation: str, target: float,
    *, min_reviews: int = 30, min_support: int = 10,
) -> ThresholdChoice:
    """Lowest threshold with precision >= target over at least `min_support` events above it."""
    rows = [r for r in reviews if r.camera_id == camera_id and r.violation == violation]
    conf = np.array([r.confidence for r in rows], np.float64)
    pos = np.array([r.confirmed for r in rows], bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    # Until a threshold is chosen the confusion counts are those of the export as it stands.
    base: dict[str, Any] = {"camera_id": camera_id, "violation": violation, "target_precision": target,
                            "n_confirmed": n_pos, "n_rejected": n_neg, "tp": n_pos, "fp": n_neg}
    if len(rows) < min_reviews or n_pos == 0:
        return ThresholdChoice(**base, status="insufficient", message=(
            f"only {len(rows)} reviewed events ({n_pos} confirmed, {n_neg} rejected); need >= {min_reviews} "
            "with at least one confirmed: review more events before changing the threshold"))
    ts, tp, fp = pr_curve(conf, pos)
    prec = tp / np.maximum(tp + fp, 1)
    rec = tp / n_pos
    curve: dict[str, Any] = {"curve_t": ts, "curve_p": prec, "curve_r": rec}
    ok = np.flatnonzero((prec >= target) & (tp + fp >= min_support))
    if len(ok) == 0:
        supported = tp + fp >= min_support
        best = int(np.argmax(np.where(supported, prec, -1))) if supported.any() else int(np.argmax(prec))
        return ThresholdChoice(**base, **curve, status="unreachable", message=(
            f"target precision {target:.3f} is unreachable: the best is {prec[best]:.3f} at threshold "
            f"{ts[best]:.3f} ({int(tp[best] + fp[best])} events above it; at least {min_support} required). "
            "The detector cannot separate confirmed from rejected events here well enough: retrain, or "
            "lower the target"))
    i = int(ok[0])
    t = float(ts[i])
    tpi, fpi = int(tp[i]), int(fp[i])
    fn, tn = n_pos - tpi, n_neg - fpi
    lower = wilson_lower(tpi, tpi + fpi)
    msg = (f"threshold {t:.4f}: precision {prec[i]:.3f} (95% lower bound {lower:.3f}), recall {rec[i]:.3f} "
           f"of {n_pos} confirmed; TP {tpi} FP {fpi} FN {fn} TN {tn}")
    if lower < target:
        msg += f"; with {tpi + fpi} events above it the precision is not yet certain to reach {target:.3f}"
    base.update(tp=tpi, fp=fpi, fn=fn, tn=tn)
    return ThresholdChoice(**base, **curve, status="ok", message=msg, threshold=t, precision=float(prec[i]),
                           recall=float(rec[i]), precision_lower95=lower)


def plot_choices(choices: list[ThresholdChoice], path: str | Path) -> None:
    """Precision/recall vs threshold and the confusion counts at the choice, one row per violation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(choices))
    fig, axes = plt.subplots(n, 2, figsize=(10, 3.6 * n), squeeze=False,
                             gridspec_kw={"width_ratios": [2.2, 1]})
    for row, ch in zip(axes, choices, strict=False):
        ax, cm = row
        title = f"{ch.camera_id} / {ch.violation}"
        if len(ch.curve_t):
            ax.step(ch.curve_t, ch.curve_p, where="post", label="precision", color="tab:blue")
            ax.step(ch.curve_t, ch.curve_r, where="post", label="recall", color="tab:orange")
        ax.axhline(ch.target_precision, ls="--", color="grey", lw=1, label=f"target {ch.target_precision:g}")
        if ch.threshold is not None:
            ax.axvline(ch.threshold, color="tab:green", lw=1.5, label=f"chosen {ch.threshold:.3f}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("confidence threshold")
        ax.set_title(f"{title}: {ch.status}", fontsize=10)
        ax.legend(loc="lower left", fontsize=8)
        ax.grid(alpha=0.3)
        m = np.array([[ch.tp, ch.fn], [ch.fp, ch.tn]])
        cm.imshow(m, cmap="Blues")
        for (i, j), v in np.ndenumerate(m):
            cm.text(j, i, str(v), ha="center", va="center", fontsize=12,
                    color="white" if v > m.max() / 2 else "black")
        cm.set_xticks([0, 1], ["kept (>= t)", "dropped (< t)"])
        cm.set_yticks([0, 1], ["confirmed", "rejected"])
        cm.set_title("at chosen threshold" if ch.threshold is not None else "all reviewed (none chosen)",
                     fontsize=10)
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)
