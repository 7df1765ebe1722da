"""YOLO datasets for the roadeye cascade, rendered from random shots.

- vehicles: full frames (rendered natively at `width`, default 1280, i.e. a downscaled 9 MP
  view), classes car, bus, truck, van, two_wheeler, windshield.
- plates: full-resolution vehicle crops (as the edge crops detector boxes), class plate.
- occupants: full-resolution windshield crops, classes driver, passenger, seatbelt, phone, face.
- plate_text: degraded plate crops named by their text + labels.csv (see plates.py).

Layout: images/{train,val}/*.jpg, labels/{train,val}/*.txt, data.yaml (absolute path),
manifest.json (seed, counts, per-file sha256 list hash). Image i uses its own RNG stream
[seed, i], so any image can be regenerated alone and workers can split the index range.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from models.synth.cabin import CabinSpec
from models.synth.plate_paste import PasteBackgrounds, paste_sample
from models.synth.plate_paste import backgrounds as load_backgrounds
from models.synth.plates import jpeg, write_plate_text_dataset
from models.synth.real_plates import RealPlates
from models.synth.real_plates import pick as pick_real_plate
from models.synth.real_plates import pool as pool_real_plates
from models.synth.scene import Actor, ActorLabel, Balance, Imaging, compose, lit_plate
from models.synth.shots import place_actors, site_for, visible_range
from models.synth.vehicles import VEHICLE_CLASSES, Lighting

PLATE_CLASSES = ("plate",)
OCCUPANT_CLASSES = ("driver", "passenger", "seatbelt", "phone", "face")
MODELS = ("vehicles", "plates", "occupants", "plate_text", "plate_text_scene")

Box = tuple[float, float, float, float]
Sample = tuple[np.ndarray, list[tuple[int, Box]]]  # image, [(class, xyxy px)]

_ = CabinSpec  # re-exported type for callers building custom cabins


def _site_group(i: int, every: int) -> int:
    return i // every


def _crop_window(rng: np.random.Generator, box: Box, W: int, H: int, lo: float, hi: float) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    m = rng.uniform(lo, hi, 4) * np.array([bw, bh, bw, bh])
    X0, Y0 = int(max(0, x0 - m[0])), int(max(0, y0 - m[1]))
    X1, Y1 = int(min(W, x1 + m[2])), int(min(H, y1 + m[3]))
    return X0, Y0, max(X1 - X0, 2), max(Y1 - Y0, 2)


def _finish(img: np.ndarray, rng: np.random.Generator, imaging: Imaging, i: int) -> np.ndarray:
    out = imaging.apply(img, i)
    return jpeg(out, int(rng.integers(60, 96)))  # codec artefacts of the camera stream


_BG_CACHE: dict[tuple[int, int, int], tuple[np.ndarray, Imaging]] = {}


def vehicles_sample(seed: int, i: int, *, width: int = 1280, site_every: int = 16,
                    balance: Balance | None = None) -> Sample:
    rng = np.random.default_rng([seed, i])
    wide = _site_group(i, site_every) % 4 == 3  # every 4th site: a 1080p camera
    site, cam_full, light = site_for(seed, _site_group(i, site_every), width=1920 if wide else 4096,
                                     height=1080 if wide else 2160)
    cam = cam_full.scaled(width / cam_full.width)
    key = (seed, _site_group(i, site_every), width)
    if key not in _BG_CACHE:  # the camera is fixed per site group: background and sensor maps once
        _BG_CACHE.clear()
        _BG_CACHE[key] = (site.background(cam), Imaging(cam, site.cond, light, seed + i, variants=3))
    bg, imaging = _BG_CACHE[key]
    n = int(rng.integers(1, 11))
    actors = place_actors(rng, cam_full, site.layout, light, n, balance=balance, cabin_px_per_m=160.0)
    frame, labels = compose(bg, cam, actors, light, shutter_s=float(rng.uniform(1 / 1000, 1 / 250)))
    out: list[tuple[int, Box]] = []
    by_id = {a.id: a for a in actors}
    for lab in labels:
        out.append((VEHICLE_CLASSES.index(by_id[lab.id].cls), lab.box))
        if lab.windshield_box is not None:
            out.append((VEHICLE_CLASSES.index("windshield"), lab.windshield_box))
    return _finish(frame, rng, imaging, i), out


def _target_sample(seed: int, i: int, kind: str, *, site_every: int, balance: Balance | None,
                   max_side: int, texts: list[tuple[str, str]] | None = None,
                   real: RealPlates | None = None, close_share: float = 0.0,
                   wide_share: float = 0.0) -> Sample:
    """A crop around the first actor (vehicle crop for plates, windshield crop for occupants).

    `real` swaps that share of blue plates for real plate crops; `close_share` of the plate
    samples are cut down to a window a few plate widths around one plate (near vehicles whose crop
    is mostly bumper); `wide_share` of them take 0.25-1.45 vehicle sizes of street around the vehicle
    (loose vehicle boxes, photos such as CCPD's where the plate is 5-15% of the frame width). All
    draw from their own RNG streams, so the scene itself is the one rendered without them."""
    for attempt in range(20):
        rng = np.random.default_rng([seed, i, attempt])
        wide = _site_group(i, site_every) % 5 == 4
        site, cam, light = site_for(seed, _site_group(i, site_every), width=1920 if wide else 4096,
                                    height=1080 if wide else 2160)
        near, far = visible_range(cam)
        if kind == "occupants":
            rng_t = (max(near, 12.0), min(far - 8, 36.0))
            st = str(rng.choice(["sedan", "suv", "van", "truck", "bus"], p=[0.45, 0.25, 0.12, 0.1, 0.08]))
            n = int(rng.integers(1, 3))
        else:
            rng_t = (near + 0.5, min(far - 6, 60.0))
            st = str(rng.choice(["sedan", "suv", "van", "truck", "bus", "two_wheeler"],
                                p=[0.4, 0.2, 0.12, 0.12, 0.08, 0.08]))
            n = int(rng.integers(1, 5))
        if rng_t[1] <= rng_t[0]:
            continue
        actors = place_actors(rng, cam, site.layout, light, n, balance=balance, target_range=rng_t,
                              target_subtype=st, cabin_px_per_m=480.0 if kind == "occupants" else 260.0)
        if not actors:
            continue
        if real is not None:
            _swap_real_plates(actors, real, np.random.default_rng([seed, i, attempt, 7]), light)
        tgt = actors[0]
        pts = np.concatenate([f.pts for f in tgt.model.faces]) + np.array([tgt.x, tgt.y_front, 0])
        if kind == "occupants":
            if tgt.model.windshield is None:
                continue
            pts = tgt.model.windshield + np.array([tgt.x, tgt.y_front, 0])
        uv, z = cam.project(pts)
        if (z < 1).any():
            continue
        box = (float(uv[:, 0].min()), float(uv[:, 1].min()), float(uv[:, 0].max()), float(uv[:, 1].max()))
        if box[2] < 0 or box[3] < 0 or box[0] > cam.width or box[1] > cam.height:
            continue
        lo, hi = (0.02, 0.15) if kind == "occupants" else (0.0, 0.12)
        if kind == "plates" and wide_share > 0:
            wrng = np.random.default_rng([seed, i, attempt, 9])
            if wrng.random() < wide_share:  # loose vehicle box / a photo of the street: plates 5-15% wide
                lo, hi = lo + 0.25, hi * float(wrng.uniform(4.0, 12.0))
        X0, Y0, w, h = _crop_window(rng, box, cam.width, cam.height, lo, hi)
        crop = cam.crop(X0, Y0, w, h)
        frame, labels = compose(site.background(crop), crop, actors, light,
                                shutter_s=float(rng.uniform(1 / 1500, 1 / 400)))
        lab = next((lb for lb in labels if lb.id == tgt.id), None)
        if lab is None:
            continue
        out = _plate_labels(labels) if kind == "plates" else _occupant_labels(lab)
        if texts is not None:  # plate texts, parallel to the plate labels
            by_id = {a.id: a for a in actors}
            texts[:] = [(str(by_id[lb.id].plate), str(by_id[lb.id].plate_kind)) for lb in labels
                        if lb.plate_box is not None]
        if kind == "occupants" and lab.windshield_box is None:
            continue
        imaging = Imaging(crop, site.cond, light, int(rng.integers(1 << 30)), variants=1)
        img = _finish(frame, rng, imaging, i)
        if kind == "plates" and close_share > 0 and out:
            crng = np.random.default_rng([seed, i, attempt, 8])
            if crng.random() < close_share:
                img, out = _close_window(crng, img, out)
        s = max_side / max(img.shape[:2])
        if s < 1:
            img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
            out = [(c, (b[0] * s, b[1] * s, b[2] * s, b[3] * s)) for c, b in out]
        return img, out
    raise RuntimeError(f"could not place a {kind} target for image {i} (seed {seed}) in 20 attempts")


def _swap_real_plates(actors: list[Actor], real: RealPlates, rng: np.random.Generator, light: Lighting) -> None:
    for a in actors:
        if a.plate_kind != "blue":
            continue
        got = pick_real_plate(real, rng)
        if got is not None:
            a.plate, (bgr, al) = got[0], got[1:]
            a.plate_tex = (lit_plate(bgr, rng, light), al)


def _close_window(rng: np.random.Generator, img: np.ndarray, labels: list[tuple[int, Box]]
                  ) -> tuple[np.ndarray, list[tuple[int, Box]]]:
    """A window 1.3-6 plate widths wide around one plate; plates less than 60% inside are dropped."""
    H, W = img.shape[:2]
    _, (x0, y0, x1, y1) = labels[int(rng.integers(len(labels)))]
    bw, bh = x1 - x0, y1 - y0
    ww = min(W, max(bw * float(np.exp(rng.uniform(np.log(1.3), np.log(6.0)))), bw + 4))
    wh = min(H, max(ww * float(rng.uniform(0.6, 1.7)), bh + 4))
    X0 = float(np.clip(rng.uniform(x1 - ww, x0), 0, W - ww))
    Y0 = float(np.clip(rng.uniform(y1 - wh, y0), 0, H - wh))
    X0i, Y0i, X1i, Y1i = int(X0), int(Y0), int(min(W, X0 + ww)), int(min(H, Y0 + wh))
    out: list[tuple[int, Box]] = []
    for c, (a0, b0, a1, b1) in labels:
        c0, d0, c1, d1 = max(a0, X0i), max(b0, Y0i), min(a1, X1i), min(b1, Y1i)
        if c1 <= c0 or d1 <= d0 or (c1 - c0) * (d1 - d0) < 0.6 * (a1 - a0) * (b1 - b0):
            continue
        out.append((c, (c0 - X0i, d0 - Y0i, c1 - X0i, d1 - Y0i)))
    return np.ascontiguousarray(img[Y0i:Y1i, X0i:X1i]), out


def _plate_labels(labels: list[ActorLabel]) -> list[tuple[int, Box]]:
    return [(0, lb.plate_box) for lb in labels if lb.plate_box is not None]


def _occupant_labels(lab: ActorLabel) -> list[tuple[int, Box]]:
    out: list[tuple[int, Box]] = []
    for name, boxes in lab.occupant_boxes.items():
        for b in boxes:
            out.append((OCCUPANT_CLASSES.index(name), b))
    return out


def plates_sample(seed: int, i: int, *, site_every: int = 12, balance: Balance | None = None,
                  max_side: int = 1024, real: RealPlates | None = None, close_share: float = 0.0,
                  wide_share: float = 0.0, paste: PasteBackgrounds | None = None) -> Sample:
    """A vehicle crop with its plates; with `paste`, that share of samples are plates pasted onto a
    real photo instead (models.synth.plate_paste), drawn from their own RNG stream."""
    if paste is not None and np.random.default_rng([seed, i, 30]).random() < paste.share:
        return paste_sample(seed, i, paste, real, max_side)
    return _target_sample(seed, i, "plates", site_every=site_every, balance=balance, max_side=max_side,
                          real=real, close_share=close_share, wide_share=wide_share)


def occupants_sample(seed: int, i: int, *, site_every: int = 12, balance: Balance | None = None,
                     max_side: int = 1024) -> Sample:
    return _target_sample(seed, i, "occupants", site_every=site_every, balance=balance, max_side=max_side)


def write_scene_plate_text_dataset(out_dir: str | Path, n: int, seed: int, *, val_fraction: float = 0.1,
                                   progress: Callable[[int, int], None] | None = None) -> Path:
    """Plate crops cut from rendered vehicle crops (the plate detector's view at full
    resolution, day/dusk/night IR, blur, codec artefacts), named by text + labels.csv.

    Complements the synthetic `plate_text` set with the exact rendering path of the clips.
    """
    import csv

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str, str]] = []
    i = 0
    while len(rows) < n:
        texts: list[tuple[str, str]] = []
        img, labels = _target_sample(seed, i, "plates", site_every=12, balance=None, max_side=100000, texts=texts)
        rng = np.random.default_rng([seed, i, 55])
        for (_, (x0, y0, x1, y1)), (text, kind) in zip(labels, texts, strict=True):
            w, h = x1 - x0, y1 - y0
            if w < 24 or len(rows) >= n:
                continue
            m = rng.uniform(0.0, 0.1, 4) * np.array([w, h, w, h])
            X0, Y0 = int(max(0, x0 - m[0])), int(max(0, y0 - m[1]))
            X1, Y1 = int(min(img.shape[1], x1 + m[2] + 1)), int(min(img.shape[0], y1 + m[3] + 1))
            crop = img[Y0:Y1, X0:X1]
            name = f"images/{text}_{i:06d}_{len(rows):06d}.png"
            ok, buf = cv2.imencode(".png", crop)
            if not ok:
                raise RuntimeError(f"PNG encoding failed for {name}")
            (out / name).write_bytes(buf.tobytes())
            rows.append((name, text, kind, "val" if rng.random() < val_fraction else "train"))
        i += 1
        if progress:
            progress(len(rows), n)
    labels_csv = out / "labels.csv"
    with labels_csv.open("w", newline="", encoding="utf-8") as fh:
        wr = csv.writer(fh)
        wr.writerow(["file", "plate", "kind", "split"])
        wr.writerows(rows)
    return labels_csv


SAMPLERS: dict[str, tuple[Callable[..., Sample], tuple[str, ...]]] = {
    "vehicles": (vehicles_sample, VEHICLE_CLASSES),
    "plates": (plates_sample, PLATE_CLASSES),
    "occupants": (occupants_sample, OCCUPANT_CLASSES),
}


def yolo_lines(labels: list[tuple[int, Box]], w: int, h: int) -> list[str]:
    lines = []
    for c, (x0, y0, x1, y1) in labels:
        x0, x1 = max(0.0, x0), min(float(w), x1)
        y0, y1 = max(0.0, y0), min(float(h), y1)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        lines.append(f"{c} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}")
    return lines


def phone_balance(share: float) -> Balance:
    """The default balance with `share` of drivers holding a phone (ear : hand : wheel kept at 3 : 3 : 2)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"phone share must be within 0..1, got {share}")
    b = Balance()
    held = {k: v for k, v in b.phone.items() if k != "none"}
    total = sum(held.values())
    b.phone = {"none": 1.0 - share, **{k: share * v / total for k, v in held.items()}}
    return b


def occupant_balance(phone_share: float | None, distractor_share: float) -> Balance:
    """The default balance, with `phone_share` of drivers holding a phone (None: default) and
    `distractor_share` of the phone-free ones with a hand at the face or a cup (face : cup 1 : 1)."""
    b = phone_balance(phone_share) if phone_share is not None else Balance()
    if not 0.0 <= distractor_share <= 1.0:
        raise ValueError(f"distractor share must be within 0..1, got {distractor_share}")
    if distractor_share:
        b.hands = {"default": 1.0 - distractor_share, "face": distractor_share / 2, "cup": distractor_share / 2}
    return b


@dataclass(frozen=True)
class RenderOptions:
    """What a dataset render changes from the default draw (None / 0 keep existing seeds' images)."""

    phone_share: float | None = None       # vehicles / plates / occupants: drivers holding a phone
    real_plates: RealPlates | None = None  # plates: real crops pasted as blue plate textures
    close_share: float = 0.0               # plates: share of close windows around one plate
    wide_share: float = 0.0                # plates: share of wide windows (street around the vehicle)
    paste: PasteBackgrounds | None = None  # plates: share of plates pasted onto real photos
    distractor_share: float = 0.0          # phone-free drivers with a hand at the face or a cup

    def __post_init__(self) -> None:
        occupant_balance(self.phone_share, self.distractor_share)  # raises on a bad share
        for name in ("close_share", "wide_share"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name.replace('_', ' ')} must be within 0..1, got {v}")

    def check(self, model: str) -> None:
        """ValueError naming the options that do not apply to `model`'s dataset."""
        if model in SAMPLERS:
            self.sampler_kwargs(model)
        elif self != RenderOptions():
            raise ValueError(f"phone and distractor shares, real plates, close and wide windows do not apply to "
                             f"{model!r}")

    def sampler_kwargs(self, model: str) -> dict[str, object]:
        kw: dict[str, object] = {}
        if self.phone_share is not None or self.distractor_share:
            kw["balance"] = occupant_balance(self.phone_share, self.distractor_share)
        if model == "plates":
            if self.real_plates is not None:
                kw["real"] = self.real_plates
            if self.close_share:
                kw["close_share"] = self.close_share
            if self.wide_share:
                kw["wide_share"] = self.wide_share
            if self.paste is not None:
                kw["paste"] = self.paste
        elif self.real_plates is not None or self.close_share or self.wide_share or self.paste is not None:
            raise ValueError(f"real plates, close and wide windows and pasted photos apply to the plates dataset "
                             f"only, not {model!r}")
        return kw

    def manifest(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.phone_share is not None:
            out["phone_share"] = self.phone_share
        if self.distractor_share:
            out["distractor_share"] = self.distractor_share
        if self.real_plates is not None:
            out["real_plates"] = {"folder": Path(self.real_plates.folder).name, "part": self.real_plates.part,
                                  "share_of_blue": self.real_plates.share}
        if self.close_share:
            out["close_share"] = self.close_share
        if self.wide_share:
            out["wide_share"] = self.wide_share
        if self.paste is not None:
            out["paste"] = {"root": Path(self.paste.root).name, "share": self.paste.share,
                            **({"foreign_share": self.paste.foreign_share} if self.paste.foreign_share else {})}
        return out


def _work(args: tuple[str, str, int, list[int], float, RenderOptions]
          ) -> tuple[Counter[int], list[tuple[str, str]]]:
    model, out_dir, seed, idx, val_fraction, opts = args
    fn = SAMPLERS[model][0]
    kw = opts.sampler_kwargs(model)
    out = Path(out_dir)
    counts: Counter[int] = Counter()
    hashes = []
    for i in idx:
        img, labels = fn(seed, i, **kw)
        split = "val" if (np.random.default_rng([seed, i, 999]).random() < val_fraction) else "train"
        name = f"{model}_{seed}_{i:06d}"
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {name}")
        (out / "images" / split / f"{name}.jpg").write_bytes(buf.tobytes())
        lines = yolo_lines(labels, img.shape[1], img.shape[0])
        (out / "labels" / split / f"{name}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
        counts.update(int(ln.split()[0]) for ln in lines)
        hashes.append((name, hashlib.sha256(buf.tobytes()).hexdigest()))
    return counts, hashes


def write_dataset(model: str, out_dir: str | Path, n: int, seed: int, *, workers: int = 1,
                  val_fraction: float = 0.1, progress: Callable[[int, int], None] | None = None,
                  options: RenderOptions | None = None) -> Path:
    """Render `n` images of `model`'s dataset into out_dir; returns data.yaml (or labels.csv).

    `options` change the draw (see RenderOptions); None keeps the default balance, so existing
    seeds render the same images."""
    opts = options or RenderOptions()
    if model not in MODELS:
        raise ValueError(f"unknown dataset model {model!r}; expected one of {', '.join(MODELS)}")
    opts.check(model)  # before any work
    if opts.real_plates is not None:
        pool_real_plates(opts.real_plates)  # read (and check) once, before the workers fork
    if opts.paste is not None:
        load_backgrounds(opts.paste)
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    out = Path(out_dir).resolve()
    t0 = time.time()
    if model in ("plate_text", "plate_text_scene"):
        if model == "plate_text":
            p = write_plate_text_dataset(out, n, seed, val_fraction=val_fraction)
        else:
            p = write_scene_plate_text_dataset(out, n, seed, val_fraction=val_fraction, progress=progress)
        _manifest(out, model, n, seed, {}, [], time.time() - t0)
        return p
    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    chunk = 8
    jobs = [(model, str(out), seed, list(range(s, min(n, s + chunk))), val_fraction, opts)
            for s in range(0, n, chunk)]
    counts: Counter[int] = Counter()
    hashes: list[tuple[str, str]] = []
    done = 0
    if workers > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            for c, h in pool.imap(_work, jobs):
                counts += c
                hashes += h
                done += len(h)
                if progress:
                    progress(done, n)
    else:
        for job in jobs:
            c, h = _work(job)
            counts += c
            hashes += h
            done += len(h)
            if progress:
                progress(done, n)
    names = SAMPLERS[model][1]
    data = {"path": str(out), "train": "images/train", "val": "images/val",
            "names": {i: nm for i, nm in enumerate(names)}}
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    _manifest(out, model, n, seed, {names[k]: v for k, v in sorted(counts.items())}, hashes, time.time() - t0,
              extra=opts.manifest())
    return out / "data.yaml"


def _manifest(out: Path, model: str, n: int, seed: int, counts: dict[str, int], hashes: list[tuple[str, str]],
              seconds: float, *, extra: dict[str, object] | None = None) -> None:
    listing = "\n".join(f"{a} {b}" for a, b in sorted(hashes))
    (out / "manifest.json").write_text(json.dumps({
        "generator": "roadeye models/synth", "model": model, "n": n, "seed": seed, "instances": counts,
        **(extra or {}),
        "render_seconds": round(seconds, 1), "images_per_second": round(n / max(seconds, 1e-6), 2),
        "files_sha256": hashlib.sha256(listing.encode()).hexdigest(),
    }, indent=2, ensure_ascii=False))
