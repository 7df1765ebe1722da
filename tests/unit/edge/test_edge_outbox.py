"""Durable outbox: order, idempotent puts, ack deletes, survives reopen, alarm not drop."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from edge.outbox import Outbox


def test_fifo_ack_and_idempotent_put(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite3")
    assert ob.put("e1", "t/1", b"a")
    assert ob.put("e2", "t/2", b"bb")
    assert not ob.put("e1", "t/1", b"a")  # same event_id again: not queued twice
    items = ob.pending()
    assert [i.event_id for i in items] == ["e1", "e2"]
    assert ob.depth() == (2, 3)
    ob.ack(items[0].seq)
    assert [i.event_id for i in ob.pending()] == ["e2"]
    assert [i.event_id for i in ob.pending(after_seq=items[1].seq)] == []


def test_survives_a_killed_writer(tmp_path: Path) -> None:
    """A committed row is on disk even when the writing process dies with SIGKILL."""
    path = tmp_path / "o.sqlite3"
    code = (f"import os, signal\nfrom edge.outbox import Outbox\nob = Outbox({str(path)!r})\n"
            "for i in range(5): ob.put(f'e{i}', 't', b'x' * 1000)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[3], timeout=60)
    assert p.returncode == -9
    ob = Outbox(path)
    assert [i.event_id for i in ob.pending()] == [f"e{i}" for i in range(5)]


def test_over_bound_raises_alarm_and_keeps_everything(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ob = Outbox(tmp_path / "o.sqlite3", max_bytes=10_000, max_events=3)
    with caplog.at_level(logging.ERROR, logger="edge.outbox"):
        for i in range(5):
            assert ob.put(f"e{i}", "t", b"x" * 10)
    assert ob.alarm
    assert ob.depth()[0] == 5
    assert any("over its bound" in r.message for r in caplog.records)
    for it in ob.pending()[:3]:
        ob.ack(it.seq)
    assert not ob.alarm
