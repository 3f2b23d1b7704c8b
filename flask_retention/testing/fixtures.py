"""Pytest fixtures for a :class:`~flask_retention.testing.FakeAppStore` on a loopback port.

Enable them in a ``conftest.py``::

    pytest_plugins = ["flask_retention.testing.fixtures"]

Override ``app_store_environment`` (or any other identity fixture) in a test
module to change what the fake expects; the fake itself is torn down, with
its server and any running performance test, after each test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from .fake_app_store import FakeAppStore, serve


@pytest.fixture
def app_store_key() -> ec.EllipticCurvePrivateKey:
    """A fresh EC P-256 key standing in for an In-App Purchase key (``.p8``)."""
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def app_store_key_id() -> str:
    """The key ID the fake expects in the JWT header ``kid``."""
    return "FAKEKEY123"


@pytest.fixture
def app_store_issuer_id() -> str:
    """The issuer ID the fake expects in the JWT claim ``iss``."""
    return str(uuid.UUID("57246542-96fe-1a63-e053-0824d011072a"))


@pytest.fixture
def app_store_bundle_id() -> str:
    """The bundle ID the fake expects in the JWT claim ``bid``."""
    return "com.example.retention"


@pytest.fixture
def app_store_environment() -> str:
    """``"Sandbox"`` (auto-approval) or ``"Production"`` (review until approved)."""
    return "Sandbox"


@pytest.fixture
def fake_app_store(
    app_store_key: ec.EllipticCurvePrivateKey,
    app_store_key_id: str,
    app_store_issuer_id: str,
    app_store_bundle_id: str,
    app_store_environment: str,
) -> Iterator[FakeAppStore]:
    """A :class:`FakeAppStore` that accepts tokens signed with ``app_store_key``."""
    store = FakeAppStore(
        public_key=app_store_key.public_key(),
        key_id=app_store_key_id,
        issuer_id=app_store_issuer_id,
        bundle_id=app_store_bundle_id,
        environment=app_store_environment,
        allow_http_targets=True,
    )
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def fake_app_store_url(fake_app_store: FakeAppStore) -> Iterator[str]:
    """The base URL of ``fake_app_store`` served on 127.0.0.1 (no trailing slash)."""
    with serve(fake_app_store) as url:
        yield url
