"""The `roadeye` console script: one root command, each role's subcommands loaded lazily.

Lazy loading keeps `roadeye edge ...` free of server-only imports (FastAPI, SQLAlchemy)
and `roadeye server ...` free of training imports, so each role installs only its extra.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

#: subcommand -> "module:attribute" of a click command or group.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "edge": ("edge.commands:edge", "Run, replay and score the edge pipeline; device keys."),
    "server": ("server.cli:server", "Collector and review web app."),
    "calibrate": ("calibration.cli:calibrate", "Per-camera lens, zones, road plane, thresholds."),
    "models": ("models.cli:models", "Render data, train, export and evaluate the ONNX models."),
    "demo": ("edge.demo:demo", "Replay a sample clip through a local broker into the collector."),
}


class LazyGroup(click.Group):
    """click's documented lazy-loading pattern: import a subcommand only when invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in SUBCOMMANDS:
            return None
        target, help_text = SUBCOMMANDS[cmd_name]
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            missing = getattr(exc, "name", None) or str(exc)
            return _unavailable(cmd_name, help_text, f"cannot import {module_name} ({missing})")
        cmd = getattr(module, attr, None)
        if not isinstance(cmd, click.Command):
            return _unavailable(cmd_name, help_text, f"{target} is not implemented yet")
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Use the static help strings so `roadeye --help` imports nothing heavy.
        rows = [(name, SUBCOMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _unavailable(name: str, help_text: str, reason: str) -> click.Command:
    @click.command(name=name, help=f"{help_text} [unavailable: {reason}]",
                   context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    def _cmd() -> None:
        raise click.ClickException(
            f"'roadeye {name}' is unavailable: {reason}. Install the matching extra, "
            "e.g. pip install 'roadeye[edge,server,cpu]'."
        )

    return _cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="roadeye")
def main(verbose: int) -> None:
    """roadeye: edge traffic-camera violation detection (seat belt, phone use) and review."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    main()
