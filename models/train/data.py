"""Read labelled detection datasets in their native formats and prepare YOLO training folders.

Formats read (all become `Sample`s with pixel xyxy boxes and *model* class ids):
* YOLO: a `data.yaml` + `<split>/images`, `<split>/labels` (our renders, vehicles-cctv,
  occupants-seatbelt-*), or a bare folder with `images/` + `labels/`;
* plates-cn-scenes: `labels.csv` (file, plate, x1, y1, x2, y2, ...);
* plates-intl-scenes: one tab-separated txt per image: `file x y w h text` (x, y top-left).

Dataset class names are mapped to model classes through `CLASS_ALIASES`; classes with no
counterpart (e.g. vehicles-cctv `people`) are dropped and reported, never silently renamed.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml

from models.train.common import Recipe, datasets_root

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

#: dataset class name -> model class name, per model (the model's own names map to themselves)
CLASS_ALIASES: dict[str, dict[str, str]] = {
    "vehicles": {"biker": "two_wheeler", "cyclist": "two_wheeler", "motorcycle": "two_wheeler",
                 "bicycle": "two_wheeler", "motorbike": "two_wheeler"},
    "plates": {"license_plate": "plate", "licence_plate": "plate", "lp": "plate"},
    "occupants": {"seat_belt": "seatbelt", "Cellphone_calling": "phone", "Cellphone_texting": "phone",
                  # stock-photo person boxes: scored as "any occupant" (driver or passenger)
                  "Person_with_seatbelt": "occupant", "Person_without_seatbelt": "occupant"},
}


@dataclass
class Sample:
    """One labelled image: boxes in pixels (xyxy), model class ids, and extra per-box info."""

    image: Path
    boxes: np.ndarray                 # (N, 4) float32 xyxy pixels
    classes: np.ndarray               # (N,) int64 model class id (-1 = "occupant" pseudo-class)
    source_classes: list[str] = field(default_factory=list)   # dataset class name per box
    texts: list[str] = field(default_factory=list)            # plate text per box where known


@dataclass
class EvalSet:
    """Samples plus how they were chosen (goes into the JSON report)."""

    name: str
    format: str
    samples: list[Sample]
    dropped_classes: dict[str, int] = field(default_factory=dict)
    note: str = ""
    #: model class ids this dataset labels (others are unlabelled here: no precision can be scored)
    labelled: set[int] | None = None


def holdout_of(name: str, fraction: float) -> bool:
    """Fixed split: True when `name` (a file name) falls in the held-back `fraction`."""
    if fraction <= 0:
        return False
    h = int.from_bytes(hashlib.sha1(name.encode()).digest()[:4], "big")
    return (h % 10_000) < fraction * 10_000


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file (decodes it; fine at evaluation scale)."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"cannot read image {path}")
    return int(img.shape[0]), int(img.shape[1])


def read_yolo_label(path: Path) -> list[tuple[int, float, float, float, float]]:
    """YOLO txt rows (cls, cx, cy, w, h) normalised; polygon rows become their bounding box."""
    rows: list[tuple[int, float, float, float, float]] = []
    if not path.is_file():
        return rows
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            vals = [float(p) for p in parts]
        except ValueError as exc:
            raise ValueError(f"{path}:{n}: not a YOLO label row: {line!r}") from exc
        cls = int(vals[0])
        if len(vals) == 5:
            rows.append((cls, vals[1], vals[2], vals[3], vals[4]))
        elif len(vals) >= 7 and len(vals) % 2 == 1:  # segment polygon
            xs, ys = np.array(vals[1::2]), np.array(vals[2::2])
            rows.append((cls, float(xs.min() + xs.max()) / 2, float(ys.min() + ys.max()) / 2,
                         float(xs.max() - xs.min()), float(ys.max() - ys.min())))
        else:
            raise ValueError(f"{path}:{n}: expected 5 values (cls cx cy w h), got {len(vals)}")
    return rows


def label_path_for(image: Path) -> Path:
    """ultralytics convention: .../images/x.jpg -> .../labels/x.txt."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS) if folder.is_dir() else []


def read_names(data_yaml: Path) -> list[str]:
    data = yaml.safe_load(data_yaml.read_text()) or {}
    names = data.get("names")
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names, key=int)]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise ValueError(f"{data_yaml}: no 'names' list or dict")


def yolo_image_dirs(root: Path) -> list[Path]:
    """Every folder holding images of a YOLO dataset: images/, images/<split>/, <split>/images/."""
    cands = [root / "images", *root.glob("images/*"), *root.glob("*/images"), *root.glob("*/images/*")]
    return sorted({p for p in cands if p.is_dir() and list_images(p)})


def class_mapper(model: str, model_names: list[str], dataset_names: list[str]) -> dict[int, int | None]:
    """Dataset class index -> model class index (-1 = 'occupant' pseudo-class, None = dropped)."""
    aliases = CLASS_ALIASES.get(model, {})
    out: dict[int, int | None] = {}
    for i, n in enumerate(dataset_names):
        target = n if n in model_names else aliases.get(n)
        if target == "occupant":
            out[i] = -1
        else:
            out[i] = model_names.index(target) if target in model_names else None
    return out


def training_images(recipe: Recipe, root: Path | None = None, run_dataset: Path | None = None) -> set[Path]:
    """Images this model trained on (so evaluation can exclude them): the recipe's real sets, plus
    every image linked into a local training folder (`run_dataset`, e.g. runs/models/<name>/dataset)."""
    root = root or datasets_root()
    used: set[Path] = set()
    for rs in recipe.real:
        for img in list_images(root / rs.dataset / rs.images):
            if not holdout_of(img.name, rs.holdout):
                used.add(img.resolve())
    if run_dataset is not None:
        used.update(p.resolve() for p in list_images(run_dataset / "images" / "train"))
    return used


def load_yolo(path: Path, model: str, model_names: list[str], exclude: set[Path]) -> EvalSet:
    root = path.parent if path.is_file() else path
    data_yaml = path if path.is_file() else root / "data.yaml"
    if not data_yaml.is_file():
        raise ValueError(f"{root}: no data.yaml (needed for the class names of a YOLO dataset)")
    ds_names = read_names(data_yaml)
    cmap = class_mapper(model, model_names, ds_names)
    if all(v is None for v in cmap.values()):
        raise ValueError(
            f"{data_yaml}: none of its classes {ds_names} maps to the {model} classes {model_names}")
    samples: list[Sample] = []
    dropped: dict[str, int] = {}
    skipped = 0
    dirs = yolo_image_dirs(root)
    if not dirs:
        raise ValueError(f"{root}: no images/ or <split>/images/ folder")
    for d in dirs:
        for img in list_images(d):
            if img.resolve() in exclude:
                skipped += 1
                continue
            h, w = image_size(img)
            boxes, classes, src = [], [], []
            for c, cx, cy, bw, bh in read_yolo_label(label_path_for(img)):
                name = ds_names[c] if 0 <= c < len(ds_names) else str(c)
                m = cmap.get(c)
                if m is None:
                    dropped[name] = dropped.get(name, 0) + 1
                    continue
                boxes.append([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])
                classes.append(m)
                src.append(name)
            samples.append(Sample(img, np.array(boxes, np.float32).reshape(-1, 4),
                                  np.array(classes, np.int64), src))
    note = f"all images under {', '.join(str(d.relative_to(root)) for d in dirs)}"
    if skipped:
        note += f" except the {skipped} this model's recipe trains on"
    labelled = {v for v in cmap.values() if v is not None and v >= 0}
    return EvalSet(root.name, "yolo", samples, dropped, note, labelled)


def load_cn_scenes(root: Path) -> EvalSet:
    samples = []
    with (root / "labels.csv").open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            box = [float(row[k]) for k in ("x1", "y1", "x2", "y2")]
            samples.append(Sample(root / row["file"], np.array([box], np.float32), np.zeros(1, np.int64),
                                  ["plate"], [row["plate"]]))
    return EvalSet(root.name, "ccpd-labels-csv", samples, note="labels.csv, one plate per image", labelled={0})


def _intl_txt_files(root: Path) -> Iterator[Path]:
    """Per-image label txt files (x.txt beside x.jpg) in root or its endtoend_* subsets."""
    for folder in (root, *sorted(root.glob("endtoend_*"))):
        for txt in sorted(folder.glob("*.txt")):
            if any(txt.with_suffix(ext).is_file() for ext in IMAGE_EXTS):
                yield txt


def load_intl_scenes(root: Path) -> EvalSet:
    samples = []
    for txt in _intl_txt_files(root):
        for line in txt.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.strip().split("\t") if "\t" in line else line.split()
            if len(parts) < 5:
                continue
            try:
                x, y, w, h = (float(v) for v in parts[1:5])
            except ValueError as exc:
                raise ValueError(f"{txt}: expected 'file x y w h text', got {line!r}") from exc
            img = txt.parent / parts[0]
            if not img.is_file():
                raise ValueError(f"{txt}: image {parts[0]} does not exist")
            text = parts[5] if len(parts) > 5 else ""
            samples.append(Sample(img, np.array([[x, y, x + w, y + h]], np.float32), np.zeros(1, np.int64),
                                  ["plate"], [text]))
    if not samples:
        raise ValueError(f"{root}: no 'file x y w h text' txt files found")
    subsets = sorted({s.image.parent.name for s in samples})
    return EvalSet(root.name, "openalpr-endtoend-txt", samples, note=f"subsets {subsets}", labelled={0})


def load_eval_set(path: Path, model: str, model_names: list[str], exclude: Iterable[Path] = ()) -> EvalSet:
    """Detect the label format of `path` and load it for `model` evaluation."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"dataset not found: {path}")
    if path.is_dir() and (path / "labels.csv").is_file() and not yolo_image_dirs(path):
        header = (path / "labels.csv").read_text(encoding="utf-8").splitlines()[0]
        if "x1" in header:
            if model != "plates":
                raise ValueError(f"{path} holds plate boxes; evaluate it with the 'plates' model")
            return load_cn_scenes(path)
        raise ValueError(f"{path}/labels.csv has no boxes (a crop set: evaluate it with plate_reader)")
    if path.is_dir() and not (path / "data.yaml").exists() and next(_intl_txt_files(path), None):
        if model != "plates":
            raise ValueError(f"{path} holds plate boxes; evaluate it with the 'plates' model")
        return load_intl_scenes(path)
    return load_yolo(path, model, model_names, {Path(p).resolve() for p in exclude})


# ------------------------------------------------------------------------------------------------
# training folders


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    os.symlink(src.resolve(), dst)


def add_real_set(recipe: Recipe, rs_index: int, out: Path, root: Path | None = None) -> int:
    """Symlink a real set's training images into `out/{images,labels}/train` with remapped labels."""
    rs = recipe.real[rs_index]
    root = root or datasets_root()
    base = root / rs.dataset
    src_dir = base / rs.images
    if not src_dir.is_dir():
        raise FileNotFoundError(f"real training set {rs.dataset}: {src_dir} is missing")
    ds_names = read_names(base / "data.yaml")
    unknown = set(rs.class_map) - set(ds_names)
    if unknown:
        raise ValueError(f"{rs.dataset}: class_map names {sorted(unknown)} not in its data.yaml {ds_names}")
    bad = set(rs.class_map.values()) - set(recipe.classes)
    if bad:
        raise ValueError(f"{rs.dataset}: class_map targets {sorted(bad)} are not {recipe.name} classes")
    n = 0
    for img in list_images(src_dir):
        if holdout_of(img.name, rs.holdout):
            continue
        rows = []
        for c, cx, cy, w, h in read_yolo_label(label_path_for(img)):
            target = rs.class_map.get(ds_names[c]) if 0 <= c < len(ds_names) else None
            if target is not None:
                rows.append(f"{recipe.classes.index(target)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
        for r in range(rs.repeat):
            stem = f"real_{rs.dataset}_{r}_{img.stem}"
            _link(img, out / "images" / "train" / f"{stem}{img.suffix.lower()}")
            (out / "labels" / "train" / f"{stem}.txt").write_text("\n".join(rows) + ("\n" if rows else ""))
            n += 1
    return n


def split_dirs(data_yaml: Path, key: str) -> list[Path]:
    """Image folders of split `key` ('train' / 'val' / 'test') of an ultralytics data.yaml."""
    data = yaml.safe_load(data_yaml.read_text()) or {}
    value = data.get(key)
    if value is None:
        return []
    base = Path(data.get("path") or data_yaml.parent)
    if not base.is_absolute():
        base = (data_yaml.parent / base).resolve()
    items = value if isinstance(value, list) else [value]
    dirs = []
    for item in items:
        p = Path(item)
        p = p if p.is_absolute() else base / p
        if not p.is_dir() and (data_yaml.parent / item).is_dir():
            p = data_yaml.parent / item
        if not p.is_dir():
            raise FileNotFoundError(f"{data_yaml}: split {key!r} folder {p} is missing")
        dirs.append(p)
    return dirs


def add_yolo_split(data_yaml: Path, key: str, out: Path, split: str, prefix: str, names: list[str],
                   limit: int | None = None) -> int:
    """Symlink split `key` of a YOLO dataset (e.g. our renders) into out/{images,labels}/<split>."""
    src_names = read_names(data_yaml)
    if src_names != names:
        raise ValueError(f"{data_yaml}: class names {src_names} differ from the model's {names}")
    n = 0
    for d in split_dirs(data_yaml, key):
        for img in list_images(d):
            if limit is not None and n >= limit:
                return n
            stem = f"{prefix}_{img.stem}"
            _link(img, out / "images" / split / f"{stem}{img.suffix.lower()}")
            lbl = label_path_for(img)
            (out / "labels" / split / f"{stem}.txt").write_text(lbl.read_text() if lbl.is_file() else "")
            n += 1
    return n


def manifest_hash(train_root: Path) -> str:
    """sha256 over (file name, image sha256, label sha256) of every training image: the data_hash."""
    h = hashlib.sha256()
    img_dir = train_root / "images" / "train"
    for img in list_images(img_dir):
        lbl = train_root / "labels" / "train" / f"{img.stem}.txt"
        h.update(img.name.encode())
        h.update(hashlib.sha256(img.read_bytes()).digest())
        h.update(hashlib.sha256(lbl.read_bytes() if lbl.is_file() else b"").digest())
    return h.hexdigest()


def write_data_yaml(train_root: Path, names: list[str]) -> Path:
    path = train_root / "data.yaml"
    path.write_text(yaml.safe_dump({
        "path": str(train_root.resolve()),
        "train": "images/train",
        "val": "images/val",
        "names": dict(enumerate(names)),
    }, allow_unicode=True, sort_keys=False))
    return path
