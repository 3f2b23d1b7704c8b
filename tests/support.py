"""Helpers for tests: the test vectors kept in ``tests/vectors``.

They are copies of the project's shared vectors: a real Apple-signed JWS,
Apple's own test PKI and Apple's response fixtures (MIT, see their
LICENSE.txt), kept in the repository so the suite runs on any fresh clone.
"""

from __future__ import annotations

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
