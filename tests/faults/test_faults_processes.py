"""Cases 2 and 3: collectors SIGKILLed under load (repeatedly; and one of two collectors on
the shared subscription), and the edge SIGKILLed mid-publish and restarted. Every event the
edge produced is stored exactly once."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.faults.fault_edge import expected_ids
from tests.faults.faults_helpers import (
    DeviceKeys,
    Owned,
    Proc,
    Store,
    assert_exactly_once,
    produced_ids,
    start_collector,
    start_edge,
    tally,
    wait_subscribed,
    wait_until,
)
from tests.integration.edge.edge_mqtt_helpers import Recorder

pytestmark = [pytest.mark.services]


@pytest.mark.timeout(150)
def test_collector_sigkilled_repeatedly_under_load(mosquitto, device: DeviceKeys, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                   owned: Owned) -> None:
    db_url = f"sqlite:///{tmp_path / 'server.db'}"
    store = owned(Store(db_url))

    def collector() -> Proc:
        return owned(start_collector(db_url=db_url, data_dir=tmp_path / "srv", port=mosquitto.port, device=device,
                                     log=tmp_path / "collector.log"))

    col = collector()
    kills: list[int] = []
    wait_subscribed(store, mosquitto.host, mosquitto.port)
    n, run = 300, "colkill"
    edge = owned(start_edge(outbox=tmp_path / "outbox.db", port=mosquitto.port, device=device,
                            produced=tmp_path / "produced.log", log=tmp_path / "edge.log", run_id=run,
                            count=n, rate=30))
    for k in range(3):
        target = (k + 1) * n // 5
        wait_until(lambda t=target: store.count_events() >= t, 60, f"{target} events stored")  # type: ignore[misc]
        col.kill(signal.SIGKILL)
        kills.append(store.count_events())
        time.sleep(0.5)  # events keep flowing into the broker with no collector
        col = collector()
    edge.wait_line("PRODUCED", 60)
    t0 = time.monotonic()
    wait_until(lambda: store.count_events() >= n, 60, f"all {n} events stored")
    recovery = time.monotonic() - t0
    time.sleep(1.0)
    t = tally("collector-sigkill-x3", expected_ids(run, n), store, recovery, stored_at_kills=kills)
    assert kills[-1] < n, "the last kill came after everything was stored"
    assert_exactly_once(t)
    assert t.dead_letters == 0


@pytest.mark.timeout(150)
def test_two_collectors_share_the_load_one_killed(mosquitto, device: DeviceKeys, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                  pg_url: str, owned: Owned) -> None:
    """Two collectors in one shared-subscription group on PostgreSQL; B is SIGKILLed mid-run.
    A keeps storing; what the broker had already handed to B waits in B's persistent session
    and is stored when B comes back (as a supervisor would restart it)."""
    store = owned(Store(pg_url))

    def collector(name: str) -> Proc:
        return owned(start_collector(db_url=pg_url, data_dir=tmp_path / name, port=mosquitto.port, device=device,
                                     log=tmp_path / f"{name}.log", client_id=f"fault-{name}", group="pair"))

    collector("a")
    wait_subscribed(store, mosquitto.host, mosquitto.port)
    b = collector("b")
    wait_until(lambda: "connected to" in b.log_tail(), 60, "collector B connected")
    time.sleep(1.0)  # its SUBSCRIBE follows the CONNACK
    n, run = 240, "pair"
    edge = owned(start_edge(outbox=tmp_path / "outbox.db", port=mosquitto.port, device=device,
                            produced=tmp_path / "produced.log", log=tmp_path / "edge.log", run_id=run,
                            count=n, rate=30))
    wait_until(lambda: store.count_events() >= n // 3, 60, "a third stored")
    b.kill(signal.SIGKILL)
    at_kill = store.count_events()
    edge.wait_line("PRODUCED", 60)
    # A alone: everything not already handed to B arrives
    try:
        wait_until(lambda: store.count_events() >= n, 6, "all events via A alone")
        stuck = 0
    except AssertionError:
        stuck = n - store.count_events()
    b = collector("b")
    t0 = time.monotonic()
    wait_until(lambda: store.count_events() >= n, 60, f"all {n} events after B restarted")
    recovery = time.monotonic() - t0
    time.sleep(1.0)
    t = tally("two-collectors-one-killed", expected_ids(run, n), store, recovery, stored_at_kill=at_kill,
              waiting_for_b_restart=stuck)
    assert at_kill < n
    assert_exactly_once(t)
    assert t.dead_letters == 0


@pytest.mark.timeout(150)
def test_edge_sigkilled_mid_publish_resumes_without_duplicates(mosquitto, device: DeviceKeys,  # type: ignore[no-untyped-def]
                                                               tmp_path: Path, owned: Owned) -> None:
    db_url = f"sqlite:///{tmp_path / 'server.db'}"
    store = owned(Store(db_url))
    owned(start_collector(db_url=db_url, data_dir=tmp_path / "srv", port=mosquitto.port, device=device,
                          log=tmp_path / "collector.log"))
    rec = owned(Recorder(mosquitto.host, mosquitto.port, topic="roadeye/v1/+/+/events"))
    n, run = 240, "edgekill"
    kw = dict(outbox=tmp_path / "outbox.db", port=mosquitto.port, device=device,
              produced=tmp_path / "produced.log", log=tmp_path / "edge.log", run_id=run, count=n)
    kills: list[int] = []
    wait_subscribed(store, mosquitto.host, mosquitto.port)
    for k in range(3):
        edge = owned(start_edge(rate=60, extra=["--max-inflight", "50"], **kw))  # type: ignore[arg-type]
        target = (k + 1) * n // 4
        wait_until(lambda t=target: len(produced_ids(tmp_path / "produced.log")) >= t, 60,  # type: ignore[misc]
                   f"{target} produced")
        edge.kill(signal.SIGKILL)  # mid-publish: the drain thread has messages in flight
        kills.append(len(produced_ids(tmp_path / "produced.log")))
    t0 = time.monotonic()
    edge = owned(start_edge(rate=60, **kw))  # type: ignore[arg-type]
    edge.wait_line("PRODUCED", 60)
    edge.wait_line("DRAINED", 60)
    wait_until(lambda: store.count_events() >= n, 60, f"all {n} events stored")
    recovery = time.monotonic() - t0
    time.sleep(1.0)
    deliveries = rec.counts()
    resent = sum(c - 1 for c in deliveries.values() if c > 1)
    t = tally("edge-sigkill-x3", expected_ids(run, n), store, recovery, produced_at_kills=kills,
              broker_redeliveries=resent)
    assert produced_ids(tmp_path / "produced.log") == expected_ids(run, n)
    assert_exactly_once(t)
    assert t.dead_letters == 0
