"""`roadeye models render ...` and `roadeye models contact-sheet` (wired in models/cli.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from models.synth.datasets import MODELS

DEFAULT_ROOT = Path("/work/scratch/datasets")


@click.group()
def render() -> None:
    """Render synthetic training datasets or sample videos with ground truth."""


@render.command("dataset")
@click.option("--model", "model", type=click.Choice(MODELS), required=True, help="Which model's dataset.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help=f"Output directory (default {DEFAULT_ROOT}/<model>).")
@click.option("--n", "n", type=click.IntRange(min=1), default=1000, show_default=True, help="Number of images.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed; the same seed gives the same data.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Processes.")
@click.option("--val-fraction", type=click.FloatRange(0, 0.9), default=0.1, show_default=True)
@click.option("--phone-share", type=click.FloatRange(0, 1), default=None,
              help="Share of drivers holding a phone (default balance: 0.4); over-samples phone_use.")
@click.option("--distractor-share", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of phone-free drivers with an empty hand at the face or a cup / bottle in hand "
                   "(hard negatives for the phone class; half each).")
@click.option("--real-plates", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="plates: a folder of real plate crops (plates-cn-crops); its trainable part (never the "
                   "reader's held-back test part) is pasted as the texture of blue plates.")
@click.option("--real-plate-share", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="plates: share of blue plates given a real crop (with --real-plates).")
@click.option("--close-share", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="plates: share of samples cut to a window 1.3-6 plate widths around one plate (close-ups).")
@click.option("--wide-share", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="plates: share of samples with 0.25-1.45 vehicle sizes of street around the vehicle.")
@click.option("--paste-backgrounds", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="plates: a datasets root; a share of samples are plates pasted onto its trainable real photos "
                   "(vehicles-cctv 70%, occupants-seatbelt-incabin, videos/), real crops with --real-plates.")
@click.option("--paste-share", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="plates: share of samples pasted onto real photos (with --paste-backgrounds).")
@click.option("--paste-foreign-share", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="plates: share of the pasted rendered (not real) plates drawn in EU / US style.")
def dataset(model: str, out: Path | None, n: int, seed: int, workers: int, val_fraction: float,
            phone_share: float | None, distractor_share: float, real_plates: Path | None, real_plate_share: float,
            close_share: float, wide_share: float, paste_backgrounds: Path | None, paste_share: float,
            paste_foreign_share: float) -> None:
    """Write a YOLO dataset (images/, labels/, data.yaml, manifest.json) or the plate-text crops."""
    from models.synth.datasets import RenderOptions, write_dataset
    from models.synth.plate_paste import PasteBackgrounds
    from models.synth.real_plates import RealPlates

    try:
        opts = RenderOptions(phone_share=phone_share, distractor_share=distractor_share, close_share=close_share,
                             wide_share=wide_share,
                             real_plates=RealPlates(str(real_plates.resolve()), real_plate_share)
                             if real_plates is not None else None,
                             paste=PasteBackgrounds(str(paste_backgrounds.resolve()), paste_share, paste_foreign_share)
                             if paste_backgrounds is not None else None)
        opts.check(model)
    except ValueError as e:
        raise click.UsageError(str(e)) from e

    out = out or DEFAULT_ROOT / model
    t0 = time.time()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.time() - last[0] > 10 or done == total:
            last[0] = time.time()
            rate = done / max(time.time() - t0, 1e-6)
            click.echo(f"{model}: {done}/{total} images ({rate:.2f}/s)", err=True)

    path = write_dataset(model, out, n, seed, workers=workers, val_fraction=val_fraction, progress=progress,
                         options=opts)
    dt = time.time() - t0
    click.echo(f"wrote {n} {model} images to {out} in {dt:.1f} s ({n / dt:.2f} images/s): {path}")


@render.command("video")
@click.option("--preset", type=click.Choice(["day4k", "night4k", "dense1080", "dusk4k", "rain1080"]), required=True)
@click.option("--seconds", type=click.FloatRange(min=0.5, max=60), default=10.0, show_default=True)
@click.option("--fps", type=click.FloatRange(min=1, max=60), default=25.0, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for <name>.mp4, <name>.groundtruth.json and <name>.camera.yaml.")
@click.option("--name", default=None, help="Clip base name (default: the preset's name).")
@click.option("--crf", type=click.IntRange(0, 51), default=None, help="x264 CRF (default per preset).")
@click.option("--scale", type=click.FloatRange(0.05, 1.0), default=1.0, show_default=True,
              help="Render the preset's view at a fraction of its resolution (same geometry; previews, tests).")
def video(preset: str, seconds: float, fps: float, seed: int, out: Path, name: str | None, crf: int | None,
          scale: float) -> None:
    """Render an H.264 clip with its ground truth and camera calibration."""
    from dataclasses import replace

    from models.synth.video import PRESETS, render_clip

    p = PRESETS[preset]
    if scale != 1.0:  # even sizes for yuv420p
        p = replace(p, width=max(64, round(p.width * scale / 2) * 2), height=max(36, round(p.height * scale / 2) * 2))
    t0 = time.time()
    res = render_clip(p, out, seconds=seconds, fps=fps, seed=seed, name=name, crf=crf,
                      log=lambda m: click.echo(m, err=True))
    dt = time.time() - t0
    click.echo(f"wrote {res.video} ({res.frames} frames, {res.frames / dt:.2f} frames/s incl. encoding, "
               f"{res.video.stat().st_size / 1e6:.1f} MB); ground truth {res.groundtruth}")


@click.command("contact-sheet")
@click.option("--model", "model", type=click.Choice(MODELS), required=True)
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="PNG path.")
@click.option("--n", "n", type=click.IntRange(1, 64), default=16, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--tile", type=click.IntRange(96, 1024), default=480, show_default=True, help="Tile width (px).")
def contact_sheet(model: str, out: Path, n: int, seed: int, tile: int) -> None:
    """PNG grid of random renders with their labels drawn, to judge realism at a glance."""
    from models.synth.contact import write_contact_sheet

    path = write_contact_sheet(model, out, n=n, seed=seed, tile=tile)
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(render())


@render.command("bench")
@click.option("--preset", type=click.Choice(["day4k", "night4k", "dense1080", "dusk4k", "rain1080"]), default="day4k",
              show_default=True)
@click.option("--frames", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
def bench(preset: str, frames: int, seed: int) -> None:
    """Measure frame render speed (no encoding): wall and CPU seconds per frame."""
    from models.synth.video import PRESETS, benchmark

    r = benchmark(PRESETS[preset], frames=frames, seed=seed)
    click.echo(" ".join(f"{k}={v}" for k, v in r.items()))
