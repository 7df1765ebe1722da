"""Case 4: the network between the edge and the broker is cut, then restored.

Two network namespaces made for this test only, joined by a veth pair with private test
addresses (10.231.x.1/.2, /30) that exist only inside them: the broker and the collector run
in one, the edge process in the other. The cut takes the broker's end of the link down
(packets vanish silently, as with a dead roadside uplink), for 15 s here (the soak
does minutes), and brings it back. Skips with the reason when namespaces cannot be made.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.fault_edge import expected_ids
from tests.faults.faults_helpers import (
    DeviceKeys,
    Owned,
    Store,
    assert_exactly_once,
    start_collector,
    start_edge,
    tally,
    wait_until,
)
from tests.services import MosquittoBroker

pytestmark = [pytest.mark.services]


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


@contextlib.contextmanager
def two_namespaces() -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:6]
    net = random.randint(1, 250)
    ns = {"broker": f"re-brk-{tag}", "edge": f"re-edge-{tag}", "vb": f"vb{tag}", "ve": f"ve{tag}",
          "broker_ip": f"10.231.{net}.1", "edge_ip": f"10.231.{net}.2"}
    probe = subprocess.run(["ip", "netns", "add", ns["broker"]], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create network namespaces here: {probe.stderr.strip()} (needs root / CAP_NET_ADMIN)")
    try:
        ip("netns", "add", ns["edge"])
        ip("link", "add", ns["vb"], "type", "veth", "peer", "name", ns["ve"])
        ip("link", "set", ns["vb"], "netns", ns["broker"])
        ip("link", "set", ns["ve"], "netns", ns["edge"])
        for side, dev, addr in (("broker", "vb", "broker_ip"), ("edge", "ve", "edge_ip")):
            ip("-n", ns[side], "addr", "add", f"{ns[addr]}/30", "dev", ns[dev])
            ip("-n", ns[side], "link", "set", ns[dev], "up")
            ip("-n", ns[side], "link", "set", "lo", "up")
        yield ns
    finally:
        for side in ("edge", "broker"):
            ip("netns", "del", ns[side], check=False)


def _depth(path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2) as c:
            return int(c.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    except sqlite3.Error:
        return -1


#: length of the cut; 15 s in CI, minutes on demand: ROADEYE_FAULT_CUT_S=180 pytest tests/faults -k network
CUT_S = float(os.environ.get("ROADEYE_FAULT_CUT_S", "15"))


@pytest.mark.timeout(180 + 2 * CUT_S)
def test_network_cut_between_edge_and_broker(device: DeviceKeys, tmp_path: Path, owned: Owned) -> None:
    cut_s = CUT_S
    ns = owned.enter_context(two_namespaces())  # deleted last, after everything in them stopped
    in_b = ["ip", "netns", "exec", ns["broker"]]
    in_e = ["ip", "netns", "exec", ns["edge"]]
    broker = MosquittoBroker(tmp_path / "mqtt", port=1883)
    conf = broker.conf_path.read_text().replace(
        "listener 1883 127.0.0.1", f"listener 1883 127.0.0.1\nlistener 1883 {ns['broker_ip']}")
    broker.conf_path.write_text(conf)
    owned(subprocess.Popen([*in_b, broker.binary, "-c", str(broker.conf_path)],  # mosquitto in its namespace
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    db_url = f"sqlite:///{tmp_path / 'server.db'}"
    store = owned(Store(db_url))
    wait_until(lambda: broker.log_path.exists() and "running" in broker.log_path.read_text(), 20,
               "mosquitto running in its namespace")
    col = owned(start_collector(db_url=db_url, data_dir=tmp_path / "srv", port=1883, device=device,
                                log=tmp_path / "collector.log", prefix=in_b))
    wait_until(lambda: "connected to" in col.log_tail(), 60, "collector connected")
    time.sleep(1.5)  # SUBSCRIBE follows CONNACK
    rate = 10.0
    n, run = int(rate * (cut_s + 8)), "netcut"
    outbox = tmp_path / "outbox.db"
    edge = owned(start_edge(outbox=outbox, host=ns["broker_ip"], port=1883, device=device,
                            produced=tmp_path / "produced.log", log=tmp_path / "edge.log", run_id=run, count=n,
                            rate=rate, prefix=in_e))
    wait_until(lambda: store.count_events() >= 20, 60, "first events across the link")
    ip("-n", ns["broker"], "link", "set", ns["vb"], "down")  # the cut
    depths = []
    t_cut = time.monotonic()
    while time.monotonic() - t_cut < cut_s:
        time.sleep(1.0)
        depths.append(_depth(outbox))
    stored_during = store.count_events()
    ip("-n", ns["broker"], "link", "set", ns["vb"], "up")  # restored
    t0 = time.monotonic()
    edge.wait_line("PRODUCED", 60)
    wait_until(lambda: store.count_events() >= n, 90, f"all {n} events after the link returned")
    recovery = time.monotonic() - t0
    time.sleep(1.0)
    t = tally("network-cut", expected_ids(run, n), store, recovery, cut_s=cut_s,
              max_outbox_depth=max(depths), stored_at_end_of_cut=stored_during)
    assert max(depths) >= rate * cut_s * 0.4, f"the outbox did not hold events during the cut: {depths}"
    assert edge.alive() and col.alive()
    assert_exactly_once(t)
    assert t.dead_letters == 0
