"""models.precision picks the float or the INT8 file of each detector (one word for all, or per model)."""

from __future__ import annotations

import logging
from pathlib import Path

import onnx
import pytest
from pydantic import ValidationError

from edge.config import ModelsConfig
from edge.detectors import detector_weights, file_sha256, load_models
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


def _twin(folder: Path, name: str, quantized_from: str | None) -> Path:
    """A stand-in INT8 twin: the float fixture re-saved with the quantizer's provenance key."""
    model = onnx.load(str(folder / f"{name}.onnx"))
    if quantized_from is not None:
        e = model.metadata_props.add()
        e.key, e.value = "quantized_from_sha256", quantized_from
    onnx.save(model, str(folder / f"{name}.int8.onnx"))
    return folder / f"{name}.int8.onnx"


def test_load_models_picks_each_detectors_file_from_the_config(tmp_path: Path) -> None:
    d = write_fixture_models(tmp_path / "models")
    for name in ("vehicles", "plates"):  # occupants has no twin: auto falls back to its float file
        _twin(d, name, file_sha256(d / f"{name}.onnx"))
    m = load_models(d / "vehicles.onnx", d / "occupants.onnx", d / "plates.onnx", None, ["CPUExecutionProvider"],
                    precision=ModelsConfig().precision.model_dump())
    assert [Path(x.model_path).name for x in (m.vehicles, m.plates, m.occupants)] == [
        "vehicles.int8.onnx", "plates.onnx", "occupants.onnx"]
    m = load_models(d / "vehicles.onnx", d / "occupants.onnx", d / "plates.onnx", None, ["CPUExecutionProvider"],
                    precision={"plates": "int8"})
    assert [Path(x.model_path).name for x in (m.vehicles, m.plates)] == ["vehicles.onnx", "plates.int8.onnx"]


@pytest.mark.parametrize("recorded", ["0" * 64, None])
def test_a_twin_of_other_weights_is_refused_or_skipped(tmp_path: Path, recorded: str | None,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """A twin left from an earlier release (or one without provenance) never runs silently."""
    d = write_fixture_models(tmp_path / "models")
    _twin(d, "vehicles", recorded)
    with pytest.raises(ValueError, match=r"vehicles\.int8\.onnx .*models\.precision\.vehicles: fp32"):
        load_models(d / "vehicles.onnx", None, None, None, ["CPUExecutionProvider"], precision={"vehicles": "int8"})
    with caplog.at_level(logging.WARNING, logger="edge.detectors"):
        m = load_models(d / "vehicles.onnx", None, None, None, ["CPUExecutionProvider"], precision="auto")
    assert Path(m.vehicles.model_path).name == "vehicles.onnx"
    assert "running the float vehicles.onnx instead" in caplog.text
    assert m.refs[0].sha256 == file_sha256(d / "vehicles.onnx")
