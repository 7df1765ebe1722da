"""Evidence retention: delete the images of reviewed events once they are old enough.

Privacy law (PIPL in China, GDPR elsewhere) lets an enforcement system keep pictures of
people only as long as the purpose needs them: a rejected event's images have no purpose
left after an appeal window, a confirmed one's after the case is closed. The policy here:

- only *finally reviewed* events (`rejected` / `confirmed`) whose decision is older than the
  limit for their status are touched; pending events never are;
- their evidence images are deleted from the store, but only blobs no other, unpurged event
  references (the store is content-addressed, so identical bytes are shared);
- the event row keeps its signed JSON, its evidence rows (hashes, sizes, boxes), its reviews
  and the audit trail, and is marked `evidence_purged_at`, so `verify` reports "purged", not
  "missing", and the API answers 410 Gone for the images;
- every purged event gets an audit row, and every run a summary row.

Order: the events are marked (committed) first, the blobs deleted after. A crash between
the two leaves unreferenced blobs, which the next run deletes (it sweeps the blobs of events
purged in the last `SWEEP_DAYS`). The reverse order could leave live events without images.
Known limit: a *new* event whose evidence is byte-identical to a blob being purged, stored
during the purge, can lose that blob (camera images are never byte-identical in practice;
the same event redelivered is not new).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, selectinload

from server.db.engine import Database
from server.db.models import EventRow, EventStatus, EvidenceRow, utcnow
from server.evidence_store import EvidenceStore
from server.services import audit

log = logging.getLogger(__name__)

SWEEP_DAYS = 7
_CHUNK = 500  # IN-list size and events per transaction


@dataclass(frozen=True)
class RetentionPolicy:
    """Days after the final decision; None = keep that status's evidence forever."""

    rejected_days: int | None = None
    confirmed_days: int | None = None

    def __post_init__(self) -> None:
        if self.rejected_days is None and self.confirmed_days is None:
            raise ValueError("a retention policy needs rejected_days and/or confirmed_days")
        for name in ("rejected_days", "confirmed_days"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ValueError(f"{name} must be >= 0, got {v}")

    def condition(self, now: datetime) -> Any:
        decided = func.coalesce(EventRow.finalized_at, EventRow.received_at)
        parts = []
        for status, days in ((EventStatus.REJECTED, self.rejected_days), (EventStatus.CONFIRMED, self.confirmed_days)):
            if days is not None:
                parts.append(and_(EventRow.status == status.value, decided < now - timedelta(days=days)))
        return and_(or_(*parts), EventRow.evidence_purged_at.is_(None))


@dataclass
class RetentionReport:
    dry_run: bool
    policy: RetentionPolicy
    now: datetime
    events: int = 0
    blobs_deleted: int = 0
    bytes_deleted: int = 0
    blobs_shared_kept: int = 0
    blobs_already_gone: int = 0
    leftovers_deleted: int = 0
    event_ids: list[str] = field(default_factory=list)

    def as_dict(self, max_ids: int = 50) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run, "now": self.now.isoformat().replace("+00:00", "Z"),
            "rejected_days": self.policy.rejected_days, "confirmed_days": self.policy.confirmed_days,
            "events": self.events, "blobs_deleted": self.blobs_deleted, "bytes_deleted": self.bytes_deleted,
            "blobs_shared_kept": self.blobs_shared_kept, "blobs_already_gone": self.blobs_already_gone,
            "leftovers_deleted": self.leftovers_deleted,
            "event_ids": self.event_ids[:max_ids], "event_ids_truncated": len(self.event_ids) > max_ids,
        }


def _chunks(items: Iterable[str], n: int = _CHUNK) -> Iterable[list[str]]:
    buf: list[str] = []
    for x in items:
        buf.append(x)
        if len(buf) == n:
            yield buf
            buf = []
    if buf:
        yield buf


def _live_shas(s: Session, shas: set[str], exclude: set[str] | frozenset[str] = frozenset()) -> set[str]:
    """Those of `shas` that an event with its evidence still in place references."""
    live: set[str] = set()
    for chunk in _chunks(sorted(shas)):
        q = (select(EvidenceRow.sha256, EvidenceRow.event_id).join(EventRow, EventRow.event_id == EvidenceRow.event_id)
             .where(EvidenceRow.sha256.in_(chunk), EventRow.evidence_purged_at.is_(None)))
        live |= {sha for sha, eid in s.execute(q) if eid not in exclude}
    return live


def _delete(store: EvidenceStore, shas: dict[str, int], rep: RetentionReport) -> None:
    for sha, size in sorted(shas.items()):
        if store.delete(sha):
            rep.blobs_deleted += 1
            rep.bytes_deleted += size
        else:
            rep.blobs_already_gone += 1


def purge_evidence(db: Database, store: EvidenceStore, policy: RetentionPolicy, *, dry_run: bool = False,
                   now: datetime | None = None, actor: str = "retention") -> RetentionReport:
    """Apply `policy` (see the module doc). Dry run: report what would go, change nothing."""
    now = now or utcnow()
    rep = RetentionReport(dry_run, policy, now)
    cond = policy.condition(now)
    if dry_run:
        with db.session() as s:
            rows = s.scalars(select(EventRow).where(cond).options(selectinload(EventRow.evidence))).all()
            sizes = {e.sha256: e.size for r in rows for e in r.evidence}
            ids = {r.event_id for r in rows}
            live = _live_shas(s, set(sizes), exclude=ids)
        rep.events, rep.event_ids = len(rows), sorted(ids)
        rep.blobs_shared_kept = len(live)
        gone = {sha: n for sha, n in sizes.items() if sha not in live}
        rep.blobs_deleted = sum(1 for sha in gone if store.exists(sha))
        rep.blobs_already_gone = len(gone) - rep.blobs_deleted
        rep.bytes_deleted = sum(n for sha, n in gone.items() if store.exists(sha))
        return rep

    rep.leftovers_deleted = _sweep_leftovers(db, store, now)
    while True:
        with db.session() as s:  # one transaction per chunk of events: marks + audit rows
            rows = s.scalars(select(EventRow).where(cond).options(selectinload(EventRow.evidence))
                             .order_by(EventRow.event_id).limit(_CHUNK)).all()
            if not rows:
                break
            for r in rows:
                r.evidence_purged_at = now
                audit(s, actor, "event.evidence_purge", f"event:{r.event_id}",
                      {"status": r.status, "evidence": [e.sha256 for e in r.evidence]},
                      {"evidence_purged_at": now.isoformat().replace("+00:00", "Z"),
                       "rejected_days": policy.rejected_days, "confirmed_days": policy.confirmed_days})
            s.flush()
            sizes = {e.sha256: e.size for r in rows for e in r.evidence}
            live = _live_shas(s, set(sizes))
        # committed: the events are marked; only now do their images go
        rep.events += len(rows)
        rep.event_ids += [r.event_id for r in rows]
        rep.blobs_shared_kept += len(live)
        _delete(store, {sha: n for sha, n in sizes.items() if sha not in live}, rep)
    with db.session() as s:
        audit(s, actor, "retention.run", None, None, rep.as_dict(max_ids=0))
    log.info("retention: %d events purged, %d blobs (%d bytes) deleted, %d shared blobs kept",
             rep.events, rep.blobs_deleted, rep.bytes_deleted, rep.blobs_shared_kept)
    return rep


def _sweep_leftovers(db: Database, store: EvidenceStore, now: datetime) -> int:
    """Blobs of recently purged events that no unpurged event references but that still
    exist (a run that crashed between marking and deleting)."""
    with db.session() as s:
        q = (select(EvidenceRow.sha256).join(EventRow, EventRow.event_id == EvidenceRow.event_id)
             .where(EventRow.evidence_purged_at >= now - timedelta(days=SWEEP_DAYS)).distinct())
        shas = set(s.scalars(q))
        live = _live_shas(s, shas)
    n = 0
    for sha in sorted(shas - live):
        n += int(store.delete(sha))
    return n
