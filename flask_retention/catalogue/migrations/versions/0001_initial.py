"""Catalogue, Apple state per environment, real-time URLs, performance tests, decision log.

Revision ID: 0001
Revises:
Create Date: 2026-11-22 19:38:07.876428
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "retention_apple_defaults",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.String(length=200), nullable=False),
        sa.Column("locale", sa.String(length=32), nullable=False),
        sa.Column("environment", sa.String(length=16), nullable=False),
        sa.Column("message_uuid", sa.Uuid(), nullable=False),
        sa.Column("configured_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_apple_defaults")),
        sa.UniqueConstraint(
            "product_id",
            "locale",
            "environment",
            name=op.f("uq_retention_apple_defaults_product_id_locale_environment"),
        ),
    )
    op.create_table(
        "retention_apple_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("uuid", sa.Uuid(), nullable=False),
        sa.Column("environment", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=True),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('image', 'message')", name=op.f("ck_retention_apple_state_kind")
        ),
        sa.CheckConstraint(
            "state IS NULL OR state IN ('PENDING', 'APPROVED', 'REJECTED')",
            name=op.f("ck_retention_apple_state_state"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_apple_state")),
        sa.UniqueConstraint(
            "kind",
            "uuid",
            "environment",
            name=op.f("uq_retention_apple_state_kind_uuid_environment"),
        ),
    )
    version = op.create_table(
        "retention_catalogue_version",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_catalogue_version")),
    )
    op.bulk_insert(version, [{"id": 1, "version": 0}])
    op.create_table(
        "retention_decisions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("request_identifier", sa.Uuid(), nullable=True),
        sa.Column("claimed_request_identifier", sa.String(length=64), nullable=True),
        sa.Column("original_transaction_id", sa.String(length=64), nullable=True),
        sa.Column("product_id", sa.String(length=200), nullable=True),
        sa.Column("locale", sa.String(length=32), nullable=True),
        sa.Column("environment", sa.String(length=16), nullable=True),
        sa.Column("selector", sa.String(length=200), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=True),
        sa.Column("message_uuid", sa.Uuid(), nullable=True),
        sa.Column("fallback_reason", sa.String(length=64), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=64), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("experiment", sa.String(length=200), nullable=True),
        sa.Column("variant", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_decisions")),
        sa.UniqueConstraint(
            "request_identifier", name=op.f("uq_retention_decisions_request_identifier")
        ),
    )
    with op.batch_alter_table("retention_decisions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_retention_decisions_created_at"), ["created_at"], unique=False
        )

    op.create_table(
        "retention_defaults",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.String(length=200), nullable=False),
        sa.Column("locale", sa.String(length=32), nullable=False),
        sa.Column("message_name", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_defaults")),
        sa.UniqueConstraint(
            "product_id", "locale", name=op.f("uq_retention_defaults_product_id_locale")
        ),
    )
    op.create_table(
        "retention_images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.Uuid(), nullable=False),
        sa.Column("size", sa.String(length=16), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "size IN ('FULL_SIZE', 'BULLET_POINT')", name=op.f("ck_retention_images_size")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_images")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_retention_images_name_version")),
        sa.UniqueConstraint("uuid", name=op.f("uq_retention_images_uuid")),
    )
    op.create_table(
        "retention_performance_tests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("environment", sa.String(length=16), nullable=False),
        sa.Column("original_transaction_id", sa.String(length=64), nullable=True),
        sa.Column("config", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("results", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_performance_tests")),
        sa.UniqueConstraint("request_id", name=op.f("uq_retention_performance_tests_request_id")),
    )
    op.create_table(
        "retention_realtime_urls",
        sa.Column("environment", sa.String(length=16), nullable=False),
        sa.Column("url", sa.String(length=256), nullable=False),
        sa.Column("configured_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("environment", name=op.f("pk_retention_realtime_urls")),
    )
    op.create_table(
        "retention_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.Uuid(), nullable=False),
        sa.Column("header", sa.String(length=200), nullable=False),
        sa.Column("body", sa.String(length=400), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=True),
        sa.Column("image_alt_text", sa.String(length=400), nullable=True),
        sa.Column("header_position", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "header_position IS NULL OR header_position IN ('ABOVE_BODY', 'ABOVE_IMAGE')",
            name=op.f("ck_retention_messages_header_position"),
        ),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["retention_images.id"],
            name=op.f("fk_retention_messages_image_id_retention_images"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_messages")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_retention_messages_name_version")),
        sa.UniqueConstraint("uuid", name=op.f("uq_retention_messages_uuid")),
    )
    op.create_table(
        "retention_bullet_points",
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.String(length=200), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("alt_text", sa.String(length=400), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["retention_images.id"],
            name=op.f("fk_retention_bullet_points_image_id_retention_images"),
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["retention_messages.id"],
            name=op.f("fk_retention_bullet_points_message_id_retention_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_id", "position", name=op.f("pk_retention_bullet_points")),
    )


def downgrade() -> None:
    op.drop_table("retention_bullet_points")
    op.drop_table("retention_messages")
    op.drop_table("retention_realtime_urls")
    op.drop_table("retention_performance_tests")
    op.drop_table("retention_images")
    op.drop_table("retention_defaults")
    with op.batch_alter_table("retention_decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_retention_decisions_created_at"))

    op.drop_table("retention_decisions")
    op.drop_table("retention_catalogue_version")
    op.drop_table("retention_apple_state")
    op.drop_table("retention_apple_defaults")
