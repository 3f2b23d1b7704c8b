"""What :meth:`Retention.stats` reports: counts of one process, for monitoring."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from flask_retention.realtime.runner import PoolStats


@dataclass(frozen=True, slots=True)
class CatalogueStats:
    """The request path's catalogue snapshot: ``loaded`` once read from the database,
    and the catalogue ``version`` it serves (``None`` before)."""

    loaded: bool
    version: int | None


@dataclass(frozen=True, slots=True)
class DecisionLogStats:
    """The decision log of this process: decisions ``pending`` (queued or being
    written), ``written``, ``dropped`` (queue full, or lost at exit) and ``replays``."""

    pending: int
    written: int
    dropped: int
    replays: int


@dataclass(frozen=True, slots=True)
class RetentionStats:
    """Counts of this process for one app; ``pool`` is ``None`` without an endpoint,
    ``decision_log`` when ``RETENTION_DECISION_LOG`` is off."""

    pool: PoolStats | None
    catalogue: CatalogueStats
    decision_log: DecisionLogStats | None

    def as_dict(self) -> dict[str, Any]:
        """The counts as plain, JSON-ready dictionaries."""
        return dataclasses.asdict(self)
