"""Turn one decided violation of one track into a signed `EventMessage` (schema v1)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.event import (
    MAX_MESSAGE_BYTES,
    Box,
    ClockSource,
    ClockSync,
    EventMessage,
    ModelRef,
    PlateRead,
    Vehicle,
    ViolationEvent,
    new_event_id,
    uuid7_at,
)
from edge.evidence import build_evidence
from edge.observations import EvidenceCandidate, TrackHistory
from edge.plates import VotedPlate
from edge.rules import Decision


@dataclass(frozen=True)
class DeviceIdentity:
    device_id: str
    site_id: str
    key: Ed25519PrivateKey | None = None
    clock_source: str = "unknown"
    clock_synchronized: bool = False

    def clock(self) -> ClockSync:
        try:
            src = ClockSource(self.clock_source)
        except ValueError:
            src = ClockSource.UNKNOWN
        return ClockSync(source=src, synchronized=self.clock_synchronized, offset_ms=0.0)


def deterministic_event_id(captured_at: datetime, *parts: object) -> str:
    """UUIDv7 whose time is the capture time and whose random bits come from a hash of
    (source, camera, track, violation): replaying the same file twice yields the same ids,
    so the collector's upsert on event_id makes a re-replay harmless."""
    h = int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:10], "big")
    return uuid7_at(captured_at, ((h >> 68) << 62) | (h & ((1 << 62) - 1)))


def _clip(b: np.ndarray, w: int, h: int) -> np.ndarray:
    return np.array([max(0.0, float(b[0])), max(0.0, float(b[1])),
                     min(float(w), float(b[2])), min(float(h), float(b[3]))], np.float32)


def build_message(
    hist: TrackHistory,
    decision: Decision,
    cand: EvidenceCandidate,
    plate: VotedPlate | None,
    plate_cand: EvidenceCandidate | None,
    device: DeviceIdentity,
    models: list[ModelRef],
    config_hash: str,
    event_id_seed: str | None = None,
) -> EventMessage:
    frame, obs = cand.frame, cand.obs
    assert frame.image is not None
    h, w = frame.image.shape[:2]
    occ = obs.occupants
    vbox = _clip(obs.vehicle_box, w, h)
    boxes: list[tuple[str, np.ndarray | None, float]] = [("vehicle", vbox, obs.vehicle_conf)]
    if occ is not None:
        boxes.append(("driver", occ.driver_box, occ.driver_conf))
        if occ.seatbelt_box is not None:
            boxes.append(("seatbelt", occ.seatbelt_box, occ.seatbelt_conf))
        if occ.phone_box is not None:
            boxes.append(("phone", occ.phone_box, occ.phone_conf))
    if obs.plate is not None:
        boxes.append(("plate", obs.plate.box, obs.plate.confidence))

    plate_img: np.ndarray | None = None
    plate_priv: tuple[np.ndarray, ...] = ()
    plate_box: np.ndarray | None = None
    if plate_cand is not None and plate_cand.obs.plate is not None:
        plate_box = plate_cand.obs.plate.box
        if plate_cand.frame.seq != frame.seq:
            plate_img, plate_priv = plate_cand.frame.image, plate_cand.privacy
    elif obs.plate is not None:
        plate_box = obs.plate.box
    # the message (base64 evidence) must fit the collector's limit: lower the overview's
    # JPEG quality step by step for very detailed (noisy, night, rain) 9 MP frames
    for quality in (85, 75, 65, 50, 35):
        blobs = build_evidence(
            frame.image, cand.privacy, boxes, occ.driver_box if occ is not None else None,
            plate_image=plate_img, plate_privacy=plate_priv, plate_box=plate_box,
            plate_label=("plate", plate.confidence if plate else 1.0), overview_quality=quality,
        )
        if sum(len(b.data) for b in blobs) * 4 // 3 + 64_000 <= MAX_MESSAGE_BYTES:
            break

    plate_read = None
    if plate is not None and plate_box is not None:
        pb = obs.plate.box if obs.plate is not None else plate_box
        plate_read = PlateRead(text=plate.text, char_confidences=plate.char_confidences,
                               box=Box.from_xyxy(_clip(pb, w, h)), confidence=plate.confidence,
                               frames=plate.frames)
    event_id = (deterministic_event_id(frame.captured_at, event_id_seed, hist.camera_id, hist.track_id,
                                       decision.violation.value)
                if event_id_seed is not None else new_event_id(frame.captured_at))
    event = ViolationEvent(
        schema_version=1,
        event_id=event_id,
        violation=decision.violation,
        site_id=device.site_id,
        camera_id=hist.camera_id,
        device_id=device.device_id,
        captured_at=frame.captured_at,
        clock=device.clock(),
        frame_seq=frame.seq,
        track_id=hist.track_id,
        vehicle=Vehicle(box=Box.from_xyxy(vbox), cls=obs.vehicle_class, confidence=round(obs.vehicle_conf, 4)),
        plate=plate_read,
        confidence=decision.confidence,
        frames_agreed=decision.frames_agreed,
        frames_observed=decision.frames_observed,
        evidence=[b.item for b in blobs],
        models=models,
        config_hash=config_hash,
    )
    if device.key is not None:
        event = event.signed(device.key, device.device_id)
    return EventMessage.build(event, {b.item.sha256: b.data for b in blobs})
