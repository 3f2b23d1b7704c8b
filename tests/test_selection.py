"""The selector pool: time limit, a pool that grows to its maximum, app context, close."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator

import flask
import pytest
from flask import Flask

from flask_retention.realtime.runner import Outcome, PoolStats, SelectorPool

from .support import in_forked_child

GENEROUS = 10.0  # seconds; only reached when a test is broken
SHORT = 0.05


@pytest.fixture
def pools(app: Flask) -> Iterator[Callable[..., SelectorPool]]:
    made: list[SelectorPool] = []

    def make(size: int = 2, timeout: float = GENEROUS) -> SelectorPool:
        pool = SelectorPool(app, max_workers=size, timeout=timeout)
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.close()


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + GENEROUS
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def test_returns_the_selector_value(pools: Callable[..., SelectorPool]) -> None:
    outcome = pools().run(lambda x: x * 2, 21)
    assert (outcome.status, outcome.value) == ("ok", 42)


def test_selector_runs_with_app_context_and_no_request_context(
    app: Flask, pools: Callable[..., SelectorPool]
) -> None:
    def probe(_: object) -> tuple[bool, bool, object]:
        return flask.has_app_context(), flask.has_request_context(), flask.current_app.name

    assert pools().run(probe, None).value == (True, False, app.name)


def test_each_run_gets_a_fresh_app_context(pools: Callable[..., SelectorPool]) -> None:
    def remember(n: int) -> object:
        seen = flask.g.get("seen")
        flask.g.seen = n
        return seen

    pool = pools(size=1)
    assert pool.run(remember, 1).value is None
    assert pool.run(remember, 2).value is None


def test_threads_start_on_first_use(pools: Callable[..., SelectorPool]) -> None:
    pool = pools()
    assert pool.stats().started == 0
    pool.run(lambda _: None, None)
    assert pool.stats().started == 1


def test_sequential_runs_reuse_one_worker(pools: Callable[..., SelectorPool]) -> None:
    pool = pools(size=4)
    for i in range(20):
        assert pool.run(lambda x: x, i).value == i
    wait_until(lambda: pool.stats().busy == 0)
    assert pool.stats().started == 1


def test_exception_is_reported_and_worker_survives(
    pools: Callable[..., SelectorPool], caplog: pytest.LogCaptureFixture
) -> None:
    def boom(_: object) -> None:
        raise LookupError("no such user")

    pool = pools(size=1)
    outcome = pool.run(boom, None)
    assert outcome.status == "error"
    assert isinstance(outcome.value, LookupError)
    assert "boom" in caplog.text
    assert "LookupError" in caplog.text
    assert pool.run(lambda _: "still here", None).value == "still here"


def test_overrun_answers_timeout_while_the_selector_is_still_running(
    pools: Callable[..., SelectorPool],
) -> None:
    entered, release = threading.Event(), threading.Event()

    def stuck(_: object) -> str:
        entered.set()
        release.wait(GENEROUS)
        return "late"

    pool = pools(size=2, timeout=SHORT)
    outcome = pool.run(stuck, None)
    assert outcome.status == "timeout"
    assert entered.is_set()
    assert not release.is_set()
    stats = pool.stats()
    assert (stats.busy, stats.stuck) == (1, 1)
    release.set()
    wait_until(lambda: pool.stats().busy == 0)


def test_all_workers_stuck_answers_overloaded_after_the_time_limit(
    pools: Callable[..., SelectorPool],
) -> None:
    release = threading.Event()
    calls: list[int] = []

    def stuck(n: int) -> None:
        calls.append(n)
        release.wait(GENEROUS)

    pool = pools(size=2, timeout=SHORT)
    assert pool.run(stuck, 1).status == "timeout"
    assert pool.run(stuck, 2).status == "timeout"
    assert pool.run(stuck, 3).status == "overloaded"
    assert calls == [1, 2]
    assert pool.stats().started == 2
    release.set()
    wait_until(lambda: pool.stats().busy == 0)
    assert pool.run(lambda _: "free again", None).value == "free again"


def test_late_answer_of_an_abandoned_run_is_never_returned_to_the_next(
    pools: Callable[..., SelectorPool],
) -> None:
    release = threading.Event()

    def slow(_: object) -> str:
        release.wait(GENEROUS)
        return "stale"

    pool = pools(size=1, timeout=SHORT)
    assert pool.run(slow, None).status == "timeout"
    release.set()
    wait_until(lambda: pool.stats().idle == 1)
    pool.timeout = GENEROUS
    assert pool.run(lambda _: "fresh", None).value == "fresh"


def test_close_stops_idle_workers_and_pool_restarts(pools: Callable[..., SelectorPool]) -> None:
    pool = pools()
    pool.run(lambda _: None, None)
    threads = [t for t in threading.enumerate() if t.name.startswith("flask-retention-selector")]
    assert threads
    pool.close()
    for t in threads:
        t.join(GENEROUS)
        assert not t.is_alive()
    assert pool.stats().started == 0
    assert pool.run(lambda _: "again", None).value == "again"


def test_pool_needs_a_worker(app: Flask) -> None:
    with pytest.raises(ValueError, match="at least one"):
        SelectorPool(app, max_workers=0, timeout=1)


def test_a_request_waits_for_a_worker_that_frees_up_within_its_time_limit(
    pools: Callable[..., SelectorPool],
) -> None:
    """Busy is not overloaded: with every worker busy, a call waits its turn."""
    release = threading.Event()
    pool = pools(size=1, timeout=GENEROUS)
    first = pool.start(lambda _: release.wait(GENEROUS), None)
    assert not isinstance(first, Outcome)
    results: list[Outcome] = []
    waiting = threading.Thread(target=lambda: results.append(pool.run(lambda n: n, 2)))
    waiting.start()
    wait_until(lambda: pool.stats().waiting == 1)
    assert results == []
    release.set()
    waiting.join(GENEROUS)
    assert results == [Outcome("ok", 2)]
    assert first.result() == Outcome("ok", True)
    assert pool.stats().started == 1


def test_the_pool_grows_to_its_maximum_for_concurrent_calls(
    pools: Callable[..., SelectorPool],
) -> None:
    release = threading.Event()
    pool = pools(size=4, timeout=GENEROUS)
    calls = [pool.start(lambda _: release.wait(GENEROUS), None) for _ in range(4)]
    wait_until(lambda: pool.stats().busy == 4)
    assert pool.stats() == PoolStats(max_workers=4, started=4, idle=0, busy=4, stuck=0, waiting=0)
    release.set()
    assert [c.result() for c in calls if not isinstance(c, Outcome)] == [Outcome("ok", True)] * 4


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_starts_workers_of_its_own(pools: Callable[..., SelectorPool]) -> None:
    pool = pools(size=2)
    assert pool.run(lambda _: "parent", None).value == "parent"

    def child() -> str:
        before = pool.stats().started  # the parent's threads do not exist here
        value = pool.run(lambda _: "child", None).value
        return f"{before} {value} {pool.stats().started}"

    assert in_forked_child(child) == "0 child 1"
    assert pool.stats().started == 1
