"""The benches' CPU budgets: what ratio a CPU-bound machine allows, and what the goal would need."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _cpu(publisher: float, consumer: float, broker: float) -> dict[str, float]:
    return {"publisher": publisher, "consumer": consumer, "broker": broker, "total": publisher + consumer + broker}


@pytest.mark.parametrize("raw_consumer, collector_consumer, bound, allowed", [
    (0.75, 2.25, 0.5, 1.125),   # the collector costs 3x raw's subscriber: half the machine's rate
    (0.75, 0.75, 1.0, 1.125),   # as cheap as the raw subscriber: the ratio is not CPU-bound
    (0.75, 1.125, 0.8, 1.125),  # exactly the CPU the goal allows
])
def test_collector_cpu_budget(raw_consumer: float, collector_consumer: float, bound: float, allowed: float) -> None:
    bench = _load("bench_collector")
    raw = {"msgs_per_s": 1000.0, "cpu_ms_per_msg": _cpu(0.4, raw_consumer, 0.35)}
    col = {"events_per_s": 400.0, "cpu_ms_per_msg": _cpu(0.4, collector_consumer, 0.35)}
    b = bench.cpu_budget(raw, col, cpus=2)
    assert b["ratio_bound_when_cpu_bound"] == pytest.approx(bound, abs=1e-3)
    assert b["collector_cpu_ms_per_msg_for_goal"] == pytest.approx(allowed, abs=0.01)
    assert b["raw_cores_busy"] == pytest.approx(1.5)
    assert b["collector_cpu_ms_per_msg"] == collector_consumer


def test_edge_cpu_budget() -> None:
    bench = _load("bench_edge")
    dec = {"cpu_s": 5.0, "frames": 250, "analysed": 50}     # 20 ms per decoded frame
    pipe = {"cpu_s": 10.0, "frames": 250, "analysed": 50}   # + 100 ms per analysed frame
    b = bench.cpu_budget(dec, pipe)
    assert b["decode_ms_per_frame"] == 20.0
    assert b["analysis_ms_per_analysed_frame"] == 100.0
    assert b["ratio_bound_when_cpu_bound"] == 0.5
    assert b["analysis_ms_per_analysed_frame_for_goal"] == 25.0  # 20 * (1/0.8 - 1) * 5
