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
    written), ``written``, ``dropped`` and ``replays``. ``dropped`` is the sum of
    ``dropped_queue_full`` (the oldest, while the queue was full),
    ``dropped_unstorable`` (rows the database refused on their own data) and
    ``dropped_at_exit`` (still queued at exit, with the database unreachable)."""

    pending: int
    written: int
    dropped: int
    replays: int
    dropped_queue_full: int = 0
    dropped_unstorable: int = 0
    dropped_at_exit: int = 0


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
