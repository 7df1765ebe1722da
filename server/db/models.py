"""ORM models. Times are stored as naive UTC in every backend (see `UTCDateTime`), so
SQLite and PostgreSQL return identical values and the same queries work on both."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python, naive UTC in the database (portable across backends)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; attach a time zone")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class EventStatus(StrEnum):
    PENDING = "pending"  # waiting for a first review
    SECOND_REVIEW = "second_review"  # first decision made, waiting for a second reviewer
    CONFIRMED = "confirmed"  # final
    REJECTED = "rejected"  # final


class Role(StrEnum):
    VIEWER = "viewer"
    REVIEWER = "reviewer"
    ADMIN = "admin"


class EventRow(Base):
    """One stored violation event: queryable columns plus the exact signed JSON."""

    __tablename__ = "events"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    schema_version: Mapped[int] = mapped_column(Integer)
    violation: Mapped[str] = mapped_column(String(32), index=True)
    site_id: Mapped[str] = mapped_column(String(64), index=True)
    camera_id: Mapped[str] = mapped_column(String(64), index=True)
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    captured_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    track_id: Mapped[int] = mapped_column(Integer)
    frame_seq: Mapped[int] = mapped_column(Integer)
    vehicle_class: Mapped[str] = mapped_column(String(32))
    plate_text: Mapped[str | None] = mapped_column(String(16), index=True)
    plate_confidence: Mapped[float | None] = mapped_column(Float)
    plate_corrected: Mapped[str | None] = mapped_column(String(16))
    confidence: Mapped[float] = mapped_column(Float, index=True)
    clock_synchronized: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16), default=EventStatus.PENDING.value, index=True)
    claimed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finalized_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    event_json: Mapped[str] = mapped_column(Text)
    #: evidence images deleted under the retention policy (signed JSON, evidence rows, reviews kept)
    evidence_purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)

    evidence: Mapped[list[EvidenceRow]] = relationship(
        back_populates="event", cascade="all, delete-orphan", order_by="EvidenceRow.position"
    )
    reviews: Mapped[list[Review]] = relationship(back_populates="event", order_by="Review.id")

    __table_args__ = (Index("ix_events_status_captured", "status", "captured_at"),)

    @property
    def plate_display(self) -> str | None:
        return self.plate_corrected or self.plate_text


class EvidenceRow(Base):
    """One evidence image of one event; the bytes live in the content-addressed store."""

    __tablename__ = "evidence"

    event_id: Mapped[str] = mapped_column(
        ForeignKey("events.event_id", ondelete="CASCADE"), primary_key=True
    )
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    content_type: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    boxes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)

    event: Mapped[EventRow] = relationship(back_populates="evidence")


class Device(Base):
    """Registered edge device and the Ed25519 public key its events must be signed with."""

    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    public_key_pem: Mapped[str] = mapped_column(Text)
    site_id: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(String(256))
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class DeviceHealth(Base):
    """Latest heartbeat / online status per device (unsigned telemetry, not evidence)."""

    __tablename__ = "device_health"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(64))
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    uptime_s: Mapped[float | None] = mapped_column(Float)
    clock_source: Mapped[str | None] = mapped_column(String(16))
    clock_synchronized: Mapped[bool | None] = mapped_column(Boolean)
    clock_offset_ms: Mapped[float | None] = mapped_column(Float)
    outbox_depth: Mapped[int | None] = mapped_column(Integer)
    outbox_bytes: Mapped[int | None] = mapped_column(Integer)
    outbox_alarm: Mapped[bool | None] = mapped_column(Boolean)
    status: Mapped[str | None] = mapped_column(String(16))
    status_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CameraHealthRow(Base):
    __tablename__ = "camera_health"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(64))
    connected: Mapped[bool] = mapped_column(Boolean)
    fps_in: Mapped[float] = mapped_column(Float)
    fps_analysed: Mapped[float] = mapped_column(Float)
    frames_dropped: Mapped[int] = mapped_column(Integer)
    reconnects: Mapped[int] = mapped_column(Integer)
    last_frame_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    events_emitted: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DeadLetter(Base):
    """A message the collector refused, kept byte-for-byte with the reason."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    topic: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    payload: Mapped[bytes] = mapped_column(LargeBinary)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Review(Base):
    """One reviewer decision on one event (stage 1, or stage 2 when two-stage review is on)."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.event_id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    stage: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(16))
    reason_code: Mapped[str | None] = mapped_column(String(32))
    plate_text: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    event: Mapped[EventRow] = relationship(back_populates="reviews")
    user: Mapped[User] = relationship()

    __table_args__ = (UniqueConstraint("event_id", "stage", name="uq_reviews_event_stage"),)


class AuditLog(Base):
    """Append-only record of every action (database triggers refuse UPDATE and DELETE)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    username: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str | None] = mapped_column(String(128), index=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    remote_addr: Mapped[str | None] = mapped_column(String(64))
