"""Alembic migrations of flask-retention's tables, shipped inside the package.

Run them with ``flask retention init-db`` or :func:`flask_retention.catalogue.schema.upgrade`.
They keep their revision in ``retention_alembic_version``, apart from the
host's ``alembic_version``. A host that autogenerates its own migrations
(Flask-Migrate, Alembic) passes :func:`exclude_retention_tables` as
``include_name`` in its ``env.py`` so that autogenerate never proposes to drop
our tables::

    from flask_retention.catalogue.migrations import exclude_retention_tables

    context.configure(..., include_name=exclude_retention_tables)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask_retention.catalogue.models import TABLE_NAMES


def _table_of(name: str | None, type_: str, parent_names: Mapping[str, Any]) -> str | None:
    if type_ == "table":
        return name
    table = parent_names.get("table_name")
    return table if isinstance(table, str) else None


def is_retention_object(name: str | None, type_: str, parent_names: Mapping[str, Any]) -> bool:
    """Whether an object Alembic names (table, column, index, constraint) is one of ours."""
    if type_ == "schema":
        return False
    return _table_of(name, type_, parent_names) in TABLE_NAMES


def exclude_retention_tables(name: str | None, type_: str, parent_names: Mapping[str, Any]) -> bool:
    """An Alembic ``include_name`` hook for a host: everything except our tables."""
    return type_ == "schema" or not is_retention_object(name, type_, parent_names)


def include_retention_tables(name: str | None, type_: str, parent_names: Mapping[str, Any]) -> bool:
    """An Alembic ``include_name`` hook that keeps only our tables (our own ``env.py``)."""
    return type_ == "schema" or is_retention_object(name, type_, parent_names)
