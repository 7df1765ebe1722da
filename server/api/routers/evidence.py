"""Evidence images, by SHA-256 only (validated: no path can be smuggled through the id)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Path, status
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.api.deps import AppServices, db_session, require, services
from server.db.models import EvidenceRow, Role, User

router = APIRouter(prefix="/api/evidence", tags=["evidence"])


@router.get("/{sha256}", responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}})
def evidence(sha256: str = Path(pattern=r"^[0-9a-f]{64}$", description="lower-case hex SHA-256"),
             s: Session = Depends(db_session), svc: AppServices = Depends(services),
             _: User = Depends(require(Role.VIEWER))) -> Response:
    row = s.scalars(select(EvidenceRow).where(EvidenceRow.sha256 == sha256).limit(1)).first()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such evidence")
    try:
        data = svc.store.get(sha256)
    except KeyError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "evidence is registered but missing from the store") from exc
    # content-addressed: immutable, but private (personal data) and never stored by shared caches
    return Response(data, media_type=row.content_type, headers={
        "Cache-Control": "private, max-age=86400, immutable", "ETag": f'"{sha256}"',
        "Content-Disposition": f'inline; filename="{sha256[:16]}.{row.content_type.split("/")[1]}"'})
