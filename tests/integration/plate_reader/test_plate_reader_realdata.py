"""Plate reader on the real datasets (skipped when ../shared/datasets is absent) + a tiny training run."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.detectors.plate_reader import OnnxPlateReader
from models.train.plate_reader import evaluate, train
from models.train.plate_reader_data import REAL_CROPS, REAL_SCENES, datasets_root

MODEL = Path(__file__).resolve().parents[3] / "models" / "plate_reader.onnx"
ROOT = datasets_root()


@pytest.mark.realdata
@pytest.mark.skipif(not (ROOT / REAL_CROPS).is_dir(), reason=f"{ROOT / REAL_CROPS} absent")
def test_held_back_real_split_accuracy() -> None:
    m = evaluate(MODEL, ROOT / REAL_CROPS)
    assert 280 <= m["n"] <= 340  # the fixed 30% part of 1000 crops
    assert m["exact_match"] >= 0.9, m["errors"]
    assert len(m["per_position_char_accuracy"]) == 7
    assert m["ms_per_plate_batch32"] > 0


@pytest.mark.realdata
@pytest.mark.skipif(not (ROOT / REAL_SCENES).is_dir(), reason=f"{ROOT / REAL_SCENES} absent")
def test_scene_quads_rectified_and_read() -> None:
    m = evaluate(MODEL, ROOT / REAL_SCENES)
    assert m["n"] == 50
    assert m["exact_match"] >= 0.6, m["errors"]


@pytest.mark.slow
def test_quick_training_run_exports_a_loadable_model(tmp_path: Path) -> None:
    onnx_path = train(tmp_path, epochs=1, seed=3, datasets_root=None, synth_n=48, quick=True)
    assert onnx_path.is_file()
    r = OnnxPlateReader(onnx_path)
    assert r.metadata["roadeye_model"] == "plate_reader" and len(r.metadata["data_hash"]) == 64
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "train_manifest.txt").is_file()
    assert len(r.read_batch([__import__("numpy").zeros((24, 94, 3), "uint8")])) == 1
