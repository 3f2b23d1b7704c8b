"""Translations: a message's locale (``''``: the base text) versioned per (name, locale),
the catalogue's language settings, defaults for every translation, and the locale
each decision answered in.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-12 12:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("retention_messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("locale", sa.String(length=32), server_default="", nullable=False)
        )
        batch_op.drop_constraint("uq_retention_messages_name_version", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_retention_messages_name_locale_version"),
            ["name", "locale", "version"],
        )

    op.create_table(
        "retention_translation_defaults",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.String(length=200), nullable=False),
        sa.Column("message_name", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_translation_defaults")),
        sa.UniqueConstraint(
            "product_id", name=op.f("uq_retention_translation_defaults_product_id")
        ),
    )
    op.create_table(
        "retention_languages",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("base_locale", sa.String(length=32), nullable=False),
        sa.Column("base_fallback", sa.Boolean(), nullable=False),
        sa.Column("chain", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_languages")),
    )

    with op.batch_alter_table("retention_decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("answered_locale", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("locale_reason", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("retention_decisions", schema=None) as batch_op:
        batch_op.drop_column("locale_reason")
        batch_op.drop_column("answered_locale")

    op.drop_table("retention_languages")
    op.drop_table("retention_translation_defaults")

    op.execute(
        sa.text(
            "DELETE FROM retention_bullet_points WHERE message_id IN "
            "(SELECT id FROM retention_messages WHERE locale <> '')"
        )
    )
    op.execute(sa.text("DELETE FROM retention_messages WHERE locale <> ''"))
    with op.batch_alter_table("retention_messages", schema=None) as batch_op:
        batch_op.drop_constraint("uq_retention_messages_name_locale_version", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_retention_messages_name_version"), ["name", "version"]
        )
        batch_op.drop_column("locale")
