"""European and US style plates, pasted beside Chinese ones onto real photos for the plate detector.

The detector is scored on `plates-intl-scenes` (EU and US cars, evaluation only) as well as on
Chinese plates; trained on Chinese plates alone it found 40% of them. These are not legal
designs, only their look: a dark Latin serial on a light (or UK rear yellow) sheet, the EU
blue band on the left, the US state line above the serial, thin borders and round corners.
"""

from __future__ import annotations

from collections.abc import Iterable

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


#: BGR inks of US serials and state names on a light sheet: black, navy, dark red, dark green
_US_INKS = ((30, 25, 20), (110, 40, 20), (30, 30, 150), (40, 90, 20))
#: BGR light sheets: white, cream, pale blue, pale yellow, pale grey-blue (the misses on
#: plates-intl-scenes were mostly low-contrast blue-grey and graphic US plates)
_US_SHEETS = ((248, 248, 248), (215, 240, 250), (245, 225, 200), (190, 240, 250), (225, 215, 205))


def _bgr(v: Iterable[float]) -> tuple[float, float, float]:
    b, g, r = (float(x) for x in v)
    return b, g, r


def _us_face(rng: np.random.Generator, H: int, W: int, s: float,
             ink: tuple[float, float, float]) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A US style plate face: a tinted or graphic sheet, state line, serial (with a state emblem as
    separator on some), registration stickers; light on dark for some. Returns (canvas, border ink)."""
    dark = rng.random() < 0.12
    if dark:
        top: np.ndarray = np.asarray(rng.choice([(60, 25, 10), (25, 25, 25), (30, 60, 15), (20, 20, 90)]),
                                     np.float32)
        top = top + rng.uniform(-10, 10, 3).astype(np.float32)
        ink = _bgr(rng.uniform(215, 250, 3))
    else:
        top = np.asarray(_US_SHEETS[int(rng.integers(len(_US_SHEETS)))], np.float32) + rng.uniform(-15, 5, 3)
        if rng.random() < 0.6:
            ink = _bgr([float(v) + float(rng.uniform(-15, 15)) for v in _US_INKS[int(rng.integers(len(_US_INKS)))]])
    bottom = top * np.asarray(rng.uniform(0.75, 1.05, 3), np.float32)
    t = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
    canvas: np.ndarray = np.ascontiguousarray(np.broadcast_to(top * (1 - t) + bottom * t, (H, W, 3)).astype(np.float32))
    if not dark and rng.random() < 0.45:  # state graphics behind the serial: soft coloured shapes
        art: np.ndarray = np.zeros((H, W, 3), np.float32)
        for _ in range(int(rng.integers(1, 4))):
            colour = rng.uniform(60, 255, 3)
            if rng.random() < 0.5:  # a hill / sunset band
                xs = np.linspace(0, W, 6)
                ys = H * rng.uniform(0.45, 0.95) + rng.uniform(-0.15, 0.15, 6) * H
                poly = np.concatenate([np.stack([xs, ys], 1), [[W, H], [0, H]]]).round().astype(np.int32)
                cv2.fillPoly(art, [poly], colour.tolist(), cv2.LINE_AA)
            else:
                c = (int(rng.uniform(0, W)), int(rng.uniform(0, H)))
                cv2.circle(art, c, int(rng.uniform(0.1, 0.45) * H), colour.tolist(), -1, cv2.LINE_AA)
        k = max(3, round(6 * s)) | 1
        art = cv2.GaussianBlur(art, (k, k), 0)
        mask = (art.max(2, keepdims=True) > 0).astype(np.float32) * float(rng.uniform(0.25, 0.6))
        canvas = canvas * (1 - mask) + art * mask
    state_ink = ((float(rng.uniform(90, 160)), 30.0, 20.0) if rng.random() < 0.6 else (30.0, 30.0, 170.0)) \
        if not dark else ink
    _text(canvas, str(rng.choice(_US_STATES)), 30 * s, 8 * s, W - 60 * s, 22 * s, state_ink, 0.8)
    pattern = str(rng.choice(["DLLLDDD", "LLL DDDD", "DLL DDDD", "LLDDLLL", "DDD LLL", "DLL-DDD", "LLD LLD"]))
    serial = _serial(rng, pattern)
    y_serial, h_serial = 40 * s, 72 * s
    _text(canvas, serial, 14 * s, y_serial, W - 28 * s, h_serial, ink, 0.55)
    if " " in serial and rng.random() < 0.4:  # a small emblem between the groups (Missouri's dot, a state outline)
        cx = 14 * s + (W - 28 * s) * (serial.index(" ") + 0.5) / len(serial)
        r = max(1, round(7 * s))
        emblem = _bgr(rng.uniform(20, 220, 3))
        cv2.rectangle(canvas, (round(cx - r), round(y_serial + h_serial / 2 - r)),
                      (round(cx + r), round(y_serial + h_serial / 2 + r)), emblem, -1, cv2.LINE_AA)
    if rng.random() < 0.5:
        _text(canvas, _serial(rng, "LLLLLLLL"), 60 * s, 124 * s, W - 120 * s, 14 * s, state_ink, 0.8)
    for left in rng.permutation([True, False])[:int(rng.choice([0, 1, 2], p=[0.4, 0.4, 0.2]))]:  # stickers
        w_, h_ = round(rng.uniform(28, 45) * s), round(rng.uniform(20, 30) * s)
        x_ = round(6 * s) if left else W - w_ - round(6 * s)
        cv2.rectangle(canvas, (x_, round(6 * s)), (x_ + w_, round(6 * s) + h_),
                      tuple(float(v) for v in rng.uniform(30, 250, 3)), -1)
    return canvas, ink


def render_foreign_plate(rng: np.random.Generator, style: str | None = None,
                         height_px: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """(BGR uint8, alpha float32 0..1) of one EU or US style plate `height_px` tall."""
    style = style or str(rng.choice(STYLES, p=[0.45, 0.55]))
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
        canvas, ink = _us_face(rng, H, W, s, ink)
    border = np.zeros((H, W), np.uint8)
    cv2.rectangle(border, (1, 1), (W - 2, H - 2), 255, max(1, round(1.5 * s)), cv2.LINE_AA)
    edge = border.astype(np.float32)[..., None] / 255.0
    canvas = canvas * (1 - edge) + np.asarray(ink, np.float32) * edge
    alpha = rounded_mask(H, W, max(2, round((5 if style == "eu" else 10) * s))).astype(np.float32) / 255.0
    return np.clip(canvas, 0, 255).astype(np.uint8), alpha
