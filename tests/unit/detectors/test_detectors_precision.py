"""models.precision picks the float or the INT8 file of each detector (one word for all, or per model)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge.config import ModelsConfig
from edge.detectors import detector_weights, load_models
from tests.unit.edge.edge_onnx_fixtures import write_fixture_models


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    f = tmp_path / "occupants.onnx"
    q = tmp_path / "occupants.int8.onnx"
    f.write_bytes(b"f")
    q.write_bytes(b"q")
    return f, q


@pytest.mark.parametrize("precision, on_cpu, want", [
    ("fp32", True, "float"), ("fp32", False, "float"),
    ("int8", True, "int8"), ("int8", False, "int8"),
    ("auto", True, "int8"), ("auto", False, "float"),
])
def test_choice(files: tuple[Path, Path], precision: str, on_cpu: bool, want: str) -> None:
    f, q = files
    assert detector_weights(f, precision, on_cpu) == (q if want == "int8" else f)


def test_auto_without_int8_file_uses_float(tmp_path: Path) -> None:
    f = tmp_path / "vehicles.onnx"
    f.write_bytes(b"f")
    assert detector_weights(f, "auto", True) == f


def test_int8_without_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"vehicles\.int8\.onnx"):
        detector_weights(tmp_path / "vehicles.onnx", "int8", True)


def test_config_defaults_per_model() -> None:
    # plates stay float: their INT8 twin is no faster on CPU and loses EU/US plates (plates card)
    assert ModelsConfig().precision.model_dump() == {"vehicles": "auto", "plates": "fp32", "occupants": "auto"}


@pytest.mark.parametrize("given, want", [
    ("fp32", {"vehicles": "fp32", "plates": "fp32", "occupants": "fp32"}),
    ("auto", {"vehicles": "auto", "plates": "auto", "occupants": "auto"}),
    ({"plates": "int8"}, {"vehicles": "auto", "plates": "int8", "occupants": "auto"}),
    ({"vehicles": "fp32"}, {"vehicles": "fp32", "plates": "fp32", "occupants": "auto"}),
])
def test_config_one_word_or_per_model(given: object, want: dict[str, str]) -> None:
    assert ModelsConfig.model_validate({"precision": given}).precision.model_dump() == want


@pytest.mark.parametrize("given, key", [
    ("int4", "precision.vehicles"),
    ({"plates": "int4"}, "precision.plates"),
    ({"plate": "fp32"}, "precision.plate"),
])
def test_config_rejects_unknown_precision_naming_the_key(given: object, key: str) -> None:
    with pytest.raises(ValidationError) as e:
        ModelsConfig.model_validate({"precision": given})
    assert key in {".".join(map(str, err["loc"])) for err in e.value.errors()}


def test_load_models_picks_each_detectors_file_from_the_config(tmp_path: Path) -> None:
    d = write_fixture_models(tmp_path / "models")
    for name in ("vehicles", "plates"):  # occupants has no twin: auto falls back to its float file
        shutil.copy(d / f"{name}.onnx", d / f"{name}.int8.onnx")
    m = load_models(d / "vehicles.onnx", d / "occupants.onnx", d / "plates.onnx", None, ["CPUExecutionProvider"],
                    precision=ModelsConfig().precision.model_dump())
    assert [Path(x.model_path).name for x in (m.vehicles, m.plates, m.occupants)] == [
        "vehicles.int8.onnx", "plates.onnx", "occupants.onnx"]
    m = load_models(d / "vehicles.onnx", d / "occupants.onnx", d / "plates.onnx", None, ["CPUExecutionProvider"],
                    precision={"plates": "int8"})
    assert [Path(x.model_path).name for x in (m.vehicles, m.plates)] == ["vehicles.onnx", "plates.int8.onnx"]
