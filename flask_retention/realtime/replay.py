"""Remember the request identifiers this process answered, for as long as they could replay.

A request is only accepted while its ``signedDate`` is within
``RETENTION_MAX_REQUEST_AGE`` of now, so its identifier needs remembering
only until ``signedDate + max_age``; after that a replay is refused as
stale anyway. Identifiers are forgotten in the order they arrived (nearly the
order they expire, since each is signed just before it is sent), which costs
an append instead of a heap's sifting; one that arrived out of order is only
forgotten a little later, and an expired entry never counts as seen. Memory
is bounded twice: entries expire, and past ``max_entries`` the oldest are
forgotten (logged once), which can only let a
replay through, never refuse a new request. Replays answered by another
process or host are caught afterwards by the decision log's unique key.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque

from flask_retention.core.per_process import process_lock

logger = logging.getLogger(__name__)

DEFAULT_MAX_ENTRIES = 100_000


class ReplayGuard:
    """A bounded, expiring, thread-safe set of request identifiers."""

    def __init__(self, max_age: float, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_age = max_age
        self.max_entries = max_entries
        self._lock = process_lock()
        self._expiry: dict[uuid.UUID, float] = {}
        self._order: deque[tuple[float, uuid.UUID]] = deque()
        self._warned = False

    def __len__(self) -> int:
        return len(self._expiry)

    def first_time(self, request_identifier: uuid.UUID, signed_at: float, now: float) -> bool:
        """Record the identifier; ``False`` when it was already recorded and has not expired.

        ``signed_at`` and ``now`` are POSIX timestamps (seconds).
        """
        expires = signed_at + self.max_age
        key = request_identifier
        with self._lock.get():
            order, expiry = self._order, self._expiry
            while order and order[0][0] <= now:
                _, old = order.popleft()
                if expiry.get(old, now + 1) <= now:
                    del expiry[old]
            if expiry.get(key, now) > now:
                return False
            if len(expiry) >= self.max_entries:
                self._forget_oldest()
            expiry[key] = expires
            order.append((expires, key))
            return True

    def _forget_oldest(self) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(
                "flask-retention: more than %d request identifiers within "
                "RETENTION_MAX_REQUEST_AGE; forgetting the oldest, so a replay of them is "
                "no longer refused by this process (the decision log still counts it).",
                self.max_entries,
            )
        while self._order:
            expires, old = self._order.popleft()
            if self._expiry.get(old) == expires:
                del self._expiry[old]
                return
