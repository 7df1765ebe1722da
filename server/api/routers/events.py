"""Events: list/filter, detail, the review queue and review decisions."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from edge.event import ViolationType
from server.api.deps import AppServices, client_addr, db_session, require, services
from server.api.routers.convert import event_detail
from server.api.schemas import (
    EventDetail,
    EventPage,
    EventSummary,
    NextIn,
    QueueOut,
    ReleaseIn,
    ReviewIn,
    ReviewResult,
    StatsOut,
)
from server.db.models import DeadLetter, EventStatus, Review, Role, User
from server.queries import (
    REASON_CODES,
    EventFilter,
    claim_next,
    get_event,
    list_events,
    queue_counts,
    release_claims,
    review_event,
)
from server.services import ServiceError, audit

router = APIRouter(prefix="/api", tags=["events"])

EVENT_ID = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
IDENT = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _blank(v: str | None) -> str | None:
    """HTML filter forms send every field, empty ones as ''; those mean 'any'."""
    return v.strip() if v and v.strip() else None


def _bad(name: str, msg: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{name}: {msg}")


def _ident(name: str, v: str | None) -> str | None:
    v = _blank(v)
    if v is not None and not re.fullmatch(IDENT, v):
        raise _bad(name, f"{v!r} is not a valid identifier")
    return v


def _time(name: str, v: str | None) -> datetime | None:
    v = _blank(v)
    if v is None:
        return None
    try:
        return _utc(datetime.fromisoformat(v))
    except ValueError as exc:
        raise _bad(name, f"{v!r} is not an ISO 8601 time (e.g. 2026-05-01T08:00:00Z)") from exc


def _conf(name: str, v: str | None) -> float | None:
    v = _blank(v)
    if v is None:
        return None
    try:
        x = float(v)
    except ValueError as exc:
        raise _bad(name, f"{v!r} is not a number") from exc
    if not 0.0 <= x <= 1.0:
        raise _bad(name, f"{x} is outside 0..1")
    return x


def event_filter(
    camera_id: str | None = Query(None, max_length=64),
    site_id: str | None = Query(None, max_length=64),
    device_id: str | None = Query(None, max_length=64),
    violation: str | None = Query(None, max_length=32, description="no_seatbelt, phone_use"),
    status_: str | None = Query(None, alias="status", max_length=16,
                                description="pending, second_review, confirmed, rejected"),
    since: str | None = Query(None, max_length=40, description="captured_at >= since (ISO 8601; UTC if no zone)"),
    until: str | None = Query(None, max_length=40, description="captured_at < until"),
    plate: str | None = Query(None, max_length=16, description="Plate text contains (read or corrected)."),
    min_confidence: str | None = Query(None, max_length=10, description="0..1"),
    max_confidence: str | None = Query(None, max_length=10, description="0..1"),
) -> EventFilter:
    st = _blank(status_)
    if st is not None and st not in {s.value for s in EventStatus}:
        raise _bad("status", f"{st!r} is not one of {', '.join(s.value for s in EventStatus)}")
    vio = _blank(violation)
    if vio is not None and vio not in {v.value for v in ViolationType}:
        raise _bad("violation", f"{vio!r} is not one of {', '.join(v.value for v in ViolationType)}")
    return EventFilter(camera_id=_ident("camera_id", camera_id), site_id=_ident("site_id", site_id),
                       device_id=_ident("device_id", device_id), violation=vio, status=st,
                       since=_time("since", since), until=_time("until", until), plate=_blank(plate),
                       min_confidence=_conf("min_confidence", min_confidence),
                       max_confidence=_conf("max_confidence", max_confidence))


@router.get("/events", response_model=EventPage)
def events(f: EventFilter = Depends(event_filter), page: int = Query(1, ge=1),
           page_size: int = Query(50, ge=1, le=500), order: str = Query("newest", pattern="^(newest|oldest)$"),
           s: Session = Depends(db_session), _: User = Depends(require(Role.VIEWER))) -> EventPage:
    rows, total = list_events(s, f, page, page_size, newest_first=order == "newest")
    return EventPage(items=[EventSummary.model_validate(r) for r in rows], total=total, page=page,
                     page_size=page_size)


@router.get("/events/{event_id}", response_model=EventDetail)
def event(event_id: str, request: Request, s: Session = Depends(db_session),
          user: User = Depends(require(Role.VIEWER))) -> EventDetail:
    row = get_event(s, event_id.lower())
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no event {event_id!r}")
    audit(s, user.username, "event.view", f"event:{row.event_id}", None, None, client_addr(request))
    s.commit()  # who looked at whose plate and face is itself on record
    return event_detail(row)


@router.get("/review/reasons", response_model=dict[str, str])
def reasons() -> dict[str, str]:
    """Reject reason codes (in keyboard order 1-5) and their labels."""
    return REASON_CODES


@router.post("/review/next", response_model=QueueOut)
def next_events(body: NextIn, s: Session = Depends(db_session), svc: AppServices = Depends(services),
                user: User = Depends(require(Role.REVIEWER))) -> QueueOut:
    """Claim the next events to review (oldest first); a claim lasts `claim_s` seconds."""
    if body.stage == 2 and not svc.cfg.web.second_stage_review:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "second-stage review is not enabled")
    rows = claim_next(s, user, body.stage, body.count, body.skip, svc.cfg.web.claim_s)
    s.commit()
    return QueueOut(items=[event_detail(r) for r in rows], counts=queue_counts(s))


@router.post("/review/release", status_code=204)
def release(body: ReleaseIn, s: Session = Depends(db_session),
            user: User = Depends(require(Role.REVIEWER))) -> None:
    """Give back claimed events (when a reviewer leaves the queue)."""
    release_claims(s, user, body.event_ids)
    s.commit()


@router.post("/events/{event_id}/review", response_model=ReviewResult)
def review(event_id: str, body: ReviewIn, request: Request, s: Session = Depends(db_session),
           svc: AppServices = Depends(services), user: User = Depends(require(Role.REVIEWER))) -> ReviewResult:
    """Confirm or reject (with a reason code), optionally correcting the plate text."""
    try:
        ev = review_event(s, event_id.lower(), user, body.decision, body.reason_code, body.plate_text, body.note,
                          svc.cfg.web.second_stage_review, client_addr(request))
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no event {event_id!r}") from exc
    except ServiceError as exc:
        s.rollback()
        code = status.HTTP_409_CONFLICT if "final" in str(exc) or "someone else" in str(exc) else 422
        raise HTTPException(code, str(exc)) from exc
    s.commit()
    return ReviewResult(event_id=ev.event_id, status=ev.status, plate=ev.plate_display)


@router.get("/stats", response_model=StatsOut)
def stats(s: Session = Depends(db_session), svc: AppServices = Depends(services),
          user: User = Depends(require(Role.VIEWER))) -> StatsOut:
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    mine = s.scalar(select(func.count()).select_from(Review)
                    .where(Review.user_id == user.id, Review.created_at >= hour_ago)) or 0
    dead = s.scalar(select(func.count()).select_from(DeadLetter)) or 0
    col = None
    if svc.collector is not None:
        col = {"connected": svc.collector.connected.is_set(), **dict(svc.collector.stats)}
    return StatsOut(counts=queue_counts(s), dead_letters=int(dead), my_reviews_last_hour=int(mine), collector=col)
