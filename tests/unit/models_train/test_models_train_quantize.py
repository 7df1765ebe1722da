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
    img = np.asarray(cv2.GaussianBlur(rng.integers(0, 255, (360, 640, 3), dtype=np.uint8), (0, 0), 3), np.uint8)
    a, b = OnnxYoloDetector(f, conf=0.0), OnnxYoloDetector(q, conf=0.0)
    da, db = a.detect(img), b.detect(img)
    top_a = np.sort(da.confidence)[-5:]
    top_b = np.sort(db.confidence)[-5:]
    assert np.abs(top_a - top_b).max() < 0.1


def _tiny_export(path: Path) -> None:
    """Two convolutions named like an ultralytics export (/model.0 body, /model.1 head) with imgsz metadata."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w0 = numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w0")
    w1 = numpy_helper.from_array(rng.normal(0, 0.3, (6, 4, 1, 1)).astype(np.float32), "w1")
    nodes = [helper.make_node("Conv", ["images", "w0"], ["h"], name="/model.0/conv/Conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["r"], name="/model.0/act/Relu"),
             helper.make_node("Conv", ["r", "w1"], ["output0"], name="/model.1/cv2.0/cv2.0.2/Conv")]
    inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])
    outp = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 32, 32])
    graph = helper.make_graph(nodes, "tiny", [inp], [outp], [w0, w1])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"imgsz": "[32, 32]", "version": "t1"})
    onnx.save(model, str(path))


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_quantize_records_its_calibration_method(tmp_path: Path, method: str) -> None:
    from models.train.quantize import calibration_images, quantize_detector

    src = tmp_path / "tiny.onnx"
    _tiny_export(src)
    rng = np.random.default_rng(2)
    for i in range(8):
        cv2.imwrite(str(tmp_path / f"c{i}.png"), rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
    out = tmp_path / "tiny.int8.onnx"
    summary = quantize_detector(src, out, calibration_images(tmp_path, 8), method)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert summary["calibration"] == method and f"{method} calibration" in meta["quantized"]
    assert meta["version"] == "t1+int8"
    convs = {n.name: n for n in onnx.load(str(out)).graph.node if n.op_type == "Conv"}
    # the body conv's weights are int8 (fed through DequantizeLinear); the head's last conv keeps float w1
    assert convs["/model.0/conv/Conv"].input[1] != "w0"
    assert convs["/model.1/cv2.0/cv2.0.2/Conv"].input[1] == "w1"


def test_quantize_rejects_an_unknown_method(tmp_path: Path) -> None:
    from models.train.quantize import quantize_detector

    src = tmp_path / "tiny.onnx"
    _tiny_export(src)
    with pytest.raises(ValueError, match="calibration method must be one of"):
        quantize_detector(src, tmp_path / "o.onnx", [], "kl")
