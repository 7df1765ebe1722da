"""Evidence images, by SHA-256 only (validated: no path can be smuggled through the id)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Path, status
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.api.deps import AppServices, db_session, require, services
from server.db.models import EventRow, EvidenceRow, Role, User

router = APIRouter(prefix="/api/evidence", tags=["evidence"])


@router.get("/{sha256}", responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}})
def evidence(sha256: str = Path(pattern=r"^[0-9a-f]{64}$", description="lower-case hex SHA-256"),
             s: Session = Depends(db_session), svc: AppServices = Depends(services),
             _: User = Depends(require(Role.VIEWER))) -> Response:
    rows = s.execute(select(EvidenceRow.content_type, EventRow.evidence_purged_at)
                     .join(EventRow, EventRow.event_id == EvidenceRow.event_id)
                     .where(EvidenceRow.sha256 == sha256)).all()
    if not rows:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such evidence")
    live = [ct for ct, purged in rows if purged is None]
    if not live:
        when = max(purged for _, purged in rows if purged is not None)
        raise HTTPException(status.HTTP_410_GONE,
                            f"evidence purged under the retention policy on {when:%Y-%m-%d %H:%M} UTC")
    content_type = live[0]
    try:
        data = svc.store.get(sha256)
    except KeyError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "evidence is registered but missing from the store") from exc
    # content-addressed: immutable, but private (personal data) and never stored by shared caches
    return Response(data, media_type=content_type, headers={
        "Cache-Control": "private, max-age=86400, immutable", "ETag": f'"{sha256}"',
        "Content-Disposition": f'inline; filename="{sha256[:16]}.{content_type.split("/")[1]}"'})
