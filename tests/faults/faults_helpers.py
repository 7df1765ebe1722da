"""Helpers for the fault suite and the soak: real `roadeye` collector processes, real edge
processes (tests/faults/fault_edge.py), and the one figure every case reports: events
produced at the edge against events stored at the server (lost, duplicates)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def wait_until(pred: Callable[[], bool], timeout: float, what: str = "condition", every: float = 0.1) -> float:
    """Poll `pred`; returns the seconds it took; raises AssertionError naming `what` on timeout."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def child_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Proc:
    """A child process whose stdout lines are collected by a thread (stderr to a log file)."""

    def __init__(self, cmd: list[str], log: Path, prefix: list[str] | None = None) -> None:
        self.cmd = [*(prefix or []), *cmd]
        self.log = log
        self.lines: list[str] = []
        self._cv = threading.Condition()
        log.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=child_env(), stdout=subprocess.PIPE,
                                     stderr=open(log, "ab"), text=True)  # noqa: SIM115
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()

    def wait_line(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for ln in self.lines:
                    if ln.startswith(prefix):
                        return ln
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._t.is_alive()):
                    raise AssertionError(f"{self.cmd[:4]}: no line {prefix!r} after {timeout}s; "
                                         f"rc={self.proc.poll()} stdout={self.lines[-5:]}\n{self.log_tail()}")
                self._cv.wait(min(left, 0.5))

    def has_line(self, prefix: str) -> bool:
        with self._cv:
            return any(ln.startswith(prefix) for ln in self.lines)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


class Owned(contextlib.ExitStack):
    """What a fault case started, stopped newest-first when the case ends, pass or fail.

    `thing = owned(thing)` registers how to stop it and returns it: a `Proc` gets kill(SIGTERM)
    (nothing once it has exited, so a process killed and restarted by the case may be owned
    each time), a `subprocess.Popen` SIGTERM and a 10 s wait, an MQTT client disconnect and
    loop_stop, anything else with close() close(). Anything else is a TypeError: a case must
    not believe something is stopped that nobody stops. Any other step is an ExitStack
    `callback`, a context manager (namespaces, a tmpfs) `enter_context`."""

    def __call__(self, thing: T) -> T:
        if isinstance(thing, Proc):
            self.callback(thing.kill, signal.SIGTERM)
        elif isinstance(thing, subprocess.Popen):
            self.callback(_stop_popen, thing)
        elif isinstance(thing, mqtt.Client):
            self.callback(_stop_mqtt, thing)
        elif callable(close := getattr(thing, "close", None)):
            self.callback(close)
        else:
            raise TypeError(f"Owned cannot stop a {type(thing).__name__}: "
                            "not a Proc, Popen or MQTT client, and it has no close()")
        return thing


def _stop_popen(p: subprocess.Popen[Any]) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        p.wait(10)


def _stop_mqtt(c: mqtt.Client) -> None:
    c.disconnect()
    c.loop_stop()


# -- device keys ---------------------------------------------------------------------------
@dataclass
class DeviceKeys:
    device_id: str
    private: Path
    public: Path


def make_device(folder: Path, device_id: str = "fault-box") -> DeviceKeys:
    from edge.keys import generate_keypair

    priv, pub = generate_keypair(folder, device_id, overwrite=True)
    return DeviceKeys(device_id, Path(priv), Path(pub))


# -- processes -------------------------------------------------------------------------------
def start_collector(*, db_url: str, data_dir: Path, port: int, device: DeviceKeys, log: Path,
                    host: str = "127.0.0.1", client_id: str = "fault-collector", group: str = "collectors",
                    extra: list[str] | None = None, prefix: list[str] | None = None) -> Proc:
    """`roadeye server collect` as a real child process (SIGKILL-able)."""
    cmd = [sys.executable, "-m", "edge.cli", "server", "collect", "--db", db_url, "--data-dir", str(data_dir),
           "--mqtt-host", host, "--mqtt-port", str(port), "--client-id", client_id, "--group", group,
           "--register-device-key", f"{device.device_id}={device.public}", *(extra or [])]
    return Proc(cmd, log, prefix)


def start_edge(*, outbox: Path, port: int, device: DeviceKeys, produced: Path, log: Path, run_id: str,
               count: int, rate: float, host: str = "127.0.0.1", extra: list[str] | None = None,
               prefix: list[str] | None = None, wait_ready: bool = True) -> Proc:
    """tests/faults/fault_edge.py as a real child process (SIGKILL-able)."""
    cmd = [sys.executable, "-m", "tests.faults.fault_edge", "--outbox", str(outbox), "--host", host,
           "--port", str(port), "--key", str(device.private), "--device-id", device.device_id,
           "--run-id", run_id, "--count", str(count), "--rate", str(rate), "--produced", str(produced),
           *(extra or [])]
    p = Proc(cmd, log, prefix)
    if wait_ready:
        p.wait_line("READY", 60)
    return p


# -- the database side ----------------------------------------------------------------------
class Store:
    """Read-only view of a collector's database (SQLite or PostgreSQL)."""

    def __init__(self, db_url: str) -> None:
        self.url = db_url
        self.engine = create_engine(db_url, poolclass=NullPool)

    def scalar(self, sql: str, **params: Any) -> Any:
        try:
            with self.engine.connect() as c:
                return c.execute(text(sql), params).scalar()
        except Exception:  # not migrated yet / locked for a moment
            return None

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as c:
            return list(c.execute(text(sql), params))

    def count_events(self) -> int:
        return int(self.scalar("SELECT COUNT(*) FROM events") or 0)

    def event_ids(self) -> list[str]:
        return [r[0] for r in self.rows("SELECT event_id FROM events")]

    def dead_letters(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.rows("SELECT topic, reason FROM dead_letters ORDER BY id")]

    def count_dead(self) -> int:
        return int(self.scalar("SELECT COUNT(*) FROM dead_letters") or 0)

    def has_health(self, device_id: str) -> bool:
        return bool(self.scalar("SELECT COUNT(*) FROM device_health WHERE device_id = :d", d=device_id))

    def close(self) -> None:
        self.engine.dispose()


@dataclass
class Tally:
    """Edge-produced vs server-stored, the figure every fault case reports."""

    case: str
    produced: int
    stored: int
    lost: int
    duplicates: int
    unexpected: int
    dead_letters: int
    recovery_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def tally(case: str, expected: list[str], store: Store, recovery_s: float | None = None,
          **extra: Any) -> Tally:
    ids = store.event_ids()
    got = set(ids)
    exp = set(expected)
    t = Tally(case=case, produced=len(exp), stored=len(got & exp),
              lost=len(exp - got), duplicates=len(ids) - len(got), unexpected=len(got - exp),
              dead_letters=store.count_dead(), recovery_s=None if recovery_s is None else round(recovery_s, 2),
              extra=extra)
    report(t)
    return t


REPORT_FILE = Path(os.environ.get("ROADEYE_FAULTS_REPORT", REPO / "tests" / "artifacts" / "faults" / "figures.jsonl"))


def report(t: Tally) -> None:
    """Print the case's figures (visible with -s) and append them to tests/artifacts/faults/."""
    line = json.dumps({"at": datetime.now(UTC).isoformat(timespec="seconds"), **t.as_dict()})
    print("FIGURES " + line)
    try:
        REPORT_FILE.parent.mkdir(parents=True, exist_ok=True)
        with open(REPORT_FILE, "a") as fh:
            fh.write(line + "\n")
    except OSError:
        pass


def assert_exactly_once(t: Tally) -> None:
    assert (t.lost, t.duplicates, t.unexpected) == (0, 0, 0), t.as_dict()


# -- MQTT probe --------------------------------------------------------------------------------
def probe_heartbeat(site: str, device_id: str) -> bytes:
    from edge.event import Heartbeat

    return Heartbeat.model_validate({
        "device_id": device_id, "site_id": site, "sent_at": datetime.now(UTC), "uptime_s": 1,
        "clock": {"source": "ntp", "synchronized": True, "offset_ms": 0.1}, "outbox_depth": 0,
        "outbox_bytes": 0}).model_dump_json().encode()


def mqtt_client(client_id: str | None = None, username: str | None = None, password: str | None = None,
                tls_ca: Path | None = None) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"probe-{uuid.uuid4().hex[:8]}",
                    protocol=mqtt.MQTTv5)
    if username:
        c.username_pw_set(username, password)
    if tls_ca:
        c.tls_set(ca_certs=str(tls_ca))
    return c


def wait_subscribed(store: Store, host: str, port: int, timeout: float = 60.0, site: str = "site-f",
                    probe_id: str | None = None, **auth: Any) -> float:
    """Publish probe heartbeats until the collector stores one: its subscription is live."""
    probe_id = probe_id or f"probe-{uuid.uuid4().hex[:6]}"
    topic = f"roadeye/v1/{site}/{probe_id}/heartbeat"
    with Owned() as owned:
        c = owned(mqtt_client(**auth))
        c.connect(host, port)
        c.loop_start()

        def seen() -> bool:
            c.publish(topic, probe_heartbeat(site, probe_id), qos=1)
            time.sleep(0.2)
            return store.has_health(probe_id)

        return wait_until(seen, timeout, "the collector's subscription (probe heartbeat stored)", every=0.3)


def produced_ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [ln.split()[1] for ln in path.read_text().splitlines() if ln.strip()]


def rss_kb(pid: int) -> int | None:
    try:
        for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    except OSError:
        return None
    return None


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
