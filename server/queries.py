"""Event queries and the review workflow, shared by the JSON API and the HTML pages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.orm import Session, selectinload

from server.db.models import EventRow, EventStatus, Review, User
from server.services import ServiceError, audit

#: Reject reasons, in keyboard order (R then 1-5 in the review app).
REASON_CODES: dict[str, str] = {
    "not_violation": "No violation (belt worn / no phone)",
    "not_visible": "Driver not visible (glare, occlusion, blur)",
    "plate_unreadable": "Plate unreadable or wrong vehicle",
    "exempt_vehicle": "Exempt vehicle (police, ambulance, fire)",
    "other": "Other (explain in the note)",
}

_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_ALNUM = "0-9A-HJ-NP-Z"
#: CONTRACTS plate format: province + letter + 5 chars (7 in all: blue / yellow, the last may be
#: 学 警 挂) or + 6 chars (8 in all: green new-energy).
PLATE_RE = re.compile(rf"^[{_PROVINCES}][A-HJ-NP-Z](?:[{_ALNUM}]{{4}}[{_ALNUM}学警挂]|[{_ALNUM}]{{6}})$")


def normalize_plate(text: str) -> str:
    """Upper-case and drop the separators people type ('皖A·12345', 'wan a 12345' stays invalid)."""
    return re.sub(r"[\s·.\-•]", "", text).upper()


def check_plate(text: str) -> str:
    p = normalize_plate(text)
    if not PLATE_RE.fullmatch(p):
        raise ServiceError(f"plate {text!r} is not a valid mainland plate (e.g. 皖A12345 or 皖AD12345)")
    return p


@dataclass
class EventFilter:
    camera_id: str | None = None
    site_id: str | None = None
    device_id: str | None = None
    violation: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    plate: str | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None

    def apply(self, q: Select) -> Select:  # type: ignore[type-arg]
        conds = []
        for col, val in ((EventRow.camera_id, self.camera_id), (EventRow.site_id, self.site_id),
                         (EventRow.device_id, self.device_id), (EventRow.violation, self.violation),
                         (EventRow.status, self.status)):
            if val:
                conds.append(col == val)
        if self.since:
            conds.append(EventRow.captured_at >= self.since)
        if self.until:
            conds.append(EventRow.captured_at < self.until)
        if self.min_confidence is not None:
            conds.append(EventRow.confidence >= self.min_confidence)
        if self.max_confidence is not None:
            conds.append(EventRow.confidence <= self.max_confidence)
        if self.plate:
            needle = normalize_plate(self.plate)
            conds.append(or_(EventRow.plate_text.contains(needle, autoescape=True),
                             EventRow.plate_corrected.contains(needle, autoescape=True)))
        return q.where(and_(*conds)) if conds else q


def list_events(s: Session, f: EventFilter, page: int = 1, page_size: int = 50,
                newest_first: bool = True) -> tuple[list[EventRow], int]:
    total = int(s.scalar(f.apply(select(func.count()).select_from(EventRow))) or 0)
    order = EventRow.captured_at.desc() if newest_first else EventRow.captured_at.asc()
    rows = list(s.scalars(f.apply(select(EventRow)).order_by(order, EventRow.event_id)
                          .offset((page - 1) * page_size).limit(page_size)))
    return rows, total


def get_event(s: Session, event_id: str) -> EventRow | None:
    return s.scalar(select(EventRow).where(EventRow.event_id == event_id)
                    .options(selectinload(EventRow.evidence),
                             selectinload(EventRow.reviews).selectinload(Review.user)))


def claim_next(s: Session, user: User, stage: int, count: int, skip: list[str], claim_s: int) -> list[EventRow]:
    """Reserve up to `count` events for `user` (oldest first) so reviewers never collide.

    The claim is an optimistic conditional UPDATE, portable across SQLite and PostgreSQL:
    a row somebody else claimed in between simply is not counted.
    """
    now = datetime.now(UTC)
    status = EventStatus.PENDING.value if stage == 1 else EventStatus.SECOND_REVIEW.value
    free = or_(EventRow.claimed_by.is_(None), EventRow.claimed_by == user.id, EventRow.claimed_until < now)
    q = select(EventRow.event_id).where(EventRow.status == status, free)
    if skip:
        q = q.where(EventRow.event_id.not_in(skip[:500]))
    if stage == 2:  # the second look must come from somebody else
        mine = select(Review.event_id).where(Review.user_id == user.id, Review.stage == 1)
        q = q.where(EventRow.event_id.not_in(mine))
    candidates = list(s.scalars(q.order_by(EventRow.captured_at, EventRow.event_id).limit(count * 3)))
    got: list[str] = []
    for eid in candidates:
        res = s.execute(update(EventRow).where(EventRow.event_id == eid, EventRow.status == status, free)
                        .values(claimed_by=user.id, claimed_until=now + timedelta(seconds=claim_s)))
        if getattr(res, "rowcount", 0) == 1:
            got.append(eid)
        if len(got) >= count:
            break
    s.flush()
    out = [get_event(s, eid) for eid in got]
    return [e for e in out if e is not None]


def queue_counts(s: Session) -> dict[str, int]:
    rows = s.execute(select(EventRow.status, func.count()).group_by(EventRow.status))
    counts = {st.value: 0 for st in EventStatus}
    counts.update({r[0]: int(r[1]) for r in rows})
    return counts


def review_event(s: Session, event_id: str, user: User, decision: str, reason_code: str | None,
                 plate_text: str | None, note: str | None, second_stage: bool,
                 remote_addr: str | None = None) -> EventRow:
    """Record one decision; returns the event with its new status. Raises ServiceError."""
    ev = s.scalar(select(EventRow).where(EventRow.event_id == event_id)
                  .options(selectinload(EventRow.reviews)).with_for_update())
    if ev is None:
        raise LookupError(event_id)
    if decision not in ("confirmed", "rejected"):
        raise ServiceError(f"decision must be 'confirmed' or 'rejected', got {decision!r}")
    if decision == "rejected":
        if reason_code not in REASON_CODES:
            raise ServiceError(f"a rejection needs a reason_code, one of {', '.join(REASON_CODES)}")
        if reason_code == "other" and not (note and note.strip()):
            raise ServiceError("reason 'other' needs a note")
    elif reason_code is not None:
        raise ServiceError("reason_code applies to rejections only")
    corrected = check_plate(plate_text) if plate_text else None
    if ev.status == EventStatus.PENDING.value:
        stage = 1
    elif ev.status == EventStatus.SECOND_REVIEW.value:
        stage = 2
        if any(r.stage == 1 and r.user_id == user.id for r in ev.reviews):
            raise ServiceError("the second review must be done by a different reviewer")
    else:
        raise ServiceError(f"event {event_id} is already final ({ev.status})")
    if ev.claimed_by not in (None, user.id) and ev.claimed_until and ev.claimed_until > datetime.now(UTC):
        raise ServiceError("event is being reviewed by someone else right now")
    before = {"status": ev.status, "plate": ev.plate_display}
    now = datetime.now(UTC)
    s.add(Review(event_id=ev.event_id, user_id=user.id, stage=stage, decision=decision,
                 reason_code=reason_code, plate_text=corrected, note=(note or None), created_at=now))
    if corrected and corrected != ev.plate_display:
        ev.plate_corrected = corrected if corrected != ev.plate_text else None
    if stage == 1 and second_stage:
        ev.status = EventStatus.SECOND_REVIEW.value
    else:
        ev.status = decision
        ev.finalized_at = now
    ev.claimed_by, ev.claimed_until = None, None
    after = {"status": ev.status, "plate": ev.plate_display, "decision": decision, "stage": stage,
             "reason_code": reason_code, "note": note or None}
    audit(s, user.username, f"review.{'confirm' if decision == 'confirmed' else 'reject'}",
          f"event:{ev.event_id}", before, after, remote_addr)
    s.flush()
    return ev


def release_claims(s: Session, user: User, event_ids: list[str]) -> None:
    s.execute(update(EventRow).where(EventRow.event_id.in_(event_ids[:500]), EventRow.claimed_by == user.id)
              .values(claimed_by=None, claimed_until=None))
