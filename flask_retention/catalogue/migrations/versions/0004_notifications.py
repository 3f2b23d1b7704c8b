"""App Store Server Notifications kept for retention outcomes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 20:14:34.708214
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "retention_notifications",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("notification_uuid", sa.Uuid(), nullable=False),
        sa.Column("notification_type", sa.String(length=64), nullable=False),
        sa.Column("subtype", sa.String(length=64), nullable=True),
        sa.Column("original_transaction_id", sa.String(length=64), nullable=True),
        sa.Column("product_id", sa.String(length=200), nullable=True),
        sa.Column("auto_renew_product_id", sa.String(length=200), nullable=True),
        sa.Column("offer_identifier", sa.String(length=200), nullable=True),
        sa.Column("offer_type", sa.Integer(), nullable=True),
        sa.Column("environment", sa.String(length=16), nullable=False),
        sa.Column("signed_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_notifications")),
        sa.UniqueConstraint(
            "notification_uuid", name=op.f("uq_retention_notifications_notification_uuid")
        ),
    )
    with op.batch_alter_table("retention_notifications", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_retention_notifications_original_transaction_id"),
            ["original_transaction_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_retention_notifications_signed_date"), ["signed_date"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("retention_notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_retention_notifications_signed_date"))
        batch_op.drop_index(batch_op.f("ix_retention_notifications_original_transaction_id"))

    op.drop_table("retention_notifications")
