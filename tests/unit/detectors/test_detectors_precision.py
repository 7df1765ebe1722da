"""models.precision picks the float or the INT8 file of each detector."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import ModelsConfig
from edge.detectors import detector_weights


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


def test_config_rejects_unknown_precision() -> None:
    with pytest.raises(ValueError, match="precision"):
        ModelsConfig.model_validate({"precision": "int4"})
    assert ModelsConfig().precision == "auto"
