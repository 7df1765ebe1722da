"""ORM rows -> API schemas."""

from __future__ import annotations

import json

from server.api.schemas import EventDetail, EventSummary, EvidenceOut, ReviewOut
from server.db.models import EventRow


def evidence_url(sha256: str) -> str:
    return f"/api/evidence/{sha256}"


def event_detail(row: EventRow) -> EventDetail:
    base = EventSummary.model_validate(row).model_dump()
    return EventDetail(
        **base,
        track_id=row.track_id,
        frame_seq=row.frame_seq,
        evidence_purged_at=row.evidence_purged_at,
        evidence=[EvidenceOut.model_validate(e).model_copy(update={"url": evidence_url(e.sha256)})
                  for e in row.evidence],
        reviews=[ReviewOut(stage=r.stage, decision=r.decision, reason_code=r.reason_code,
                           plate_text=r.plate_text, note=r.note, reviewer=r.user.username,
                           created_at=r.created_at) for r in row.reviews],
        signed_event=json.loads(row.event_json),
    )
