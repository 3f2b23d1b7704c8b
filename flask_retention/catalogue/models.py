"""The database tables of flask-retention.

They live on a :class:`~sqlalchemy.MetaData` of our own (never the host's
``db.Model``), with a naming convention and the ``retention_`` prefix, so that
they sit beside the host's tables without colliding. The package's Alembic
migrations create them; nothing here creates a table.

Catalogue contents (images, messages, defaults) are shared by every
environment; what Apple knows of them is kept per environment in
:class:`AppleState`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION: Final = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: The table Alembic records our migration revision in (never the host's ``alembic_version``).
VERSION_TABLE: Final = "retention_alembic_version"

#: Kinds of catalogue object Apple reviews.
KINDS: Final = ("image", "message")

#: Apple's review states; ``None`` in the database means "not uploaded".
APPLE_STATES: Final = ("PENDING", "APPROVED", "REJECTED")


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware ``DateTime`` that reads back aware UTC values on every database.

    SQLite keeps no time zone, so values are stored in UTC and tagged UTC on
    the way out; naive values are refused rather than guessed.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: 64-bit identifiers, except on SQLite where only ``INTEGER PRIMARY KEY`` auto-increments.
BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base of our tables, on our own ``MetaData``."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), uuid.UUID: sa.Uuid()}


#: Every table of flask-retention.
metadata: Final = Base.metadata


class Image(Base):
    """One version of a named PNG image; a changed image is a new row with a new UUID."""

    __tablename__ = "retention_images"
    __table_args__ = (
        sa.UniqueConstraint("name", "version"),
        sa.CheckConstraint("size IN ('FULL_SIZE', 'BULLET_POINT')", name="size"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    version: Mapped[int]
    uuid: Mapped[uuid.UUID] = mapped_column(unique=True)
    size: Mapped[str] = mapped_column(sa.String(16))
    data: Mapped[bytes] = mapped_column(sa.LargeBinary, deferred=True)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    width: Mapped[int]
    height: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]


class Message(Base):
    """One version of a named message; Apple's messages cannot be edited, so an edit is a new row.

    ``locale`` is ``''`` for the base text and an App Store locale short code
    for a translation: each (name, locale) is its own lineage of versions, one
    Apple message each. Images are referenced by row (one version), so a
    changed image makes a new message version too.
    """

    __tablename__ = "retention_messages"
    __table_args__ = (
        sa.UniqueConstraint("name", "locale", "version"),
        sa.CheckConstraint(
            "header_position IS NULL OR header_position IN ('ABOVE_BODY', 'ABOVE_IMAGE')",
            name="header_position",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    locale: Mapped[str] = mapped_column(sa.String(32), default="", server_default="")
    version: Mapped[int]
    uuid: Mapped[uuid.UUID] = mapped_column(unique=True)
    header: Mapped[str] = mapped_column(sa.String(200))
    body: Mapped[str] = mapped_column(sa.String(400))
    image_id: Mapped[int | None] = mapped_column(sa.ForeignKey("retention_images.id"))
    image_alt_text: Mapped[str | None] = mapped_column(sa.String(400))
    header_position: Mapped[str | None] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]

    image: Mapped[Image | None] = relationship(lazy="joined", innerjoin=False)
    bullet_points: Mapped[list[BulletPoint]] = relationship(
        order_by="BulletPoint.position",
        cascade="all, delete-orphan",
        lazy="selectin",
    )


class BulletPoint(Base):
    """A bullet point of one message version, in order."""

    __tablename__ = "retention_bullet_points"

    message_id: Mapped[int] = mapped_column(
        sa.ForeignKey("retention_messages.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(sa.String(200))
    image_id: Mapped[int] = mapped_column(sa.ForeignKey("retention_images.id"))
    alt_text: Mapped[str] = mapped_column(sa.String(400))

    image: Mapped[Image] = relationship(lazy="joined")


class Default(Base):
    """The local default message for a product and locale, by message name.

    It points to the name rather than a version: the request path serves the
    newest version approved in each environment, and sync binds Apple's
    default to a version's UUID (:class:`AppleDefault`) once it is approved.
    """

    __tablename__ = "retention_defaults"
    __table_args__ = (sa.UniqueConstraint("product_id", "locale"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[str] = mapped_column(sa.String(200))
    locale: Mapped[str] = mapped_column(sa.String(32))
    message_name: Mapped[str] = mapped_column(sa.String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class TranslationsDefault(Base):
    """A product's default for every translation a message has (and its base text's locale).

    Expanded when planning into one (product, locale) slot per translation; an
    exact :class:`Default` of the product wins over it for its locale.
    """

    __tablename__ = "retention_translation_defaults"

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[str] = mapped_column(sa.String(200), unique=True)
    message_name: Mapped[str] = mapped_column(sa.String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Languages(Base):
    """The catalogue's language settings: one row, absent until a file or call states them.

    ``base_locale`` is the base texts' locale, ``base_fallback`` whether the
    base text stands in for a language without a translation, ``chain`` the
    catalogue's entries of the fallback chain (locale -> stand-ins in order),
    over the shipped table.
    """

    __tablename__ = "retention_languages"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    base_locale: Mapped[str] = mapped_column(sa.String(32))
    base_fallback: Mapped[bool] = mapped_column(default=False)
    chain: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AppleDefault(Base):
    """The message UUID Apple holds as default for a product and locale in one environment."""

    __tablename__ = "retention_apple_defaults"
    __table_args__ = (sa.UniqueConstraint("product_id", "locale", "environment"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[str] = mapped_column(sa.String(200))
    locale: Mapped[str] = mapped_column(sa.String(32))
    environment: Mapped[str] = mapped_column(sa.String(16))
    message_uuid: Mapped[uuid.UUID]
    configured_at: Mapped[datetime] = mapped_column(default=utcnow)


class AppleState(Base):
    """Apple's view of one image or message version in one environment.

    ``state`` is ``None`` until it is uploaded, then Apple's review state.
    """

    __tablename__ = "retention_apple_state"
    __table_args__ = (
        sa.UniqueConstraint("kind", "uuid", "environment"),
        sa.CheckConstraint("kind IN ('image', 'message')", name="kind"),
        sa.CheckConstraint(
            "state IS NULL OR state IN ('PENDING', 'APPROVED', 'REJECTED')", name="state"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    uuid: Mapped[uuid.UUID]
    environment: Mapped[str] = mapped_column(sa.String(16))
    state: Mapped[str | None] = mapped_column(sa.String(16))
    uploaded_at: Mapped[datetime | None]
    last_seen_at: Mapped[datetime | None]


class RealtimeURL(Base):
    """The real-time URL configured at Apple, per environment."""

    __tablename__ = "retention_realtime_urls"

    environment: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    url: Mapped[str] = mapped_column(sa.String(256))
    configured_at: Mapped[datetime] = mapped_column(default=utcnow)


class PerformanceTest(Base):
    """A performance test started at Apple, with its configuration and results."""

    __tablename__ = "retention_performance_tests"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    environment: Mapped[str] = mapped_column(sa.String(16))
    original_transaction_id: Mapped[str | None] = mapped_column(sa.String(64))
    config: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(sa.String(16))
    results: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime | None]


class SyncLock(Base):
    """The lock that lets one sync at a time talk to Apple for an environment.

    A sync inserts its row, refreshes ``heartbeat_at`` after each step and
    deletes the row at the end; a row whose heartbeat is older than the
    stale-lock timeout belongs to a sync that died and is taken over.
    """

    __tablename__ = "retention_sync_locks"

    environment: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(200))
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)


class Decision(Base):
    """One real-time request and what was answered, and why.

    ``request_identifier`` is unique among verified requests (a replay that
    another process answered fails to insert); rejected requests keep it
    ``NULL`` and record the claimed value in ``claimed_request_identifier``.
    A verified request answered twice (by two processes or hosts) is kept the
    same way, with ``replay`` true. ``decision_uuid`` is the decision's own ID,
    given when it is recorded, so that a batch written again after a lost
    connection adds nothing (``NULL`` for rows written before it existed).
    ``answered_locale`` is the locale of the translation answered (the base
    text's locale for the base text) and ``locale_reason`` why the fallback
    chain picked it, or why none was (``NULL`` where no message was resolved).
    """

    __tablename__ = "retention_decisions"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    decision_uuid: Mapped[uuid.UUID | None] = mapped_column(index=True, unique=True)
    request_identifier: Mapped[uuid.UUID | None] = mapped_column(unique=True)
    claimed_request_identifier: Mapped[str | None] = mapped_column(sa.String(64))
    original_transaction_id: Mapped[str | None] = mapped_column(sa.String(64))
    product_id: Mapped[str | None] = mapped_column(sa.String(200))
    locale: Mapped[str | None] = mapped_column(sa.String(32))
    environment: Mapped[str | None] = mapped_column(sa.String(16))
    selector: Mapped[str | None] = mapped_column(sa.String(200))
    kind: Mapped[str | None] = mapped_column(sa.String(32))
    message_uuid: Mapped[uuid.UUID | None]
    fallback_reason: Mapped[str | None] = mapped_column(sa.String(64))
    answered_locale: Mapped[str | None] = mapped_column(sa.String(32))
    locale_reason: Mapped[str | None] = mapped_column(sa.String(64))
    status: Mapped[int]
    error: Mapped[str | None] = mapped_column(sa.String(64))
    latency_ms: Mapped[float | None] = mapped_column(sa.Float)
    experiment: Mapped[str | None] = mapped_column(sa.String(200))
    variant: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    replay: Mapped[bool] = mapped_column(default=False, server_default=sa.false())


class DroppedDecisions(Base):
    """Decisions the log could not keep: how many, why, and when the first was dropped.

    ``reason`` is ``queue_full`` (the oldest queued decisions, dropped while the
    database could not take them) or ``unstorable`` (a row the database refused
    on its own data). One row per burst, written by the process that dropped
    them with its next successful write; ``uuid`` makes that write idempotent.
    """

    __tablename__ = "retention_dropped_decisions"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(unique=True)
    reason: Mapped[str] = mapped_column(sa.String(32))
    count: Mapped[int]
    dropped_at: Mapped[datetime] = mapped_column(index=True)


class Notification(Base):
    """An App Store Server Notification (V2) that matters for retention outcomes.

    ``notification_uuid`` is unique, so a notification Apple delivers again is
    stored once. ``signed_date`` is when Apple signed it (the event's time for
    outcomes); ``offer_identifier``/``offer_type`` come from the renewal info,
    else the transaction.
    """

    __tablename__ = "retention_notifications"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    notification_uuid: Mapped[uuid.UUID] = mapped_column(unique=True)
    notification_type: Mapped[str] = mapped_column(sa.String(64))
    subtype: Mapped[str | None] = mapped_column(sa.String(64))
    original_transaction_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    product_id: Mapped[str | None] = mapped_column(sa.String(200))
    auto_renew_product_id: Mapped[str | None] = mapped_column(sa.String(200))
    offer_identifier: Mapped[str | None] = mapped_column(sa.String(200))
    offer_type: Mapped[int | None]
    environment: Mapped[str] = mapped_column(sa.String(16))
    signed_date: Mapped[datetime] = mapped_column(index=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class CatalogueVersion(Base):
    """A one-row counter bumped by every catalogue write: the snapshot's cheap change check."""

    __tablename__ = "retention_catalogue_version"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(sa.BigInteger, default=0)


#: The names of our tables, for migration filters.
TABLE_NAMES: Final = frozenset(metadata.tables) | {VERSION_TABLE}
