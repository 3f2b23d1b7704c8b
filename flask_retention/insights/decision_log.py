"""The decision log: every real-time request, written off the request path.

The endpoint hands each :class:`~flask_retention.realtime.decisions.Decision`
to :meth:`DecisionLogWriter.record`, which only appends it to an in-memory
queue (and wakes the writer when a batch is full). A daemon thread, started
on first use in the serving process (so that each forked worker starts its own),
writes the queue to ``retention_decisions`` in batches: every
``interval`` seconds (1 by default), as soon as ``batch_size`` decisions
(500) wait, on :meth:`~DecisionLogWriter.flush`,
and on :meth:`~DecisionLogWriter.close` (also run at interpreter exit).

When the database is unreachable the decisions wait in the queue, up to
``RETENTION_DECISION_LOG_QUEUE``; past it the oldest are dropped, and the
number dropped is logged when the database is back (or at exit).

A verified ``requestIdentifier`` answered by two processes or hosts (a replay
the per-process guard could not see) fails the table's unique key when
written; the second row is kept with ``request_identifier`` ``NULL``, the
identifier in ``claimed_request_identifier`` and ``replay`` true, counted and
logged.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa

from flask_retention.catalogue.models import metadata
from flask_retention.core.errors import first_line
from flask_retention.core.per_process import DaemonThread, PerProcess
from flask_retention.realtime.decisions import Decision

logger = logging.getLogger(__name__)

_TABLE: Final = metadata.tables["retention_decisions"]
_INSERT: Final = sa.insert(_TABLE)

WRITER_THREAD: Final = "flask-retention-decision-log"

#: Decisions deleted per transaction by :func:`purge_decisions`.
PURGE_BATCH: Final = 5000


def _cut(value: str | None, length: int) -> str | None:
    return value if value is None or len(value) <= length else value[:length]


def decision_row(decision: Decision) -> dict[str, Any]:
    """The ``retention_decisions`` row of a decision.

    A rejected request (any status but ``200``) never claims the unique
    ``request_identifier``: the identifier it carried, if it got as far as
    verification, goes to ``claimed_request_identifier``. Strings are cut to
    their column's length (Apple's values are far shorter).
    """
    rejected = decision.status != 200
    rid = decision.request_identifier
    return {
        "request_identifier": None if rejected else rid,
        "claimed_request_identifier": str(rid) if rejected and rid is not None else None,
        "original_transaction_id": _cut(decision.original_transaction_id, 64),
        "product_id": _cut(decision.product_id, 200),
        "locale": _cut(decision.locale, 32),
        "environment": _cut(decision.environment, 16),
        "selector": _cut(decision.selector, 200),
        "kind": None if rejected else decision.kind,
        "message_uuid": decision.message_id,
        "fallback_reason": decision.fallback_reason,
        "experiment": _cut(decision.experiment, 200),
        "variant": _cut(decision.variant, 200),
        "status": decision.status,
        "error": _cut(decision.error, 64),
        "latency_ms": decision.latency_ms,
        "created_at": decision.received_at,
        "replay": False,
    }


class _Unwritten(Exception):
    """A database failure part-way through a batch; ``remaining`` were not written."""

    def __init__(self, cause: BaseException, remaining: list[Decision]) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.remaining = remaining


@dataclass(eq=False)
class _Queue:
    """One process's queue of decisions, its writer thread and its counts."""

    # Made in the serving process on first use (gevent's lock when it is patched).
    cond: threading.Condition = field(default_factory=lambda: threading.Condition())
    writer: DaemonThread = field(default_factory=lambda: DaemonThread(WRITER_THREAD))
    decisions: deque[Decision] = field(default_factory=deque)
    stop: bool = False
    recorded: int = 0  # decisions handed to record() in this process
    settled: int = 0  # of them, written or dropped
    flush_target: int = 0
    failing: bool = False
    drop_warned: bool = False
    outage_dropped: int = 0
    written: int = 0
    dropped: int = 0
    replays: int = 0

    def count_drops(self, count: int) -> bool:
        """Count ``count`` dropped decisions (lock held); ``True`` for the outage's first."""
        self.dropped += count
        self.outage_dropped += count
        self.settled += count
        first, self.drop_warned = not self.drop_warned, True
        return first


def _writer_loop(ref: weakref.ReferenceType[DecisionLogWriter], queue: _Queue) -> None:
    while True:
        writer = ref()
        if writer is None or not writer._step(queue):
            return
        del writer


def _close_at_exit(ref: weakref.ReferenceType[DecisionLogWriter]) -> None:
    writer = ref()
    if writer is not None:
        writer.close()


class DecisionLogWriter:
    """A bounded queue of decisions and the thread that writes it in batches.

    ``engine`` is called (in the writer thread) to get the database engine.
    :meth:`record` is the request path's only call: it never touches the
    database. ``max_queue`` bounds the decisions held in memory, ``batch_size``
    the rows per insert, ``interval`` the seconds between writes (and between
    retries while the database is unreachable). Each process has its own
    queue and thread (a forked child starts with an empty one).
    """

    def __init__(
        self,
        engine: Callable[[], sa.Engine],
        *,
        max_queue: int = 10000,
        batch_size: int = 500,
        interval: float = 1.0,
    ) -> None:
        if max_queue < 1 or batch_size < 1 or interval <= 0:
            raise ValueError("max_queue and batch_size must be >= 1 and interval > 0")
        self._engine = engine
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.interval = interval
        self._queues: PerProcess[_Queue] = PerProcess(_Queue)
        atexit.register(_close_at_exit, weakref.ref(self))

    # -- the request path ----------------------------------------------------

    def record(self, decision: Decision) -> None:
        """Queue ``decision`` for writing; never waits on the database.

        A full queue drops its oldest decision (counted, and logged once per
        outage).
        """
        queue = self._queues.get()
        if not queue.writer.alive:
            self.start()
        first_drop = False
        with queue.cond:
            decisions = queue.decisions
            if len(decisions) >= self.max_queue:
                decisions.popleft()
                first_drop = queue.count_drops(1)
            decisions.append(decision)
            queue.recorded += 1
            if len(decisions) == self.batch_size:
                queue.cond.notify()
        if first_drop:
            self._warn_full()

    def _warn_full(self) -> None:
        logger.warning(
            "flask-retention: the decision log queue is full (RETENTION_DECISION_LOG_QUEUE=%d); "
            "the oldest decisions are being dropped until the database is written again.",
            self.max_queue,
        )

    # -- state -----------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Decisions recorded but not yet written (queued, or in the batch being written)."""
        return self.stats()["pending"]

    def stats(self) -> dict[str, int]:
        """Counts of this process: ``pending``, ``written``, ``dropped``, ``replays``."""
        queue = self._queues.peek()
        if queue is None:
            return {"pending": 0, "written": 0, "dropped": 0, "replays": 0}
        with queue.cond:
            return {
                "pending": queue.recorded - queue.settled,
                "written": queue.written,
                "dropped": queue.dropped,
                "replays": queue.replays,
            }

    # -- thread ----------------------------------------------------------------

    def start(self) -> _Queue:
        """Start the writer thread in this process, unless it is running; its queue."""
        queue = self._queues.get()

        def unstop() -> None:
            with queue.cond:
                queue.stop = False

        queue.writer.start(_writer_loop, weakref.ref(self), queue, before=unstop)
        return queue

    def flush(self, timeout: float | None = None) -> bool:
        """Write every decision recorded so far; ``True`` once written (or dropped).

        ``False`` when ``timeout`` seconds passed first (the database is
        unreachable, say); the decisions stay queued.
        """
        queue = self._queues.peek()
        if queue is None:
            return True
        if not queue.writer.alive:
            if not queue.decisions:
                return True
            self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        cond = queue.cond
        with cond:
            target = queue.recorded
            queue.flush_target = max(queue.flush_target, target)
            cond.notify_all()
            while queue.settled < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                cond.wait(remaining)
            return True

    def close(self, timeout: float | None = 10.0) -> None:
        """Write what is queued and stop the writer thread; safe to repeat.

        A later :meth:`record` starts a new thread. When the database cannot
        be reached, the decisions still queued are logged as lost.
        """
        queue = self._queues.peek()
        if queue is None:
            return

        def stop() -> None:
            with queue.cond:
                queue.stop = True
                queue.cond.notify_all()

        if not queue.writer.stop(stop, timeout):
            logger.warning(
                "flask-retention: the decision log writer did not finish within %s s; "
                "%d decisions are still queued.",
                timeout,
                len(queue.decisions),
            )
            return
        if queue.decisions:
            # The thread is gone (or never ran): write the rest in the caller.
            with queue.cond:
                queue.stop = True
            while self._step(queue):
                pass

    # -- the writer ------------------------------------------------------------

    def _step(self, queue: _Queue) -> bool:
        """Wait for work, write one batch; ``False`` when the thread should end."""
        cond = queue.cond
        with cond:
            if queue.failing and not queue.stop:
                deadline = time.monotonic() + self.interval
                while not queue.stop and (left := deadline - time.monotonic()) > 0:
                    cond.wait(left)
            elif (
                not queue.stop
                and len(queue.decisions) < self.batch_size
                and queue.flush_target <= queue.settled
            ):
                cond.wait(self.interval)
            stopping = queue.stop
            decisions = queue.decisions
            batch = [decisions.popleft() for _ in range(min(len(decisions), self.batch_size))]
        if not batch:
            return not stopping
        try:
            written, replays = self._write(batch)
        except _Unwritten as e:
            self._requeue(queue, e.remaining, e.cause)
            if stopping:
                with cond:
                    lost = len(queue.decisions)
                    queue.decisions.clear()
                    queue.count_drops(lost)
                    cond.notify_all()
                logger.error(
                    "flask-retention: %d decisions could not be written at exit (%s); they are "
                    "lost.",
                    lost,
                    first_line(e.cause),
                )
                return False
            return True
        self._settle(queue, len(batch), written, replays)
        return True

    def _write(self, batch: list[Decision]) -> tuple[int, list[str]]:
        """Insert ``batch``; ``(rows written, replayed identifiers)``.

        One ``executemany`` in the usual case. When it breaks the unique key
        (a replay, answered by another process too), the batch is written
        row by row and each replay is stored as such.
        """
        rows = [decision_row(d) for d in batch]
        try:
            engine = self._engine()
            with engine.begin() as connection:
                connection.execute(_INSERT, rows)
            return len(rows), []
        except sa.exc.IntegrityError:
            pass
        except Exception as e:
            raise _Unwritten(e, batch) from None
        replays: list[str] = []
        written = 0
        for index, row in enumerate(rows):
            try:
                try:
                    with engine.begin() as connection:
                        connection.execute(_INSERT, [row])
                except sa.exc.IntegrityError as e:
                    rid = row["request_identifier"]
                    if rid is None:
                        logger.error(
                            "flask-retention: a decision could not be written (%s); skipped.",
                            first_line(e.orig if e.orig is not None else e),
                        )
                        continue
                    replay = dict(
                        row,
                        request_identifier=None,
                        claimed_request_identifier=str(rid),
                        replay=True,
                    )
                    with engine.begin() as connection:
                        connection.execute(_INSERT, [replay])
                    replays.append(str(rid))
                written += 1
            except Exception as e:
                raise _Unwritten(e, batch[index:]) from None
        return written, replays

    def _settle(self, queue: _Queue, count: int, written: int, replays: list[str]) -> None:
        """Count a written batch, after logging about it (a flush returns after the log)."""
        with queue.cond:
            recovered = queue.failing
            dropped = queue.outage_dropped
            queue.failing = False
            queue.drop_warned = False
            queue.outage_dropped = 0
        if recovered:
            logger.warning(
                "flask-retention writes the decision log again; %d decisions were dropped "
                "during the outage (RETENTION_DECISION_LOG_QUEUE=%d).",
                dropped,
                self.max_queue,
            )
        elif dropped:
            logger.warning(
                "flask-retention: %d decisions were dropped because the decision log queue "
                "filled faster than it was written (RETENTION_DECISION_LOG_QUEUE=%d); raise "
                "it.",
                dropped,
                self.max_queue,
            )
        if replays:
            logger.warning(
                "flask-retention: %d requestIdentifier(s) were answered twice, by this and "
                "another process or host (replays: %s); recorded as replays.",
                len(replays),
                ", ".join(replays[:5]) + (", ..." if len(replays) > 5 else ""),
            )
        with queue.cond:
            queue.written += written
            queue.dropped += count - written
            queue.replays += len(replays)
            queue.settled += count
            queue.cond.notify_all()

    def _requeue(self, queue: _Queue, remaining: list[Decision], cause: BaseException) -> None:
        """Put an unwritten batch back at the head of the queue, within its bound."""
        first_failure = False
        first_drop = False
        with queue.cond:
            decisions = queue.decisions
            room = self.max_queue - len(decisions)
            if room < len(remaining):
                excess = len(remaining) - max(room, 0)
                first_drop = queue.count_drops(excess)
                remaining = remaining[excess:]
            decisions.extendleft(reversed(remaining))
            while len(decisions) > self.max_queue:  # only if the bound was exceeded meanwhile
                decisions.popleft()
                first_drop = queue.count_drops(1) or first_drop
            if not queue.failing:
                queue.failing = first_failure = True
            waiting = len(decisions)
            queue.cond.notify_all()
        if first_failure:
            logger.warning(
                "flask-retention could not write the decision log (%s); %d decisions wait in "
                "memory (at most RETENTION_DECISION_LOG_QUEUE=%d, the oldest dropped past it) "
                "and are retried every %s s. Is the database reachable, and did "
                "`flask retention init-db` run?",
                first_line(cause),
                waiting,
                self.max_queue,
                self.interval,
            )
        if first_drop:
            self._warn_full()


# -- retention -------------------------------------------------------------------


def purge_decisions(
    engine: sa.Engine,
    older_than: timedelta | datetime,
    *,
    batch_size: int = PURGE_BATCH,
    now: datetime | None = None,
) -> int:
    """Delete decisions recorded before ``older_than`` (an age, or an aware cut-off time).

    Deletes ``batch_size`` rows per transaction, so that a large purge
    never holds a long lock on a busy table. Returns the number deleted.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if isinstance(older_than, timedelta):
        cutoff = (now or datetime.now(UTC)) - older_than
    else:
        if older_than.tzinfo is None:
            raise ValueError("older_than must be a timezone-aware datetime")
        cutoff = older_than
    table = _TABLE
    deleted = 0
    while True:
        with engine.begin() as connection:
            ids = (
                connection.execute(
                    sa.select(table.c.id)
                    .where(table.c.created_at < cutoff)
                    .order_by(table.c.id)
                    .limit(batch_size)
                )
                .scalars()
                .all()
            )
            if not ids:
                return deleted
            connection.execute(sa.delete(table).where(table.c.id.in_(ids)))
        deleted += len(ids)
        if len(ids) < batch_size:
            return deleted


def count_older(engine: sa.Engine, cutoff: datetime) -> int:
    """How many decisions were recorded before ``cutoff``."""
    with engine.connect() as connection:
        count = connection.execute(
            sa.select(sa.func.count()).select_from(_TABLE).where(_TABLE.c.created_at < cutoff)
        ).scalar_one()
    return int(count)
