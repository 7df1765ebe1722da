"""Real plate crops pasted onto rendered vehicles, and close windows around plates."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from models.synth.cli import render
from models.synth.datasets import RenderOptions, plates_sample, write_dataset
from models.synth.real_plates import RealPlates, pool
from models.train.plate_reader_data import REAL_SPLIT

TEXTS = [f"皖A{n:05d}" for n in range(40)]


def _crops(folder: Path, colour: tuple[int, int, int] = (0, 255, 0)) -> Path:
    """A plates-cn-crops lookalike: 94x24 crops of one flat colour, labels.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["file,plate"]
    for t in TEXTS:
        ok, buf = cv2.imencode(".png", np.full((24, 94, 3), colour, np.uint8))
        assert ok
        (folder / f"{t}.png").write_bytes(buf.tobytes())
        rows.append(f"{t}.png,{t}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def test_pool_holds_only_the_trainable_part(tmp_path: Path) -> None:
    spec = RealPlates(str(_crops(tmp_path / "c")), share=1.0)
    texts = {t for t, _ in pool(spec)}
    test_part = {t for t in TEXTS if REAL_SPLIT.part(f"{t}.png") == "test"}
    assert test_part and texts and not texts & test_part
    assert texts == set(TEXTS) - test_part
    assert all(img.shape == (70, 220, 3) for _, img in pool(spec))


@pytest.mark.parametrize(("kw", "needle"), [({"share": 1.5}, "share"), ({"part": "test"}, "part")])
def test_bad_real_plate_options_name_the_value(tmp_path: Path, kw: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        RealPlates(str(tmp_path), **kw)  # type: ignore[arg-type]


def _greenness(img: np.ndarray, box: tuple[float, float, float, float]) -> float:
    x0, y0, x1, y1 = (round(v) for v in box)
    roi = img[y0:y1, x0:x1].astype(np.float32)
    return float((roi[..., 1] - (roi[..., 0] + roi[..., 2]) / 2).mean())


def test_real_texture_replaces_blue_plates_in_the_same_scene(tmp_path: Path) -> None:
    spec = RealPlates(str(_crops(tmp_path / "c")), share=1.0)
    swapped = 0
    for i in range(6):
        base_img, base = plates_sample(11, i)
        img, labels = plates_sample(11, i, real=spec)
        assert [b for _, b in labels] == [b for _, b in base]  # the scene is the same, only textures differ
        assert img.shape == base_img.shape
        for _, box in labels:
            if _greenness(img, box) > _greenness(base_img, box) + 30:
                swapped += 1
    assert swapped >= 2


def test_close_windows_keep_plates_inside_and_shrink_the_image() -> None:
    closes = with_plates = 0
    for i in range(10):
        base_img, base = plates_sample(12, i)
        img, labels = plates_sample(12, i, close_share=1.0)
        if not base:  # no visible plate (two-wheeler, occluded): nothing to cut around
            assert img.shape == base_img.shape and not labels
            continue
        with_plates += 1
        assert labels, "a close window is cut around a plate, so one stays labelled"
        h, w = img.shape[:2]
        for _, (x0, y0, x1, y1) in labels:
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        closes += img.shape[:2] != base_img.shape[:2]
        bw = max(b[2] - b[0] for _, b in labels)
        assert w <= 6.5 * bw + 5 or w == base_img.shape[1]
    assert with_plates >= 5 and closes == with_plates


def test_wide_windows_show_more_street_around_the_vehicle() -> None:
    base_frac, wide_frac = [], []
    for i in range(8):
        base_img, base = plates_sample(13, i)
        img, labels = plates_sample(13, i, wide_share=1.0)
        if not base or not labels:
            continue
        base_frac.append(max(b[2] - b[0] for _, b in base) / base_img.shape[1])
        wide_frac.append(max(b[2] - b[0] for _, b in labels) / img.shape[1])
    assert len(wide_frac) >= 4
    assert float(np.median(wide_frac)) < 0.75 * float(np.median(base_frac))


def test_options_apply_to_plates_only_and_land_in_the_manifest(tmp_path: Path) -> None:
    spec = RealPlates(str(_crops(tmp_path / "c")), share=0.5)
    with pytest.raises(ValueError, match="plates dataset only"):
        write_dataset("occupants", tmp_path / "o", 1, seed=1, options=RenderOptions(real_plates=spec))
    write_dataset("plates", tmp_path / "p", 2, seed=1, val_fraction=0.0,
                  options=RenderOptions(real_plates=spec, close_share=0.3, wide_share=0.4))
    man = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert man["real_plates"] == {"folder": "c", "part": "trainable", "share_of_blue": 0.5}
    assert man["close_share"] == 0.3 and man["wide_share"] == 0.4
    with pytest.raises(ValueError, match="wide share"):
        RenderOptions(wide_share=1.5)
    with pytest.raises(ValueError, match="do not apply to 'plate_text'"):
        write_dataset("plate_text", tmp_path / "t", 1, seed=1, options=RenderOptions(close_share=0.3))


def test_cli_refuses_real_plates_for_another_model(tmp_path: Path) -> None:
    r = CliRunner().invoke(render, ["dataset", "--model", "vehicles", "--n", "1", "--out", str(tmp_path / "v"),
                                    "--real-plates", str(_crops(tmp_path / "c"))])
    assert r.exit_code == 2 and "plates dataset only" in r.output

