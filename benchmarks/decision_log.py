"""What the decision log costs the request path, and how fast the writer drains.

Run from a checkout::

    python benchmarks/decision_log.py [--calls 200000] [--url postgresql+psycopg://...]

Printed figures all come from this one run:

* ``record()``: the request path's only call, timed per call in batches of
  1000 while the writer thread writes to the database behind it; beside it a
  bare ``deque.append`` for scale;
* the writer: rows per second from ``record()`` to committed rows
  (``flush()``), for each database given (a SQLite file always; PostgreSQL
  with ``--url``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections import deque
from datetime import UTC, datetime

from flask_retention.catalogue.schema import upgrade
from flask_retention.core.database import create_engine
from flask_retention.insights.decision_log import DecisionLogWriter
from flask_retention.realtime.decisions import Decision


def decisions(count: int) -> list[Decision]:
    """Answered decisions as the endpoint completes them."""
    now = datetime.now(UTC)
    made = []
    for i in range(count):
        d = Decision(received_at=now)
        d.request_identifier = uuid.uuid4()
        d.original_transaction_id = str(1000000000000000 + i)
        d.product_id = "com.example.monthly"
        d.locale = "en-US"
        d.environment = "Sandbox"
        d.selector = "choose"
        d.kind = "message"
        d.message_id = uuid.uuid4()
        d.latency_ms = 1.5
        made.append(d)
    return made


def per_call_ns(fn: object, items: list[Decision], chunk: int = 1000) -> list[float]:
    """Nanoseconds per call, one figure per ``chunk`` calls."""
    call = fn  # a bound method: record or append
    figures = []
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        t0 = time.perf_counter_ns()
        for d in part:
            call(d)  # type: ignore[operator]
        figures.append((time.perf_counter_ns() - t0) / len(part))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--url", help="a PostgreSQL URL to measure the writer on, too")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        urls = [f"sqlite:///{folder}/bench.db"] + ([args.url] if args.url else [])
        print(f"Python {sys.version.split()[0]}, {args.calls} calls")
        for url in urls:
            engine = create_engine(url)
            upgrade(engine)
            items = decisions(args.calls)
            writer = DecisionLogWriter(
                lambda engine=engine: engine, max_queue=args.calls, batch_size=1000
            )
            writer.record(items[0])
            writer.flush()
            t0 = time.perf_counter()
            record = per_call_ns(writer.record, items[1:])
            queued = time.perf_counter() - t0
            assert writer.flush(600), "the writer did not drain"
            drained = time.perf_counter() - t0
            writer.close()
            bare: deque[Decision] = deque()
            append = per_call_ns(bare.append, items[1:])
            stats = writer.stats()
            print(f"\n{engine.dialect.name}:")
            print(
                f"  record(): median {statistics.median(record):.0f} ns/call, "
                f"p99 {sorted(record)[int(len(record) * 0.99) - 1]:.0f} ns "
                f"(bare deque.append: {statistics.median(append):.0f} ns)"
            )
            print(
                f"  writer: {stats['written']} rows in {drained:.2f} s "
                f"({stats['written'] / drained:,.0f} rows/s; recording took {queued:.2f} s), "
                f"dropped {stats['dropped']}"
            )
            with engine.begin() as connection:
                connection.exec_driver_sql("DELETE FROM retention_decisions")
            engine.dispose()


if __name__ == "__main__":
    main()
