"""The wire contract between edge boxes and the collector: violation event schema v1.

One frozen, versioned pydantic model. The server imports it from here, so both ends
validate with the same code. Serialization (this module) is kept apart from transport
(`edge.publish`, `server.collector`).

Signing: Ed25519 over the RFC 8785 (JCS) canonical JSON of the event *without* its
`signature` field, so any re-encoding of the JSON on the way (key order, whitespace)
still verifies, and any change of a value does not.

Evidence bytes travel beside the event in an `EventMessage` envelope, keyed by their
SHA-256; the event itself carries only each item's kind, content type, size and hash, so
the signature covers the evidence through its hashes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import rfc8785
import uuid6
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

SCHEMA_VERSION = 1
#: Largest MQTT payload a collector accepts by default (event JSON + base64 evidence).
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

Identifier = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="1-64 chars of letters, digits, '_', '.', '-'; safe inside an MQTT topic.",
    ),
]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="lower-case hex SHA-256")]
Confidence = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


def _to_utc_ms(v: datetime) -> datetime:
    if v.tzinfo is None or v.utcoffset() is None:
        raise ValueError("time must carry a time zone (UTC)")
    v = v.astimezone(UTC)
    return v.replace(microsecond=(v.microsecond // 1000) * 1000)


def _fmt_utc_ms(v: datetime) -> str:
    return v.strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}Z"


#: Timezone-aware instant, normalised to UTC with millisecond precision, "...T05:41:00.123Z" on the wire.
UtcMillis = Annotated[datetime, AfterValidator(_to_utc_ms), PlainSerializer(_fmt_utc_ms, return_type=str)]


class ViolationType(StrEnum):
    """Violation kinds. New kinds are added here; schema v1 readers reject unknown ones."""

    NO_SEATBELT = "no_seatbelt"
    PHONE_USE = "phone_use"


class EvidenceKind(StrEnum):
    OVERVIEW = "overview"
    DRIVER_CROP = "driver_crop"
    PLATE_CROP = "plate_crop"
    VEHICLE_CROP = "vehicle_crop"


class ClockSource(StrEnum):
    NTP = "ntp"
    PTP = "ptp"
    GPS = "gps"
    RTC = "rtc"  # free-running local clock, never synchronised
    UNKNOWN = "unknown"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


class Box(_Frozen):
    """Axis-aligned box in pixels of the image it refers to (x1 < x2, y1 < y2)."""

    x1: float = Field(ge=0, allow_inf_nan=False)
    y1: float = Field(ge=0, allow_inf_nan=False)
    x2: float = Field(ge=0, allow_inf_nan=False)
    y2: float = Field(ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> Box:
        if not (self.x2 > self.x1 and self.y2 > self.y1):
            raise ValueError(f"box must have x2 > x1 and y2 > y1, got {self.as_list()}")
        return self

    def as_list(self) -> list[float]:
        return [self.x1, self.y1, self.x2, self.y2]

    @classmethod
    def from_xyxy(cls, xyxy: Any) -> Box:
        x1, y1, x2, y2 = (round(float(v), 1) for v in xyxy)
        return cls(x1=x1, y1=y1, x2=x2, y2=y2)


class ClockSync(_Frozen):
    """How far the box's clock can be trusted when it stamped `captured_at`."""

    source: ClockSource = Field(description="Time source the box was disciplined by.")
    synchronized: bool = Field(description="True when the source reported lock at capture time.")
    offset_ms: float = Field(
        allow_inf_nan=False, description="Last measured offset of the local clock from the source."
    )


class Vehicle(_Frozen):
    box: Box = Field(description="Vehicle box in the overview (full-resolution) frame.")
    cls: str = Field(min_length=1, max_length=32, description="Vehicle class name, e.g. car, van.")
    confidence: Confidence


class PlateRead(_Frozen):
    """Plate text voted across frames, with one confidence per character."""

    text: str = Field(min_length=1, max_length=16)
    char_confidences: list[Confidence] = Field(description="One per character of `text`.")
    box: Box = Field(description="Plate box in the overview frame.")
    confidence: Confidence = Field(description="Confidence of the whole read.")
    frames: int = Field(ge=1, description="How many frames' reads were voted.")

    @model_validator(mode="after")
    def _one_conf_per_char(self) -> PlateRead:
        if len(self.char_confidences) != len(self.text):
            raise ValueError(
                f"char_confidences has {len(self.char_confidences)} values for "
                f"{len(self.text)} characters of text"
            )
        return self


class LabelledBox(_Frozen):
    """A detection drawn on an evidence image (also what the retraining export uses)."""

    label: str = Field(min_length=1, max_length=32)
    box: Box
    confidence: Confidence


class EvidenceItem(_Frozen):
    kind: EvidenceKind
    content_type: Literal["image/jpeg", "image/png"]
    size: int = Field(gt=0, le=MAX_MESSAGE_BYTES, description="Bytes.")
    sha256: Sha256Hex
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    boxes: list[LabelledBox] = Field(default_factory=list, description="Detections in this image.")


class ModelRef(_Frozen):
    name: str = Field(min_length=1, max_length=64)
    version: str = Field(min_length=1, max_length=64)
    sha256: Sha256Hex = Field(description="SHA-256 of the ONNX file that ran.")


class Signature(_Frozen):
    alg: Literal["ed25519"] = "ed25519"
    key_id: Identifier = Field(description="Registered device key that signed.")
    value: str = Field(description="Base64 (standard, padded) of the 64-byte signature.")

    @field_validator("value")
    @classmethod
    def _b64_64_bytes(cls, v: str) -> str:
        try:
            raw = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("signature value is not valid base64") from exc
        if len(raw) != 64:
            raise ValueError(f"ed25519 signature must be 64 bytes, got {len(raw)}")
        return v


def uuid7_at(at: datetime, rand74: int) -> str:
    """UUIDv7 for a given time (48-bit ms timestamp) with the caller's 74 bits of randomness.

    uuid6.uuid7() only stamps "now"; events are stamped with their capture time instead."""
    ms = int(at.timestamp() * 1000) & ((1 << 48) - 1)
    rand_a, rand_b = (rand74 >> 62) & 0xFFF, rand74 & ((1 << 62) - 1)
    return str(uuid.UUID(int=(ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b))


def new_event_id(at: datetime | None = None) -> str:
    """Time-ordered UUIDv7 (sorts by creation time; unique without coordination)."""
    if at is None:
        return str(uuid6.uuid7())
    return uuid7_at(at, uuid.uuid4().int & ((1 << 74) - 1))


class ViolationEvent(_Frozen):
    """One violation by one vehicle, as published by an edge box (schema v1)."""

    schema_version: Literal[1] = Field(description="Wire schema version; readers reject others.")
    event_id: str = Field(description="UUIDv7, time-ordered; the collector upserts on it.")
    violation: ViolationType
    site_id: Identifier
    camera_id: Identifier
    device_id: Identifier
    captured_at: UtcMillis = Field(description="UTC capture time of the overview frame (ms precision).")
    clock: ClockSync
    frame_seq: int = Field(ge=0, description="Sequence number of the overview frame in its stream.")
    track_id: int = Field(ge=0)
    vehicle: Vehicle
    plate: PlateRead | None = Field(description="None when no plate could be read.")
    confidence: Confidence = Field(description="Confidence in the violation itself.")
    frames_agreed: int = Field(ge=1, description="Frames in which the violation was seen.")
    frames_observed: int = Field(ge=1, description="Frames in which the driver was observed.")
    evidence: list[EvidenceItem] = Field(min_length=1)
    models: list[ModelRef] = Field(min_length=1)
    config_hash: Sha256Hex = Field(description="SHA-256 of the canonical camera config that ran.")
    signature: Signature | None = None

    @field_validator("event_id")
    @classmethod
    def _uuid7(cls, v: str) -> str:
        try:
            u = uuid.UUID(v)
        except (ValueError, AttributeError, TypeError) as exc:
            raise ValueError(f"event_id is not a UUID: {v!r}") from exc
        if u.version != 7 or str(u) != v:
            raise ValueError(f"event_id must be a lower-case canonical UUIDv7, got {v!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ViolationEvent:
        if self.frames_agreed > self.frames_observed:
            raise ValueError(
                f"frames_agreed ({self.frames_agreed}) exceeds frames_observed ({self.frames_observed})"
            )
        hashes = [e.sha256 for e in self.evidence]
        if len(set(hashes)) != len(hashes):
            raise ValueError("evidence items must have distinct sha256")
        return self

    # -- canonical encoding and signatures ---------------------------------------------
    def signing_payload(self) -> bytes:
        """RFC 8785 canonical JSON of the event without its signature."""
        body = self.model_dump(mode="json", exclude={"signature"})
        return rfc8785.dumps(body)

    def signed(self, key: Ed25519PrivateKey, key_id: str) -> ViolationEvent:
        sig = key.sign(self.signing_payload())
        return self.model_copy(
            update={"signature": Signature(key_id=key_id, value=base64.b64encode(sig).decode())}
        )

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        """True when the signature is present and valid for this exact content."""
        if self.signature is None:
            return False
        try:
            public_key.verify(base64.b64decode(self.signature.value), self.signing_payload())
        except InvalidSignature:
            return False
        return True

    def to_json(self) -> bytes:
        return rfc8785.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_json(cls, data: bytes | str) -> ViolationEvent:
        return cls.model_validate_json(data)

    @property
    def topic_suffix(self) -> str:
        return f"{self.site_id}/{self.camera_id}/events"


class EventMessage(_Frozen):
    """MQTT payload: the signed event plus its evidence bytes (base64), keyed by SHA-256."""

    event: ViolationEvent
    evidence: dict[Sha256Hex, str] = Field(description="sha256 -> base64 of the evidence bytes.")

    @classmethod
    def build(cls, event: ViolationEvent, blobs: dict[str, bytes]) -> EventMessage:
        return cls(event=event, evidence={h: base64.b64encode(b).decode() for h, b in blobs.items()})

    def blobs(self) -> dict[str, bytes]:
        """Decode and check every evidence item; raises EvidenceError naming the bad item."""
        out: dict[str, bytes] = {}
        listed = {e.sha256: e for e in self.event.evidence}
        extra = set(self.evidence) - set(listed)
        if extra:
            raise EvidenceError(f"evidence {sorted(extra)[0]} is not listed in the event")
        for sha, item in listed.items():
            if sha not in self.evidence:
                raise EvidenceError(f"evidence {item.kind.value} ({sha}) is missing from the message")
            try:
                raw = base64.b64decode(self.evidence[sha], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise EvidenceError(f"evidence {item.kind.value} is not valid base64") from exc
            if len(raw) != item.size:
                raise EvidenceError(
                    f"evidence {item.kind.value} has {len(raw)} bytes, event says {item.size}"
                )
            if hashlib.sha256(raw).hexdigest() != sha:
                raise EvidenceError(f"evidence {item.kind.value} does not match its sha256 {sha}")
            out[sha] = raw
        return out

    def to_bytes(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> EventMessage:
        """Parse a payload; raises SchemaError with a message naming the bad field."""
        if len(data) > max_bytes:
            raise SchemaError(f"message is {len(data)} bytes, limit is {max_bytes}")
        try:
            raw = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise SchemaError(f"message is not JSON (or nested too deeply): {exc}") from exc
        if not isinstance(raw, dict) or not isinstance(raw.get("event"), dict):
            raise SchemaError("message must be an object with an 'event' object")
        version = raw["event"].get("schema_version")
        if version != SCHEMA_VERSION:
            raise SchemaError(f"unsupported schema_version {version!r} (this reader knows {SCHEMA_VERSION})")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise SchemaError(describe_validation_error(exc)) from exc


class Heartbeat(_Frozen):
    """Periodic health report from an edge box (topic `roadeye/v1/<site>/<device>/heartbeat`)."""

    schema_version: Literal[1] = 1
    device_id: Identifier
    site_id: Identifier
    sent_at: UtcMillis
    uptime_s: float = Field(ge=0)
    clock: ClockSync
    outbox_depth: int = Field(ge=0)
    outbox_bytes: int = Field(ge=0)
    outbox_alarm: bool = False
    cameras: dict[Identifier, CameraHealth] = Field(default_factory=dict)


class CameraHealth(_Frozen):
    connected: bool
    fps_in: float = Field(ge=0)
    fps_analysed: float = Field(ge=0)
    frames_dropped: int = Field(ge=0)
    reconnects: int = Field(ge=0)
    last_frame_at: UtcMillis | None = None
    events_emitted: int = Field(ge=0, default=0)


Heartbeat.model_rebuild()


class ReceiptStatus(StrEnum):
    STORED = "stored"  # newly stored (evidence, then the event row) and committed
    DUPLICATE = "duplicate"  # this event_id with the same signed content was already stored
    DEAD_LETTER = "dead_letter"  # refused (bad signature, tampered evidence...); kept raw server-side


class ReceiptItem(_Frozen):
    event_id: str = Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    status: ReceiptStatus


class Receipt(_Frozen):
    """Collector -> edge, after the events are durable (topic `roadeye/v1/<site>/<device>/receipts`).

    Why: a broker PUBACK only proves the broker took the message. A broker can acknowledge and
    still lose it (mosquitto 2.0 forgets shared subscriptions across a restart, so a message
    matched by some other subscriber is PUBACKed 0x00 and never reaches a collector). With
    receipts on, the edge keeps every event until a collector says it is stored, and republishes
    what got no receipt in time; the collector is idempotent on event_id, so a resend is harmless.
    Unsigned: only collectors may publish to receipt topics (broker ACL).
    """

    schema_version: Literal[1] = 1
    collector_id: str = Field(min_length=1, max_length=256)
    sent_at: UtcMillis
    items: list[ReceiptItem] = Field(min_length=1, max_length=10_000)

    def to_bytes(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | str) -> Receipt:
        """Parse a receipt; raises SchemaError naming the bad field."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise SchemaError(describe_validation_error(exc)) from exc


class SchemaError(ValueError):
    """A message does not match the wire schema; the text names the offending field."""


class EvidenceError(ValueError):
    """Evidence bytes are missing, malformed or do not match the hashes in the event."""


def describe_validation_error(exc: ValidationError) -> str:
    """One line per error, each naming the dotted field path, e.g. `event.plate.text: ...`."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def utc_now() -> datetime:
    return datetime.now(UTC)


TOPIC_ROOT = "roadeye/v1"
_TOPIC_RE = re.compile(r"^roadeye/v1/([^/]+)/([^/]+)/(events|heartbeat|status|receipts)$")


def event_topic(site_id: str, camera_id: str) -> str:
    return f"{TOPIC_ROOT}/{site_id}/{camera_id}/events"


def heartbeat_topic(site_id: str, device_id: str) -> str:
    return f"{TOPIC_ROOT}/{site_id}/{device_id}/heartbeat"


def status_topic(site_id: str, device_id: str) -> str:
    """Retained online/offline status; the broker publishes 'offline' as the last will."""
    return f"{TOPIC_ROOT}/{site_id}/{device_id}/status"


def receipt_topic(site_id: str, device_id: str) -> str:
    """Collector -> edge storage receipts for the events of one device (see `Receipt`)."""
    return f"{TOPIC_ROOT}/{site_id}/{device_id}/receipts"


def parse_topic(topic: str) -> tuple[str, str, str]:
    """-> (site_id, camera_or_device_id, kind); ValueError if not a roadeye v1 topic."""
    m = _TOPIC_RE.match(topic)
    if not m:
        raise ValueError(f"not a roadeye v1 topic: {topic!r}")
    return m.group(1), m.group(2), m.group(3)
