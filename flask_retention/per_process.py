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
