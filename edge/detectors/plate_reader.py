"""Plate text reader for the edge box: ONNX CRNN/CTC model, onnxruntime only (no torch).

The model (trained by models/train/plate_reader.py) maps a plate crop resized to the
input size stored in its metadata to per-timestep character probabilities; we decode
them greedily (CTC: collapse repeats, drop blanks). All crops of a frame are read in
one onnxruntime call because per-call overhead dominates on small inputs.

Preprocessing lives here, not in the training code, so training and the edge box can
never drift apart: training imports `preprocess_plate` from this module.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.detectors import Provider, session_options, with_cpu_fallback

log = logging.getLogger(__name__)

#: The 31 mainland province abbreviations (CONTRACTS.md), in the CCPD order.
PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
DIGITS = "0123456789"
#: Plate letters: A-Z without I and O (never issued, they look like 1 and 0).
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
#: Special-use suffixes: learner, police, trailer.
SUFFIXES = "学警挂"
#: Model vocabulary without the CTC blank; index i+1 in the model output is CHARSET[i].
CHARSET = PROVINCES + DIGITS + LETTERS + SUFFIXES
BLANK = "<blank>"

#: Layout by crop aspect (width / height). Two-row plates (yellow rear plates of trucks /
#: buses, 440x220 mm, ratio 2.0) give crops below TWO_ROW_MAX_ASPECT; one-row plates
#: (440x140 mm, ratio 3.14) above ONE_ROW_MIN_ASPECT. In between (loose detector boxes,
#: pitch) the reader runs both layouts and keeps the better read.
TWO_ROW_MAX_ASPECT = 1.9
ONE_ROW_MIN_ASPECT = 2.6
#: Two-row plates: the top row (province + issuing letter) spans about the upper 40% of
#: the plate, the bottom row (5 characters) the lower 65% (they overlap a little so a
#: loose vertical crop does not cut a row).
TWO_ROW_TOP = (0.0, 0.42)
TWO_ROW_BOTTOM = (0.33, 1.0)

_AN = f"[{DIGITS}{LETTERS}]"
_PLATE_RES = [
    # blue (small car) / yellow (large vehicle), incl. 2-row yellow: 7 characters.
    re.compile(f"^[{PROVINCES}][{LETTERS}]{_AN}{{5}}$"),
    # learner / police / trailer: 4 alphanumerics then the suffix.
    re.compile(f"^[{PROVINCES}][{LETTERS}]{_AN}{{4}}[{SUFFIXES}]$"),
    # green new-energy, small car: energy letter (D electric / F hybrid, A-K since 2022) then
    # one alphanumeric and 4 digits.
    re.compile(f"^[{PROVINCES}][{LETTERS}][ABCDEFGHJK]{_AN}[{DIGITS}]{{4}}$"),
    # green new-energy, large vehicle: 5 digits then D / F.
    re.compile(f"^[{PROVINCES}][{LETTERS}][{DIGITS}]{{5}}[DF]$"),
]

Image = npt.NDArray[Any]  # BGR uint8 (cv2 stubs type results loosely)


def plate_text_valid(text: str) -> bool:
    """True when `text` has a legal mainland plate format (7-char blue/yellow, 8-char green).

    Used by the pipeline to discard impossible reads (and by evaluation to report the
    share of well-formed reads); it checks the format, not whether the plate was issued.
    """
    return any(r.match(text) for r in _PLATE_RES)


@dataclass(frozen=True)
class PlateText:
    """One read plate: text, per-character confidences and the whole-read confidence.

    `confidence` is the product of the character confidences (the probability of the
    greedy path's characters), 0.0 for an empty read.
    """

    text: str
    char_confidences: tuple[float, ...]
    confidence: float

    @property
    def valid(self) -> bool:
        return plate_text_valid(self.text)


def split_two_row(crop: Image) -> Image:
    """Lay a two-row plate out as one row: [top row | bottom row], both at the same height.

    The recogniser is a left-to-right sequence model, so a two-row plate is cut into its
    rows and they are placed side by side; reading order is then province, letter, then
    the 5 characters of the bottom row.
    """
    h, w = crop.shape[:2]
    top = crop[round(TWO_ROW_TOP[0] * h) : max(1, round(TWO_ROW_TOP[1] * h))]
    bot = crop[round(TWO_ROW_BOTTOM[0] * h) : h]
    rh = max(bot.shape[0], 1)
    # the top row's characters are narrower: keep only its central ~70% of width
    x0, x1 = int(0.15 * w), max(int(0.85 * w), int(0.15 * w) + 1)
    top = top[:, x0:x1]
    top = cv2.resize(top, (max(1, round(top.shape[1] * rh / max(top.shape[0], 1))), rh))
    return np.ascontiguousarray(np.hstack([top, bot]))


def crop_layouts(crop: Image) -> tuple[bool, ...]:
    """Which layouts to try for a crop: (False,) one row, (True,) two rows, or both."""
    h, w = crop.shape[:2]
    aspect = w / max(h, 1)
    if aspect < TWO_ROW_MAX_ASPECT:
        return (True,)
    if aspect > ONE_ROW_MIN_ASPECT:
        return (False,)
    return (False, True)


def preprocess_plate(crop: Image, size: tuple[int, int], two_row: bool = False) -> npt.NDArray[np.float32]:
    """BGR crop of any size -> float32 CHW (0..255, BGR) at `size` = (h, w).

    `two_row` lays a two-row plate out as one row first (see `split_two_row`).
    Normalisation is inside the ONNX graph, so this only orders rows, resizes and
    transposes. Grayscale and BGRA crops are accepted.
    """
    if crop is None or crop.size == 0 or crop.ndim not in (2, 3):
        raise ValueError(f"plate crop must be a non-empty HxW or HxWx3 image, got shape "
                         f"{None if crop is None else crop.shape}")
    if crop.ndim == 2:
        crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
    elif crop.shape[2] == 4:
        crop = cv2.cvtColor(crop, cv2.COLOR_BGRA2BGR)
    elif crop.shape[2] != 3:
        raise ValueError(f"plate crop must have 1, 3 or 4 channels, got {crop.shape[2]}")
    if two_row and crop.shape[0] >= 4:
        crop = split_two_row(crop)
    w = crop.shape[1]
    out = cv2.resize(crop, (size[1], size[0]), interpolation=cv2.INTER_LINEAR if w < size[1] else
                     cv2.INTER_AREA)
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)


def ctc_greedy_decode(probs: npt.NDArray[np.floating], charset: Sequence[str],
                      blank: int = 0) -> PlateText:
    """Greedy CTC decode of one [T, C] probability matrix.

    Takes the arg-max class per timestep, collapses consecutive repeats, drops blanks.
    A character's confidence is the highest probability it had over the run of
    timesteps that produced it. `charset[k]` is the character of class k (the blank's
    entry is ignored).
    """
    if probs.ndim != 2:
        raise ValueError(f"expected a [T, C] matrix, got shape {probs.shape}")
    best = probs.argmax(axis=1)
    chars: list[str] = []
    confs: list[float] = []
    prev = -1
    for t, k in enumerate(best.tolist()):
        p = float(probs[t, k])
        if k != blank:
            if k != prev:
                chars.append(charset[k])
                confs.append(p)
            else:
                confs[-1] = max(confs[-1], p)
        prev = k
    conf = float(np.prod(confs)) if confs else 0.0
    return PlateText("".join(chars), tuple(confs), conf)


class OnnxPlateReader:
    """Reads plate crops with the exported CRNN/CTC ONNX model.

    The charset and input size come from the model's metadata (`names`, `imgsz`), so a
    retrained model with another vocabulary or size needs no code change.
    """

    def __init__(self, model_path: str | Path, providers: list[Provider] | None = None, threads: int | None = None,
                 spin: bool = False) -> None:
        import onnxruntime as ort

        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"plate reader model not found: {path}")
        self.session = ort.InferenceSession(str(path), sess_options=session_options(threads, spin),
                                            providers=with_cpu_fallback(providers or ["CPUExecutionProvider"]))
        self.provider: str = self.session.get_providers()[0]
        meta = self.session.get_modelmeta().custom_metadata_map
        for key in ("names", "imgsz"):
            if key not in meta:
                raise ValueError(f"{path}: ONNX metadata lacks '{key}' (not a roadeye plate_reader export?)")
        names = {int(k): v for k, v in json.loads(meta["names"]).items()}
        self.names: dict[int, str] = names
        self.charset: list[str] = [names.get(i, "") for i in range(max(names) + 1)]
        self.blank: int = int(meta.get("blank", "0"))
        h, w = json.loads(meta["imgsz"])
        self.input_size: tuple[int, int] = (int(h), int(w))
        self.metadata: dict[str, str] = dict(meta)
        self._input = self.session.get_inputs()[0].name
        out_shape = self.session.get_outputs()[0].shape
        if out_shape and isinstance(out_shape[-1], int) and out_shape[-1] != len(self.charset):
            raise ValueError(f"{path}: model outputs {out_shape[-1]} classes but metadata names "
                             f"{len(self.charset)}")
        log.info("plate_reader: %s loaded on %s (input %s, %d classes)", path.name, self.provider,
                 self.input_size, len(self.charset))
        # warm-up: first run allocates arenas and picks kernels; keep it off the first frame
        self.read_batch([np.zeros((24, 94, 3), np.uint8)])

    def probabilities(self, crops: list[Image], two_row: list[bool] | None = None
                      ) -> npt.NDArray[np.float32]:
        """[N, T, C] per-timestep class probabilities for N crops (one onnxruntime run)."""
        rows = two_row if two_row is not None else [False] * len(crops)
        x = np.stack([preprocess_plate(c, self.input_size, r) for c, r in zip(crops, rows, strict=True)])
        out: npt.NDArray[np.float32] = self.session.run(None, {self._input: x})[0]
        return out

    def read_batch(self, crops: list[Image]) -> list[PlateText]:
        """Read BGR plate crops (any sizes) in one batched run.

        Crops whose aspect does not settle one-row vs two-row are read both ways in the
        same run; the read with a legal plate format wins, then the more confident one.
        """
        if not crops:
            return []
        owner: list[int] = []
        items: list[Image] = []
        rows: list[bool] = []
        for i, c in enumerate(crops):
            if c is None or c.ndim < 2 or c.size == 0:
                raise ValueError(f"plate crop {i} is empty or not an image")
            for r in crop_layouts(c):
                owner.append(i)
                items.append(c)
                rows.append(r)
        probs = self.probabilities(items, rows)
        best: list[PlateText | None] = [None] * len(crops)
        for i, p in zip(owner, probs, strict=True):
            read = ctc_greedy_decode(p, self.charset, self.blank)
            cur = best[i]
            if cur is None or (read.valid, read.confidence) > (cur.valid, cur.confidence):
                best[i] = read
        return [b for b in best if b is not None]

    def read(self, crop: Image) -> PlateText:
        """Read one BGR plate crop."""
        return self.read_batch([crop])[0]
