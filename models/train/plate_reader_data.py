"""Plate-reader datasets: the fixed real split, label readers and augmentation (no torch).

Kept free of torch so `evaluate` (onnxruntime only) can use the same label readers and
the same fixed split as training.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.detectors.plate_reader import CHARSET

Image = npt.NDArray[Any]  # BGR uint8 (cv2 stubs type results loosely)
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
REAL_CROPS = "plates-cn-crops"
REAL_SCENES = "plates-cn-scenes"


def datasets_root(override: Path | None = None) -> Path:
    """`override`, else $ROADEYE_DATASETS, else <repo>/../shared/datasets."""
    if override is not None:
        return Path(override)
    env = os.environ.get("ROADEYE_DATASETS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def imread(path: Path) -> Image:
    """cv2.imread that copes with non-ASCII (Chinese) file names."""
    img = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot decode image {path}")
    return img


@dataclass(frozen=True)
class RealSplit:
    """Fixed, deterministic split of `plates-cn-crops` by sha1 of salt + file name.

    A file is held back (never trained on, the reported test set) when its hash falls in
    the first `test_fraction` of the hash space; it depends only on the file name, so
    adding or removing files never moves another file between the parts. `val_fraction`
    of the rest is a monitoring subset for development runs (trained on in final runs).
    """

    salt: str = "roadeye-plate-reader-split-v1"
    test_fraction: float = 0.30
    val_fraction: float = 0.10

    def _u(self, name: str) -> float:
        h = hashlib.sha1((self.salt + "/" + name).encode("utf-8")).hexdigest()
        return int(h[:12], 16) / float(16**12)

    def part(self, name: str) -> str:
        """'test', 'val' or 'train' for a file name (not a path)."""
        u = self._u(name)
        if u < self.test_fraction:
            return "test"
        if u < self.test_fraction + self.val_fraction:
            return "val"
        return "train"

    def files(self, folder: Path, part: str) -> list[tuple[Path, str]]:
        """(path, text) pairs of the folder's labelled crops that fall in `part`.

        `part` is 'test', 'val', 'train', 'trainable' (train + val) or 'all'.
        """
        parts = {"trainable": {"train", "val"}, "all": {"train", "val", "test"}}.get(part, {part})
        if not parts <= {"train", "val", "test"}:
            raise ValueError(f"unknown split part {part!r}; use test, val, train, trainable or all")
        return [(p, t) for p, t in read_crop_labels(folder) if self.part(p.name) in parts]


REAL_SPLIT = RealSplit()


def text_from_name(stem: str) -> str:
    """Plate text from a crop file name: '皖A12345', '皖A12345_3', '00012_皖A12345' all work."""
    for token in sorted(stem.replace("-", "_").split("_"), key=len, reverse=True):
        if token and all(c in CHARSET for c in token) and len(token) >= 6:
            return token
    raise ValueError(f"cannot derive plate text from file name {stem!r} (expected e.g. 皖A12345.jpg)")


def read_crop_labels(folder: Path) -> list[tuple[Path, str]]:
    """(path, text) pairs from labels.csv (file,plate) or, without one, from file names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"plate crop folder not found: {folder}")
    labels = folder / "labels.csv"
    out: list[tuple[Path, str]] = []
    if labels.is_file():
        with labels.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            cols = set(reader.fieldnames or [])
            fcol = "file" if "file" in cols else "filename" if "filename" in cols else None
            tcol = next((c for c in ("plate", "text", "label") if c in cols), None)
            if fcol is None or tcol is None:
                raise ValueError(f"{labels}: needs columns file,plate (has {sorted(cols)})")
            for row in reader:
                out.append((folder / row[fcol], row[tcol].strip()))
    else:
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() in IMAGE_EXTS:
                out.append((p, text_from_name(p.stem)))
    if not out:
        raise ValueError(f"no labelled plate crops in {folder}")
    bad = [t for _, t in out if any(c not in CHARSET for c in t)]
    if bad:
        raise ValueError(f"{folder}: labels with characters outside the plate charset, e.g. {bad[:3]}")
    return out


def scene_quads(folder: Path) -> list[tuple[Path, str, npt.NDArray[np.float32]]]:
    """(image, text, 4x2 corners lt, rt, rb, lb) from plates-cn-scenes labels.csv."""
    rows = []
    with (Path(folder) / "labels.csv").open(encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            q = np.array([[r["lt_x"], r["lt_y"]], [r["rt_x"], r["rt_y"]], [r["rb_x"], r["rb_y"]],
                          [r["lb_x"], r["lb_y"]]], np.float32)
            rows.append((Path(folder) / r["file"], r["plate"], q))
    return rows


def rectify_quad(image: Image, quad: npt.NDArray[np.float32], out_h: int = 48,
                 margin: float = 0.04) -> Image:
    """Warp a plate quadrilateral (lt, rt, rb, lb) to an upright crop, keeping its aspect."""
    q = quad.astype(np.float32)
    w = float(max(np.linalg.norm(q[1] - q[0]), np.linalg.norm(q[2] - q[3])))
    h = float(max(np.linalg.norm(q[3] - q[0]), np.linalg.norm(q[2] - q[1])))
    out_w = max(8, round(out_h * w / max(h, 1.0)))
    mx, my = margin * out_w, margin * out_h
    dst = np.array([[mx, my], [out_w - 1 - mx, my], [out_w - 1 - mx, out_h - 1 - my],
                    [mx, out_h - 1 - my]], np.float32)
    m = cv2.getPerspectiveTransform(q, dst)
    return cv2.warpPerspective(image, m, (out_w, out_h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)


def is_real_crops(folder: Path) -> bool:
    """True for the real plates-cn-crops folder (its MANIFEST names it)."""
    man = Path(folder) / "MANIFEST.txt"
    return Path(folder).name == REAL_CROPS or (
        man.is_file() and f"datasets/{REAL_CROPS}" in man.read_text(encoding="utf-8", errors="ignore"))


def is_scenes(folder: Path) -> bool:
    """True for a CCPD-style scenes folder (labels.csv with the 4 corner columns)."""
    labels = Path(folder) / "labels.csv"
    if not labels.is_file():
        return False
    with labels.open(encoding="utf-8") as fh:
        header = fh.readline()
    return "lt_x" in header and "rb_y" in header


# ----------------------------------------------------------------------------- augmentation


class Augmenter:
    """Heavy photometric + geometric augmentation for plate crops (numpy / OpenCV).

    Geometry: random perspective of the corners and loose / tight framing (detector boxes
    are never exact). Photometry: brightness, contrast, gamma, hue rotation and channel
    shuffles (so blue / yellow / green plates share features), blur, motion blur, noise,
    low resolution and JPEG artefacts.
    """

    def __init__(self, rng: np.random.Generator, strength: float = 1.0) -> None:
        self.rng = rng
        self.s = strength

    def __call__(self, img: Image) -> Image:
        r = self.rng
        s = self.s
        h, w = img.shape[:2]
        # geometry: jitter corners of the source rectangle (negative = margin outside)
        jx, jy = 0.06 * s * w, 0.12 * s * h
        src = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
        src += r.uniform([-jx, -jy], [jx, jy], size=(4, 2)).astype(np.float32)
        if r.random() < 0.5:  # common framing offset (loose or tight box)
            src += r.uniform([-0.04 * w, -0.1 * h], [0.04 * w, 0.1 * h]).astype(np.float32)
        if r.random() < 0.3:  # small in-plane rotation
            ang = np.deg2rad(r.uniform(-6, 6) * s)
            c = src.mean(0)
            rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]], np.float32)
            src = (src - c) @ rot.T + c
        dst = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
        m = cv2.getPerspectiveTransform(src.astype(np.float32), dst)
        border = cv2.BORDER_REPLICATE if r.random() < 0.6 else cv2.BORDER_REFLECT
        img = cv2.warpPerspective(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=border)

        f = img.astype(np.float32)
        if r.random() < 0.25:
            f = f[:, :, r.permutation(3)]
        if r.random() < 0.3:
            hsv = cv2.cvtColor(np.clip(f, 0, 255).astype(np.uint8), cv2.COLOR_BGR2HSV).astype(np.int16)
            hsv[..., 0] = (hsv[..., 0] + int(r.integers(0, 180))) % 180
            f = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
        if r.random() < 0.1:
            f = 255.0 - f
        if r.random() < 0.15:
            g = f.mean(axis=2, keepdims=True)
            f = np.repeat(g, 3, axis=2)
        # contrast / brightness / gamma
        f = (f - 128.0) * r.uniform(1 - 0.45 * s, 1 + 0.3 * s) + 128.0 + r.uniform(-50, 50) * s
        f = np.clip(f, 0, 255)
        if r.random() < 0.4:
            f = 255.0 * (f / 255.0) ** r.uniform(0.6, 1.6)
        if r.random() < 0.3:  # uneven illumination / shadow band
            x = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
            f = f * (1.0 - r.uniform(0, 0.5) * np.clip((x - r.uniform(0, 1)) * r.choice([-4, 4]), 0, 1))
        img = np.clip(f, 0, 255).astype(np.uint8)
        # resolution / blur
        if r.random() < 0.35:
            k = r.uniform(0.3, 0.65)
            small = cv2.resize(img, (max(8, int(w * k)), max(4, int(h * k))), interpolation=cv2.INTER_AREA)
            img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        if r.random() < 0.25:
            sig = r.uniform(0.3, 1.2) * s
            img = cv2.GaussianBlur(img, (0, 0), sig)
        if r.random() < 0.15:
            n = int(r.integers(3, 7))
            line = np.zeros((n, n), np.float32)
            line[n // 2, :] = 1.0 / n
            rmat = cv2.getRotationMatrix2D((n / 2 - 0.5, n / 2 - 0.5), float(r.uniform(0, 180)), 1.0)
            kern: npt.NDArray[Any] = cv2.warpAffine(line, rmat, (n, n))
            img = cv2.filter2D(img, -1, kern / max(float(kern.sum()), 1e-6))
        if r.random() < 0.35:
            noise = r.normal(0, r.uniform(2, 14) * s, img.shape)
            img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        if r.random() < 0.5:
            ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(r.integers(15, 90))])
            dec = cv2.imdecode(enc, cv2.IMREAD_COLOR) if ok else None
            if dec is not None:
                img = dec
        return img


def batches(items: list[tuple[Image, str]], n: int) -> Iterator[list[tuple[Image, str]]]:
    """Consecutive chunks of `items` of size `n`."""
    for i in range(0, len(items), n):
        yield items[i : i + n]
