"""`roadeye models train | eval | info`: the reproducible model pipeline.

train: renders data (unless --data), adds the recipe's trainable real sets, trains with
ultralytics from models/configs/<name>.yaml (from scratch), exports ONNX with metadata into
models/. eval: metrics through onnxruntime on the exported file, printed as JSON.
Heavy imports (torch, ultralytics) happen inside the commands, so --help stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from models.train.common import ALL_MODELS, MODELS_DIR, REPO, YOLO_MODELS, datasets_root, load_recipe
from models.train.quantize import CALIBRATION_METHODS


def _render(name: str, n: int, seed: int, out: Path) -> Path:
    """Render a training set with the project renderer (`roadeye models render dataset`)."""
    try:
        from models.synth.cli import render
    except ImportError as exc:
        raise click.ClickException(f"the renderer (models.synth) is unavailable ({exc}); pass --data") from exc
    args = ["dataset", "--model", name, "--n", str(n), "--seed", str(seed), "--out", str(out)]
    click.echo(f"rendering {n} {name} images (seed {seed}) into {out}", err=True)
    try:
        render.main(args=args, standalone_mode=False)
    except click.ClickException:
        raise
    except Exception as exc:
        raise click.ClickException(f"rendering failed: {exc}") from exc
    data_yaml = out / "data.yaml"
    if not data_yaml.is_file():
        raise click.ClickException(f"renderer wrote no {data_yaml}")
    return data_yaml


@click.command("train")
@click.argument("name", type=click.Choice(ALL_MODELS))
@click.option("--epochs", type=click.IntRange(1), default=None, help="Epochs (default: the recipe's).")
@click.option("--imgsz", type=click.IntRange(32, 1920), default=None, help="Input size (default: recipe).")
@click.option("--input-hw", default=None, metavar="HxW",
              help="ONNX input size, e.g. 192x384 (default: recipe's input_hw, else IMGSZxIMGSZ).")
@click.option("--batch", type=click.IntRange(1), default=None, help="Batch size (default: recipe).")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="YOLO data.yaml (or folder) to train on instead of fresh renders.")
@click.option("--synth-n", type=click.IntRange(1), default=None, help="Renders to make (default: recipe).")
@click.option("--seed", type=int, default=None, help="Render / training seed (default: recipe).")
@click.option("--synth/--no-synth", default=True, show_default=True,
              help="Render (or take --data) synthetic training images; --no-synth trains on real sets only.")
@click.option("--real/--no-real", default=True, show_default=True,
              help="Add the recipe's trainable real datasets.")
@click.option("--datasets", "datasets_dir", type=click.Path(path_type=Path), default=None,
              help="Real datasets root (default: $ROADEYE_DATASETS or ../shared/datasets).")
@click.option("--hours", type=float, default=None, help="Wall-clock budget; overrides --epochs (ultralytics).")
@click.option("--init", type=click.Path(exists=True, path_type=Path), default=None,
              help="Start from our own earlier checkpoint (.pt) or a committed export (.onnx: weights imported, "
                   "BatchNorm statistics re-estimated on the training images) instead of random weights.")
@click.option("--freeze-bn", is_flag=True,
              help="YOLO models: keep the BatchNorm statistics as loaded while training (for --init from an "
                   ".onnx export, whose re-estimated statistics train mode would replace).")
@click.option("--square", is_flag=True,
              help="YOLO models: square letterboxed, shuffled batches (the recipes' rect batches are never "
                   "shuffled by ultralytics: images come in aspect-ratio order).")
@click.option("--resume", is_flag=True, help="Resume the interrupted run in --out.")
@click.option("--quick", is_flag=True, help="Pipeline check: 1 epoch, tiny data, not installed into models/.")
@click.option("--install/--no-install", default=None,
              help="Copy the ONNX into models/ (default: yes, except with --quick).")
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True, help="Dataloader workers.")
@click.option("--device", default="cpu", show_default=True, help="torch device for training.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Run folder (default: runs/models/<name>).")
@click.option("--synth-dir", "synth_dirs", multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="plate_reader: pre-rendered crop folder (labels.csv or labels.partial.csv of "
                   "file,plate,kind,split); repeatable; replaces rendering --synth-n crops.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=None,
              help="plate_reader: max learning rate of the one-cycle schedule (default 2e-3); YOLO models: lr0 "
                   "(default: the recipe's), e.g. a gentler restart of a continued run.")
@click.option("--real-share", type=click.FloatRange(0, 1), default=None,
              help="plate_reader: share of real crops in each batch (default 0.45).")
@click.option("--stop-after", type=click.IntRange(1), default=None,
              help="plate_reader: stop after N epochs of the --epochs-long schedule.")
@click.option("--arch", type=click.Choice(["base", "wide", "wide48"]), default=None,
              help="plate_reader: network (base = released 1.0 CRNN; wide = 2x convs + 2-layer BiLSTM; "
                   "wide48 = wide at 48x144). Default base.")
@click.option("--holdout-val", is_flag=True,
              help="plate_reader: keep the real 10% val part out of training and monitor it.")
@click.option("--reschedule", is_flag=True,
              help="plate_reader: resume --out/last.pt even if made for another --epochs (LR follows the new length).")
@click.option("--province-swap", type=click.FloatRange(0, 1), default=None,
              help="plate_reader: chance that a real crop gets another province glyph painted in (default 0; "
                   "the real crops are 96% 皖).")
def train(name: str, epochs: int | None, imgsz: int | None, input_hw: str | None, batch: int | None, data: Path | None,
          synth_n: int | None, seed: int | None, synth: bool, real: bool, datasets_dir: Path | None,
          hours: float | None, init: Path | None, freeze_bn: bool, square: bool, resume: bool, quick: bool,
          install: bool | None,
          workers: int, device: str, out_dir: Path | None, synth_dirs: tuple[Path, ...], lr: float | None,
          real_share: float | None, stop_after: int | None, arch: str | None, holdout_val: bool,
          reschedule: bool, province_swap: float | None) -> None:
    """Train NAME (vehicles, plates, occupants, plate_reader) and export it to ONNX."""
    out_dir = (out_dir or REPO / "runs" / "models" / name).resolve()
    root = datasets_root(datasets_dir)
    if (freeze_bn or square) and name == "plate_reader":
        raise click.UsageError("--freeze-bn and --square apply to the YOLO models, not plate_reader")
    if name == "plate_reader":
        onnx_path = _train_plate_reader(out_dir, root, epochs=epochs, seed=seed, synth_n=synth_n, quick=quick,
                                        synth_dirs=synth_dirs, init=init, lr=lr, real_share=real_share,
                                        stop_after=stop_after, arch=arch, holdout_val=holdout_val,
                                        reschedule=reschedule, province_swap=province_swap)
        if install if install is not None else not quick:
            dest = MODELS_DIR / "plate_reader.onnx"
            if Path(onnx_path).resolve() != dest.resolve():
                dest.write_bytes(Path(onnx_path).read_bytes())
            onnx_path = dest
        click.echo(json.dumps({"model": name, "onnx": str(onnx_path)}))
        return

    only_reader = {"--synth-dir": bool(synth_dirs), "--real-share": real_share is not None,
                   "--stop-after": stop_after is not None, "--arch": arch is not None, "--holdout-val": holdout_val,
                   "--reschedule": reschedule, "--province-swap": province_swap is not None}
    if used := [k for k, v in only_reader.items() if v]:
        raise click.UsageError(f"{', '.join(used)} only apply to plate_reader, not {name}")
    from models.train.yolo_train import TrainArgs, prepare_dataset, resolve_data_yaml, train_yolo

    recipe = load_recipe(name)
    install = (not quick) if install is None else install
    hw: tuple[int, int] | None = recipe.input_hw if imgsz is None and not quick else None
    if input_hw:
        try:
            h_s, w_s = input_hw.lower().split("x")
            hw = (int(h_s), int(w_s))
        except ValueError as exc:
            raise click.BadParameter(f"expected HxW such as 192x384, got {input_hw!r}",
                                     param_hint="--input-hw") from exc
        if hw[0] % 32 or hw[1] % 32:
            raise click.BadParameter(f"{input_hw}: both sides must be multiples of 32", param_hint="--input-hw")
    args = TrainArgs(
        epochs=epochs or (1 if quick else recipe.epochs),
        imgsz=imgsz or (96 if quick else recipe.imgsz),
        batch=batch or (4 if quick else recipe.batch), input_hw=hw,
        workers=workers, hours=hours, init=str(init) if init else None, device=device,
        seed=seed if seed is not None else 0, cache=False if quick else "ram", lr0=lr, freeze_bn=freeze_bn,
        square=square,
    )
    prepared = None
    if not resume:
        synth_yaml: Path | None = None
        if data is not None:
            synth_yaml = resolve_data_yaml(data)
        elif synth:
            n = synth_n or (8 if quick else recipe.synth.n)
            synth_yaml = _render(name, n, seed if seed is not None else recipe.synth.seed, out_dir / "renders")
        if real and not root.is_dir() and recipe.real:
            click.echo(f"warning: datasets root {root} is absent; training without real data", err=True)
            real = False
        prepared = prepare_dataset(recipe, out_dir / "dataset", synth_yaml, use_real=real, real_root=root,
                                   synth_limit=8 if quick else None)
        click.echo(f"training set: {prepared.counts} (data_hash {prepared.data_hash[:12]})", err=True)
    try:
        info = train_yolo(recipe, out_dir, prepared, args, resume=resume, install=install)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps({k: info[k] for k in ("model", "onnx", "data_hash", "counts", "checkpoint")},
                          indent=2))


def _train_plate_reader(out_dir: Path, root: Path, *, epochs: int | None, seed: int | None, synth_n: int | None,
                        quick: bool, synth_dirs: tuple[Path, ...], init: Path | None, lr: float | None,
                        real_share: float | None, stop_after: int | None, arch: str | None,
                        holdout_val: bool, reschedule: bool = False, province_swap: float | None = None) -> Path:
    """Run models.train.plate_reader.train with the dispatcher's options (the card's stage commands)."""
    from models.train import plate_reader

    if synth_dirs and synth_n is not None:
        raise click.UsageError("--synth-n renders a new set; it cannot be combined with --synth-dir")
    if epochs is not None and stop_after is not None and stop_after > epochs:
        raise click.BadParameter(f"--stop-after {stop_after} exceeds --epochs {epochs}", param_hint="--stop-after")
    kwargs: dict[str, Any] = {}
    if lr is not None:
        kwargs["lr"] = lr
    if real_share is not None:
        kwargs["real_share"] = real_share
    if province_swap is not None:
        kwargs["province_swap"] = province_swap
    try:
        return plate_reader.train(
            out_dir, epochs=epochs or (1 if quick else 30), seed=seed or 0,
            datasets_root=root if root.is_dir() else None,
            synth_n=0 if synth_dirs else (synth_n or (200 if quick else 20000)), quick=quick,
            synth_dir=list(synth_dirs) or None, init=init, stop_after=stop_after, arch=arch or "base",
            holdout_val=holdout_val, reschedule=reschedule, **kwargs)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("info")
@click.option("--dir", "models_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=MODELS_DIR, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def info(models_dir: Path, as_json: bool) -> None:
    """List the ONNX models in models/ with their metadata."""
    import onnx

    rows: list[dict[str, Any]] = []
    for path in sorted(models_dir.glob("*.onnx")):
        try:
            m = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            rows.append({"file": path.name, "error": str(exc)})
            continue
        meta = {p.key: p.value for p in m.metadata_props}
        rows.append({"file": path.name, "size_mb": round(path.stat().st_size / 2**20, 2),
                     "roadeye_model": meta.get("roadeye_model"), "version": meta.get("version"),
                     "task": meta.get("task"), "imgsz": meta.get("imgsz"), "names": meta.get("names"),
                     "data_hash": meta.get("data_hash"), "opset": m.opset_import[0].version})
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo(f"no .onnx models in {models_dir}")
        return
    for r in rows:
        if "error" in r:
            click.echo(f"{r['file']}: UNREADABLE ({r['error']})")
            continue
        missing = [k for k in ("roadeye_model", "version", "task", "imgsz", "names", "data_hash") if not r[k]]
        click.echo(f"{r['file']}: {r['roadeye_model']} v{r['version']} task={r['task']} imgsz={r['imgsz']} "
                   f"opset={r['opset']} {r['size_mb']} MB data_hash={str(r['data_hash'])[:12]}"
                   + (f"  MISSING {missing}" if missing else ""))
        click.echo(f"    names: {r['names']}")


@click.command("quantize")
@click.argument("name", type=click.Choice(["vehicles", "plates", "occupants"]))
@click.option("--calib", "calib", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder of calibration images the model sees in service (renders of its dataset: vehicles = "
                   "frames, plates = vehicle crops, occupants = windshield crops).")
@click.option("--n", "n", type=click.IntRange(8, 2000), default=64, show_default=True,
              help="Calibration images (spread evenly over the folder).")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Float ONNX file (default: models/NAME.onnx).")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output (default: NAME.int8.onnx beside the float file).")
@click.option("--method", type=click.Choice(list(CALIBRATION_METHODS)), default="minmax",
              show_default=True, help="Activation-range calibration (histogram methods clip rare outliers).")
def quantize(name: str, calib: Path, n: int, model_path: Path | None, out: Path | None, method: str) -> None:
    """Write an INT8 QDQ copy of detector NAME, calibrated on --calib; prints JSON.

    Measure it before use: `roadeye models eval NAME --model models/NAME.int8.onnx --data ...`."""
    from models.train.quantize import calibration_images, int8_path, quantize_detector

    src = model_path or MODELS_DIR / f"{name}.onnx"
    if not src.is_file():
        raise click.BadParameter(f"{src} does not exist", param_hint="--model")
    try:
        summary = quantize_detector(src, out or int8_path(src), calibration_images(calib, n), method)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(summary, indent=2))


@click.command("eval")
@click.argument("name", type=click.Choice(ALL_MODELS))
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True,
              help="Dataset: YOLO folder/data.yaml, plates-cn-scenes, plates-intl-scenes, plate crops.")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="ONNX file (default: models/<name>.onnx).")
@click.option("--conf", type=click.FloatRange(0, 1), default=0.25, show_default=True,
              help="Operating threshold for precision/recall (AP uses every score).")
@click.option("--plates-mode", type=click.Choice(["whole", "cascade"]), default="whole", show_default=True,
              help="plates on scene images: the whole image, or vehicles -> crop -> plates.")
@click.option("--vehicles-model", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="vehicles ONNX for --plates-mode cascade (default: models/vehicles.onnx).")
@click.option("--latency", is_flag=True, help="Also time batch-1 and batch-8 inference on these images.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Evaluate at most N images.")
@click.option("--part", default="test", show_default=True, help="plate_reader: which part of the crop set.")
def evaluate(name: str, data: Path, model_path: Path | None, conf: float, plates_mode: str,
             vehicles_model: Path | None, latency: bool, limit: int | None, part: str) -> None:
    """Evaluate an exported ONNX model on DATA through onnxruntime; prints JSON metrics."""
    model_path = model_path or MODELS_DIR / f"{name}.onnx"
    if not model_path.is_file():
        raise click.ClickException(f"model file {model_path} does not exist (train it or pass --model)")
    if name == "plate_reader":
        from models.train import plate_reader

        result = plate_reader.evaluate(model_path, data, part=part)
    else:
        from models.train.evaluate import evaluate_detector

        try:
            result = evaluate_detector(name, model_path, data, conf=conf, plates_mode=plates_mode,
                                       vehicles_model=vehicles_model or MODELS_DIR / "vehicles.onnx",
                                       latency=latency, limit=limit,
                                       plate_reader=MODELS_DIR / "plate_reader.onnx")
        except (FileNotFoundError, ValueError) as exc:
            raise click.ClickException(str(exc)) from exc
    json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


__all__ = ["YOLO_MODELS", "evaluate", "info", "train"]
