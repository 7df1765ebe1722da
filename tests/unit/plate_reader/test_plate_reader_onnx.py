"""The committed plate-reader ONNX model: loads, carries its metadata, reads rendered plates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.detectors.plate_reader import BLANK, CHARSET, OnnxPlateReader, PlateText

MODEL = Path(__file__).resolve().parents[3] / "models" / "plate_reader.onnx"


@pytest.fixture(scope="module")
def reader() -> OnnxPlateReader:
    assert MODEL.is_file(), f"committed model missing: {MODEL}"
    return OnnxPlateReader(MODEL, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])


def test_model_is_small_and_has_roadeye_metadata(reader: OnnxPlateReader) -> None:
    assert MODEL.stat().st_size < 8 * 1024 * 1024  # 2.0 (wide): 1.7 M fp32 parameters, 6.8 MB
    meta = reader.metadata
    for key in ("names", "imgsz", "version", "task", "data_hash", "roadeye_model"):
        assert meta.get(key), f"metadata {key} missing"
    assert meta["roadeye_model"] == "plate_reader"
    assert len(meta["data_hash"]) == 64
    names = json.loads(meta["names"])
    assert names["0"] == BLANK
    assert "".join(names[str(i)] for i in range(1, len(CHARSET) + 1)) == CHARSET
    assert reader.input_size == tuple(json.loads(meta["imgsz"]))
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert reader.provider == "CPUExecutionProvider"  # asked for CUDA first, fell back


def test_read_batch_shapes_and_types(reader: OnnxPlateReader) -> None:
    rng = np.random.default_rng(1)
    crops = [rng.integers(0, 255, (h, w, 3), np.uint8) for h, w in [(24, 94), (60, 200), (110, 200), (7, 30)]]
    reads = reader.read_batch(crops)
    assert len(reads) == 4 and all(isinstance(r, PlateText) for r in reads)
    for r in reads:
        assert len(r.char_confidences) == len(r.text)
        assert 0.0 <= r.confidence <= 1.0
    assert reader.read_batch([]) == []
    with pytest.raises(ValueError, match="plate crop 1"):
        reader.read_batch([crops[0], np.zeros((0, 0, 3), np.uint8)])


def test_reads_rendered_plates_of_every_kind(reader: OnnxPlateReader) -> None:
    plates = pytest.importorskip("models.synth.plates")
    rng = np.random.default_rng(20261128)
    texts, crops = [], []
    for kind in plates.PLATE_KINDS:
        for _ in range(8):
            text, _ = plates.random_plate_text(rng, kind)
            clean = plates.render_plate(text, kind, rng, height_px=100)
            crops.append(plates.degrade_plate(clean, rng, out_width=140))
            texts.append(text)
    reads = reader.read_batch(crops)
    exact = np.mean([r.text == t for r, t in zip(reads, texts, strict=True)])
    after_province = np.mean([r.text[1:] == t[1:] for r, t in zip(reads, texts, strict=True)])
    wrong = [(t, r.text) for r, t in zip(reads, texts, strict=True) if r.text != t]
    # Regression guard, not the reported metric (models/cards/plate_reader.md): the released
    # model (2.0, wide) reads 37/40 of these exactly and 38/40 right after the province character;
    # rendered province glyphs at ~12 px are its known weak spot.
    assert exact >= 0.6, f"exact {exact:.2f}; wrong: {wrong}"
    assert after_province >= 0.85, f"after-province exact {after_province:.2f}; wrong: {wrong}"
