"""The one interface every object detector implements (Frigate-style plugin layout).

A detector is chosen by config (`kind`), loads its model once, warms up at load so the
first real frame is not slow, and returns `Detections` in the pixel coordinates of the
image it was given. Batching across crops is the detector's job (`detect_batch`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from edge.types import Detections

Image = npt.NDArray[np.uint8]


@runtime_checkable
class Detector(Protocol):
    #: class index -> name, from the model's metadata
    names: dict[int, str]
    #: (height, width) the model runs at
    input_size: tuple[int, int]
    #: execution provider that actually ran (e.g. "CUDAExecutionProvider", "CPUExecutionProvider")
    provider: str

    def detect(self, image: Image) -> Detections:
        """Detect on one BGR image; boxes in that image's pixels."""
        ...

    def detect_batch(self, images: list[Image]) -> list[Detections]:
        """Detect on several BGR images (e.g. all vehicle crops of a frame) in as few runs as possible."""
        ...
