"""Plate text formats, spec geometry of rendered plates and the plate-text dataset writer."""

from __future__ import annotations

import csv
import re

import cv2
import numpy as np
import pytest

from models.synth.plates import (
    LETTERS,
    PLATE_KINDS,
    PROVINCES,
    degrade_plate,
    layout,
    random_plate_text,
    render_plate,
    validate_plate_text,
    write_plate_text_dataset,
)

_FORMATS = {
    "blue": rf"^[{PROVINCES}][{LETTERS}][0-9{LETTERS}]{{5}}$",
    "yellow": rf"^[{PROVINCES}][{LETTERS}]([0-9{LETTERS}]{{5}}|[0-9]{{4}}学)$",
    "yellow_double": rf"^[{PROVINCES}][{LETTERS}]([0-9{LETTERS}]{{5}}|[0-9]{{4}}挂)$",
    "green": rf"^[{PROVINCES}][{LETTERS}][DF][0-9{LETTERS}][0-9]{{4}}$",
    "white": rf"^[{PROVINCES}][{LETTERS}][0-9]{{4}}警$",
}


@pytest.mark.parametrize("kind", PLATE_KINDS)
def test_plate_text_format_per_kind(kind: str) -> None:
    rng = np.random.default_rng(3)
    for _ in range(300):
        text, k = random_plate_text(rng, kind)
        assert k == kind
        assert re.match(_FORMATS[kind], text), text
        assert "I" not in text and "O" not in text
        validate_plate_text(text, kind)


def test_every_province_and_suffix_appears() -> None:
    rng = np.random.default_rng(0)
    texts = [random_plate_text(rng)[0] for _ in range(3000)]
    assert {t[0] for t in texts} == set(PROVINCES)
    joined = "".join(texts)
    assert all(s in joined for s in "学警挂")
    assert len({random_plate_text(rng)[1] for _ in range(500)}) == len(PLATE_KINDS)


def test_bad_text_rejected_with_reason() -> None:
    with pytest.raises(ValueError, match="D or F"):
        validate_plate_text("皖AA12345", "green")
    with pytest.raises(ValueError, match="7 characters"):
        validate_plate_text("皖A1234", "blue")
    with pytest.raises(ValueError, match="province"):
        validate_plate_text("XA12345", "blue")
    with pytest.raises(ValueError, match="unknown plate kind"):
        random_plate_text(np.random.default_rng(0), "pink")


@pytest.mark.parametrize(("kind", "text", "size"), [
    ("blue", "皖A12345", (140, 440)), ("yellow", "京B9876学", (140, 440)),
    ("green", "粤BD12345", (140, 480)), ("yellow_double", "苏E1234挂", (220, 440)),
])
def test_render_spec_proportions_and_colours(kind: str, text: str, size: tuple[int, int]) -> None:
    img = render_plate(text, kind, height_px=size[0])
    assert img.shape == (*size, 3)
    boxes, dot = layout(text, kind)
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    # Every character box holds character-coloured ink and background between strokes.
    for b in boxes:
        roi = img[int(b.y): int(b.y + b.h), int(b.x): int(b.x + b.w)].astype(int)
        # white paint on blue, black paint on the others
        ink = (roi.min(axis=2) > 200).mean() if kind == "blue" else (roi.max(axis=2) < 80).mean()
        assert 0.08 < ink < 0.85, (b.ch, ink)
    # Background hue of the gap between characters matches the plate kind.
    gap = hsv[int(boxes[1].y + 5): int(boxes[1].y + 15), int(boxes[1].x + boxes[1].w + 2)]
    hue = float(np.median(gap[..., 0]))
    expect = {"blue": (100, 125), "yellow": (15, 35), "green": (35, 85), "yellow_double": (15, 35)}[kind]
    if kind != "yellow_double":
        assert expect[0] <= hue <= expect[1], hue
        assert dot is not None
    else:
        assert dot is None


def test_render_and_degrade_deterministic() -> None:
    a = degrade_plate(render_plate("皖A12345", "blue", np.random.default_rng(1)), np.random.default_rng(2))
    b = degrade_plate(render_plate("皖A12345", "blue", np.random.default_rng(1)), np.random.default_rng(2))
    assert np.array_equal(a, b)
    assert 94 <= a.shape[1] <= 188
    n = degrade_plate(render_plate("皖A12345", "blue"), np.random.default_rng(2), night=True, out_width=120)
    assert n.shape[1] == 120
    assert np.array_equal(n[..., 0], n[..., 2])  # IR is monochrome


def test_plate_text_dataset(tmp_path) -> None:  # type: ignore[no-untyped-def]
    labels = write_plate_text_dataset(tmp_path, 12, seed=5)
    rows = list(csv.DictReader(labels.open(encoding="utf-8")))
    assert len(rows) == 12
    for r in rows:
        p = tmp_path / r["file"]
        assert p.name.startswith(r["plate"] + "_")
        validate_plate_text(r["plate"], r["kind"])
        img = cv2.imdecode(np.fromfile(p, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None
        assert 94 <= img.shape[1] <= 188 and img.shape[0] >= 12
    again = write_plate_text_dataset(tmp_path / "b", 12, seed=5)
    assert again.read_text(encoding="utf-8") == labels.read_text(encoding="utf-8")
