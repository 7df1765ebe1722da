"""Login, logout and the current session."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque

from fastapi import APIRouter, Depends, HTTPException, Request, status
from sqlalchemy.orm import Session

from server.api.deps import AppServices, client_addr, db_session, optional_user, services
from server.api.schemas import LoginIn, SessionOut, UserOut
from server.auth import authenticate
from server.db.models import User
from server.services import audit

router = APIRouter(prefix="/api/auth", tags=["auth"])

_FAIL_WINDOW_S = 300.0
_FAIL_LIMIT = 8
_failures: dict[str, deque[float]] = defaultdict(deque)
_fail_lock = threading.Lock()


def _throttled(key: str) -> bool:
    now = time.monotonic()
    with _fail_lock:
        q = _failures[key]
        while q and now - q[0] > _FAIL_WINDOW_S:
            q.popleft()
        return len(q) >= _FAIL_LIMIT


def _failed(key: str) -> None:
    with _fail_lock:
        _failures[key].append(time.monotonic())


@router.get("/session", response_model=SessionOut)
def get_session(request: Request, user: User | None = Depends(optional_user)) -> SessionOut:
    """Who is logged in, and the CSRF token to send as X-CSRF-Token on state-changing requests."""
    return SessionOut(user=UserOut.model_validate(user) if user else None,
                      csrf_token=request.state.session.csrf)


@router.post("/login", response_model=SessionOut)
def login(body: LoginIn, request: Request, s: Session = Depends(db_session),
          svc: AppServices = Depends(services)) -> SessionOut:
    addr = client_addr(request) or "?"
    key = f"{body.username.lower()}|{addr}"
    if _throttled(key):
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "too many failed logins; wait 5 minutes")
    user = authenticate(s, body.username, body.password)
    if user is None:
        _failed(key)
        audit(s, body.username[:64], "login.failed", None, None, None, addr)
        s.commit()
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong user name or password")
    audit(s, user.username, "login", f"user:{user.username}", None, None, addr)
    s.commit()
    # a fresh session and CSRF token at login (no session fixation)
    request.state.session = svc.codec.new(user)
    request.state.session_changed = True
    return SessionOut(user=UserOut.model_validate(user), csrf_token=request.state.session.csrf)


@router.post("/logout", response_model=SessionOut)
def logout(request: Request, s: Session = Depends(db_session), svc: AppServices = Depends(services),
           user: User | None = Depends(optional_user)) -> SessionOut:
    if user is not None:
        audit(s, user.username, "logout", f"user:{user.username}", None, None, client_addr(request))
        s.commit()
    request.state.session = svc.codec.new(None)
    request.state.session_changed = True
    return SessionOut(user=None, csrf_token=request.state.session.csrf)
