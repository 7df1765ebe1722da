"""Execution-provider choice: GPU providers get their options (TensorRT engine cache, FP16,
device), what this onnxruntime build lacks falls back to CPU with a log line, and the whole
model set loads that way on a CPU-only box."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge.detectors import load_models, provider_name, provider_options, session_options, with_cpu_fallback
from tests.unit.edge.edge_onnx_fixtures import write_fixture_models

GPU_FIRST = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_gpu_providers_get_their_options(tmp_path: Path) -> None:
    trt, cuda, cpu = provider_options(GPU_FIRST, tmp_path / "trt", trt_fp16=True, device_id=1)
    assert trt == ("TensorrtExecutionProvider", {
        "device_id": "1", "trt_fp16_enable": "True", "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(tmp_path / "trt"), "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(tmp_path / "trt")})
    assert (tmp_path / "trt").is_dir()
    assert cuda == ("CUDAExecutionProvider", {"device_id": "1"})
    assert cpu == "CPUExecutionProvider"
    assert provider_options(["TensorrtExecutionProvider"], None, trt_fp16=False)[0] == (
        "TensorrtExecutionProvider", {"device_id": "0", "trt_fp16_enable": "False"})


def test_missing_providers_fall_back_to_cpu_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has CUDA: nothing to fall back from")
    with caplog.at_level(logging.WARNING, logger="edge.detectors"):
        chosen = with_cpu_fallback(provider_options(GPU_FIRST))
    assert [provider_name(p) for p in chosen] == ["CPUExecutionProvider"]
    assert "CUDAExecutionProvider" in caplog.text and "falling back" in caplog.text


def test_models_load_on_cpu_when_gpu_providers_are_asked_for(tmp_path: Path) -> None:
    d = write_fixture_models(tmp_path / "models")
    m = load_models(d / "vehicles.onnx", d / "occupants.onnx", d / "plates.onnx", d / "plate_reader.onnx",
                    GPU_FIRST, trt_cache_dir=tmp_path / "trt")
    assert {m.vehicles.provider, m.occupants.provider, m.plates.provider, m.plate_reader.provider} <= {
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"}
    assert len(m.refs) == 4


def test_session_options_turn_spinning_off_by_default() -> None:
    assert session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert session_options(2, spin=True).get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert session_options(2).intra_op_num_threads == 2
