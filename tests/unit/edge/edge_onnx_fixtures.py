"""Tiny but real ONNX models for CLI-level tests of the edge (no trained weights needed).

Each YOLO-style model emits a fixed end-to-end detection table (x1, y1, x2, y2, score,
class in letterboxed input pixels) for every image; the plate reader emits fixed per-step
probabilities that CTC-decode to one plate. They carry roadeye metadata like the real
exports, so loading, provider choice, model refs (name, version, sha256) and the whole
replay / score CLI path run exactly as with the trained models.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge.detectors.plate_reader import CHARSET

IMGSZ = 64


def _fixed_table_model(path: Path, rows: list[list[float]], names: dict[int, str], name: str,
                       dynamic_hw: bool = False) -> Path:
    table = np.zeros((20, 6), np.float32)
    for i, r in enumerate(rows):
        table[i] = r
    hw: list[int | str] = ["height", "width"] if dynamic_hw else [IMGSZ, IMGSZ]
    inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, *hw])
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 20, 6])
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m4"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["m4", "shape3"], ["m3"]),
        helper.make_node("Mul", ["m3", "zero"], ["z"]),
        helper.make_node("Add", ["z", "table"], ["output0"]),
    ]
    inits = [numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape3"),
             numpy_helper.from_array(np.zeros((1, 20, 6), np.float32), "zero"),
             numpy_helper.from_array(table[None], "table")]
    model = helper.make_model(helper.make_graph(nodes, name, [inp], [out], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {"names": json.dumps({str(k): v for k, v in names.items()}), "imgsz": json.dumps([IMGSZ, IMGSZ]),
            "roadeye_model": name, "version": "fixture-1", "task": "detect", "data_hash": "0" * 64}
    for k, v in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.save(model, path)
    return path


def _fixed_reader(path: Path, text: str) -> Path:
    charset = ["<blank>", *CHARSET]
    steps = []
    for ch in text:
        steps += [charset.index(ch), 0]
    t, c = len(steps), len(charset)
    probs = np.full((t, c), 0.001, np.float32)
    for i, k in enumerate(steps):
        probs[i, k] = 0.97
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 48, 168])
    out = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", t, c])
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m4"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["m4", "shape3"], ["m3"]),
        helper.make_node("Mul", ["m3", "zero"], ["z"]),
        helper.make_node("Add", ["z", "table"], ["probs"]),
    ]
    inits = [numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape3"),
             numpy_helper.from_array(np.zeros((1, t, c), np.float32), "zero"),
             numpy_helper.from_array(probs[None], "table")]
    model = helper.make_model(helper.make_graph(nodes, "reader", [inp], [out], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {"names": json.dumps({str(i): ch for i, ch in enumerate(charset)}), "imgsz": json.dumps([48, 168]),
            "roadeye_model": "plate_reader", "version": "fixture-1", "blank": "0"}
    for key, val in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=val))
    onnx.save(model, path)
    return path


VEHICLE_NAMES = {0: "car", 1: "bus", 2: "truck", 3: "van", 4: "two_wheeler", 5: "windshield"}


def vehicles_model(path: Path, dynamic_hw: bool = False) -> Path:
    return _fixed_table_model(path, [[12, 18, 52, 50, 0.92, 0], [18, 20, 46, 32, 0.88, 5]], VEHICLE_NAMES,
                              "vehicles", dynamic_hw)


def write_fixture_models(folder: Path, plate: str = "皖A12345", belt: bool = False) -> Path:
    """vehicles / plates / occupants / plate_reader .onnx in `folder` (a car seen in every frame)."""
    folder.mkdir(parents=True, exist_ok=True)
    vehicles_model(folder / "vehicles.onnx")
    occ = [[36, 6, 58, 62, 0.9, 0], [6, 6, 28, 62, 0.85, 1]]
    if belt:
        occ.append([40, 20, 52, 50, 0.9, 2])
    _fixed_table_model(folder / "occupants.onnx", occ,
                       {0: "driver", 1: "passenger", 2: "seatbelt", 3: "phone", 4: "face"}, "occupants")
    _fixed_table_model(folder / "plates.onnx", [[24, 46, 40, 52, 0.9, 0]], {0: "plate"}, "plates")
    _fixed_reader(folder / "plate_reader.onnx", plate)
    return folder
