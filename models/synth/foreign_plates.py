"""European and US style plates, pasted beside Chinese ones onto real photos for the plate detector.

The detector is scored on `plates-intl-scenes` (EU and US cars, evaluation only) as well as on
Chinese plates; trained on Chinese plates alone it found 40% of them. These are not legal
designs, only their look: a dark Latin serial on a light (or UK rear yellow) sheet, the EU
blue band on the left, the US state line above the serial, thin borders and round corners.
"""

from __future__ import annotations

import cv2
import numpy as np

from models.synth.fonts import glyph_mask
from models.synth.plates import DIGITS, LETTERS, rounded_mask

STYLES = ("eu", "us")
_US_STATES = ("CALIFORNIA", "TEXAS", "FLORIDA", "OHIO", "NEW YORK", "ILLINOIS", "GEORGIA", "ARIZONA", "IOWA")


def _serial(rng: np.random.Generator, pattern: str) -> str:
    """'L' a letter, 'D' a digit, anything else kept (spaces, dashes)."""
    return "".join(str(rng.choice(list(LETTERS))) if c == "L" else str(rng.choice(list(DIGITS))) if c == "D" else c
                   for c in pattern)


def _text(canvas: np.ndarray, text: str, x0: float, y0: float, w: float, h: float,
          colour: tuple[float, float, float], squeeze: float) -> None:
    """Paint `text` centred in the box (x0, y0, w, h): glyphs `h` tall, `squeeze` x their natural width."""
    masks = [None if c in " -" else glyph_mask(c) for c in text]
    widths = [0.35 * h if m is None else m.shape[1] / m.shape[0] * h * squeeze for m in masks]
    gap = 0.08 * h
    total = sum(widths) + gap * (len(text) - 1)
    k = min(1.0, w / max(total, 1e-6))  # shrink a long serial to fit the sheet
    x = x0 + (w - total * k) / 2
    gh = max(2, round(h * max(k, 0.75)))  # a squeezed serial keeps most of its height
    for m, cw in zip(masks, widths, strict=True):
        cw_i = max(1, round(cw * k))
        if m is not None:
            g = cv2.resize(m, (cw_i, gh), interpolation=cv2.INTER_AREA)[..., None]
            yy, xx = round(y0 + (h - gh) / 2), round(x)
            roi = canvas[yy:yy + gh, xx:xx + cw_i]
            g = g[:roi.shape[0], :roi.shape[1]]
            roi[:] = roi * (1 - g) + np.asarray(colour, np.float32) * g
        x += (cw + gap) * k


def render_foreign_plate(rng: np.random.Generator, style: str | None = None,
                         height_px: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """(BGR uint8, alpha float32 0..1) of one EU or US style plate `height_px` tall."""
    style = style or str(rng.choice(STYLES, p=[0.55, 0.45]))
    if style not in STYLES:
        raise ValueError(f"plate style must be one of {STYLES}, got {style!r}")
    wmm, hmm = (520, 110) if style == "eu" else (305, 152)
    s = height_px / hmm
    W, H = round(wmm * s), height_px
    r, g, b = (float(v) for v in rng.uniform(5, 45, 3))
    ink = (r, g, b)
    if style == "eu":
        sheet = (20, 200, 245) if rng.random() < 0.15 else tuple(rng.uniform(225, 252, 3))  # UK rear: yellow
        canvas = np.empty((H, W, 3), np.float32)
        canvas[:] = sheet
        band = round(44 * s)
        if rng.random() < 0.85:
            canvas[:, :band] = (150 + rng.uniform(-20, 20), 50 + rng.uniform(-15, 15), 10)
            c = (band / 2, H * 0.33)
            for a in np.linspace(0, 2 * np.pi, 12, endpoint=False):
                cv2.circle(canvas, (round(c[0] + np.cos(a) * band * 0.28), round(c[1] + np.sin(a) * band * 0.28)),
                           max(1, round(1.6 * s)), (0, 210, 250), -1, cv2.LINE_AA)
            _text(canvas, str(rng.choice(list("DFINLPBE"))), 0, H * 0.58, band, H * 0.3, (245, 245, 245), 0.8)
        pattern = str(rng.choice(["LL DDD LL", "L LL DDDD", "LLL-DDDD", "DLLL DDD", "LL-LL DDD", "LL DD LLL"]))
        _text(canvas, _serial(rng, pattern), band + 4 * s, 14 * s, W - band - 10 * s, 80 * s, ink, 0.62)
    else:
        top = np.asarray(rng.uniform(215, 252, 3), np.float32)
        bottom = top * np.asarray(rng.uniform(0.75, 1.0, 3), np.float32)
        t = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
        canvas = np.ascontiguousarray(np.broadcast_to(top * (1 - t) + bottom * t, (H, W, 3)).astype(np.float32))
        state_ink = (float(rng.uniform(90, 160)), 30.0, 20.0) if rng.random() < 0.6 else (30.0, 30.0, 170.0)
        _text(canvas, str(rng.choice(_US_STATES)), 30 * s, 8 * s, W - 60 * s, 22 * s, state_ink, 0.8)
        pattern = str(rng.choice(["DLLLDDD", "LLL DDDD", "DLL DDDD", "LLDDLLL", "DDD LLL"]))
        _text(canvas, _serial(rng, pattern), 14 * s, 40 * s, W - 28 * s, 72 * s, ink, 0.55)
        if rng.random() < 0.5:
            _text(canvas, _serial(rng, "LLLLLLLL"), 60 * s, 124 * s, W - 120 * s, 14 * s, state_ink, 0.8)
    border = np.zeros((H, W), np.uint8)
    cv2.rectangle(border, (1, 1), (W - 2, H - 2), 255, max(1, round(1.5 * s)), cv2.LINE_AA)
    edge = border.astype(np.float32)[..., None] / 255.0
    canvas = canvas * (1 - edge) + np.asarray(ink, np.float32) * edge
    alpha = rounded_mask(H, W, max(2, round((5 if style == "eu" else 10) * s))).astype(np.float32) / 255.0
    return np.clip(canvas, 0, 255).astype(np.uint8), alpha
