"""A real edge process for fault tests and the soak: signed events -> durable outbox -> MQTT 5.

It runs the edge's own publishing path (`edge.runner.OutboxSink`, `edge.outbox.Outbox`,
`edge.publish.MqttPublisher`, `edge.metrics.EdgeMetrics`, a heartbeat with the outbox
figures) and stands in for the detector only: event i of a run is a signed ViolationEvent
with small JPEG evidence whose `event_id` is derived from (run id, i). That makes the set
of events "produced at the edge" exactly known (ids 0..count-1), also across a SIGKILL and
restart: a restarted worker resumes at the first index its produced log does not list, and
re-putting an index that reached the outbox just before the kill is a no-op (the outbox is
unique on event_id), exactly like the real pipeline's deterministic replay ids.

A sink failure (e.g. disk full) is handled the way `edge.runner.LiveRunner` handles a
failing tick: logged, counted, and the pipeline moves on (printed as `SINK_ERROR i ...`).

Run: python -m tests.faults.fault_edge --outbox P --host H --port N --key PEM --count N ...
Prints `READY` once connected (or at once with --no-wait-connect), `PRODUCED n` when all
events were handed to the outbox, `DRAINED` when the outbox is empty (every event receipted
by a collector, unless --no-receipts), then idles until SIGTERM/SIGKILL (with --exit-when-drained it exits 0 instead).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.config import BrokerConfig
from edge.event import CameraHealth, EventMessage, Heartbeat, utc_now
from edge.eventbuild import deterministic_event_id
from edge.keys import load_private_key
from edge.metrics import EdgeMetrics
from edge.outbox import Outbox
from edge.publish import MqttPublisher
from edge.runner import OutboxSink

ID_BASE = datetime(2026, 1, 1, tzinfo=UTC)


def event_id_for(run_id: str, i: int) -> str:
    """The id of event i of a run (time part = ID_BASE + i ms keeps ids ordered by index)."""
    return deterministic_event_id(ID_BASE + timedelta(milliseconds=i), "faults", run_id, i)


def expected_ids(run_id: str, count: int, start: int = 0) -> list[str]:
    return [event_id_for(run_id, i) for i in range(start, count)]


class EventFactory:
    """Signed events around one set of evidence images (JPEG encoding once, signing per event)."""

    def __init__(self, device_id: str, site_id: str, camera_id: str, key_path: Path, evidence_bytes: int) -> None:
        from server.sample import SampleDevice, make_message

        self.key = load_private_key(key_path)
        self.device = SampleDevice(device_id=device_id, site_id=site_id, camera_id=camera_id, key=self.key)
        msg, self.blobs = make_message(self.device, seed=0, evidence_bytes=evidence_bytes, sign=False)
        self.template = msg.event

    def make(self, run_id: str, i: int) -> EventMessage:
        ev = self.template.model_copy(update={
            "event_id": event_id_for(run_id, i), "captured_at": utc_now(), "frame_seq": i, "track_id": i % 100000,
        })
        return EventMessage.build(ev.signed(self.key, self.device.device_id), self.blobs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--outbox", type=Path, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--key", type=Path, required=True, help="device private key PEM")
    ap.add_argument("--device-id", default="fault-box")
    ap.add_argument("--site", default="site-f")
    ap.add_argument("--camera", default="cam-f")
    ap.add_argument("--run-id", default="run")
    ap.add_argument("--count", type=int, default=100, help="events in the run (0 = endless)")
    ap.add_argument("--rate", type=float, default=50.0, help="events per second (0 = as fast as possible)")
    ap.add_argument("--produced", type=Path, required=True, help="append-only log of produced indices")
    ap.add_argument("--evidence-bytes", type=int, default=0)
    ap.add_argument("--metrics-port", type=int, default=None)
    ap.add_argument("--heartbeat-s", type=float, default=1.0)
    ap.add_argument("--max-inflight", type=int, default=20)
    ap.add_argument("--outbox-max-events", type=int, default=100_000)
    ap.add_argument("--username", default=None)
    ap.add_argument("--password", default=None)
    ap.add_argument("--tls-ca", type=Path, default=None)
    ap.add_argument("--receipt-timeout", type=float, default=5.0,
                    help="resend a PUBACKed event with no storage receipt after this many seconds")
    ap.add_argument("--no-receipts", action="store_true", help="forget events on PUBACK (no collector receipts)")
    ap.add_argument("--exit-when-drained", action="store_true")
    ap.add_argument("--no-wait-connect", action="store_true")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    factory = EventFactory(a.device_id, a.site, a.camera, a.key, a.evidence_bytes)
    outbox = Outbox(a.outbox, max_events=a.outbox_max_events)
    metrics = EdgeMetrics()
    if a.metrics_port:
        metrics.serve(a.metrics_port, addr="127.0.0.1")
    started = time.monotonic()
    state = {"produced": 0, "sink_errors": 0}

    def heartbeat() -> Heartbeat:
        n, size = outbox.depth()
        return Heartbeat(device_id=a.device_id, site_id=a.site, sent_at=utc_now(),
                         uptime_s=round(time.monotonic() - started, 1), clock=factory.template.clock,
                         outbox_depth=n, outbox_bytes=size, outbox_alarm=outbox.alarm,
                         cameras={a.camera: CameraHealth(connected=True, fps_in=a.rate, fps_analysed=a.rate,
                                                         frames_dropped=0, reconnects=0,
                                                         events_emitted=state["produced"])})

    cfg = BrokerConfig(host=a.host, port=a.port, keepalive_s=5, heartbeat_s=a.heartbeat_s,
                       max_inflight=a.max_inflight, username=a.username, password=a.password,
                       tls=a.tls_ca is not None, ca_cert=a.tls_ca, require_receipt=not a.no_receipts,
                       receipt_timeout_s=a.receipt_timeout)
    pub = MqttPublisher(cfg, a.device_id, a.site, outbox, metrics, heartbeat)
    sink = OutboxSink(outbox, a.site, pub.notify)
    pub.start()
    if not a.no_wait_connect and not pub.connected.wait(30):
        print("NOCONNECT", flush=True)
    print("READY", flush=True)

    a.produced.parent.mkdir(parents=True, exist_ok=True)
    start = len(a.produced.read_text().splitlines()) if a.produced.exists() else 0
    log_fh = open(a.produced, "a", buffering=1)  # noqa: SIM115 - closed at exit
    i = start
    period = 1.0 / a.rate if a.rate > 0 else 0.0
    next_at = time.monotonic()
    while not stop.is_set() and (a.count == 0 or i < a.count):
        msg = factory.make(a.run_id, i)
        try:
            sink(msg)
        except Exception as exc:  # what LiveRunner does with a failing tick: log, count, go on
            state["sink_errors"] += 1
            print(f"SINK_ERROR {i} {type(exc).__name__}: {exc}", flush=True)
        log_fh.write(f"{i} {msg.event.event_id} {msg.event.captured_at.isoformat()}\n")
        state["produced"] = i + 1
        metrics.events.labels(a.camera, msg.event.violation.value).inc()
        metrics.outbox_alarm.set(1 if outbox.alarm else 0)
        i += 1
        if period:
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                stop.wait(delay)
            else:
                next_at = time.monotonic()
    log_fh.close()
    print(f"PRODUCED {i}", flush=True)
    while not stop.is_set():
        if outbox.depth()[0] == 0:
            print("DRAINED", flush=True)
            if a.exit_when_drained:
                break
            stop.wait()
            break
        stop.wait(0.1)
    pub.wait_drained(2.0)
    pub.stop()
    outbox.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
