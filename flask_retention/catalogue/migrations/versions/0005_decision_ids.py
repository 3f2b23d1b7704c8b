"""Decision log: each decision's own ID (idempotent writes) and the counts of dropped ones.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 18:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("retention_decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("decision_uuid", sa.Uuid(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_retention_decisions_decision_uuid"), ["decision_uuid"], unique=True
        )

    op.create_table(
        "retention_dropped_decisions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("uuid", sa.Uuid(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("dropped_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_dropped_decisions")),
        sa.UniqueConstraint("uuid", name=op.f("uq_retention_dropped_decisions_uuid")),
    )
    with op.batch_alter_table("retention_dropped_decisions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_retention_dropped_decisions_dropped_at"), ["dropped_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("retention_dropped_decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_retention_dropped_decisions_dropped_at"))
    op.drop_table("retention_dropped_decisions")

    with op.batch_alter_table("retention_decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_retention_decisions_decision_uuid"))
        batch_op.drop_column("decision_uuid")
