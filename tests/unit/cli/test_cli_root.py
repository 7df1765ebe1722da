"""The `roadeye` console script lists every role and fails clearly for unknown ones."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from edge.cli import SUBCOMMANDS, main


def test_help_lists_every_subcommand() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in ("edge", "server", "calibrate", "models", "demo"):
        assert name in SUBCOMMANDS
        assert f"  {name}" in result.output


def test_unknown_subcommand_is_an_error_naming_it() -> None:
    result = CliRunner().invoke(main, ["frobnicate"])
    assert result.exit_code != 0
    assert "frobnicate" in result.output


def test_console_script_help_imports_no_heavy_packages() -> None:
    code = (
        "import sys; from edge.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'ultralytics', 'fastapi', 'sqlalchemy') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY=\n" in out, out
