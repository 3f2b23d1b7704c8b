"""Testing kit: a fake App Store that speaks Apple's management API over real HTTP."""

from __future__ import annotations

from .fake_app_store import (
    FakeAppStore,
    FakeImage,
    FakeMessage,
    RecordedRequest,
    apple_rate_limits,
    serve,
)

__all__ = [
    "FakeAppStore",
    "FakeImage",
    "FakeMessage",
    "RecordedRequest",
    "apple_rate_limits",
    "serve",
]
