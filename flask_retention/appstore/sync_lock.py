"""The sync lock: one row per environment in ``retention_sync_locks``, so that one sync at a
time talks to Apple for an environment.

A sync takes the row (:func:`acquire_sync_lock`), a background thread moves
its heartbeat every few seconds while the sync runs
(:meth:`SyncLockHandle.start_heartbeat`), and the row is deleted at the end,
also when the sync stops on an error or a signal (over a connection of its
own and within a time limit, so that a silent database cannot hold the
process). A row whose heartbeat is older than the timeout (a minute by
default) belongs to a sync that was killed and is taken over by the next one.
On PostgreSQL the heartbeats and their ages are read on the database's clock,
so hosts whose clocks differ agree on what is stale. :func:`sync_lock_info`
says who holds the lock and since when.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid as uuid_mod
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa

from flask_retention.catalogue.models import SyncLock, utcnow
from flask_retention.core.database import bounded
from flask_retention.core.errors import RetentionError

__all__ = [
    "DEFAULT_LOCK_HEARTBEAT",
    "DEFAULT_LOCK_RELEASE_TIMEOUT",
    "DEFAULT_LOCK_TIMEOUT",
    "SyncInterrupted",
    "SyncLockHandle",
    "SyncLockInfo",
    "SyncLockedError",
    "acquire_sync_lock",
    "default_owner",
    "sync_lock_info",
]

logger = logging.getLogger(__name__)

#: Seconds after its last heartbeat that a sync lock counts as abandoned and is taken over.
DEFAULT_LOCK_TIMEOUT: Final = 60.0

#: Seconds between two heartbeats of a running sync (at most a quarter of the timeout).
DEFAULT_LOCK_HEARTBEAT: Final = 15.0

#: Seconds a sync that stops on an error or a signal waits for its lock to be deleted.
DEFAULT_LOCK_RELEASE_TIMEOUT: Final = 5.0


def _seconds(value: float) -> str:
    return f"{value:g} s" if value < 120 else f"{value / 60:g} min"


class SyncLockedError(RetentionError):
    """Another sync holds the lock of this environment (and its heartbeat is fresh)."""

    def __init__(
        self,
        environment: str,
        owner: str,
        since: datetime | None,
        *,
        timeout: float | None = None,
    ) -> None:
        self.environment = environment
        self.owner = owner
        self.since = since
        when = f" since {since.isoformat(timespec='seconds')}" if since is not None else ""
        stale = "" if timeout is None else f" {_seconds(timeout)} after its last heartbeat"
        super().__init__(
            f"another sync of {environment} is running ({owner}{when}); wait for it to finish "
            f"(the lock of a sync that was killed is taken over{stale})"
        )


class SyncInterrupted(BaseException):
    """A signal stopped the sync; raised by the ``sync`` command's SIGTERM handler.

    A :class:`BaseException`, like :class:`KeyboardInterrupt`, so that no
    ``except Exception`` on the way swallows it. ``lock_released`` says what
    became of the lock: ``True`` released, ``False`` not released in time
    (it goes stale after the lock timeout), ``None`` no lock was held yet.
    """

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.lock_released: bool | None = None


def _locks() -> sa.Table:
    table = SyncLock.__table__
    assert isinstance(table, sa.Table)
    return table


def _cause(error: Exception) -> str:
    """The driver's one-line reason of a database error (not SQLAlchemy's SQL and links)."""
    orig = getattr(error, "orig", None)
    return " ".join(str(orig if orig is not None else error).split()) or type(error).__name__


def _now(connection: sa.Connection) -> datetime:
    """The database's clock on PostgreSQL (one clock for every host), this host's elsewhere."""
    if connection.dialect.name == "postgresql":
        now = connection.execute(sa.select(sa.func.now())).scalar_one()
        assert isinstance(now, datetime)
        return now
    return utcnow()


class SyncLockHandle:
    """A held sync lock: :meth:`start_heartbeat` while the sync runs, :meth:`refresh` after
    each step, :meth:`release` at the end (or leave the ``with`` block)."""

    def __init__(
        self,
        engine: sa.Engine,
        environment: str,
        owner: str,
        *,
        timeout: float = DEFAULT_LOCK_TIMEOUT,
        release_timeout: float = DEFAULT_LOCK_RELEASE_TIMEOUT,
    ) -> None:
        self.engine = engine
        self.environment = environment
        self.owner = owner
        self.timeout = timeout
        self.release_timeout = release_timeout
        self.taken_over: str | None = None
        self._lost: SyncLockedError | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> None:
        """Move the heartbeat on; raise :class:`SyncLockedError` if another sync took the lock
        (here, or as the heartbeat thread found)."""
        if self._lost is not None:
            raise self._lost
        self._beat()

    def _beat(self) -> None:
        table = _locks()
        with bounded(self.engine, self.release_timeout) as connection:
            updated = connection.execute(
                sa.update(table)
                .where(table.c.environment == self.environment, table.c.owner == self.owner)
                .values(heartbeat_at=_now(connection))
            )
            if updated.rowcount != 1:
                row = connection.execute(
                    sa.select(table.c.owner, table.c.acquired_at).where(
                        table.c.environment == self.environment
                    )
                ).first()
                raise SyncLockedError(
                    self.environment,
                    row.owner if row is not None else "nobody",
                    row.acquired_at if row is not None else None,
                    timeout=self.timeout,
                )

    def start_heartbeat(self, interval: float = DEFAULT_LOCK_HEARTBEAT) -> None:
        """Move the heartbeat every ``interval`` seconds (at most a quarter of the lock's
        timeout) in a daemon thread, until :meth:`release`.

        A step may wait long under Apple's pacing; the heartbeat keeps the
        lock fresh meanwhile. When another sync took the lock over, the
        thread stops and the next :meth:`refresh` raises.
        """
        if self._thread is not None:
            return
        every = max(0.001, min(interval, self.timeout / 4))
        self._thread = threading.Thread(
            target=self._heartbeat,
            args=(every,),
            name=f"flask-retention sync lock heartbeat ({self.environment})",
            daemon=True,
        )
        self._thread.start()

    def _heartbeat(self, interval: float) -> None:
        failing = False
        while not self._stop.wait(interval):
            try:
                self._beat()
            except SyncLockedError as e:
                self._lost = e
                if not self._stop.is_set():  # not the release, racing this beat
                    logger.warning("the sync lock of %s was taken over: %s", self.environment, e)
                return
            except Exception as e:  # a background thread: log, and try again
                if not failing:
                    logger.warning(
                        "could not move the heartbeat of the sync lock of %s (trying again "
                        "every %g s): %s",
                        self.environment,
                        interval,
                        _cause(e),
                    )
                failing = True
            else:
                if failing:
                    logger.info("the sync lock of %s has its heartbeat again", self.environment)
                failing = False

    def _stop_heartbeat(self, *, wait: bool) -> None:
        self._stop.set()
        thread = self._thread
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join(self.release_timeout)

    def release(self, *, timeout: float | None = None) -> bool:
        """Give the lock up (only ours: a lock another sync took over stays).

        With ``timeout``, the row is deleted over a new connection of its
        own (the pooled ones may be in the middle of what was interrupted),
        and given up after ``timeout`` seconds when the database does not
        answer: returns whether the lock was released. A lock left behind
        goes stale after the lock's timeout.
        """
        self._stop_heartbeat(wait=timeout is None)
        if timeout is None:
            self._delete(self.engine, self.release_timeout)
            return True
        done = threading.Event()

        def release_fresh() -> None:
            fresh = sa.create_engine(self.engine.url, pool=self.engine.pool.recreate())
            try:
                self._delete(fresh, timeout)
                done.set()
            except Exception as e:  # a background thread: log, and say it failed
                logger.warning(
                    "could not release the sync lock of %s: %s", self.environment, _cause(e)
                )
            finally:
                fresh.dispose()

        thread = threading.Thread(
            target=release_fresh,
            name=f"flask-retention sync lock release ({self.environment})",
            daemon=True,
        )
        thread.start()
        thread.join(timeout)
        if not done.is_set():
            logger.warning(
                "the sync lock of %s was not released within %g s; the next sync takes it "
                "over %s after its last heartbeat",
                self.environment,
                timeout,
                _seconds(self.timeout),
            )
        return done.is_set()

    def _delete(self, engine: sa.Engine, seconds: float) -> None:
        table = _locks()
        with bounded(engine, seconds) as connection:
            connection.execute(
                sa.delete(table).where(
                    table.c.environment == self.environment, table.c.owner == self.owner
                )
            )

    def __enter__(self) -> SyncLockHandle:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            self.release()
            return
        released = self.release(timeout=self.release_timeout)
        if isinstance(exc, SyncInterrupted):
            exc.lock_released = released


def default_owner() -> str:
    """Who holds a lock, for the message another sync shows: host, process, a nonce."""
    return f"{socket.gethostname()} pid {os.getpid()} ({uuid_mod.uuid4().hex[:8]})"


def acquire_sync_lock(
    engine: sa.Engine,
    environment: str,
    *,
    owner: str | None = None,
    timeout: float = DEFAULT_LOCK_TIMEOUT,
    release_timeout: float = DEFAULT_LOCK_RELEASE_TIMEOUT,
) -> SyncLockHandle:
    """Take the sync lock of ``environment``, or raise :class:`SyncLockedError`.

    A lock whose heartbeat is older than ``timeout`` seconds belongs to a sync
    that died; it is taken over (compare-and-set on its owner and heartbeat,
    so two takers cannot both win). ``release_timeout`` bounds each
    statement on the lock (PostgreSQL) and the release after an error.
    """
    table = _locks()
    owner = owner or default_owner()

    def handle() -> SyncLockHandle:
        return SyncLockHandle(
            engine, environment, owner, timeout=timeout, release_timeout=release_timeout
        )

    for _attempt in range(3):
        try:
            with bounded(engine, release_timeout) as connection:
                now = _now(connection)
                connection.execute(
                    sa.insert(table).values(
                        environment=environment, owner=owner, acquired_at=now, heartbeat_at=now
                    )
                )
            return handle()
        except sa.exc.IntegrityError:
            pass
        with bounded(engine, release_timeout) as connection:
            now = _now(connection)
            row = connection.execute(
                sa.select(table.c.owner, table.c.acquired_at, table.c.heartbeat_at).where(
                    table.c.environment == environment
                )
            ).first()
            if row is None:
                continue
            if row.heartbeat_at > now - timedelta(seconds=timeout):
                raise SyncLockedError(environment, row.owner, row.acquired_at, timeout=timeout)
            taken = connection.execute(
                sa.update(table)
                .where(
                    table.c.environment == environment,
                    table.c.owner == row.owner,
                    table.c.heartbeat_at == row.heartbeat_at,
                )
                .values(owner=owner, acquired_at=now, heartbeat_at=now)
            )
            if taken.rowcount == 1:
                logger.warning(
                    "took over the stale sync lock of %s from %s (no heartbeat since %s)",
                    environment,
                    row.owner,
                    row.heartbeat_at.isoformat(timespec="seconds"),
                )
                held = handle()
                held.taken_over = row.owner
                return held
    raise SyncLockedError(environment, "another sync", None, timeout=timeout)


@dataclass(frozen=True, slots=True)
class SyncLockInfo:
    """Who holds the sync lock of ``environment`` (``owner``: host, process, a nonce) and since
    when; ``heartbeat_age`` is the seconds since its last heartbeat, and ``stale`` whether
    the next sync takes it over."""

    environment: str
    owner: str
    acquired_at: datetime
    heartbeat_at: datetime
    heartbeat_age: float
    stale: bool

    def to_json(self) -> dict[str, Any]:
        """The lock as JSON-ready data."""
        return {
            "owner": self.owner,
            "acquired_at": self.acquired_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat(),
            "heartbeat_age": round(self.heartbeat_age, 1),
            "stale": self.stale,
        }


def sync_lock_info(
    engine: sa.Engine,
    environment: str,
    *,
    timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> SyncLockInfo | None:
    """Who holds the sync lock of ``environment``, or ``None`` when no sync holds it."""
    table = _locks()
    with bounded(engine, DEFAULT_LOCK_RELEASE_TIMEOUT) as connection:
        now = _now(connection)
        row = connection.execute(
            sa.select(table.c.owner, table.c.acquired_at, table.c.heartbeat_at).where(
                table.c.environment == environment
            )
        ).first()
    if row is None:
        return None
    age = max(0.0, (now - row.heartbeat_at).total_seconds())
    return SyncLockInfo(
        environment=environment,
        owner=row.owner,
        acquired_at=row.acquired_at,
        heartbeat_at=row.heartbeat_at,
        heartbeat_age=age,
        stale=age > timeout,
    )
