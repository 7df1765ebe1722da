"""Signed sample events for tests, benchmarks and demos (a stand-in edge box).

Builds real `edge.event` messages: JPEG evidence images with boxes, signed with an
Ed25519 device key, exactly what an edge box publishes. Never used on real data paths.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.event import (
    Box,
    ClockSource,
    ClockSync,
    EventMessage,
    EvidenceItem,
    EvidenceKind,
    LabelledBox,
    ModelRef,
    PlateRead,
    Vehicle,
    ViolationEvent,
    ViolationType,
    new_event_id,
)

_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


@dataclass
class SampleDevice:
    device_id: str = "edge-01"
    site_id: str = "site-a"
    camera_id: str = "cam-1"
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def public_pem(self) -> str:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


def _jpeg(width: int, height: int, rng: np.random.Generator, noise: float, label: str,
          boxes: list[tuple[str, tuple[float, float, float, float]]]) -> bytes:
    """A plausible-looking picture: gradient 'road', boxes drawn, optional sensor noise."""
    y = np.linspace(60, 150, height, dtype=np.float32)[:, None]
    img = np.repeat(np.repeat(y, width, axis=1)[:, :, None], 3, axis=2)
    if noise:
        img = img + rng.normal(0, noise, img.shape).astype(np.float32)
    img8 = np.clip(img, 0, 255).astype(np.uint8)
    for name, (x1, y1, x2, y2) in boxes:
        cv2.rectangle(img8, (int(x1), int(y1)), (int(x2), int(y2)), (40, 200, 240), 2)
        cv2.putText(img8, name, (int(x1), max(12, int(y1) - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (255, 255, 255), 1)
    cv2.putText(img8, label, (8, height - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    ok, buf = cv2.imencode(".jpg", img8, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return bytes(buf)


def random_plate(rng: random.Random) -> str:
    return rng.choice(_PROVINCES) + rng.choice(_LETTERS) + "".join(
        rng.choice("0123456789" + _LETTERS) for _ in range(5))


def make_message(
    device: SampleDevice,
    *,
    seed: int = 0,
    violation: ViolationType = ViolationType.NO_SEATBELT,
    captured_at: datetime | None = None,
    evidence_bytes: int = 0,
    plate: str | None = "auto",
    confidence: float | None = None,
    sign: bool = True,
) -> tuple[EventMessage, dict[str, bytes]]:
    """One signed event with overview, driver and plate crops.

    `evidence_bytes` > 0 adds noise to the overview until the total evidence is roughly that
    size (e.g. 250_000 for benchmark payloads); 0 keeps images small and fast to make.
    """
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    at = captured_at or datetime.now(UTC) - timedelta(seconds=rng.randint(0, 3600))
    plate_text = random_plate(rng) if plate == "auto" else plate
    ow, oh = (1024, 576) if evidence_bytes else (480, 270)
    s = ow / 480
    veh = (120 * s, 60 * s, 360 * s, 250 * s)
    ws = (160 * s, 80 * s, 320 * s, 140 * s)
    pl = (210 * s, 210 * s, 270 * s, 228 * s)
    noise = 0.0
    if evidence_bytes:
        # measured: gaussian sigma 12 on a 1024x576 JPEG q92 gives ~240 kB (+~11 kB of crops)
        noise = max(1.0, min(60.0, 12.0 * evidence_bytes / 250_000))
    overview = _jpeg(ow, oh, nrng, noise, f"overview {seed}",
                     [("car", veh), ("windshield", ws), ("plate", pl)])
    dw, dh = 200, 160
    driver_boxes = [("driver", (100.0, 20.0, 190.0, 150.0)), ("face", (120.0, 25.0, 165.0, 75.0))]
    if violation == ViolationType.PHONE_USE:
        driver_boxes.append(("phone", (150.0, 40.0, 175.0, 80.0)))
    driver = _jpeg(dw, dh, nrng, 4.0, "driver", driver_boxes)
    plate_img = _jpeg(160, 48, nrng, 2.0, plate_text or "?", [])
    items = [
        (EvidenceKind.OVERVIEW, overview, ow, oh, [("car", veh), ("windshield", ws), ("plate", pl)]),
        (EvidenceKind.DRIVER_CROP, driver, dw, dh, driver_boxes),
        (EvidenceKind.PLATE_CROP, plate_img, 160, 48, [("plate", (2.0, 2.0, 158.0, 46.0))]),
    ]
    return assemble(device, items, plate_text=plate_text, plate_box=pl, vehicle_box=veh, violation=violation,
                    captured_at=at, confidence=confidence, seed=seed, sign=sign)


Boxes = list[tuple[str, tuple[float, float, float, float]]]


def assemble(
    device: SampleDevice,
    items: list[tuple[EvidenceKind, bytes, int, int, Boxes]],
    *,
    plate_text: str | None,
    plate_box: tuple[float, float, float, float],
    vehicle_box: tuple[float, float, float, float],
    violation: ViolationType,
    captured_at: datetime,
    confidence: float | None = None,
    seed: int = 0,
    sign: bool = True,
) -> tuple[EventMessage, dict[str, bytes]]:
    """Build (and sign) an event around given evidence images and their boxes."""
    rng = random.Random(seed)
    at, pl, veh = captured_at, plate_box, vehicle_box
    evidence, blobs = [], {}
    for kind, data, w, h, boxes in items:
        sha = hashlib.sha256(data).hexdigest()
        blobs[sha] = data
        evidence.append(EvidenceItem(
            kind=kind, content_type="image/jpeg", size=len(data), sha256=sha, width=w, height=h,
            boxes=[LabelledBox(label=n, box=Box.from_xyxy(b), confidence=round(0.7 + 0.29 * rng.random(), 3))
                   for n, b in boxes],
        ))
    plate_read = None
    if plate_text:
        plate_read = PlateRead(text=plate_text, char_confidences=[round(0.8 + 0.19 * rng.random(), 3)
                                                                   for _ in plate_text],
                               box=Box.from_xyxy(pl), confidence=round(0.75 + 0.24 * rng.random(), 3),
                               frames=rng.randint(1, 8))
    ev = ViolationEvent(
        schema_version=1,
        event_id=new_event_id(at),
        violation=violation,
        site_id=device.site_id,
        camera_id=device.camera_id,
        device_id=device.device_id,
        captured_at=at,
        clock=ClockSync(source=ClockSource.NTP, synchronized=True, offset_ms=1.5),
        frame_seq=seed,
        track_id=seed % 1000,
        vehicle=Vehicle(box=Box.from_xyxy(veh), cls="car", confidence=0.93),
        plate=plate_read,
        confidence=confidence if confidence is not None else round(0.55 + 0.44 * rng.random(), 3),
        frames_agreed=5,
        frames_observed=7,
        evidence=evidence,
        models=[ModelRef(name="occupants", version="0.1.0", sha256="0" * 64)],
        config_hash="1" * 64,
    )
    if sign:
        ev = ev.signed(device.key, device.device_id)
    return EventMessage.build(ev, blobs), blobs
