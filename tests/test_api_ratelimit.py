"""Pacing and hourly budgets: the arithmetic, on an injected clock (no sleeping)."""

from __future__ import annotations

import math
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from flask_retention.api import RetentionAPIClient
from flask_retention.appstore.pacing import (
    PRODUCTION_RATES,
    BudgetSpent,
    EndpointLimit,
    RateLimiter,
    default_limit,
)

KEY = ("https://api.example", "com.example.app", "Sandbox", "upload_image")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> RateLimiter:
    return RateLimiter(clock)


def test_apples_default_limits_from_the_spec_table() -> None:
    """The one test of the real values: 1/s (10/s for defaults), sandbox 10 %, over an hour.

    Checked on the arithmetic and on what a client built without knobs keeps.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    clients = {
        env: RetentionAPIClient(
            issuer_id="i", key_id="k", private_key=key, bundle_id="b", environment=env
        )
        for env in ("Sandbox", "Production")
    }
    assert set(PRODUCTION_RATES) == {
        "upload_image",
        "delete_image",
        "get_image_list",
        "upload_message",
        "delete_message",
        "get_message_list",
        "configure_default_message",
        "get_default_message",
        "delete_default_message",
        "configure_realtime_url",
        "get_realtime_url",
        "delete_realtime_url",
        "initiate_performance_test",
        "get_performance_test_results",
    }
    for endpoint in PRODUCTION_RATES:
        production = default_limit(endpoint, "Production")
        sandbox = default_limit(endpoint, "Sandbox")
        if endpoint == "configure_default_message":
            assert production == EndpointLimit(interval=0.1, budget=36000, window=3600)
            assert sandbox == EndpointLimit(interval=1.0, budget=3600, window=3600)
        else:
            assert production == EndpointLimit(interval=1.0, budget=3600, window=3600)
            assert sandbox == EndpointLimit(interval=10.0, budget=360, window=3600)
        assert clients["Production"].limit(endpoint) == production
        assert clients["Sandbox"].limit(endpoint) == sandbox
    for client in clients.values():
        assert (client.budget_wait, client.max_retries, client.retry_after_cap) == (0, 3, 60)
        client.close()


def test_pacing_scale_multiplies_the_interval_only() -> None:
    apple = default_limit("upload_image", "Sandbox")
    limit = default_limit("upload_image", "Sandbox", pacing=0.005)
    assert limit.interval == pytest.approx(apple.interval * 0.005)
    assert limit.budget == apple.budget


def test_a_burst_is_spread_one_interval_apart(limiter: RateLimiter, clock: FakeClock) -> None:
    limit = EndpointLimit(interval=1.0, budget=100)
    starts = [limiter.reserve(KEY, limit) for _ in range(10)]
    assert starts == [1000.0 + i for i in range(10)]


def test_a_call_after_a_quiet_spell_starts_at_once(limiter: RateLimiter, clock: FakeClock) -> None:
    limit = EndpointLimit(interval=1.0, budget=100)
    limiter.reserve(KEY, limit)
    clock.now += 5
    assert limiter.reserve(KEY, limit) == clock.now


def test_endpoints_and_environments_are_paced_separately(limiter: RateLimiter) -> None:
    limit = EndpointLimit(interval=1.0, budget=100)
    other_endpoint = (*KEY[:3], "delete_image")
    other_environment = (KEY[0], KEY[1], "Production", KEY[3])
    assert limiter.reserve(KEY, limit) == 1000.0
    assert limiter.reserve(other_endpoint, limit) == 1000.0
    assert limiter.reserve(other_environment, limit) == 1000.0
    assert limiter.reserve(KEY, limit) == 1001.0


def test_spent_budget_raises_with_the_time_it_frees(limiter: RateLimiter, clock: FakeClock) -> None:
    limit = EndpointLimit(interval=0.0, budget=3, window=60.0)
    for _ in range(3):
        limiter.reserve(KEY, limit)
    with pytest.raises(BudgetSpent) as caught:
        limiter.reserve(KEY, limit)
    assert caught.value.free_at == 1060.0
    assert limiter.used(KEY, 60.0) == 3


def test_spent_budget_waits_when_allowed(limiter: RateLimiter, clock: FakeClock) -> None:
    limit = EndpointLimit(interval=0.0, budget=2, window=10.0)
    limiter.reserve(KEY, limit)
    clock.now += 4
    limiter.reserve(KEY, limit)
    with pytest.raises(BudgetSpent):
        limiter.reserve(KEY, limit, max_budget_wait=5.9)
    assert limiter.reserve(KEY, limit, max_budget_wait=6.0) == 1010.0
    assert limiter.reserve(KEY, limit, max_budget_wait=60.0) == 1014.0


def test_the_budget_window_slides(limiter: RateLimiter, clock: FakeClock) -> None:
    limit = EndpointLimit(interval=0.0, budget=2, window=10.0)
    limiter.reserve(KEY, limit)
    limiter.reserve(KEY, limit)
    clock.now += 10
    assert limiter.reserve(KEY, limit) == 1010.0
    assert limiter.used(KEY, 10.0) == 1


def test_zero_budget_never_allows_a_call(limiter: RateLimiter) -> None:
    with pytest.raises(BudgetSpent) as caught:
        limiter.reserve(KEY, EndpointLimit(interval=0.0, budget=0), max_budget_wait=1e9)
    assert math.isinf(caught.value.free_at)


def test_retry_after_defers_the_next_slot(limiter: RateLimiter, clock: FakeClock) -> None:
    limit = EndpointLimit(interval=1.0, budget=100)
    limiter.reserve(KEY, limit)
    limiter.defer(KEY, 1030.0)
    assert limiter.reserve(KEY, limit) == 1030.0
    limiter.defer(KEY, 1000.0)  # an earlier time never pulls the slot forward
    assert limiter.reserve(KEY, limit) == 1031.0


def test_threads_share_one_schedule(limiter: RateLimiter) -> None:
    limit = EndpointLimit(interval=0.5, budget=1000)
    starts: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(25):
            start = limiter.reserve(KEY, limit)
            with lock:
                starts.append(start)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(starts) == [1000.0 + 0.5 * i for i in range(100)]


def test_reset_forgets_reservations(limiter: RateLimiter) -> None:
    limit = EndpointLimit(interval=100.0, budget=1)
    limiter.reserve(KEY, limit)
    limiter.reset()
    assert limiter.reserve(KEY, limit) == 1000.0
