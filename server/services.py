"""Operations shared by the HTTP API and the CLI (device registry, exports, verification)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from edge.event import ViolationEvent
from server.db.models import AuditLog, Device, EventRow, EventStatus, Review
from server.evidence_store import EvidenceStore

REVIEW_CSV_COLUMNS = [
    "event_id", "camera_id", "site_id", "violation", "confidence", "decision", "reviewed_at",
]
DEVICE_ID_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ServiceError(ValueError):
    """A request that cannot be carried out; the message says why."""


def audit(s: Session, who: str, action: str, target: str | None, before: Any = None, after: Any = None,
          remote_addr: str | None = None) -> None:
    s.add(AuditLog(at=datetime.now(UTC), username=who, action=action, target=target, before=before,
                   after=after, remote_addr=remote_addr))


def parse_public_key(pem: str) -> Ed25519PublicKey:
    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise ServiceError(f"public key is not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ServiceError(f"public key must be Ed25519, got {type(key).__name__}")
    return key


def register_device(s: Session, device_id: str, public_key_pem: str, site_id: str | None, who: str,
                    description: str | None = None, remote_addr: str | None = None) -> Device:
    """Create a device or rotate its key (audited with the old key's fingerprint)."""
    import re

    if not re.fullmatch(DEVICE_ID_RE, device_id):
        raise ServiceError(f"invalid device id {device_id!r}: 1-64 of letters, digits, '_', '.', '-'")
    if site_id is not None and not re.fullmatch(DEVICE_ID_RE, site_id):
        raise ServiceError(f"invalid site id {site_id!r}")
    parse_public_key(public_key_pem)
    pem = public_key_pem.strip() + "\n"
    dev = s.get(Device, device_id)
    before = None
    if dev is None:
        dev = Device(device_id=device_id, public_key_pem=pem, site_id=site_id, description=description,
                     registered_at=datetime.now(UTC), active=True)
        s.add(dev)
    else:
        before = device_summary(dev)
        dev.public_key_pem, dev.site_id, dev.active = pem, site_id, True
        if description is not None:
            dev.description = description
    s.flush()
    audit(s, who, "device.register", f"device:{device_id}", before, device_summary(dev), remote_addr)
    return dev


def device_summary(dev: Device) -> dict[str, Any]:
    return {"device_id": dev.device_id, "site_id": dev.site_id, "active": dev.active,
            "key_sha256": hashlib.sha256(dev.public_key_pem.encode()).hexdigest()[:16]}


def final_reviews(s: Session) -> Iterator[tuple[EventRow, Review]]:
    """Finally decided events with their deciding review (stage 2 when there was one)."""
    rows = s.scalars(
        select(EventRow).where(EventRow.status.in_([EventStatus.CONFIRMED.value, EventStatus.REJECTED.value]))
        .options(selectinload(EventRow.reviews)).order_by(EventRow.finalized_at, EventRow.event_id)
    )
    for ev in rows:
        if ev.reviews:
            yield ev, max(ev.reviews, key=lambda r: r.stage)


def reviews_csv(s: Session) -> str:
    """CONTRACTS: event_id,camera_id,site_id,violation,confidence,decision,reviewed_at."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(REVIEW_CSV_COLUMNS)
    for ev, rv in final_reviews(s):
        w.writerow([ev.event_id, ev.camera_id, ev.site_id, ev.violation, f"{ev.confidence:.4f}", ev.status,
                    (ev.finalized_at or rv.created_at).strftime("%Y-%m-%dT%H:%M:%S.%fZ")])
    return buf.getvalue()


@dataclass
class VerifyReport:
    events: int = 0
    evidence_files: int = 0
    purged_events: int = 0  # evidence deleted under the retention policy (not a problem)
    evidence_purged: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "events": self.events, "evidence_files": self.evidence_files,
                "purged_events": self.purged_events, "evidence_purged": self.evidence_purged,
                "problems": self.problems}


def verify_all(s: Session, store: EvidenceStore) -> VerifyReport:
    """Re-hash every evidence item and re-check every stored event's signature.

    Detects: evidence bytes changed or missing, event JSON edited in the database,
    indexed columns that no longer match the signed JSON, and keys that no longer verify.
    Events whose evidence was purged under the retention policy are counted as purged: their
    signature and columns are still checked, their images are expected to be gone.
    """
    rep = VerifyReport()
    keys: dict[str, Ed25519PublicKey | None] = {}
    for dev in s.scalars(select(Device)):
        try:
            keys[dev.device_id] = parse_public_key(dev.public_key_pem)
        except ServiceError:
            keys[dev.device_id] = None
    q = select(EventRow).options(selectinload(EventRow.evidence)).order_by(EventRow.event_id)
    for row in s.scalars(q):
        rep.events += 1
        try:
            ev = ViolationEvent.from_json(row.event_json)
        except ValueError as exc:
            rep.problems.append(f"event {row.event_id}: stored JSON no longer parses: {exc}")
            continue
        key = keys.get(ev.device_id)
        if key is None:
            rep.problems.append(f"event {row.event_id}: device {ev.device_id!r} has no registered key")
        elif not ev.verify(key):
            rep.problems.append(f"event {row.event_id}: signature does not verify (event JSON altered?)")
        indexed = {"event_id": row.event_id, "violation": row.violation, "camera_id": row.camera_id,
                   "site_id": row.site_id, "device_id": row.device_id, "plate_text": row.plate_text,
                   "confidence": row.confidence, "captured_at": row.captured_at}
        signed = {"event_id": ev.event_id, "violation": ev.violation.value, "camera_id": ev.camera_id,
                  "site_id": ev.site_id, "device_id": ev.device_id,
                  "plate_text": ev.plate.text if ev.plate else None, "confidence": ev.confidence,
                  "captured_at": ev.captured_at}
        for k, v in indexed.items():
            if signed[k] != v:
                rep.problems.append(f"event {row.event_id}: column {k} = {v!r} but the signed event says "
                                    f"{signed[k]!r}")
        listed = {e.sha256 for e in ev.evidence}
        if {e.sha256 for e in row.evidence} != listed:
            rep.problems.append(f"event {row.event_id}: evidence rows differ from the signed evidence list")
        if row.evidence_purged_at is not None:
            rep.purged_events += 1
            rep.evidence_purged += len(ev.evidence)
            continue
        for item in ev.evidence:
            rep.evidence_files += 1
            try:
                data = store.get(item.sha256)
            except KeyError:
                rep.problems.append(
                    f"event {row.event_id}: evidence {item.kind.value} {item.sha256} is missing")
                continue
            actual = hashlib.sha256(data).hexdigest()
            if actual != item.sha256 or len(data) != item.size:
                rep.problems.append(f"event {row.event_id}: evidence {item.kind.value} {item.sha256} was "
                                    f"altered (now hashes to {actual}, {len(data)} bytes)")
    return rep


def event_public_dict(row: EventRow) -> dict[str, Any]:
    """Flat export record (CSV/JSON export, API list)."""
    return {
        "event_id": row.event_id, "violation": row.violation, "site_id": row.site_id,
        "camera_id": row.camera_id, "device_id": row.device_id,
        "captured_at": row.captured_at.isoformat().replace("+00:00", "Z"),
        "received_at": row.received_at.isoformat().replace("+00:00", "Z"),
        "plate_text": row.plate_text, "plate_corrected": row.plate_corrected,
        "plate_confidence": row.plate_confidence, "confidence": row.confidence,
        "vehicle_class": row.vehicle_class, "status": row.status,
        "clock_synchronized": row.clock_synchronized,
    }


def json_dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
