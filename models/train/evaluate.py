"""Evaluate an exported detector (ONNX, through edge.detectors.yolo) on a labelled dataset.

Inference is onnxruntime only (the same code the edge box runs), so the numbers describe
the shipped file, not a torch checkpoint. AP uses every score >= 0.001; precision/recall
are at the operating threshold `conf`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.detectors.yolo import OnnxYoloDetector
from edge.types import Detections
from models.train.common import REPO, load_recipe
from models.train.data import EvalSet, Sample, load_eval_set, training_images
from models.train.metrics import evaluate_class

AP_CONF = 0.001
VEHICLE_CLASSES = ("car", "bus", "truck", "van", "two_wheeler")


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot read image {path}")
    return np.asarray(img, np.uint8)


def _nms_merge(d: Detections, iou: float = 0.5) -> Detections:
    """Class-aware NMS across detections from overlapping crops (cascade mode)."""
    if len(d) < 2:
        return d
    keep: list[int] = []
    for c in np.unique(d.class_id):
        idx = np.flatnonzero(d.class_id == c)
        xywh = d.xyxy[idx].copy()
        xywh[:, 2:] -= xywh[:, :2]
        sel = cv2.dnn.NMSBoxes(xywh.tolist(), d.confidence[idx].tolist(), 0.0, iou)
        keep.extend(idx[np.asarray(sel, np.int64).reshape(-1)].tolist())
    return d[np.array(sorted(keep), np.int64)]


class Cascade:
    """vehicles on the whole image -> full-resolution vehicle crops -> plates (the edge's path)."""

    def __init__(self, vehicles: OnnxYoloDetector, plates: OnnxYoloDetector, margin: float = 0.05,
                 vehicle_conf: float = 0.25) -> None:
        self.vehicles, self.plates, self.margin, self.vehicle_conf = vehicles, plates, margin, vehicle_conf
        self.vehicle_ids = [i for i, n in vehicles.names.items() if n in VEHICLE_CLASSES]

    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        out = []
        for img, vd in zip(images, self.vehicles.detect_batch(images), strict=True):
            vd = vd.with_class(self.vehicle_ids)
            vd = vd[vd.confidence >= self.vehicle_conf]
            h, w = img.shape[:2]
            crops, offs = [], []
            for x1, y1, x2, y2 in vd.xyxy:
                mx, my = (x2 - x1) * self.margin, (y2 - y1) * self.margin
                a, b = int(max(0, x1 - mx)), int(max(0, y1 - my))
                c, e = int(min(w, x2 + mx)), int(min(h, y2 + my))
                if c - a >= 8 and e - b >= 8:
                    crops.append(img[b:e, a:c])
                    offs.append((a, b))
            parts = [d.offset(dx, dy) for d, (dx, dy) in zip(self.plates.detect_batch(crops), offs, strict=True)]
            out.append(_nms_merge(Detections.merge(parts)))
        return out


def _latency(det: OnnxYoloDetector, images: list[np.ndarray], batch: int = 8, rounds: int = 3) -> dict[str, Any]:
    """Wall time of detect() per image (batch 1) and detect_batch() of `batch` images, incl. pre/post."""
    imgs = (images * ((batch // max(len(images), 1)) + 1))[:batch]
    det.detect(imgs[0])
    t1 = []
    for _ in range(rounds):
        for im in imgs:
            t0 = time.perf_counter()
            det.detect(im)
            t1.append(time.perf_counter() - t0)
    old = det.batch
    det.batch = batch if det.dynamic_batch else det.batch
    tb = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        det.detect_batch(imgs)
        tb.append(time.perf_counter() - t0)
    det.batch = old
    return {"provider": det.provider, "input": list(det.input_size),
            "batch1_ms_per_image": round(float(np.median(t1)) * 1e3, 2),
            f"batch{batch}_ms_per_image": round(float(np.median(tb)) / batch * 1e3, 2),
            f"batch{batch}_ms_per_batch": round(float(np.median(tb)) * 1e3, 2),
            "source_image": f"{imgs[0].shape[1]}x{imgs[0].shape[0]}",
            "note": "median wall time of detect()/detect_batch() incl. letterbox + decode, this CPU"}


def _per_class(names: dict[int, str], preds: list[Detections], samples: list[Sample], conf: float,
               extra_groups: dict[str, tuple[list[int], list[int]]] | None = None) -> dict[str, Any]:
    """Per class (and per merged group: name -> (pred class ids, gt class ids)) metrics."""
    groups: dict[str, tuple[list[int], list[int]]] = {n: ([i], [i]) for i, n in names.items()}
    groups.update(extra_groups or {})
    res: dict[str, Any] = {}
    for gname, (pids, gids) in groups.items():
        pc = [(d.xyxy[np.isin(d.class_id, pids)], d.confidence[np.isin(d.class_id, pids)]) for d in preds]
        gc = [s.boxes[np.isin(s.classes, gids)] for s in samples]
        res[gname] = evaluate_class(pc, gc, conf).as_dict()
    return res


def _belt_classification(names: dict[int, str], preds: list[Detections], samples: list[Sample],
                         conf: float) -> dict[str, Any]:
    """Stock-photo persons labelled with/without seat belt: is a seatbelt box found inside each?"""
    if "seatbelt" not in names.values():
        return {}
    belt = next(i for i, n in names.items() if n == "seatbelt")
    cm = {"with_found": 0, "with_missed": 0, "without_found": 0, "without_clear": 0}
    for d, s in zip(preds, samples, strict=True):
        b = d[(d.class_id == belt) & (d.confidence >= conf)]
        centres = (b.xyxy[:, :2] + b.xyxy[:, 2:]) / 2
        for box, src in zip(s.boxes, s.source_classes, strict=True):
            if src not in ("Person_with_seatbelt", "Person_without_seatbelt"):
                continue
            inside = bool(((centres[:, 0] >= box[0]) & (centres[:, 0] <= box[2])
                           & (centres[:, 1] >= box[1]) & (centres[:, 1] <= box[3])).any())
            if src == "Person_with_seatbelt":
                cm["with_found" if inside else "with_missed"] += 1
            else:
                cm["without_found" if inside else "without_clear"] += 1
    n_with, n_without = cm["with_found"] + cm["with_missed"], cm["without_found"] + cm["without_clear"]
    if not n_with + n_without:
        return {}
    return {"rule": "person box counts as belted when a seatbelt detection's centre lies inside it",
            "confusion": cm,
            "belted_recall": round(cm["with_found"] / n_with, 4) if n_with else None,
            "unbelted_specificity": round(cm["without_clear"] / n_without, 4) if n_without else None,
            "accuracy": round((cm["with_found"] + cm["without_clear"]) / (n_with + n_without), 4)}


def _end_to_end_reads(preds: list[Detections], samples: list[Sample], images: list[Path], conf: float,
                      reader_path: Path) -> dict[str, Any]:
    """Find + read: a plate counts when a detection (score >= conf, IoU >= 0.5 with the GT box)
    is read exactly as the GT text by the plate reader on the crop (box + 5% margin)."""
    from edge.detectors.plate_reader import OnnxPlateReader
    from edge.types import box_iou

    reader = OnnxPlateReader(reader_path)
    found = read_ok = 0
    total = 0
    errors: list[dict[str, str]] = []
    for d, s, path in zip(preds, samples, images, strict=True):
        if not s.texts:
            continue
        img = _read(path)
        h, w = img.shape[:2]
        d = d[d.confidence >= conf]
        for gt, text in zip(s.boxes, s.texts, strict=True):
            total += 1
            if not len(d):
                continue
            iou = box_iou(gt[None], d.xyxy)[0]
            j = int(iou.argmax())
            if iou[j] < 0.5:
                continue
            found += 1
            x1, y1, x2, y2 = d.xyxy[j]
            mx, my = (x2 - x1) * 0.05, (y2 - y1) * 0.05
            crop = img[int(max(0, y1 - my)):int(min(h, y2 + my)), int(max(0, x1 - mx)):int(min(w, x2 + mx))]
            got = reader.read(crop).text
            if got == text:
                read_ok += 1
            elif len(errors) < 10:
                errors.append({"file": path.name[:40], "truth": text, "read": got})
    return {"reader": str(reader_path), "plates": total, "found": found, "found_and_read_exactly": read_ok,
            "end_to_end_exact_match": round(read_ok / total, 4) if total else None,
            "read_exact_given_found": round(read_ok / found, 4) if found else None, "errors": errors}


def evaluate_detector(name: str, model_path: Path, data: Path, *, conf: float = 0.25, plates_mode: str = "whole",
                      vehicles_model: Path | None = None, latency: bool = False, limit: int | None = None,
                      batch: int = 8, plate_reader: Path | None = None) -> dict[str, Any]:
    """Metrics of one exported detector on `data` (any supported label format) as a JSON-able dict."""
    det = OnnxYoloDetector(model_path, conf=AP_CONF, batch=batch)
    model_names = [det.names[i] for i in sorted(det.names)]
    try:
        recipe = load_recipe(name)
    except FileNotFoundError:
        exclude: set[Path] = set()
    else:  # never score images this model trained on (recipe real sets + local training runs)
        exclude = training_images(recipe)
        for run_ds in (REPO / "runs" / "models").glob(f"{name}*/dataset"):
            exclude |= training_images(recipe, run_dataset=run_ds)
    ev: EvalSet = load_eval_set(data, name, model_names, exclude)
    samples = ev.samples[:limit] if limit else ev.samples
    if not samples:
        raise ValueError(f"{data}: no images to evaluate")
    runner: Any = det
    mode = "whole image"
    if name == "plates" and plates_mode == "cascade":
        if vehicles_model is None or not Path(vehicles_model).is_file():
            raise FileNotFoundError(f"cascade mode needs the vehicles model ({vehicles_model})")
        runner = Cascade(OnnxYoloDetector(vehicles_model, conf=AP_CONF), det)
        mode = f"cascade: {Path(vehicles_model).name} (conf 0.25) -> crop +5% -> plates"
    t0 = time.perf_counter()
    preds: list[Detections] = []
    first_images: list[np.ndarray] = []
    for i in range(0, len(samples), batch):
        imgs = [_read(s.image) for s in samples[i:i + batch]]
        if len(first_images) < 8:
            first_images.extend(imgs[: 8 - len(first_images)])
        preds.extend(runner.detect_batch(imgs))
    elapsed = time.perf_counter() - t0
    extra: dict[str, tuple[list[int], list[int]]] = {}
    if name == "vehicles":
        vid = [i for i, n in det.names.items() if n in VEHICLE_CLASSES]
        extra["any_vehicle (class-agnostic)"] = (vid, vid)
    if name == "occupants" and any((s.classes == -1).any() for s in samples):
        occ = [i for i, n in det.names.items() if n in ("driver", "passenger")]
        extra["occupant (driver or passenger)"] = (occ, [-1])
    per_class = _per_class(det.names, preds, samples, conf, extra)
    unlabelled = sorted(n for i, n in det.names.items() if ev.labelled is not None and i not in ev.labelled)
    for n in unlabelled:  # the set never labels this class: its detections are neither right nor wrong
        per_class[n].update(precision=None, labelled=False)
    evaluated = {k: v for k, v in per_class.items() if v["instances"] and k in det.names.values()}

    def mean(key: str) -> float | None:
        vals = [v[key] for v in evaluated.values() if v[key] is not None]
        return round(float(np.mean(vals)), 4) if vals else None

    result: dict[str, Any] = {
        "model": name, "onnx": str(model_path), "provider": det.provider,
        "metadata": {k: det.metadata.get(k) for k in ("version", "imgsz", "data_hash", "epochs")},
        "data": str(data), "format": ev.format, "selection": ev.note, "mode": mode,
        "images": len(samples), "dropped_classes": ev.dropped_classes,
        "conf": conf, "iou_match": 0.5,
        "precision": mean("precision"), "recall": mean("recall"),
        "mAP50": mean("ap50"), "mAP50-95": mean("ap50_95"),
        "classes_in_mean": sorted(evaluated),
        "unlabelled_classes": unlabelled,
        "per_class": per_class,
        "eval_seconds": round(elapsed, 1),
    }
    if name == "occupants":
        belt = _belt_classification(det.names, preds, samples, conf)
        if belt:
            result["seatbelt_per_person"] = belt
    if (name == "plates" and plate_reader is not None and Path(plate_reader).is_file()
            and ev.format == "ccpd-labels-csv"):
        result["end_to_end"] = _end_to_end_reads(preds, samples, [s.image for s in samples], conf,
                                                 Path(plate_reader))
    if latency:
        result["latency"] = _latency(OnnxYoloDetector(model_path, batch=batch), first_images, batch)
    return result
