"""Helpers for tests: the test vectors kept in ``tests/vectors``.

They are copies of the project's shared vectors: a real Apple-signed JWS,
Apple's own test PKI and Apple's response fixtures (MIT, see their
LICENSE.txt), kept in the repository so the suite runs on any fresh clone.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask

VECTORS = Path(__file__).resolve().parent / "vectors"


def vector(path: str) -> Path:
    """A file of ``tests/vectors``; fails loudly when it is absent, so no test passes vacuously."""
    p = VECTORS / path
    if not p.exists():
        raise FileNotFoundError(f"test vector {p} not found")
    return p


def state_of(app: Flask) -> Any:
    """What the app's ``Retention`` keeps for it (settings, database, lookup, endpoint, ...)."""
    return app.extensions["retention"]._get_state(app)


def in_forked_child(child: Callable[[], str]) -> str:
    """What ``child()`` returns when run in a process forked from this one (as a
    ``gunicorn --preload`` worker is); fails when it raises or the child dies."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            os.write(write_end, child().encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        said = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the forked child failed"
    return said
