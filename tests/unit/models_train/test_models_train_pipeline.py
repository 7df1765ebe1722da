"""End-to-end pipeline check: a 1-epoch tiny training exports an ONNX with roadeye metadata
that the edge runtime loads, and `roadeye models eval` / `info` read it. Never touches models/."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import yaml
from click.testing import CliRunner

from edge.detectors.yolo import OnnxYoloDetector
from models.train.cli import evaluate, info, train

pytest.importorskip("ultralytics")


def _tiny_yolo_dataset(root: Path, names: list[str], n_train: int = 6, n_val: int = 3, size: int = 96) -> Path:
    """Bright rectangles (one per class) on dark noise, YOLO labels; deterministic."""
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
                colour = [(255, 255, 255), (0, 200, 255), (255, 80, 0), (0, 255, 0), (200, 0, 200), (90, 90, 255)]
                cv2.rectangle(img, (int(x), int(y)), (int(x + w), int(y + h)), colour[c % 6], -1)
                rows.append(f"{c} {(x + w / 2) / size:.5f} {(y + h / 2) / size:.5f} {w / size:.5f} {h / size:.5f}")
            cv2.imwrite(str(root / "images" / split / f"{i:03d}.jpg"), img)
            (root / "labels" / split / f"{i:03d}.txt").write_text("\n".join(rows) + "\n")
    (root / "data.yaml").write_text(yaml.safe_dump(
        {"path": str(root), "train": "images/train", "val": "images/val", "names": dict(enumerate(names))}))
    return root


@pytest.mark.slow
def test_quick_training_exports_runtime_loadable_onnx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "yolocfg"))
    data = _tiny_yolo_dataset(tmp_path / "tiny", ["plate"])
    out = tmp_path / "run"
    runner = CliRunner()
    res = runner.invoke(train, ["plates", "--quick", "--data", str(data), "--no-real", "--imgsz", "64",
                                "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    onnx_path = out / "plates.onnx"   # --quick never installs into models/
    assert onnx_path.is_file()
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert json.loads(meta["names"]) == {"0": "plate"}
    assert json.loads(meta["imgsz"]) == [64, 64]
    assert meta["roadeye_model"] == "plates" and meta["task"] == "detect" and meta["version"]
    assert len(meta["data_hash"]) == 64
    det = OnnxYoloDetector(onnx_path)
    assert det.end2end and det.dynamic_batch and det.names == {0: "plate"}
    imgs = [np.asarray(cv2.imread(str(p)), np.uint8) for p in sorted((data / "images" / "val").glob("*.jpg"))]
    assert len(det.detect_batch(imgs)) == len(imgs)

    res = runner.invoke(evaluate, ["plates", "--data", str(data), "--model", str(onnx_path), "--latency"],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["images"] == 9 and report["per_class"]["plate"]["instances"] == 9
    assert 0.0 <= report["mAP50"] <= 1.0 and report["latency"]["batch1_ms_per_image"] > 0

    res = runner.invoke(info, ["--dir", str(out), "--json"], catch_exceptions=False)
    rows = json.loads(res.output)
    assert rows[0]["roadeye_model"] == "plates" and rows[0]["data_hash"] == meta["data_hash"]
    # the training manifest hash is reproducible: same files -> same hash
    info_json = json.loads((out / "train_info.json").read_text())
    assert info_json["data_hash"] == meta["data_hash"]
    assert info_json["checkpoint"]["epoch"] == 1

    # --resume on a finished run re-exports from its checkpoint with the same data hash
    onnx_path.unlink()
    res = runner.invoke(train, ["plates", "--quick", "--resume", "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    meta2 = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert meta2["data_hash"] == meta["data_hash"] and json.loads(meta2["imgsz"]) == [64, 64]


def test_train_rejects_bad_data(tmp_path: Path) -> None:
    res = CliRunner().invoke(train, ["plates", "--quick", "--data", str(tmp_path), "--no-real",
                                     "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "data.yaml" in (res.output + str(res.exception))


def test_resume_without_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(train, ["plates", "--resume", "--out", str(tmp_path / "none")])
    assert res.exit_code != 0 and "no checkpoint" in res.output


def test_eval_requires_existing_model(tmp_path: Path) -> None:
    res = CliRunner().invoke(evaluate, ["plates", "--data", str(tmp_path), "--model", str(tmp_path / "x.onnx")])
    assert res.exit_code != 0 and "x.onnx" in res.output
