"""Case 5: storage trouble on both ends.

Edge: the outbox lives on a small tmpfs that fills up (another file eats the space) while
events flow; the box must keep what it has, say so in its health and metrics, and recover
when space returns. Server: the collector's database goes away (own PostgreSQL stopped;
SQLite locked by another process); the collector stops acknowledging, the broker keeps the
messages, and after the database returns everything is stored exactly once.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.fault_edge import expected_ids
from tests.faults.faults_helpers import (
    DeviceKeys,
    Owned,
    Store,
    assert_exactly_once,
    produced_ids,
    start_collector,
    start_edge,
    tally,
    wait_subscribed,
    wait_until,
)
from tests.services import PostgresServer, free_port

pytestmark = [pytest.mark.services]


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or res.returncode}); needs root/CAP_SYS_ADMIN")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(path: Path) -> int:
    """Write ballast until the filesystem says ENOSPC; returns bytes written."""
    n = 0
    chunk = b"\0" * 16384
    with open(path, "wb", buffering=0) as fh:
        while True:
            try:
                n += fh.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
    return n


def metric(port: int, name: str) -> float | None:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3).read().decode()
    except OSError:
        return None
    for ln in body.splitlines():
        if ln.startswith(name + " ") or ln.startswith(name + "{"):
            return float(ln.rsplit(" ", 1)[1])
    return None


@pytest.fixture(scope="module", params=["uplink-down"])
def disk_full_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One run of the disk-full scenario; the tests below check different promises on it.

    uplink-down: the broker is away too, so the outbox must hold events on a full disk.
    (With the uplink up the outbox stays near-empty and SQLite reuses its WAL pages, so a
    full disk does not touch it; the failing-delete path is covered below.)"""
    uplink_up = request.param == "uplink-up"
    from tests.faults.faults_helpers import make_device
    from tests.services import MosquittoBroker

    tmp = tmp_path_factory.mktemp("diskfull")
    device = make_device(tmp / "keys")
    obs: dict[str, Any] = {"alarm_metric": [], "alarm_heartbeat": [], "depth_metric": []}
    with Owned() as owned:
        broker = owned(MosquittoBroker(tmp / "mqtt").start())
        db_url = f"sqlite:///{tmp / 'server.db'}"
        store = owned(Store(db_url))
        owned(start_collector(db_url=db_url, data_dir=tmp / "srv", port=broker.port, device=device,
                              log=tmp / "collector.log"))
        fs = owned.enter_context(small_tmpfs(tmp / "fs", "24m"))
        try:
            wait_subscribed(store, broker.host, broker.port)
            mport = free_port()
            n, run = 240, "diskfull"
            edge = start_edge(outbox=fs / "outbox.db", port=broker.port, device=device,
                              produced=tmp / "produced.log", log=tmp / "edge.log", run_id=run, count=n, rate=20,
                              extra=["--metrics-port", str(mport), "--heartbeat-s", "0.5"])
            owned.callback(edge.kill, signal.SIGKILL)  # this one is SIGKILLed, not stopped
            wait_until(lambda: store.count_events() >= 40, 60, "first events stored")
            if not uplink_up:
                broker.stop(signal.SIGTERM)  # the outbox has to hold events
                time.sleep(1.0)
            obs["ballast_bytes"] = fill(fs / "ballast")
            full_from = len(produced_ids(tmp / "produced.log"))
            t_full = time.monotonic()
            while time.monotonic() - t_full < 4.0:
                obs["alarm_metric"].append(metric(mport, "roadeye_outbox_alarm"))
                obs["depth_metric"].append(metric(mport, "roadeye_outbox_depth"))
                time.sleep(0.5)
            obs["edge_alive_when_full"] = edge.alive()
            (fs / "ballast").unlink()  # space returns
            full_to = len(produced_ids(tmp / "produced.log"))
            broker.start()
            t0 = time.monotonic()
            edge.wait_line("PRODUCED", 90)
            errors = [int(ln.split()[1]) for ln in edge.lines if ln.startswith("SINK_ERROR")]
            ids = expected_ids(run, n)
            kept = [eid for i, eid in enumerate(ids) if i not in set(errors)]
            with contextlib.suppress(AssertionError):
                wait_until(lambda: store.count_events() >= len(kept), 60, "outbox drained into the server")
            obs["recovery_s"] = time.monotonic() - t0
            time.sleep(1.0)
            with contextlib.suppress(sqlite3.Error):
                c = sqlite3.connect(f"file:{fs / 'outbox.db'}?mode=ro", uri=True)
                obs["outbox_left"] = [r[0] for r in c.execute("SELECT event_id FROM outbox ORDER BY seq")]
                c.close()
            obs["alarm_heartbeat"] = store.rows("SELECT outbox_alarm FROM device_health WHERE device_id = :d",
                                                d=device.device_id)
            obs.update(n=n, run=run, ids=ids, kept=kept, sink_errors=errors, full_window=(full_from, full_to),
                       stored_ids=set(store.event_ids()), edge_alive=edge.alive(), edge_lines=list(edge.lines),
                       edge_log=edge.log_tail(3000))
            left = obs.get("outbox_left", [])
            obs["tally_kept"] = tally(f"outbox-disk-full-{request.param}(kept)", kept, store, obs["recovery_s"],
                                      sink_errors=len(errors), ballast_bytes=obs["ballast_bytes"],
                                      outbox_left=[ids.index(x) if x in ids else x for x in left][:50])
            obs["tally_all"] = tally(f"outbox-disk-full-{request.param}(all produced)", ids, store, obs["recovery_s"])
        except AssertionError as exc:  # a broken scenario must not pass as the expected failure below
            raise RuntimeError(f"disk-full scenario failed: {exc}") from exc
        else:
            yield obs


@pytest.mark.timeout(200)
def test_outbox_disk_full_keeps_what_it_has_and_recovers(disk_full_run: dict[str, Any]) -> None:
    o = disk_full_run
    assert o["edge_alive_when_full"] and o["edge_alive"], o["edge_log"]
    assert 1.0 in o["alarm_metric"], "the ballast did not fill the disk: the test proved nothing"
    t = o["tally_kept"]
    # every event that reached the outbox is delivered once; production goes on after space returns
    assert_exactly_once(t)
    assert o["ids"][-1] in o["stored_ids"]


@pytest.mark.timeout(60)
def test_outbox_disk_full_raises_the_alarm(disk_full_run: dict[str, Any]) -> None:
    """Fixed in edge/outbox.py put: a failing write sets the outbox alarm (metric + heartbeat)."""
    assert 1.0 in disk_full_run["alarm_metric"], disk_full_run["alarm_metric"]


@pytest.mark.timeout(60)
def test_outbox_disk_full_loses_nothing(disk_full_run: dict[str, Any]) -> None:
    """edge/runner.py OutboxSink holds events in memory, in order, while the disk refuses writes."""
    assert not disk_full_run["sink_errors"], "an event was refused while the disk was full"
    assert_exactly_once(disk_full_run["tally_all"])


# -- collector database down ---------------------------------------------------------------------
@pytest.mark.timeout(150)
def test_postgres_down_collector_stops_acking_broker_keeps_messages(mosquitto, device: DeviceKeys,  # type: ignore[no-untyped-def]
                                                                   tmp_path: Path, owned: Owned) -> None:
    pg = owned(PostgresServer())  # our own: the session's shared server must stay up for others
    pg.start()
    url = pg.create_database("faults")
    store = owned(Store(url))
    col = owned(start_collector(db_url=url, data_dir=tmp_path / "srv", port=mosquitto.port, device=device,
                                log=tmp_path / "collector.log"))
    wait_subscribed(store, mosquitto.host, mosquitto.port)
    n, run = 200, "pgdown"
    edge = owned(start_edge(outbox=tmp_path / "outbox.db", port=mosquitto.port, device=device,
                            produced=tmp_path / "produced.log", log=tmp_path / "edge.log", run_id=run, count=n,
                            rate=20))
    wait_until(lambda: store.count_events() >= 40, 60, "first events stored")
    pg.stop("immediate")
    time.sleep(6.0)
    # the broker took (PUBACKed) the events; the collector could not store them, so no receipts
    # came and the edge still holds them too (parked, waiting for a receipt)
    edge_outbox = sqlite3.connect(f"file:{tmp_path / 'outbox.db'}?mode=ro", uri=True)
    depth, parked = edge_outbox.execute(
        "SELECT COUNT(*) FILTER (WHERE puback_at IS NULL), COUNT(puback_at) FROM outbox").fetchone()
    edge_outbox.close()
    produced_during = len(produced_ids(tmp_path / "produced.log"))
    assert col.alive(), col.log_tail()
    pg.start()
    t0 = time.monotonic()
    edge.wait_line("PRODUCED", 60)
    wait_until(lambda: store.count_events() >= n, 90, f"all {n} stored after PostgreSQL returned")
    recovery = time.monotonic() - t0
    time.sleep(1.0)
    t = tally("postgres-down", expected_ids(run, n), store, recovery, edge_unsent_during=depth,
              edge_awaiting_receipt_during=parked, produced_when_db_back=produced_during)
    assert depth <= 25, f"the broker did not take the events while the database was down: {depth} unsent"
    assert parked >= 40, f"the edge forgot events no collector had stored: only {parked} kept"
    assert "storing" in col.log_tail(200000) or "failed" in col.log_tail(200000)
    assert_exactly_once(t)
    assert t.dead_letters == 0


@pytest.mark.timeout(120)
def test_sqlite_locked_collector_retries_then_stores_once(mosquitto, device: DeviceKeys,  # type: ignore[no-untyped-def]
                                                         tmp_path: Path, owned: Owned) -> None:
    db_path = tmp_path / "server.db"
    db_url = f"sqlite:///{db_path}"
    store = owned(Store(db_url))
    col = owned(start_collector(db_url=db_url, data_dir=tmp_path / "srv", port=mosquitto.port, device=device,
                                log=tmp_path / "collector.log"))
    wait_subscribed(store, mosquitto.host, mosquitto.port)
    n, run = 160, "sqlitelock"
    edge = owned(start_edge(outbox=tmp_path / "outbox.db", port=mosquitto.port, device=device,
                            produced=tmp_path / "produced.log", log=tmp_path / "edge.log", run_id=run, count=n,
                            rate=20))
    wait_until(lambda: store.count_events() >= 30, 60, "first events stored")
    # another process takes the write lock (a backup, a stuck admin shell...) for a while
    locker = sqlite3.connect(str(db_path), timeout=30, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    t_lock = time.monotonic()
    time.sleep(6.0)
    locker.execute("ROLLBACK")
    locker.close()
    held = time.monotonic() - t_lock
    t0 = time.monotonic()
    edge.wait_line("PRODUCED", 60)
    wait_until(lambda: store.count_events() >= n, 90, f"all {n} stored after the lock went away")
    recovery = time.monotonic() - t0
    time.sleep(1.0)
    t = tally("sqlite-locked", expected_ids(run, n), store, recovery, lock_held_s=round(held, 1))
    assert col.alive()
    assert_exactly_once(t)
    assert t.dead_letters == 0


class FullDiskOutbox:
    """The real outbox whose first deletes fail like SQLite on a full disk."""

    def __init__(self, path: Path, failures: int) -> None:
        from edge.outbox import Outbox

        self._ob = Outbox(path)
        self.failures = failures

    def ack(self, seq: int) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise sqlite3.OperationalError("database or disk is full")
        self._ob.ack(seq)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ob, name)


@pytest.mark.timeout(60)
def test_failing_outbox_delete_after_puback_does_not_stop_publishing(mosquitto, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                    owned: Owned) -> None:
    """Regression (fixed in edge/publish.py _settle): an exception from Outbox.ack inside paho's
    on_publish callback killed the network thread, and the box never published again."""
    from edge.config import BrokerConfig
    from edge.publish import MqttPublisher
    from tests.integration.edge.edge_mqtt_helpers import Recorder

    rec = owned(Recorder(mosquitto.host, mosquitto.port, topic="roadeye/v1/+/+/events"))
    ob = FullDiskOutbox(tmp_path / "outbox.db", failures=3)
    ids = [f"0190{i:04x}-0000-7000-8000-000000000000" for i in range(40)]
    for i in ids[:20]:
        ob.put(i, "roadeye/v1/site-1/cam1/events", b'{"event":{"event_id":"%s"}}' % i.encode())
    pub = MqttPublisher(BrokerConfig(host=mosquitto.host, port=mosquitto.port, max_inflight=5,
                                     require_receipt=False), "box-01", "site-1", ob)  # type: ignore[arg-type]
    pub.start()
    owned.callback(pub.stop)
    assert rec.wait_for(set(ids[:20]), 20)
    for i in ids[20:]:  # later events still go out: the network thread is alive
        ob.put(i, "roadeye/v1/site-1/cam1/events", b'{"event":{"event_id":"%s"}}' % i.encode())
        pub.notify()
    assert rec.wait_for(set(ids), 30), rec.counts()
    assert pub.wait_drained(30), ob.depth()
    assert ob.failures == 0
    assert pub.client._thread is not None and pub.client._thread.is_alive()
