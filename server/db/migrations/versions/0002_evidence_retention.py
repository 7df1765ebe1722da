"""evidence retention: events.evidence_purged_at

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 09:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # when the evidence images of a reviewed event were deleted under the retention policy;
    # the signed event JSON, the evidence rows (hashes, boxes) and the reviews stay
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("evidence_purged_at", sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_events_evidence_purged_at"), ["evidence_purged_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_evidence_purged_at"))
        batch_op.drop_column("evidence_purged_at")
