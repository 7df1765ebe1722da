"""Plate reader: a compact CRNN trained with CTC in torch, exported to ONNX; ONNX evaluation.

Why this design: plates are a short left-to-right sequence of glyphs from a closed
68-character vocabulary, so a small conv stack that collapses the height, a BiLSTM for
context (province glyphs look alike at 24 px; the position in the plate disambiguates)
and CTC (no character segmentation labels needed) is accurate and runs in well under a
millisecond per plate on a CPU. Input 32x96 BGR; two-row plates are laid out as one row
before resizing (edge.detectors.plate_reader.split_two_row), the same code at train and
run time.

Direct use:
    python -m models.train.plate_reader train --out /work/scratch/plate_reader/run --epochs 30
    python -m models.train.plate_reader eval models/plate_reader.onnx ../shared/datasets/plates-cn-crops

`train` imports torch; `evaluate` uses onnxruntime only (via edge.detectors.plate_reader).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.detectors.plate_reader import (
    BLANK,
    CHARSET,
    OnnxPlateReader,
    crop_layouts,
    plate_text_valid,
    preprocess_plate,
)
from models.synth.province_swap import swap_province
from models.train.plate_reader_data import (
    REAL_CROPS,
    REAL_SPLIT,
    Augmenter,
    imread,
    is_real_crops,
    is_scenes,
    read_crop_labels,
    rectify_quad,
    scene_quads,
)
from models.train.plate_reader_data import (
    datasets_root as _datasets_root,
)

__all__ = ["INPUT_SIZE", "MODEL_VERSION", "REAL_SPLIT", "evaluate", "export_onnx", "train"]

log = logging.getLogger(__name__)

INPUT_SIZE = (32, 96)  # (h, w)
MODEL_VERSION = "1.0.0"
ARCH_VERSION = {"base": "1.0.0", "wide": "2.0.0", "wide48": "2.1.0"}  # `version` metadata per --arch
NUM_CLASSES = len(CHARSET) + 1  # + CTC blank at index 0
_CHAR_INDEX = {c: i + 1 for i, c in enumerate(CHARSET)}
_TWO_ROW_KINDS = {"yellow_double"}
STEPS_PER_EPOCH = 300
BATCH = 64
REAL_SHARE = 0.45  # share of each batch drawn from the real crops


# ----------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Arch:
    """One CRNN configuration (`--arch`); `base` is the released 1.x recipe, kept reproducible."""

    name: str
    input_size: tuple[int, int]          # (h, w)
    widths: tuple[int, int, int, int, int, int]  # the six conv layers
    proj: int                            # 1x1 projection channels before the LSTM
    lstm_hidden: int                     # per direction
    lstm_layers: int


ARCHS: dict[str, Arch] = {
    # 410k params, 32x96 -> 24 timesteps (the released 1.0 model)
    "base": Arch("base", (32, 96), (16, 32, 64, 64, 96, 96), 128, 96, 1),
    # ~1.7M params: 2x wider convs, 2-layer BiLSTM 128/dir (round-2 capacity test)
    "wide": Arch("wide", (32, 96), (32, 64, 128, 128, 192, 192), 256, 128, 2),
    # same width at 48x144 (more pixels per province glyph); 36 timesteps
    "wide48": Arch("wide48", (48, 144), (32, 64, 128, 128, 192, 192), 256, 128, 2),
}


def build_model(num_classes: int = NUM_CLASSES, arch: str | Arch = "base") -> Any:
    """The CRNN: 6 conv layers (height -> 2), 1x1 projection, BiLSTM, per-step classifier.

    Pools 2x2, 2x2, 2x1, 2x1 (+ one more 2x1 at 48 px high, i.e. 3x1 overall) leave a 2-row
    map with w/4 timesteps: 24 at 96 px wide, room for 8 characters plus CTC blanks.
    """
    import torch
    from torch import nn

    cfg = ARCHS[arch] if isinstance(arch, str) else arch

    def cbr(i: int, o: int) -> list[nn.Module]:
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

    a, b, c, c2, d, d2 = cfg.widths
    h_in = cfg.input_size[0]
    if h_in not in (32, 48):
        raise ValueError(f"arch {cfg.name}: input height must be 32 or 48, got {h_in}")
    last_pool: nn.Module = nn.MaxPool2d((2, 1)) if h_in == 32 else nn.MaxPool2d((3, 1))

    class CRNN(nn.Module):
        input_size: tuple[int, int] = cfg.input_size  # read by batching, accuracy and export
        arch: str = cfg.name

        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                *cbr(3, a), nn.MaxPool2d(2),            # 16 x 48   (24 x 72)
                *cbr(a, b), nn.MaxPool2d(2),            # 8 x 24    (12 x 36)
                *cbr(b, c), *cbr(c, c2), nn.MaxPool2d((2, 1)),  # 4 x 24 (6 x 36)
                *cbr(c2, d), *cbr(d, d2), last_pool,    # 2 x 24    (2 x 36)
            )
            self.proj = nn.Sequential(nn.Conv1d(d2 * 2, cfg.proj, 1), nn.BatchNorm1d(cfg.proj),
                                      nn.ReLU(inplace=True), nn.Dropout(0.1))
            self.rnn = nn.LSTM(cfg.proj, cfg.lstm_hidden, num_layers=cfg.lstm_layers, bidirectional=True,
                               batch_first=True, dropout=0.1 if cfg.lstm_layers > 1 else 0.0)
            self.head = nn.Linear(2 * cfg.lstm_hidden, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """x: [N, 3, H, W] BGR 0..255 -> logits [N, T, C]."""
            f = self.features(x * (1.0 / 127.5) - 1.0)
            n, ch, h, w = f.shape
            f = self.proj(f.reshape(n, ch * h, w)).transpose(1, 2)
            f, _ = self.rnn(f)
            out: torch.Tensor = self.head(f)
            return out

    return CRNN()


class _Softmaxed:
    """Wraps the CRNN so the exported graph outputs probabilities (decoder needs no softmax)."""

    @staticmethod
    def make(model: Any) -> Any:
        import torch
        from torch import nn

        class M(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.m = model

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.softmax(self.m(x), dim=-1)

        return M()


# ----------------------------------------------------------------------------- data


def encode(text: str) -> list[int]:
    """Plate text -> class indices (1-based; 0 is the CTC blank)."""
    try:
        return [_CHAR_INDEX[c] for c in text]
    except KeyError as exc:
        raise ValueError(f"plate text {text!r} has a character outside the charset: {exc}") from None


def names_metadata() -> dict[int, str]:
    return {0: BLANK, **{i + 1: c for i, c in enumerate(CHARSET)}}


class _Pool:
    """In-memory samples (image, text, two_row) for one data source."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.images: list[np.ndarray] = []
        self.texts: list[str] = []
        self.two_row: list[bool] = []
        self.manifest: list[str] = []

    def add(self, img: np.ndarray, text: str, two_row: bool, ident: str) -> None:
        self.images.append(img)
        self.texts.append(text)
        self.two_row.append(two_row)
        self.manifest.append(f"{self.name},{ident},{text}")

    def __len__(self) -> int:
        return len(self.images)


def _load_real(root: Path, parts: str, limit: int | None = None) -> _Pool:
    pool = _Pool(f"{REAL_CROPS}:{parts}")
    for p, t in REAL_SPLIT.files(root / REAL_CROPS, parts)[:limit]:
        pool.add(imread(p), t, False, p.name)
    return pool


class _SynthSource:
    """Rendered crops from a labels.csv (file,plate,kind,split) that may still be growing.

    A renderer writing `labels.partial.csv` row by row lets training start before the
    whole set exists; `refresh()` (called every epoch) adds the rows written since.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.train = _Pool(f"synth:{folder.name}")
        self.val = _Pool(f"synth-val:{folder.name}")
        self._rows_seen = 0

    def refresh(self) -> int:
        import csv

        labels = self.folder / "labels.csv"
        if not labels.is_file():
            labels = self.folder / "labels.partial.csv"
        if not labels.is_file():
            raise FileNotFoundError(f"no labels.csv in {self.folder}")
        with labels.open(encoding="utf-8", newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("split") and r.get("kind")]
        added = 0
        for row in rows[self._rows_seen :]:
            try:
                img = imread(self.folder / row["file"])
            except (ValueError, OSError):
                break  # the renderer is still writing this one
            pool = self.val if row["split"] == "val" else self.train
            pool.add(img, row["plate"], row["kind"] in _TWO_ROW_KINDS, row["file"])
            self._rows_seen += 1
            added += 1
        return added


def _render_synth(folder: Path, n: int, seed: int) -> Path:
    """Render `n` degraded plate crops with models/synth/plates.py (cached by folder)."""
    from models.synth.plates import write_plate_text_dataset

    labels = folder / "labels.csv"
    if labels.is_file():
        return folder
    log.info("rendering %d synthetic plates (seed %d) into %s", n, seed, folder)
    write_plate_text_dataset(folder, n, seed)
    return folder


def _make_batch(pools: list[tuple[_Pool, float]], aug: dict[str, Augmenter], rng: np.random.Generator,
                n: int, size: tuple[int, int] = INPUT_SIZE,
                province_swap: float = 0.0) -> tuple[np.ndarray, list[str]]:
    """One batch drawn from the pools by weight; `province_swap` is the chance that a real
    crop gets another province glyph painted in (models/synth/province_swap.py)."""
    weights = np.array([w for _, w in pools], np.float64)
    src = rng.choice(len(pools), size=n, p=weights / weights.sum())
    xs, texts = [], []
    for s in src:
        pool = pools[int(s)][0]
        i = int(rng.integers(len(pool)))
        img, text = pool.images[i], pool.texts[i]
        if province_swap > 0 and pool.name.startswith(REAL_CROPS) and not pool.two_row[i] \
                and rng.random() < province_swap:
            swapped = swap_province(img, text, rng)
            if swapped is not None:
                img, text = swapped
        xs.append(preprocess_plate(aug[pool.name](img), size, pool.two_row[i]))
        texts.append(text)
    return np.stack(xs), texts


def _decode_logits(logits: Any) -> list[str]:
    from edge.detectors.plate_reader import ctc_greedy_decode

    probs = logits.softmax(-1).detach().numpy()
    charset = [BLANK, *CHARSET]
    return [ctc_greedy_decode(p, charset).text for p in probs]


def _accuracy(model: Any, pool: _Pool, limit: int = 2000) -> float:
    import torch

    if len(pool) == 0:
        return float("nan")
    model.eval()
    ok = 0
    n = min(limit, len(pool))
    with torch.no_grad():
        for i in range(0, n, 128):
            idx = range(i, min(n, i + 128))
            x = np.stack([preprocess_plate(pool.images[j], model.input_size, pool.two_row[j]) for j in idx])
            preds = _decode_logits(model(torch.from_numpy(x)))
            ok += sum(p == pool.texts[j] for p, j in zip(preds, idx, strict=True))
    model.train()
    return ok / n


def export_onnx(model: Any, path: Path, *, data_hash: str, extra: dict[str, str] | None = None) -> Path:
    """Export with a dynamic batch axis and the roadeye metadata (CONTRACTS.md)."""
    import onnx
    import torch

    model.eval()
    wrapped = _Softmaxed.make(model).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    size = tuple(getattr(model, "input_size", INPUT_SIZE))
    dummy = torch.zeros(2, 3, *size)
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated but handles the LSTM with a dynamic batch
        # (verified: batch 1 and 32 run); its LSTM batch-size warning does not apply since
        # the initial states are zeros created inside the graph.
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning, torch.jit.TracerWarning))
        torch.onnx.export(wrapped, (dummy,), str(tmp), input_names=["images"], output_names=["probs"],
                          dynamic_axes={"images": {0: "batch"}, "probs": {0: "batch"}}, opset_version=17,
                          dynamo=False)
    m = onnx.load(str(tmp))
    meta = {
        "names": json.dumps({str(k): v for k, v in names_metadata().items()}, ensure_ascii=False),
        "imgsz": json.dumps(list(size)),
        "version": ARCH_VERSION.get(getattr(model, "arch", "base"), MODEL_VERSION),
        "arch": getattr(model, "arch", "base"),
        "task": "plate_ocr_ctc",
        "data_hash": data_hash,
        "roadeye_model": "plate_reader",
        "blank": "0",
        "input": "BGR uint8 values as float32 NCHW, 0..255; two-row plates split into one row "
                 "(edge.detectors.plate_reader.preprocess_plate)",
        "output": "probs [N, T, C] softmax per timestep; greedy CTC decode, blank = 0",
        **(extra or {}),
    }
    del m.metadata_props[:]
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    tmp.unlink(missing_ok=True)
    model.train()
    return path


def _manifest_hash(pools: list[tuple[_Pool, float]], out_dir: Path) -> str:
    """Write train_manifest.txt (source,file,text per training sample) and return its sha256."""
    manifest = "\n".join(sorted(line for p, _ in pools for line in p.manifest)) + "\n"
    (out_dir / "train_manifest.txt").write_text(manifest, encoding="utf-8")
    return hashlib.sha256(manifest.encode("utf-8")).hexdigest()


def _check_transferable(init: Path, src: str, arch: str) -> None:
    """An init checkpoint must have the layers of `arch`; only the input size may differ
    (e.g. `wide` -> `wide48`: the same weights see each glyph at 1.5x the pixels)."""
    a, b = ARCHS.get(src), ARCHS[arch]
    if a is None or (a.widths, a.proj, a.lstm_hidden, a.lstm_layers) != (b.widths, b.proj, b.lstm_hidden,
                                                                         b.lstm_layers):
        raise ValueError(f"--init {init} holds arch {src!r}, not {arch!r} (nor one with the same layers)")


def train(out_dir: Path, *, epochs: int, seed: int = 0, datasets_root: Path | None, synth_n: int,
          quick: bool = False, synth_dir: Path | list[Path] | None = None, holdout_val: bool = False,
          threads: int = 1, steps_per_epoch: int | None = None, init: Path | None = None,
          lr: float = 2e-3, real_share: float = REAL_SHARE, stop_after: int | None = None,
          arch: str = "base", export_every: int = 5, reschedule: bool = False,
          province_swap: float = 0.0) -> Path:
    """Train the CRNN on the trainable 70% of plates-cn-crops + rendered plates; export ONNX.

    Checkpoints every epoch to out_dir/last.pt and resumes from it when present (same
    epochs / seed). `quick` is a tiny CI run (a few steps, a few hundred renders) that
    proves the pipeline end to end in well under a minute. `holdout_val` keeps the 10%
    monitoring part of the real split out of training (development runs). `synth_dir`
    takes one or more pre-rendered folders instead of rendering `synth_n` crops; `init`
    starts from the weights of an earlier checkpoint / last.pt (fine-tuning, fresh schedule);
    `stop_after` ends the run after that many epochs of the `epochs`-long schedule.
    `arch` picks the network (ARCHS; "base" is the released 1.0 recipe); `export_every`
    writes plate_reader_eNNN.onnx every that many epochs (and at the end). `reschedule` resumes
    a run whose checkpoint was made for another `epochs` (e.g. to end a CPU-bound run sooner):
    weights, optimiser and RNG continue, the one-cycle LR follows the new length from here.
    `province_swap` is the chance a real crop is drawn with another province glyph painted in
    (the real crops are 96% 皖; models/synth/province_swap.py).
    Returns the path of the exported ONNX file (out_dir/plate_reader.onnx).
    """
    import torch

    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHS)}")
    if export_every < 1:
        raise ValueError(f"export_every must be >= 1, got {export_every}")
    if not 0.0 <= province_swap <= 1.0:
        raise ValueError(f"province_swap must be in [0, 1], got {province_swap}")
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    root = _datasets_root(datasets_root)
    steps = steps_per_epoch or (6 if quick else STEPS_PER_EPOCH)
    batch = 16 if quick else BATCH

    # ---- data
    pools: list[tuple[_Pool, float]] = []
    real_root = root / REAL_CROPS
    real_val = _Pool("none")
    if real_root.is_dir():
        real = _load_real(root, "train" if holdout_val else "trainable", limit=64 if quick else None)
        pools.append((real, real_share))
        if holdout_val:
            real_val = _load_real(root, "val")
        log.info("real crops: %d training (%s)", len(real), real.name)
    else:
        log.warning("%s not found: training on rendered plates only", real_root)
    synths: list[_SynthSource] = []
    if synth_n > 0 or synth_dir is not None:
        if isinstance(synth_dir, list | tuple):
            folders = [Path(f) for f in synth_dir]
        elif synth_dir is not None:
            folders = [Path(synth_dir)]
        else:
            folders = [_render_synth(out_dir / f"synth_s{seed + 1000}_n{synth_n}", synth_n, seed + 1000)]
        for folder in folders:
            src = _SynthSource(folder)
            src.refresh()
            synths.append(src)
            pools.append((src.train, 0.0))
            log.info("synthetic crops: %d training, %d val (%s)", len(src.train), len(src.val), folder)
    if not pools:
        raise ValueError(f"no training data: {real_root} is missing and synth_n is 0")
    synth = synths[0] if synths else None
    n_real_pools = len(pools) - len(synths)

    def reweight() -> None:
        """Real crops get `real_share`; rendered sets split the rest by size (a still-small,
        growing set is not oversampled: full share only from 8000 crops on)."""
        total_synth = sum(len(s.train) for s in synths)
        share = (1.0 - real_share) if n_real_pools else 1.0
        scale = share * (min(1.0, total_synth / 8000) if n_real_pools else 1.0)
        for k, s in enumerate(synths):
            pools[n_real_pools + k] = (s.train, scale * len(s.train) / max(total_synth, 1))

    reweight()
    # resume key: what the run was configured with (a growing synthetic set keeps its key)
    real_lines = [line for p, _ in pools if p.name.startswith(REAL_CROPS) for line in p.manifest]
    run_key = hashlib.sha256("\n".join([*real_lines, str(synth_n), *(str(x.folder) for x in synths),
                                         str(seed), *([] if arch == "base" else [arch]),
                                         *([f"swap={province_swap}"] if province_swap else [])]).encode()
                             ).hexdigest()

    rng = np.random.default_rng(seed)
    aug = {p.name: Augmenter(rng, strength=1.0 if p.name.startswith(REAL_CROPS) else 0.6) for p, _ in pools}

    # ---- model / optimiser / resume
    model = build_model(arch=arch)
    size = ARCHS[arch].input_size
    if init is not None and Path(init).suffix == ".onnx":  # a released file: its weights, rebuilt
        from models.train.plate_reader_onnx_init import model_from_onnx, onnx_arch

        src_arch = onnx_arch(Path(init))
        _check_transferable(init, src_arch, arch)
        calib = np.stack([preprocess_plate(p.images[i], ARCHS[src_arch].input_size, p.two_row[i])
                          for p, _ in pools for i in range(min(len(p), 128))])
        rebuilt, info = model_from_onnx(Path(init), calib)
        model.load_state_dict(rebuilt.state_dict())
        log.info("initialised from %s (%s; max prob diff vs the ONNX file %.1e)", init, src_arch,
                 info["max_prob_diff_vs_onnx"])
    elif init is not None:
        init_state = torch.load(init, map_location="cpu", weights_only=False)
        _check_transferable(init, init_state.get("arch", "base"), arch)
        model.load_state_dict(init_state["model"])
        log.info("initialised from %s", init)
    total = epochs * steps
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total, 1),
                                                pct_start=0.1 if not quick else 0.3)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    start_epoch = 0
    ckpt = out_dir / "last.pt"
    history: list[dict[str, float]] = []
    if ckpt.is_file() and not quick:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        same_len = state.get("epochs") == epochs
        if state.get("run_key") == run_key and (same_len or (reschedule and int(state["epoch"]) + 1 < epochs)):
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            if same_len:
                sched.load_state_dict(state["sched"])
            else:  # same run, new length: the one-cycle LR continues on the new curve
                done = (int(state["epoch"]) + 1) * steps
                sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total, 1),
                                                            pct_start=0.1, last_epoch=done - 1)
                log.info("rescheduled %s from %s to %d epochs (lr now %.2e)", ckpt, state.get("epochs"), epochs,
                         sched.get_last_lr()[0])
            rng.bit_generator.state = state["rng"]
            torch.set_rng_state(state["torch_rng"])
            start_epoch = int(state["epoch"]) + 1
            history = list(state.get("history", []))
            for src in synths:
                src.refresh()
            reweight()
            log.info("resumed from %s at epoch %d", ckpt, start_epoch)
        else:
            log.warning("ignoring %s: made for another schedule or training set", ckpt)

    model.train()
    for epoch in range(start_epoch, min(epochs, stop_after or epochs)):
        t0 = time.time()
        if epoch > start_epoch:
            for src in synths:
                src.refresh()
            reweight()
        losses = []
        for _ in range(steps):
            x, texts = _make_batch(pools, aug, rng, batch, size, province_swap)
            targets = torch.tensor([i for t in texts for i in encode(t)], dtype=torch.long)
            tlen = torch.tensor([len(t) for t in texts], dtype=torch.long)
            logits = model(torch.from_numpy(x))
            lp = logits.log_softmax(-1).transpose(0, 1)  # [T, N, C]
            ilen = torch.full((lp.shape[1],), lp.shape[0], dtype=torch.long)
            loss = ctc(lp, targets, ilen, tlen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        rec = {"epoch": epoch, "loss": float(np.mean(losses)), "sec": time.time() - t0,
               "lr": float(sched.get_last_lr()[0])}
        if not quick:
            rec["real_val_exact"] = _accuracy(model, real_val)
            rec["synth_val_exact"] = _accuracy(model, synth.val, 1000) if synth else float("nan")
            rec["synth_train_n"] = sum(len(x.train) for x in synths)
        history.append(rec)
        log.info("epoch %d/%d %s", epoch + 1, epochs, json.dumps(rec))
        print(json.dumps(rec), flush=True)
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "epoch": epoch,
                    "epochs": epochs, "run_key": run_key, "history": history, "arch": arch}, ckpt)
        if not quick and ((epoch + 1) % export_every == 0 or epoch == epochs - 1 or epoch + 1 == stop_after):
            export_onnx(model, out_dir / f"plate_reader_e{epoch + 1:03d}.onnx",
                        data_hash=_manifest_hash(pools, out_dir), extra={"epochs": str(epoch + 1), "seed": str(seed)})
    (out_dir / "history.json").write_text(json.dumps(history, indent=1), encoding="utf-8")
    data_hash = _manifest_hash(pools, out_dir)
    return export_onnx(model, out_dir / "plate_reader.onnx", data_hash=data_hash,
                       extra={"epochs": str(epochs), "seed": str(seed), "synth_n": str(synth_n),
                              "real_train": str(sum(len(p) for p, _ in pools if p.name.startswith(REAL_CROPS)))})


# ----------------------------------------------------------------------------- evaluation


def _levenshtein_ops(a: str, b: str) -> tuple[int, list[tuple[str, str]]]:
    """Edit distance a -> b and the (true, predicted) pairs of its substitutions/indels."""
    n, m = len(a), len(b)
    d = np.zeros((n + 1, m + 1), np.int32)
    d[:, 0] = np.arange(n + 1)
    d[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (a[i - 1] != b[j - 1]))
    ops: list[tuple[str, str]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and d[i, j] == d[i - 1, j - 1] + (a[i - 1] != b[j - 1]):
            if a[i - 1] != b[j - 1]:
                ops.append((a[i - 1], b[j - 1]))
            i, j = i - 1, j - 1
        elif i > 0 and d[i, j] == d[i - 1, j] + 1:
            ops.append((a[i - 1], ""))
            i -= 1
        else:
            ops.append(("", b[j - 1]))
            j -= 1
    return int(d[n, m]), ops


def score_reads(truth: list[str], preds: list[str]) -> dict[str, Any]:
    """Exact match, per-position accuracy, CER and top confusions of plate reads."""
    n = len(truth)
    if n == 0:
        raise ValueError("no samples to score")
    maxlen = max(len(t) for t in truth)
    pos_ok = [0] * maxlen
    pos_n = [0] * maxlen
    cers = []
    conf: Counter[tuple[str, str]] = Counter()
    for t, p in zip(truth, preds, strict=True):
        for i, c in enumerate(t):
            pos_n[i] += 1
            pos_ok[i] += int(i < len(p) and p[i] == c)
        dist, ops = _levenshtein_ops(t, p)
        cers.append(dist / max(len(t), 1))
        conf.update(ops)
    return {
        "n": n,
        "exact_match": sum(t == p for t, p in zip(truth, preds, strict=True)) / n,
        "per_position_char_accuracy": [round(o / k, 4) for o, k in zip(pos_ok, pos_n, strict=True)],
        "char_accuracy": round(sum(pos_ok) / sum(pos_n), 4),
        "mean_cer": round(float(np.mean(cers)), 4),
        "length_correct": sum(len(t) == len(p) for t, p in zip(truth, preds, strict=True)) / n,
        "format_valid": sum(plate_text_valid(p) for p in preds) / n,
        "confusions_top10": [{"true": a or "∅", "pred": b or "∅", "count": c} for (a, b), c in
                             conf.most_common(10)],
    }


def _timing(reader: OnnxPlateReader, crops: list[np.ndarray], batch: int = 32) -> dict[str, float]:
    sample = crops[: min(len(crops), 200)]
    t = time.perf_counter()
    for c in sample:
        reader.read_batch([c])
    b1 = (time.perf_counter() - t) / len(sample) * 1000
    t = time.perf_counter()
    for i in range(0, len(crops), batch):
        reader.read_batch(crops[i : i + batch])
    bn = (time.perf_counter() - t) / len(crops) * 1000
    return {"ms_per_plate_batch1": round(b1, 3), f"ms_per_plate_batch{batch}": round(bn, 3)}


def load_eval_set(data: Path, part: str = "test") -> tuple[list[np.ndarray], list[str], str]:
    """Crops, texts and a description for any supported eval folder.

    plates-cn-crops (native): its fixed held-back split `part` (default the 30% test part);
    plates-cn-scenes (CCPD corners in labels.csv): each plate's quad rectified to a crop;
    otherwise a folder of crops named by their text or with labels.csv (file,plate).
    """
    data = Path(data)
    if not data.is_dir():
        raise FileNotFoundError(f"evaluation data folder not found: {data}")
    if is_scenes(data):
        crops, texts = [], []
        for img_path, text, quad in scene_quads(data):
            crops.append(rectify_quad(imread(img_path), quad))
            texts.append(text)
        return crops, texts, f"{data.name}: plate quads from labelled corners, rectified"
    if is_real_crops(data):
        pairs = REAL_SPLIT.files(data, part)
        desc = f"{data.name}: fixed REAL_SPLIT part '{part}' ({REAL_SPLIT.test_fraction:.0%} test held back)"
    else:
        pairs = read_crop_labels(data)
        desc = f"{data.name}: all labelled crops"
    return [imread(p) for p, _ in pairs], [t for _, t in pairs], desc


def evaluate(onnx_path: Path, data: Path, *, part: str = "test",
             providers: list[str | tuple[str, dict[str, str]]] | None = None,
             errors: int = 20) -> dict[str, Any]:
    """Metrics of the exported model on `data`, through onnxruntime only (no torch)."""
    crops, texts, desc = load_eval_set(Path(data), part)
    reader = OnnxPlateReader(onnx_path, providers)
    reads = []
    for i in range(0, len(crops), 32):
        reads.extend(reader.read_batch(crops[i : i + 32]))
    preds = [r.text for r in reads]
    out: dict[str, Any] = {"model": str(onnx_path), "data": str(data), "set": desc,
                           "provider": reader.provider}
    out.update(score_reads(texts, preds))
    out["mean_confidence_correct"] = _mean([r.confidence for r, t in zip(reads, texts, strict=True)
                                            if r.text == t])
    out["mean_confidence_wrong"] = _mean([r.confidence for r, t in zip(reads, texts, strict=True)
                                          if r.text != t])
    out["two_row_or_ambiguous_crops"] = sum(crop_layouts(c) != (False,) for c in crops)
    out.update(_timing(reader, crops))
    out["errors"] = [{"true": t, "pred": r.text, "confidence": round(r.confidence, 3)}
                     for r, t in zip(reads, texts, strict=True) if r.text != t][:errors]
    return out


def _mean(v: list[float]) -> float | None:
    return round(float(np.mean(v)), 4) if v else None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train + export ONNX")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--datasets", type=Path, default=None)
    t.add_argument("--synth-n", type=int, default=30000)
    t.add_argument("--synth-dir", type=Path, action="append", default=None,
                   help="pre-rendered folder(s) (labels.csv file,plate,kind,split); repeatable")
    t.add_argument("--init", type=Path, default=None,
                   help="start from these weights: a checkpoint (.pt) or a released plate_reader .onnx")
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--stop-after", type=int, default=None, help="stop after N epochs of the schedule")
    t.add_argument("--real-share", type=float, default=REAL_SHARE, help="share of real crops per batch")
    t.add_argument("--holdout-val", action="store_true")
    t.add_argument("--quick", action="store_true")
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--arch", choices=sorted(ARCHS), default="base",
                   help="network: base = released 1.0 CRNN (32x96, 410k params); wide = 2x conv widths + "
                        "2-layer BiLSTM 128 (32x96); wide48 = wide at 48x144")
    t.add_argument("--export-every", type=int, default=5, help="export plate_reader_eNNN.onnx every N epochs")
    t.add_argument("--reschedule", action="store_true",
                   help="resume last.pt even if it was made for another --epochs (LR follows the new length)")
    t.add_argument("--steps-per-epoch", type=int, default=None, help=f"default {STEPS_PER_EPOCH}")
    t.add_argument("--province-swap", type=float, default=0.0,
                   help="chance (0-1) that a real crop gets another province glyph painted in")
    e = sub.add_parser("eval", help="evaluate an ONNX file (onnxruntime), print JSON")
    e.add_argument("onnx", type=Path)
    e.add_argument("data", type=Path)
    e.add_argument("--part", default="test")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if a.cmd == "train":
        p = train(a.out, epochs=a.epochs, seed=a.seed, datasets_root=a.datasets, synth_n=a.synth_n,
                  quick=a.quick, synth_dir=a.synth_dir, holdout_val=a.holdout_val, threads=a.threads,
                  steps_per_epoch=a.steps_per_epoch, init=a.init, lr=a.lr, real_share=a.real_share,
                  stop_after=a.stop_after, arch=a.arch, export_every=a.export_every,
                  reschedule=a.reschedule, province_swap=a.province_swap)
        print(p)
    else:
        print(json.dumps(evaluate(a.onnx, a.data, part=a.part), ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
