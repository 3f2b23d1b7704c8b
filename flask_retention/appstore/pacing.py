"""Client-side pacing and hourly budgets for Apple's management API.

Apple states a rate per endpoint (1 request/s; 10/s for Configure Default
Message), enforced over an hour, with the sandbox getting 10 % of it. Each
call first reserves a slot here: slots of one endpoint are at least
``interval`` apart, and at most ``budget`` slots fall in any ``window``
(an hour by default). The state lives in a registry shared by every client
and thread of the process, keyed by (API host, bundle ID, environment,
endpoint), so two clients of the same app never add up to more than
Apple allows.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

#: Apple's production rate of each endpoint, in requests per second (spec section 6).
PRODUCTION_RATES: Final[Mapping[str, float]] = {
    "upload_image": 1.0,
    "delete_image": 1.0,
    "get_image_list": 1.0,
    "upload_message": 1.0,
    "delete_message": 1.0,
    "get_message_list": 1.0,
    "configure_default_message": 10.0,
    "get_default_message": 1.0,
    "delete_default_message": 1.0,
    "configure_realtime_url": 1.0,
    "get_realtime_url": 1.0,
    "delete_realtime_url": 1.0,
    "initiate_performance_test": 1.0,
    "get_performance_test_results": 1.0,
}

#: The sandbox's share of the production rate.
SANDBOX_SHARE: Final = 0.1

#: The period over which Apple enforces its rates.
HOUR: Final = 3600.0


def apple_rate(endpoint: str, environment: str) -> float:
    """Apple's rate of ``endpoint`` in ``environment``, in requests per second."""
    rate = PRODUCTION_RATES[endpoint]
    return rate * SANDBOX_SHARE if environment == "Sandbox" else rate


@dataclass(frozen=True, slots=True)
class EndpointLimit:
    """How one endpoint is paced: ``interval`` seconds apart, ``budget`` per ``window``."""

    interval: float
    budget: int
    window: float = HOUR


def default_limit(endpoint: str, environment: str, *, pacing: float = 1.0) -> EndpointLimit:
    """Apple's limit for ``endpoint``: interval 1/rate (times ``pacing``), budget rate x 3600."""
    rate = apple_rate(endpoint, environment)
    return EndpointLimit(interval=pacing / rate, budget=math.floor(rate * HOUR + 1e-9))


class BudgetSpent(Exception):
    """Raised by :meth:`RateLimiter.reserve` when the budget allows no slot soon enough."""

    def __init__(self, free_at: float) -> None:
        super().__init__(free_at)
        self.free_at = free_at


class _EndpointState:
    __slots__ = ("lock", "next_slot", "starts")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next_slot = -math.inf
        self.starts: deque[float] = deque()


Key = tuple[str, str, str, str]


class RateLimiter:
    """Slot reservations per key; thread-safe. Times come from ``clock`` (monotonic seconds)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._states: dict[Key, _EndpointState] = {}

    def _state(self, key: Key) -> _EndpointState:
        with self._lock:
            state = self._states.get(key)
            if state is None:
                state = self._states[key] = _EndpointState()
            return state

    def reserve(self, key: Key, limit: EndpointLimit, *, max_budget_wait: float = 0.0) -> float:
        """Reserve the next slot of ``key`` and return its start time (``clock`` seconds).

        The caller waits until then. When the budget is spent and its next
        free slot is more than ``max_budget_wait`` seconds away, nothing is
        reserved and :class:`BudgetSpent` says when a slot frees.
        """
        state = self._state(key)
        with state.lock:
            now = self.clock()
            start = max(now, state.next_slot)
            starts = state.starts
            while starts and starts[0] <= start - limit.window:
                starts.popleft()
            if limit.budget <= 0:
                raise BudgetSpent(math.inf)
            if len(starts) >= limit.budget:
                free_at = starts[len(starts) - limit.budget] + limit.window
                if free_at - now > max_budget_wait:
                    raise BudgetSpent(free_at)
                start = max(start, free_at)
                while starts and starts[0] <= start - limit.window:
                    starts.popleft()
            starts.append(start)
            state.next_slot = start + limit.interval
            return start

    def defer(self, key: Key, until: float) -> None:
        """Start no slot of ``key`` before ``until`` (Apple said so with ``Retry-After``)."""
        state = self._state(key)
        with state.lock:
            state.next_slot = max(state.next_slot, until)

    def used(self, key: Key, window: float = HOUR) -> int:
        """How many slots of ``key`` started in the last ``window`` seconds (or are reserved)."""
        state = self._state(key)
        with state.lock:
            now = self.clock()
            return sum(1 for s in state.starts if s > now - window)

    def reset(self) -> None:
        """Forget every reservation (for tests)."""
        with self._lock:
            self._states.clear()
