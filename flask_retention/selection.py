"""Run the host's selector under a time limit, on a bounded set of worker threads.

The request thread hands the selector to a long-lived worker and waits at
most ``timeout`` seconds for its answer; when it does not come, the request
is answered with the fallback while the selector runs on. A worker whose
selector is stuck stays busy until it returns, and the pool never grows past
its size: when every worker is busy the request gets the fallback at once
instead of queueing behind stuck selectors.

The hand-off is one ``SimpleQueue.put`` and one ``SimpleQueue.get`` each way,
with a reply queue per call, so a late answer can never reach another call
(measured against ``ThreadPoolExecutor`` in ``benchmarks/realtime.py``).
Threads start on first use in the process that serves, so a
``gunicorn --preload`` fork starts its own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from queue import Empty, SimpleQueue
from typing import Any, Final, Literal

from flask import Flask

logger = logging.getLogger("flask_retention")

OutcomeStatus = Literal["ok", "error", "timeout", "overloaded"]

_STOP: Final = None


@dataclass(frozen=True, slots=True)
class Outcome:
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
                logger.error(
                    "flask-retention: selector %s raised %s for request %s; the fallback answers.",
                    _name(fn),
                    type(e).__name__,
                    getattr(arg, "request_identifier", "?"),
                    exc_info=e,
                )
                outcome = Outcome("error", e)
            worker.running = False
            with self._lock:
                keep = worker.generation == self._generation
                if keep:
                    self._idle.append(worker)
            # The answer goes last, so that the waiting thread finds the GIL free.
            reply.put(outcome)
            if not keep:
                return
