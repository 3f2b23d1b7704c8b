"""Testing kit for flask-retention and the apps that use it.

:class:`AppStoreSigner` signs App Store-like requests with a test certificate
chain (and makes each kind of broken token); trust its root with
``RETENTION_ROOT_CERTIFICATES=[signer.root_pem]``. :class:`FakeAppStore` is a
fake of Apple's management API, served over real HTTP with :func:`serve`;
:class:`FakeAppStorePair` is both environments of one app, linked as at Apple;
:class:`PerformanceTestRun` is its performance test, usable on its own.
"""

from __future__ import annotations

from flask_retention.appstore.performance import PerformanceTestRun
from flask_retention.realtime.signer import BROKEN_VARIANT_REASONS, AppStoreSigner
from flask_retention.testing.fake_app_store import (
    FakeAppStore,
    FakeImage,
    FakeMessage,
    RecordedRequest,
    apple_rate_limits,
)
from flask_retention.testing.fake_app_store_pair import FakeAppStorePair
from flask_retention.testing.serving import serve

__all__ = [
    "BROKEN_VARIANT_REASONS",
    "AppStoreSigner",
    "FakeAppStore",
    "FakeAppStorePair",
    "FakeImage",
    "FakeMessage",
    "PerformanceTestRun",
    "RecordedRequest",
    "apple_rate_limits",
    "serve",
]
