"""Helpers for tests: where the shared test vectors are."""

from __future__ import annotations

import os
from pathlib import Path

#: ``shared/`` sits beside the checkout (``../shared``); ``RETENTION_SHARED_DIR`` overrides.
SHARED = Path(
    os.environ.get("RETENTION_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared")
)
VECTORS = SHARED / "vectors"


def vector(path: str) -> Path:
    """A file of ``shared/vectors``; fails loudly when it is absent, so no test passes vacuously."""
    p = VECTORS / path
    if not p.exists():
        raise FileNotFoundError(
            f"test vector {p} not found: shared/ must sit beside the checkout, "
            "or set RETENTION_SHARED_DIR"
        )
    return p
