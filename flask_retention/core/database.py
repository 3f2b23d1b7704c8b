"""Where the catalogue lives: engine resolution and sessions (migrations:
:mod:`flask_retention.catalogue.schema`).

The engine is chosen, in order, from ``Retention(engine=...)``,
``Retention(db=...)`` (Flask-SQLAlchemy, resolved lazily in an app context),
``RETENTION_DATABASE_URI``, or a SQLite file ``retention.db`` in the app's
instance folder. flask-retention works in short-lived sessions of its own on
that engine, so it never commits (or rolls back) the host's pending work.
"""

from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING, Any, Final, Protocol

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from flask_retention.core.errors import ConfigurationError
from flask_retention.core.per_process import process_lock

if TYPE_CHECKING:
    from flask import Flask

DEFAULT_SQLITE_FILE: Final = "retention.db"

#: Seconds a SQLite connection waits for another writer before giving up.
SQLITE_BUSY_TIMEOUT: Final = 30.0


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def create_engine(url: str | sa.URL, **kwargs: Any) -> sa.Engine:
    """A SQLAlchemy engine for ``url``; SQLite files get WAL and a busy timeout.

    WAL lets readers (every web worker's snapshot) run beside one writer, and
    the busy timeout makes a second writer wait instead of failing at once.
    """
    engine = sa.create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


class HasEngine(Protocol):
    """What we use of a Flask-SQLAlchemy (or -Lite) extension: its engine for the app in
    context."""

    @property
    def engine(self) -> sa.Engine: ...


class Database:
    """The engine and sessions of one app, resolved on first use.

    Nothing connects (or creates a folder) until :attr:`engine` is first read.
    """

    def __init__(
        self,
        app: Flask,
        *,
        db: HasEngine | None = None,
        engine: sa.Engine | None = None,
        uri: str | None = None,
    ) -> None:
        self._app = weakref.ref(app)
        self._db = db
        self._given = engine
        self._uri = uri
        self._instance_path = app.instance_path
        self._engine: sa.Engine | None = engine
        self._owned = False
        self._pid = os.getpid()
        self._lock = process_lock()
        self._sessionmaker: sessionmaker[Session] | None = None

    @property
    def engine(self) -> sa.Engine:
        """The catalogue's engine (resolved and, for a URL, created on first use).

        In a process forked after an engine of ours connected (``gunicorn
        --preload``), its pooled connections belong to the parent: the first
        use here drops them unclosed, as SQLAlchemy advises, so that two
        processes never share a socket. The host's own engine is the host's.
        """
        engine = self._engine
        if engine is None:
            with self._lock.get():
                if self._engine is None:
                    self._engine, self._owned = self._resolve()
                    self._pid = os.getpid()
                engine = self._engine
        elif self._pid != os.getpid():
            self._pid = os.getpid()
            if self._owned:
                engine.dispose(close=False)
        return engine

    def _resolve(self) -> tuple[sa.Engine, bool]:
        if self._db is not None:
            return self._flask_sqlalchemy_engine(self._db), False
        if self._uri is not None:
            try:
                return create_engine(self._uri), True
            except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as e:
                raise ConfigurationError(
                    f"RETENTION_DATABASE_URI is not a usable SQLAlchemy URL: {e}"
                ) from None
        os.makedirs(self._instance_path, exist_ok=True)
        path = os.path.join(self._instance_path, DEFAULT_SQLITE_FILE)
        return create_engine(sa.URL.create("sqlite", database=path)), True

    def _flask_sqlalchemy_engine(self, db: HasEngine) -> sa.Engine:
        from flask import current_app, has_app_context

        app = self._app()
        if app is None:
            raise RuntimeError("the Flask app of this flask-retention database is gone")
        if has_app_context() and current_app == app:
            engine = db.engine
        else:
            with app.app_context():
                engine = db.engine
        assert isinstance(engine, sa.Engine)
        return engine

    def session(self) -> Session:
        """A new short-lived session on our engine (use it as a context manager)."""
        maker = self._sessionmaker
        if maker is None:
            maker = self._sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        return maker()

    def dispose(self) -> None:
        """Close the pooled connections of an engine we created (never the host's)."""
        with self._lock.get():
            if self._engine is not None and self._owned:
                self._engine.dispose()
