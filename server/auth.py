"""Users, password hashing (argon2id), signed session cookies and CSRF tokens.

Sessions are stateless signed cookies (itsdangerous, HMAC-SHA1 over a per-installation
secret) holding the user id, a CSRF token and a password-hash fingerprint: changing a
password or deactivating a user invalidates every cookie issued before. Cookies are
HttpOnly and SameSite=Strict; every state-changing request must also echo the CSRF token
(header `X-CSRF-Token` or form field `csrf_token`), checked in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models import AuditLog, Role, User

SESSION_COOKIE = "roadeye_session"
CSRF_HEADER = "X-CSRF-Token"
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8
ROLE_RANK = {Role.VIEWER: 0, Role.REVIEWER: 1, Role.ADMIN: 2}

_hasher = PasswordHasher()
# Verifying against a dummy hash when the user does not exist keeps timing uniform.
_DUMMY_HASH = _hasher.hash("roadeye-no-such-user")


class AuthError(ValueError):
    pass


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"password must be at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def create_user(s: Session, username: str, password: str, role: str, actor: str = "cli") -> User:
    if not USERNAME_RE.fullmatch(username):
        raise AuthError(f"invalid user name {username!r}: 1-64 of letters, digits, _ . @ -")
    try:
        r = Role(role)
    except ValueError as exc:
        raise AuthError(f"unknown role {role!r}; choose viewer, reviewer or admin") from exc
    if s.scalar(select(User).where(User.username == username)) is not None:
        raise AuthError(f"user {username!r} already exists")
    user = User(username=username, password_hash=hash_password(password), role=r.value, active=True)
    s.add(user)
    s.flush()
    s.add(AuditLog(username=actor, action="user.create", target=f"user:{username}", before=None,
                   after={"username": username, "role": r.value}))
    return user


def authenticate(s: Session, username: str, password: str) -> User | None:
    user = s.scalar(select(User).where(User.username == username))
    if user is None:
        verify_password(_DUMMY_HASH, password)
        return None
    if not verify_password(user.password_hash, password) or not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def has_role(user_role: str, needed: Role) -> bool:
    return ROLE_RANK.get(Role(user_role), -1) >= ROLE_RANK[needed]


def _fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


@dataclass
class SessionData:
    csrf: str
    user_id: int | None = None
    fp: str | None = None


class SessionCodec:
    def __init__(self, secret: bytes, max_age_s: int) -> None:
        self._s = URLSafeTimedSerializer(secret, salt="roadeye-session")
        self.max_age_s = max_age_s

    def new(self, user: User | None = None) -> SessionData:
        return SessionData(csrf=secrets.token_urlsafe(32), user_id=user.id if user else None,
                           fp=_fingerprint(user.password_hash) if user else None)

    def dumps(self, data: SessionData) -> str:
        payload: dict[str, Any] = {"c": data.csrf}
        if data.user_id is not None:
            payload |= {"u": data.user_id, "f": data.fp}
        return str(self._s.dumps(payload))

    def loads(self, cookie: str | None) -> SessionData | None:
        if not cookie:
            return None
        try:
            raw = self._s.loads(cookie, max_age=self.max_age_s)
        except BadSignature:
            return None
        if not isinstance(raw, dict) or not isinstance(raw.get("c"), str):
            return None
        return SessionData(csrf=raw["c"], user_id=raw.get("u"), fp=raw.get("f"))


def session_user(s: Session, data: SessionData | None) -> User | None:
    """The logged-in user, or None when the cookie is anonymous, stale or revoked."""
    if data is None or data.user_id is None:
        return None
    user = s.get(User, data.user_id)
    if user is None or not user.active or _fingerprint(user.password_hash) != data.fp:
        return None
    return user


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected and given and hmac.compare_digest(expected.encode(), given.encode()))
