"""`roadeye models quantize`: the committed INT8 detectors keep their float twins' outputs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from edge.detectors.yolo import OnnxYoloDetector
from models.train.quantize import float_only_nodes, int8_path

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", ["vehicles", "plates", "occupants"])
def test_committed_int8_matches_float(name: str) -> None:
    f = REPO / "models" / f"{name}.onnx"
    q = int8_path(f)
    if not q.is_file():
        pytest.skip(f"{q.name} not committed")
    meta = {p.key: p.value for p in onnx.load(str(q), load_external_data=False).metadata_props}
    assert meta["quantized"].startswith("int8") and meta["version"].endswith("+int8")
    assert meta["roadeye_model"] == name
    # the head's decoding tail stays float (quantizing it zeroed every score)
    assert any("TopK" in n for n in float_only_nodes(onnx.load(str(q))))
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (360, 640, 3), dtype=np.uint8), (0, 0), 3)
    a, b = OnnxYoloDetector(f, conf=0.0), OnnxYoloDetector(q, conf=0.0)
    da, db = a.detect(img), b.detect(img)
    top_a = np.sort(da.confidence)[-5:]
    top_b = np.sort(db.confidence)[-5:]
    assert np.abs(top_a - top_b).max() < 0.1
