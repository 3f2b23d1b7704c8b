"""Deprecated: the hooks for a host's own migrations moved to
:mod:`flask_retention.catalogue.migrations`."""

from __future__ import annotations

import warnings

from flask_retention.catalogue.migrations import (
    exclude_retention_tables,
    include_retention_tables,
    is_retention_object,
)

__all__ = ["exclude_retention_tables", "include_retention_tables", "is_retention_object"]

warnings.warn(
    "flask_retention.migrations is deprecated: import exclude_retention_tables and "
    "include_retention_tables from flask_retention.catalogue.migrations.",
    DeprecationWarning,
    stacklevel=2,
)
