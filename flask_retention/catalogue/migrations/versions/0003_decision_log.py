"""Decision log: mark replays (a verified request answered by two processes or hosts).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 20:15:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("retention_decisions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("replay", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("retention_decisions", schema=None) as batch_op:
        batch_op.drop_column("replay")
