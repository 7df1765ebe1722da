"""The edge pipeline: ONE loop of named stages per tick.

    frames (one per camera that has a new one)
      -> locate       (vehicles + windshields on the downscaled frames; batched across cameras)
      -> track        (ByteTrack per camera: which vehicle is which track)
      -> inspect      (full-resolution crops -> plates, occupants, plate reader; only what each
                       track still needs: in the capture zone, a driver big enough to count,
                       a plate not yet read with confidence; batched across cameras)
      -> record       (observations appended to each track's history)
      -> decide       (rules over ended tracks: k-of-n, zones, thresholds; one event per type)
      -> evidence     (JPEG overview / driver / plate crops, passengers blurred, SHA-256, sign)
      -> sink         (outbox before publishing, or a JSONL file in replay)

Each stage's latency goes to the `roadeye_stage_seconds` histogram and `stage_ms` totals.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.camera import CameraCalibration, ViolationThreshold
from edge.cascade import FULL, SKIP, Cascade, CropPlan, FrameResult, VehicleResult
from edge.event import EventMessage, ModelRef, ViolationType
from edge.eventbuild import DeviceIdentity, build_message
from edge.metrics import EdgeMetrics
from edge.observations import Observation, TrackHistory
from edge.plates import vote_plate
from edge.rules import decide_all, driver_observed, frame_verdict, in_capture_zone
from edge.trace import track_record
from edge.tracking import ByteTrack
from edge.types import Frame

log = logging.getLogger(__name__)

Sink = Callable[[EventMessage], None]


@dataclass
class CameraState:
    calibration: CameraCalibration
    config_hash: str
    tracker: ByteTrack
    histories: dict[int, TrackHistory] = field(default_factory=dict)
    #: (violation, plate) of recent events: a track that lost its id and came back under a
    #: new one must not produce a second event for the same vehicle
    recent: deque[tuple[str, str, float]] = field(default_factory=lambda: deque(maxlen=256))
    events: int = 0
    frames: int = 0

    def threshold(self, v: ViolationType) -> ViolationThreshold:
        return self.calibration.thresholds.get(v.value) or ViolationThreshold.model_validate({})


def new_tracker(analysis_fps: float, activation: float = 0.4) -> ByteTrack:
    return ByteTrack(track_activation_threshold=activation,
                     lost_track_buffer=max(3, round(2.0 * analysis_fps)),
                     id_counter=itertools.count(1).__next__)


class Pipeline:
    def __init__(self, cascade: Cascade, cameras: dict[str, CameraState], device: DeviceIdentity,
                 models: list[ModelRef], sink: Sink, metrics: EdgeMetrics | None = None,
                 event_id_seed: str | None = None, max_track_observations: int = 600,
                 dedup_window_s: float = 30.0, plate_settle_reads: int = 3, plate_settle_conf: float = 0.8,
                 plate_refresh_every: int = 4,
                 trace: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.cascade, self.cameras, self.device = cascade, cameras, device
        self.models, self.sink, self.metrics = models, sink, metrics
        self.event_id_seed = event_id_seed
        self.max_track_observations = max_track_observations
        self.dedup_window_s = dedup_window_s
        #: a track whose plate was read the same way `plate_settle_reads` times at
        #: `plate_settle_conf` is "settled": its plate is then only looked for every
        #: `plate_refresh_every` frames (a nearer, sharper plate crop for the evidence)
        self.plate_settle_reads, self.plate_settle_conf = plate_settle_reads, plate_settle_conf
        self.plate_refresh_every = plate_refresh_every
        self.crops_skipped = {"plate": 0, "occupants": 0}
        #: called with `edge.trace.track_record` of every ended track (replay --trace)
        self.trace = trace
        self.stage_ms: dict[str, float] = defaultdict(float)
        self.frames_analysed = 0
        self.events_emitted = 0
        self.suppressed_duplicates = 0
        self.cascade.timer = self._observe

    def _observe(self, stage: str, seconds: float) -> None:
        self.stage_ms[stage] += seconds * 1000
        if self.metrics is not None:
            self.metrics.observe_stage(stage, seconds)

    # -- the loop body -----------------------------------------------------------------
    def process(self, frames: list[Frame]) -> list[EventMessage]:
        frames = [f for f in frames if f.image is not None]
        if not frames:
            return []
        t0 = time.perf_counter()
        located = self.cascade.locate(frames)
        t1 = time.perf_counter()
        ids = [self._assign(res) for res in located]
        t2 = time.perf_counter()
        results = self.cascade.inspect(located, lambda fi, vi, v: self._plan(located[fi].frame, ids[fi][vi], v))
        t3 = time.perf_counter()
        ended: list[tuple[CameraState, TrackHistory]] = []
        for res, tids in zip(results, ids, strict=True):
            ended.extend(self._record(res, tids))
        t4 = time.perf_counter()
        self._observe("cascade", (t1 - t0) + (t3 - t2))
        self._observe("track", (t2 - t1) + (t4 - t3))
        self.frames_analysed += len(frames)
        if self.metrics is not None:
            for f in frames:
                self.metrics.frames_analysed.labels(f.camera_id).inc()
        return self._finish(ended)

    def _plan(self, frame: Frame, tid: int, v: VehicleResult) -> CropPlan:
        """The crops this vehicle still needs; every skipped crop is CPU for other vehicles."""
        cam = self.cameras[frame.camera_id]
        if tid < 0 or not in_capture_zone(v.box, cam.calibration.zones):
            return SKIP  # unconfirmed (never recorded) or outside the zone (never decided)
        occupants = True
        ws = v.windshield_box
        if ws is not None:
            # the driver cannot be taller than the windshield: below every threshold's minimum
            # driver size, the frame could not count for any rule
            min_px = min(cam.threshold(t).min_driver_px for t in ViolationType)
            occupants = float(ws[3] - ws[1]) * (1 + 2 * self.cascade.windshield_margin) >= min_px
        hist = cam.histories.get(tid)
        plate = hist is None or not hist.plate_settled(self.plate_settle_reads) or \
            hist.frames_since_plate + 1 >= self.plate_refresh_every
        if not plate:
            self.crops_skipped["plate"] += 1
        if not occupants:
            self.crops_skipped["occupants"] += 1
        return FULL if plate and occupants else CropPlan(plate=plate, occupants=occupants)

    def flush(self) -> list[EventMessage]:
        """End every track (end of replay, shutdown) and decide them."""
        ended = []
        for cam in self.cameras.values():
            for t in cam.tracker.flush():
                hist = cam.histories.pop(t.track_id, None)
                if hist is not None:
                    ended.append((cam, hist))
            for hist in cam.histories.values():
                ended.append((cam, hist))
            cam.histories = {}
        return self._finish(ended)

    # -- stages ----------------------------------------------------------------------------
    def _assign(self, res: FrameResult) -> list[int]:
        """Track ids for the located vehicles, in order (-1: not (yet) a confirmed track)."""
        cam = self.cameras[res.frame.camera_id]
        cam.frames += 1
        tracked = cam.tracker.update(res.detections(self.cascade.vehicle_class_index))
        return [int(t) for t in tracked.tracker_id]

    def _record(self, res: FrameResult, tids: list[int]) -> list[tuple[CameraState, TrackHistory]]:
        frame = res.frame
        cam = self.cameras[frame.camera_id]
        windshields = [v.windshield_box for v in res.vehicles if v.windshield_box is not None]
        for v, tid in zip(res.vehicles, tids, strict=True):
            if tid < 0:
                continue
            obs = Observation(
                seq=frame.seq, stream_ts=frame.stream_ts, captured_at=frame.captured_at,
                vehicle_box=v.box, vehicle_conf=v.confidence, vehicle_class=v.cls,
                in_zone=in_capture_zone(v.box, cam.calibration.zones),
                windshield_box=v.windshield_box, plate=v.plate, occupants=v.occupants,
            )
            hist = cam.histories.get(tid)
            if hist is None:
                hist = cam.histories[tid] = TrackHistory(frame.camera_id, tid)
            hist.observations.append(obs)
            hist.note_plate(obs.plate, self.plate_settle_conf)
            privacy: tuple[np.ndarray, ...] = tuple(
                w for w in windshields if v.windshield_box is None or w is not v.windshield_box)
            if v.occupants is not None:
                privacy += v.occupants.passenger_boxes + v.occupants.face_boxes
            self._offer(cam, hist, frame, obs, privacy)
        ended = []
        for t in cam.tracker.pop_removed():
            hist = cam.histories.pop(t.track_id, None)
            if hist is not None:
                ended.append((cam, hist))
        # a vehicle standing in view for very long: decide now, keep tracking it
        for hist in list(cam.histories.values()):
            if len(hist.observations) >= self.max_track_observations:
                ended.append((cam, TrackHistory(hist.camera_id, hist.track_id, list(hist.observations),
                                                dict(hist.best), hist.decided)))
                hist.observations = hist.observations[-8:]
        return ended

    def _offer(self, cam: CameraState, hist: TrackHistory, frame: Frame, obs: Observation,
               privacy: tuple[np.ndarray, ...]) -> None:
        """Keep (by reference, no copy) the best frame per violation and for the plate."""
        for v in ViolationType:
            thr = cam.threshold(v)
            if obs.occupants is not None and driver_observed(obs, thr):
                verdict, conf = frame_verdict(obs, v, thr)
                if verdict > 0:
                    hist.offer(v.value, conf * obs.driver_height, frame, obs, privacy)
        p = obs.plate
        if p is not None:
            width = float(p.box[2] - p.box[0])
            score = (p.read_confidence if p.text else 0.0) + p.confidence * 0.01
            hist.offer("plate", score * width, frame, obs, privacy)

    def _finish(self, ended: Iterable[tuple[CameraState, TrackHistory]]) -> list[EventMessage]:
        out: list[EventMessage] = []
        for cam, hist in ended:
            t0 = time.perf_counter()
            thresholds = {v.value: cam.threshold(v) for v in ViolationType}
            decided = decide_all(hist.observations, thresholds)
            if self.trace is not None:
                self.trace(track_record(hist, thresholds, decided))
            decisions = [d for d in decided if d.violation.value not in hist.decided]
            reads = [p for o in hist.observations if (p := o.plate) is not None and p.text]
            plate = vote_plate([_Read(p.text or "", p.char_confidences, p.read_confidence) for p in reads])
            t1 = time.perf_counter()
            self._observe("decide", t1 - t0)
            for d in decisions:
                hist.decided.add(d.violation.value)
                cand = hist.best.get(d.violation.value)
                if cand is None:
                    continue
                now = cand.frame.stream_ts
                if plate is not None and plate.confidence >= 0.5 and any(
                        v == d.violation.value and p == plate.text and abs(now - ts) < self.dedup_window_s
                        for v, p, ts in cam.recent):
                    self.suppressed_duplicates += 1
                    log.info("suppressed duplicate %s for plate %s (track %d)", d.violation, plate.text,
                             hist.track_id)
                    continue
                msg = build_message(hist, d, cand, plate, hist.best.get("plate"), self.device, self.models,
                                    cam.config_hash, self.event_id_seed)
                if plate is not None:
                    cam.recent.append((d.violation.value, plate.text, now))
                self._observe("evidence", time.perf_counter() - t1)
                t2 = time.perf_counter()
                self.sink(msg)
                self._observe("sink", time.perf_counter() - t2)
                t1 = time.perf_counter()
                cam.events += 1
                self.events_emitted += 1
                if self.metrics is not None:
                    self.metrics.events.labels(hist.camera_id, d.violation.value).inc()
                out.append(msg)
        return out


@dataclass(frozen=True, slots=True)
class _Read:
    text: str
    char_confidences: tuple[float, ...]
    confidence: float
