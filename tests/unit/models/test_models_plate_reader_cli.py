"""`roadeye models train plate_reader` passes the recipe options through; --arch builds the right net."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from models.train import plate_reader
from models.train.cli import train as train_cmd

torch = pytest.importorskip("torch")


def _capture(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def fake_train(out_dir: Path, **kw: Any) -> Path:
        seen.update(kw, out_dir=out_dir)
        return out_dir / "plate_reader.onnx"

    monkeypatch.setattr(plate_reader, "train", fake_train)
    return seen


def test_stage_options_reach_the_trainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _capture(monkeypatch)
    a, b = tmp_path / "s1", tmp_path / "s2"
    a.mkdir()
    b.mkdir()
    init = tmp_path / "last.pt"
    init.write_bytes(b"x")
    res = CliRunner().invoke(train_cmd, [
        "plate_reader", "--out", str(tmp_path / "run"), "--epochs", "7", "--seed", "2", "--synth-dir", str(a),
        "--synth-dir", str(b), "--init", str(init), "--lr", "5e-4", "--real-share", "0.35", "--stop-after", "3",
        "--arch", "wide", "--holdout-val", "--reschedule", "--province-swap", "0.4", "--no-install"])
    assert res.exit_code == 0, res.output
    assert seen["synth_dir"] == [a, b] and seen["synth_n"] == 0
    assert seen["init"] == init and seen["lr"] == 5e-4 and seen["real_share"] == 0.35
    assert seen["stop_after"] == 3 and seen["epochs"] == 7 and seen["seed"] == 2
    assert seen["arch"] == "wide" and seen["holdout_val"] is True and seen["reschedule"] is True
    assert seen["province_swap"] == 0.4


def test_defaults_keep_the_released_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _capture(monkeypatch)
    res = CliRunner().invoke(train_cmd, ["plate_reader", "--out", str(tmp_path), "--no-install"])
    assert res.exit_code == 0, res.output
    assert seen["arch"] == "base" and seen["synth_dir"] is None and seen["synth_n"] == 20000
    assert seen["reschedule"] is False and seen["holdout_val"] is False
    assert "lr" not in seen and "real_share" not in seen and "province_swap" not in seen  # trainer defaults


@pytest.mark.parametrize("args, msg", [
    (["occupants", "--real-share", "0.3"], "--real-share only apply to plate_reader"),
    (["plates", "--arch", "wide"], "--arch only apply to plate_reader"),
    (["plate_reader", "--epochs", "4", "--stop-after", "5"], "--stop-after 5 exceeds --epochs 4"),
    (["plate_reader", "--arch", "huge"], "Invalid value for '--arch'"),
    (["vehicles", "--province-swap", "0.5"], "--province-swap only apply to plate_reader"),
    (["plate_reader", "--province-swap", "1.5"], "Invalid value for '--province-swap'"),
])
def test_bad_combinations_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str],
                                    msg: str) -> None:
    _capture(monkeypatch)
    res = CliRunner().invoke(train_cmd, [*args, "--out", str(tmp_path)])
    assert res.exit_code != 0 and msg in res.output, res.output


def test_synth_dir_and_synth_n_conflict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _capture(monkeypatch)
    res = CliRunner().invoke(train_cmd, ["plate_reader", "--synth-dir", str(tmp_path), "--synth-n", "10",
                                         "--out", str(tmp_path / "r")])
    assert res.exit_code != 0 and "cannot be combined with --synth-dir" in res.output


@pytest.mark.parametrize("arch, steps", [("base", 24), ("wide", 24), ("wide48", 36)])
def test_arch_output_shapes(arch: str, steps: int) -> None:
    m = plate_reader.build_model(arch=arch).eval()
    h, w = plate_reader.ARCHS[arch].input_size
    with torch.no_grad():
        out = m(torch.zeros(2, 3, h, w))
    assert tuple(out.shape) == (2, steps, plate_reader.NUM_CLASSES)
    n = sum(p.numel() for p in m.parameters())
    if arch == "base":
        assert n == 411_157  # the released 1.0 network, unchanged (old checkpoints load)
    else:
        assert 1_500_000 < n < 2_000_000


def test_init_from_another_arch_is_refused(tmp_path: Path) -> None:
    ck = tmp_path / "base.pt"
    torch.save({"model": plate_reader.build_model(arch="base").state_dict()}, ck)  # no "arch" key = base
    with pytest.raises(ValueError, match="holds arch 'base', not 'wide'"):
        plate_reader.train(tmp_path / "run", epochs=1, datasets_root=tmp_path / "none", synth_n=0,
                           synth_dir=_tiny_synth(tmp_path), quick=True, init=ck, arch="wide")


def _tiny_synth(tmp_path: Path) -> Path:
    plates = pytest.importorskip("models.synth.plates")
    d = tmp_path / "synth"
    plates.write_plate_text_dataset(d, 24, 5)
    return d


def test_quick_wide_run_through_the_cli_exports_its_input_size(tmp_path: Path) -> None:
    from edge.detectors.plate_reader import OnnxPlateReader

    synth = _tiny_synth(tmp_path)
    res = CliRunner().invoke(train_cmd, ["plate_reader", "--quick", "--arch", "wide48", "--synth-dir", str(synth),
                                         "--datasets", str(tmp_path / "none"), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    r = OnnxPlateReader(tmp_path / "run" / "plate_reader.onnx")
    assert r.input_size == (48, 144)
    assert r.metadata["arch"] == "wide48" and r.metadata["version"] == "2.1.0"
    assert len(r.read_batch([np.zeros((24, 94, 3), np.uint8), np.zeros((60, 120, 3), np.uint8)])) == 2


def test_reschedule_resumes_a_run_with_a_new_length(tmp_path: Path) -> None:
    synth = _tiny_synth(tmp_path)
    kw: dict[str, Any] = dict(seed=1, datasets_root=tmp_path / "none", synth_n=0, synth_dir=synth,
                              steps_per_epoch=2, export_every=10)
    out = tmp_path / "run"
    plate_reader.train(out, epochs=4, stop_after=1, **kw)
    first = torch.load(out / "last.pt", weights_only=False)["history"][0]
    plate_reader.train(out, epochs=2, reschedule=True, **kw)  # 4-epoch run shortened to 2
    state = torch.load(out / "last.pt", weights_only=False)
    assert state["epochs"] == 2 and [h["epoch"] for h in state["history"]] == [0, 1]
    kept = state["history"][0]
    assert (kept["sec"], kept["loss"]) == (first["sec"], first["loss"])  # epoch 0 was kept, not retrained
    plate_reader.train(out / "b", epochs=4, stop_after=1, **kw)
    first_b = torch.load(out / "b" / "last.pt", weights_only=False)["history"][0]
    plate_reader.train(out / "b", epochs=2, **kw)  # without reschedule: a fresh 2-epoch run
    fresh = torch.load(out / "b" / "last.pt", weights_only=False)["history"]
    assert fresh[0]["sec"] != first_b["sec"] and fresh[0]["lr"] != first_b["lr"]
    # the rescheduled run's LR ends where a 2-epoch schedule ends, not where the 4-epoch one was
    assert state["history"][1]["lr"] == pytest.approx(fresh[1]["lr"], rel=1e-6)
    assert first["lr"] != pytest.approx(fresh[0]["lr"], rel=1e-3)
