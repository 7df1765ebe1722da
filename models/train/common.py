"""Shared paths, recipes and the offline ultralytics environment for training and evaluation.

Why: every command (train, eval, info, tests) must agree on where models, recipes and the
real datasets live, and ultralytics must be configured offline *before* it is imported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO / "models"
CONFIGS_DIR = MODELS_DIR / "configs"
CARDS_DIR = MODELS_DIR / "cards"
YOLO_MODELS = ("vehicles", "plates", "occupants")
ALL_MODELS = (*YOLO_MODELS, "plate_reader")


def datasets_root(override: str | Path | None = None) -> Path:
    """Real datasets folder: flag > $ROADEYE_DATASETS > <repo>/../shared/datasets."""
    if override:
        return Path(override).expanduser().resolve()
    env = os.environ.get("ROADEYE_DATASETS")
    return Path(env).expanduser().resolve() if env else (REPO.parent / "shared" / "datasets").resolve()


def setup_ultralytics() -> None:
    """Configure ultralytics for offline use (no downloads, no telemetry). Call before importing it."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(REPO / ".yolo"))
    Path(os.environ["YOLO_CONFIG_DIR"]).mkdir(parents=True, exist_ok=True)
    import ultralytics

    ultralytics.settings.update({"sync": False})


class RealSet(BaseModel):
    """A trainable real dataset folder in YOLO format, remapped to the model's classes."""

    model_config = ConfigDict(extra="forbid")
    dataset: str = Field(description="folder name under the datasets root")
    images: str = Field(description="images folder inside it (labels beside, in ../labels)")
    holdout: float = Field(0.0, ge=0.0, lt=1.0, description="fraction held back (fixed hash split) for eval")
    class_map: dict[str, str] = Field(description="dataset class name -> model class name; others dropped")
    repeat: int = Field(1, ge=1, le=20, description="how many times each image appears per epoch")


class SynthSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = Field(ge=1, description="rendered training images")
    seed: int = Field(description="renderer seed (fixes the dataset)")


class Recipe(BaseModel):
    """One model's training recipe (models/configs/<name>.yaml)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    task: Literal["detect"] = "detect"
    architecture: str = Field(description="ultralytics model yaml, built from scratch")
    classes: list[str] = Field(min_length=1)
    imgsz: int = Field(ge=32, le=1920, description="training size (long side; ultralytics imgsz)")
    input_hw: tuple[int, int] | None = Field(
        None, description="ONNX input [h, w] (multiples of 32) when not imgsz x imgsz, e.g. wide windshield crops")
    epochs: int = Field(ge=1)
    batch: int = Field(ge=1)
    synth: SynthSpec
    real: list[RealSet] = Field(default_factory=list)
    augment: dict[str, bool | int | float | str] = Field(
        default_factory=dict, description="ultralytics hyper-parameters")

    @property
    def names(self) -> dict[int, str]:
        return dict(enumerate(self.classes))


def load_recipe(name: str, path: Path | None = None) -> Recipe:
    """Load and validate a recipe; errors name the file and the bad key."""
    path = path or CONFIGS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no training recipe for {name!r}: {path} is missing")
    try:
        return Recipe.model_validate(yaml.safe_load(path.read_text()))
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid recipe: {exc}") from exc
