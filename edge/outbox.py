"""Durable on-disk outbox: every event is committed here BEFORE it is published, and
removed only once it is safe (the broker's PUBACK, or with receipts on, the collector's
storage receipt), so an outage or a crash loses nothing.

SQLite in WAL mode with synchronous=FULL: a committed row survives kill -9 and power
loss; rows drain in insertion order (INTEGER PRIMARY KEY). Past the configured bound the
outbox raises an alarm (flag + log; the publisher exports it as a metric and in the
heartbeat) but never drops an event: losing evidence is worse than filling a disk the
operator has been warned about.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT NOT NULL UNIQUE,
    topic      TEXT NOT NULL,
    payload    BLOB NOT NULL,
    size       INTEGER NOT NULL,
    created_at REAL NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    puback_at  REAL             -- broker PUBACK time while a storage receipt is awaited
);
"""
_MIGRATE = "ALTER TABLE outbox ADD COLUMN puback_at REAL"


@dataclass(frozen=True, slots=True)
class OutboxItem:
    seq: int
    event_id: str
    topic: str
    payload: bytes
    attempts: int


class Outbox:
    """Thread-safe (one connection, one lock); callers are the pipeline and the MQTT thread."""

    def __init__(self, path: str | Path, max_bytes: int = 2 * 1024**3, max_events: int = 100_000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.max_events = max_events
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        cols = {r[1] for r in self._db.execute("PRAGMA table_info(outbox)")}
        if "puback_at" not in cols:  # an outbox written by a release without receipts
            self._db.execute(_MIGRATE)
        self._db.execute("CREATE INDEX IF NOT EXISTS outbox_awaiting ON outbox(puback_at) WHERE puback_at IS NOT NULL")
        # a restart forgets which broker acks were pending receipts: resend those rows
        self._db.execute("UPDATE outbox SET puback_at = NULL WHERE puback_at IS NOT NULL")
        n, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
        self._n, self._bytes = int(n), int(size)  # kept in memory: no table scan per event
        self._alarm = False
        self._check_alarm()

    # -- writes --------------------------------------------------------------------------
    def put(self, event_id: str, topic: str, payload: bytes) -> bool:
        """Commit one message durably. Returns False when that event_id is already queued."""
        with self._lock:
            try:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO outbox(event_id, topic, payload, size, created_at) VALUES (?,?,?,?,?)",
                    (event_id, topic, payload, len(payload), time.time()),
                )
            except sqlite3.Error as exc:  # disk full / read-only: raise the alarm (metric, heartbeat)
                self._alarm = True
                log.error("outbox cannot store event %s: %s; the alarm is raised", event_id, exc)
                raise
            added = cur.rowcount == 1
            if added:
                self._n += 1
                self._bytes += len(payload)
        self._check_alarm()
        return added

    def ack(self, seq: int) -> None:
        """The broker acknowledged this message: forget it."""
        self._delete("seq", [seq])

    def forget(self, event_ids: list[str]) -> int:
        """A collector stored (or dead-lettered) these events: forget them. Returns rows removed."""
        return self._delete("event_id", event_ids)

    def _delete(self, column: str, keys: list[int] | list[str]) -> int:
        """Delete rows by `seq` or `event_id`, keeping the in-memory depth figures in step."""
        removed = 0
        with self._lock:
            for key in keys:
                row = self._db.execute(f"DELETE FROM outbox WHERE {column} = ? RETURNING size", (key,)).fetchone()
                if row is not None:
                    removed += 1
                    self._n -= 1
                    self._bytes -= int(row[0])
        self._check_alarm()
        return removed

    def mark_delivered(self, seq: int) -> None:
        """The broker took it (PUBACK) but no storage receipt came yet: keep it, out of the drain."""
        with self._lock:
            self._db.execute("UPDATE outbox SET puback_at = ?, attempts = attempts + 1 WHERE seq = ?",
                             (time.time(), seq))

    def overdue(self, timeout_s: float, max_backoff: int = 5) -> list[int]:
        """Rows PUBACKed but without a receipt for longer than timeout_s x 2^(attempts-1): make
        them pending again (the caller resends them), oldest first. The backoff keeps a long
        collector outage from flooding the broker's queue with copies."""
        now = time.time()
        with self._lock:
            rows = self._db.execute(
                "SELECT seq FROM outbox WHERE puback_at IS NOT NULL AND puback_at < ? - ? * "
                "(1 << MIN(MAX(attempts - 1, 0), ?)) ORDER BY seq",
                (now, timeout_s, max_backoff),
            ).fetchall()
            seqs = [int(r[0]) for r in rows]
            self._db.executemany("UPDATE outbox SET puback_at = NULL WHERE seq = ?", [(q,) for q in seqs])
        return seqs

    def awaiting_receipt(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox WHERE puback_at IS NOT NULL").fetchone()[0])

    def mark_attempt(self, seq: int) -> None:
        with self._lock:
            self._db.execute("UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?", (seq,))

    # -- reads ---------------------------------------------------------------------------
    def pending(self, limit: int = 100, after_seq: int = 0) -> list[OutboxItem]:
        """Oldest first; rows the broker already took (awaiting a receipt) are not pending."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, event_id, topic, payload, attempts FROM outbox WHERE seq > ? AND puback_at IS NULL "
                "ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [OutboxItem(int(r[0]), r[1], r[2], bytes(r[3]), int(r[4])) for r in rows]

    def depth(self) -> tuple[int, int]:
        """(events, payload bytes) waiting."""
        with self._lock:
            return self._n, self._bytes

    @property
    def alarm(self) -> bool:
        return self._alarm

    def _check_alarm(self) -> None:
        n, size = self.depth()
        over = n > self.max_events or size > self.max_bytes
        if over and not self._alarm:
            log.error(
                "outbox over its bound: %d events / %d bytes (limits %d / %d); still keeping every "
                "event, check the broker connection and disk space",
                n, size, self.max_events, self.max_bytes,
            )
        elif not over and self._alarm:
            log.warning("outbox back under its bound: %d events / %d bytes", n, size)
        self._alarm = over

    def close(self) -> None:
        with self._lock:
            self._db.close()
