"""Chinese licence plates: random legal texts, spec-proportioned rendering, degradation.

Geometry follows GA 36-2018 (millimetres): small-car blue / large-vehicle front yellow
plates are 440x140 with seven 45x90 characters (12 mm apart, 34 mm gap holding the
separator dot after the 2nd character); the small new-energy plate is 480x140 with eight
43x90 characters on a white-to-green gradient; the rear yellow plate of large vehicles is
440x220 in two rows (2 characters 80x60 on top, 5 characters 65x110 below). Police plates
(white, red 警) are included so the plate reader sees every suffix of its charset.
Text is returned WITHOUT the separator dot ("皖A12345"), as the plate_reader contract says.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.synth.fonts import glyph_mask, is_cjk

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # I and O are never issued (confusable with 1 and 0)
DIGITS = "0123456789"
SUFFIXES = "学警挂"
CHARSET = PROVINCES + DIGITS + LETTERS + SUFFIXES

PLATE_KINDS = ("blue", "green", "yellow", "yellow_double", "white")
# Share of each kind when the caller does not ask for one (roughly the traffic mix seen
# by an urban enforcement camera; police plates kept rare but present for the charset).
KIND_WEIGHTS = {"blue": 0.55, "green": 0.2, "yellow": 0.12, "yellow_double": 0.08, "white": 0.05}

# Plate size in millimetres (width, height).
PLATE_MM = {"blue": (440, 140), "yellow": (440, 140), "white": (440, 140),
            "green": (480, 140), "yellow_double": (440, 220)}

# BGR colours.
_BLUE_BG = (168, 62, 12)
_YELLOW_BG = (8, 182, 246)
_WHITE_BG = (236, 238, 236)
_GREEN_TOP = (238, 250, 236)
_GREEN_BOTTOM = (92, 196, 64)
_WHITE_FG = (246, 246, 246)
_BLACK_FG = (22, 22, 22)
_RED_FG = (30, 30, 200)


@dataclass(frozen=True)
class CharBox:
    ch: str
    x: float  # mm, left
    y: float  # mm, top
    w: float
    h: float


def _f32(x: object) -> np.ndarray:
    return np.asarray(x, np.float32)


def _pick(rng: np.random.Generator, chars: str) -> str:
    return chars[int(rng.integers(len(chars)))]


def _serial(rng: np.random.Generator, n: int) -> str:
    """n serial characters: mostly digits, sometimes 1-2 letters (as issued since 2007)."""
    out = [_pick(rng, DIGITS) for _ in range(n)]
    if rng.random() < 0.45:
        k = 1 if rng.random() < 0.7 else 2
        for i in rng.choice(n, size=min(k, n), replace=False):
            out[int(i)] = _pick(rng, LETTERS)
    return "".join(out)


def random_plate_text(rng: np.random.Generator, kind: str | None = None) -> tuple[str, str]:
    """A random, format-legal plate text and its kind.

    kinds: blue (7 chars), green (8 chars: province, letter, D/F, letter-or-digit, 4 digits),
    yellow (7 chars, sometimes the coach-car 学 suffix), yellow_double (7 chars, sometimes
    the trailer 挂 suffix), white (police: province, letter, 4 digits, 警).
    """
    if kind is None:
        kinds = list(KIND_WEIGHTS)
        kind = kinds[int(rng.choice(len(kinds), p=np.array(list(KIND_WEIGHTS.values()))))]
    if kind not in PLATE_KINDS:
        raise ValueError(f"unknown plate kind {kind!r}; expected one of {', '.join(PLATE_KINDS)}")
    head = _pick(rng, PROVINCES) + _pick(rng, LETTERS)
    if kind == "green":
        body = _pick(rng, "DF") + _pick(rng, LETTERS + DIGITS) + "".join(_pick(rng, DIGITS) for _ in range(4))
    elif kind == "white":
        body = "".join(_pick(rng, DIGITS) for _ in range(4)) + "警"
    elif kind == "yellow" and rng.random() < 0.15:
        body = "".join(_pick(rng, DIGITS) for _ in range(4)) + "学"
    elif kind == "yellow_double" and rng.random() < 0.25:
        body = "".join(_pick(rng, DIGITS) for _ in range(4)) + "挂"
    else:
        body = _serial(rng, 5)
    return head + body, kind


def validate_plate_text(text: str, kind: str) -> None:
    """Raise ValueError naming what is wrong when `text` is not a legal plate of `kind`."""
    if kind not in PLATE_KINDS:
        raise ValueError(f"unknown plate kind {kind!r}; expected one of {', '.join(PLATE_KINDS)}")
    n = 8 if kind == "green" else 7
    if len(text) != n:
        raise ValueError(f"{kind} plate text must have {n} characters, got {len(text)}: {text!r}")
    if text[0] not in PROVINCES:
        raise ValueError(f"plate {text!r}: first character must be a province abbreviation")
    if text[1] not in LETTERS:
        raise ValueError(f"plate {text!r}: second character must be a letter A-Z except I/O")
    bad = [c for c in text[2:] if c not in DIGITS + LETTERS + SUFFIXES]
    if bad:
        raise ValueError(f"plate {text!r}: characters {''.join(bad)!r} are not in the plate charset")
    if any(c in SUFFIXES for c in text[2:-1]):
        raise ValueError(f"plate {text!r}: 学/警/挂 may only be the last character")
    if kind == "green" and text[2] not in "DF":
        raise ValueError(f"green plate {text!r}: third character must be D or F")


def layout(text: str, kind: str) -> tuple[list[CharBox], tuple[float, float] | None]:
    """Character boxes (mm) and the separator dot centre (mm) or None."""
    validate_plate_text(text, kind)
    if kind == "yellow_double":
        top = [CharBox(text[0], 110, 15, 80, 60), CharBox(text[1], 250, 15, 80, 60)]
        bottom = [CharBox(c, 27.5 + i * 80, 92, 65, 110) for i, c in enumerate(text[2:])]
        return top + bottom, None
    if kind == "green":
        w, gap, big, x0 = 43.0, 9.0, 49.0, 16.5
    else:
        w, gap, big, x0 = 45.0, 12.0, 34.0, 15.5
    boxes, x = [], x0
    dot = (0.0, 0.0)
    for i, c in enumerate(text):
        boxes.append(CharBox(c, x, 25, w, 90))
        x += w
        if i == 1:
            dot = (x + big / 2, 70.0)
            x += big
        else:
            x += gap
    return boxes, dot


def _colours(kind: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    if kind == "blue":
        return _BLUE_BG, _WHITE_FG
    if kind in ("yellow", "yellow_double"):
        return _YELLOW_BG, _BLACK_FG
    if kind == "white":
        return _WHITE_BG, _BLACK_FG
    return _GREEN_TOP, _BLACK_FG


def _paint(canvas: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], x: int, y: int) -> None:
    h, w = mask.shape
    roi = canvas[y: y + h, x: x + w]
    m = mask[: roi.shape[0], : roi.shape[1], None]
    roi[:] = roi * (1 - m) + np.asarray(colour, np.float32) * m


def rounded_mask(h: int, w: int, r: int) -> np.ndarray:
    """uint8 mask (255 inside) of a plate outline with rounded corners of radius r."""
    m = np.zeros((h, w), np.uint8)
    cv2.rectangle(m, (r, 0), (w - 1 - r, h - 1), 255, -1)
    cv2.rectangle(m, (0, r), (w - 1, h - 1 - r), 255, -1)
    for cx, cy in ((r, r), (w - 1 - r, r), (r, h - 1 - r), (w - 1 - r, h - 1 - r)):
        cv2.circle(m, (cx, cy), r, 255, -1, cv2.LINE_AA)
    return m


def render_plate_rgba(text: str, kind: str, rng: np.random.Generator | None = None, *,
                      height_px: int = 140) -> tuple[np.ndarray, np.ndarray]:
    """Clean plate as (BGR uint8, alpha float32 in [0,1]); alpha is 0 outside the rounded corners."""
    if height_px < 12:
        raise ValueError(f"height_px must be >= 12, got {height_px}")
    boxes, dot = layout(text, kind)
    wmm, hmm = PLATE_MM[kind]
    ss = 2  # supersampling
    s = height_px * ss / hmm  # px per mm
    W, H = round(wmm * s), round(hmm * s)
    bg, fg = _colours(kind)
    canvas = np.empty((H, W, 3), np.float32)
    if kind == "green":
        t = np.linspace(0, 1, H, dtype=np.float32)[:, None, None] ** 1.3
        canvas[:] = np.asarray(_GREEN_TOP, np.float32) * (1 - t) + np.asarray(_GREEN_BOTTOM, np.float32) * t
    else:
        canvas[:] = bg
    # Sheet tone varies plate to plate (fading, batch).
    if rng is not None:
        canvas *= rng.uniform(0.9, 1.06, size=3).astype(np.float32)
    border_col = np.asarray(fg if kind != "white" else _BLACK_FG, np.float32)
    # Raised border line 3 mm in from the edge, as pressed into the plate.
    r = max(2, round(6 * s))
    inset, lw = round(3 * s), max(1, round(1.6 * s))
    frame = np.zeros((H, W), np.uint8)
    cv2.rectangle(frame, (inset, inset), (W - 1 - inset, H - 1 - inset), 255, lw, cv2.LINE_AA)
    _paint(canvas, frame.astype(np.float32) / 255.0, tuple(border_col), 0, 0)  # type: ignore[arg-type]
    # Characters: tight glyph masks stretched into the spec box; narrow glyphs (1, J...) keep
    # close to their natural width and are centred, as on the real typeface.
    for i, b in enumerate(boxes):
        g = glyph_mask(b.ch)
        bw, bh = b.w * s, b.h * s
        tw = bw if is_cjk(b.ch) else min(bw, bh * g.shape[1] / g.shape[0] * 1.25)
        tw_i, th_i = max(1, round(tw)), max(1, round(bh))
        m = cv2.resize(g, (tw_i, th_i), interpolation=cv2.INTER_AREA)
        x = round(b.x * s + (bw - tw_i) / 2)
        y = round(b.y * s)
        col = _RED_FG if (kind == "white" and i == len(boxes) - 1) else fg
        # Embossing: a faint darker offset below-right, then the paint.
        _paint(canvas, m * 0.35, tuple(int(c * 0.55) for c in bg), x + round(0.8 * s), y + round(0.8 * s))  # type: ignore[arg-type]
        _paint(canvas, m, col, x, y)
    if dot is not None:
        cv2.circle(canvas, (round(dot[0] * s), round(dot[1] * s)), round(5 * s), tuple(float(c) for c in fg),
                   -1, cv2.LINE_AA)
    # Two mounting rivets in the top margin, in the gaps next to the outer characters.
    rivet_x = (66.5, wmm - 66.5) if kind != "yellow_double" else (70.0, wmm - 70.0)
    for rx in rivet_x:
        c = (round(rx * s), round(12.5 * s))
        rr = max(1, round(4.5 * s))
        cv2.circle(canvas, c, rr, (150.0, 150.0, 155.0), -1, cv2.LINE_AA)
        cv2.circle(canvas, (c[0] - rr // 3, c[1] - rr // 3), max(1, rr // 3), (225.0, 225.0, 230.0), -1,
                   cv2.LINE_AA)
        cv2.circle(canvas, c, rr, (90.0, 90.0, 95.0), max(1, round(0.8 * s)), cv2.LINE_AA)
    alpha = rounded_mask(H, W, r)
    out_w, out_h = round(wmm * height_px / hmm), height_px
    bgr = cv2.resize(np.clip(canvas, 0, 255), (out_w, out_h), interpolation=cv2.INTER_AREA).astype(np.uint8)
    a = cv2.resize(alpha, (out_w, out_h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    return bgr, a


def render_plate(text: str, kind: str, rng: np.random.Generator | None = None, *,
                 height_px: int = 140) -> np.ndarray:
    """Clean BGR plate at `height_px` (1 px/mm at the default 140 for single-row plates).

    Corners outside the rounded plate outline are filled with a dark mount colour.
    """
    bgr, a = render_plate_rgba(text, kind, rng, height_px=height_px)
    mount = np.full_like(bgr, 35)
    return (bgr * a[..., None] + mount * (1 - a[..., None])).astype(np.uint8)


# ----------------------------------------------------------------------------- degradation


def motion_blur(img: np.ndarray, length: float, angle_deg: float) -> np.ndarray:
    """Linear motion blur of `length` px along `angle_deg` (0 = horizontal)."""
    if length < 1.5:
        return img
    k = int(np.ceil(length)) | 1
    ker = np.zeros((k, k), np.float32)
    c = k // 2
    dx, dy = np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))
    cv2.line(ker, (round(c - dx * length / 2), round(c - dy * length / 2)),
             (round(c + dx * length / 2), round(c + dy * length / 2)), 1.0, 1, cv2.LINE_AA)
    ker /= max(ker.sum(), 1e-6)
    return cv2.filter2D(img, -1, ker, borderType=cv2.BORDER_REFLECT)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if out is None:
        raise RuntimeError("JPEG decoding failed")
    return np.asarray(out)


def ir_look(img: np.ndarray, rng: np.random.Generator, gain: float = 1.0) -> np.ndarray:
    """Near-infrared flash look: monochrome, retroreflective sheeting glows, blue dye is
    nearly transparent in NIR so blue/green backgrounds turn light and paint stays dark or
    light depending on its pigment. Approximated by a channel mix favouring red+green."""
    f = img.astype(np.float32)
    w = rng.dirichlet([3.0, 4.0, 5.0]).astype(np.float32)  # B, G, R weights
    g = f[..., 0] * w[0] + f[..., 1] * w[1] + f[..., 2] * w[2]
    g = 255.0 * np.clip(g / 255.0, 0, 1) ** rng.uniform(0.7, 1.1) * gain
    g = np.clip(g, 0, 255).astype(np.uint8)
    return cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)


def _random_bumper(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    # Car paint around the plate: mostly greys/black/white, some muted colours.
    palette = np.array([[235, 235, 235], [30, 30, 30], [160, 160, 165], [110, 110, 112], [40, 40, 170],
                        [140, 80, 30], [60, 60, 60], [200, 200, 190], [30, 70, 110]], np.float32)
    base = palette[int(rng.integers(len(palette)))] * rng.uniform(0.7, 1.1)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    grad = np.linspace(rng.uniform(0.7, 1.0), rng.uniform(0.8, 1.2), h, dtype=np.float32)[:, None, None]
    img *= grad
    img += rng.normal(0, 6, size=(h, w, 1)).astype(np.float32)
    # Grille slats or a licence-frame band sometimes.
    if rng.random() < 0.5:
        step = int(rng.integers(6, 14))
        img[::step] *= 0.5
    return np.clip(img, 0, 255).astype(np.uint8)


def _add_dirt(img: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(3, int(25 * amount) + 4))):
        c = (int(rng.integers(w)), int(rng.integers(h)))
        ax = (int(rng.integers(1, max(2, w // 10))), int(rng.integers(1, max(2, h // 6))))
        cv2.ellipse(mask, c, ax, float(rng.uniform(0, 180)), 0, 360, float(rng.uniform(0.2, 0.7)), -1)
    if amount > 0.5:  # spray along the lower edge, thrown up by the wheels
        mask[int(h * rng.uniform(0.6, 0.85)):] += rng.uniform(0.1, 0.35)
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.8, w / 80)) * amount
    mask = np.clip(mask, 0, 0.85)[..., None]
    mud = np.array([rng.uniform(40, 70), rng.uniform(60, 90), rng.uniform(80, 110)], np.float32)
    return (img * (1 - mask) + mud * mask).astype(np.uint8)


def _add_glare(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    sx, sy = rng.uniform(0.1, 0.5) * w, rng.uniform(0.2, 0.8) * h
    g = np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))
    return np.clip(img.astype(np.float32) + (g * 255 * strength)[..., None], 0, 255).astype(np.uint8)


def degrade_plate(img: np.ndarray, rng: np.random.Generator, *, night: bool = False,
                  out_width: int | None = None) -> np.ndarray:
    """A clean plate -> what a plate detector's crop of it looks like on a road camera.

    Adds a bumper margin, perspective tilt/yaw/roll, dirt, glare, a small partial occlusion,
    low resolution, defocus and motion blur, sensor noise, NIR look at night and JPEG.
    The output is a crop (plate plus a few % margin) `out_width` wide (random 94-188 if None).
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"degrade_plate expects a BGR image (H, W, 3), got shape {img.shape}")
    h, w = img.shape[:2]
    plate = img.copy()
    if rng.random() < 0.5:
        plate = _add_dirt(plate, rng, float(rng.uniform(0.2, 1.0)))
    # Context: bumper around the plate.
    pad_x, pad_y = int(w * 0.35), int(h * 0.6)
    big = _random_bumper(rng, h + 2 * pad_y, w + 2 * pad_x)
    big[pad_y: pad_y + h, pad_x: pad_x + w] = plate
    # Perspective: camera above (plate top farther -> narrower), yaw from the lane offset.
    src = _f32([[0, 0], [w, 0], [w, h], [0, h]]) + _f32([pad_x, pad_y])
    pitch = rng.uniform(0.0, 0.12)   # relative shrink of the top edge
    yaw = rng.uniform(-0.18, 0.18)   # relative shrink of one side
    roll = np.deg2rad(rng.uniform(-6, 6))
    dst = _f32([[w * pitch / 2, 0], [w * (1 - pitch / 2), 0], [w, h], [0, h]])
    dst[:, 1] += _f32([max(yaw, 0), -min(yaw, 0), -min(yaw, 0), max(yaw, 0)]) * h * _f32(
        [1, 1, -1, -1]) * 0.5
    dst[:, 0] += rng.normal(0, w * 0.01, 4).astype(np.float32)
    cs, sn = np.cos(roll), np.sin(roll)
    ctr = dst.mean(0)
    dst = (dst - ctr) @ _f32([[cs, sn], [-sn, cs]]) + ctr + _f32([pad_x, pad_y])
    M = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    warped = cv2.warpPerspective(big, M, (big.shape[1], big.shape[0]), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
    x0, y0 = dst.min(0)
    x1, y1 = dst.max(0)
    mx, my = (x1 - x0) * rng.uniform(0.0, 0.08), (y1 - y0) * rng.uniform(0.02, 0.2)
    x0, x1 = int(max(0, x0 - mx * rng.uniform(0.5, 1.5))), int(min(warped.shape[1], x1 + mx))
    y0, y1 = int(max(0, y0 - my)), int(min(warped.shape[0], y1 + my * rng.uniform(0.5, 1.5)))
    crop = warped[y0:y1, x0:x1]
    if rng.random() < 0.35:
        crop = _add_glare(crop, rng, float(rng.uniform(0.2, 0.8)))
    if rng.random() < 0.08:  # tow hook / bracket across an edge, never most of the text
        ch, cw = crop.shape[:2]
        bw = int(cw * rng.uniform(0.05, 0.15))
        bx = int(rng.choice([rng.integers(0, max(1, cw // 8)), rng.integers(cw - cw // 8 - bw, cw - bw)]))
        cv2.rectangle(crop, (bx, int(ch * rng.uniform(0.3, 0.6))), (bx + bw, ch), tuple(
            float(v) for v in rng.uniform(10, 60, 3)), -1)
    # Output size: detector crops 94..188 px wide; aspect from the warped plate.
    ow = int(out_width if out_width is not None else rng.integers(94, 189))
    oh = max(12, round(ow * crop.shape[0] / crop.shape[1]))
    # Low resolution: sample the scene at fewer pixels than the crop has, then upsample.
    lr = rng.uniform(0.45, 1.0) if rng.random() < 0.5 else 1.0
    small = cv2.resize(crop, (max(8, round(ow * lr)), max(6, round(oh * lr))), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.6:
        small = cv2.GaussianBlur(small, (0, 0), rng.uniform(0.3, 1.1))
    if rng.random() < 0.5:
        small = motion_blur(small, rng.uniform(1.5, 5.0) * lr, rng.normal(90, 15))
    out = cv2.resize(small, (ow, oh), interpolation=cv2.INTER_LINEAR)
    if night:
        out = ir_look(out, rng, gain=float(rng.uniform(0.8, 1.3)))
    # Exposure and sensor noise.
    f = out.astype(np.float32) * rng.uniform(0.6, 1.25) + rng.uniform(-25, 20)
    nshape = (*f.shape[:2], 1) if night else f.shape
    f += rng.normal(0, rng.uniform(1.5, 9.0 if not night else 14.0), nshape).astype(np.float32)
    out = jpeg(np.clip(f, 0, 255).astype(np.uint8), int(rng.integers(35, 95)))
    if night:  # NIR sensors deliver monochrome
        out = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return out


def write_plate_text_dataset(out_dir: str | Path, n: int, seed: int, *, night_fraction: float = 0.2,
                             val_fraction: float = 0.1) -> Path:
    """Write `n` degraded plate crops named by their text and a labels.csv (file,plate,kind,split).

    Each crop's file name starts with the plate text (e.g. 皖AD12345_000017.png). Deterministic
    for a given seed. Returns the labels.csv path.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        text, kind = random_plate_text(rng)
        clean = render_plate(text, kind, rng, height_px=int(rng.integers(60, 141)))
        img = degrade_plate(clean, rng, night=bool(rng.random() < night_fraction))
        name = f"images/{text}_{i:06d}.png"
        ok, buf = cv2.imencode(".png", img)
        if not ok:
            raise RuntimeError(f"PNG encoding failed for {name}")
        (out / name).write_bytes(buf.tobytes())
        rows.append((name, text, kind, "val" if rng.random() < val_fraction else "train"))
    labels = out / "labels.csv"
    with labels.open("w", newline="", encoding="utf-8") as fh:
        wr = csv.writer(fh)
        wr.writerow(["file", "plate", "kind", "split"])
        wr.writerows(rows)
    return labels
