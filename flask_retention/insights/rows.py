"""Rows the insights layer stores: text every database takes, and inserts safe to repeat.

Apple's signed values are checked for type, not for content: a verified
``originalTransactionId`` may hold a NUL character (PostgreSQL refuses it in
any text column) or a lone surrogate (no driver can encode it). The decision
log and the notifications endpoint clean their rows with :func:`clean_text`
before storing them, so that one odd value never costs a row.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

#: What replaces a lone surrogate: U+FFFD, the Unicode replacement character.
REPLACEMENT: Final = "\ufffd"

_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """``value`` without NUL characters, each lone surrogate replaced by U+FFFD.

    Python keeps a surrogate pair decoded from JSON as one character, so any
    surrogate left in a string is alone, and cannot be encoded as UTF-8.
    """
    if "\x00" in value:
        value = value.replace("\x00", "")
    if value.isascii():
        return value
    return _SURROGATE.sub(REPLACEMENT, value)


def text_lengths(table: sa.Table) -> dict[str, int | None]:
    """The text columns of ``table`` and their lengths (``None``: unbounded), for
    :func:`clean_row`."""
    return {c.name: c.type.length for c in table.c if isinstance(c.type, sa.String)}


def clean_row(row: Mapping[str, Any], lengths: Mapping[str, int | None]) -> dict[str, Any]:
    """``row`` with the string in each text column of ``lengths`` (:func:`text_lengths`)
    cleaned (:func:`clean_text`) and cut to the column's length."""
    cleaned = dict(row)
    for name, length in lengths.items():
        value = cleaned.get(name)
        if isinstance(value, str):
            value = clean_text(value)
            cleaned[name] = value if length is None else value[:length]
    return cleaned


def insert_new(table: sa.Table, dialect: sa.Dialect, key: str) -> sa.Insert:
    """An ``INSERT`` into ``table`` that skips rows whose ``key`` is already stored.

    ``ON CONFLICT (key) DO NOTHING`` on PostgreSQL and SQLite (a row that also
    breaks another unique key is skipped too; a new row that breaks one still
    fails); a plain insert on other databases.
    """
    if dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=[key])
    if dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=[key])
    return sa.insert(table)


def is_data_error(error: BaseException) -> bool:
    """Whether ``error`` is about the rows written (their values, a unique key), not about
    the connection, the schema or the server: writing other rows would succeed.

    PostgreSQL's SQLSTATE classes 22 (data exception) and 23 (integrity
    constraint violation), and a value the driver or a column type could not
    convert (``ValueError``, ``TypeError``, ``OverflowError``, ``UnicodeEncodeError``).
    """
    if isinstance(error, sa.exc.DataError | sa.exc.IntegrityError):
        return True
    if isinstance(error, sa.exc.DBAPIError):
        return False
    if isinstance(error, sa.exc.StatementError):
        error = error.orig if error.orig is not None else error
        if isinstance(error, sa.exc.DBAPIError):
            return False
    return isinstance(error, ValueError | TypeError | OverflowError)
