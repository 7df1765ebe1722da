"""`roadeye models train --init CKPT` must continue from our own weights, not restart from random ones.

Regression: ultralytics rebuilds the model with random weights when `pretrained=False` is passed even
though the model was loaded from a checkpoint, and `YOLO(yaml).load(ckpt)` leaves the class head
untransferred; a continued run then silently trained from scratch."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from models.train.cli import train

pytest.importorskip("ultralytics")


def _tiny_dataset(root: Path, names: list[str], n_train: int = 6, n_val: int = 3, size: int = 96) -> Path:
    """Bright rectangles (one per class) on dark noise with YOLO labels; deterministic."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            rows = []
            for c in range(len(names)):
                w, h = rng.integers(14, 30, 2)
                x, y = rng.integers(0, size - w), rng.integers(0, size - h)
                colour = (int(255 - 40 * c), int(60 * c % 256), int(120 + 30 * c))
                cv2.rectangle(img, (int(x), int(y)), (int(x + w), int(y + h)), colour, -1)
                rows.append(f"{c} {(x + w / 2) / size:.5f} {(y + h / 2) / size:.5f} {w / size:.5f} {h / size:.5f}")
            cv2.imwrite(str(root / "images" / split / f"{i:03d}.jpg"), img)
            (root / "labels" / split / f"{i:03d}.txt").write_text("\n".join(rows) + "\n")
    (root / "data.yaml").write_text(yaml.safe_dump(
        {"path": str(root), "train": "images/train", "val": "images/val", "names": dict(enumerate(names))}))
    return root


def _flat(ckpt: Path) -> torch.Tensor:
    ck = torch.load(str(ckpt), map_location="cpu", weights_only=False)
    model = ck.get("ema") or ck["model"]
    return torch.cat([v.detach().float().flatten() for k, v in model.state_dict().items()
                      if v.dtype.is_floating_point and "running" not in k])


@pytest.mark.slow
def test_init_continues_from_checkpoint_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "yolocfg"))
    data = _tiny_dataset(tmp_path / "tiny", ["plate"])
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
    occ = _tiny_dataset(tmp_path / "occ", ["driver", "passenger", "seatbelt", "phone", "face"], n_train=2, n_val=1)
    res = runner.invoke(train, ["occupants", "--quick", "--data", str(occ), "--no-real", "--imgsz", "64",
                                "--init", str(init), "--out", str(tmp_path / "bad")])
    assert res.exit_code != 0
    assert "--init" in res.output and "plate" in res.output and "driver" in res.output
