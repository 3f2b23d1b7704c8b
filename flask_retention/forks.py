"""Background threads do not survive ``fork()``: the owners' ``_running`` flags are
cleared in a forked child, so that its first use starts a thread of its own.

The decision log's writer and the catalogue snapshot keep such a flag instead
of asking ``Thread.is_alive()`` on every request (a flag is cheaper to read);
a ``gunicorn --preload`` fork copies the flag but not the thread.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

_OWNERS: weakref.WeakSet[Any] = weakref.WeakSet()


def clear_running_in_forked_child(owner: Any) -> None:
    """Set ``owner._running = False`` in every child process forked from now on."""
    _OWNERS.add(owner)


def _forked_child() -> None:
    for owner in list(_OWNERS):
        owner._running = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked_child)
