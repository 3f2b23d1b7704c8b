"""The selector pool: time limit, bounded workers, app context, close."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

import flask
import pytest
from flask import Flask

from flask_retention import selection
from flask_retention.selection import SelectorPool

GENEROUS = 10.0  # seconds; only reached when a test is broken
SHORT = 0.05


@pytest.fixture
def pools(app: Flask) -> Iterator[Callable[..., SelectorPool]]:
    made: list[SelectorPool] = []

    def make(size: int = 2, timeout: float = GENEROUS) -> SelectorPool:
        pool = SelectorPool(app, size=size, timeout=timeout)
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


def test_all_workers_stuck_answers_overloaded_at_once(pools: Callable[..., SelectorPool]) -> None:
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
        SelectorPool(app, size=0, timeout=1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_child_forked_by_another_thread_knows_its_main_thread() -> None:
    def fork_here() -> None:
        pid = os.fork()
        if pid == 0:  # the forking thread is the child's main thread
            ok = selection._main_ident == threading.get_ident()
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        codes.append(os.waitstatus_to_exitcode(status))

    codes: list[int] = []
    thread = threading.Thread(target=fork_here)
    thread.start()
    thread.join(10)
    assert codes == [0]
    assert selection._main_ident == threading.main_thread().ident  # the parent's is unchanged


# -- the alarm runner's watchdog ------------------------------------------------------


def busy(_: object) -> str:
    """Pure Python that only the time limit's exception stops (or a broken test's bound)."""
    give_up = time.monotonic() + GENEROUS
    while time.monotonic() < give_up:
        pass
    return "not stopped"


def test_watchdog_parks_when_idle_and_a_call_wakes_it(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selection, "IDLE_ROUNDS", 2)
    runner = selection.AlarmRunner(app, timeout=SHORT)
    assert runner.run(lambda x: x, "first") == ("ok", "first")
    wait_until(lambda: selection._watchdog.parked)  # nothing to watch: it sleeps for good
    started = time.monotonic()
    outcome = runner.run(busy, None)
    assert outcome == ("timeout", None)
    assert time.monotonic() - started < SHORT + selection.LATE_GRACE
    assert runner.disabled is None
    assert runner.run(lambda x: x, "after") == ("ok", "after")


def test_calls_that_end_in_time_are_never_interrupted(app: Flask) -> None:
    runner = selection.AlarmRunner(app, timeout=SHORT)
    # Back to back, across several of the watchdog's polls and deadlines.
    for _ in range(40):
        assert runner.run(lambda _: time.sleep(SHORT / 10) or "done", None) == ("ok", "done")


def test_a_signal_meant_for_an_earlier_call_does_not_stop_the_running_one(app: Flask) -> None:
    runner = selection.AlarmRunner(app, timeout=GENEROUS)
    main = threading.main_thread().ident
    assert main is not None

    def signalled(meant_for_this_call: bool) -> str:
        current = selection._current
        assert current is not None
        # As the watchdog does: name the call to stop, then signal the main thread.
        selection._interrupting = current[1] if meant_for_this_call else current[1] - 1
        signal.pthread_kill(main, signal.SIGALRM)
        time.sleep(0.01)  # the handler runs here
        return "finished"

    assert runner.run(signalled, False) == ("ok", "finished")
    assert runner.run(signalled, True) == ("timeout", None)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_starts_its_own_watchdog(app: Flask) -> None:
    runner = selection.AlarmRunner(app, timeout=SHORT)
    assert runner.run(lambda x: x, 1) == ("ok", 1)  # the parent's watchdog runs
    pid = os.fork()
    if pid == 0:  # the child: no watchdog thread until its first call
        ok = False
        try:
            outcome = runner.run(busy, None)
            ok = outcome is not None and outcome.status == "timeout"
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + GENEROUS
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    if done[0] == 0:  # still busy: nothing stopped its selector
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the child's selector was not stopped")
    assert os.waitstatus_to_exitcode(done[1]) == 0


def test_alarm_runner_outside_an_app_context_pushes_one_for_the_call(app: Flask) -> None:
    runner = selection.AlarmRunner(app, timeout=GENEROUS)

    def probe(_: object) -> tuple[bool, bool, object]:
        return flask.has_app_context(), flask.has_request_context(), flask.current_app.name

    assert not flask.has_app_context()
    assert runner.run(probe, None) == ("ok", (True, False, app.name))
    assert not flask.has_app_context()
    with app.test_request_context():  # the request's app context, the request hidden
        flask.g.mark = "request"
        assert runner.run(lambda _: (flask.has_request_context(), flask.g.mark), None) == (
            "ok",
            (False, "request"),
        )
