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


def test_delivered_rows_wait_for_a_receipt_and_come_back_when_overdue(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite3")
    for e in ("e1", "e2", "e3"):
        ob.put(e, "t", b"xy")
    s1, s2, _ = (i.seq for i in ob.pending())
    ob.mark_delivered(s1)
    ob.mark_delivered(s2)
    assert [i.event_id for i in ob.pending()] == ["e3"]  # parked rows are not drained again
    assert ob.depth() == (3, 6) and ob.awaiting_receipt() == 2  # ...but still held
    assert ob.overdue(timeout_s=60) == []
    assert ob.forget(["e1", "nope"]) == 1
    assert ob.depth() == (2, 4)
    assert ob.overdue(timeout_s=1e-6) == [s2]  # no receipt in time: pending again, attempts kept
    assert [(i.event_id, i.attempts) for i in ob.pending()] == [("e2", 1), ("e3", 0)]


def test_overdue_backs_off_per_resend(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite3")
    ob.put("e1", "t", b"x")
    seq = ob.pending()[0].seq
    for _ in range(3):  # three PUBACKs without a receipt: the next wait is 2^(3-1) = 4x the timeout
        ob.mark_delivered(seq)
    ob._db.execute("UPDATE outbox SET puback_at = puback_at - 3.0")  # 3 s ago
    assert ob.overdue(timeout_s=1.0) == []  # 3 s < 4 x 1 s
    ob._db.execute("UPDATE outbox SET puback_at = puback_at - 2.0")  # 5 s ago
    assert ob.overdue(timeout_s=1.0) == [seq]


def test_reopen_resends_rows_that_awaited_a_receipt_and_migrates_old_files(tmp_path: Path) -> None:
    import sqlite3

    old = tmp_path / "old.sqlite3"  # an outbox written before receipts existed
    db = sqlite3.connect(old)
    db.executescript("CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, "
                     "topic TEXT NOT NULL, payload BLOB NOT NULL, size INTEGER NOT NULL, created_at REAL NOT NULL, "
                     "attempts INTEGER NOT NULL DEFAULT 0);"
                     "INSERT INTO outbox(event_id, topic, payload, size, created_at) VALUES ('e0', 't', x'00', 1, 0);")
    db.commit()
    db.close()
    ob = Outbox(old)
    assert [i.event_id for i in ob.pending()] == ["e0"]
    ob.put("e1", "t", b"z")
    for i in ob.pending():
        ob.mark_delivered(i.seq)
    assert ob.pending() == []
    ob.close()
    assert [i.event_id for i in Outbox(old).pending()] == ["e0", "e1"]  # the receipt may have been missed
