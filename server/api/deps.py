"""Dependencies: database session, the logged-in user, role checks, app services."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.orm import Session

from server.auth import SessionCodec, SessionData, has_role, session_user
from server.config import ServerConfig
from server.db.engine import Database
from server.db.models import Role, User
from server.evidence_store import EvidenceStore


@dataclass
class AppServices:
    cfg: ServerConfig
    db: Database
    store: EvidenceStore
    codec: SessionCodec
    collector: Any = None


def services(request: Request) -> AppServices:
    return request.app.state.services  # type: ignore[no-any-return]


def db_session(svc: AppServices = Depends(services)) -> Iterator[Session]:
    """A session per request; handlers that write call `commit()` themselves."""
    with svc.db.sessionmaker() as s:
        yield s


def session_data(request: Request) -> SessionData:
    return request.state.session  # type: ignore[no-any-return]


class NotLoggedIn(HTTPException):
    def __init__(self) -> None:
        super().__init__(status.HTTP_401_UNAUTHORIZED, "login required")


def current_user(request: Request, s: Session = Depends(db_session)) -> User:
    user = session_user(s, request.state.session)
    if user is None:
        raise NotLoggedIn()
    return user


def optional_user(request: Request, s: Session = Depends(db_session)) -> User | None:
    return session_user(s, request.state.session)


def require(role: Role) -> Callable[..., User]:
    def dep(user: User = Depends(current_user)) -> User:
        if not has_role(user.role, role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"needs role {role.value} (you are {user.role})")
        return user

    return dep


def client_addr(request: Request) -> str | None:
    return request.client.host if request.client else None
