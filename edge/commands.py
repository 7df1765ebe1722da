"""`roadeye edge ...`: run (live), replay, score, keygen, check-config, drain."""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

log = logging.getLogger(__name__)


def _console() -> Console:
    return Console(stderr=True)


def _load_cfg(path: str) -> Any:
    from edge.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def edge() -> None:
    """Run, replay and score the edge pipeline; device keys."""


@edge.command("check-config")
@click.argument("config_file", type=click.Path(dir_okay=False))
def check_config(config_file: str) -> None:
    """Validate a box config (and the camera YAMLs, model and key files it names)."""
    cfg = _load_cfg(config_file)
    problems = []
    for name in ("vehicles", "occupants", "plates", "plate_reader"):
        p = cfg.resolve(getattr(cfg.models, name))
        if p is not None and not p.is_file():
            problems.append(f"models.{name}: file not found: {p}")
    kp = cfg.resolve(cfg.device.key_path)
    if kp is not None:
        from edge.keys import KeyError_, load_private_key

        try:
            load_private_key(kp)
        except KeyError_ as exc:
            problems.append(f"device.key_path: {exc}")
    for p in problems:
        click.echo(f"error: {p}", err=True)
    if problems:
        raise SystemExit(1)
    click.echo(f"{config_file}: OK ({len(cfg.cameras)} camera(s): {', '.join(c.id for c in cfg.cameras)}; "
               f"broker: {f'{cfg.broker.host}:{cfg.broker.port}' if cfg.broker else 'none'})")


@edge.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the keys.")
@click.option("--device-id", required=True, help="Device id (file names and signature key_id).")
@click.option("--force", is_flag=True, help="Overwrite existing keys.")
def keygen(out_dir: str, device_id: str, force: bool) -> None:
    """Create the device's Ed25519 signing key: ID.key (0600) and ID.pub (PEM)."""
    import re

    from edge.keys import generate_keypair

    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", device_id):
        raise click.BadParameter("1-64 letters, digits, '_', '.', '-'", param_hint="--device-id")
    try:
        priv, pub = generate_keypair(out_dir, device_id, overwrite=force)
    except FileExistsError as exc:
        raise click.ClickException(f"{exc}; pass --force to replace it") from exc
    click.echo(f"private key: {priv} (mode 0600, keep it on the box)")
    click.echo(f"public key:  {pub} (register it with the collector: "
               f"--register-device-key {device_id}={pub})")


@edge.command()
@click.argument("video", type=click.Path(exists=True, dir_okay=False))
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="Box config; default: models in ./models and <clip>.camera.yaml beside the clip.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False),
              help="Write one EventMessage JSON per line (evidence included).")
@click.option("--realtime", is_flag=True, help="Pace the replay at the clip's frame rate.")
@click.option("--analysis-fps", type=click.FloatRange(min=0.1, max=120), help="Frames analysed per second.")
@click.option("--decoder", type=click.Choice(["opencv", "pyav", "ffmpeg"]), default=None)
@click.option("--start-time", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]),
              help="UTC capture time of the first frame (default: the clip's creation time / mtime).")
@click.option("--drain-timeout", type=float, default=60.0, show_default=True,
              help="With a broker: seconds to wait for every event's PUBACK before exiting.")
@click.option("--no-progress", is_flag=True)
@click.option("--trace", "trace_file", type=click.Path(dir_okay=False),
              help="Write every ended track's observations and rule verdicts as JSONL (for `score --trace`).")
def replay(video: str, config_file: str | None, out_file: str | None, realtime: bool,
           analysis_fps: float | None, decoder: str | None, start_time: datetime | None,
           drain_timeout: float, no_progress: bool, trace_file: str | None) -> None:
    """Replay a recorded clip through the pipeline (deterministic: same clip, same events)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edge.config import ConfigError
    from edge.runner import (
        FanOut,
        JsonlSink,
        OutboxSink,
        build_cascade,
        build_models,
        camera_states,
        device_identity,
        replay_config,
        replay_sources,
        run_replay,
        summary_rows,
    )

    console = _console()
    vpath = Path(video).resolve()
    if config_file:
        cfg = _load_cfg(config_file)
        cam0 = cfg.cameras[0].model_copy(update={"source": str(vpath)})
        cfg = cfg.model_copy(update={"cameras": [cam0]})
    else:
        try:
            cfg = replay_config(vpath)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc
    if decoder:
        cfg.cameras[0] = cfg.cameras[0].model_copy(update={"decoder": decoder})
    if start_time is not None and start_time.tzinfo is None:
        from datetime import UTC

        start_time = start_time.replace(tzinfo=UTC)
    if out_file is None and cfg.broker is None:
        out_file = str(Path.cwd() / f"{vpath.stem}.events.jsonl")
        console.print(f"no --out and no broker configured: writing events to {out_file}")
    try:
        models = build_models(cfg)
        device = device_identity(cfg)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    cascade = build_cascade(cfg, models)
    from edge.sources import SourceError

    try:
        sources = replay_sources(cfg, realtime, analysis_fps, start_time, prepare=cascade.preview)
    except SourceError as exc:  # empty / truncated-header / not a video: a clear error, no traceback
        raise click.ClickException(str(exc)) from exc
    cams = camera_states(cfg, {s.camera_id: (s.width, s.height) for s in sources},
                         activation=cfg.models.vehicle_conf)
    sinks: list[Any] = []
    fh = open(out_file, "wb") if out_file else None  # noqa: SIM115 - closed in finally
    if fh is not None:
        sinks.append(JsonlSink(fh))
    publisher = outbox = None
    if cfg.broker is not None:
        from edge.outbox import Outbox
        from edge.publish import MqttPublisher

        outbox = Outbox(cfg.resolve(cfg.outbox.path) or cfg.outbox.path, cfg.outbox.max_bytes,
                        cfg.outbox.max_events)
        publisher = MqttPublisher(cfg.broker, cfg.device.id, cfg.device.site, outbox, resolve=cfg.resolve)
        publisher.start()
        sinks.append(OutboxSink(outbox, cfg.device.site, publisher.notify))
    from edge.pipeline import Pipeline

    # a replay's event ids derive from the clip, so replaying it again is idempotent downstream
    seed = f"{vpath.name}:{vpath.stat().st_size}"
    from edge.trace import TraceWriter

    trace_fh = open(trace_file, "w", encoding="utf-8") if trace_file else None  # noqa: SIM115 - closed below
    pipeline = Pipeline(cascade, cams, device, models.refs, FanOut(*sinks), event_id_seed=seed,
                        trace=TraceWriter(trace_fh) if trace_fh else None)
    total = sum(s.frame_count for s in sources) or None
    try:
        with Progress(TextColumn("[bold]replay[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, disable=no_progress) as prog:
            task = prog.add_task(vpath.name, total=total)
            stats = run_replay(pipeline, sources, lambda n: prog.update(task, completed=n))
        drained = True
        if publisher is not None and outbox is not None:
            what = "a collector's storage receipt for" if cfg.broker and cfg.broker.require_receipt else \
                "the broker to acknowledge"
            console.print(f"waiting up to {drain_timeout:.0f}s for {what} {outbox.depth()[0]} event(s)...")
            drained = publisher.wait_drained(drain_timeout)
    finally:
        for f in (fh, trace_fh):
            if f is not None:
                f.close()
        if publisher is not None:
            publisher.stop()
    table = Table(title=f"replay of {vpath.name}")
    table.add_column("")
    table.add_column("value", justify="right")
    for k, v in summary_rows(stats):
        table.add_row(k, str(v))
    if outbox is not None:
        n, _ = outbox.depth()
        table.add_row("outbox pending", str(n))
        outbox.close()
    if out_file:
        table.add_row("events file", out_file)
    Console().print(table)
    if not drained:
        raise click.ClickException("the broker did not acknowledge every event; they stay in the outbox "
                                   "and are sent by the next `roadeye edge run` / `drain`")


@edge.command()
@click.argument("groundtruth", type=click.Path(exists=True, dir_okay=False))
@click.argument("events", type=click.Path(exists=True, dir_okay=False))
@click.option("--iou", type=float, default=0.3, show_default=True, help="Min vehicle-box IoU to match.")
@click.option("--min-driver-px", type=float, default=48, show_default=True)
@click.option("--analysis-fps", type=float, default=5.0, show_default=True,
              help="The replay's analysis rate (decidable = enough analysed frames).")
@click.option("--camera", "camera_yaml", type=click.Path(exists=True, dir_okay=False),
              help="Camera YAML whose capture zone bounds what is decidable (default: <clip>.camera.yaml "
                   "beside the ground truth, if present).")
@click.option("--json-out", type=click.Path(dir_okay=False), help="Also write the JSON here.")
@click.option("--trace", "trace_file", type=click.Path(exists=True, dir_okay=False),
              help="Track trace of the replay (`replay --trace`): say why each missed violation was missed.")
def score(groundtruth: str, events: str, iou: float, min_driver_px: float, analysis_fps: float,
          camera_yaml: str | None, json_out: str | None, trace_file: str | None) -> None:
    """Violation precision/recall, plate exact match and duplicates of a replay vs ground truth."""
    from edge.camera import CalibrationFileError, load_camera
    from edge.score import GroundTruthError, load_events, load_ground_truth
    from edge.score import score as do_score
    from edge.trace import load_traces

    try:
        gt = load_ground_truth(groundtruth)
        evs = load_events(events)
        if camera_yaml is None:
            beside = Path(groundtruth).with_name(Path(groundtruth).name.replace(".groundtruth.json", ".camera.yaml"))
            camera_yaml = str(beside) if beside.is_file() and beside.name != Path(groundtruth).name else None
        zones = load_camera(camera_yaml).zones if camera_yaml else None
        traces = load_traces(trace_file) if trace_file else None
    except (GroundTruthError, CalibrationFileError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    s = do_score(gt, evs, iou_min=iou, min_driver_px=min_driver_px, analysis_fps=analysis_fps, zones=zones,
                 traces=traces)
    d = s.to_dict()
    text = json.dumps(d, indent=2, ensure_ascii=False)
    click.echo(text)
    if json_out:
        Path(json_out).write_text(text, encoding="utf-8")
    t = Table(title=f"score: {Path(events).name} vs {Path(groundtruth).name}")
    for c in ("metric", "value", "target"):
        t.add_column(c)
    t.add_row("precision", f"{s.precision:.3f}", ">= 0.95")
    t.add_row("recall (decidable)", f"{s.recall:.3f} ({s.detected_decidable}/{s.decidable})", ">= 0.90")
    t.add_row("recall (all)", f"{s.recall_all:.3f} ({s.detected_all}/{s.all_violations})", "")
    t.add_row("plate exact", f"{s.plate_exact_rate:.3f} ({s.plate_exact}/{s.plate_checked})", ">= 0.90")
    t.add_row("duplicates", str(s.duplicates), "0")
    t.add_row("events", str(s.events), "")
    for v, p in sorted(s.per_violation.items()):
        t.add_row(f"  {v}", f"events {p['events']}, detected {p['detected']}/{p['decidable']}", "")
    for m in s.missed:
        if "why" in m:
            t.add_row(f"missed {m['violation']} #{m['vehicle']}", str(m["why"]), "")
    _console().print(t)


def _install_signals(stop: Any) -> None:
    def handler(signum: int, frame: Any) -> None:
        log.warning("signal %d: stopping", signum)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@edge.command()
@click.option("--config", "config_file", required=True, type=click.Path(exists=True, dir_okay=False))
def run(config_file: str) -> None:
    """Run live: every camera in the config, publishing through the durable outbox."""
    from edge.metrics import EdgeMetrics
    from edge.outbox import Outbox
    from edge.pipeline import Pipeline
    from edge.publish import MqttPublisher
    from edge.runner import (
        LiveRunner,
        OutboxSink,
        build_cascade,
        build_models,
        camera_states,
        device_identity,
        live_sources,
    )

    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))
    cfg = _load_cfg(config_file)
    if cfg.broker is None:
        raise click.ClickException(f"{config_file}: broker: required for `run` (events must go somewhere)")
    try:
        models = build_models(cfg)
        device = device_identity(cfg)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    metrics = EdgeMetrics()
    if cfg.metrics_port is not None:
        metrics.serve(cfg.metrics_port)
        log.info("Prometheus metrics on :%d/metrics", cfg.metrics_port)
    outbox = Outbox(cfg.resolve(cfg.outbox.path) or cfg.outbox.path, cfg.outbox.max_bytes, cfg.outbox.max_events)
    n, _ = outbox.depth()
    if n:
        log.warning("outbox holds %d undelivered event(s) from before; sending them first", n)
    cascade = build_cascade(cfg, models)
    sources = live_sources(cfg, prepare=cascade.preview)
    pipeline = Pipeline(cascade, camera_states(cfg, activation=cfg.models.vehicle_conf),
                        device, models.refs, lambda m: None, metrics)
    runner = LiveRunner(pipeline, sources, metrics, outbox, device)
    publisher = MqttPublisher(cfg.broker, cfg.device.id, cfg.device.site, outbox, metrics, runner.heartbeat,
                              resolve=cfg.resolve)
    pipeline.sink = OutboxSink(outbox, cfg.device.site, publisher.notify)
    publisher.start()
    _install_signals(runner.stop)
    try:
        runner.run()
    finally:
        publisher.wait_drained(5.0)
        publisher.stop()
        outbox.close()


@edge.command()
@click.option("--config", "config_file", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--timeout", type=float, default=60.0, show_default=True)
def drain(config_file: str, timeout: float) -> None:
    """Send what is left in the outbox (e.g. after a crash or an outage), then exit."""
    from edge.outbox import Outbox
    from edge.publish import MqttPublisher

    cfg = _load_cfg(config_file)
    if cfg.broker is None:
        raise click.ClickException(f"{config_file}: broker: required for `drain`")
    outbox = Outbox(cfg.resolve(cfg.outbox.path) or cfg.outbox.path, cfg.outbox.max_bytes, cfg.outbox.max_events)
    before = outbox.depth()[0]
    pub = MqttPublisher(cfg.broker, cfg.device.id, cfg.device.site, outbox, resolve=cfg.resolve)
    pub.start()
    t0 = time.monotonic()
    ok = pub.wait_drained(timeout)
    pub.stop()
    left = outbox.depth()[0]
    outbox.close()
    click.echo(f"sent {before - left} of {before} event(s) in {time.monotonic() - t0:.1f}s; {left} left")
    if not ok:
        sys.exit(1)
