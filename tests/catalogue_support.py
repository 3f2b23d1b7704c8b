"""Helpers for catalogue tests: apps on a migrated database, and PNG images."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask

from flask_retention import Retention, Tuning
from flask_retention.catalogue.png import encode_png
from flask_retention.catalogue.schema import upgrade
from flask_retention.core.config import DEFAULT_TUNING
from flask_retention.core.database import create_engine


def full_png(color: tuple[int, int, int] = (0, 122, 255), height: int = 400) -> bytes:
    """A valid FULL_SIZE image (3840 px wide)."""
    return encode_png(3840, height, color=color)


def bullet_png(color: tuple[int, int, int] = (52, 199, 89)) -> bytes:
    """A valid BULLET_POINT image (1024x1024)."""
    return encode_png(1024, 1024, color=color)


def migrated_engine(url: str) -> sa.Engine:
    """An engine on ``url`` with flask-retention's tables created."""
    engine = create_engine(url)
    upgrade(engine)
    return engine


@contextmanager
def retention_app(
    tmp_path: Path,
    database_url: str,
    *,
    mode: str = "engine",
    tuning: Tuning = DEFAULT_TUNING,
    **config: Any,
) -> Iterator[tuple[Flask, Retention]]:
    """A Flask app with the extension on ``database_url``, given as ``mode``.

    ``mode`` is ``"engine"`` (``Retention(engine=)``), ``"flask-sqlalchemy"``
    (``Retention(db=)``) or ``"uri"`` (``RETENTION_DATABASE_URI``). The
    extension's threads are closed afterwards.
    """
    app = Flask("retention_catalogue_test", instance_path=str(tmp_path / "instance"))
    app.config.update(TESTING=True, RETENTION_CATALOGUE_REFRESH=0.05, **config)
    engine = None
    if mode == "engine":
        engine = create_engine(database_url)
        retention = Retention(app, engine=engine, tuning=tuning)
    elif mode == "flask-sqlalchemy":
        from flask_sqlalchemy import SQLAlchemy

        db = SQLAlchemy()
        app.config["SQLALCHEMY_DATABASE_URI"] = database_url
        db.init_app(app)
        retention = Retention(app, db=db, tuning=tuning)
    else:
        app.config["RETENTION_DATABASE_URI"] = database_url
        retention = Retention(app, tuning=tuning)
    try:
        yield app, retention
    finally:
        retention.close(app)
        if engine is not None:
            engine.dispose()
        if mode == "flask-sqlalchemy":
            with app.app_context():
                app.extensions["sqlalchemy"].engine.dispose()
