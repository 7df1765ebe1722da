"""Continuing a released model from its committed ONNX file (no .pt survives a new machine).

The rebuilt checkpoint must compute what the ONNX file computes (fused Conv+BN split back
with calibrated statistics), and `roadeye models train --init X.onnx` must start from it."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("ultralytics")
import torch
import yaml
from click.testing import CliRunner

from models.train.cli import train
from models.train.onnx_init import checkpoint_from_onnx
from tests.unit.models_train.models_train_helpers import tiny_yolo_dataset

REPO = Path(__file__).resolve().parents[3]
PLATES = REPO / "models" / "plates.onnx"
OCCUPANTS = REPO / "models" / "occupants.onnx"
OCC_NAMES = {0: "driver", 1: "passenger", 2: "seatbelt", 3: "phone", 4: "face"}


def _weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([v.detach().float().flatten() for k, v in model.state_dict().items()
                      if v.dtype.is_floating_point and "running" not in k and ".bn." not in k])


@pytest.mark.skipif(not OCCUPANTS.is_file(), reason="models/occupants.onnx not committed")
def test_rebuilt_checkpoint_matches_onnx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "yolocfg"))
    data = tiny_yolo_dataset(tmp_path / "d", list(OCC_NAMES.values()), n_train=8, n_val=1, size=128)
    images = sorted((data / "images" / "train").glob("*.jpg"))
    out = tmp_path / "occ.pt"
    s = checkpoint_from_onnx(OCCUPANTS, "yolo26n.yaml", OCC_NAMES, images, out)
    assert s["max_score_diff_vs_onnx"] < 1e-3
    assert s["bn_calibrated"] > 50 and s["calibration_images"] == 8
    ck = torch.load(str(out), map_location="cpu", weights_only=False)
    assert ck["model"].names == OCC_NAMES
    bns = [m for m in ck["model"].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    # statistics come from the images, not the identity placeholder (mean 0, var 1)
    assert sum(float(m.running_var.mean()) != pytest.approx(1.0) for m in bns) > len(bns) // 2
    # the one-to-many head training also uses starts as the exported one-to-one head
    sd = ck["model"].state_dict()
    twin = next(k for k in sd if ".one2one_cv3." in k and k.endswith("conv.weight"))
    assert torch.equal(sd[twin], sd[twin.replace(".one2one_", ".")])


@pytest.mark.skipif(not OCCUPANTS.is_file(), reason="models/occupants.onnx not committed")
def test_wrong_class_count_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "yolocfg"))
    with pytest.raises(ValueError, match="in ONNX"):
        checkpoint_from_onnx(OCCUPANTS, "yolo26n.yaml", {0: "plate"}, [], tmp_path / "x.pt")


@pytest.mark.slow
@pytest.mark.skipif(not PLATES.is_file(), reason="models/plates.onnx not committed")
def test_train_init_from_onnx_continues_its_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "yolocfg"))
    data = tiny_yolo_dataset(tmp_path / "tiny", ["plate"])
    out = tmp_path / "run"
    res = CliRunner().invoke(train, ["plates", "--quick", "--data", str(data), "--no-real", "--imgsz", "64",
                                     "--init", str(PLATES), "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    start = torch.load(str(out / "init_from_plates.pt"), map_location="cpu", weights_only=False)["model"]
    end_ck = torch.load(str(out / "run" / "weights" / "last.pt"), map_location="cpu", weights_only=False)
    end = end_ck.get("ema") or end_ck["model"]
    a, b = _weights(start), _weights(end)
    assert a.shape == b.shape
    cos = torch.nn.functional.cosine_similarity(a, b, dim=0).item()
    assert cos > 0.9, f"training did not continue from the ONNX weights (cosine {cos:.3f})"


def _bn_stats(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([torch.cat([m.running_mean.flatten(), m.running_var.flatten()])
                      for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)])


@pytest.mark.slow
@pytest.mark.skipif(not PLATES.is_file(), reason="models/plates.onnx not committed")
@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_bn_keeps_the_rebuilt_statistics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                freeze: bool) -> None:
    """--freeze-bn: the statistics re-estimated from the ONNX file survive training (without it, train
    mode moves them towards the batch statistics); the weights themselves train either way."""
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "yolocfg"))
    data = tiny_yolo_dataset(tmp_path / "tiny", ["plate"])
    out = tmp_path / "run"
    res = CliRunner().invoke(train, ["plates", "--quick", "--data", str(data), "--no-real", "--imgsz", "64",
                                     "--init", str(PLATES), "--out", str(out),
                                     *(["--freeze-bn", "--square"] if freeze else [])],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    start = torch.load(str(out / "init_from_plates.pt"), map_location="cpu", weights_only=False)["model"]
    end = torch.load(str(out / "run" / "weights" / "last.pt"), map_location="cpu", weights_only=False)["model"]
    a, b = _bn_stats(start).float(), _bn_stats(end).float()
    moved = float(((a - b).abs() / (a.abs() + 1e-2)).max())  # the checkpoint is saved in float16
    if freeze:
        assert moved < 2e-3
    else:
        assert moved > 2e-2
    assert not torch.equal(_weights(start).float(), _weights(end).float())
    # --square: shuffled square batches instead of the recipe's rect ones
    assert yaml.safe_load((out / "run" / "args.yaml").read_text())["rect"] is (not freeze)


def test_freeze_batchnorm_sets_only_the_norm_layers_to_eval() -> None:
    from types import SimpleNamespace

    from models.train.yolo_train import freeze_batchnorm

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.SiLU())
    net.train()
    before = net[1].running_mean.clone()
    freeze_batchnorm(SimpleNamespace(model=net))
    assert net[0].training and not net[1].training
    net(torch.randn(2, 3, 8, 8) + 5.0)
    assert torch.equal(net[1].running_mean, before)


def test_freeze_bn_is_refused_for_the_plate_reader() -> None:
    res = CliRunner().invoke(train, ["plate_reader", "--quick", "--freeze-bn"])
    assert res.exit_code == 2 and "--freeze-bn and --square apply to the YOLO models" in res.output
