"""Real plate crops used as plate textures on rendered vehicles.

The plate detector trained on rendered plates alone found 24% of the real CCPD plates: the
rendered sheeting, glyphs and wear are too clean. Pasting real plate pixels (the trainable
part of `plates-cn-crops`, never its held-back reader test part) onto rendered vehicles
keeps the render's geometry, lighting and labels and gives the detector real plate texture.
The crops are all single-row blue plates, so only blue plates are swapped.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from models.synth.plates import PLATE_MM, rounded_mask
from models.train.plate_reader_data import REAL_SPLIT, imread

TEX_H = 70  # the rendered plate texture height (scene.make_actor)


@dataclass(frozen=True)
class RealPlates:
    """A pool of real plate crops and the share of blue plates that get one."""

    folder: str
    share: float = 0.5
    part: str = "trainable"

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"real plate share must be within 0..1, got {self.share}")
        if self.part not in ("train", "trainable"):
            raise ValueError(f"real plates come from the train or trainable part, got {self.part!r}")

    def load(self) -> list[tuple[str, np.ndarray]]:
        """(text, BGR texture at the blue plate's proportions) for every crop of the part."""
        items = REAL_SPLIT.files(Path(self.folder), self.part)
        if not items:
            raise ValueError(f"no {self.part} crops in {self.folder}")
        w = round(PLATE_MM["blue"][0] * TEX_H / PLATE_MM["blue"][1])
        return [(t, cv2.resize(imread(p), (w, TEX_H), interpolation=cv2.INTER_CUBIC)) for p, t in items]


_CACHE: dict[tuple[str, str], list[tuple[str, np.ndarray]]] = {}


def pool(spec: RealPlates) -> list[tuple[str, np.ndarray]]:
    """The loaded crops of `spec`, read once per process (render workers fork after the first)."""
    key = (spec.folder, spec.part)
    if key not in _CACHE:
        _CACHE[key] = spec.load()
    return _CACHE[key]


def pick(spec: RealPlates, rng: np.random.Generator) -> tuple[str, np.ndarray, np.ndarray] | None:
    """A real (text, BGR, alpha) texture with probability `spec.share`, else None."""
    if rng.random() >= spec.share:
        return None
    items = pool(spec)
    text, bgr = items[int(rng.integers(len(items)))]
    # The crops are loose or tight by a few pixels: jitter the framing a little, as the renders' sheeting.
    h, w = bgr.shape[:2]
    dx, dy = (rng.uniform(-0.03, 0.03, 2) * (w, h)).astype(np.float32)
    m = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    out = cv2.warpAffine(bgr, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    return text, out, _alpha(h, w)


@lru_cache(maxsize=4)
def _alpha(h: int, w: int) -> np.ndarray:
    """The rendered plate's rounded outline (6 mm corner radius) as alpha 0..1, once per size."""
    return rounded_mask(h, w, max(2, round(6 * h / PLATE_MM["blue"][1]))).astype(np.float32) / 255.0
