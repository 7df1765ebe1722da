"""OnnxYoloDetector: decoders on hand-built arrays, and the full runtime on tiny ONNX graphs.

The tiny graphs emit a fixed detection table whose score depends on the mean input pixel,
so a test can tell which image of a batch produced which result.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.detectors.base import Detector
from edge.detectors.yolo import (
    Letterbox,
    OnnxYoloDetector,
    decode_end2end,
    decode_raw,
    letterbox,
    parse_imgsz,
    parse_names,
    resolve_providers,
    unletterbox,
)

# ---------------------------------------------------------------------------------------------
# tiny ONNX graphs


def _tiny_model(path: Path, table: np.ndarray, mask: np.ndarray, *, imgsz: int | tuple[int, int] = 64,
                batch: int | str = "batch", meta: dict[str, str] | None = None) -> Path:
    """output[b] = table + mean(input[b]) * mask; `table`/`mask` are (A, C) float32."""
    a, c = table.shape
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, h, w])
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, a, c])
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m4"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["m4", "shape3"], ["m3"]),
        helper.make_node("Mul", ["m3", "mask"], ["scaled"]),
        helper.make_node("Add", ["scaled", "table"], ["output0"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape3"),
        numpy_helper.from_array(mask[None].astype(np.float32), "mask"),
        numpy_helper.from_array(table[None].astype(np.float32), "table"),
    ]
    graph = helper.make_graph(nodes, "tiny", [inp], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in (meta or {}).items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _e2e_model(tmp_path: Path, batch: int | str = "batch") -> Path:
    """Row 0: class 1 box whose score = mean pixel (0..1); row 1: class 0 fixed 0.9; rest empty."""
    table = np.zeros((300, 6), np.float32)
    table[0] = [8, 20, 40, 36, 0.0, 1]
    table[1] = [0, 16, 64, 48, 0.9, 0]
    mask = np.zeros_like(table)
    mask[0, 4] = 1.0
    meta = {"names": json.dumps({"0": "car", "1": "windshield"}), "imgsz": "[64, 64]",
            "roadeye_model": "tiny"}
    return _tiny_model(tmp_path / f"e2e_{batch}.onnx", table, mask, batch=batch, meta=meta)


def _raw_model(tmp_path: Path) -> Path:
    """3 classes, 4 anchors: two overlapping class-0 boxes, one overlapping class-2 box, one weak."""
    nc = 3
    anchors = np.array([
        # cx, cy, w, h, s0, s1, s2
        [32, 32, 20, 20, 0.0, 0.0, 0.0],   # score of class 0 = mean pixel
        [33, 33, 20, 20, 0.6, 0.0, 0.0],   # overlaps anchor 0, same class
        [32, 32, 20, 20, 0.0, 0.0, 0.7],   # same place, other class: must survive NMS
        [10, 10, 4, 4, 0.1, 0.05, 0.0],    # below threshold
    ], np.float32)
    table = anchors.T.copy()  # (4+nc, N)
    mask = np.zeros_like(table)
    mask[4, 0] = 1.0
    meta = {"names": str({0: "driver", 1: "passenger", 2: "seatbelt"}), "imgsz": "[64, 64]"}
    assert table.shape[0] == 4 + nc
    return _tiny_model(tmp_path / "raw.onnx", table, mask, meta=meta)


# ---------------------------------------------------------------------------------------------
# pure helpers


def test_decode_end2end_thresholds_and_sorts() -> None:
    out = np.array([[0, 0, 10, 10, 0.3, 2], [5, 5, 9, 9, 0.8, 1.0], [1, 1, 2, 2, 0.1, 0]], np.float32)
    xyxy, score, cls = decode_end2end(out, conf=0.25)
    np.testing.assert_allclose(score, [0.8, 0.3])
    assert cls.tolist() == [1, 2] and cls.dtype == np.int64
    np.testing.assert_allclose(xyxy[0], [5, 5, 9, 9])
    assert len(decode_end2end(out, conf=0.95)[0]) == 0
    with pytest.raises(ValueError, match="end-to-end output"):
        decode_end2end(np.zeros((10, 5)), 0.25)


@pytest.mark.parametrize(("dup_iou", "expected"), [
    (0.7, [0.9, 0.6, 0.5]),        # the 0.8 row is a second box on the 0.9 one (IoU 0.95): dropped
    (None, [0.9, 0.8, 0.6, 0.5]),  # switched off: every row kept
])
def test_decode_end2end_drops_same_class_duplicates(dup_iou: float | None, expected: list[float]) -> None:
    out = np.array([
        [0, 0, 100, 50, 0.9, 0],
        [5, 0, 100, 50, 0.8, 0],    # same class, IoU 0.95 with the first
        [2, 0, 100, 50, 0.6, 1],    # other class on the same box: a different detection
        [60, 0, 160, 50, 0.5, 0],   # same class, IoU 0.25: a neighbour
    ], np.float32)
    _, score, cls = decode_end2end(out, conf=0.25, duplicate_iou=dup_iou)
    np.testing.assert_allclose(score, expected)
    assert cls.tolist() == ([0, 1, 0] if dup_iou else [0, 0, 1, 0])


def test_decode_raw_nms_is_per_class() -> None:
    pred = np.array([
        [50, 50, 20, 10, 0.9, 0.0],
        [51, 50, 20, 10, 0.8, 0.0],   # IoU ~0.9 with the first, same class -> suppressed
        [50, 50, 20, 10, 0.0, 0.7],   # same box, class 1 -> kept
        [90, 90, 10, 10, 0.5, 0.0],   # separate -> kept
        [10, 10, 4, 4, 0.2, 0.1],     # below conf
    ], np.float32).T
    xyxy, score, cls = decode_raw(pred, nc=2, conf=0.25, iou=0.6)
    np.testing.assert_allclose(score, [0.9, 0.7, 0.5], rtol=1e-6)
    assert cls.tolist() == [0, 1, 0]
    np.testing.assert_allclose(xyxy[0], [40, 45, 60, 55])  # cx,cy,w,h -> xyxy
    assert len(decode_raw(pred, nc=2, conf=0.95, iou=0.6)[0]) == 0
    with pytest.raises(ValueError, match="raw output"):
        decode_raw(np.zeros((5, 10)), nc=3, conf=0.25, iou=0.6)


def test_letterbox_roundtrip_maps_boxes_back() -> None:
    img = np.full((100, 200, 3), 7, np.uint8)
    out, lb = letterbox(img, (64, 64))
    assert out.shape == (64, 64, 3)
    assert lb.ratio == pytest.approx(0.32) and lb.pad_x == 0 and lb.pad_y == 16
    assert (out[:16] == 114).all() and (out[16:48] == 7).all() and (out[48:] == 114).all()
    boxes = np.array([[10, 20, 110, 90], [0, 0, 200, 100]], np.float32)
    model_boxes = boxes * lb.ratio + np.array([lb.pad_x, lb.pad_y] * 2, np.float32)
    np.testing.assert_allclose(unletterbox(model_boxes, lb), boxes, atol=1e-4)
    # boxes running into the padding are clipped to the image
    np.testing.assert_allclose(unletterbox(np.array([[-5, 0, 70, 64]]), lb), [[0, 0, 200, 100]])


def test_unletterbox_identity() -> None:
    lb = Letterbox(1.0, 0.0, 0.0, 64, 64)
    np.testing.assert_allclose(unletterbox(np.array([[1, 2, 3, 4]]), lb), [[1, 2, 3, 4]])


def test_parse_metadata() -> None:
    assert parse_names('{"0": "car", "1": "bus"}') == {0: "car", 1: "bus"}
    assert parse_names("{0: 'car', 1: 'bus'}") == {0: "car", 1: "bus"}
    assert parse_names('["a", "b"]') == {0: "a", 1: "b"}
    with pytest.raises(ValueError, match="names"):
        parse_names("car, bus")
    assert parse_imgsz("[320, 416]") == (320, 416)
    assert parse_imgsz("640") == (640, 640)
    with pytest.raises(ValueError, match="imgsz"):
        parse_imgsz("[1, 2, 3]")


def test_resolve_providers_filters_and_errors() -> None:
    assert resolve_providers(None)[-1] == "CPUExecutionProvider"
    assert resolve_providers(["NoSuchExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="NoSuchExecutionProvider"):
        resolve_providers(["NoSuchExecutionProvider"])


# ---------------------------------------------------------------------------------------------
# runtime on tiny graphs


def test_end2end_model_detects_and_maps_to_image_pixels(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="edge.detectors.yolo"):
        det = OnnxYoloDetector(_e2e_model(tmp_path), conf=0.5)
    assert isinstance(det, Detector)
    assert det.provider == "CPUExecutionProvider"
    assert "CPUExecutionProvider" in caplog.text
    assert det.names == {0: "car", 1: "windshield"} and det.input_size == (64, 64)
    assert det.end2end and det.dynamic_batch and det.roadeye_model == "tiny"

    white = np.full((100, 200, 3), 255, np.uint8)   # mean after letterbox ~0.72 -> row 0 kept
    black = np.zeros((100, 200, 3), np.uint8)       # mean ~0.22 -> row 0 dropped
    res = det.detect_batch([white, black, white])
    assert [len(r) for r in res] == [2, 1, 2]
    top = res[0]
    assert top.class_id.tolist() == [1, 0] or top.class_id.tolist() == [0, 1]
    ws = top.with_class(1)
    # model box (8, 20, 40, 36) in a 64x64 letterbox of a 200x100 image: ratio 0.32, pad_y 16
    np.testing.assert_allclose(ws.xyxy[0], [25, 12.5, 125, 62.5], atol=1e-3)
    np.testing.assert_allclose(ws.confidence, [0.7236], atol=2e-3)
    car = res[1]
    np.testing.assert_allclose(car.xyxy[0], [0, 0, 200, 100], atol=1e-3)  # clipped to image
    assert (car.tracker_id == -1).all()
    single = det.detect(white)
    np.testing.assert_allclose(single.xyxy, top.xyxy)
    assert det.detect_batch([]) == []


def test_raw_model_nms_and_python_repr_names(tmp_path: Path) -> None:
    det = OnnxYoloDetector(_raw_model(tmp_path), conf=0.25, iou=0.5, batch=2)
    assert not det.end2end and det.names == {0: "driver", 1: "passenger", 2: "seatbelt"}
    img = np.full((64, 64, 3), 255, np.uint8)   # no letterbox padding: mean = 1.0
    d = det.detect(img)
    assert sorted(d.class_id.tolist()) == [0, 2]  # anchor 1 suppressed by anchor 0, class 2 kept
    np.testing.assert_allclose(d.with_class(0).confidence, [1.0], atol=1e-5)
    np.testing.assert_allclose(d.with_class(0).xyxy[0], [22, 22, 42, 42], atol=1e-4)
    dark = np.zeros((64, 64, 3), np.uint8)      # class-0 anchor 0 score 0 -> anchor 1 (0.6) survives
    d2 = det.detect_batch([dark, img, dark])
    assert [len(x) for x in d2] == [2, 2, 2]
    np.testing.assert_allclose(d2[0].with_class(0).confidence, [0.6], atol=1e-5)
    det.conf = 0.65
    assert det.detect(dark).class_id.tolist() == [2]


@pytest.mark.parametrize("batch", [1, 4])
def test_fixed_batch_models_loop_or_pad(tmp_path: Path, batch: int) -> None:
    det = OnnxYoloDetector(_e2e_model(tmp_path, batch=batch), conf=0.5, batch=16)
    assert not det.dynamic_batch and det.batch == batch
    white = np.full((64, 64, 3), 255, np.uint8)
    black = np.zeros((64, 64, 3), np.uint8)
    res = det.detect_batch([white, black, black, white, white, black])
    assert [len(r) for r in res] == [2, 1, 1, 2, 2, 1]


def test_input_validation(tmp_path: Path) -> None:
    model = _e2e_model(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nope\.onnx"):
        OnnxYoloDetector(tmp_path / "nope.onnx")
    with pytest.raises(ValueError, match="execution providers"):
        OnnxYoloDetector(model, providers=["CUDAExecutionProvider"] if "CUDAExecutionProvider" not in
                         __import__("onnxruntime").get_available_providers() else ["NoSuchProvider"])
    with pytest.raises(ValueError, match="conf"):
        OnnxYoloDetector(model, conf=1.5)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(ValueError, match="cannot load"):
        OnnxYoloDetector(bad)
    det = OnnxYoloDetector(model)
    with pytest.raises(ValueError, match=r"image 1.*uint8"):
        det.detect_batch([np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10, 3), np.float32)])
    with pytest.raises(ValueError, match="HxWx3"):
        det.detect(np.zeros((10, 10, 2), np.uint8))
    with pytest.raises(TypeError, match="numpy array"):
        det.detect("frame.jpg")  # type: ignore[arg-type]
    # grayscale and BGRA are converted, not rejected
    assert len(det.detect(np.zeros((40, 30), np.uint8))) == 1
    assert len(det.detect(np.zeros((40, 30, 4), np.uint8))) == 1


def test_model_without_names_raw_infers_classes(tmp_path: Path) -> None:
    table = np.zeros((6, 5), np.float32)  # 4 + 2 classes, 5 anchors
    table[:, 0] = [32, 32, 10, 10, 0.9, 0.1]
    path = _tiny_model(tmp_path / "nonames.onnx", table, np.zeros_like(table), meta={"imgsz": "[64, 64]"})
    det = OnnxYoloDetector(path)
    assert det.names == {0: "0", 1: "1"} and not det.end2end
    assert det.detect(np.zeros((64, 64, 3), np.uint8)).class_id.tolist() == [0]


def test_rectangular_input_letterbox(tmp_path: Path) -> None:
    """Wide crops (windshields) run on a wide input: [h, w] metadata, boxes mapped back exactly."""
    table = np.zeros((300, 6), np.float32)
    table[0] = [0, 8, 64, 24, 0.9, 0]
    meta = {"names": json.dumps({"0": "driver"}), "imgsz": "[32, 64]"}
    det = OnnxYoloDetector(_tiny_model(tmp_path / "rect.onnx", table, np.zeros_like(table), imgsz=(32, 64),
                                       meta=meta))
    assert det.input_size == (32, 64)
    d = det.detect(np.zeros((100, 400, 3), np.uint8))   # ratio 0.16, content 64x16, pad_y 8
    np.testing.assert_allclose(d.xyxy, [[0, 0, 400, 100]], atol=1e-3)
