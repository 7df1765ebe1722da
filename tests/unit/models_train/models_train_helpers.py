"""Shared fixtures of the training tests: a tiny deterministic YOLO dataset."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml


def tiny_yolo_dataset(root: Path, names: list[str], n_train: int = 6, n_val: int = 3, size: int = 96) -> Path:
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
