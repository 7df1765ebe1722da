"""Device registry (Ed25519 public keys) and camera health from heartbeats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Depends, HTTPException, Request, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.api.deps import client_addr, db_session, require
from server.api.schemas import CameraHealthOut, DeviceHealthOut, DeviceIn, DeviceOut
from server.db.models import CameraHealthRow, Device, DeviceHealth, Role, User
from server.services import ServiceError, audit, device_summary, register_device

router = APIRouter(prefix="/api", tags=["devices"])

#: A device that has not sent a heartbeat for this long is shown as stale.
STALE_AFTER = timedelta(minutes=2)


@router.get("/devices", response_model=list[DeviceOut])
def devices(s: Session = Depends(db_session), _: User = Depends(require(Role.VIEWER))) -> list[DeviceOut]:
    return [DeviceOut.model_validate(d) for d in s.scalars(select(Device).order_by(Device.device_id))]


@router.post("/devices", response_model=DeviceOut, status_code=201)
def add_device(body: DeviceIn, request: Request, s: Session = Depends(db_session),
               user: User = Depends(require(Role.ADMIN))) -> DeviceOut:
    """Register a device, or rotate its key (re-activates it)."""
    try:
        dev = register_device(s, body.device_id, body.public_key_pem, body.site_id, user.username,
                              body.description, client_addr(request))
    except ServiceError as exc:
        raise HTTPException(422, str(exc)) from exc
    s.commit()
    return DeviceOut.model_validate(dev)


@router.post("/devices/{device_id}/deactivate", response_model=DeviceOut)
def deactivate(device_id: str, request: Request, s: Session = Depends(db_session),
               user: User = Depends(require(Role.ADMIN))) -> DeviceOut:
    """Refuse further events from a device (stolen box, compromised key)."""
    dev = s.get(Device, device_id)
    if dev is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no device {device_id!r}")
    before = device_summary(dev)
    dev.active = False
    audit(s, user.username, "device.deactivate", f"device:{device_id}", before, device_summary(dev),
          client_addr(request))
    s.commit()
    return DeviceOut.model_validate(dev)


def health_rows(s: Session) -> list[DeviceHealthOut]:
    registered = set(s.scalars(select(Device.device_id)))
    cams: dict[str, list[CameraHealthOut]] = {}
    for c in s.scalars(select(CameraHealthRow).order_by(CameraHealthRow.camera_id)):
        cams.setdefault(c.device_id, []).append(CameraHealthOut.model_validate(c))
    now = datetime.now(UTC)
    out = []
    for h in s.scalars(select(DeviceHealth).order_by(DeviceHealth.site_id, DeviceHealth.device_id)):
        d = DeviceHealthOut.model_validate(h)
        d.registered = h.device_id in registered
        d.stale = h.last_heartbeat_at is None or now - h.last_heartbeat_at > STALE_AFTER
        d.cameras = cams.get(h.device_id, [])
        out.append(d)
    return out


@router.get("/health/cameras", response_model=list[DeviceHealthOut])
def camera_health(s: Session = Depends(db_session),
                  _: User = Depends(require(Role.VIEWER))) -> list[DeviceHealthOut]:
    """Latest heartbeat per device with its cameras' stream health."""
    return health_rows(s)
