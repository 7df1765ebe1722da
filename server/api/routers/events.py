"""Events: list/filter, detail, the review queue and review decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from sqlalchemy import func, select
from sqlalchemy.orm import Session

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
from server.services import ServiceError

router = APIRouter(prefix="/api", tags=["events"])

EVENT_ID = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
IDENT = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def event_filter(
    camera_id: str | None = Query(None, pattern=IDENT),
    site_id: str | None = Query(None, pattern=IDENT),
    device_id: str | None = Query(None, pattern=IDENT),
    violation: str | None = Query(None, pattern=r"^[a-z_]{1,32}$", description="no_seatbelt, phone_use"),
    status_: EventStatus | None = Query(None, alias="status"),
    since: datetime | None = Query(None, description="captured_at >= since (ISO 8601; UTC if no zone)"),
    until: datetime | None = Query(None, description="captured_at < until"),
    plate: str | None = Query(None, max_length=16, description="Plate text contains (read or corrected)."),
    min_confidence: float | None = Query(None, ge=0, le=1),
    max_confidence: float | None = Query(None, ge=0, le=1),
) -> EventFilter:
    return EventFilter(camera_id=camera_id, site_id=site_id, device_id=device_id, violation=violation,
                       status=status_.value if status_ else None, since=_utc(since), until=_utc(until),
                       plate=plate or None, min_confidence=min_confidence, max_confidence=max_confidence)


@router.get("/events", response_model=EventPage)
def events(f: EventFilter = Depends(event_filter), page: int = Query(1, ge=1),
           page_size: int = Query(50, ge=1, le=500), order: str = Query("newest", pattern="^(newest|oldest)$"),
           s: Session = Depends(db_session), _: User = Depends(require(Role.VIEWER))) -> EventPage:
    rows, total = list_events(s, f, page, page_size, newest_first=order == "newest")
    return EventPage(items=[EventSummary.model_validate(r) for r in rows], total=total, page=page,
                     page_size=page_size)


@router.get("/events/{event_id}", response_model=EventDetail)
def event(event_id: str, s: Session = Depends(db_session),
          _: User = Depends(require(Role.VIEWER))) -> EventDetail:
    row = get_event(s, event_id.lower())
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no event {event_id!r}")
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
