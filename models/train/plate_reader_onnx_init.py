"""Rebuild the torch CRNN of a committed `plate_reader.onnx`, so a released reader can be
fine-tuned after its run folder (last.pt) is gone.

The TorchScript export folds every Conv+BatchNorm pair into one convolution with a bias and
stores the LSTMs in ONNX layout. Both are undone here:

- a folded conv is reproduced exactly by the un-folded conv plus a BatchNorm whose running
  mean m and variance v are the real per-channel statistics of the conv output on the
  given inputs, with gamma sqrt(v + eps) and beta m + bias (any m, v give the same eval-mode
  function; the real ones make the first training steps, on batch statistics, see the same
  network too; `onnx_init.calibrate_split_batchnorm`, shared with the YOLO models);
- ONNX LSTM gates are ordered (i, o, f, c) and its bias is [W_b; R_b]; torch orders the
  gates (i, f, g, o) and keeps bias_ih / bias_hh apart.

The rebuilt model is checked against the ONNX file on the same inputs before it is returned.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: rows of an ONNX LSTM gate block (i, o, f, c) in torch's order (i, f, g=c, o)
_ONNX_TO_TORCH_GATES = (0, 2, 3, 1)


def _gates_to_torch(w: np.ndarray, hidden: int) -> np.ndarray:
    blocks = [w[k * hidden:(k + 1) * hidden] for k in range(4)]
    return np.concatenate([blocks[k] for k in _ONNX_TO_TORCH_GATES], axis=0)


def _reader_metadata(m: Any, onnx_path: Path) -> dict[str, str]:
    """The metadata of a loaded ONNX model, refused unless it is a plate_reader export."""
    meta = {p.key: p.value for p in m.metadata_props}
    if meta.get("roadeye_model") != "plate_reader":
        raise ValueError(f"{onnx_path} is not a plate_reader export (roadeye_model={meta.get('roadeye_model')!r})")
    return meta


def _graph_parts(onnx_path: Path) -> tuple[dict[str, str], list[tuple[np.ndarray, np.ndarray]],
                                           list[tuple[np.ndarray, np.ndarray, np.ndarray]], np.ndarray, np.ndarray]:
    """(metadata, convs [(W, B)] in graph order, lstms [(W, R, B)] in graph order, head W, head b)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(onnx_path))
    meta = _reader_metadata(m, onnx_path)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    consts = {o: numpy_helper.to_array(n.attribute[0].t) for n in m.graph.node if n.op_type == "Constant"
              for o in n.output if n.attribute and n.attribute[0].type == onnx.AttributeProto.TENSOR}
    values = {**consts, **inits}
    convs, lstms = [], []
    head_w = head_b = None
    for n in m.graph.node:
        if n.op_type == "Conv":
            if len(n.input) < 3:
                raise ValueError(f"{onnx_path}: conv {n.name} has no bias (not a folded Conv+BatchNorm)")
            convs.append((values[n.input[1]], values[n.input[2]]))
        elif n.op_type == "LSTM":
            lstms.append((values[n.input[1]], values[n.input[2]], values[n.input[3]]))
        elif n.op_type == "MatMul" and n.input[1] in values:
            head_w = values[n.input[1]]
        elif n.op_type == "Add" and head_w is not None and head_b is None:
            head_b = next(values[i] for i in n.input if i in values)
    if head_w is None or head_b is None:
        raise ValueError(f"{onnx_path}: no classifier head (MatMul + Add) found")
    return meta, convs, lstms, head_w, head_b


def onnx_arch(onnx_path: Path) -> str:
    """The `arch` metadata of a plate_reader export (1.x files without it are `base`)."""
    import onnx

    return _reader_metadata(onnx.load(str(onnx_path), load_external_data=False), onnx_path).get("arch", "base")


def model_from_onnx(onnx_path: Path, inputs: np.ndarray, *, tolerance: float = 1e-4) -> tuple[Any, dict[str, Any]]:
    """(torch CRNN in train mode, summary) rebuilt from `onnx_path`.

    `inputs`: [N, 3, H, W] float32 preprocessed crops (`preprocess_plate`), a few hundred
    training crops; they set the BatchNorm statistics and are the equivalence check (largest
    probability difference vs onnxruntime must stay below `tolerance`).
    """
    import onnxruntime as ort
    import torch

    from models.train.onnx_init import calibrate_split_batchnorm
    from models.train.plate_reader import ARCHS, NUM_CLASSES, build_model

    meta, convs, lstms, head_w, head_b = _graph_parts(onnx_path)
    arch = meta.get("arch", "base")
    if arch not in ARCHS:
        raise ValueError(f"{onnx_path}: unknown arch {arch!r}")
    model = build_model(NUM_CLASSES, arch=arch)
    model.eval()
    pairs = [(seq[i], seq[i + 1]) for seq in (list(model.features), list(model.proj)) for i in range(len(seq) - 1)
             if isinstance(seq[i], torch.nn.Conv2d | torch.nn.Conv1d)]
    if not all(isinstance(bn, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d) for _, bn in pairs):
        raise ValueError(f"arch {arch!r}: a convolution is not followed by a BatchNorm")
    if len(pairs) != len(convs):
        raise ValueError(f"{onnx_path}: {len(convs)} convolutions in ONNX, {len(pairs)} in arch {arch!r}")
    rnn = model.rnn
    if len(lstms) != rnn.num_layers:
        raise ValueError(f"{onnx_path}: {len(lstms)} LSTM layers in ONNX, {rnn.num_layers} in arch {arch!r}")
    hidden = rnn.hidden_size
    with torch.no_grad():
        for (conv, bn), (w, b) in zip(pairs, convs, strict=True):
            if tuple(conv.weight.shape) != w.shape:
                raise ValueError(f"{onnx_path}: conv weight {w.shape} vs {tuple(conv.weight.shape)} in torch")
            conv.weight.copy_(torch.from_numpy(w.copy()))
            if conv.bias is not None:  # (the projection conv has one) folded into the ONNX bias
                conv.bias.zero_()
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0)
            bn.weight.fill_(float(np.sqrt(1.0 + bn.eps)))
            bn.bias.copy_(torch.from_numpy(b.astype(np.float32)))
        for layer, (w, r, b) in enumerate(lstms):
            for d, suffix in enumerate(("", "_reverse")):
                getattr(rnn, f"weight_ih_l{layer}{suffix}").copy_(torch.from_numpy(_gates_to_torch(w[d], hidden)))
                getattr(rnn, f"weight_hh_l{layer}{suffix}").copy_(torch.from_numpy(_gates_to_torch(r[d], hidden)))
                getattr(rnn, f"bias_ih_l{layer}{suffix}").copy_(torch.from_numpy(_gates_to_torch(b[d][:4 * hidden],
                                                                                                 hidden)))
                getattr(rnn, f"bias_hh_l{layer}{suffix}").copy_(torch.from_numpy(_gates_to_torch(b[d][4 * hidden:],
                                                                                                 hidden)))
        model.head.weight.copy_(torch.from_numpy(head_w.T.copy()))
        model.head.bias.copy_(torch.from_numpy(head_b.copy()))

    # real statistics of each conv output (the network is already exact, so one pass sees them all)
    x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))

    def run() -> None:
        for i in range(0, len(x), 128):
            model(x[i:i + 128])

    calibrate_split_batchnorm([(conv, bn, torch.from_numpy(b.astype(np.float32)))
                               for (conv, bn), (_w, b) in zip(pairs, convs, strict=True)], run)
    with torch.no_grad():
        ours = torch.softmax(model(x), dim=-1).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: inputs.astype(np.float32)})[0]
    diff = float(np.abs(ours - ref).max())
    if not diff < tolerance:
        raise ValueError(f"{onnx_path}: rebuilt torch model differs from the ONNX file (max prob diff {diff:.2e})")
    model.train()
    summary = {"onnx": str(onnx_path), "arch": arch, "version": meta.get("version"), "convs": len(convs),
               "lstm_layers": len(lstms), "calibration_crops": len(inputs), "max_prob_diff_vs_onnx": diff}
    log.info("plate reader rebuilt from ONNX: %s", summary)
    return model, summary
