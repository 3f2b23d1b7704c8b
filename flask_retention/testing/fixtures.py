"""Pytest fixtures for a :class:`~flask_retention.testing.FakeAppStore` on a loopback port.

Enable them in a ``conftest.py``::

    pytest_plugins = ["flask_retention.testing.fixtures"]

Override ``app_store_product_ids`` with your app's products, and
``app_store_environment`` (or any other identity fixture) in a test module to
change what the fake expects; the fake itself is torn down, with its server
and any running performance test, after each test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from flask_retention.realtime.signer import AppStoreSigner
from flask_retention.testing.fake_app_store import FakeAppStore
from flask_retention.testing.serving import serve


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
def app_store_product_ids() -> Sequence[str]:
    """The products the app sells; the fake refuses defaults for others, as Apple does.

    Override it with your app's product IDs.
    """
    return ["com.example.retention.monthly", "com.example.retention.yearly"]


@pytest.fixture
def app_store_environment() -> str:
    """``"Sandbox"`` (auto-approval) or ``"Production"`` (review until approved)."""
    return "Sandbox"


@pytest.fixture
def app_store_signer() -> AppStoreSigner:
    """The test App Store's signer; trust ``app_store_signer.root_pem`` in the app under test."""
    return AppStoreSigner()


@pytest.fixture
def app_store_performance_test_config() -> dict[str, int]:
    """A short performance test: 20 requests, 4 at a time, no pacing, 2 s threshold.

    The threshold is looser than Apple's ~700 ms so that busy test machines do
    not fail it; override the fixture to test Apple's numbers.
    """
    return {
        "maxConcurrentRequests": 4,
        "totalRequests": 20,
        "totalDuration": 0,
        "responseTimeThreshold": 2000,
        "successRateThreshold": 95,
    }


@pytest.fixture
def fake_app_store(
    app_store_key: ec.EllipticCurvePrivateKey,
    app_store_key_id: str,
    app_store_issuer_id: str,
    app_store_bundle_id: str,
    app_store_product_ids: Sequence[str],
    app_store_environment: str,
    app_store_signer: AppStoreSigner,
    app_store_performance_test_config: dict[str, int],
) -> Iterator[FakeAppStore]:
    """A :class:`FakeAppStore` that accepts tokens signed with ``app_store_key``.

    It knows the products ``app_store_product_ids``; its performance test
    signs with ``app_store_signer``. Like Apple, it accepts only ``https://``
    real-time URLs: point its performance test at a loopback endpoint by
    setting ``fake_app_store.realtime_url`` directly.
    """
    store = FakeAppStore(
        public_key=app_store_key.public_key(),
        key_id=app_store_key_id,
        issuer_id=app_store_issuer_id,
        bundle_id=app_store_bundle_id,
        environment=app_store_environment,
        product_ids=app_store_product_ids,
        signer=app_store_signer,
        performance_test_config=app_store_performance_test_config,
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
