"""Run the host's selector under a time limit: in the request thread, or on worker threads.

Handing a call to another thread and back costs about as much as the ES256
verification of the request (two or three cross-thread wake-ups), so the
selector runs where it costs least while its time limit still holds:

* :class:`AlarmRunner`, when the request is served by the process's main
  thread (gunicorn's default sync workers, most WSGI servers' process-per-
  request models, in-process calls): the selector runs in the request thread,
  and when ``RETENTION_SELECTOR_TIMEOUT`` is up, a watchdog thread (one per
  process, see :class:`_Watchdog`) sends ``SIGALRM`` to it, whose handler
  raises :class:`SelectorTimeout` in the selector. That interrupts Python code, sleeps,
  waits on locks and socket I/O done by Python; a C extension that waits
  without returning to Python (psycopg2's default blocking wait, say) is
  interrupted only when it returns. A selector that overruns that way switches
  the process to the worker threads for good, with a warning, so it can
  happen once per process. The handler is installed only while ``SIGALRM`` is
  unused (default disposition, no timer running), and the runner steps aside
  whenever another handler appears; it sets no timer itself.
* :class:`SelectorPool` everywhere else (threaded servers, ``RETENTION_SELECTOR_RUNNER
  = "threads"``): the request thread hands the selector to a long-lived
  worker and waits at most ``timeout`` seconds for its answer; when it does
  not come, the request is answered with the fallback while the selector runs
  on. A worker whose selector is stuck stays busy until it returns, and the
  pool never grows past its size: when every worker is busy the request gets
  the fallback at once instead of queueing behind stuck selectors.

The pool's hand-off is one ``SimpleQueue.put`` and one ``SimpleQueue.get``
each way, with a reply queue per call, so a late answer can never reach
another call. Threads start on first use in the process that serves, so a
``gunicorn --preload`` fork starts its own.
"""

from __future__ import annotations

import contextvars
import importlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from queue import Empty, SimpleQueue
from types import FrameType
from typing import Any, Final, Literal, NamedTuple

from flask import Flask
from flask.ctx import AppContext

try:  # the variable behind flask.current_app (Flask >= 2.2); without it, a fresh app context
    from flask.globals import _cv_app
except ImportError:  # pragma: no cover - a Flask that renamed it
    _cv_app = None  # type: ignore[assignment]

from . import forks

logger = logging.getLogger("flask_retention")

OutcomeStatus = Literal["ok", "error", "timeout", "overloaded"]

_STOP: Final = None


class Outcome(NamedTuple):
    """What running a selector gave: its return value (``ok``), or why there is none."""

    status: OutcomeStatus
    value: Any = None


@dataclass(frozen=True, slots=True)
class PoolStats:
    """Worker counts: started, idle (ready for a request), busy (running a selector) and
    stuck (busy past their time limit)."""

    size: int
    started: int
    idle: int
    busy: int
    stuck: int


class _Worker:
    __slots__ = ("deadline", "generation", "jobs", "running", "thread")

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.jobs: SimpleQueue[tuple[Callable[[Any], Any], Any, SimpleQueue[Outcome]] | None] = (
            SimpleQueue()
        )
        self.running = False
        self.deadline = 0.0
        self.thread: threading.Thread | None = None


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _report_error(fn: Callable[..., Any], arg: Any, e: BaseException) -> Outcome:
    logger.error(
        "flask-retention: selector %s raised %s for request %s; the fallback answers.",
        _name(fn),
        type(e).__name__,
        getattr(arg, "request_identifier", "?"),
        exc_info=e,
    )
    return Outcome("error", e)


class SelectorTimeout(BaseException):
    """Raised inside a selector running in the main thread when its time is up.

    A ``BaseException``, like ``KeyboardInterrupt``, so that a selector's
    ``except Exception`` does not swallow it, and SQLAlchemy discards a
    connection it interrupts instead of reusing it.
    """


#: Seconds past the time limit after which a selector counts as not interruptible
#: (a psycopg 3 query waiting on the server stopped 0.1 s after the signal, measured here).
LATE_GRACE: Final = 0.15

#: Rounds of the watchdog's poll with no selector call before it sleeps until the next one.
IDLE_ROUNDS: Final = 25

_HAS_ALARM: Final = hasattr(signal, "pthread_kill") and hasattr(signal, "SIGALRM")
if _HAS_ALARM:
    _SIGALRM: Final = signal.SIGALRM
_get_ident = threading.get_ident
_main_ident = threading.main_thread().ident
_monotonic = time.monotonic
_sleep = time.sleep

try:  # signal.getsignal wraps this one in an enum conversion that costs ~3 us per call
    _getsignal: Callable[[int], object] = importlib.import_module("_signal").getsignal
except (ImportError, AttributeError):  # pragma: no cover - other Pythons
    _getsignal = signal.getsignal

# The one selector call that SIGALRM may interrupt, as (deadline, call number): signals
# are process-wide and their handlers run in the main thread, so there is at most one
# at a time. The watchdog reads it; the call that it asked the handler to interrupt is
# _interrupting. Each is one assignment, so a reader never sees half of it.
_current: tuple[float, int] | None = None
_calls = 0
_interrupting = 0


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    global _current
    current = _current
    if current is not None and current[1] == _interrupting:
        _current = None
        raise SelectorTimeout


class _Watchdog:
    """One thread per process that sends ``SIGALRM`` to the main thread when a selector
    call there outlives its deadline.

    A timer set and cleared around each call would cost two system calls per
    request; the watchdog instead polls every ``period`` seconds (the shortest
    time limit of the process's runners), and once it sees a call, sleeps until
    that call's deadline: so a call is stopped on time, and a request that
    finishes in time costs two assignments. After :data:`IDLE_ROUNDS` polls
    without a call it sleeps until the next call wakes it (a flag that the
    request thread reads, and a wake-up once).
    """

    def __init__(self) -> None:
        self.period = 1.0
        self._running = False
        self.parked = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.thread: threading.Thread | None = None
        forks.clear_running_in_forked_child(self)

    def start(self) -> None:
        """Start the thread in this process, unless it runs."""
        with self._lock:
            if self._running:
                return
            self._wake = threading.Event()  # a forked child's must not be the parent's
            self.parked = False
            self.thread = threading.Thread(
                target=self._watch, name="flask-retention-watchdog", daemon=True
            )
            self.thread.start()
            self._running = True

    def wake(self) -> None:
        """Wake the parked thread: a call has started."""
        self._wake.set()

    def _watch(self) -> None:
        global _interrupting
        idle, seen = 0, -1
        while True:
            current, calls = _current, _calls
            if current is not None:
                idle = 0
                deadline, call = current
                late = deadline - _monotonic()
                if late > 0:
                    _sleep(min(late, self.period))
                elif call != _interrupting and _current is current:
                    _interrupting = call
                    signal.pthread_kill(_main_ident, _SIGALRM)  # type: ignore[arg-type]
                else:  # asked already: a call the signal cannot interrupt yet
                    _sleep(self.period)
                continue
            idle = idle + 1 if calls == seen else 0
            seen = calls
            if idle < IDLE_ROUNDS:
                _sleep(self.period)
                continue
            # Park: say so first, then look again, so that a call starting in between
            # either is seen here or sees the flag and wakes the thread.
            self.parked = True
            if _current is None and _calls == seen:
                self._wake.wait()
            self._wake.clear()
            self.parked = False
            idle = 0


_watchdog = _Watchdog()


def _forked_child() -> None:
    # threading's own fork handler, registered before this one, has named the new main thread.
    global _main_ident, _current
    _main_ident = threading.main_thread().ident
    _current = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked_child)


class AlarmRunner:
    """Runs a selector in the calling thread when that is the main thread, under a
    ``SIGALRM`` time limit of ``timeout`` seconds (see the module's docstring).

    :meth:`run` returns ``None`` when it cannot be used for this call (another
    thread, ``SIGALRM`` in other use, a call already running, or switched off
    after a selector it could not interrupt): the caller then uses the pool.
    """

    def __init__(self, app: Flask, *, timeout: float) -> None:
        self.app = app
        self.timeout = timeout
        #: Why this runner no longer runs selectors, once it has stopped (for good).
        self.disabled: str | None = None if _HAS_ALARM else "no SIGALRM on this platform"
        self._refused_logged = False
        _watchdog.period = min(_watchdog.period, timeout)

    def run(self, fn: Callable[[Any], Any], arg: Any) -> Outcome | None:
        """``fn(arg)`` here within the time limit, or ``None`` to use the pool."""
        if (
            self.disabled is not None
            or _current is not None
            or _get_ident() != _main_ident
            or (_getsignal(_SIGALRM) is not _on_alarm and not self._install())
        ):
            return None
        if not _watchdog._running:
            _watchdog.start()
        # A context of its own, as on a worker thread: an app context without the request.
        # The request's own app context is set there (the same g, torn down with the
        # request): cheaper than pushing it again, which would send Flask's signals.
        context = contextvars.Context()
        current = None if _cv_app is None else _cv_app.get(None)
        if current is not None and current.app is self.app:
            return context.run(self._run, fn, arg, current)
        fresh = self.app.app_context()
        context.run(fresh.push)  # pushed before the call is watched, popped after it
        try:
            return context.run(self._run, fn, arg, None)
        finally:
            context.run(fresh.pop)

    def _run(self, fn: Callable[[Any], Any], arg: Any, app_context: AppContext | None) -> Outcome:
        """``fn(arg)`` watched, in the selector's own context (``app_context`` set there)."""
        global _current, _calls
        if app_context is not None:
            _cv_app.set(app_context)
        timeout = self.timeout
        started = _monotonic()
        try:
            _calls += 1
            _current = (started + timeout, _calls)
            if _watchdog.parked:
                _watchdog.wake()
            try:
                outcome = Outcome("ok", fn(arg))
            finally:
                _current = None
        except SelectorTimeout:
            _current = None
            outcome = Outcome("timeout")
        except Exception as e:
            outcome = _report_error(fn, arg, e)
        elapsed = _monotonic() - started
        if elapsed > timeout + LATE_GRACE:
            self._give_up(fn, elapsed)
            return Outcome("timeout")
        return outcome

    def _install(self) -> bool:
        """Take ``SIGALRM`` if nobody uses it; ``False`` (logged once) when somebody does."""
        if signal.getsignal(_SIGALRM) == signal.SIG_DFL and not any(
            signal.getitimer(signal.ITIMER_REAL)
        ):
            signal.signal(_SIGALRM, _on_alarm)
            return True
        if not self._refused_logged:
            self._refused_logged = True
            logger.info(
                "flask-retention: SIGALRM is in use in this process; selectors run on worker "
                "threads (RETENTION_SELECTOR_WORKERS)."
            )
        return False

    def _give_up(self, fn: Callable[..., Any], elapsed: float) -> None:
        self.disabled = f"selector {_name(fn)} could not be interrupted"
        logger.warning(
            "flask-retention: selector %s ran %.3f s, past RETENTION_SELECTOR_TIMEOUT (%s s), "
            "in a call that the time limit's signal cannot interrupt (a C extension waiting "
            "without returning to Python, such as psycopg2's default wait); the fallback "
            "answered late. From now on this process runs selectors on worker threads, whose "
            "time limit holds whatever the selector waits on. Set RETENTION_SELECTOR_RUNNER = "
            "'threads' to start that way.",
            _name(fn),
            elapsed,
            self.timeout,
        )


class SelectorPool:
    """At most ``size`` worker threads that run selectors inside an app context of ``app``."""

    def __init__(self, app: Flask, *, size: int, timeout: float) -> None:
        if size < 1:
            raise ValueError("a selector pool needs at least one worker")
        self.app = app
        self.size = size
        self.timeout = timeout
        self._lock = threading.Lock()
        self._generation = 0
        self._pid = os.getpid()
        self._workers: list[_Worker] = []
        self._idle: list[_Worker] = []

    def run(self, fn: Callable[[Any], Any], arg: Any) -> Outcome:
        """``fn(arg)`` on a worker, or ``timeout`` / ``overloaded`` without waiting longer."""
        worker = self._take()
        if worker is None:
            return Outcome("overloaded")
        reply: SimpleQueue[Outcome] = SimpleQueue()
        worker.deadline = time.monotonic() + self.timeout
        worker.jobs.put((fn, arg, reply))
        try:
            return reply.get(timeout=self.timeout)
        except Empty:
            return Outcome("timeout")

    def stats(self) -> PoolStats:
        """Counts of started, busy and stuck workers, for monitoring and tests."""
        now = time.monotonic()
        workers = list(self._workers)
        busy = [w for w in workers if w.running]
        return PoolStats(
            size=self.size,
            started=len(workers),
            idle=len(self._idle),
            busy=len(busy),
            stuck=sum(1 for w in busy if now > w.deadline),
        )

    def close(self, timeout: float | None = 1.0) -> None:
        """Stop the workers, waiting up to ``timeout`` seconds for each idle one to end.

        A worker still inside a stuck selector ends when the selector returns
        (its thread is a daemon, so it never holds the process open). The pool
        can be used again afterwards: it starts new workers.
        """
        with self._lock:
            workers, self._workers, self._idle = self._workers, [], []
            self._generation += 1
        for worker in workers:
            worker.jobs.put(_STOP)
        for worker in workers:
            if worker.thread is not None and not worker.running:
                worker.thread.join(timeout)

    def _take(self) -> _Worker | None:
        if self._pid != os.getpid():
            self._after_fork()
        try:
            return self._idle.pop()
        except IndexError:
            pass
        with self._lock:
            if len(self._workers) >= self.size:
                return None
            worker = _Worker(self._generation)
            self._workers.append(worker)
        worker.thread = threading.Thread(
            target=self._serve,
            args=(worker,),
            name=f"flask-retention-selector-{len(self._workers)}",
            daemon=True,
        )
        worker.thread.start()
        return worker

    def _after_fork(self) -> None:
        # Threads do not survive fork(): forget the parent's workers.
        self._lock = threading.Lock()
        self._workers, self._idle = [], []
        self._generation += 1
        self._pid = os.getpid()

    def _serve(self, worker: _Worker) -> None:
        app = self.app
        while True:
            item = worker.jobs.get()
            if item is _STOP:
                return
            fn, arg, reply = item
            worker.running = True
            try:
                with app.app_context():
                    outcome = Outcome("ok", fn(arg))
            except BaseException as e:  # a selector's failure must not end the worker
                outcome = _report_error(fn, arg, e)
            worker.running = False
            with self._lock:
                keep = worker.generation == self._generation
                if keep:
                    self._idle.append(worker)
            # The answer goes last, so that the waiting thread finds the GIL free.
            reply.put(outcome)
            if not keep:
                return
