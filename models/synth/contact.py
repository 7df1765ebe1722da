"""Contact sheets: a PNG grid of random renders with their labels drawn, so a person can
judge realism and label quality at a glance (committed under models/docs/)."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from models.synth.datasets import MODELS, SAMPLERS, write_scene_plate_text_dataset
from models.synth.fonts import font_path
from models.synth.plates import degrade_plate, random_plate_text, render_plate

_COLOURS = [(60, 220, 60), (60, 60, 240), (240, 140, 40), (40, 220, 240), (230, 60, 230), (240, 240, 60)]
MAX_BYTES = 1_450_000


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(font_path("cjk"), size)


def _tile_yolo(img: np.ndarray, labels: list[tuple[int, tuple[float, float, float, float]]], names: tuple[str, ...],
               tile: int) -> Image.Image:
    s = tile / img.shape[1]
    small = cv2.resize(img, (tile, max(1, round(img.shape[0] * s))), interpolation=cv2.INTER_AREA)
    pil = Image.fromarray(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
    d = ImageDraw.Draw(pil)
    f = _font(max(10, tile // 40))
    for c, (x0, y0, x1, y1) in labels:
        col = _COLOURS[c % len(_COLOURS)]
        rgb = (col[2], col[1], col[0])
        d.rectangle([x0 * s, y0 * s, x1 * s, y1 * s], outline=rgb, width=max(1, tile // 320))
        d.text((x0 * s + 2, max(0.0, y0 * s - f.size - 1)), names[c], fill=rgb, font=f)
    return pil


def _tile_plate(rng: np.random.Generator, tile: int) -> Image.Image:
    text, kind = random_plate_text(rng)
    img = degrade_plate(render_plate(text, kind, rng, height_px=int(rng.integers(60, 141))), rng,
                        night=bool(rng.random() < 0.25))
    s = (tile - 8) / img.shape[1]
    big = cv2.resize(img, (tile - 8, max(1, round(img.shape[0] * s))), interpolation=cv2.INTER_NEAREST)
    f = _font(max(12, tile // 12))
    canvas = Image.new("RGB", (tile, big.shape[0] + f.size + 12), (30, 30, 30))
    canvas.paste(Image.fromarray(cv2.cvtColor(big, cv2.COLOR_BGR2RGB)), (4, 4))
    ImageDraw.Draw(canvas).text((6, big.shape[0] + 6), f"{text}  ({kind}, {img.shape[1]}x{img.shape[0]})",
                                fill=(240, 240, 240), font=f)
    return canvas


def _tile_crop(img: np.ndarray, caption: str, tile: int) -> Image.Image:
    s = (tile - 8) / img.shape[1]
    big = cv2.resize(img, (tile - 8, max(1, round(img.shape[0] * s))), interpolation=cv2.INTER_NEAREST)
    f = _font(max(12, tile // 12))
    canvas = Image.new("RGB", (tile, big.shape[0] + f.size + 12), (30, 30, 30))
    canvas.paste(Image.fromarray(cv2.cvtColor(big, cv2.COLOR_BGR2RGB)), (4, 4))
    ImageDraw.Draw(canvas).text((6, big.shape[0] + 6), f"{caption} {img.shape[1]}x{img.shape[0]}", fill=(240, 240, 240),
                                font=f)
    return canvas


def contact_tiles(model: str, n: int, seed: int, tile: int) -> list[Image.Image]:
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")
    if model == "plate_text":
        rng = np.random.default_rng(seed)
        return [_tile_plate(rng, tile) for _ in range(n)]
    if model == "plate_text_scene":
        import tempfile

        with tempfile.TemporaryDirectory() as td:
            csv_path = write_scene_plate_text_dataset(td, n, seed)
            rows = [ln.split(",") for ln in csv_path.read_text(encoding="utf-8").splitlines()[1:]]
            return [_tile_crop(np.asarray(cv2.imread(str(Path(td) / r[0]))), f"{r[1]}  ({r[2]})", tile) for r in rows]
    fn, names = SAMPLERS[model]
    tiles = []
    for i in range(n):
        # Spread over site groups (camera, road, light and weather change per group).
        img, labels = fn(seed, i * 17 + 3)
        tiles.append(_tile_yolo(img, labels, names, tile))
    return tiles


def write_contact_sheet(model: str, out: str | Path, *, n: int = 16, seed: int = 0, tile: int = 480) -> Path:
    """Grid of `n` renders (4 per row) with labels; PNG kept under ~1.45 MB."""
    tiles = contact_tiles(model, n, seed, tile)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    row_h = [max(t.height for t in tiles[r * cols:(r + 1) * cols]) for r in range(rows)]
    sheet = Image.new("RGB", (cols * (tile + 4) + 4, sum(row_h) + 4 * (rows + 1)), (16, 16, 16))
    y = 4
    for r in range(rows):
        for c, t in enumerate(tiles[r * cols:(r + 1) * cols]):
            sheet.paste(t, (4 + c * (tile + 4), y))
        y += row_h[r] + 4
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = _png(sheet)
    if len(data) > MAX_BYTES:
        data = _png(sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE))
    while len(data) > MAX_BYTES:
        sheet = sheet.resize((int(sheet.width * 0.85), int(sheet.height * 0.85)), Image.Resampling.LANCZOS)
        data = _png(sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE))
    out.write_bytes(data)
    return out


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
