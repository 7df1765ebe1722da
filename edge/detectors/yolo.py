"""ONNX Runtime YOLO detector: the one runtime behind the vehicles, plates and occupants models.

Why this file exists: the edge box must not depend on torch/ultralytics, so preprocessing
(letterbox), decoding and NMS are re-implemented here with numpy + OpenCV. Two export formats
are decoded, because both occur in practice:

* NMS-free / end-to-end YOLO26 (`nms=False` export, or `nms=True` on older heads):
  output `[B, K, 6]` rows of (x1, y1, x2, y2, score, class) in letterboxed input pixels.
* raw head output `[B, 4 + nc, N]`: (cx, cy, w, h, per-class scores) per anchor, which needs
  confidence filtering and per-class NMS (cv2.dnn.NMSBoxes).

Boxes are always returned in the pixels of the image passed in.
"""

from __future__ import annotations

import ast
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from edge.detectors import Provider, provider_name, session_options
from edge.types import Detections

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]

#: preference order: fastest first; filtered by what this onnxruntime build offers
DEFAULT_PROVIDERS: tuple[str, ...] = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)
PAD_VALUE = 114  # ultralytics' letterbox grey, so training and runtime see the same borders
MAX_DET = 300
#: same-class end-to-end rows overlapping a better one this much are one object: the one-to-one
#: head's rare second boxes overlap 0.8-0.98 (11 pairs on 200 plate renders after a fine-tune)
E2E_DUPLICATE_IOU = 0.7


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How one image was mapped into the model input: `input = image * ratio + (pad_x, pad_y)`."""

    ratio: float
    pad_x: float
    pad_y: float
    width: int  # original image size, for clipping
    height: int


def letterbox(image: Image, size: tuple[int, int]) -> tuple[Image, Letterbox]:
    """Resize keeping aspect ratio and pad (centred) to `size` = (h, w), as ultralytics trains."""
    h, w = image.shape[:2]
    th, tw = size
    r = min(th / h, tw / w)
    nw, nh = max(1, round(w * r)), max(1, round(h * r))
    if (nw, nh) != (w, h):
        interp = cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR
        image = np.asarray(cv2.resize(image, (nw, nh), interpolation=interp), np.uint8)
    dw, dh = (tw - nw) / 2, (th - nh) / 2
    top, left = round(dh - 0.1), round(dw - 0.1)
    bottom, right = th - nh - top, tw - nw - left
    out = np.asarray(cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                        value=(PAD_VALUE, PAD_VALUE, PAD_VALUE)), np.uint8)
    return out, Letterbox(ratio=r, pad_x=float(left), pad_y=float(top), width=w, height=h)


def unletterbox(xyxy: np.ndarray, lb: Letterbox) -> npt.NDArray[np.float32]:
    """Map (N, 4) boxes from model-input pixels back to original-image pixels, clipped to it."""
    out = np.asarray(xyxy, np.float32).reshape(-1, 4).copy()
    out[:, [0, 2]] = (out[:, [0, 2]] - lb.pad_x) / lb.ratio
    out[:, [1, 3]] = (out[:, [1, 3]] - lb.pad_y) / lb.ratio
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, lb.width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, lb.height)
    return out


def _empty() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)


def _nms_per_class(xywh: np.ndarray, score: np.ndarray, cls: np.ndarray, conf: float,
                   iou: float) -> npt.NDArray[np.int64]:
    """Indices kept by greedy NMS run per class (boxes as x, y, w, h), best score first."""
    picked = [idx[np.asarray(cv2.dnn.NMSBoxes(xywh[idx].tolist(), score[idx].tolist(), float(conf), float(iou)),
                             np.int64).reshape(-1)]
              for idx in (np.flatnonzero(cls == c) for c in np.unique(cls))]
    order = np.concatenate(picked)
    return order[np.argsort(-score[order], kind="stable")]


def decode_end2end(
    out: np.ndarray, conf: float, max_det: int = MAX_DET, duplicate_iou: float | None = E2E_DUPLICATE_IOU
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Decode one image of an NMS-free output `[K, 6+]` (x1, y1, x2, y2, score, class).

    The one-to-one head mostly de-duplicates by itself, but not always: a row of the same
    class overlapping a better row at `duplicate_iou` or more is dropped (None keeps all).
    Returns (xyxy, score, class_id) in model-input pixels, sorted by descending score.
    """
    out = np.asarray(out, np.float32)
    if out.ndim != 2 or out.shape[1] < 6:
        raise ValueError(f"end-to-end output must be (K, >=6), got {out.shape}")
    keep = out[:, 4] >= conf
    rows = out[keep]
    rows = rows[np.argsort(-rows[:, 4], kind="stable")]
    if not len(rows):
        return _empty()
    cls = rows[:, 5].round().astype(np.int64)
    if duplicate_iou is not None and len(rows) > 1:
        xywh = rows[:, :4].copy()
        xywh[:, 2:] -= xywh[:, :2]
        order = _nms_per_class(xywh, rows[:, 4], cls, 0.0, duplicate_iou)
        rows, cls = rows[order], cls[order]
    rows, cls = rows[:max_det], cls[:max_det]
    return rows[:, :4].copy(), rows[:, 4].copy(), cls


def decode_raw(
    out: np.ndarray, nc: int, conf: float, iou: float, max_det: int = MAX_DET
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Decode one image of a raw head output `[4 + nc, N]` (cx, cy, w, h, class scores).

    Keeps the best class per anchor above `conf`, then runs NMS per class (a car box must
    not suppress the windshield inside it). Returns (xyxy, score, class_id), best first.
    """
    out = np.asarray(out, np.float32)
    if out.ndim != 2 or out.shape[0] < 4 + nc:
        raise ValueError(f"raw output must be (4+nc={4 + nc}, N), got {out.shape}")
    pred = out[: 4 + nc].T  # (N, 4+nc)
    scores_all = pred[:, 4:]
    cls = scores_all.argmax(axis=1)
    score = scores_all[np.arange(len(pred)), cls]
    keep = score >= conf
    if not keep.any():
        return _empty()
    boxes, score, cls = pred[keep, :4], score[keep], cls[keep]
    xywh = boxes.copy()
    xywh[:, 0] -= boxes[:, 2] / 2
    xywh[:, 1] -= boxes[:, 3] / 2
    order = _nms_per_class(xywh, score, cls, conf, iou)[:max_det]
    xyxy = np.concatenate([xywh[order, :2], xywh[order, :2] + xywh[order, 2:]], axis=1)
    return xyxy.astype(np.float32), score[order].astype(np.float32), cls[order].astype(np.int64)


def parse_names(raw: str | None) -> dict[int, str]:
    """Parse the `names` metadata: JSON (`{"0": "car"}`, roadeye) or a Python dict repr (ultralytics)."""
    if not raw:
        return {}
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError) as exc:
            raise ValueError(
                f"model metadata 'names' is neither JSON nor a dict literal: {raw[:80]!r}") from exc
    if isinstance(value, list):
        value = dict(enumerate(value))
    if not isinstance(value, dict):
        raise ValueError(f"model metadata 'names' must be a dict or list, got {type(value).__name__}")
    return {int(k): str(v) for k, v in value.items()}


def parse_imgsz(raw: str | None) -> tuple[int, int] | None:
    """Parse `imgsz` metadata: JSON `[h, w]` or a single int."""
    if not raw:
        return None
    value = json.loads(raw)
    if isinstance(value, int):
        return value, value
    if isinstance(value, list) and len(value) == 2:
        return int(value[0]), int(value[1])
    raise ValueError(f"model metadata 'imgsz' must be [h, w] or an int, got {raw!r}")


def resolve_providers(requested: Sequence[Provider] | None) -> list[Provider]:
    """Keep the requested providers (default: TensorRT > CUDA > CPU) this onnxruntime build has;
    each a name or (name, options)."""
    available = ort.get_available_providers()
    wanted: list[Provider] = list(requested) if requested else list(DEFAULT_PROVIDERS)
    chosen = [p for p in wanted if provider_name(p) in available]
    if not chosen:
        raise ValueError(f"none of the requested execution providers {wanted} is available "
                         f"in this onnxruntime build (available: {available})")
    return chosen


class OnnxYoloDetector:
    """`edge.detectors.base.Detector` over an ultralytics YOLO ONNX export.

    Loads once, warms up, letterboxes to the model's `imgsz` (from its metadata), runs
    batches when the ONNX batch axis is dynamic (else one image per run, or padded to the
    fixed batch), and decodes either output format. `conf`/`iou` may be changed later.
    """

    def __init__(
        self,
        model_path: str | Path,
        providers: list[Provider] | None = None,
        conf: float = 0.25,
        iou: float = 0.6,
        batch: int = 8,
        *,
        threads: int | None = None,
        spin: bool = False,
    ) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        if not 0.0 <= conf <= 1.0 or not 0.0 < iou <= 1.0:
            raise ValueError(f"conf must be in [0, 1] and iou in (0, 1], got conf={conf} iou={iou}")
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.model_path = path
        self.conf = float(conf)
        self.iou = float(iou)
        opts = session_options(threads, spin)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts,
                                                providers=resolve_providers(providers))
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            if isinstance(exc, ValueError):
                raise
            raise ValueError(f"cannot load ONNX model {path}: {exc}") from exc
        self.provider: str = self.session.get_providers()[0]
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata: dict[str, str] = dict(meta)
        inp = self.session.get_inputs()[0]
        self._input_name = inp.name
        self._input_dtype = np.float16 if "float16" in inp.type else np.float32
        shape = list(inp.shape)
        if len(shape) != 4:
            raise ValueError(f"{path}: expected a 4-D image input (B, 3, H, W), got {shape}")
        size = parse_imgsz(meta.get("imgsz"))
        if size is None:
            if not all(isinstance(d, int) for d in shape[2:]):
                raise ValueError(f"{path}: no 'imgsz' metadata and a dynamic input size {shape}")
            size = (int(shape[2]), int(shape[3]))
        self.input_size: tuple[int, int] = size
        self.dynamic_batch = not isinstance(shape[0], int)
        self._fixed_batch = 1 if self.dynamic_batch else int(shape[0])
        self.batch = int(batch) if self.dynamic_batch else self._fixed_batch
        out = self.session.get_outputs()[0]
        self._output_name = out.name
        names = parse_names(meta.get("names"))
        # Probe run = warm-up (first-run allocations happen here, not on the first real frame)
        # and tells the output layout for certain, even when every output dim is symbolic.
        t0 = time.perf_counter()
        probe = self._run(np.full((self._fixed_batch, 3, *size), 0.5, self._input_dtype))
        self.warmup_ms = (time.perf_counter() - t0) * 1e3
        self.end2end = self._detect_format(probe.shape, names, meta)
        if not names:
            if self.end2end:
                raise ValueError(f"{path}: no 'names' metadata; an end-to-end output does not tell "
                                 "the class count")
            names = {i: str(i) for i in range(probe.shape[1] - 4)}
        self.names: dict[int, str] = names
        self.nc = len(names)
        self.roadeye_model = meta.get("roadeye_model", path.stem)
        log.info("loaded %s (%s, %d classes, input %dx%d, %s output, batch %s) on %s; warm-up %.0f ms",
                 path.name, self.roadeye_model, self.nc, size[1], size[0],
                 "end-to-end" if self.end2end else "raw", "dynamic" if self.dynamic_batch else self.batch,
                 self.provider, self.warmup_ms)

    @staticmethod
    def _detect_format(shape: Sequence[int], names: dict[int, str], meta: dict[str, str]) -> bool:
        """True for end-to-end `[B, K, 6]` output, False for raw `[B, 4+nc, N]` (from a real run)."""
        if len(shape) != 3:
            raise ValueError(
                f"unsupported YOLO output shape {list(shape)}; expected (B, K, 6) or (B, 4+nc, N)")
        mid, last = int(shape[1]), int(shape[2])
        raw_ok = mid == 4 + len(names) if names else mid > 4
        e2e_ok = last == 6
        if raw_ok != e2e_ok:
            return e2e_ok
        if raw_ok:  # both fit (nc == 2 and six anchors): trust the export's own flags
            return meta.get("end2end") == "True" or "'nms': True" in meta.get("args", "")
        raise ValueError(f"output shape {list(shape)} matches neither (B, K, 6) nor (B, 4+{len(names)}, N)")

    def __repr__(self) -> str:
        return (f"OnnxYoloDetector({self.model_path.name!r}, provider={self.provider!r}, "
                f"input_size={self.input_size}, nc={self.nc})")

    # -- inference -----------------------------------------------------------------------

    def _run(self, blob: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run([self._output_name], {self._input_name: blob})[0])

    @staticmethod
    def _check(image: np.ndarray, i: int = 0) -> Image:
        if not isinstance(image, np.ndarray):
            raise TypeError(f"image {i}: expected a numpy array, got {type(image).__name__}")
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.ndim == 3 and image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image {i}: expected an HxWx3 BGR image, got shape {image.shape}")
        if image.shape[0] < 2 or image.shape[1] < 2:
            raise ValueError(f"image {i}: too small to detect on ({image.shape[1]}x{image.shape[0]})")
        if image.dtype != np.uint8:
            raise ValueError(f"image {i}: expected uint8 pixels, got {image.dtype}")
        return np.asarray(image, np.uint8)

    def _preprocess(self, images: list[Image]) -> tuple[np.ndarray, list[Letterbox]]:
        blob = np.empty((len(images), 3, *self.input_size), self._input_dtype)
        boxes = []
        for i, img in enumerate(images):
            lb_img, lb = letterbox(img, self.input_size)
            blob[i] = lb_img[:, :, ::-1].transpose(2, 0, 1)  # BGR HWC -> RGB CHW
            boxes.append(lb)
        blob *= np.asarray(1 / 255.0, self._input_dtype)
        return blob, boxes

    def _decode(self, out: np.ndarray, lb: Letterbox) -> Detections:
        if self.end2end:
            xyxy, score, cls = decode_end2end(out, self.conf)
        else:
            xyxy, score, cls = decode_raw(out, self.nc, self.conf, self.iou)
        if not len(xyxy):
            return Detections.empty()
        xyxy = unletterbox(xyxy, lb)
        ok = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        return Detections(xyxy=xyxy[ok], confidence=score[ok], class_id=cls[ok])

    def detect(self, image: Image) -> Detections:
        """Detect on one BGR image; boxes in that image's pixels."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: list[Image]) -> list[Detections]:
        """Detect on several BGR images, `batch` per onnxruntime run where the model allows."""
        checked = [self._check(im, i) for i, im in enumerate(images)]
        results: list[Detections] = []
        step = self.batch
        for start in range(0, len(checked), step):
            chunk = checked[start:start + step]
            blob, lbs = self._preprocess(chunk)
            n = len(chunk)
            if not self.dynamic_batch and n < self._fixed_batch:  # pad a fixed-batch model
                pad = np.full((self._fixed_batch - n, *blob.shape[1:]), 0.5, blob.dtype)
                blob = np.concatenate([blob, pad])
            out = self._run(blob)
            results.extend(self._decode(out[i], lbs[i]) for i in range(n))
        return results
