"""Fixtures of the sync and command tests: a test app whose catalogue syncs with the fake
App Store over loopback HTTP, and its CLI runner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskCliRunner

from flask_retention.api import reset_rate_limits
from flask_retention.testing import AppStoreSigner

from .support import sync_app


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    reset_rate_limits()
    yield
    reset_rate_limits()


@pytest.fixture
def selector_delay() -> float:
    """Seconds the test app's selector sleeps (a module sets it to make the endpoint slow)."""
    return 0.0


@pytest.fixture
def extra_config() -> dict[str, Any]:
    """More ``app.config`` for the test app, or its ``tuning`` (a module or test overrides it)."""
    return {}


@pytest.fixture
def app(
    tmp_path: Path,
    database_url: str,
    fake_app_store_url: str,
    app_store_key: ec.EllipticCurvePrivateKey,
    app_store_key_id: str,
    app_store_issuer_id: str,
    app_store_bundle_id: str,
    app_store_signer: AppStoreSigner,
    selector_delay: float,
    extra_config: dict[str, Any],
) -> Iterator[Flask]:
    with sync_app(
        tmp_path,
        database_url,
        store_url=fake_app_store_url,
        key=app_store_key,
        key_id=app_store_key_id,
        issuer_id=app_store_issuer_id,
        bundle_id=app_store_bundle_id,
        signer=app_store_signer,
        selector_delay=selector_delay,
        **extra_config,
    ) as app:
        yield app


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()
