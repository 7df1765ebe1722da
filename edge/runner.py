"""Assembles a pipeline from the box config and drives it: replay (deterministic, files) and
live (reader thread per camera, newest frame wins). Also builds the heartbeat."""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from edge.camera import CameraCalibration, load_camera
from edge.cascade import Cascade
from edge.config import CameraConfig, EdgeConfig, config_hash
from edge.detectors import LoadedModels, load_models
from edge.event import CameraHealth, EventMessage, Heartbeat, event_topic, utc_now
from edge.eventbuild import DeviceIdentity
from edge.keys import load_private_key
from edge.metrics import EdgeMetrics
from edge.outbox import Outbox
from edge.pipeline import CameraState, Pipeline, new_tracker
from edge.sources import LiveSource, Prepare, ReplaySource
from edge.types import Frame

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]


def default_models_dir() -> Path:
    """$ROADEYE_MODELS_DIR, else ./models, else the repository's models/ (first with vehicles.onnx)."""
    env = os.environ.get("ROADEYE_MODELS_DIR")
    if env:
        return Path(env)
    for cand in (Path.cwd() / "models", REPO_ROOT / "models"):
        if (cand / "vehicles.onnx").is_file():
            return cand
    return REPO_ROOT / "models"


def replay_config(video: Path, analysis_fps: float = 5.0, decoder: str = "opencv") -> EdgeConfig:
    """Defaults for `roadeye edge replay VIDEO` without --config: the camera YAML shipped
    beside the clip (`<clip>.camera.yaml`) and the models in ./models (or the repo's)."""
    cam_yaml = video.with_name(video.stem + ".camera.yaml")
    cam_id = re.sub(r"[^A-Za-z0-9_.-]", "_", video.stem)[:64] or "camera"
    if cam_yaml.is_file():
        cam_id = load_camera(cam_yaml).camera_id
    models = default_models_dir()
    return EdgeConfig.model_validate({
        "device": {"id": "replay", "site": "replay"},
        "cameras": [{"id": cam_id, "source": str(video), "decoder": decoder, "analysis_fps": analysis_fps,
                     "calibration": str(cam_yaml) if cam_yaml.is_file() else None}],
        "models": {"vehicles": str(models / "vehicles.onnx"), "plates": str(models / "plates.onnx"),
                   "occupants": str(models / "occupants.onnx"),
                   "plate_reader": str(models / "plate_reader.onnx")},
    })


def build_models(cfg: EdgeConfig) -> LoadedModels:
    m = cfg.models
    return load_models(cfg.resolve(m.vehicles) or m.vehicles, cfg.resolve(m.occupants), cfg.resolve(m.plates),
                       cfg.resolve(m.plate_reader), m.providers, m.vehicle_conf, m.plate_conf, m.occupant_conf,
                       threads=m.cpu_threads, spin=m.cpu_spin, trt_cache_dir=cfg.resolve(m.trt_cache_dir),
                       trt_fp16=m.trt_fp16, device_id=m.gpu_device, precision=m.precision.model_dump())


def build_cascade(cfg: EdgeConfig, models: LoadedModels) -> Cascade:
    return Cascade(vehicles=models.vehicles, occupants=models.occupants, plates=models.plates,
                   plate_reader=models.plate_reader, vehicle_conf=cfg.models.vehicle_conf,
                   plate_conf=cfg.models.plate_conf, occupant_conf=cfg.models.occupant_conf)


def device_identity(cfg: EdgeConfig) -> DeviceIdentity:
    key_path = cfg.resolve(cfg.device.key_path)
    key = load_private_key(key_path) if key_path is not None else None
    if key is None:
        log.warning("no device key configured: events will be UNSIGNED (the collector may reject them)")
    return DeviceIdentity(cfg.device.id, cfg.device.site, key, cfg.device.clock_source,
                          cfg.device.clock_synchronized)


def camera_states(cfg: EdgeConfig, sizes: dict[str, tuple[int, int]] | None = None,
                  activation: float = 0.4) -> dict[str, CameraState]:
    out = {}
    for cam in cfg.cameras:
        cal: CameraCalibration = cfg.calibration_for(cam, (sizes or {}).get(cam.id))
        if cal.camera_id != cam.id:
            log.warning("camera %s uses calibration written for %s", cam.id, cal.camera_id)
        h = config_hash(cal, {"camera": cam.model_dump(mode="json", exclude={"source"}),
                              "models": cfg.models.model_dump(mode="json", exclude={"providers"})})
        out[cam.id] = CameraState(cal, h, new_tracker(cam.analysis_fps, activation))
    return out


class JsonlSink:
    """One EventMessage JSON per line (evidence included), flushed per event."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh

    def __call__(self, msg: EventMessage) -> None:
        self.fh.write(msg.to_bytes() + b"\n")
        self.fh.flush()


class OutboxHoldFull(RuntimeError):
    """The outbox cannot be written and the in-memory hold is full too: this event is lost."""


class OutboxSink:
    """Durable first: the row is committed before the publisher is told about it.

    When the outbox cannot be written (disk full, read-only filesystem) the event is held in
    memory, in order, and a retry thread writes the held events once the disk takes writes
    again; the outbox alarm stays raised meanwhile. Only when the hold itself exceeds
    `max_held_bytes` is an event refused (OutboxHoldFull), loudly, never silently.
    """

    def __init__(self, outbox: Outbox, site_id: str, notify: Callable[[], None] | None = None,
                 max_held_bytes: int = 256 * 1024 * 1024, retry_s: float = 1.0) -> None:
        self.outbox, self.site_id, self.notify = outbox, site_id, notify
        self.max_held_bytes, self.retry_s = max_held_bytes, retry_s
        self._held: deque[tuple[str, str, bytes]] = deque()
        self._held_bytes = 0
        self._lock = threading.Lock()
        self._retry: threading.Thread | None = None

    @property
    def held(self) -> int:
        """Events waiting in memory for the outbox to accept writes again."""
        return len(self._held)

    def __call__(self, msg: EventMessage) -> None:
        ev = msg.event
        item = (ev.event_id, event_topic(self.site_id, ev.camera_id), msg.to_bytes())
        with self._lock:
            if self._held_bytes + len(item[2]) > self.max_held_bytes:
                log.critical("outbox unwritable and %d events (%d bytes) held in memory: event %s refused",
                             len(self._held), self._held_bytes, ev.event_id)
                raise OutboxHoldFull(f"outbox unwritable and the in-memory hold is full; event {ev.event_id}")
            self._held.append(item)
            self._held_bytes += len(item[2])
        if not self.flush():
            self._ensure_retry()

    def flush(self) -> bool:
        """Write held events to the outbox in order; False while the outbox still refuses writes."""
        wrote = False
        with self._lock:
            while self._held:
                event_id, topic, payload = self._held[0]
                try:
                    self.outbox.put(event_id, topic, payload)
                except sqlite3.Error:  # Outbox.put has raised the alarm and logged why
                    break
                self._held.popleft()
                self._held_bytes -= len(payload)
                wrote = True
            done = not self._held
        if wrote and self.notify is not None:
            self.notify()
        return done

    def _ensure_retry(self) -> None:
        with self._lock:
            if self._retry is not None and self._retry.is_alive():
                return
            self._retry = threading.Thread(target=self._retry_loop, name="outbox-hold-retry", daemon=True)
            self._retry.start()

    def _retry_loop(self) -> None:
        while True:
            time.sleep(self.retry_s)
            if self.flush():
                log.warning("outbox accepts writes again: every held event is stored")
                return


class FanOut:
    def __init__(self, *sinks: Callable[[EventMessage], None]) -> None:
        self.sinks = sinks

    def __call__(self, msg: EventMessage) -> None:
        for s in self.sinks:
            s(msg)


@dataclass
class ReplayStats:
    frames_in: int = 0
    frames_analysed: int = 0
    events: int = 0
    wall_s: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)
    by_violation: dict[str, int] = field(default_factory=dict)
    crops_skipped: dict[str, int] = field(default_factory=dict)


def replay_frames(sources: list[ReplaySource]) -> Iterator[list[Frame]]:
    """One tick = the next analysed frame of every still-running source (round robin)."""
    its = [iter(s) for s in sources]
    while its:
        tick, alive = [], []
        for it in its:
            f = next(it, None)
            if f is not None:
                tick.append(f)
                alive.append(it)
        its = alive
        if tick:
            yield tick


def run_replay(pipeline: Pipeline, sources: list[ReplaySource],
               progress: Callable[[int], None] | None = None) -> ReplayStats:
    t0 = time.perf_counter()
    stats = ReplayStats()
    for tick in replay_frames(sources):
        for m in pipeline.process(tick):
            stats.by_violation[m.event.violation.value] = stats.by_violation.get(m.event.violation.value, 0) + 1
        if progress is not None:
            progress(sum(s.frames_in for s in sources))
    for m in pipeline.flush():
        stats.by_violation[m.event.violation.value] = stats.by_violation.get(m.event.violation.value, 0) + 1
    stats.frames_in = sum(s.frames_in for s in sources)
    stats.frames_analysed = pipeline.frames_analysed
    stats.events = pipeline.events_emitted
    stats.wall_s = time.perf_counter() - t0
    stats.stage_ms = dict(pipeline.stage_ms)
    stats.crops_skipped = dict(pipeline.crops_skipped)
    return stats


class LiveRunner:
    """Drives a pipeline from LiveSource threads until `stop()`; health for heartbeats."""

    def __init__(self, pipeline: Pipeline, sources: list[LiveSource], metrics: EdgeMetrics | None = None,
                 outbox: Outbox | None = None, device: DeviceIdentity | None = None) -> None:
        self.pipeline, self.sources, self.metrics = pipeline, sources, metrics
        self.outbox, self.device = outbox, device
        self._stop = threading.Event()
        self.started = time.monotonic()
        self._rate: dict[str, tuple[float, int, int, int]] = {}
        self.errors = 0

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        for s in self.sources:
            s.start()
        last_metrics = 0.0
        try:
            while not self._stop.is_set():
                tick = [f for s in self.sources if (f := s.latest()) is not None]
                if not tick:
                    self._stop.wait(0.01)
                    continue
                try:
                    self.pipeline.process(tick)
                except Exception:
                    # one bad frame (corrupt decode, model error) must not stop a roadside box
                    self.errors += 1
                    log.exception("pipeline failed on a tick of %s (error %d); continuing",
                                  [f.camera_id for f in tick], self.errors)
                if time.monotonic() - last_metrics > 1.0:
                    self._update_metrics()
                    last_metrics = time.monotonic()
        finally:
            for s in self.sources:
                s.stop()
            self.pipeline.flush()
            # let readers leave a blocking grab and release their decoders before exit
            # (a capture destroyed mid-read by interpreter shutdown aborts the process)
            for s in self.sources:
                s.join(s.read_timeout_s + s.open_timeout_s + 5)
                if s.is_alive():
                    log.warning("camera %s reader did not stop in time", s.camera_id)

    def _update_metrics(self) -> None:
        if self.metrics is None:
            return
        now = time.monotonic()
        for s in self.sources:
            t, fin, fan, fdrop = self._rate.get(s.camera_id, (self.started, 0, 0, 0))
            dt = max(now - t, 1e-6)
            self.metrics.fps_in.labels(s.camera_id).set((s.frames_in - fin) / dt)
            self.metrics.fps_analysed.labels(s.camera_id).set((s.frames_handed - fan) / dt)
            self.metrics.frames_in.labels(s.camera_id).inc(s.frames_in - fin)
            self.metrics.frames_dropped.labels(s.camera_id).inc(s.frames_dropped - fdrop)
            self.metrics.reconnects.labels(s.camera_id).set(s.reconnects)
            self.metrics.connected.labels(s.camera_id).set(1 if s.connected else 0)
            self._rate[s.camera_id] = (now, s.frames_in, s.frames_handed, s.frames_dropped)
        if self.outbox is not None:
            n, size = self.outbox.depth()
            self.metrics.outbox_depth.set(n)
            self.metrics.outbox_bytes.set(size)
            self.metrics.outbox_alarm.set(1 if self.outbox.alarm else 0)

    def health(self) -> dict[str, CameraHealth]:
        up = max(time.monotonic() - self.started, 1e-6)
        out = {}
        for s in self.sources:
            cam = self.pipeline.cameras.get(s.camera_id)
            out[s.camera_id] = CameraHealth(
                connected=s.connected, fps_in=round(s.frames_in / up, 2),
                fps_analysed=round(s.frames_handed / up, 2), frames_dropped=s.frames_dropped,
                reconnects=s.reconnects, last_frame_at=s.last_frame_at,
                events_emitted=cam.events if cam else 0)
        return out

    def heartbeat(self) -> Heartbeat:
        assert self.device is not None
        n, size = self.outbox.depth() if self.outbox is not None else (0, 0)
        return Heartbeat(device_id=self.device.device_id, site_id=self.device.site_id, sent_at=utc_now(),
                         uptime_s=round(time.monotonic() - self.started, 1), clock=self.device.clock(),
                         outbox_depth=n, outbox_bytes=size,
                         outbox_alarm=bool(self.outbox.alarm) if self.outbox is not None else False,
                         cameras=self.health())


def replay_sources(cfg: EdgeConfig, realtime: bool = False, analysis_fps: float | None = None,
                   start_time: datetime | None = None, prepare: Prepare | None = None) -> list[ReplaySource]:
    """`prepare` (e.g. `Cascade.preview`) runs on each analysed frame in the decode thread."""
    out = []
    for cam in cfg.cameras:
        out.append(_replay_source(cfg, cam, realtime, analysis_fps, start_time, prepare))
    return out


def _replay_source(cfg: EdgeConfig, cam: CameraConfig, realtime: bool, analysis_fps: float | None,
                   start_time: datetime | None, prepare: Prepare | None) -> ReplaySource:
    src = cam.source
    p = cfg.resolve(Path(src))
    path = str(p) if p is not None and p.exists() else src
    return ReplaySource(cam.id, path, analysis_fps or cam.analysis_fps, cam.decoder, realtime,
                        start_time.astimezone(UTC) if start_time else None, cam.hwaccel, prepare=prepare)


def live_sources(cfg: EdgeConfig, prepare: Prepare | None = None) -> list[LiveSource]:
    return [LiveSource(c.id, c.source, c.analysis_fps, c.decoder, c.hwaccel, c.open_timeout_s,
                       c.read_timeout_s, backoff_max_s=c.reconnect_max_s, prepare=prepare) for c in cfg.cameras]


def summary_rows(stats: ReplayStats) -> list[tuple[str, Any]]:
    fps = stats.frames_in / stats.wall_s if stats.wall_s else 0.0
    rows: list[tuple[str, Any]] = [
        ("frames decoded", stats.frames_in), ("frames analysed", stats.frames_analysed),
        ("wall time (s)", f"{stats.wall_s:.1f}"), ("decoded fps", f"{fps:.1f}"),
        ("events", stats.events),
    ]
    rows += [(f"{k} crops skipped (not needed)", v) for k, v in sorted(stats.crops_skipped.items())]
    rows += [(f"  {k}", v) for k, v in sorted(stats.by_violation.items())]
    n = max(stats.frames_analysed, 1)
    rows += [(f"ms/frame {k}", f"{v / n:.1f}") for k, v in sorted(stats.stage_ms.items())]
    return rows
