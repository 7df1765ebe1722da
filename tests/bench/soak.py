"""`make soak`: looped replay through the whole edge -> broker -> collector chain, JSON report.

What runs (all real processes on loopback):
- mosquitto (persistence on) and `roadeye server collect` (SQLite by default, or an own
  PostgreSQL with --db postgres);
- an edge process (this file with --edge-child) that replays a recorded clip in a loop at
  real time through the real edge runtime: `ReplaySource` decoding the file, the
  `Pipeline` (cascade, ByteTrack tracker, k-of-n rules, plate voting, evidence crops with
  passenger blur, Ed25519 signing), the durable `Outbox` and the MQTT 5 `MqttPublisher`.
  Only the detectors are the colour-keyed doubles of tests/unit/edge/edge_doubles.py, so
  the soak needs no trained weights and spends its CPU on the runtime itself. Each loop
  gets a fresh event-id seed, so every loop's events are new events.

The report: events produced at the edge vs stored (lost, duplicates, unexpected),
throughput, frame-to-stored latency percentiles (captured_at of the violation's frame to
the collector's received_at), RSS and open file handles of the edge and of the collector
(its validation workers included) sampled over time with a flatness verdict, and the
outbox depth over time. Optional --broker-outage-s injects a broker outage half-way.

Usage: python tests/bench/soak.py [--minutes 30] [--sample-s 10] [--db sqlite|postgres]
                                  [--broker-outage-s 0] [--json-out FILE]
Exit status 0 when lost == duplicates == 0 and memory / handles are flat, else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SITE, CAMERA = "site-soak", "cam-soak"


# -- the edge child ------------------------------------------------------------------------------
def write_soak_clip(path: Path) -> Path:
    """A 1920x1080 25 fps clip (mp4v): three cars on three lanes, four violations per pass."""
    from tests.unit.edge.edge_doubles import CarSpec, write_clip

    cars = [CarSpec(100, 40, vx=9, belt=False, plate_gray=250),                # no seat belt
            CarSpec(1400, 390, vx=-8, belt=True, phone=True, plate_gray=230),  # phone
            CarSpec(150, 740, vx=8, belt=False, phone=True, plate_gray=210)]   # both
    write_clip(str(path), cars, 60, size=(1920, 1080), fps=25.0)
    return path


def edge_child(a: argparse.Namespace) -> int:
    from edge.camera import CameraCalibration
    from edge.cascade import Cascade
    from edge.config import BrokerConfig, config_hash
    from edge.event import EventMessage, ModelRef
    from edge.eventbuild import DeviceIdentity
    from edge.keys import load_private_key
    from edge.outbox import Outbox
    from edge.pipeline import CameraState, Pipeline, new_tracker
    from edge.publish import MqttPublisher
    from edge.runner import FanOut, OutboxSink
    from edge.sources import ReplaySource
    from tests.unit.edge.edge_doubles import GrayPlateDetector, GrayPlateReader, occupants_detector, vehicles_detector

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    key = load_private_key(a.key)
    outbox = Outbox(a.outbox)
    pub = MqttPublisher(BrokerConfig(host="127.0.0.1", port=a.port, keepalive_s=10, heartbeat_s=5),
                        a.device_id, SITE, outbox)
    pub.start()
    produced = open(a.produced, "a", buffering=1)  # noqa: SIM115 - closed at exit

    def log_sink(msg: EventMessage) -> None:
        produced.write(f"{msg.event.event_id} {msg.event.captured_at.isoformat()} {time.time():.3f}\n")

    cal = CameraCalibration(camera_id=CAMERA, image_size=(1920, 1080))
    refs = [ModelRef(name="vehicles", version="soak-doubles", sha256="a" * 64)]
    device = DeviceIdentity(a.device_id, SITE, key)
    loops = frames = 0
    print("READY", flush=True)
    while not stop.is_set():
        cascade = Cascade(vehicles_detector(), occupants_detector(), GrayPlateDetector(), GrayPlateReader())
        cams = {CAMERA: CameraState(cal, config_hash(cal), new_tracker(5.0))}
        pipeline = Pipeline(cascade, cams, device, refs, FanOut(OutboxSink(outbox, SITE, pub.notify), log_sink),
                            event_id_seed=f"soak-{a.run_id}-{loops}")
        src = ReplaySource(CAMERA, a.clip, analysis_fps=5.0, realtime=True, start_time=datetime.now(UTC))
        for f in src:
            pipeline.process([f])
            frames += 1
            if stop.is_set():
                break
        pipeline.flush()
        loops += 1
    produced.close()
    pub.wait_drained(60)
    pub.stop()
    print(f"DONE {json.dumps({'loops': loops, 'frames_analysed': frames, 'outbox_left': outbox.depth()[0]})}",
          flush=True)
    outbox.close()
    return 0


# -- the orchestrator ---------------------------------------------------------------------------
def tree_pids(pid: int) -> list[int]:
    out = [pid]
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            kids = Path(f"/proc/{pid}/task/{t}/children").read_text().split()
            for k in kids:
                out += tree_pids(int(k))
    except OSError:
        pass
    return out


def sample_tree(pid: int) -> tuple[float | None, int | None]:
    """(RSS MiB, open fds) of a process and its descendants (the collector's worker pool)."""
    from tests.faults.faults_helpers import open_fds, rss_kb

    rss, fds, seen = 0, 0, False
    for p in tree_pids(pid):
        r, f = rss_kb(p), open_fds(p)
        if r is not None:
            rss += r
            seen = True
        fds += f or 0
    return (round(rss / 1024, 1), fds) if seen else (None, None)


def flatness(series: list[float], tol_frac: float, tol_abs: float) -> dict[str, Any]:
    """Compare the first and last thirds after a warm-up tenth; slope by least squares per hour."""
    if len(series) < 6:
        return {"verdict": "too few samples", "flat": None}
    s = series[max(1, len(series) // 10):]
    k = max(1, len(s) // 3)
    first, last = statistics.median(s[:k]), statistics.median(s[-k:])
    growth = last - first
    flat = growth <= max(tol_abs, tol_frac * first)
    return {"first_third_median": round(first, 1), "last_third_median": round(last, 1), "growth": round(growth, 1),
            "tolerance": round(max(tol_abs, tol_frac * first), 1), "flat": flat,
            "verdict": "flat" if flat else "GROWING"}


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return round(v[min(len(v) - 1, round(q / 100 * (len(v) - 1)))], 1)


def orchestrate(a: argparse.Namespace) -> int:
    from sqlalchemy import select

    from server.db.engine import Database
    from server.db.models import EventRow
    from tests.faults.faults_helpers import Proc, Store, make_device, start_collector, wait_subscribed
    from tests.services import MosquittoBroker, PostgresServer

    work = Path(tempfile.mkdtemp(prefix="roadeye-soak-"))
    duration = a.minutes * 60.0
    print(f"soak: {a.minutes} min, work dir {work}", file=sys.stderr)
    broker = MosquittoBroker(work / "mqtt").start()
    pg = None
    if a.db == "postgres":
        pg = PostgresServer().start()
        db_url = pg.create_database("soak")
    else:
        db_url = f"sqlite:///{work / 'server.db'}"
    dev = make_device(work / "keys", "soak-box")
    clip = write_soak_clip(work / "soak.mp4")
    store = Store(db_url)
    col = start_collector(db_url=db_url, data_dir=work / "srv", port=broker.port, device=dev,
                          log=work / "collector.log", client_id="soak-collector")
    edge: Proc | None = None
    samples: list[dict[str, Any]] = []
    report: dict[str, Any] = {"minutes": a.minutes, "db": a.db, "work_dir": str(work)}
    ok = False
    try:
        wait_subscribed(store, broker.host, broker.port, site=SITE)
        produced_path = work / "produced.log"
        edge = Proc([sys.executable, str(Path(__file__).resolve()), "--edge-child", "--port", str(broker.port),
                     "--key", str(dev.private), "--device-id", dev.device_id, "--outbox", str(work / "outbox.db"),
                     "--produced", str(produced_path), "--clip", str(clip), "--run-id", str(int(time.time()))],
                    work / "edge.log")
        edge.wait_line("READY", 120)
        t0 = time.monotonic()
        outage_at = duration / 2 if a.broker_outage_s > 0 else None
        outage_done = False
        next_sample = t0
        while time.monotonic() - t0 < duration:
            now = time.monotonic()
            if outage_at is not None and not outage_done and now - t0 >= outage_at:
                print(f"soak: broker outage for {a.broker_outage_s:.0f}s", file=sys.stderr)
                broker.stop(signal.SIGTERM)
                time.sleep(a.broker_outage_s)
                broker.start()
                outage_done = True
            if now >= next_sample:
                e_rss, e_fds = sample_tree(edge.pid)
                c_rss, c_fds = sample_tree(col.pid)
                produced = len(produced_path.read_bytes().splitlines()) if produced_path.exists() else 0
                samples.append({"t_s": round(now - t0, 1), "edge_rss_mib": e_rss, "edge_fds": e_fds,
                                "collector_rss_mib": c_rss, "collector_fds": c_fds, "produced": produced,
                                "stored": store.count_events()})
                print(f"soak: {json.dumps(samples[-1])}", file=sys.stderr)
                next_sample += a.sample_s
            if not edge.alive() or not col.alive():
                report["error"] = f"a process died: edge rc={edge.proc.poll()} collector rc={col.proc.poll()}"
                break
            time.sleep(0.5)
        run_s = time.monotonic() - t0
        edge.kill(signal.SIGTERM, timeout=120)
        done = next((ln for ln in edge.lines if ln.startswith("DONE ")), None)
        edge_stats = json.loads(done[5:]) if done else {}
        produced_rows = [ln.split() for ln in produced_path.read_text().splitlines() if ln.strip()]
        produced_ids = [r[0] for r in produced_rows]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not set(produced_ids) <= set(store.event_ids()):
            time.sleep(0.5)
        db = Database(db_url, migrate=False)
        with db.session() as s:
            rows = list(s.execute(select(EventRow.event_id, EventRow.captured_at, EventRow.received_at)))
        db.dispose()
        stored_ids = [r[0] for r in rows]
        lat = [(r[2] - r[1]).total_seconds() * 1000 for r in rows if r[0] in set(produced_ids)]
        emitted = {r[0]: float(r[2]) for r in produced_rows if len(r) > 2}
        transport = [(r[2].timestamp() - emitted[r[0]]) * 1000 for r in rows if r[0] in emitted]
        exp, got = set(produced_ids), set(stored_ids)
        def series(key: str) -> list[float]:
            return [float(x[key]) for x in samples if x[key] is not None]

        flat = {
            "edge_rss": flatness(series("edge_rss_mib"), 0.10, 20.0),
            "collector_rss": flatness(series("collector_rss_mib"), 0.10, 20.0),
            "edge_fds": flatness(series("edge_fds"), 0.0, 5.0),
            "collector_fds": flatness(series("collector_fds"), 0.0, 5.0),
        }
        report.update({
            "run_s": round(run_s, 1),
            "edge": edge_stats,
            "events": {"produced": len(produced_ids), "stored": len(got & exp), "lost": len(exp - got),
                       "duplicates_produced": len(produced_ids) - len(exp),
                       "duplicates_stored": len(stored_ids) - len(got), "unexpected": len(got - exp),
                       "dead_letters": store.count_dead(),
                       "left_in_edge_outbox_at_exit": edge_stats.get("outbox_left")},
            "throughput": {"events_per_s": round(len(got & exp) / run_s, 3) if run_s else None,
                           "frames_analysed_per_s": round(edge_stats.get("frames_analysed", 0) / run_s, 2)
                           if run_s else None},
            "latency_ms_frame_to_stored": {"p50": pct(lat, 50), "p95": pct(lat, 95), "p99": pct(lat, 99),
                                           "max": round(max(lat), 1) if lat else None, "n": len(lat),
                                           "note": "violating frame's capture time -> collector received_at; "
                                                   "includes the edge waiting for the track to end"},
            "latency_ms_emitted_to_stored": {"p50": pct(transport, 50), "p95": pct(transport, 95),
                                             "p99": pct(transport, 99), "n": len(transport),
                                             "note": "event committed to the outbox -> stored at the server"},
            "broker_outage_s": a.broker_outage_s,
            "flatness": flat,
            "samples": samples,
        })
        ok = (report["events"]["lost"] == 0 and report["events"]["duplicates_stored"] == 0
              and report["events"]["unexpected"] == 0 and len(produced_ids) > 0 and "error" not in report
              and all(v.get("flat") is not False for v in flat.values()))
    finally:
        if edge is not None:
            edge.kill(signal.SIGKILL)
        col.kill(signal.SIGTERM)
        store.close()
        broker.close()
        if pg is not None:
            pg.close()
    report["ok"] = ok
    text = json.dumps(report, indent=2)
    if a.json_out:
        Path(a.json_out).write_text(text)
    print(text)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="roadeye soak: looped replay edge -> broker -> collector")
    ap.add_argument("--minutes", type=float, default=30.0, help="soak duration (default 30)")
    ap.add_argument("--sample-s", type=float, default=10.0, help="RSS / file handle sampling period")
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--broker-outage-s", type=float, default=0.0, help="stop the broker this long at half-time")
    ap.add_argument("--json-out", default=None)
    # edge child mode (internal)
    ap.add_argument("--edge-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--key", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--device-id", help=argparse.SUPPRESS)
    ap.add_argument("--outbox", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--produced", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--clip", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--run-id", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.minutes <= 0:
        ap.error("--minutes must be > 0")
    if a.edge_child:
        return edge_child(a)
    return orchestrate(a)


if __name__ == "__main__":
    sys.exit(main())
