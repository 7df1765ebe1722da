"""`roadeye models train --init CKPT` must continue from our own weights, not restart from random ones.

Regression: ultralytics rebuilds the model with random weights when `pretrained=False` is passed even
though the model was loaded from a checkpoint, and `YOLO(yaml).load(ckpt)` leaves the class head
untransferred; a continued run then silently trained from scratch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from models.train.cli import train
from tests.unit.models_train.models_train_helpers import tiny_yolo_dataset

pytest.importorskip("ultralytics")


def _flat(ckpt: Path) -> torch.Tensor:
    ck = torch.load(str(ckpt), map_location="cpu", weights_only=False)
    model = ck.get("ema") or ck["model"]
    return torch.cat([v.detach().float().flatten() for k, v in model.state_dict().items()
                      if v.dtype.is_floating_point and "running" not in k])


@pytest.mark.slow
def test_init_continues_from_checkpoint_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "yolocfg"))
    data = tiny_yolo_dataset(tmp_path / "tiny", ["plate"])
    runner = CliRunner()
    first = tmp_path / "first"
    res = runner.invoke(train, ["plates", "--quick", "--data", str(data), "--no-real", "--imgsz", "64",
                                "--out", str(first)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    init = first / "run" / "weights" / "last.pt"

    second = tmp_path / "second"
    res = runner.invoke(train, ["plates", "--quick", "--data", str(data), "--no-real", "--imgsz", "64",
                                "--init", str(init), "--seed", "1", "--out", str(second)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    a, b = _flat(init), _flat(second / "run" / "weights" / "last.pt")
    assert a.shape == b.shape
    # one tiny epoch moves the weights a little; a random restart would leave them uncorrelated (~0)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=0).item()
    assert cos > 0.9, f"continued run does not start from --init weights (cosine {cos:.3f})"

    # a checkpoint with other classes is refused with an error naming both class lists
    occ = tiny_yolo_dataset(tmp_path / "occ", ["driver", "passenger", "seatbelt", "phone", "face"], n_train=2, n_val=1)
    res = runner.invoke(train, ["occupants", "--quick", "--data", str(occ), "--no-real", "--imgsz", "64",
                                "--init", str(init), "--out", str(tmp_path / "bad")])
    assert res.exit_code != 0
    assert "--init" in res.output and "plate" in res.output and "driver" in res.output


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({}, {"optimizer": "AdamW", "lr0": 1e-3}),                                # recipe silent: AdamW 1e-3
    ({"optimizer": "auto", "lr0": 4e-4}, {"optimizer": "AdamW", "lr0": 4e-4}),  # auto would ignore lr0
    ({"optimizer": "AdamW", "lr0": 2e-3}, {}),                                # pinned by the recipe: kept
    ({"optimizer": "SGD"}, {}),
])
def test_continued_run_never_gets_optimizer_auto(kwargs: dict[str, object], expected: dict[str, object]) -> None:
    from models.train.yolo_train import continued_optimizer

    assert continued_optimizer(kwargs) == expected
