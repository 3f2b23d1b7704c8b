"""Objects made once per process, on first use: the one fork-safety mechanism.

Threads, locks and pooled connections do not survive ``fork()`` (a
``gunicorn --preload`` worker is a fork of the master that imported the app),
and under gevent or eventlet only the ones made after monkey-patching
cooperate with the hub. So the request path makes none at import or in
``init_app``: each owner keeps its locks, events, queues and threads in a
state object made by :class:`PerProcess` where they are first used, and a
forked child, seeing another process ID, makes its own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerProcess(Generic[T]):
    """The value ``factory()`` makes, made again in each process that asks for it.

    ``factory`` only builds objects (it starts no thread): when two threads
    ask at once in a new process, both may build one, and
    ``dict.setdefault``, atomic in CPython, keeps the first; the other is
    dropped unused.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._by_pid: dict[int, T] = {}

    def get(self) -> T:
        """This process's value, made now when it has none yet."""
        pid = os.getpid()
        value = self._by_pid.get(pid)
        if value is None:
            value = self._by_pid.setdefault(pid, self._factory())
            for other in [p for p in self._by_pid if p != pid]:  # a parent's, after a fork
                self._by_pid.pop(other, None)
        return value

    def peek(self) -> T | None:
        """This process's value if it was made, else ``None`` (makes nothing)."""
        return self._by_pid.get(os.getpid())


def process_lock() -> PerProcess[threading.Lock]:
    """A lock made on first use in each process (``with lock.get(): ...``)."""
    return PerProcess(lambda: threading.Lock())


class DaemonThread:
    """A named daemon thread that :meth:`start` starts unless it runs, and again once it
    has ended; make one in a per-process state, so that each process has its own."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        """Whether the thread runs."""
        return self.thread is not None and self.thread.is_alive()

    def start(
        self,
        target: Callable[..., object],
        *args: object,
        before: Callable[[], None] | None = None,
    ) -> None:
        """Run ``target(*args)`` in the thread unless it runs; ``before()`` first, under
        the lock that :meth:`stop` takes too."""
        if self.alive:
            return
        with self.lock:
            if not self.alive:
                if before is not None:
                    before()
                self.thread = threading.Thread(
                    target=target, args=args, name=self.name, daemon=True
                )
                self.thread.start()

    def stop(self, signal_stop: Callable[[], None], timeout: float | None) -> bool:
        """Call ``signal_stop()`` under the lock, then wait at most ``timeout`` seconds
        for the thread to end; ``True`` once it has (or never ran)."""
        with self.lock:
            signal_stop()
            thread = self.thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()
