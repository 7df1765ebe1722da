"""Relational storage: SQLAlchemy 2 models, engine setup and Alembic migrations."""

from server.db.engine import Database, upgrade
from server.db.models import (
    AuditLog,
    Base,
    CameraHealthRow,
    DeadLetter,
    Device,
    DeviceHealth,
    EventRow,
    EvidenceRow,
    Review,
    User,
)

__all__ = [
    "AuditLog",
    "Base",
    "CameraHealthRow",
    "Database",
    "DeadLetter",
    "Device",
    "DeviceHealth",
    "EventRow",
    "EvidenceRow",
    "Review",
    "User",
    "upgrade",
]
