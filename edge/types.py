"""Core in-memory types that flow through the edge pipeline: Frame and Detections.

`Detections` follows supervision's design: parallel numpy arrays, validated on
construction, so every stage (detect -> track -> rules -> drawing) shares one shape
contract. Model-output decoders live in `edge.detectors`, never here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame with the metadata every downstream stage needs.

    `stream_ts` is the presentation time from the stream (seconds since its start);
    `captured_at` is the UTC wall clock when the box received it (what evidence states).
    `image` is BGR uint8 at full sensor resolution, or None when the frame was grabbed
    but not decoded (frames skipped by the analysis-rate scheduler). `preview` is an optional
    downscaled copy made by the source's own thread (`Cascade.preview`), so the vehicles
    model's input is ready when the frame reaches the pipeline.
    """

    camera_id: str
    seq: int
    stream_ts: float
    captured_at: datetime
    image: npt.NDArray[np.uint8] | None
    preview: npt.NDArray[np.uint8] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        if self.image is None:
            raise ValueError(f"frame {self.camera_id}#{self.seq} was grabbed without decoding")
        h, w = self.image.shape[:2]
        return h, w


def _as_array(name: str, value: Any, dtype: Any, ndim: int) -> np.ndarray:
    arr = np.asarray(value, dtype=dtype)
    if arr.ndim != ndim:
        raise ValueError(f"Detections.{name} must have {ndim} dimensions, got shape {arr.shape}")
    return arr


@dataclass(slots=True)
class Detections:
    """N detections as parallel arrays.

    xyxy: (N, 4) float32 pixel boxes x1, y1, x2, y2 in the frame they refer to.
    confidence: (N,) float32 in [0, 1].
    class_id: (N,) int64 index into the producing model's class names.
    tracker_id: (N,) int64, -1 where untracked.
    data: extra per-detection arrays (first axis N), e.g. plate corners or texts.
    """

    xyxy: FloatArray
    confidence: FloatArray
    class_id: IntArray
    tracker_id: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ValueError(f"Detections.xyxy must be (N, 4), got shape {xyxy.shape}")
        self.xyxy = xyxy
        n = len(xyxy)
        self.confidence = _as_array("confidence", self.confidence, np.float32, 1)
        self.class_id = _as_array("class_id", self.class_id, np.int64, 1)
        tid = np.asarray(self.tracker_id, dtype=np.int64)
        self.tracker_id = np.full(n, -1, dtype=np.int64) if tid.size == 0 and n else tid.reshape(-1)
        for name, arr in (
            ("confidence", self.confidence),
            ("class_id", self.class_id),
            ("tracker_id", self.tracker_id),
        ):
            if len(arr) != n:
                raise ValueError(f"Detections.{name} has length {len(arr)}, xyxy has {n}")
        for key, arr in self.data.items():
            if len(arr) != n:
                raise ValueError(f"Detections.data[{key!r}] has length {len(arr)}, xyxy has {n}")
        if n and not np.all(np.isfinite(self.xyxy)):
            raise ValueError("Detections.xyxy contains NaN or infinite coordinates")

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            confidence=np.zeros(0, np.float32),
            class_id=np.zeros(0, np.int64),
        )

    @classmethod
    def merge(cls, parts: list[Detections]) -> Detections:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        keys = set(parts[0].data)
        for p in parts[1:]:
            if set(p.data) != keys:
                raise ValueError("cannot merge Detections with different data keys")
        return cls(
            xyxy=np.concatenate([p.xyxy for p in parts]),
            confidence=np.concatenate([p.confidence for p in parts]),
            class_id=np.concatenate([p.class_id for p in parts]),
            tracker_id=np.concatenate([p.tracker_id for p in parts]),
            data={k: np.concatenate([p.data[k] for p in parts]) for k in keys},
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: int | slice | np.ndarray | list[int]) -> Detections:
        """Select detections by int, slice, index array or boolean mask (always returns Detections)."""
        if isinstance(index, int | np.integer):
            index = [int(index)]
        return Detections(
            xyxy=self.xyxy[index],
            confidence=self.confidence[index],
            class_id=self.class_id[index],
            tracker_id=self.tracker_id[index],
            data={k: v[index] for k, v in self.data.items()},
        )

    def __iter__(self) -> Iterator[tuple[FloatArray, float, int, int]]:
        for i in range(len(self)):
            yield self.xyxy[i], float(self.confidence[i]), int(self.class_id[i]), int(self.tracker_id[i])

    def with_class(self, class_ids: int | list[int]) -> Detections:
        ids = [class_ids] if isinstance(class_ids, int) else class_ids
        return self[np.isin(self.class_id, ids)]

    def offset(self, dx: float, dy: float, scale: float = 1.0) -> Detections:
        """Map boxes from a crop / downscaled image back into parent-frame pixels."""
        xyxy = self.xyxy * np.float32(scale) + np.array([dx, dy, dx, dy], np.float32)
        return Detections(xyxy, self.confidence, self.class_id, self.tracker_id, dict(self.data))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N,4) and (M,4) xyxy boxes -> (N, M)."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)), np.float32)
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)
