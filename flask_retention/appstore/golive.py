"""Going live: Apple's real-time URL and performance test, recorded in the database.

Apple calls the real-time URL of an environment only once it is configured,
and in production only after a performance test passed in the sandbox. The
functions here check what can be checked before calling Apple, make the
call through :class:`~flask_retention.appstore.client.RetentionAPIClient`, and record
the outcome (``retention_realtime_urls``, ``retention_performance_tests``)
so that ``flask retention status`` and ``check`` can show it without asking
Apple again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flask_retention.appstore.client import (
    ForbiddenError,
    NotFoundError,
    PerformanceTestConfig,
    PerformanceTestRequest,
    PerformanceTestResponse,
    PerformanceTestResultResponse,
    RealtimeUrlRequest,
    RetentionAPIClient,
)
from flask_retention.appstore.types import check_realtime_url
from flask_retention.catalogue.models import PerformanceTest, utcnow
from flask_retention.catalogue.store import Catalogue
from flask_retention.core.errors import RetentionError

__all__ = [
    "GoLiveError",
    "PerformanceTestRecord",
    "configure_realtime_url",
    "delete_realtime_url",
    "fetch_performance_test",
    "follow_performance_test",
    "get_realtime_url",
    "has_passed_performance_test",
    "last_performance_test",
    "start_performance_test",
]

#: Seconds between two Get Performance Test Results calls while following a test.
DEFAULT_POLL_INTERVAL = 5.0


class GoLiveError(RetentionError):
    """A real-time URL or performance test step refused before or by Apple, with the fix."""


@dataclass(frozen=True, slots=True)
class PerformanceTestRecord:
    """A performance test as recorded: ``status`` is ``PENDING``, ``PASS`` or ``FAIL``."""

    request_id: UUID
    environment: str
    original_transaction_id: str | None
    status: str
    config: dict[str, Any] | None
    results: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return {
            "request_id": str(self.request_id),
            "environment": self.environment,
            "original_transaction_id": self.original_transaction_id,
            "status": self.status,
            "config": self.config,
            "results": self.results,
            "created_at": self.created_at.isoformat(),
            "updated_at": None if self.updated_at is None else self.updated_at.isoformat(),
        }


def _record(row: PerformanceTest) -> PerformanceTestRecord:
    return PerformanceTestRecord(
        request_id=row.request_id,
        environment=row.environment,
        original_transaction_id=row.original_transaction_id,
        status=row.status,
        config=row.config,
        results=row.results,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# -- real-time URL ----------------------------------------------------------------------


def configure_realtime_url(
    catalogue: Catalogue,
    client: RetentionAPIClient,
    url: str,
    *,
    require_passed_test: bool = True,
    allow_loopback_http: bool = False,
) -> None:
    """Check ``url`` (https, at most 256 characters), configure it at Apple, record it.

    In Production, with ``require_passed_test``, it refuses before calling
    Apple when no recorded performance test passed, and explains Apple's
    ``ForbiddenNoPassingTestError`` when Apple refuses anyway.
    ``allow_loopback_http`` also sends an ``http://`` URL on loopback
    (``127.0.0.1``, ``::1``, ``localhost``), for a fake App Store
    (``flask retention fake-app-store``); it is refused, before any call, when
    the client talks to Apple's hosts (``*.apple.com``).
    """
    from urllib.parse import urlsplit

    if allow_loopback_http:
        host = urlsplit(client.base_url).hostname or ""
        if host == "apple.com" or host.endswith(".apple.com"):
            raise GoLiveError(
                f"http:// real-time URLs are only for a fake App Store, and this client talks "
                f"to Apple ({host}), which calls only https:// URLs: drop --allow-http and "
                "give the endpoint's https:// URL."
            )
    try:
        check_realtime_url(url, allow_loopback_http=allow_loopback_http)
    except ValueError as e:
        raise GoLiveError(str(e)) from None
    env = client.environment
    if (
        env == "Production"
        and require_passed_test
        and not has_passed_performance_test(catalogue.engine)
    ):
        raise GoLiveError(
            "Apple accepts a production real-time URL only after a performance test passed: "
            "configure the sandbox URL (`flask retention realtime-url set URL --environment "
            "Sandbox`) and run `flask retention perf-test ORIGINAL_TRANSACTION_ID` first."
        )
    try:
        client.configure_realtime_url(
            RealtimeUrlRequest(url, allow_loopback_http=allow_loopback_http)
        )
    except ForbiddenError as e:
        if e.error_name == "ForbiddenNoPassingTestError":
            raise GoLiveError(
                "Apple refused the production real-time URL: no performance test of this app "
                "has passed at Apple (ForbiddenNoPassingTestError, "
                f"{e.error_code}); run `flask retention perf-test` in the sandbox until it "
                "passes, then try again."
            ) from None
        raise
    catalogue.record_realtime_url(env, url)


def get_realtime_url(catalogue: Catalogue, client: RetentionAPIClient) -> str | None:
    """The real-time URL Apple holds (``None``: none); the record is brought in line.

    Raises :class:`GoLiveError` when Apple answers without the URL (the
    record is left as it was).
    """
    try:
        url: str | None = client.get_realtime_url().realtime_url
    except NotFoundError as e:
        if e.error_name != "RealtimeUrlNotFoundError":
            raise
        url = None
    else:
        if url is None:
            raise GoLiveError(
                f"Apple's {client.environment} answer to Get Realtime URL has no realtimeURL, so "
                "the URL Apple holds is unknown; try `flask retention realtime-url get` again "
                "later, or set it again with `flask retention realtime-url set URL`."
            )
    catalogue.record_realtime_url(client.environment, url)
    return url


def delete_realtime_url(catalogue: Catalogue, client: RetentionAPIClient) -> None:
    """Stop Apple's real-time calls in the client's environment, and record it."""
    client.delete_realtime_url()
    catalogue.record_realtime_url(client.environment, None)


# -- performance test -------------------------------------------------------------------


def _result_json(result: PerformanceTestResultResponse) -> dict[str, Any]:
    """What Apple reported, as recorded (``None`` where Apple's answer had nothing)."""
    times = result.response_times
    return {
        "result": None if result.result is None else str(result.result),
        "target": result.target,
        "successRate": result.success_rate,
        "numPending": result.num_pending,
        "responseTimes": None
        if times is None
        else {
            "average": times.average,
            "p50": times.p50,
            "p90": times.p90,
            "p95": times.p95,
            "p99": times.p99,
        },
        "failures": {str(k): v for k, v in result.failures.items()},
    }


def _config_json(config: PerformanceTestConfig | None) -> dict[str, Any] | None:
    """A test's configuration as recorded (``None`` when Apple sent none)."""
    if config is None:
        return None
    return {
        "maxConcurrentRequests": config.max_concurrent_requests,
        "responseTimeThreshold": config.response_time_threshold,
        "successRateThreshold": config.success_rate_threshold,
        "totalDuration": config.total_duration,
        "totalRequests": config.total_requests,
    }


def start_performance_test(
    engine: sa.Engine, client: RetentionAPIClient, original_transaction_id: str
) -> PerformanceTestResponse:
    """Start Apple's performance test of the sandbox real-time URL and record it (``PENDING``).

    Raises :class:`GoLiveError` when Apple started a test but its answer has
    no ``requestId``: nothing can follow or record that test.
    """
    started = client.initiate_performance_test(PerformanceTestRequest(original_transaction_id))
    if started.request_id is None:
        raise GoLiveError(
            "Apple started a performance test but did not return its requestId, so its result "
            "cannot be fetched; wait a few minutes for that test to end (Apple runs one at a "
            "time), then run `flask retention perf-test ORIGINAL_TRANSACTION_ID` again."
        )
    with Session(engine) as session, session.begin():
        session.add(
            PerformanceTest(
                request_id=started.request_id,
                environment=client.environment,
                original_transaction_id=str(original_transaction_id),
                config=_config_json(started.config),
                status="PENDING",
            )
        )
    return started


def fetch_performance_test(
    engine: sa.Engine, client: RetentionAPIClient, request_id: str | UUID
) -> PerformanceTestResultResponse:
    """Ask Apple for a test's state or result once, and record it."""
    result = client.get_performance_test_results(request_id)
    ident = request_id if isinstance(request_id, UUID) else UUID(str(request_id))
    # A result Apple added after this was written is kept, cut to the column's 16 characters.
    status = str(result.result)[:16] if result.finished else "PENDING"
    with Session(engine) as session, session.begin():
        row = session.scalar(sa.select(PerformanceTest).where(PerformanceTest.request_id == ident))
        if row is None:
            row = PerformanceTest(request_id=ident, environment=client.environment, status=status)
            session.add(row)
        row.status = status
        row.results = _result_json(result)
        if row.config is None:
            row.config = _config_json(result.config)
        row.updated_at = utcnow()
    return result


def follow_performance_test(
    engine: sa.Engine,
    client: RetentionAPIClient,
    request_id: str | UUID,
    *,
    interval: float = DEFAULT_POLL_INTERVAL,
    on_poll: Callable[[PerformanceTestResultResponse], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_wait: float | None = None,
) -> PerformanceTestResultResponse:
    """Poll a test every ``interval`` seconds until Apple has its result; each poll recorded.

    After ``max_wait`` seconds without a result (``None``: no limit) it
    raises :class:`GoLiveError`, which says how to fetch the result later:
    an answer that never says ``PASS`` or ``FAIL`` must not keep a deploy
    script waiting for ever.
    """
    deadline = None if max_wait is None else time.monotonic() + max_wait
    while True:
        result = fetch_performance_test(engine, client, request_id)
        if on_poll is not None:
            on_poll(result)
        if result.finished:
            return result
        if deadline is not None and time.monotonic() + interval > deadline:
            minutes = round(max_wait / 60) if max_wait else 0
            waited = f"{minutes} min" if minutes else f"{max_wait:g} s"
            raise GoLiveError(
                f"Apple has no result for performance test {request_id} after {waited}; "
                f"fetch it later with `flask retention perf-test --result {request_id}`."
            )
        sleep(interval)


def last_performance_test(
    engine: sa.Engine, environment: str | None = None
) -> PerformanceTestRecord | None:
    """The newest recorded performance test (of ``environment`` when given)."""
    with Session(engine) as session:
        query = sa.select(PerformanceTest).order_by(
            PerformanceTest.created_at.desc(), PerformanceTest.id.desc()
        )
        if environment is not None:
            query = query.where(PerformanceTest.environment == environment)
        row = session.scalars(query.limit(1)).first()
        return None if row is None else _record(row)


def has_passed_performance_test(engine: sa.Engine) -> bool:
    """Whether any recorded performance test passed (Apple's condition for production)."""
    with Session(engine) as session:
        return (
            session.scalar(
                sa.select(sa.func.count())
                .select_from(PerformanceTest)
                .where(PerformanceTest.status == "PASS")
            )
            or 0
        ) > 0
