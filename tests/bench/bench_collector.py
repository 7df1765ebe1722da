"""Collector ingest throughput vs the raw broker, measured side by side in one run.

Same payloads (signed events with ~250 kB of JPEG evidence), same publisher, same broker:
1. raw: a plain paho subscriber (QoS 1, auto-ack) in its own process counts messages;
2. collector -> SQLite: `roadeye server collect` in its own process (validate, verify the
   signature, hash evidence, fsync evidence files, commit, then ack);
3. collector -> PostgreSQL: the same against a real PostgreSQL.
Rate = messages / (time of last stored/received - time of first publish). The goal is a
collector rate >= 0.8 x raw. Prints one JSON object (last stdout line).

    python tests/bench/bench_collector.py [--events 300] [--evidence-bytes 250000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
GOAL_RATIO = 0.8  # collector events/s over the raw broker's messages/s
sys.path.insert(0, str(REPO))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from edge.event import EventMessage, EvidenceKind, event_topic, heartbeat_topic  # noqa: E402
from server.sample import SampleDevice, assemble, make_message  # noqa: E402
from tests.services import MosquittoBroker, PostgresServer  # noqa: E402

RAW_SUB = r"""
import sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
n = int(sys.argv[3]); got = [0]
def on_connect(c, u, f, rc, p): c.subscribe("roadeye/v1/+/+/events", qos=1)
def on_subscribe(c, u, mid, rc, p): print("ready", flush=True)
def on_message(c, u, m):
    got[0] += 1
    if got[0] == n:
        print(f"done {time.time():.6f}", flush=True); c.disconnect()
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw", protocol=mqtt.MQTTv5)
c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
c.connect(sys.argv[1], int(sys.argv[2])); c.loop_forever()
"""


def with_comment(jpeg: bytes, text: str) -> bytes:
    """Make a JPEG unique (distinct SHA-256) with a COM segment; the picture is unchanged."""
    body = text.encode()
    return jpeg[:2] + b"\xff\xfe" + (len(body) + 2).to_bytes(2, "big") + body + jpeg[2:]


def build_payloads(dev: SampleDevice, n: int, evidence_bytes: int) -> list[bytes]:
    base, blobs = make_message(dev, seed=1, evidence_bytes=evidence_bytes)
    by_kind = {e.kind: (blobs[e.sha256], e) for e in base.event.evidence}
    t0 = datetime.now(UTC)
    out = []
    for i in range(n):
        items = []
        for kind in (EvidenceKind.OVERVIEW, EvidenceKind.DRIVER_CROP, EvidenceKind.PLATE_CROP):
            data, item = by_kind[kind]
            boxes = [(b.label, tuple(b.box.as_list())) for b in item.boxes]
            items.append((kind, with_comment(data, f"bench {i} {kind}"), item.width, item.height, boxes))
        ev = base.event
        assert ev.plate is not None
        msg, _ = assemble(dev, items, plate_text=ev.plate.text, plate_box=tuple(ev.plate.box.as_list()),  # type: ignore[arg-type]
                          vehicle_box=tuple(ev.vehicle.box.as_list()), violation=ev.violation,  # type: ignore[arg-type]
                          captured_at=t0 + timedelta(milliseconds=i), seed=i)
        out.append(msg.to_bytes())
    return out


class Publisher:
    def __init__(self, port: int) -> None:
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}", protocol=mqtt.MQTTv5)
        self.c.max_inflight_messages_set(100)
        self.c.max_queued_messages_set(0)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def publish_all(self, topic: str, payloads: list[bytes]) -> float:
        t0 = time.time()
        infos = [self.c.publish(topic, p, qos=1) for p in payloads]
        for i in infos:
            i.wait_for_publish(120)
        return t0

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _proc_cpu_s(pid: int) -> tuple[float, int]:
    """(user + system CPU seconds, parent pid) of a live process; (0, 0) when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[1])


def _tree_cpu_s(root: int) -> float:
    """CPU seconds of a process and all its live descendants (the collector's workers)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            cpu[int(d)], parents[int(d)] = _proc_cpu_s(int(d))
    tree, grew = {root}, True
    while grew:
        more = {p for p, pp in parents.items() if pp in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(cpu.get(p, 0.0) for p in tree)


class CpuMeter:
    """CPU seconds (user + system) spent per message by each party during one run: this
    process (the publisher, plus light polling), the consumer process tree (raw subscriber,
    or collector with its worker processes) and the broker. Shows where a 2-core machine's
    time goes, which a rate alone cannot."""

    def __init__(self, broker: MosquittoBroker, consumer_pid: int) -> None:
        self.broker_pid = broker.proc.pid if broker.proc is not None else 0
        self.consumer_pid = consumer_pid
        self.t = self.now()

    def now(self) -> tuple[float, float, float]:
        me = resource.getrusage(resource.RUSAGE_SELF)
        return (me.ru_utime + me.ru_stime, _tree_cpu_s(self.consumer_pid), _proc_cpu_s(self.broker_pid)[0])

    def per_msg_ms(self, n: int, end: tuple[float, float, float] | None = None) -> dict[str, float]:
        pub, consumer, broker = (1000 * (b - a) / n for a, b in zip(self.t, end or self.now(), strict=True))
        return {"publisher": round(pub, 2), "consumer": round(consumer, 2), "broker": round(broker, 2),
                "total": round(pub + consumer + broker, 2)}


def cpu_budget(raw: dict[str, Any], collector: dict[str, Any], cpus: int) -> dict[str, float]:
    """Why the ratio is what it is. When the raw run keeps every core busy (publisher, broker
    and subscriber all on this machine), a consumer that costs more CPU per message slows the
    whole machine down, so the collector can reach at most raw CPU / collector CPU per message
    of the raw rate; the last figure is the collector CPU per message the goal would allow."""
    r, c = raw["cpu_ms_per_msg"], collector["cpu_ms_per_msg"]
    others = c["publisher"] + c["broker"]
    return {"raw_cores_busy": round(r["total"] * raw["msgs_per_s"] / 1000, 2), "cpus": cpus,
            "raw_cpu_ms_per_msg": r["total"], "collector_run_cpu_ms_per_msg": c["total"],
            "ratio_bound_when_cpu_bound": round(r["total"] / max(c["total"], 1e-9), 3),
            "collector_cpu_ms_per_msg": c["consumer"],
            "collector_cpu_ms_per_msg_for_goal": round(max(r["total"] / GOAL_RATIO - others, 0.0), 2)}


def run_raw(broker: MosquittoBroker, payloads: list[bytes], topic: str) -> dict[str, object]:
    sub = subprocess.Popen([sys.executable, "-c", RAW_SUB, "127.0.0.1", str(broker.port), str(len(payloads))],
                           stdout=subprocess.PIPE, text=True)
    assert sub.stdout is not None
    assert sub.stdout.readline().strip() == "ready"
    pub = Publisher(broker.port)
    cpu = CpuMeter(broker, sub.pid)
    t0 = pub.publish_all(topic, payloads)
    line = sub.stdout.readline().split()
    end = cpu.now()
    sub.wait(60)
    pub.close()
    elapsed = float(line[1]) - t0
    return {"seconds": round(elapsed, 3), "msgs_per_s": round(len(payloads) / elapsed, 1),
            "cpu_ms_per_msg": cpu.per_msg_ms(len(payloads), end)}


def _end_session(port: int, client_id: str) -> None:
    """Drop a finished collector's persistent session, or the broker keeps queueing every
    later run's messages for it (its shared-subscription group stays subscribed)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", port, clean_start=True)  # session expiry 0: gone at disconnect
    c.loop_start()
    time.sleep(0.2)
    c.disconnect()
    c.loop_stop()


def precreate_evidence_dirs(payloads: list[bytes], evidence_dir: Path) -> int:
    """The `ab/cd/` directories these events' evidence will land in, made beforehand: what a
    store that has run for a while looks like (all 65536 exist after ~10^5 events), so the
    run measures steady state instead of a new store's directory creation."""
    dirs = {evidence_dir / e.sha256[:2] / e.sha256[2:4]
            for p in payloads for e in EventMessage.from_bytes(p).event.evidence}
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    return len(dirs)


def run_collector(broker: MosquittoBroker, payloads: list[bytes], topic: str, dev: SampleDevice, db_url: str,
                  count, work: Path, label: str, workers: int | None,  # type: ignore[no-untyped-def]
                  steady_store: bool = False) -> dict[str, object]:
    if steady_store:
        precreate_evidence_dirs(payloads, work / label / "evidence")
    pem = work / "dev.pub"
    pem.write_text(dev.public_pem)
    log = open(work / f"collector-{label}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "server", "collect", "--db", db_url,
                             "--data-dir", str(work / label), "--mqtt-port", str(broker.port),
                             "--client-id", f"bench-{label}", "--group", f"bench-{label}",
                             "--register-device-key", f"{dev.device_id}={pem}",
                             *(["--workers", str(workers)] if workers is not None else [])],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    pub = Publisher(broker.port)
    try:
        hb = json.dumps({"device_id": dev.device_id, "site_id": dev.site_id, "sent_at": datetime.now(UTC).isoformat(),
                         "uptime_s": 1, "clock": {"source": "ntp", "synchronized": True, "offset_ms": 0},
                         "outbox_depth": 0, "outbox_bytes": 0}).encode()
        deadline = time.monotonic() + 60
        while count("device_health") < 1:  # collector subscribed and writing
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"collector did not start: {(work / f'collector-{label}.log').read_text()[-2000:]}")
            pub.c.publish(heartbeat_topic(dev.site_id, dev.device_id), hb, qos=1).wait_for_publish(10)
            time.sleep(0.2)
        cpu = CpuMeter(broker, proc.pid)
        t0 = pub.publish_all(topic, payloads)
        deadline = time.monotonic() + float(os.environ.get("ROADEYE_BENCH_WAIT", "120"))
        while (stored := count("events")) < len(payloads):
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {stored}/{len(payloads)} events stored in time; "
                                   f"log: {(work / f'collector-{label}.log').read_text()[-3000:]}")
            time.sleep(0.02)
        elapsed = time.time() - t0
        end = cpu.now()
        dead = count("dead_letters")
    finally:
        pub.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()
        _end_session(broker.port, f"bench-{label}")
    return {"seconds": round(elapsed, 3), "events_per_s": round(len(payloads) / elapsed, 1), "dead_letters": dead,
            "cpu_ms_per_msg": cpu.per_msg_ms(len(payloads), end)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=300)
    ap.add_argument("--evidence-bytes", type=int, default=250_000)
    ap.add_argument("--skip-postgres", action="store_true")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved rounds; the best run of each kind counts")
    ap.add_argument("--collector-workers", type=int, default=None,
                    help="validation processes of the collector (default: its own default)")
    ap.add_argument("--steady-state-store", action="store_true",
                    help="pre-create the evidence store's ab/cd/ directories the events need (a store "
                         "that has run for a while); default: a new, empty store")
    args = ap.parse_args()
    dev = SampleDevice(device_id="bench-edge", site_id="bench-site", camera_id="cam-1")
    payloads = build_payloads(dev, args.events, args.evidence_bytes)
    topic = event_topic(dev.site_id, dev.camera_id)
    first = EventMessage.from_bytes(payloads[0])
    result: dict[str, object] = {
        "events": args.events,
        "payload_bytes_avg": round(sum(map(len, payloads)) / len(payloads)),
        "evidence_bytes_avg": sum(e.size for e in first.event.evidence),
        "cpus": os.cpu_count(),
        "load_avg_1m_before": round(os.getloadavg()[0], 1),
        "evidence_store": "steady state (directories exist)" if args.steady_state_store else "new, empty",
        "goal_ratio": GOAL_RATIO,
    }
    runs: dict[str, list[dict[str, Any]]] = {"raw": [], "sqlite": [], "postgresql": []}
    with tempfile.TemporaryDirectory(prefix="roadeye-bench-", dir=os.environ.get("ROADEYE_BENCH_TMP")) as tmp, \
            contextlib.ExitStack() as stack:
        work = Path(tmp)
        broker = stack.enter_context(MosquittoBroker(work / "mqtt"))
        pg = None if args.skip_postgres else stack.enter_context(PostgresServer())
        # Interleaved rounds (raw, SQLite, PostgreSQL, raw, ...): on a shared machine a load
        # spike then hits one run of each kind, not a whole kind; the best run of each is kept.
        for r in range(args.repeats):
            runs["raw"].append(run_raw(broker, payloads, topic))
            db_path = work / f"bench-{r}.db"
            runs["sqlite"].append(run_collector(broker, payloads, topic, dev, f"sqlite:///{db_path}",
                                                _sqlite_counter(db_path), work, f"sqlite-{r}",
                                                args.collector_workers, args.steady_state_store))
            if pg is not None:
                import sqlalchemy as sa

                url = pg.create_database(f"bench_{r}")
                engine = sa.create_engine(url)
                runs["postgresql"].append(run_collector(broker, payloads, topic, dev, url, _pg_counter(engine),
                                                        work, f"postgresql-{r}", args.collector_workers,
                                                        args.steady_state_store))
                engine.dispose()
    raw_best = max(runs["raw"], key=lambda x: x["msgs_per_s"])
    best_raw = raw_best["msgs_per_s"]
    result["raw_mosquitto_qos1"] = {"msgs_per_s": best_raw, "runs": [x["msgs_per_s"] for x in runs["raw"]],
                                    "cpu_ms_per_msg": [x["cpu_ms_per_msg"] for x in runs["raw"]]}
    ratios = []
    for kind in ("sqlite", "postgresql"):
        if runs[kind]:
            best_run = max(runs[kind], key=lambda x: x["events_per_s"])
            best = best_run["events_per_s"]
            ratios.append(round(best / best_raw, 3))
            result[f"collector_{kind}"] = {
                "events_per_s": best, "ratio_to_raw": ratios[-1],
                "cpu_budget": cpu_budget(raw_best, best_run, os.cpu_count() or 1),
                "runs": [x["events_per_s"] for x in runs[kind]],
                "cpu_ms_per_msg": [x["cpu_ms_per_msg"] for x in runs[kind]],
                "dead_letters": sum(int(x["dead_letters"]) for x in runs[kind])}
    result["goal_met"] = all(r >= GOAL_RATIO for r in ratios)
    result["load_avg_1m_after"] = round(os.getloadavg()[0], 1)
    result["note"] = ("rates are messages / (last stored or received - first publish); PostgreSQL of "
                      "tests.services runs with fsync=off, the SQLite and evidence writes are fsync'd")
    print(json.dumps(result))
    return 0


def _sqlite_counter(db_path: Path):  # type: ignore[no-untyped-def]
    def count(table: str) -> int:
        if not db_path.exists():
            return 0
        try:
            with sqlite3.connect(db_path, timeout=5) as c:
                return int(c.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        except sqlite3.OperationalError:
            return 0
    return count


def _pg_counter(engine):  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    def count(table: str) -> int:
        try:
            with engine.connect() as c:
                return int(c.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() or 0)
        except sa.exc.ProgrammingError:
            return 0
    return count


if __name__ == "__main__":
    sys.exit(main())
