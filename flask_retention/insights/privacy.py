"""Pseudonymised subscribers: what the insights tables store for an ``originalTransactionId``.

With ``RETENTION_SUBSCRIBER_KEY`` set, the decision log and the stored
notifications hold :func:`pseudonym` of each subscriber's original
transaction ID, ``HMAC-SHA256(key, id)`` as 64 lowercase hex characters, in
place of the ID; without it, the ID itself. Both tables use the same key, so
outcomes still join a decision to its notifications. The selector and
experiments still get the real ID: only what is stored changes.

Rows stored before the key was set (or under another key) stay as they were:
:func:`subscriber_kinds` counts each kind for the report, and
:func:`purge_subscriber` deletes one subscriber's rows in every form, for
erasure requests.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import sqlalchemy as sa

from flask_retention.catalogue.models import metadata
from flask_retention.insights.rows import clean_text

#: Characters of a pseudonym (HMAC-SHA256 in hex): the width of the ID columns. Apple's
#: original transaction IDs are numeric strings of about 16 digits, so a stored ID of this
#: length is a pseudonym.
PSEUDONYM_LENGTH: Final = 64

_DECISIONS: Final = metadata.tables["retention_decisions"]
_NOTIFICATIONS: Final = metadata.tables["retention_notifications"]


def pseudonym(key: bytes, original_transaction_id: str) -> str:
    """``HMAC-SHA256(key, original_transaction_id)`` as lowercase hex (64 characters).

    The ID is cleaned first (:func:`~flask_retention.insights.rows.clean_text`),
    as a stored plain ID is, so that any verified value has one pseudonym.
    """
    message = clean_text(original_transaction_id).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def stored_id(original_transaction_id: str | None, key: bytes | None) -> str | None:
    """What the insights tables store for ``original_transaction_id``: its :func:`pseudonym`
    under ``key``, or the ID itself without a key (``None`` stays ``None``)."""
    if original_transaction_id is None or key is None:
        return original_transaction_id
    return pseudonym(key, original_transaction_id)


def is_pseudonym(column: sa.ColumnElement[str | None]) -> sa.ColumnElement[bool]:
    """Whether a stored ID (``column``) is a pseudonym: :data:`PSEUDONYM_LENGTH` characters."""
    return sa.func.length(column) == PSEUDONYM_LENGTH


def subscriber_kinds(
    connection: sa.Connection,
    since: datetime,
    until: datetime,
    environment: str | None = None,
) -> dict[str, dict[str, int]]:
    """How many rows of the window store a pseudonym and how many a plain ID, per table:
    ``{"decisions": {"pseudonymised": n, "plain": n}, "notifications": {...}}``.

    Decisions count by ``created_at``, notifications by ``signed_date`` (as the
    report and outcomes do); rows without an ID (requests refused before
    verification) count in neither.
    """
    result: dict[str, dict[str, int]] = {}
    for name, table, at in (
        ("decisions", _DECISIONS, _DECISIONS.c.created_at),
        ("notifications", _NOTIFICATIONS, _NOTIFICATIONS.c.signed_date),
    ):
        column = table.c.original_transaction_id
        kind = is_pseudonym(column).label("pseudonymised")
        query = (
            sa.select(kind, sa.func.count().label("n"))
            .where(column.is_not(None), at >= since, at <= until)
            .group_by(kind)
        )
        if environment is not None:
            query = query.where(table.c.environment == environment)
        counts = {"pseudonymised": 0, "plain": 0}
        for row in connection.execute(query):
            counts["pseudonymised" if row.pseudonymised else "plain"] += int(row.n)
        result[name] = counts
    return result


@dataclass(frozen=True, slots=True)
class SubscriberRows:
    """One subscriber's rows: ``decisions`` in the decision log, ``notifications`` stored
    for outcomes."""

    decisions: int
    notifications: int

    @property
    def total(self) -> int:
        """Rows in both tables."""
        return self.decisions + self.notifications


def stored_forms(original_transaction_id: str, keys: Iterable[bytes]) -> list[str]:
    """Every form the ID may be stored in: plain (cleaned and cut to the column, as the
    tables store it) and its :func:`pseudonym` under each of ``keys``."""
    if not isinstance(original_transaction_id, str) or not original_transaction_id.strip():
        raise ValueError("original_transaction_id must be a non-empty string")
    plain = clean_text(original_transaction_id)[:PSEUDONYM_LENGTH]
    forms = [plain]
    for key in keys:
        hashed = pseudonym(key, original_transaction_id)
        if hashed not in forms:
            forms.append(hashed)
    return forms


def count_subscriber(
    engine: sa.Engine, original_transaction_id: str, keys: Iterable[bytes] = ()
) -> SubscriberRows:
    """How many rows :func:`purge_subscriber` would delete."""
    forms = stored_forms(original_transaction_id, keys)
    counts = []
    with engine.connect() as connection:
        for table in (_DECISIONS, _NOTIFICATIONS):
            query = (
                sa.select(sa.func.count())
                .select_from(table)
                .where(table.c.original_transaction_id.in_(forms))
            )
            counts.append(int(connection.execute(query).scalar_one()))
    return SubscriberRows(*counts)


def purge_subscriber(
    engine: sa.Engine, original_transaction_id: str, keys: Iterable[bytes] = ()
) -> SubscriberRows:
    """Delete one subscriber's decisions and stored notifications, for an erasure request.

    ``original_transaction_id`` is the real ID; rows storing it plain, or as
    its :func:`pseudonym` under any of ``keys`` (the current
    ``RETENTION_SUBSCRIBER_KEY`` and the previous ones), are deleted, in one
    transaction. Returns how many rows of each table were deleted.
    """
    forms = stored_forms(original_transaction_id, keys)
    deleted = []
    with engine.begin() as connection:
        for table in (_DECISIONS, _NOTIFICATIONS):
            result = connection.execute(
                sa.delete(table).where(table.c.original_transaction_id.in_(forms))
            )
            deleted.append(int(result.rowcount))
    return SubscriberRows(*deleted)
