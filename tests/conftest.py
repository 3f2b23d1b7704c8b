"""Shared fixtures: ``app``, ``retention``, ``client``, ``runner`` and the databases.

Every test that takes ``database_url`` runs once on SQLite and, when
``RETENTION_TEST_DATABASE_URL`` is set, once more on PostgreSQL, each in a
schema of its own so that tests (and test runs) never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner

from flask_retention import Retention

pytest_plugins = ["flask_retention.testing.fixtures"]

POSTGRES_URL = os.environ.get("RETENTION_TEST_DATABASE_URL")

DATABASES = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLAlchemy URL of an empty database (SQLite file, or a fresh PostgreSQL schema)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'retention.db'}"
        return
    assert POSTGRES_URL is not None
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def config() -> dict[str, object]:
    """Extra ``app.config`` for the ``app`` fixture; override or update it in a test module."""
    return {}


@pytest.fixture
def app(tmp_path: Path, config: dict[str, object]) -> Flask:
    """A bare Flask app with an instance folder of its own (no extension yet)."""
    app = Flask("retention_test_app", instance_path=str(tmp_path / "instance"))
    app.config.update(TESTING=True)
    app.config.update(config)
    return app


@pytest.fixture
def retention(app: Flask) -> Iterator[Retention]:
    """The extension, initialised on ``app``; its threads are stopped afterwards."""
    retention = Retention(app)
    yield retention
    retention.close(app)


@pytest.fixture
def client(app: Flask, retention: Retention) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask, retention: Retention) -> FlaskCliRunner:
    return app.test_cli_runner()
