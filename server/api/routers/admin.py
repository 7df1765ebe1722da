"""Admin resources: users, the audit log and dead letters."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.api.deps import client_addr, db_session, require
from server.api.schemas import AuditOut, AuditPage, DeadLetterOut, UserActiveIn, UserIn, UserOut
from server.auth import AuthError, create_user
from server.db.models import AuditLog, DeadLetter, Role, User

router = APIRouter(prefix="/api", tags=["admin"])


@router.get("/users", response_model=list[UserOut])
def users(s: Session = Depends(db_session), _: User = Depends(require(Role.ADMIN))) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in s.scalars(select(User).order_by(User.username))]


@router.post("/users", response_model=UserOut, status_code=201)
def add_user(body: UserIn, request: Request, s: Session = Depends(db_session),
             admin: User = Depends(require(Role.ADMIN))) -> UserOut:
    try:
        u = create_user(s, body.username, body.password, body.role, actor=admin.username)
    except AuthError as exc:
        raise HTTPException(422, str(exc)) from exc
    s.commit()
    return UserOut.model_validate(u)


@router.post("/users/{username}/active", response_model=UserOut)
def set_user_active(username: str, body: UserActiveIn, request: Request, s: Session = Depends(db_session),
                    admin: User = Depends(require(Role.ADMIN))) -> UserOut:
    """Deactivate (every session of that user ends at once) or re-activate a user."""
    u = s.scalar(select(User).where(User.username == username))
    if u is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {username!r}")
    if u.id == admin.id and not body.active:
        raise HTTPException(422, "you cannot deactivate yourself")
    before = {"active": u.active}
    u.active = body.active
    from server.services import audit

    audit(s, admin.username, "user.activate" if body.active else "user.deactivate", f"user:{username}", before,
          {"active": u.active}, client_addr(request))
    s.commit()
    return UserOut.model_validate(u)


def audit_query(s: Session, page: int, page_size: int, action: str | None, target: str | None,
                username: str | None) -> tuple[list[AuditLog], int]:
    q = select(AuditLog)
    if action:
        q = q.where(AuditLog.action.startswith(action, autoescape=True))
    if target:
        q = q.where(AuditLog.target == target)
    if username:
        q = q.where(AuditLog.username == username)
    total = int(s.scalar(select(func.count()).select_from(q.subquery())) or 0)
    rows = list(s.scalars(q.order_by(AuditLog.id.desc()).offset((page - 1) * page_size).limit(page_size)))
    return rows, total


@router.get("/audit", response_model=AuditPage)
def audit_log(page: int = Query(1, ge=1), page_size: int = Query(100, ge=1, le=1000),
              action: str | None = Query(None, max_length=64), target: str | None = Query(None, max_length=128),
              username: str | None = Query(None, max_length=64), s: Session = Depends(db_session),
              _: User = Depends(require(Role.ADMIN))) -> AuditPage:
    """Append-only audit trail, newest first (filter by action prefix, target, user)."""
    rows, total = audit_query(s, page, page_size, action, target, username)
    return AuditPage(items=[AuditOut.model_validate(r) for r in rows], total=total, page=page, page_size=page_size)


@router.get("/dead-letters", response_model=list[DeadLetterOut])
def dead_letters(limit: int = Query(200, ge=1, le=5000), s: Session = Depends(db_session),
                 _: User = Depends(require(Role.ADMIN))) -> list[DeadLetterOut]:
    rows = s.scalars(select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit))
    return [DeadLetterOut.model_validate(r) for r in rows]


@router.get("/dead-letters/{dl_id}/payload", response_class=Response)
def dead_letter_payload(dl_id: int, request: Request, s: Session = Depends(db_session),
                        admin: User = Depends(require(Role.ADMIN))) -> Response:
    """The refused message byte for byte (for forensics)."""
    row = s.get(DeadLetter, dl_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dead letter {dl_id}")
    from server.services import audit

    audit(s, admin.username, "dead_letter.download", f"dead_letter:{dl_id}", None, None, client_addr(request))
    s.commit()
    return Response(row.payload, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="dead-letter-{dl_id}.bin"'})
