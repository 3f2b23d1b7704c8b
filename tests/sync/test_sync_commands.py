"""The lock, real-time URL, performance test, check, status and expected failures."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy.orm import Session

from flask_retention import Retention
from flask_retention.appstore.sync import SyncLockedError, acquire_sync_lock
from flask_retention.catalogue.models import PerformanceTest, SyncLock, utcnow
from flask_retention.testing import FakeAppStore, serve

from .support import (
    LOCALE,
    PRODUCT,
    SYNC_TUNING,
    InFlight,
    build_catalogue,
    fails,
    invoke,
    ok,
    writes,
)


@pytest.fixture
def engine(app: Flask) -> sa.Engine:
    retention = app.extensions["retention"]
    assert isinstance(retention, Retention)
    return retention.get_engine(app)


# -- the lock ------------------------------------------------------------------------


def test_the_lock_refuses_a_second_concurrent_sync(
    runner: FlaskCliRunner, tmp_path: Path, engine: sa.Engine, fake_app_store: FakeAppStore
) -> None:
    build_catalogue(runner, tmp_path)
    held = acquire_sync_lock(engine, "Sandbox", owner="cron on host-b")
    reason = fails(invoke(runner, "sync"))
    assert "another sync of Sandbox is running (cron on host-b" in reason
    assert writes(fake_app_store) == []
    held.release()
    ok(invoke(runner, "sync"))
    with Session(engine) as session:
        assert session.scalars(sa.select(SyncLock)).all() == []


def test_a_stale_lock_is_taken_over(
    runner: FlaskCliRunner, tmp_path: Path, engine: sa.Engine, fake_app_store: FakeAppStore
) -> None:
    build_catalogue(runner, tmp_path)
    acquire_sync_lock(engine, "Sandbox", owner="a sync that crashed")
    with Session(engine) as session, session.begin():
        lock = session.get(SyncLock, "Sandbox")
        assert lock is not None
        lock.heartbeat_at = utcnow() - timedelta(hours=1)
    result = ok(invoke(runner, "sync"))
    assert "Took over a stale sync lock from a sync that crashed" in result.output
    assert len(fake_app_store.defaults) == 1


def test_a_lock_is_per_environment_and_cannot_be_taken_twice(engine: sa.Engine) -> None:
    first = acquire_sync_lock(engine, "Sandbox", owner="one")
    with pytest.raises(SyncLockedError, match="one"):
        acquire_sync_lock(engine, "Sandbox", owner="two")
    other = acquire_sync_lock(engine, "Production", owner="two")
    other.release()
    first.refresh()
    first.release()
    acquire_sync_lock(engine, "Sandbox", owner="three").release()


def test_a_sync_whose_lock_was_taken_over_stops(engine: sa.Engine) -> None:
    slow = acquire_sync_lock(engine, "Sandbox", owner="slow")
    with Session(engine) as session, session.begin():
        lock = session.get(SyncLock, "Sandbox")
        assert lock is not None
        lock.heartbeat_at = utcnow() - timedelta(hours=1)
    fresh = acquire_sync_lock(engine, "Sandbox", owner="fresh", timeout=60)
    assert fresh.taken_over == "slow"
    with pytest.raises(SyncLockedError, match="fresh"):
        slow.refresh()
    slow.release()
    with pytest.raises(SyncLockedError):
        acquire_sync_lock(engine, "Sandbox", owner="third")
    fresh.release()


# -- real-time URL -------------------------------------------------------------------


def test_realtime_url_is_checked_before_calling_apple(
    runner: FlaskCliRunner, fake_app_store: FakeAppStore
) -> None:
    assert "https://" in fails(invoke(runner, "realtime-url", "set", "http://example.com/rt"))
    long_url = "https://example.com/" + "a" * 240
    assert "256" in fails(invoke(runner, "realtime-url", "set", long_url))
    assert fake_app_store.requests == []


def stored_realtime_url(store: FakeAppStore) -> str | None:
    """The fake's real-time URL, read afresh: mypy would keep an earlier check's narrowing
    of ``store.realtime_url`` across the calls that change it."""
    return store.realtime_url


def test_realtime_url_set_get_delete(
    runner: FlaskCliRunner, fake_app_store: FakeAppStore, app: Flask
) -> None:
    ok(invoke(runner, "realtime-url", "set", "https://example.com/retention/realtime"))
    assert stored_realtime_url(fake_app_store) == "https://example.com/retention/realtime"
    got = ok(invoke(runner, "realtime-url", "get"))
    assert got.output.strip() == "https://example.com/retention/realtime"
    status = json.loads(ok(invoke(runner, "status", "--environment", "Sandbox", "--json")).output)
    assert status[0]["realtime_url"] == "https://example.com/retention/realtime"
    refused = invoke(runner, "realtime-url", "delete", input="n\n")
    assert refused.exit_code == 1
    assert stored_realtime_url(fake_app_store) is not None
    ok(invoke(runner, "realtime-url", "delete", "--yes"))
    assert stored_realtime_url(fake_app_store) is None
    got = ok(invoke(runner, "realtime-url", "get"))
    assert "No real-time URL is configured in Sandbox" in got.output


def test_production_realtime_url_needs_a_passed_test_first(
    runner: FlaskCliRunner, fake_app_store: FakeAppStore, engine: sa.Engine
) -> None:
    fake_app_store.environment = "Production"
    args = ["realtime-url", "set", "https://example.com/rt", "--environment", "Production"]
    reason = fails(invoke(runner, *args))
    assert "only after a performance test passed" in reason
    assert "perf-test" in reason
    assert fake_app_store.requests == []

    with Session(engine) as session, session.begin():
        session.add(PerformanceTest(request_id=uuid.uuid4(), environment="Sandbox", status="PASS"))
    # Recorded here, but Apple (this fake) knows of no passing test: its refusal is explained.
    reason = fails(invoke(runner, *args))
    assert "ForbiddenNoPassingTestError" in reason
    assert "perf-test" in reason


# -- performance test ------------------------------------------------------------------


def test_perf_test_passes_against_the_served_endpoint(
    runner: FlaskCliRunner, app: Flask, fake_app_store: FakeAppStore, engine: sa.Engine
) -> None:
    endpoint = InFlight(app)
    with serve(endpoint) as url:
        fake_app_store.realtime_url = f"{url}/retention/realtime"
        result = ok(invoke(runner, "perf-test", "2000000123"))
        assert endpoint.wait_idle()
    assert "Started performance test" in result.output
    assert "Result: PASS" in result.output
    assert "Success rate: 100%" in result.output
    assert "p50" in result.output
    assert "p99" in result.output
    with Session(engine) as session:
        test = session.scalars(sa.select(PerformanceTest)).one()
    assert test.status == "PASS"
    assert test.original_transaction_id == "2000000123"
    assert test.results is not None
    assert test.results["successRate"] == 100
    status = ok(invoke(runner, "status", "--environment", "Sandbox")).output
    assert f"Last performance test: PASS ({test.request_id}" in status


@pytest.mark.parametrize("selector_delay", [0.4])
@pytest.mark.parametrize("extra_config", [{"RETENTION_SELECTOR_TIMEOUT": 2.0}])
@pytest.mark.parametrize(
    "app_store_performance_test_config",
    [
        {
            "maxConcurrentRequests": 4,
            "totalRequests": 8,
            "totalDuration": 0,
            "responseTimeThreshold": 150,
            "successRateThreshold": 95,
        }
    ],
)
def test_perf_test_fails_when_the_endpoint_is_slower_than_the_threshold(
    runner: FlaskCliRunner, app: Flask, fake_app_store: FakeAppStore, engine: sa.Engine
) -> None:
    endpoint = InFlight(app)
    with serve(endpoint) as url:
        fake_app_store.realtime_url = f"{url}/retention/realtime"
        result = invoke(runner, "perf-test", "2000000123")
        assert endpoint.wait_idle()
    reason = fails(result)
    assert "the performance test failed" in reason
    assert "Result: FAIL" in result.output
    assert "Failures by reason:" in result.output
    assert "TIMED_OUT" in result.output
    with Session(engine) as session:
        assert session.scalars(sa.select(PerformanceTest.status)).one() == "FAIL"


def test_perf_test_no_wait_then_result(
    runner: FlaskCliRunner, app: Flask, fake_app_store: FakeAppStore
) -> None:
    endpoint = InFlight(app)
    with serve(endpoint) as url:
        fake_app_store.realtime_url = f"{url}/retention/realtime"
        started = ok(invoke(runner, "perf-test", "2000000123", "--no-wait"))
        request_id = started.output.split("--result ")[1].split("`")[0]
        for _ in range(600):
            result = ok(invoke(runner, "perf-test", "--result", request_id))
            if "still running" not in result.output:
                break
            time.sleep(0.05)
        assert endpoint.wait_idle()
    assert "Result: PASS" in result.output


def test_perf_test_needs_exactly_one_of_id_or_result(runner: FlaskCliRunner) -> None:
    result = invoke(runner, "perf-test")
    assert result.exit_code == 2
    assert "ORIGINAL_TRANSACTION_ID" in result.output


# -- status -------------------------------------------------------------------------


def test_status_shows_versions_defaults_url_and_test(
    runner: FlaskCliRunner, tmp_path: Path
) -> None:
    build_catalogue(runner, tmp_path)
    ok(invoke(runner, "sync"))
    ok(invoke(runner, "message", "add", "--name", "plain", "--header", "Hi", "--body", "Again"))
    output = ok(invoke(runner, "status")).output
    assert "== Sandbox ==" in output
    assert "== Production ==" in output
    lines = output.splitlines()
    assert any(line.split()[:4] == ["plain", "1", "old", "APPROVED"] for line in lines)
    assert any(line.split()[:4] == ["plain", "2", "current", "not"] for line in lines)
    assert any(line.split() == [PRODUCT, LOCALE, "winback", "winback", "v1"] for line in lines)
    assert "Real-time URL: not configured" in output
    assert "Last performance test: none" in output


def test_lists_show_apple_state_per_environment(runner: FlaskCliRunner, tmp_path: Path) -> None:
    build_catalogue(runner, tmp_path)
    ok(invoke(runner, "sync"))
    images = ok(invoke(runner, "image", "list")).output.splitlines()
    assert images[0].split() == [
        "NAME",
        "VERSION",
        "SIZE",
        "PIXELS",
        "UUID",
        "Sandbox",
        "Production",
    ]
    assert images[1].split()[-2:] == ["APPROVED", "not"] or images[1].endswith("not uploaded")
    messages = ok(invoke(runner, "message", "list")).output
    assert "Before you go" in messages


# -- expected failures --------------------------------------------------------------------


def test_a_bad_image_file_is_one_line(runner: FlaskCliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "missing.png"
    assert "cannot read" in fails(invoke(runner, "image", "add", str(missing), "--name", "x"))
    not_png = tmp_path / "text.png"
    not_png.write_text("hello")
    fails(invoke(runner, "image", "add", str(not_png), "--name", "x"))


def test_a_message_breaking_apples_rules_is_one_line(runner: FlaskCliRunner) -> None:
    reason = fails(
        invoke(runner, "message", "add", "--name", "m", "--header", "H" * 70, "--body", "B")
    )
    assert "66" in reason


def test_retiring_a_message_in_use_is_refused(runner: FlaskCliRunner, tmp_path: Path) -> None:
    build_catalogue(runner, tmp_path)
    assert "is the default for" in fails(invoke(runner, "message", "retire", "winback", "--yes"))
    assert "no default" in fails(invoke(runner, "default", "remove", "nope", LOCALE, "--yes"))


@pytest.mark.parametrize("extra_config", [{"RETENTION_ISSUER_ID": None}])
def test_missing_config_names_the_key(runner: FlaskCliRunner) -> None:
    assert "RETENTION_ISSUER_ID is not set" in fails(invoke(runner, "sync"))


@pytest.mark.parametrize("extra_config", [{"RETENTION_KEY_ID": "WRONGKEY12"}])
def test_an_apple_error_shows_status_and_hint(runner: FlaskCliRunner) -> None:
    reason = fails(invoke(runner, "sync"))
    assert "Get Image List failed: HTTP 401" in reason


@pytest.mark.parametrize(
    "extra_config",
    [
        {
            "RETENTION_API_BASE_URL": "http://127.0.0.1:9",
            "tuning": dataclasses.replace(SYNC_TUNING, api_max_retries=0),
        }
    ],
)
def test_network_down_is_one_line(runner: FlaskCliRunner) -> None:
    reason = fails(invoke(runner, "sync"))
    assert "Get Image List failed" in reason
    assert "ConnectError" in reason


def test_an_apple_error_code_is_named(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    fake_app_store.locales = frozenset({"fr-FR"})
    build_catalogue(runner, tmp_path)
    reason = fails(invoke(runner, "sync"))
    assert "InvalidLocaleError (4000164)" in reason
