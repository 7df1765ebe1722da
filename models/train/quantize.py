"""INT8 (QDQ) static quantization of our YOLO detectors for CPU edge boxes.

Why: on a CPU-only box the three detectors are most of the analysis time; onnxruntime's
int8 kernels (VNNI / AMX where the CPU has them) run the same graph ~1.3-1.45x faster. The
decoding tail of the head (box/score concatenation, top-k) mixes pixel coordinates and
probabilities in one tensor: quantizing it with one scale destroys the output (measured:
mAP50 0.0), so every node of the head except its hidden convolutions stays in float, and so
do the last prediction convolutions (their outputs are the raw box / class logits).

The result is `<name>.int8.onnx` beside the float file, with the same metadata plus what it
was quantized from; `edge` picks it by `models.precision`. Accuracy is measured with
`roadeye models eval NAME --model models/NAME.int8.onnx` beside the float file (model cards).
"""

from __future__ import annotations

import ast
import logging
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

#: hidden layers of the detection head's box (cv2) and class (cv3) branches, e.g.
#: /model.23/one2one_cv3.0/one2one_cv3.0.1/one2one_cv3.0.1.0/conv/Conv; not the final ".2/Conv"
_HEAD_HIDDEN = re.compile(r"/(?:one2one_)?cv[23]\.\d+/(?:one2one_)?cv[23]\.\d+\.[01]/")
_MODULE = re.compile(r"^/model\.(\d+)/")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


def int8_path(path: Path) -> Path:
    """models/occupants.onnx -> models/occupants.int8.onnx"""
    return path.with_name(f"{path.stem}.int8.onnx")


def float_only_nodes(model: Any) -> list[str]:
    """Nodes left in float: the head module (the highest /model.N/) except its hidden convs."""
    idx = [int(m.group(1)) for n in model.graph.node if (m := _MODULE.match(n.name))]
    if not idx:
        raise ValueError("no /model.N/ node names: not an ultralytics export")
    head = f"/model.{max(idx)}/"
    return [n.name for n in model.graph.node if n.name.startswith(head) and not _HEAD_HIDDEN.search(n.name)]


def calibration_images(folder: Path, n: int) -> list[Path]:
    """`n` images spread evenly over a folder tree (deterministic)."""
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise ValueError(f"no calibration images under {folder}")
    step = max(1, len(files) // n)
    return files[::step][:n]


#: activation-range calibration: min-max (the default, as every committed twin) or a
#: histogram method, which clips rare outlier activations instead of spending the 256 levels on them
#: (our name -> onnxruntime CalibrationMethod member)
CALIBRATION_METHODS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}


def quantize_detector(src: Path, dest: Path, images: list[Path], method: str = "minmax") -> dict[str, Any]:
    """Write the INT8 QDQ version of `src` to `dest`, calibrated on `images` by `method`."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edge.detectors.yolo import letterbox

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {list(CALIBRATION_METHODS)}, got {method!r}")
    calib_method = CalibrationMethod[CALIBRATION_METHODS[method]]
    meta = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    if "imgsz" not in meta:
        raise ValueError(f"{src}: no imgsz metadata (not one of our exports?)")
    if meta.get("quantized"):
        raise ValueError(f"{src} is already quantized ({meta['quantized']})")
    hw = tuple(int(v) for v in ast.literal_eval(meta["imgsz"]))
    inputs = onnx.load(str(src), load_external_data=False).graph.input
    name = inputs[0].name

    def tensors() -> Iterator[dict[str, np.ndarray]]:
        for p in images:
            im = cv2.imread(str(p))
            if im is None:
                raise ValueError(f"calibration image unreadable: {p}")
            lb, _ = letterbox(im.astype(np.uint8, copy=False), (hw[0], hw[1]))
            rgb = cv2.cvtColor(lb, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)[None]
            yield {name: np.ascontiguousarray(rgb, dtype=np.float32) / 255.0}

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = tensors()

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        keep_float = float_only_nodes(onnx.load(str(pre)))
        out_tmp = Path(tmp) / "q.onnx"
        quantize_static(str(pre), str(out_tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=calib_method, nodes_to_exclude=keep_float)
        q = onnx.load(str(out_tmp))
    from edge.detectors import file_sha256

    del q.metadata_props[:]
    meta["version"] = f"{meta.get('version', '')}+int8"  # events name the variant that ran
    meta |= {"quantized": f"int8-qdq (per-channel int8 weights, uint8 activations, {method} calibration)",
             "quantized_from_sha256": file_sha256(src), "calibration_images": str(len(images))}
    for k, v in meta.items():
        e = q.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(q, str(dest))
    summary = {"src": str(src), "dest": str(dest), "calibration_images": len(images),
               "calibration": method, "float_nodes": len(keep_float), "bytes": dest.stat().st_size}
    log.info("quantized: %s", summary)
    return summary
