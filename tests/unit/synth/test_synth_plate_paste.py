"""Plates pasted onto real photographs (models.synth.plate_paste)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from models.synth.cli import render
from models.synth.datasets import RenderOptions, plates_sample, write_dataset
from models.synth.foreign_plates import render_foreign_plate
from models.synth.plate_paste import PasteBackgrounds, background_sources, backgrounds, paste_sample
from models.synth.real_plates import RealPlates
from models.train.data import holdout_of
from tests.unit.synth.test_synth_real_plates import _crops

GREY = 90


def _photo(path: Path, value: int = GREY, size: tuple[int, int] = (480, 640)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", np.full((*size, 3), value, np.uint8))
    assert ok
    path.write_bytes(buf.tobytes())


def _root(tmp: Path) -> Path:
    """A datasets root with flat grey photos in the trainable places and in an eval-only one."""
    root = tmp / "datasets"
    for k in range(12):
        _photo(root / "vehicles-cctv" / "valid" / "images" / f"cctv_{k}.png")
    _photo(root / "occupants-seatbelt-incabin" / "test" / "images" / "cab.png")
    _photo(root / "plates-cn-scenes" / "scene.png")  # eval only: must never be a background
    vid = root / "videos" / "clip.mp4"
    vid.parent.mkdir(parents=True)
    w = cv2.VideoWriter(str(vid), cv2.VideoWriter.fourcc(*"mp4v"), 10, (160, 96))
    for _ in range(25):
        w.write(np.full((96, 160, 3), GREY, np.uint8))
    w.release()
    return root


def test_sources_are_the_trainable_photos_only(tmp_path: Path) -> None:
    root = _root(tmp_path)
    names = [p.name for p in background_sources(root)]
    cctv = [f"cctv_{k}.png" for k in range(12)]
    held = [n for n in cctv if holdout_of(n, 0.3)]
    assert held, "fixture: some cctv photos fall in the vehicle detector's held-back 30%"
    assert sorted(n for n in names if n.startswith("cctv")) == sorted(set(cctv) - set(held))
    assert "cab.png" in names and "clip.mp4" in names and "scene.png" not in names
    # 25 frames, every 12th kept: frames 0, 12, 24
    assert len(backgrounds(PasteBackgrounds(str(root)))) == len(names) - 1 + 3


def test_pasted_plates_lie_inside_their_boxes(tmp_path: Path) -> None:
    spec = PasteBackgrounds(str(_root(tmp_path)), share=1.0)
    n_boxes = 0
    for i in range(12):
        img, labels = paste_sample(5, i, spec, None)
        h, w = img.shape[:2]
        assert 448 * 0.99 <= max(h, w) <= 1024
        mask = np.zeros((h, w), bool)
        for cls, (x0, y0, x1, y1) in labels:
            assert cls == 0 and 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            roi = img[round(y0):round(y1), round(x0):round(x1)].astype(np.float32)
            assert np.abs(roi - GREY).mean() > 12, "a plate was pasted there"
            pad = 0.2 * (y1 - y0) + 3  # mount frames and blur reach a little beyond the plate
            mask[max(0, round(y0 - pad)):round(y1 + pad), max(0, round(x0 - pad)):round(x1 + pad)] = True
            n_boxes += 1
        assert np.abs(img[~mask].astype(np.float32) - GREY).mean() < 6, "the photo is untouched elsewhere"
    assert n_boxes >= 8
    a, la = paste_sample(5, 3, spec, None)
    b, lb = paste_sample(5, 3, spec, None)
    assert la == lb and np.array_equal(a, b)


def test_real_crops_are_pasted_when_given(tmp_path: Path) -> None:
    spec = PasteBackgrounds(str(_root(tmp_path)), share=1.0)
    real = RealPlates(str(_crops(tmp_path / "crops", (0, 255, 0))), share=1.0)
    green = 0
    for i in range(6):
        img, labels = paste_sample(6, i, spec, real)
        for _, (x0, y0, x1, y1) in labels:
            roi = img[round(y0):round(y1), round(x0):round(x1)].astype(np.float32)
            green += (roi[..., 1] - (roi[..., 0] + roi[..., 2]) / 2).mean() > 40
    assert green >= 4


def test_plates_sample_pastes_its_share_and_records_it(tmp_path: Path) -> None:
    spec = PasteBackgrounds(str(_root(tmp_path)), share=1.0)
    img, _ = plates_sample(9, 0, paste=spec)
    assert np.median(img) == pytest.approx(GREY, abs=8)  # a grey photo, not a rendered road
    base_img, base = plates_sample(9, 1)
    img0, lab0 = plates_sample(9, 1, paste=PasteBackgrounds(spec.root, share=0.0))
    assert lab0 == base and np.array_equal(img0, base_img)
    write_dataset("plates", tmp_path / "p", 3, seed=2, val_fraction=0.0,
                  options=RenderOptions(paste=PasteBackgrounds(spec.root, share=0.5)))
    man = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert man["paste"] == {"root": "datasets", "share": 0.5}
    with pytest.raises(ValueError, match="plates dataset only"):
        write_dataset("occupants", tmp_path / "o", 1, seed=1, options=RenderOptions(paste=spec))


def test_bad_paste_options_name_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="paste share"):
        PasteBackgrounds(str(tmp_path), share=1.5)
    with pytest.raises(ValueError, match="no background photos under"):
        backgrounds(PasteBackgrounds(str(tmp_path / "empty")))
    r = CliRunner().invoke(render, ["dataset", "--model", "vehicles", "--n", "1", "--out", str(tmp_path / "v"),
                                    "--paste-backgrounds", str(_root(tmp_path))])
    assert r.exit_code == 2 and "plates dataset only" in r.output


@pytest.mark.parametrize(("style", "aspect"), [("eu", 520 / 110), ("us", 305 / 152)])
def test_foreign_plates_have_their_proportions_and_dark_ink(style: str, aspect: float) -> None:
    rng = np.random.default_rng(3)
    for _ in range(5):
        bgr, alpha = render_foreign_plate(rng, style, height_px=60)
        h, w = bgr.shape[:2]
        assert h == 60 and w / h == pytest.approx(aspect, rel=0.03)
        assert alpha.shape == (h, w) and alpha[0, 0] < 0.5 and alpha[h // 2, w // 2] == 1.0
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        if np.median(grey) > 120:  # every EU plate; most US ones
            assert (grey < 90).mean() > 0.08, "a dark serial on a light sheet"
        else:
            assert style == "us" and (grey > 190).mean() > 0.08, "a light serial on a dark sheet"
    with pytest.raises(ValueError, match="plate style"):
        render_foreign_plate(rng, "jp")


def test_us_plates_vary_their_sheets() -> None:
    """Tinted, graphic and dark sheets, not one white look (real US misses were mostly tinted ones)."""
    rng = np.random.default_rng(11)
    faces = [cv2.cvtColor(render_foreign_plate(rng, "us", height_px=60)[0], cv2.COLOR_BGR2HSV) for _ in range(60)]
    dark = sum(float(np.median(f[..., 2])) < 120 for f in faces)
    tinted = sum(float(np.median(f[..., 1])) > 25 for f in faces)
    assert 2 <= dark <= 15 and tinted >= 15, (dark, tinted)


def _blue_boxes(img: np.ndarray, labels: list[tuple[int, tuple[float, float, float, float]]]) -> int:
    n = 0
    for _, (x0, y0, x1, y1) in labels:
        roi = img[round(y0):round(y1), round(x0):round(x1)].astype(np.float32)
        n += float((roi[..., 0] - roi[..., 2]).mean()) > 40
    return n


def test_foreign_share_swaps_chinese_renders_for_eu_and_us_plates(tmp_path: Path) -> None:
    root = str(_root(tmp_path))
    plain, foreign, total = 0, 0, 0
    for i in range(12):
        a, la = paste_sample(8, i, PasteBackgrounds(root, 1.0), None)
        b, lb = paste_sample(8, i, PasteBackgrounds(root, 1.0, foreign_share=0.0), None)
        assert la == lb and np.array_equal(a, b)  # share 0 draws nothing: earlier renders stay the same
        c, lc = paste_sample(8, i, PasteBackgrounds(root, 1.0, foreign_share=1.0), None)
        plain += _blue_boxes(a, la)
        foreign += _blue_boxes(c, lc)
        total += len(lc)
    assert plain >= 3 and foreign == 0 and total >= 8
    with pytest.raises(ValueError, match="foreign plate share"):
        PasteBackgrounds(root, foreign_share=2.0)
