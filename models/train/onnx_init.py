"""Rebuild a trainable ultralytics checkpoint from one of our committed ONNX exports.

Why: the committed artefact of a model is its ONNX file; the .pt checkpoints of earlier
sessions live in run folders that do not survive a new machine. To continue training a
released model (instead of restarting from random weights) we import its weights back.

The export fused every Conv+BatchNorm pair into one convolution with a bias. A fused conv
is reproduced exactly by an un-fused one whose BatchNorm has running mean m, running
variance v, gamma sqrt(v + eps) and beta m + bias. Any m, v give the same eval-mode
function, so we pick the per-channel statistics the pre-BN activations really have on
training images: then the first training steps (batch statistics) see the same network too.

YOLO26's end-to-end export carries only the one-to-one head; the one-to-many head that
training also uses is a copy of it (ultralytics builds one2one_* as deep copies of cv2/cv3).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from models.train.common import setup_ultralytics

log = logging.getLogger(__name__)


def onnx_initializers(path: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


def _letterbox(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    h, w = img.shape[:2]
    r = min(hw[0] / h, hw[1] / w)
    nh, nw = max(1, round(h * r)), max(1, round(w * r))
    out = np.full((hw[0], hw[1], 3), 114, np.uint8)
    top, left = (hw[0] - nh) // 2, (hw[1] - nw) // 2
    out[top:top + nh, left:left + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB)


def _batches(images: list[Path], hw: tuple[int, int], batch: int) -> Iterable[np.ndarray]:
    for i in range(0, len(images), batch):
        arr = [_letterbox(im, hw) for p in images[i:i + batch] if (im := cv2.imread(str(p))) is not None]
        if arr:
            yield np.stack(arr).transpose(0, 3, 1, 2).astype(np.float32) / 255.0


def calibrate_split_batchnorm(layers: list[tuple[Any, Any, Any]], run: Callable[[], None]) -> int:
    """Give each BatchNorm split back out of a folded conv the real statistics of its conv's
    output (see the module doc), keeping the function: gamma sqrt(v + eps), beta m + bias.

    `layers`: (conv, bn, folded bias tensor), every bn already the identity plus that bias, so
    the network computes the exported function while `run()` feeds it calibration inputs.
    Returns how many layers saw data (only those are changed)."""
    import torch

    sums: dict[int, list[Any]] = {}
    hooks = []
    for k, (conv, _bn, _bias) in enumerate(layers):
        def hook(_m: Any, _inp: Any, y: Any, k: int = k) -> None:
            y = y.detach().double()
            dims = tuple(d for d in range(y.dim()) if d != 1)  # all but channels (2-D and 1-D convs)
            s = sums.setdefault(k, [0.0, 0.0, 0])
            s[0] = s[0] + y.sum(dim=dims)
            s[1] = s[1] + (y * y).sum(dim=dims)
            s[2] += y.numel() // y.shape[1]
        hooks.append(conv.register_forward_hook(hook))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        for k, (s1, s2, n) in sums.items():
            _conv, bn, bias = layers[k]
            mean = s1 / n
            var = (s2 / n - mean * mean).clamp_min(1e-6)
            bn.running_mean.copy_(mean.float())
            bn.running_var.copy_(var.float())
            bn.weight.copy_(torch.sqrt(var + bn.eps).float())
            bn.bias.copy_((mean + bias.double()).float())
    return len(sums)


def checkpoint_from_onnx(onnx_path: Path, architecture: str, names: dict[int, str], images: list[Path],
                         out: Path, *, batch: int = 8) -> dict[str, Any]:
    """Write `out` (.pt) holding the ONNX model's weights in an un-fused ultralytics model.

    `images` (a few dozen training images) set the BatchNorm statistics. Returns a summary
    with the largest output difference between the rebuilt torch model and the ONNX file.
    """
    setup_ultralytics()
    import onnx
    import onnxruntime as ort
    import torch
    from ultralytics.nn.tasks import DetectionModel

    meta = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    inits = onnx_initializers(onnx_path)
    model = DetectionModel(architecture, nc=len(names), verbose=False)
    model.names = dict(names)
    sd = model.state_dict()
    modules = dict(model.named_modules())
    loaded: set[str] = set()

    def put(key: str, value: np.ndarray) -> None:
        if key not in sd:
            raise KeyError(f"{onnx_path}: torch model has no {key!r} (wrong architecture?)")
        if tuple(sd[key].shape) != value.shape:
            raise ValueError(f"{onnx_path}: {key} is {value.shape} in ONNX, {tuple(sd[key].shape)} in torch")
        sd[key].copy_(torch.from_numpy(value.copy()))
        loaded.add(key)

    fused_bias: dict[str, np.ndarray] = {}
    for name, arr in inits.items():
        if not name.startswith("model.") or not name.endswith((".weight", ".bias")):
            continue  # shape constants etc.
        prefix, leaf = name.rsplit(".", 1)
        if prefix.endswith(".conv") and f"{prefix[:-5]}.bn.weight" in sd:
            conv_owner = prefix[:-5]
            if leaf == "weight":
                put(f"{conv_owner}.conv.weight", arr)
            else:
                fused_bias[conv_owner] = arr
        else:
            put(name, arr)
    for owner, bias in fused_bias.items():  # identity BN + bias, statistics set below
        c = bias.shape[0]
        bn = modules[f"{owner}.bn"]
        eps = float(bn.eps)
        put(f"{owner}.bn.running_mean", np.zeros(c, np.float32))
        put(f"{owner}.bn.running_var", np.ones(c, np.float32))
        put(f"{owner}.bn.weight", np.full(c, np.sqrt(1 + eps), np.float32))
        put(f"{owner}.bn.bias", bias.astype(np.float32))
    # one-to-many head = copy of the exported one-to-one head
    for key in list(sd):
        if ".one2one_" in key and key in loaded:
            twin = key.replace(".one2one_", ".")
            if twin in sd and twin not in loaded:
                put(twin, sd[key].cpu().numpy())
    missing = [k for k in sd if k not in loaded and not k.endswith("num_batches_tracked")
               and not k.endswith(".anchors") and not k.endswith(".strides")]
    if missing:
        raise ValueError(f"{onnx_path}: {len(missing)} torch tensors not in the ONNX file, e.g. {missing[:5]}")
    model.load_state_dict(sd)
    model.eval()

    hw_meta = meta.get("imgsz", "")
    hw = tuple(int(x) for x in hw_meta.strip("[]").split(",")) if hw_meta else (640, 640)
    # statistics of every BN input (= conv output without bias) over the calibration images
    first: np.ndarray | None = None

    def run() -> None:
        nonlocal first
        for x in _batches(images, (int(hw[0]), int(hw[1])), batch):
            first = x if first is None else first
            model(torch.from_numpy(x))

    layers = [(modules[f"{owner}.conv"], modules[f"{owner}.bn"], torch.from_numpy(bias.copy()))
              for owner, bias in fused_bias.items()]
    n_calibrated = calibrate_split_batchnorm(layers, run)
    if first is None:
        raise ValueError("no readable calibration image")

    # the rebuilt model must compute what the ONNX file computes
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: first})[0]
    head: Any = model.model[-1]  # type: ignore[index]
    was_e2e = getattr(head, "end2end", False)
    head.end2end = True  # as exported: one-to-one head, top-300 (x1, y1, x2, y2, score, class)
    with torch.no_grad():
        y = model(torch.from_numpy(first))
    head.end2end = was_e2e
    y = y[0] if isinstance(y, (list, tuple)) else y
    ours = y.numpy()
    # compare the confident rows only (ordering ties among near-zero scores are arbitrary)
    diff = float(np.abs(np.sort(ours[..., 4], axis=-1)[..., -20:] - np.sort(ref[..., 4], axis=-1)[..., -20:]).max()) \
        if ours.shape == ref.shape else float("inf")
    if not diff < 1e-3:
        raise ValueError(f"{onnx_path}: rebuilt torch model differs from the ONNX file (max score diff {diff})")
    import ultralytics

    ckpt = {"epoch": -1, "best_fitness": None, "model": model.float(), "ema": None, "updates": None,
            "optimizer": None, "train_args": {"task": "detect", "imgsz": list(hw)}, "train_metrics": {},
            "date": datetime.now(UTC).isoformat(), "version": ultralytics.__version__,
            "roadeye_from_onnx": {"file": str(onnx_path), "version": meta.get("version"),
                                  "epochs": meta.get("epochs"), "data_hash": meta.get("data_hash")}}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, str(out))
    summary = {"onnx": str(onnx_path), "out": str(out), "tensors": len(loaded), "bn_calibrated": n_calibrated,
               "calibration_images": len(images), "max_score_diff_vs_onnx": diff}
    log.info("checkpoint from ONNX: %s", summary)
    return summary
