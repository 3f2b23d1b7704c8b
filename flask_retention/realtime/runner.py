"""Run the host's selector on a worker thread, under a time limit, in a fresh app context.

Every selector call runs the same way on every server: the request thread
hands it to a worker thread of :class:`SelectorPool` and waits at most
``RETENTION_SELECTOR_TIMEOUT`` seconds for its answer. The worker runs it in
an app context of its own (``flask.g`` fresh, none of the request's values;
Flask-SQLAlchemy gives it its own session, removed when the context ends).
When the time is up the request is answered with the fallback while the
selector runs on: Python cannot stop a thread, so a stuck selector keeps its
worker until it returns.

The pool grows to ``max_workers`` threads. A request that finds every
worker busy waits for one within its own time limit; ``overloaded`` means
that none freed up in time, which only stuck selectors cause.

Threads, locks and queues are made on first use in the serving process
(:class:`~flask_retention.core.per_process.PerProcess`), so that a ``--preload``
fork makes its own, and under gevent or eventlet they are the patched,
cooperative ones: a selector that waits on I/O yields to other greenlets.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from flask import Flask

from flask_retention.core.per_process import PerProcess

logger = logging.getLogger(__name__)

OutcomeStatus = Literal["ok", "error", "timeout", "overloaded"]


class Outcome(NamedTuple):
    """What running a selector gave: its return value (``ok``), or why there is none."""

    status: OutcomeStatus
    value: Any = None


@dataclass(frozen=True, slots=True)
class PoolStats:
    """Worker counts of this process: ``max_workers`` allowed, ``started``, ``idle``
    (ready for a request), ``busy`` (running a selector), ``stuck`` (busy past their
    time limit), and ``waiting`` requests (for a free worker)."""

    max_workers: int
    started: int
    idle: int
    busy: int
    stuck: int
    waiting: int


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


class Call:
    """One selector call handed to a worker; :meth:`result` waits for its outcome."""

    def __init__(self, fn: Callable[[Any], Any], arg: Any, deadline: float) -> None:
        self.fn = fn
        self.arg = arg
        self.deadline = deadline
        # A queue of its own: a late outcome can never reach another call.
        self.reply: queue.SimpleQueue[Outcome] = queue.SimpleQueue()

    def result(self) -> Outcome:
        """The outcome, or ``timeout`` once the call's deadline has passed."""
        try:
            return self.reply.get(timeout=max(self.deadline - time.monotonic(), 0.0))
        except queue.Empty:
            return Outcome("timeout")


@dataclass(eq=False)
class _Worker:
    # Looked up when made, not at import: gevent's patched queue when it is patched.
    jobs: queue.SimpleQueue[Call | None] = field(default_factory=lambda: queue.SimpleQueue())
    call: Call | None = None
    thread: threading.Thread | None = None


@dataclass(eq=False)
class _Workers:
    """The pool's threads in one process, with the condition that guards them."""

    changed: threading.Condition = field(
        default_factory=lambda: threading.Condition(threading.Lock())
    )
    all: list[_Worker] = field(default_factory=list)
    idle: list[_Worker] = field(default_factory=list)
    waiting: int = 0
    closed: bool = False


class SelectorPool:
    """Up to ``max_workers`` threads that run selectors in a fresh app context of ``app``,
    each call within ``timeout`` seconds."""

    def __init__(self, app: Flask, *, max_workers: int, timeout: float) -> None:
        if max_workers < 1:
            raise ValueError("a selector pool needs at least one worker")
        self.app = app
        self.max_workers = max_workers
        self.timeout = timeout
        self._workers: PerProcess[_Workers] = PerProcess(_Workers)

    def run(self, fn: Callable[[Any], Any], arg: Any) -> Outcome:
        """``fn(arg)`` on a worker: its outcome, ``timeout`` or ``overloaded``."""
        call = self.start(fn, arg)
        return call if isinstance(call, Outcome) else call.result()

    def start(self, fn: Callable[[Any], Any], arg: Any) -> Call | Outcome:
        """Hand ``fn(arg)`` to a worker and return the running :class:`Call`; ``overloaded``
        when no worker was free before the time limit."""
        deadline = time.monotonic() + self.timeout
        worker = self._take(deadline)
        if worker is None:
            return Outcome("overloaded")
        call = Call(fn, arg, deadline)
        worker.jobs.put(call)
        return call

    def stats(self) -> PoolStats:
        """Counts of this process's workers, for monitoring and tests."""
        workers = self._workers.peek()
        if workers is None:
            return PoolStats(self.max_workers, 0, 0, 0, 0, 0)
        now = time.monotonic()
        with workers.changed:
            calls = [w.call for w in workers.all if w.call is not None]
            return PoolStats(
                max_workers=self.max_workers,
                started=len(workers.all),
                idle=len(workers.idle),
                busy=len(calls),
                stuck=sum(1 for c in calls if now > c.deadline),
                waiting=workers.waiting,
            )

    def close(self, timeout: float | None = 1.0) -> None:
        """Stop this process's workers, waiting up to ``timeout`` seconds for each idle one.

        A worker inside a stuck selector ends when the selector returns (its
        thread is a daemon, so it never holds the process open). The pool can
        be used again afterwards: it starts new workers.
        """
        workers = self._workers.peek()
        if workers is None:
            return
        with workers.changed:
            workers.closed = True
            stopping, idle = list(workers.all), list(workers.idle)
            workers.all.clear()
            workers.idle.clear()
            workers.changed.notify_all()
        self._workers = PerProcess(_Workers)
        for worker in stopping:
            worker.jobs.put(None)
        for worker in idle:
            if worker.thread is not None:
                worker.thread.join(timeout)

    def _take(self, deadline: float) -> _Worker | None:
        """An idle worker, a new one while fewer than ``max_workers`` run, or the first
        to free up before ``deadline``; ``None`` when none did."""
        workers = self._workers.get()
        try:
            return workers.idle.pop()  # the usual case: a worker is free
        except IndexError:
            pass
        with workers.changed:
            workers.waiting += 1
            try:
                while not workers.idle and len(workers.all) >= self.max_workers:
                    left = deadline - time.monotonic()
                    if left <= 0 or workers.closed:
                        return None
                    workers.changed.wait(left)
                if workers.idle:
                    return workers.idle.pop()
                worker = _Worker()
                workers.all.append(worker)
            finally:
                workers.waiting -= 1
        worker.thread = threading.Thread(
            target=self._serve,
            args=(workers, worker),
            name=f"flask-retention-selector-{len(workers.all)}",
            daemon=True,
        )
        worker.thread.start()
        return worker

    def _serve(self, workers: _Workers, worker: _Worker) -> None:
        """A worker's loop: run each call in a fresh app context, then be idle again."""
        while (call := worker.jobs.get()) is not None:
            worker.call = call
            try:
                with self.app.app_context():
                    outcome = Outcome("ok", call.fn(call.arg))
            except BaseException as e:  # a selector's failure must not end the worker
                logger.error(
                    "flask-retention: selector %s raised %s for request %s; the fallback answers.",
                    _name(call.fn),
                    type(e).__name__,
                    getattr(call.arg, "request_identifier", "?"),
                    exc_info=e,
                )
                outcome = Outcome("error", e)
            worker.call = None
            with workers.changed:
                closed = workers.closed
                if not closed:
                    workers.idle.append(worker)
                    if workers.waiting:
                        workers.changed.notify()
            call.reply.put(outcome)  # last, so that the waiting thread finds the GIL free
            if closed:
                return
