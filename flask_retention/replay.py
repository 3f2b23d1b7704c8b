"""Remember the request identifiers this process answered, for as long as they could replay.

A request is only accepted while its ``signedDate`` is within
``RETENTION_MAX_REQUEST_AGE`` of now, so its identifier needs remembering
only until ``signedDate + max_age``; after that a replay is refused as
stale anyway. Memory is bounded twice: entries expire, and past
``max_entries`` the oldest are forgotten (logged once), which can only let a
replay through, never refuse a new request. Replays answered by another
process or host are caught afterwards by the decision log's unique key.
"""

from __future__ import annotations

import heapq
import logging
import threading
import uuid

logger = logging.getLogger("flask_retention")

DEFAULT_MAX_ENTRIES = 100_000


class ReplayGuard:
    """A bounded, expiring, thread-safe set of request identifiers."""

    def __init__(self, max_age: float, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_age = max_age
        self.max_entries = max_entries
        self._lock = threading.Lock()
        # Keyed by the UUIDs' integers: uuid.UUID hashes in Python, an int in C.
        self._expiry: dict[int, float] = {}
        self._heap: list[tuple[float, int]] = []
        self._warned = False

    def __len__(self) -> int:
        return len(self._expiry)

    def first_time(self, request_identifier: uuid.UUID, signed_at: float, now: float) -> bool:
        """Record the identifier; ``False`` when it was already recorded and has not expired.

        ``signed_at`` and ``now`` are POSIX timestamps (seconds).
        """
        expires = signed_at + self.max_age
        key = request_identifier.int
        with self._lock:
            heap = self._heap
            while heap and heap[0][0] <= now:
                _, old = heapq.heappop(heap)
                if self._expiry.get(old, now + 1) <= now:
                    del self._expiry[old]
            if self._expiry.get(key, now) > now:
                return False
            if len(self._expiry) >= self.max_entries:
                self._forget_oldest()
            self._expiry[key] = expires
            heapq.heappush(heap, (expires, key))
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
        while self._heap:
            expires, old = heapq.heappop(self._heap)
            if self._expiry.get(old) == expires:
                del self._expiry[old]
                return
