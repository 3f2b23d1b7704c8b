"""Where the catalogue lives: engine resolution and sessions (migrations:
:mod:`flask_retention.catalogue.schema`).

The engine is chosen, in order, from ``Retention(engine=...)``,
``Retention(db=...)`` (Flask-SQLAlchemy, resolved lazily in an app context),
``RETENTION_DATABASE_URI``, or a SQLite file ``retention.db`` in the app's
instance folder. flask-retention works in short-lived sessions of its own on
that engine, so it never commits (or rolls back) the host's pending work.

A failing database must not hold anything for ever: engines created here get
connect and TCP timeouts and a bounded pre-ping (:func:`create_engine`);
flask-retention's own work runs in :func:`bounded` transactions (a statement
timeout, a deadline, connections that heal, on any engine); the commands
check that the database answers first (:meth:`Database.bound_first_use`).
"""

from __future__ import annotations

import os
import socket
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, Protocol

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from flask_retention.core.errors import ConfigurationError, RetentionError
from flask_retention.core.per_process import PerProcess, process_lock

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


#: SQLSTATEs after which a connection is no good, beside class ``08`` (connection
#: exceptions): a read-only transaction (a standby, a database switched read-only: the
#: session keeps that state), and the server shutting the session down.
UNUSABLE_SQLSTATES: Final = frozenset({"25006", "57P01", "57P02", "57P03"})


#: The part of a :func:`bounded` block's deadline that one statement may run on the server.
STATEMENT_SHARE: Final = 0.8


class DatabaseTimeout(RetentionError, TimeoutError):
    """The database did not answer within a deadline of flask-retention's; the
    connection was abandoned (and invalidated)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the database did not answer within {seconds:g} s")
        self.seconds = seconds


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a database error (psycopg 3 or psycopg2), else ``None``."""
    orig = getattr(error, "orig", None) or error
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code if isinstance(code, str) else None


def connection_unusable(error: BaseException) -> bool:
    """Whether ``error`` means that the connection, not the statement, is no good: our
    deadline, a connection SQLAlchemy invalidated, SQLSTATE class ``08``, one of
    :data:`UNUSABLE_SQLSTATES`, or a driver error without a SQLSTATE (a lost socket)."""
    if isinstance(error, DatabaseTimeout):
        return True
    if isinstance(error, sa.exc.DBAPIError):
        if error.connection_invalidated:
            return True
        code = sqlstate(error)
        if code is not None:
            return code.startswith("08") or code in UNUSABLE_SQLSTATES
        return isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError)
    return False


def failure_reason(error: BaseException) -> str:
    """What went wrong with the database, on one line and in words a user can act on:
    silent, read-only, shut down, unreachable, tables missing, else the driver's message."""
    if isinstance(error, DatabaseTimeout):
        return f"{error}: it is stopped, overloaded, or the network to it stalled"
    orig = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    message = "; ".join(lines) or type(orig).__name__
    code = sqlstate(error)
    if code == "25006":
        return f"the database is read-only, as a standby or a full disk makes it ({message})"
    if code in UNUSABLE_SQLSTATES:
        return f"the database server ended the connection ({message})"
    if code == "42P01" or (code is None and "no such table" in message):
        return f"flask-retention's tables are missing ({message}); run `flask retention init-db`"
    if (code is not None and code.startswith("08")) or (
        code is None and connection_unusable(error) and "database is locked" not in message
    ):
        return f"the database cannot be reached ({message})"
    return message


def _shut(dbapi_connection: Any) -> None:
    """Shut the socket of a DBAPI connection down so that a call blocked on it returns
    (the driver then reports the connection lost); drivers without one are left alone."""
    fileno = getattr(dbapi_connection, "fileno", None)
    if fileno is None:
        return
    try:
        fd = fileno()
        if not isinstance(fd, int) or fd < 0:
            return
        sock = socket.socket(fileno=os.dup(fd))
    except Exception:  # closed already, or not a socket
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


class _Deadline:
    """A timer that shuts the held connection's socket down when ``seconds`` pass before
    :meth:`end`; the lock makes sure that a connection given back is never touched."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._held: Any = None
        self._ended = False
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.name = "flask-retention-deadline"
        self._timer.start()

    def hold(self, dbapi_connection: Any) -> None:
        """Watch ``dbapi_connection`` (``None``: none) until :meth:`end`."""
        with self._lock:
            if self._ended:
                return
            self._held = dbapi_connection
            if self.fired and dbapi_connection is not None:
                _shut(dbapi_connection)

    def _fire(self) -> None:
        with self._lock:
            if self._ended:
                return
            self.fired = True
            if self._held is not None:
                _shut(self._held)

    def end(self) -> None:
        with self._lock:
            self._ended = True
            self._held = None
        self._timer.cancel()


#: The deadline of the :func:`bounded` block running in this thread (or greenlet), which
#: the pre-ping of an engine we create runs under; made on first use in each process
#: (after gevent patched ``threading``).
_current: PerProcess[threading.local] = PerProcess(lambda: threading.local())


@contextmanager
def bounded(engine: sa.Engine, seconds: float) -> Iterator[sa.Connection]:
    """A connection of ``engine`` in a transaction of flask-retention's own, that neither a
    slow statement nor a silent database can hold for much longer than ``seconds``.

    Use it for all of flask-retention's own database work (on any engine, the
    host's too)::

        with bounded(engine, 5.0) as connection:
            connection.execute(...)

    The transaction commits when the block ends, and rolls back on an error.
    On PostgreSQL it starts with ``SET LOCAL statement_timeout``
    (:data:`STATEMENT_SHARE` of ``seconds``), so the server cancels a statement
    that runs too long and the connection stays usable (never a startup
    ``options`` parameter, which PgBouncer refuses). When the block has not
    ended ``seconds`` after it began, the connection's socket is shut down so
    that a call waiting on a silent server returns, and :class:`DatabaseTimeout`
    is raised. On an engine we create, this deadline also bounds the pre-ping
    of a pooled connection; it cannot interrupt a new connection being made
    (``connect_timeout`` bounds that) nor a pre-ping of the host's own engine.
    An error for which :func:`connection_unusable` holds invalidates this
    connection (only this one: no listener is added to the host's engine), so
    the next attempt gets a fresh one.
    """
    deadline = _Deadline(seconds)
    local = _current.get()
    outer = getattr(local, "deadline", None)
    local.deadline = deadline
    try:
        with engine.connect() as connection:
            try:
                deadline.hold(connection.connection.dbapi_connection)
                transaction = connection.begin()
                if connection.dialect.name == "postgresql":
                    milliseconds = max(1, round(seconds * STATEMENT_SHARE * 1000))
                    connection.exec_driver_sql(f"SET LOCAL statement_timeout = {milliseconds}")
                yield connection
                transaction.commit()
            except BaseException as e:
                deadline.end()
                if (deadline.fired or connection_unusable(e)) and not connection.invalidated:
                    connection.invalidate()
                raise
            finally:
                deadline.end()
    except Exception as e:
        if deadline.fired and not isinstance(e, DatabaseTimeout):
            raise DatabaseTimeout(seconds) from e
        raise
    finally:
        deadline.end()
        local.deadline = outer


#: Seconds the pre-ping of a pooled connection of an engine we create may take outside a
#: :func:`bounded` block (inside one, the block's deadline applies).
PING_TIMEOUT: Final = 5.0

_FRESH: Final = "flask_retention_fresh"


def _mark_fresh(dbapi_connection: Any, connection_record: Any) -> None:
    connection_record.info[_FRESH] = True


def _ping_on_checkout(dbapi_connection: Any, connection_record: Any, connection_proxy: Any) -> None:
    """Ping a pooled connection before it is used, as ``pool_pre_ping`` does, but under a
    deadline: a connection that fails it is replaced (``DisconnectionError``), and a
    :func:`bounded` block whose deadline passed meanwhile gets :class:`DatabaseTimeout`.
    A connection just made is not pinged."""
    if connection_record.info.pop(_FRESH, False):
        return
    caller: _Deadline | None = getattr(_current.get(), "deadline", None)
    deadline = caller or _Deadline(PING_TIMEOUT)
    deadline.hold(dbapi_connection)
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
    except Exception as e:
        if caller is not None and caller.fired:
            raise DatabaseTimeout(caller.seconds) from e
        raise sa.exc.DisconnectionError(f"the pre-ping failed ({e})") from e
    finally:
        if caller is None:
            deadline.end()
        else:
            deadline.hold(None)


def check_answers(engine: sa.Engine, seconds: float) -> None:
    """Raise :class:`DatabaseTimeout` unless the database of ``engine`` connects and
    answers ``SELECT 1`` within ``seconds`` (SQLite, a local file, is not asked).

    The attempt runs in a daemon thread, so that even a connection attempt
    that the driver does not bound (a host's engine without
    ``connect_timeout``) cannot hold the caller; it is meant for commands,
    whose process ends soon after. Database errors are raised as they are.
    """
    if engine.dialect.name == "sqlite":
        return
    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            with bounded(engine, seconds) as connection:
                connection.execute(sa.text("SELECT 1"))
        except BaseException as e:
            outcome.append(e)
        else:
            outcome.append(None)

    thread = threading.Thread(target=probe, name="flask-retention-probe", daemon=True)
    thread.start()
    thread.join(seconds)
    if not outcome:
        raise DatabaseTimeout(seconds)
    if outcome[0] is not None:
        raise outcome[0]


#: libpq parameters of the PostgreSQL engines flask-retention creates (psycopg 3 and
#: psycopg2): give up on a new connection after 5 s; probe an idle connection after
#: 30 s and drop it after 3 unanswered probes 10 s apart; drop a connection whose sent
#: data the server has not acknowledged for 30 s (a host that vanished). A parameter in
#: the URL's query (``?connect_timeout=2``) wins over these.
POSTGRESQL_CONNECT_ARGS: Final[dict[str, int]] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 30000,
}

#: Seconds after which a pooled connection of an engine we create is replaced.
POOL_RECYCLE: Final = 1800

_LIBPQ_DRIVERS: Final = frozenset({"psycopg", "psycopg2", "psycopg2cffi"})


def create_engine(url: str | sa.URL, **kwargs: Any) -> sa.Engine:
    """A SQLAlchemy engine for ``url``: SQLite files get WAL and a busy timeout; PostgreSQL
    (psycopg 3 or psycopg2) gets :data:`POSTGRESQL_CONNECT_ARGS`, a pre-ping and a recycle.

    WAL lets readers (every web worker's snapshot) run beside one writer, and
    the busy timeout makes a second writer wait instead of failing at once.
    The libpq parameters bound a connection attempt and detect a vanished host.
    A pooled connection is pinged before use and replaced when the ping fails,
    as with ``pool_pre_ping``, but within :data:`PING_TIMEOUT` (or the deadline
    of the :func:`bounded` block asking): SQLAlchemy's own ping would wait on a
    silent server for ever. A connection older than :data:`POOL_RECYCLE`
    seconds is replaced. ``kwargs`` (and parameters in the URL) win over all of
    these; ``pool_pre_ping=True`` brings SQLAlchemy's ping back. Other network
    databases get ``pool_pre_ping`` and the recycle.
    """
    url = sa.make_url(url)
    libpq = url.get_backend_name() == "postgresql" and url.get_driver_name() in _LIBPQ_DRIVERS
    if url.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_recycle", POOL_RECYCLE)
        if not libpq:
            kwargs.setdefault("pool_pre_ping", True)
    if libpq:
        given = kwargs.get("connect_args", {})
        kwargs["connect_args"] = {
            **{k: v for k, v in POSTGRESQL_CONNECT_ARGS.items() if k not in url.query},
            **given,
        }
    engine = sa.create_engine(url, **kwargs)
    if libpq and not kwargs.get("pool_pre_ping"):
        event.listen(engine, "connect", _mark_fresh)
        event.listen(engine, "checkout", _ping_on_checkout)
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
        self._first_use_bound: float | None = None

    def bound_first_use(self, seconds: float) -> None:
        """Make the next read of :attr:`engine` first check that the database answers
        within ``seconds`` (:func:`check_answers`), raising
        :class:`DatabaseTimeout` otherwise: the ``flask retention`` commands'
        bound on a silent database."""
        self._first_use_bound = seconds

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
        seconds, self._first_use_bound = self._first_use_bound, None
        if seconds is not None:
            check_answers(engine, seconds)
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
