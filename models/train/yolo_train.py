"""Train a roadeye YOLO detector with ultralytics, export it to ONNX and stamp its metadata.

Why a wrapper: training must be reproducible from one command (recipe yaml + renders + the
trainable real sets, with a data hash), resumable on a shared 2-core CPU, and end in an ONNX
file the edge runtime (edge.detectors.yolo) can use without torch.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import onnx
import yaml

from models.train.common import MODELS_DIR, Recipe, datasets_root, setup_ultralytics
from models.train.data import (
    add_real_set,
    add_yolo_split,
    list_images,
    manifest_hash,
    split_dirs,
    write_data_yaml,
)

log = logging.getLogger(__name__)

ONNX_OPSET = 17  # onnxruntime >= 1.14 and TensorRT 8.6+ run it; newer opsets buy nothing here


@dataclass
class PreparedData:
    data_yaml: Path
    data_hash: str
    counts: dict[str, int] = field(default_factory=dict)


def prepare_dataset(recipe: Recipe, out: Path, synth_yaml: Path | None, *, use_real: bool = True,
                    real_root: Path | None = None, synth_limit: int | None = None) -> PreparedData:
    """Build `out` as one YOLO dataset: renders (train/val) + the recipe's trainable real sets."""
    if out.exists():
        shutil.rmtree(out)
    for sub in ("images/train", "labels/train", "images/val", "labels/val"):
        (out / sub).mkdir(parents=True)
    counts: dict[str, int] = {}
    if synth_yaml is not None:
        counts["synth_train"] = add_yolo_split(synth_yaml, "train", out, "train", "synth", recipe.classes,
                                               limit=synth_limit)
        counts["synth_val"] = add_yolo_split(synth_yaml, "val", out, "val", "synthval", recipe.classes,
                                             limit=200)
    if use_real:
        for i, rs in enumerate(recipe.real):
            counts[f"real_{rs.dataset}"] = add_real_set(recipe, i, out, real_root or datasets_root())
    train_imgs = list_images(out / "images" / "train")
    if not train_imgs:
        raise ValueError(f"no training images for {recipe.name}: give --data or allow the real sets")
    if not list_images(out / "images" / "val"):
        # nothing held out to validate on: monitor on a few training images (we export last.pt,
        # so this never selects the model)
        for img in train_imgs[:16]:
            (out / "images" / "val" / img.name).symlink_to(img.resolve())
            shutil.copy(out / "labels" / "train" / f"{img.stem}.txt", out / "labels" / "val")
        counts["val_from_train"] = min(16, len(train_imgs))
    data_yaml = write_data_yaml(out, recipe.classes)
    return PreparedData(data_yaml, manifest_hash(out), counts)


def resolve_data_yaml(data: Path) -> Path:
    """`--data` may be a data.yaml or a folder holding one."""
    data = data.expanduser().resolve()
    path = data / "data.yaml" if data.is_dir() else data
    if not path.is_file():
        raise FileNotFoundError(f"--data {data}: no data.yaml there")
    if not split_dirs(path, "train"):
        raise ValueError(f"{path}: has no 'train' split")
    return path


def stamp_metadata(path: Path, *, name: str, names: dict[int, str], imgsz: tuple[int, int], version: str,
                   data_hash: str, task: str = "detect", extra: dict[str, str] | None = None) -> None:
    """Write roadeye's metadata_props (CONTRACTS.md): names (JSON), imgsz, version, task, data_hash."""
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    props.update({
        "names": json.dumps({str(k): v for k, v in names.items()}, ensure_ascii=False),
        "imgsz": json.dumps(list(imgsz)),
        "version": version,
        "task": task,
        "data_hash": data_hash,
        "roadeye_model": name,
        **(extra or {}),
    })
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.save(model, str(path))


def export_onnx(weights: Path, dest: Path, *, name: str, names: dict[int, str], imgsz: tuple[int, int],
                data_hash: str,
                version: str | None = None, extra: dict[str, str] | None = None) -> Path:
    """Export ultralytics weights to an NMS-free ONNX ([B, 300, 6], dynamic batch) at `dest`."""
    setup_ultralytics()
    from ultralytics import YOLO

    model = YOLO(str(weights))
    out = Path(model.export(format="onnx", imgsz=list(imgsz), dynamic=True, nms=False, opset=ONNX_OPSET,
                            simplify=True, device="cpu", verbose=False))
    dest.parent.mkdir(parents=True, exist_ok=True)
    if out.resolve() != dest.resolve():
        shutil.copy(out, dest)
    version = version or datetime.now(UTC).strftime("%Y.%m.%d.%H%M")
    stamp_metadata(dest, name=name, names=names, imgsz=imgsz, version=version,
                   data_hash=data_hash, extra=extra)
    return dest


@dataclass
class TrainArgs:
    epochs: int
    imgsz: int
    batch: int
    input_hw: tuple[int, int] | None = None
    workers: int = 0
    hours: float | None = None
    init: str | None = None
    device: str = "cpu"
    seed: int = 0
    cache: str | bool = "ram"
    lr0: float | None = None  # overrides the recipe's lr0 (e.g. a gentler restart of a continued run)
    freeze_bn: bool = False  # BatchNorm statistics kept as loaded (eval mode) while the weights train
    square: bool = False  # square letterboxed, shuffled batches instead of the recipe's rect (unshuffled) ones


def freeze_batchnorm(trainer: Any) -> None:
    """on_train_batch_start callback: every BatchNorm back to eval mode (its running statistics fixed).

    A model rebuilt from an ONNX export carries BatchNorm statistics re-estimated on a few images; in
    train mode its batch statistics differ from them by up to 130% in the plates neck, and a continued
    run fell from val mAP50 0.86 to 0.66 in two epochs. With the statistics fixed, training sees the
    network it evaluates. ultralytics sets model.train() at every epoch start, so this runs per batch."""
    import torch.nn as nn

    for m in trainer.model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            m.eval()


def train_yolo(recipe: Recipe, out_dir: Path, prepared: PreparedData | None, args: TrainArgs, *,
               resume: bool = False, install: bool = True) -> dict[str, Any]:
    """Train (or resume) in `out_dir/run`, export last.pt to ONNX, optionally copy into models/."""
    setup_ultralytics()
    from ultralytics import YOLO

    out_dir = out_dir.resolve()
    info_path = out_dir / "train_info.json"
    run = out_dir / "run"
    last = run / "weights" / "last.pt"
    t0 = time.time()
    if resume:
        if not last.is_file() or not info_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {last}")
        info = json.loads(info_path.read_text())
        if _finished(last):  # ultralytics would start a fresh default run instead of resuming
            log.warning("%s is a finished run: nothing to resume, exporting it", last)
        else:
            model = YOLO(str(last))
            if info["args"].get("freeze_bn"):
                model.add_callback("on_train_batch_start", freeze_batchnorm)
            model.train(resume=True)
    else:
        if prepared is None:
            raise ValueError("a prepared dataset is needed unless resuming")
        info = {"model": recipe.name, "recipe": recipe.model_dump(), "args": asdict(args),
                "data_yaml": str(prepared.data_yaml), "data_hash": prepared.data_hash,
                "counts": prepared.counts, "started": datetime.now(UTC).isoformat(timespec="seconds")}
        out_dir.mkdir(parents=True, exist_ok=True)
        info_path.write_text(json.dumps(info, indent=2))
        # --init: start from our own earlier checkpoint (never a download). Build the model FROM it:
        # YOLO(yaml).load(ckpt) builds an 80-class head first, so the class-score convolutions
        # (12 tensors) would not transfer and the continued run would restart its classifier.
        init = args.init
        if init and init.endswith(".onnx"):
            init = str(_checkpoint_from_onnx(recipe, Path(init), prepared, out_dir))
            info["init_from_onnx"] = args.init
            info_path.write_text(json.dumps(info, indent=2))
        model = YOLO(init) if init else YOLO(recipe.architecture)
        if args.init:
            _check_init(model, str(init), recipe)
        kwargs: dict[str, Any] = dict(
            data=str(prepared.data_yaml), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch,
            workers=args.workers, device=args.device, project=str(out_dir), name="run", exist_ok=True,
            # pretrained=False would make ultralytics rebuild the model with random weights even when it
            # was loaded from --init; True reuses the already-loaded local checkpoint (no download)
            pretrained=bool(args.init), cache=args.cache, amp=False, plots=False, seed=args.seed, deterministic=False,
            patience=max(args.epochs + 1, 100), verbose=False,
        )
        if args.hours:
            kwargs["time"] = args.hours
        kwargs.update(recipe.augment)
        if args.square:
            # ultralytics never shuffles rect batches: they come in aspect-ratio order every epoch, so a
            # mix of sources arrives source by source (a continued plates run lost every detection so)
            kwargs["rect"] = False
        if args.lr0 is not None:
            kwargs["lr0"] = args.lr0
        if args.init:
            # the default bias warm-up (lr 0.1 falling to lr0) is for random weights; with AdamW it would
            # shove every bias of an already trained model by ~0.1 per step in the first iterations
            kwargs["warmup_bias_lr"] = 0.0
            kwargs.update(continued_optimizer(kwargs))
        if args.freeze_bn:
            model.add_callback("on_train_batch_start", freeze_batchnorm)
        model.train(**kwargs)
    if not last.is_file():
        raise RuntimeError(f"training finished without a checkpoint at {last}")
    dest = (MODELS_DIR if install else out_dir) / f"{recipe.name}.onnx"
    ckpt = _checkpoint_summary(last)
    hw = info["args"].get("input_hw") or (info["args"]["imgsz"], info["args"]["imgsz"])
    export_onnx(last, dest, name=recipe.name, names=recipe.names, imgsz=(int(hw[0]), int(hw[1])),
                data_hash=info["data_hash"],
                extra={"epochs": str(ckpt.get("epoch", "")), "architecture": recipe.architecture,
                       "train_images": str(sum(v for k, v in info["counts"].items()
                                               if k != "synth_val" and k != "val_from_train"))})
    info.update({"onnx": str(dest), "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                 "train_seconds_this_call": round(time.time() - t0, 1), "checkpoint": ckpt})
    info_path.write_text(json.dumps(info, indent=2))
    return info


def _checkpoint_from_onnx(recipe: Recipe, onnx_path: Path, prepared: PreparedData, out_dir: Path,
                          n_calib: int = 64) -> Path:
    """--init with a committed ONNX export: rebuild its .pt (BN statistics from training images)."""
    from models.train.onnx_init import checkpoint_from_onnx

    data = yaml.safe_load(prepared.data_yaml.read_text())
    train = data["train"] if isinstance(data["train"], list) else [data["train"]]
    base = Path(data.get("path") or prepared.data_yaml.parent)
    images = sorted(p for t in train for p in list_images((base / t) if not Path(t).is_absolute() else Path(t)))
    if not images:
        raise ValueError(f"--init {onnx_path}: no training images to calibrate BatchNorm statistics")
    step = max(1, len(images) // n_calib)  # spread over the whole set, deterministic
    dest = out_dir / f"init_from_{onnx_path.stem}.pt"
    checkpoint_from_onnx(onnx_path, recipe.architecture, recipe.names, images[::step][:n_calib], dest)
    return dest


def _check_init(model: Any, init: str, recipe: Recipe) -> None:
    """An --init checkpoint must have the recipe's classes, in order (its head is reused as is)."""
    names = getattr(model, "names", None) or {}
    have = [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)
    if have != recipe.classes:
        raise ValueError(f"--init {init}: checkpoint classes {have} differ from recipe {recipe.name!r} "
                         f"classes {recipe.classes}")


def continued_optimizer(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Optimizer settings for a run that continues trained weights (--init).

    ultralytics' optimizer 'auto' ignores lr0 and, past 10k iterations, picks MuSGD at lr 0.01:
    that wiped a continued plates run in its first epoch (val mAP50 -> 0.0). A continued run
    gets AdamW at the recipe's (or --lr's) lr0, 1e-3 when neither sets one."""
    if kwargs.get("optimizer", "auto") != "auto":
        return {}
    log.info("--init: optimizer 'auto' replaced by AdamW (lr0 %s)", kwargs.get("lr0", 1e-3))
    return {"optimizer": "AdamW", "lr0": kwargs.get("lr0", 1e-3)}


def _finished(last: Path) -> bool:
    """ultralytics strips the optimizer and sets epoch -1 when a run completes."""
    import torch

    ck = torch.load(str(last), map_location="cpu", weights_only=False)
    return ck.get("optimizer") is None or int(ck.get("epoch", -1)) == -1


def _checkpoint_summary(last: Path) -> dict[str, Any]:
    """Epochs completed and the last validation row, from ultralytics' results.csv (for the card)."""
    import csv

    results = last.parent.parent / "results.csv"
    if not results.is_file():
        return {"epoch": 0, "val_metrics": {}}
    with results.open(newline="") as fh:
        rows = [{k.strip(): v.strip() for k, v in r.items() if k} for r in csv.DictReader(fh)]
    if not rows:
        return {"epoch": 0, "val_metrics": {}}
    lastrow = rows[-1]
    metrics = {k: round(float(v), 4) for k, v in lastrow.items() if k.startswith("metrics/") and v}
    return {"epoch": int(float(lastrow.get("epoch", len(rows)))), "val_metrics": metrics,
            "train_seconds_total": round(float(lastrow.get("time", 0) or 0), 1)}
