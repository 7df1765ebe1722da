"""`roadeye models ...`: render synthetic data, train, export and evaluate models.

Subcommands live beside the code they drive (models/synth, models/train); this group
only wires them in, lazily, so `roadeye models --help` needs neither torch nor the renderer.
"""

from __future__ import annotations

import importlib

import click

_SUB: dict[str, tuple[str, str]] = {
    "render": ("models.synth.cli:render", "Render synthetic datasets or videos with ground truth."),
    "contact-sheet": ("models.synth.cli:contact_sheet", "PNG grid of random renders with labels drawn."),
    "train": ("models.train.cli:train", "Train a model (renders data if needed) and export ONNX."),
    "eval": ("models.train.cli:evaluate", "Evaluate an exported ONNX model on a dataset; prints JSON."),
    "info": ("models.train.cli:info", "List committed ONNX models with their metadata."),
    "quantize": ("models.train.cli:quantize", "INT8 (QDQ) copy of a detector for CPU boxes: NAME.int8.onnx."),
}


class _Lazy(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_SUB)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _SUB:
            return None
        mod, attr = _SUB[name][0].split(":")
        try:
            cmd = getattr(importlib.import_module(mod), attr, None)
        except ImportError as exc:
            reason = f"cannot import {mod}: {exc}"
            cmd = None
        else:
            reason = f"{_SUB[name][0]} is not implemented yet"
        if isinstance(cmd, click.Command):
            return cmd

        @click.command(name=name, help=f"{_SUB[name][1]} [unavailable: {reason}]",
                       context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
        def _missing() -> None:
            raise click.ClickException(f"'roadeye models {name}' is unavailable: {reason}")

        return _missing

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(n, _SUB[n][1]) for n in self.list_commands(ctx)])


@click.group(cls=_Lazy)
def models() -> None:
    """Render synthetic data, train, export and evaluate roadeye's ONNX models."""
