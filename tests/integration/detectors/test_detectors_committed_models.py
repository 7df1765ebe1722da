"""The committed detectors (models/*.onnx): load through the edge runtime, carry the contract
metadata, and pass an accuracy smoke test on fixed renders and, where present, real images.

Thresholds sit well under the measured numbers in models/cards/*.md: they catch a broken or
swapped model (wrong classes, wrong preprocessing), not a small regression.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from edge.detectors import stale_twin
from edge.detectors.yolo import OnnxYoloDetector
from edge.types import box_iou

REPO = Path(__file__).resolve().parents[3]
DATASETS = Path(os.environ.get("ROADEYE_DATASETS", REPO.parent / "shared" / "datasets"))
CONTRACT = {
    "vehicles": ["car", "bus", "truck", "van", "two_wheeler", "windshield"],
    "plates": ["plate"],
    "occupants": ["driver", "passenger", "seatbelt", "phone", "face"],
}
#: (render seed, images, classes scored, minimum recall at IoU 0.5 and conf 0.25)
SMOKE = {
    "vehicles": (4242, 6, ["car", "windshield"], 0.5),
    "plates": (4242, 12, ["plate"], 0.6),
    "occupants": (4242, 12, ["driver", "face"], 0.6),
}


def _model(name: str) -> Path:
    path = REPO / "models" / f"{name}.onnx"
    if not path.is_file():
        pytest.skip(f"{path} not committed")
    return path


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_model_loads_with_contract_metadata(name: str) -> None:
    det = OnnxYoloDetector(_model(name))
    assert det.provider == "CPUExecutionProvider" or det.provider.endswith("ExecutionProvider")
    assert [det.names[i] for i in sorted(det.names)] == CONTRACT[name]
    meta = det.metadata
    for key in ("names", "imgsz", "version", "task", "data_hash", "roadeye_model"):
        assert meta.get(key), f"{name}.onnx lacks metadata {key!r}"
    assert json.loads(meta["names"]) == {str(i): n for i, n in enumerate(CONTRACT[name])}
    assert meta["roadeye_model"] == name and meta["task"] == "detect"
    assert len(meta["data_hash"]) == 64 and int(meta["data_hash"], 16) >= 0
    h, w = json.loads(meta["imgsz"])
    assert det.input_size == (h, w) and 160 <= h <= 1280
    assert det.end2end and det.dynamic_batch
    # batched and single inference agree
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (200 + 40 * i, 300, 3), dtype=np.uint8) for i in range(3)]
    batched = det.detect_batch(imgs)
    for img, b in zip(imgs, batched, strict=True):
        s = det.detect(img)
        assert len(s) == len(b)
        np.testing.assert_allclose(s.xyxy, b.xyxy, atol=0.5)


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_committed_int8_twin_belongs_to_its_float_file(name: str) -> None:
    """Releasing a new float file without re-quantizing leaves a twin of the old weights (the edge
    would then fall back to float with a warning); catch it before it lands."""
    twin = REPO / "models" / f"{name}.int8.onnx"
    if not twin.is_file():
        pytest.skip(f"{twin} not committed")
    det = OnnxYoloDetector(twin)
    assert stale_twin(det.metadata, _model(name)) is None
    assert det.metadata["version"] == OnnxYoloDetector(_model(name)).metadata["version"] + "+int8"


def _recall(det: OnnxYoloDetector, samples: list[tuple[np.ndarray, list[tuple[int, tuple[float, ...]]]]],
            classes: list[str]) -> dict[str, float]:
    ids = {n: i for i, n in det.names.items()}
    hits = {c: 0 for c in classes}
    total = {c: 0 for c in classes}
    for (_img, labels), d in zip(samples, det.detect_batch([s[0] for s in samples]), strict=True):
        for c in classes:
            gt = np.array([b for k, b in labels if k == ids[c]], np.float32).reshape(-1, 4)
            pred = d.with_class(ids[c])
            total[c] += len(gt)
            if len(gt) and len(pred):
                hits[c] += int((box_iou(gt, pred.xyxy).max(axis=1) >= 0.5).sum())
    return {c: hits[c] / total[c] for c in classes if total[c]}


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_model_finds_objects_on_fixed_renders(name: str) -> None:
    path = _model(name)
    synth = pytest.importorskip("models.synth.datasets")
    seed, n, classes, minimum = SMOKE[name]
    sample = getattr(synth, f"{name}_sample")
    samples = [sample(seed, i) for i in range(n)]
    rec = _recall(OnnxYoloDetector(path, conf=0.25), samples, classes)
    assert rec, "the fixed renders hold none of the scored classes"
    for c, r in rec.items():
        assert r >= minimum, f"{name}: recall of {c} on fixed renders {r:.2f} < {minimum}"


@pytest.mark.realdata
def test_plates_model_on_real_ccpd_scenes() -> None:
    path = _model("plates")
    root = DATASETS / "plates-cn-scenes"
    if not (root / "labels.csv").is_file():
        pytest.skip(f"{root} absent")
    from models.train.evaluate import evaluate_detector

    res = evaluate_detector("plates", path, root, conf=0.1)  # card: recall 0.94 at conf 0.1 (all 50)
    assert res["images"] == 50 and res["per_class"]["plate"]["instances"] == 50
    assert res["recall"] is not None and res["recall"] >= 0.7, res["per_class"]
