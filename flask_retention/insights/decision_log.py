"""The decision log: every real-time request, written off the request path.

The endpoint hands each :class:`~flask_retention.realtime.decisions.Decision`
to :meth:`DecisionLogWriter.record`, which builds its row (with a new
``decision_uuid``, its text cleaned so that every database takes it, the
subscriber pseudonymised when ``RETENTION_SUBSCRIBER_KEY`` is set) and
appends it to an in-memory queue. A daemon thread, started on first use in
the serving process (so that each forked worker starts its own), writes the
queue to ``retention_decisions`` in batches: as soon as the queue has been
idle for ``idle`` seconds (0.05 by default), at the latest ``interval``
seconds (0.2) after a decision was queued, as soon as ``batch_size``
decisions (500) wait, on :meth:`~DecisionLogWriter.flush`, and on
:meth:`~DecisionLogWriter.close` (also run at interpreter exit).

A write is safe to repeat: a row whose ``decision_uuid`` is already stored is
skipped (``ON CONFLICT DO NOTHING``), so a batch written again after its
commit was lost on the way back is written once. A batch that fails on a
row's own data is split until that row is alone; the row is then dropped
and counted (``unstorable``), and the others are written. A batch that
fails on the connection goes back to the head of the queue and is retried
every ``retry`` seconds.

When the database is unreachable the decisions wait in the queue, up to
``RETENTION_DECISION_LOG_QUEUE``; past it the oldest are dropped
(``queue_full``). Dropped decisions are counted in :meth:`~DecisionLogWriter.stats`,
logged once per burst, and stored as a count in ``retention_dropped_decisions``
with the next successful write, for ``flask retention report``.

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
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import sqlalchemy as sa

from flask_retention.catalogue.models import metadata
from flask_retention.core.database import bounded, failure_reason
from flask_retention.core.errors import first_line
from flask_retention.core.per_process import DaemonThread, PerProcess
from flask_retention.insights.privacy import stored_id
from flask_retention.insights.rows import clean_row, insert_new, is_data_error, text_lengths
from flask_retention.realtime.decisions import Decision

logger = logging.getLogger(__name__)

_TABLE: Final = metadata.tables["retention_decisions"]
_DROPPED: Final = metadata.tables["retention_dropped_decisions"]
_LENGTHS: Final = text_lengths(_TABLE)

WRITER_THREAD: Final = "flask-retention-decision-log"

#: Decisions deleted per transaction by :func:`purge_decisions`.
PURGE_BATCH: Final = 5000

#: Seconds the writer sleeps with nothing queued (a decision queued wakes it at once).
IDLE_WAKEUP: Final = 1.0

#: Why a decision was dropped: the queue was full (the oldest go), the database refused
#: its row, or it was still queued when the process exited with the database unreachable.
DropReason = Literal["queue_full", "unstorable", "lost_at_exit"]

Row = dict[str, Any]


def decision_row(decision: Decision, subscriber_key: bytes | None = None) -> Row:
    """The ``retention_decisions`` row of a decision, with a new ``decision_uuid``.

    A rejected request (any status but ``200``) never claims the unique
    ``request_identifier``: the identifier it carried, if it got as far as
    verification, goes to ``claimed_request_identifier``. Text is cleaned
    (NUL characters removed, lone surrogates replaced by U+FFFD) and cut to its
    column's length (Apple's values are far shorter). With a ``subscriber_key``
    (``RETENTION_SUBSCRIBER_KEY``), the row holds the
    :func:`~flask_retention.insights.privacy.pseudonym` of the original
    transaction ID, not the ID.
    """
    rejected = decision.status != 200
    rid = decision.request_identifier
    return clean_row(
        {
            "decision_uuid": uuid.uuid4(),
            "request_identifier": None if rejected else rid,
            "claimed_request_identifier": str(rid) if rejected and rid is not None else None,
            "original_transaction_id": stored_id(decision.original_transaction_id, subscriber_key),
            "product_id": decision.product_id,
            "locale": decision.locale,
            "environment": decision.environment,
            "selector": decision.selector,
            "kind": None if rejected else decision.kind,
            "message_uuid": decision.message_id,
            "fallback_reason": decision.fallback_reason,
            "answered_locale": decision.answered_locale,
            "locale_reason": decision.locale_reason,
            "experiment": decision.experiment,
            "variant": decision.variant,
            "status": decision.status,
            "error": decision.error,
            "latency_ms": decision.latency_ms,
            "created_at": decision.received_at,
            "replay": False,
        },
        _LENGTHS,
    )


@dataclass
class _Written:
    """What writing (part of) a batch did: rows stored, replays, rows dropped and why."""

    written: int = 0
    replays: list[str] = field(default_factory=list)
    unstorable: list[str] = field(default_factory=list)

    @property
    def settled(self) -> int:
        return self.written + len(self.unstorable)


class _Unwritten(Exception):
    """A connection failure part-way through a batch; ``remaining`` were not written,
    ``done`` is what was."""

    def __init__(self, cause: BaseException, remaining: list[Row], done: _Written) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.remaining = remaining
        self.done = done


@dataclass(eq=False)
class _Drops:
    """A burst of drops for one reason, to be stored as one ``retention_dropped_decisions`` row.

    ``sealed`` once a write of it was tried: later drops start a new one, so that
    writing it again (with the same ``key``, its ``uuid``) is idempotent.
    """

    reason: str
    dropped_at: datetime
    count: int = 0
    key: uuid.UUID = field(default_factory=uuid.uuid4)
    sealed: bool = False


@dataclass(eq=False)
class _Queue:
    """One process's queue of decision rows, its writer thread and its counts."""

    # Made in the serving process on first use (gevent's lock when it is patched).
    cond: threading.Condition = field(default_factory=lambda: threading.Condition())
    writer: DaemonThread = field(default_factory=lambda: DaemonThread(WRITER_THREAD))
    decisions: deque[Row] = field(default_factory=deque)
    stop: bool = False
    first_at: float = 0.0  # monotonic time the oldest queued row was queued (or requeued)
    last_at: float = 0.0  # monotonic time of the newest record()
    recorded: int = 0  # decisions handed to record() in this process
    settled: int = 0  # of them, written or dropped
    flush_target: int = 0
    failing: bool = False
    drop_warned: bool = False
    outage_dropped: int = 0
    written: int = 0
    replays: int = 0
    dropped: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("queue_full", "unstorable", "lost_at_exit"), 0)
    )
    unstorable_burst: int = 0
    drops: list[_Drops] = field(default_factory=list)  # not yet stored

    def count_drops(
        self, count: int, reason: DropReason = "queue_full", *, settle: bool = True
    ) -> bool:
        """Count ``count`` dropped decisions (lock held), as settled unless ``settle`` is
        false; ``True`` for the outage's first ``queue_full`` drop."""
        self.dropped[reason] += count
        if settle:
            self.settled += count
        if reason == "lost_at_exit":
            return False
        burst = next((d for d in self.drops if d.reason == reason and not d.sealed), None)
        if burst is None:
            burst = _Drops(reason, datetime.now(UTC))
            self.drops.append(burst)
        burst.count += count
        if reason != "queue_full":
            return False
        self.outage_dropped += count
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
    the rows per insert; a decision is written once the queue has been idle
    for ``idle`` seconds, and at most ``interval`` seconds after it was queued;
    ``retry`` is the wait between attempts while the database is unreachable,
    ``deadline`` the seconds one write may take before its connection is
    abandoned (a silent database; see
    :func:`~flask_retention.core.database.bounded`). With a ``subscriber_key``
    (``RETENTION_SUBSCRIBER_KEY``), rows hold pseudonyms of the subscribers'
    original transaction IDs (:func:`decision_row`). Each process has its own
    queue and thread (a forked child starts with an empty one).
    """

    def __init__(
        self,
        engine: Callable[[], sa.Engine],
        *,
        max_queue: int = 10000,
        batch_size: int = 500,
        interval: float = 0.2,
        idle: float = 0.05,
        retry: float = 1.0,
        deadline: float = 5.0,
        subscriber_key: bytes | None = None,
    ) -> None:
        if max_queue < 1 or batch_size < 1 or min(interval, idle, retry, deadline) <= 0:
            raise ValueError(
                "max_queue and batch_size must be >= 1, interval, idle, retry and deadline > 0"
            )
        self._engine = engine
        self._subscriber_key = subscriber_key
        self.deadline = deadline
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.interval = interval
        self.idle = idle
        self.retry = retry
        self._queues: PerProcess[_Queue] = PerProcess(_Queue)
        atexit.register(_close_at_exit, weakref.ref(self))

    # -- the request path ----------------------------------------------------

    def record(self, decision: Decision) -> None:
        """Queue ``decision``'s row for writing; never waits on the database.

        A full queue drops its oldest decision (counted, and logged once per
        outage).
        """
        row = decision_row(decision, self._subscriber_key)
        queue = self._queues.get()
        if not queue.writer.alive:
            self.start()
        first_drop = False
        with queue.cond:
            decisions = queue.decisions
            if len(decisions) >= self.max_queue:
                decisions.popleft()
                first_drop = queue.count_drops(1)
            decisions.append(row)
            queue.recorded += 1
            queue.last_at = time.monotonic()
            if len(decisions) == 1:
                queue.first_at = queue.last_at
                queue.cond.notify()
            elif len(decisions) == self.batch_size:
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
        """Counts of this process: ``pending``, ``written``, ``dropped``, ``replays``, and
        the dropped by reason: ``dropped_queue_full``, ``dropped_unstorable``,
        ``dropped_at_exit``."""
        queue = self._queues.peek()
        if queue is None:
            return {
                "pending": 0,
                "written": 0,
                "dropped": 0,
                "replays": 0,
                "dropped_queue_full": 0,
                "dropped_unstorable": 0,
                "dropped_at_exit": 0,
            }
        with queue.cond:
            dropped = queue.dropped
            return {
                "pending": queue.recorded - queue.settled,
                "written": queue.written,
                "dropped": sum(dropped.values()),
                "replays": queue.replays,
                "dropped_queue_full": dropped["queue_full"],
                "dropped_unstorable": dropped["unstorable"],
                "dropped_at_exit": dropped["lost_at_exit"],
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

    def _wait_for_work(self, queue: _Queue) -> None:
        """Wait (lock held) until a batch is due: the queue idle for ``idle`` seconds, its
        oldest row queued ``interval`` seconds ago, a full batch, a flush, or stop."""
        cond = queue.cond
        while (
            not queue.stop
            and queue.flush_target <= queue.settled
            and len(queue.decisions) < self.batch_size
        ):
            if not queue.decisions:
                cond.wait(IDLE_WAKEUP)
                if not queue.decisions:
                    return
                continue
            due = min(queue.first_at + self.interval, queue.last_at + self.idle)
            left = due - time.monotonic()
            if left <= 0:
                return
            cond.wait(left)

    def _step(self, queue: _Queue) -> bool:
        """Wait for work, write one batch; ``False`` when the thread should end."""
        cond = queue.cond
        with cond:
            if queue.failing and not queue.stop:
                deadline = time.monotonic() + self.retry
                while not queue.stop and (left := deadline - time.monotonic()) > 0:
                    cond.wait(left)
            else:
                self._wait_for_work(queue)
            stopping = queue.stop
            decisions = queue.decisions
            batch = [decisions.popleft() for _ in range(min(len(decisions), self.batch_size))]
            queue.first_at = time.monotonic()
            unsaved_drops = bool(queue.drops) and not queue.failing
        if not batch:
            if unsaved_drops:
                self._save_drops(queue)
            return not stopping
        try:
            result = self._write(batch)
        except _Unwritten as e:
            if e.done.settled:
                self._count(queue, e.done)
                self._release(queue, e.done.settled)
            self._requeue(queue, e.remaining, e.cause)
            if stopping:
                with cond:
                    lost = len(queue.decisions)
                    queue.decisions.clear()
                    queue.count_drops(lost, "lost_at_exit")
                    cond.notify_all()
                logger.error(
                    "flask-retention: %d decisions could not be written at exit (%s); they are "
                    "lost.",
                    lost,
                    first_line(e.cause),
                )
                return False
            return True
        self._settle(queue, result)
        if queue.drops:
            self._save_drops(queue)
        self._release(queue, result.settled)
        return True

    def _insert(self, rows: list[Row]) -> None:
        """Insert ``rows`` in one transaction, skipping those whose ``decision_uuid`` is stored."""
        engine = self._engine()
        with bounded(engine, self.deadline) as connection:
            connection.execute(insert_new(_TABLE, engine.dialect, "decision_uuid"), rows)

    def _write(self, batch: list[Row]) -> _Written:
        """Insert ``batch``, isolating the rows that fail on their own data.

        One ``executemany`` in the usual case. When it fails on the rows (not on
        the connection), each half is written again on its own, down to the row
        at fault: a replay (answered by another process too, so it breaks the
        unique ``request_identifier``) is stored as such, any other row is dropped.
        Raises :class:`_Unwritten` on a connection failure.
        """
        done = _Written()
        self._write_part(batch, done)
        return done

    def _write_part(self, rows: list[Row], done: _Written) -> None:
        try:
            self._insert(rows)
        except Exception as e:
            if not is_data_error(e):
                raise _Unwritten(e, rows, done) from None
            if len(rows) == 1:
                self._write_alone(rows[0], e, done)
                return
            middle = len(rows) // 2
            try:
                self._write_part(rows[:middle], done)
            except _Unwritten as u:
                raise _Unwritten(u.cause, u.remaining + rows[middle:], done) from None
            self._write_part(rows[middle:], done)
            return
        done.written += len(rows)

    def _write_alone(self, row: Row, error: Exception, done: _Written) -> None:
        """Store ``row`` (refused with ``error``) as a replay if it is one, else drop it."""
        rid = row["request_identifier"]
        if isinstance(error, sa.exc.IntegrityError) and rid is not None:
            replay = dict(
                row, request_identifier=None, claimed_request_identifier=str(rid), replay=True
            )
            try:
                self._insert([replay])
            except Exception as e:
                if not is_data_error(e):
                    raise _Unwritten(e, [row], done) from None
                error = e
            else:
                done.written += 1
                done.replays.append(str(rid))
                return
        done.unstorable.append(first_line(getattr(error, "orig", None) or error))

    def _settle(self, queue: _Queue, done: _Written) -> None:
        """Count a written batch, after logging about it; :meth:`_release` then lets
        flushes return (after the log, and after the drops' counts are stored)."""
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
        self._count(queue, done)

    def _count(self, queue: _Queue, done: _Written) -> None:
        """Count what was written and dropped of a batch, after logging about it."""
        with queue.cond:
            burst = queue.unstorable_burst
            queue.unstorable_burst = burst + len(done.unstorable) if done.unstorable else 0
        if done.replays:
            logger.warning(
                "flask-retention: %d requestIdentifier(s) were answered twice, by this and "
                "another process or host (replays: %s); recorded as replays.",
                len(done.replays),
                ", ".join(done.replays[:5]) + (", ..." if len(done.replays) > 5 else ""),
            )
        if done.unstorable and not burst:
            logger.warning(
                "flask-retention: the database refused a decision's row (%s); it is dropped, "
                "the rest of its batch is written. Drops are counted in stats() and in "
                "`flask retention report`.",
                done.unstorable[0],
            )
        elif burst > 1 and not done.unstorable:
            logger.warning(
                "flask-retention: %d decisions in a row were refused by the database and "
                "dropped (unstorable).",
                burst,
            )
        with queue.cond:
            queue.written += done.written
            queue.replays += len(done.replays)
            if done.unstorable:
                queue.count_drops(len(done.unstorable), "unstorable", settle=False)

    def _release(self, queue: _Queue, count: int) -> None:
        """Mark ``count`` decisions of a batch settled (written or dropped); wake flushes."""
        with queue.cond:
            queue.settled += count
            queue.cond.notify_all()

    def _save_drops(self, queue: _Queue) -> None:
        """Store the counts of dropped decisions not stored yet; kept for later on failure."""
        with queue.cond:
            drops = list(queue.drops)
            for d in drops:
                d.sealed = True
        rows = [
            {"uuid": d.key, "reason": d.reason, "count": d.count, "dropped_at": d.dropped_at}
            for d in drops
        ]
        try:
            engine = self._engine()
            with bounded(engine, self.deadline) as connection:
                connection.execute(insert_new(_DROPPED, engine.dialect, "uuid"), rows)
        except Exception as e:
            logger.debug("flask-retention: the dropped decisions' counts wait (%s).", first_line(e))
            return
        with queue.cond:
            queue.drops = [d for d in queue.drops if d not in drops]

    def _requeue(self, queue: _Queue, remaining: list[Row], cause: BaseException) -> None:
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
                "flask-retention could not write the decision log: %s; %d decisions wait in "
                "memory (at most RETENTION_DECISION_LOG_QUEUE=%d, the oldest dropped past it) "
                "and are retried every %s s.",
                failure_reason(cause),
                waiting,
                self.max_queue,
                self.retry,
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
    never holds a long lock on a busy table, then the counts of decisions
    dropped before the cut-off. Returns the number of decisions deleted.
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
            if ids:
                connection.execute(sa.delete(table).where(table.c.id.in_(ids)))
        deleted += len(ids)
        if len(ids) < batch_size:
            break
    with engine.begin() as connection:
        connection.execute(sa.delete(_DROPPED).where(_DROPPED.c.dropped_at < cutoff))
    return deleted


def count_older(engine: sa.Engine, cutoff: datetime) -> int:
    """How many decisions were recorded before ``cutoff``."""
    with engine.connect() as connection:
        count = connection.execute(
            sa.select(sa.func.count()).select_from(_TABLE).where(_TABLE.c.created_at < cutoff)
        ).scalar_one()
    return int(count)
