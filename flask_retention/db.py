"""Deprecated: the catalogue database's helpers moved to :mod:`flask_retention.catalogue.schema`
(migrations) and :mod:`flask_retention.core.database` (engines)."""

from __future__ import annotations

import warnings

from flask_retention.catalogue.schema import current_revision, head_revision, upgrade
from flask_retention.core.database import Database, create_engine

__all__ = ["Database", "create_engine", "current_revision", "head_revision", "upgrade"]

warnings.warn(
    "flask_retention.db is deprecated: import upgrade, current_revision and head_revision "
    "from flask_retention.catalogue.schema, create_engine from flask_retention.core.database.",
    DeprecationWarning,
    stacklevel=2,
)
