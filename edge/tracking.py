"""Compact ByteTrack (Zhang et al. 2022), modelled on supervision's port.

Two-stage association: confident detections first against every live track (tracked and
recently lost), then the low-confidence leftovers against the still-unmatched tracked
ones, which keeps ids through partial occlusion and motion blur. A constant-velocity
Kalman filter on (cx, cy, aspect, height) predicts each track into the next frame.

Association uses buffered IoU (C-BIoU, Yang et al. 2023): both boxes are enlarged by
`box_buffer` of their size before the overlap is measured, so a vehicle that moved most of
its own length between two analysed frames (5 fps, 60 km/h, near the camera) still matches
its track instead of starting a new one (which would report it twice).

No globals: the id counter is injected (one tracker per camera shares nothing), and all
thresholds are named constructor arguments.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from edge.types import Detections, box_iou


class TrackState(Enum):
    NEW = 0  # seen once, not yet confirmed
    TRACKED = 1
    LOST = 2
    REMOVED = 3


class KalmanFilter:
    """Constant-velocity model over x = (cx, cy, a, h, vcx, vcy, va, vh) as in SORT/ByteTrack."""

    _std_pos = 1.0 / 20
    _std_vel = 1.0 / 160

    def __init__(self) -> None:
        self.F = np.eye(8)
        for i in range(4):
            self.F[i, 4 + i] = 1.0
        self.H = np.eye(4, 8)

    def initiate(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = np.r_[z, np.zeros(4)]
        h = z[3]
        std = [2 * self._std_pos * h, 2 * self._std_pos * h, 1e-2, 2 * self._std_pos * h,
               10 * self._std_vel * h, 10 * self._std_vel * h, 1e-5, 10 * self._std_vel * h]
        return mean, np.diag(np.square(std))

    def predict(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = mean[3]
        std = [self._std_pos * h, self._std_pos * h, 1e-2, self._std_pos * h,
               self._std_vel * h, self._std_vel * h, 1e-5, self._std_vel * h]
        return self.F @ mean, self.F @ cov @ self.F.T + np.diag(np.square(std))

    def update(self, mean: np.ndarray, cov: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = mean[3]
        r = np.diag(np.square([self._std_pos * h, self._std_pos * h, 1e-1, self._std_pos * h]))
        s = self.H @ cov @ self.H.T + r
        k = np.linalg.solve(s, (cov @ self.H.T).T).T
        mean = mean + k @ (z - self.H @ mean)
        cov = cov - k @ s @ k.T
        return mean, cov


def xyxy_to_xyah(b: np.ndarray) -> np.ndarray:
    w, h = b[2] - b[0], max(b[3] - b[1], 1e-3)
    return np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, w / h, h], np.float64)


def xyah_to_xyxy(m: np.ndarray) -> np.ndarray:
    cx, cy, a, h = m[:4]
    w = a * h
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)


@dataclass(slots=True)
class Track:
    track_id: int
    mean: np.ndarray
    cov: np.ndarray
    confidence: float
    class_id: int
    state: TrackState = TrackState.NEW
    hits: int = 1
    start_frame: int = 0
    last_frame: int = 0

    @property
    def xyxy(self) -> np.ndarray:
        return xyah_to_xyxy(self.mean)


def _buffered(xyxy: np.ndarray, b: float) -> np.ndarray:
    if b <= 0:
        return xyxy
    wh = (xyxy[:, 2:] - xyxy[:, :2]) * b
    return np.concatenate([xyxy[:, :2] - wh, xyxy[:, 2:] + wh], axis=1)


def _greedy_match(cost: np.ndarray, max_cost: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Lowest-cost-first matching; with a handful of vehicles per frame it equals the optimum
    in practice and needs no SciPy on the box."""
    matches: list[tuple[int, int]] = []
    if cost.size:
        rows, cols = np.unravel_index(np.argsort(cost, axis=None, kind="stable"), cost.shape)
        used_r: set[int] = set()
        used_c: set[int] = set()
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            if cost[r, c] > max_cost:
                break
            if r in used_r or c in used_c:
                continue
            used_r.add(r)
            used_c.add(c)
            matches.append((r, c))
    mr = {m[0] for m in matches}
    mc = {m[1] for m in matches}
    return matches, [i for i in range(cost.shape[0]) if i not in mr], [j for j in range(cost.shape[1]) if j not in mc]


@dataclass
class ByteTrack:
    """Per-camera tracker. `update(detections)` returns them with `tracker_id` filled
    (-1 for detections that did not become a confirmed track)."""

    track_activation_threshold: float = 0.4
    low_confidence_threshold: float = 0.1
    minimum_matching_threshold: float = 0.8  # max (1 - IoU * score) cost for stage 1
    second_matching_threshold: float = 0.5
    unconfirmed_matching_threshold: float = 0.7
    lost_track_buffer: int = 10  # analysed frames a lost track is kept for re-association
    minimum_consecutive_frames: int = 1
    box_buffer: float = 0.3  # C-BIoU buffer for the confident stages (0 = plain IoU)
    id_counter: Callable[[], int] = field(default_factory=lambda: itertools.count(1).__next__)
    frame_id: int = 0
    tracks: list[Track] = field(default_factory=list)
    removed: list[Track] = field(default_factory=list)
    _kf: KalmanFilter = field(default_factory=KalmanFilter)

    def live(self) -> Iterator[Track]:
        return (t for t in self.tracks if t.state in (TrackState.TRACKED, TrackState.LOST))

    def pop_removed(self) -> list[Track]:
        """Tracks that ended since the last call (the pipeline finalises their decisions)."""
        out, self.removed = self.removed, []
        return out

    def update(self, detections: Detections) -> Detections:
        self.frame_id += 1
        out_ids = np.full(len(detections), -1, np.int64)
        conf = detections.confidence
        high = np.where(conf >= self.track_activation_threshold)[0]
        low = np.where((conf > self.low_confidence_threshold) & (conf < self.track_activation_threshold))[0]

        for t in self.tracks:
            if t.state == TrackState.LOST:
                t.mean[7] = 0.0  # no height velocity while unobserved
            t.mean, t.cov = self._kf.predict(t.mean, t.cov)

        confirmed = [t for t in self.tracks if t.state in (TrackState.TRACKED, TrackState.LOST)]
        unconfirmed = [t for t in self.tracks if t.state == TrackState.NEW]

        def cost(tracks: list[Track], idx: np.ndarray, fuse: bool, buffer: float = 0.0) -> np.ndarray:
            if not tracks or not len(idx):
                return np.zeros((len(tracks), len(idx)))
            iou = box_iou(_buffered(np.stack([t.xyxy for t in tracks]), buffer),
                          _buffered(detections.xyxy[idx], buffer)).astype(np.float64)
            if fuse:
                iou = iou * conf[idx][None, :]
            return 1.0 - iou

        def apply(t: Track, d: int) -> None:
            t.mean, t.cov = self._kf.update(t.mean, t.cov, xyxy_to_xyah(detections.xyxy[d]))
            t.confidence = float(conf[d])
            t.class_id = int(detections.class_id[d])
            t.hits += 1
            t.last_frame = self.frame_id
            if t.state == TrackState.LOST or t.hits >= self.minimum_consecutive_frames:
                t.state = TrackState.TRACKED
            out_ids[d] = t.track_id

        # stage 1: confident detections vs tracked + lost
        m1, um_t1, um_d1 = _greedy_match(cost(confirmed, high, fuse=True, buffer=self.box_buffer),
                                          self.minimum_matching_threshold)
        for ti, di in m1:
            apply(confirmed[ti], int(high[di]))
        # stage 2: low-confidence detections vs still-unmatched *tracked* tracks
        remaining = [confirmed[i] for i in um_t1 if confirmed[i].state == TrackState.TRACKED]
        m2, um_t2, _ = _greedy_match(cost(remaining, low, fuse=False), self.second_matching_threshold)
        for ti, di in m2:
            apply(remaining[ti], int(low[di]))
        for i in um_t2:
            remaining[i].state = TrackState.LOST
        # unconfirmed tracks get one chance with the confident leftovers
        left_high = high[um_d1]
        m3, um_u, um_d3 = _greedy_match(
            cost(unconfirmed, left_high, fuse=True, buffer=self.box_buffer), self.unconfirmed_matching_threshold
        )
        for ti, di in m3:
            t = unconfirmed[ti]
            apply(t, int(left_high[di]))
            t.state = TrackState.TRACKED if t.hits >= self.minimum_consecutive_frames else TrackState.NEW
            if t.state == TrackState.NEW:
                out_ids[int(left_high[di])] = -1
        for i in um_u:
            unconfirmed[i].state = TrackState.REMOVED
        # new tracks from unmatched confident detections
        for di in um_d3:
            d = int(left_high[di])
            mean, cov = self._kf.initiate(xyxy_to_xyah(detections.xyxy[d]))
            t = Track(self.id_counter(), mean, cov, float(conf[d]), int(detections.class_id[d]),
                      start_frame=self.frame_id, last_frame=self.frame_id)
            if self.minimum_consecutive_frames <= 1:
                t.state = TrackState.TRACKED
                out_ids[d] = t.track_id
            self.tracks.append(t)
        # age out lost tracks
        for t in self.tracks:
            if t.state == TrackState.LOST and self.frame_id - t.last_frame > self.lost_track_buffer:
                t.state = TrackState.REMOVED
        ended = [t for t in self.tracks if t.state == TrackState.REMOVED]
        self.removed.extend(t for t in ended if t.hits >= self.minimum_consecutive_frames)
        self.tracks = [t for t in self.tracks if t.state != TrackState.REMOVED]

        return Detections(detections.xyxy, detections.confidence, detections.class_id, out_ids,
                          dict(detections.data))

    def flush(self) -> list[Track]:
        """End every live track (end of a replay / shutdown)."""
        for t in self.tracks:
            t.state = TrackState.REMOVED
        ended = [t for t in self.tracks if t.hits >= self.minimum_consecutive_frames]
        self.tracks = []
        out = self.pop_removed() + ended
        return out
