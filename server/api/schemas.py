"""Request and response bodies of the HTTP API (pydantic; published in the OpenAPI spec)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class LoginIn(_In):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class UserOut(_Out):
    id: int
    username: str
    role: str
    active: bool
    created_at: datetime


class SessionOut(BaseModel):
    user: UserOut | None
    csrf_token: str


class UserIn(_In):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=8, max_length=1024)
    role: Literal["viewer", "reviewer", "admin"]


class UserActiveIn(_In):
    active: bool


class LabelledBoxOut(BaseModel):
    label: str
    box: dict[str, float]
    confidence: float


class EvidenceOut(_Out):
    sha256: str
    kind: str
    content_type: str
    size: int
    width: int
    height: int
    boxes: list[dict[str, Any]]
    url: str = ""


class ReviewOut(BaseModel):
    stage: int
    decision: str
    reason_code: str | None
    plate_text: str | None
    note: str | None
    reviewer: str
    created_at: datetime


class EventSummary(_Out):
    event_id: str
    violation: str
    site_id: str
    camera_id: str
    device_id: str
    captured_at: datetime
    received_at: datetime
    plate_text: str | None
    plate_corrected: str | None
    plate_confidence: float | None
    confidence: float
    vehicle_class: str
    status: str
    clock_synchronized: bool


class EventDetail(EventSummary):
    track_id: int
    frame_seq: int
    evidence_purged_at: datetime | None = Field(
        None, description="When the evidence images were deleted under the retention policy (then 410 Gone).")
    evidence: list[EvidenceOut]
    reviews: list[ReviewOut]
    signed_event: dict[str, Any] = Field(description="The event exactly as signed by the device.")


class EventPage(BaseModel):
    items: list[EventSummary]
    total: int
    page: int
    page_size: int


class ReviewIn(_In):
    decision: Literal["confirmed", "rejected"]
    reason_code: str | None = Field(None, description="Required for rejections; see GET /api/review/reasons.")
    plate_text: str | None = Field(None, max_length=16, description="Corrected plate text, if the read was wrong.")
    note: str | None = Field(None, max_length=500)


class ReviewResult(BaseModel):
    event_id: str
    status: str
    plate: str | None


class NextIn(_In):
    stage: Literal[1, 2] = 1
    count: int = Field(3, ge=1, le=20)
    skip: list[str] = Field(default_factory=list, max_length=500)


class QueueOut(BaseModel):
    items: list[EventDetail]
    counts: dict[str, int]


class ReleaseIn(_In):
    event_ids: list[str] = Field(max_length=500)


class DeviceIn(_In):
    device_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    public_key_pem: str = Field(min_length=40, max_length=4096)
    site_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str | None = Field(None, max_length=256)


class DeviceOut(_Out):
    device_id: str
    site_id: str | None
    description: str | None
    registered_at: datetime
    active: bool
    public_key_pem: str


class CameraHealthOut(_Out):
    device_id: str
    camera_id: str
    site_id: str
    connected: bool
    fps_in: float
    fps_analysed: float
    frames_dropped: int
    reconnects: int
    last_frame_at: datetime | None
    events_emitted: int
    updated_at: datetime


class DeviceHealthOut(_Out):
    device_id: str
    site_id: str
    registered: bool = False
    last_heartbeat_at: datetime | None
    sent_at: datetime | None
    uptime_s: float | None
    clock_source: str | None
    clock_synchronized: bool | None
    clock_offset_ms: float | None
    outbox_depth: int | None
    outbox_bytes: int | None
    outbox_alarm: bool | None
    status: str | None
    status_at: datetime | None
    stale: bool = False
    cameras: list[CameraHealthOut] = Field(default_factory=list)


class AuditOut(_Out):
    id: int
    at: datetime
    username: str
    action: str
    target: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    remote_addr: str | None


class AuditPage(BaseModel):
    items: list[AuditOut]
    total: int
    page: int
    page_size: int


class DeadLetterOut(_Out):
    id: int
    received_at: datetime
    topic: str
    reason: str
    size: int


class StatsOut(BaseModel):
    counts: dict[str, int]
    dead_letters: int
    my_reviews_last_hour: int
    collector: dict[str, Any] | None
