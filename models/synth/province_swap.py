"""Repaint the province glyph of a real plate crop with another province.

The trainable real crops (`plates-cn-crops`) are 96% 皖, so a reader fine-tuned on them
learns "real-looking plate -> 皖": on the real scene set its province errors are 闽/浙 read
as 皖/苏. Rendered plates carry every province but not the real sheeting, blur and JPEG.
Swapping the province glyph of a real crop for a rendered one of another province keeps
the real pixels of the other six characters and of the ground, and breaks that prior.

Only single-row plates with light glyphs on a darker ground (blue, as all the real crops
are) are swapped; anything else, or a crop where no glyph is found where GA 36 puts it,
is returned unchanged (`None`), so the caller keeps the original sample.
"""

from __future__ import annotations

import cv2
import numpy as np

from models.synth.fonts import glyph_mask
from models.synth.plates import PROVINCES

# GA 36 single-row layout (mm on a 440 mm wide plate): province glyph 15.5-60.5, next
# character from 72.5; glyphs 25-115 of 140 mm high.
_PROV_X = (15.5 / 440, 60.5 / 440)
_NEXT_X = 72.5 / 440
_MIN_CROP = (16, 60)  # (h, w): below this a glyph is a few pixels and not worth repainting


def _glyph_rows(fg: np.ndarray) -> tuple[int, int] | None:
    """Top and bottom rows of the character band: rows where the serial glyphs have ink."""
    h, w = fg.shape
    band = fg[:, int(0.2 * w): int(0.95 * w)].mean(axis=1)
    rows = np.nonzero(band > 0.08)[0]
    # the plate's border line is a full-width run of ink at the very top / bottom: drop it
    rows = rows[(rows > 0) & (rows < h - 1)] if len(rows) > 2 else rows
    if len(rows) < h * 0.35:
        return None
    return int(rows.min()), int(rows.max()) + 1


def locate_province(img: np.ndarray) -> tuple[int, int, int, int, np.ndarray] | None:
    """(x0, y0, x1, y1, ink mask) of the province glyph in a single-row light-on-dark crop, or None."""
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected a BGR crop, got shape {img.shape}")
    h, w = img.shape[:2]
    if h < _MIN_CROP[0] or w < _MIN_CROP[1] or w / h < 2.6:
        return None
    light = img.min(axis=2)  # white glyphs high, blue ground low (its red channel is dark)
    _, fg_u8 = cv2.threshold(light, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    fg = fg_u8 > 0
    if not 0.08 < fg.mean() < 0.5:
        return None
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
    if grey[fg].mean() < grey[~fg].mean() + 30:  # dark glyphs on a light ground, or no contrast
        return None
    rows = _glyph_rows(fg)
    if rows is None:
        return None
    y0, y1 = rows
    # the province glyph ends in the gap before the next character: the emptiest column there
    lo, hi = int(_PROV_X[1] * w * 0.85), int(_NEXT_X * w * 1.1) + 1
    cols = fg[y0:y1].sum(axis=0)
    gap = lo + int(np.argmin(cols[lo:hi]))  # w >= 60 keeps hi > lo
    xs = np.nonzero(cols[:gap] > 0)[0]
    xs = xs[xs >= max(1, int(_PROV_X[0] * w * 0.3))]  # skip the left border line
    if len(xs) == 0:
        return None
    x0, x1 = int(xs.min()), int(xs.max()) + 1
    if not 0.06 * w <= x1 - x0 <= 0.16 * w:
        return None
    return x0, y0, x1, y1, fg


def swap_province(img: np.ndarray, text: str, rng: np.random.Generator) -> tuple[np.ndarray, str] | None:
    """The crop with its province glyph repainted as another province, and the new text; None if not swappable."""
    if not text or text[0] not in PROVINCES:
        return None
    found = locate_province(img)
    if found is None:
        return None
    x0, y0, x1, y1, fg = found
    new = str(rng.choice([p for p in PROVINCES if p != text[0]]))
    # the ground under the old glyph: inpaint its ink (dilated to take the anti-aliased rim)
    pad = 1
    ya, yb, xa, xb = max(0, y0 - pad), min(img.shape[0], y1 + pad), max(0, x0 - pad), min(img.shape[1], x1 + pad)
    ink_box = np.zeros(img.shape[:2], np.uint8)
    ink_box[ya:yb, xa:xb] = np.where(fg[ya:yb, xa:xb], 255, 0)
    out = cv2.inpaint(img, cv2.dilate(ink_box, np.ones((3, 3), np.uint8)), 3, cv2.INPAINT_TELEA)
    # the glyph colour: the brightest ink of the old glyph (its core, not the blurred rim)
    # (never empty: locate_province found the box from these ink columns)
    colour = np.percentile(img[y0:y1, x0:x1][fg[y0:y1, x0:x1]].astype(np.float32), 60, axis=0)
    # the new glyph fills the old one's box (GA 36 provinces are all the same 45x90 box)
    gw = x1 - x0 + int(rng.integers(-1, 2))
    gh = y1 - y0 + int(rng.integers(-1, 1))
    gw, gh = max(4, gw), max(6, gh)
    g = cv2.resize(glyph_mask(new), (gw * 4, gh * 4), interpolation=cv2.INTER_AREA)
    g = cv2.resize(g, (gw, gh), interpolation=cv2.INTER_AREA)
    # match the crop's softness: its glyph edges are blurred by optics, scaling and JPEG
    g = cv2.GaussianBlur(g, (0, 0), float(rng.uniform(0.4, 0.8)))
    cx = (x0 + x1) / 2 + float(rng.uniform(-0.5, 0.5))
    gx0 = round(cx - gw / 2)
    gx0 = min(max(gx0, 0), img.shape[1] - gw)
    gy0 = min(max(y0, 0), img.shape[0] - gh)
    roi = out[gy0:gy0 + gh, gx0:gx0 + gw].astype(np.float32)
    a = g[: roi.shape[0], : roi.shape[1], None] * float(rng.uniform(0.85, 1.0))
    painted = roi * (1 - a) + colour[None, None, :] * a + rng.normal(0, 3.0, roi.shape)  # + the lost noise
    out[gy0:gy0 + gh, gx0:gx0 + gw] = np.clip(painted, 0, 255).astype(np.uint8)
    return out, new + text[1:]
