"""End-to-end pipeline check: a 1-epoch tiny training exports an ONNX with roadeye metadata
that the edge runtime loads, and `roadeye models eval` / `info` read it. Never touches models/."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from edge.detectors.yolo import OnnxYoloDetector
from models.train.cli import evaluate, info, train
from tests.unit.models_train.models_train_helpers import tiny_yolo_dataset

pytest.importorskip("ultralytics")


@pytest.mark.slow
def test_quick_training_exports_runtime_loadable_onnx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "yolocfg"))
    data = tiny_yolo_dataset(tmp_path / "tiny", ["plate"])
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
