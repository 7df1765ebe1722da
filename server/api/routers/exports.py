"""CSV / JSON exports of events, the review export (CONTRACTS) and the YOLO training set."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session

from server.api.deps import AppServices, client_addr, db_session, require, services
from server.api.routers.events import event_filter
from server.db.models import Role, User
from server.queries import EventFilter, list_events
from server.services import audit, event_public_dict, reviews_csv
from server.yolo_export import write_yolo_zip

router = APIRouter(prefix="/api/export", tags=["export"])

EXPORT_LIMIT = 100_000


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _rows(s: Session, f: EventFilter, limit: int) -> list[dict]:  # type: ignore[type-arg]
    rows, _ = list_events(s, f, 1, limit, newest_first=False)
    return [event_public_dict(r) for r in rows]


def _log(s: Session, user: User, what: str, f: EventFilter | None, n: int, request: Request) -> None:
    filters = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in vars(f).items() if v is not None} \
        if f else None
    audit(s, user.username, f"export.{what}", None, None, {"rows": n, "filters": filters}, client_addr(request))
    s.commit()


@router.get("/events.csv", response_class=Response)
def events_csv(request: Request, f: EventFilter = Depends(event_filter),
               limit: int = Query(EXPORT_LIMIT, ge=1, le=EXPORT_LIMIT), s: Session = Depends(db_session),
               user: User = Depends(require(Role.VIEWER))) -> Response:
    rows = _rows(s, f, limit)
    buf = io.StringIO()
    cols = ["event_id", "violation", "site_id", "camera_id", "device_id", "captured_at", "received_at",
            "plate_text", "plate_corrected", "plate_confidence", "confidence", "vehicle_class", "status",
            "clock_synchronized"]
    w = csv.DictWriter(buf, cols, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    _log(s, user, "events_csv", f, len(rows), request)
    return Response("\ufeff" + buf.getvalue(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="roadeye-events-{_stamp()}.csv"'})


@router.get("/events.json")
def events_json(request: Request, f: EventFilter = Depends(event_filter),
                limit: int = Query(EXPORT_LIMIT, ge=1, le=EXPORT_LIMIT), s: Session = Depends(db_session),
                user: User = Depends(require(Role.VIEWER))) -> Response:
    rows = _rows(s, f, limit)
    _log(s, user, "events_json", f, len(rows), request)
    return Response(json.dumps({"events": rows}, ensure_ascii=False), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="roadeye-events-{_stamp()}.json"'})


@router.get("/reviews.csv", response_class=Response)
def export_reviews(request: Request, s: Session = Depends(db_session),
                   user: User = Depends(require(Role.VIEWER))) -> Response:
    """event_id,camera_id,site_id,violation,confidence,decision,reviewed_at (final decisions)."""
    text = reviews_csv(s)
    _log(s, user, "reviews_csv", None, text.count("\n") - 1, request)
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="reviews.csv"'})


@router.get("/yolo.zip", response_class=StreamingResponse)
def export_yolo(request: Request, s: Session = Depends(db_session), svc: AppServices = Depends(services),
                user: User = Depends(require(Role.REVIEWER))) -> StreamingResponse:
    """Reviewed events as a YOLO dataset (images/, labels/, data.yaml, manifest.csv)."""
    tmp = tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024)  # noqa: SIM115 (closed by the stream)
    counts = write_yolo_zip(s, svc.store, tmp)
    _log(s, user, "yolo", None, counts["images"], request)
    tmp.seek(0)

    def chunks() -> Iterator[bytes]:
        try:
            while block := tmp.read(1 << 20):
                yield block
        finally:
            tmp.close()

    return StreamingResponse(chunks(), media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="roadeye-yolo-{_stamp()}.zip"',
        "X-Roadeye-Counts": json.dumps(counts)})
