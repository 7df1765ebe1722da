"""HTML pages. Data-heavy interaction (the review queue) runs in static JS against the API;
lists and details are rendered on the server so they work with a plain reload."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.api.deps import AppServices, db_session, optional_user, services
from server.api.routers.admin import audit_query
from server.api.routers.devices import health_rows
from server.api.routers.events import event_filter
from server.auth import has_role
from server.db.models import DeadLetter, Device, EventRow, EvidenceRow, Role, User
from server.queries import REASON_CODES, EventFilter, get_event, list_events, queue_counts

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))

VIOLATION_LABELS = {"no_seatbelt": "No seat belt", "phone_use": "Phone use"}
STATUS_LABELS = {"pending": "Pending", "second_review": "2nd review", "confirmed": "Confirmed",
                 "rejected": "Rejected"}


def _fmt_time(t: datetime | None) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if t else "—"


templates.env.filters["t"] = _fmt_time
templates.env.globals.update(VIOLATION_LABELS=VIOLATION_LABELS, STATUS_LABELS=STATUS_LABELS,
                             REASON_CODES=REASON_CODES)


class LoginRequired(Exception):
    """Raised by `page_user` for an anonymous visitor; the app answers with a redirect to
    /login?next=<this page> (see `create_app`)."""


def _page(request: Request, name: str, user: User | None, **ctx: Any) -> HTMLResponse:
    svc: AppServices = request.app.state.services
    return templates.TemplateResponse(request, name, {
        "user": user, "csrf": request.state.session.csrf, "is_admin": bool(user and user.role == "admin"),
        "is_reviewer": bool(user and has_role(user.role, Role.REVIEWER)),
        "second_stage": svc.cfg.web.second_stage_review, **ctx})


def html_error(request: Request, status_code: int, detail: str) -> HTMLResponse:
    from http import HTTPStatus

    svc: AppServices = request.app.state.services
    with svc.db.sessionmaker() as s:
        from server.auth import session_user

        user = session_user(s, request.state.session)
        resp = _page(request, "error.html", user, status_code=status_code, detail=detail,
                     title=HTTPStatus(status_code).phrase if status_code in HTTPStatus._value2member_map_ else "")
    resp.status_code = status_code
    return resp


def page_user(role: Role = Role.VIEWER) -> Callable[..., User]:
    """The one login + role check of every page: anonymous -> login page (and back after),
    logged in without `role` -> 403 page."""
    def dep(user: User | None = Depends(optional_user)) -> User:
        if user is None:
            raise LoginRequired()
        if not has_role(user.role, role):
            raise HTTPException(403, f"this page needs role {role.value}")
        return user

    return dep


viewer_page = page_user(Role.VIEWER)
reviewer_page = page_user(Role.REVIEWER)
admin_page = page_user(Role.ADMIN)


def login_redirect(request: Request) -> Response:
    nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?{urlencode({'next': nxt})}", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, user: User | None = Depends(optional_user)) -> Response:
    return _page(request, "login.html", user)


@router.get("/")
def home(request: Request, user: User | None = Depends(optional_user)) -> Response:
    if user is None:
        return login_redirect(request)
    return RedirectResponse("/queue" if has_role(user.role, Role.REVIEWER) else "/events", status_code=303)


@router.get("/queue", response_class=HTMLResponse)
def queue_page(request: Request, u: User = Depends(reviewer_page),
               s: Session = Depends(db_session)) -> Response:
    return _page(request, "queue.html", u, counts=queue_counts(s))


def _plate_thumbs(s: Session, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    rows = s.execute(select(EvidenceRow.event_id, EvidenceRow.sha256)
                     .where(EvidenceRow.event_id.in_(ids), EvidenceRow.kind == "plate_crop"))
    return {r[0]: r[1] for r in rows}


@router.get("/events", response_class=HTMLResponse)
def events_page(request: Request, f: EventFilter = Depends(event_filter), page: int = Query(1, ge=1),
                u: User = Depends(viewer_page), s: Session = Depends(db_session)) -> Response:
    page_size = 50
    rows, total = list_events(s, f, page, page_size)
    params = {k: v for k, v in request.query_params.items() if k != "page" and v}
    cameras = sorted(set(s.scalars(select(EventRow.camera_id).distinct())))
    sites = sorted(set(s.scalars(select(EventRow.site_id).distinct())))
    return _page(request, "events.html", u, rows=rows, total=total, page=page,
                 pages=max(1, math.ceil(total / page_size)), params=params, query=urlencode(params),
                 thumbs=_plate_thumbs(s, [r.event_id for r in rows]), cameras=cameras, sites=sites,
                 f=f, form=dict(request.query_params))


@router.get("/events/{event_id}", response_class=HTMLResponse)
def event_page(event_id: str, request: Request, u: User = Depends(viewer_page),
               s: Session = Depends(db_session)) -> Response:
    row = get_event(s, event_id.lower())
    if row is None:
        raise HTTPException(404, f"no event {event_id!r}")
    from server.services import audit

    audit(s, u.username, "event.view", f"event:{row.event_id}", None, None,
          request.client.host if request.client else None)
    s.commit()
    history, _ = audit_query(s, 1, 200, None, f"event:{row.event_id}", None)
    evidence = [{"sha256": e.sha256, "kind": e.kind, "width": e.width, "height": e.height, "boxes": e.boxes,
                 "url": None if row.evidence_purged_at else f"/api/evidence/{e.sha256}", "size": e.size}
                for e in row.evidence]
    signed = json.loads(row.event_json)
    return _page(request, "event.html", u, ev=row, evidence=evidence, history=history,
                 evidence_json=json.dumps(evidence), signed=signed,
                 signed_pretty=json.dumps(signed, indent=2, ensure_ascii=False))


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, page: int = Query(1, ge=1), action: str | None = Query(None, max_length=64),
               target: str | None = Query(None, max_length=128), username: str | None = Query(None, max_length=64),
               u: User = Depends(admin_page), s: Session = Depends(db_session)) -> Response:
    rows, total = audit_query(s, page, 100, action or None, target or None, username or None)
    params = {k: v for k, v in request.query_params.items() if k != "page" and v}
    return _page(request, "audit.html", u, rows=rows, total=total, page=page,
                 pages=max(1, math.ceil(total / 100)), query=urlencode(params), form=dict(request.query_params),
                 dumps=lambda o: json.dumps(o, ensure_ascii=False) if o is not None else "")


@router.get("/health", response_class=HTMLResponse)
def health_page(request: Request, u: User = Depends(viewer_page),
                s: Session = Depends(db_session), svc: AppServices = Depends(services)) -> Response:
    col = None
    if svc.collector is not None:
        col = {"connected": svc.collector.connected.is_set(), **dict(svc.collector.stats)}
    return _page(request, "health.html", u, devices=health_rows(s), collector=col, now=datetime.now(UTC))


@router.get("/devices", response_class=HTMLResponse)
def devices_page(request: Request, u: User = Depends(viewer_page),
                 s: Session = Depends(db_session)) -> Response:
    return _page(request, "devices.html", u, devices=list(s.scalars(select(Device).order_by(Device.device_id))))


@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request, u: User = Depends(admin_page),
               s: Session = Depends(db_session)) -> Response:
    return _page(request, "users.html", u, users=list(s.scalars(select(User).order_by(User.username))))


@router.get("/dead-letters", response_class=HTMLResponse)
def dead_letters_page(request: Request, u: User = Depends(admin_page),
                      s: Session = Depends(db_session)) -> Response:
    rows = list(s.scalars(select(DeadLetter).order_by(DeadLetter.id.desc()).limit(500)))
    return _page(request, "dead_letters.html", u, rows=rows)
