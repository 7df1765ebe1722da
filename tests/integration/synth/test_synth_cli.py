"""`roadeye models render ...` / `contact-sheet` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from edge.camera import load_camera
from models.cli import models


def test_render_dataset_cli(tmp_path: Path) -> None:
    r = CliRunner().invoke(models, ["render", "dataset", "--model", "plates", "--n", "2", "--seed", "4",
                                    "--out", str(tmp_path / "plates")])
    assert r.exit_code == 0, r.output
    data = yaml.safe_load((tmp_path / "plates" / "data.yaml").read_text())
    assert data["names"] == {0: "plate"} and Path(data["path"]).is_absolute()
    assert len(list((tmp_path / "plates" / "images").rglob("*.jpg"))) == 2


def test_render_video_cli_scaled(tmp_path: Path) -> None:
    r = CliRunner().invoke(models, ["render", "video", "--preset", "night4k", "--scale", "0.15", "--seconds", "0.5",
                                    "--fps", "10", "--seed", "3", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    gt = json.loads((tmp_path / "night_4k.groundtruth.json").read_text(encoding="utf-8"))
    assert (gt["width"], gt["height"], gt["frames"]) == (614, 324, 5)
    assert gt["conditions"] == {"light": "night", "weather": "clear"}
    cal = load_camera(tmp_path / "night_4k.camera.yaml")
    assert tuple(cal.image_size) == (614, 324)


def test_bad_model_is_rejected_with_name() -> None:
    r = CliRunner().invoke(models, ["render", "dataset", "--model", "lorries", "--n", "1"])
    assert r.exit_code != 0 and "lorries" in r.output


def test_contact_sheet_cli(tmp_path: Path) -> None:
    r = CliRunner().invoke(models, ["contact-sheet", "--model", "plate_text", "--out", str(tmp_path / "s.png"),
                                    "--n", "3", "--tile", "160"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s.png").stat().st_size > 1000
