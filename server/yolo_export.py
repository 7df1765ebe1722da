"""Reviewed events as a YOLO training set: images/, labels/ (YOLO txt) and data.yaml.

Each evidence image of a finally reviewed event becomes one sample, labelled with the
boxes the edge drew on it (EvidenceItem.boxes). `manifest.csv` keeps the human decision
beside every image (confirmed / rejected, reason, corrected plate), so a training recipe
can use rejected events as hard negatives and corrected plates as plate-reader labels.
Train/val split is deterministic per event (hash of event_id), so all images of one
event land on the same side and the split is stable across exports.
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from typing import IO

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from server.db.models import EventRow, EventStatus
from server.evidence_store import EvidenceStore

#: CONTRACTS class names first (stable indices across exports); unseen labels are appended.
KNOWN_CLASSES = ["car", "bus", "truck", "van", "two_wheeler", "windshield", "plate",
                 "driver", "passenger", "seatbelt", "phone", "face"]
VAL_PERCENT = 10


def _split(event_id: str) -> str:
    return "val" if int(hashlib.sha256(event_id.encode()).hexdigest()[:8], 16) % 100 < VAL_PERCENT else "train"


def write_yolo_zip(s: Session, store: EvidenceStore, out: IO[bytes]) -> dict[str, int]:
    """Write the dataset zip to `out`; returns counts (events, images, boxes)."""
    classes = list(KNOWN_CLASSES)
    index = {c: i for i, c in enumerate(classes)}
    counts = {"events": 0, "images": 0, "boxes": 0}
    manifest = io.StringIO()
    mw = csv.writer(manifest, lineterminator="\n")
    mw.writerow(["image", "split", "event_id", "kind", "violation", "decision", "reason_code", "plate_text",
                 "camera_id", "site_id", "captured_at"])
    rows = s.scalars(
        select(EventRow).where(EventRow.status.in_([EventStatus.CONFIRMED.value, EventStatus.REJECTED.value]),
                               EventRow.evidence_purged_at.is_(None))  # no images left to train on
        .options(selectinload(EventRow.evidence), selectinload(EventRow.reviews))
        .order_by(EventRow.captured_at, EventRow.event_id))
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:
        for ev in rows:
            counts["events"] += 1
            split = _split(ev.event_id)
            final = max(ev.reviews, key=lambda r: r.stage) if ev.reviews else None
            for item in ev.evidence:
                try:
                    data = store.get(item.sha256)
                except KeyError:
                    continue
                ext = "png" if item.content_type == "image/png" else "jpg"
                stem = f"{ev.event_id}_{item.kind}"
                lines = []
                for b in item.boxes:
                    label = str(b.get("label"))
                    if label not in index:
                        index[label] = len(classes)
                        classes.append(label)
                    box = b["box"]
                    x1, y1 = max(0.0, box["x1"]), max(0.0, box["y1"])
                    x2, y2 = min(float(item.width), box["x2"]), min(float(item.height), box["y2"])
                    if x2 <= x1 or y2 <= y1:
                        continue
                    cx, cy = (x1 + x2) / 2 / item.width, (y1 + y2) / 2 / item.height
                    w, h = (x2 - x1) / item.width, (y2 - y1) / item.height
                    lines.append(f"{index[label]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
                z.writestr(f"images/{split}/{stem}.{ext}", data)
                z.writestr(f"labels/{split}/{stem}.txt", "\n".join(lines) + ("\n" if lines else ""))
                counts["images"] += 1
                counts["boxes"] += len(lines)
                mw.writerow([f"images/{split}/{stem}.{ext}", split, ev.event_id, item.kind, ev.violation,
                             ev.status, final.reason_code if final else "", ev.plate_display or "",
                             ev.camera_id, ev.site_id, ev.captured_at.isoformat()])
        names = "\n".join(f"  {i}: {n}" for i, n in enumerate(classes))
        z.writestr("data.yaml", "# roadeye reviewed-events export (YOLO format)\n"
                                "path: .\ntrain: images/train\nval: images/val\n"
                                f"nc: {len(classes)}\nnames:\n{names}\n")
        z.writestr("manifest.csv", manifest.getvalue())
    return counts
