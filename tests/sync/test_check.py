"""``flask retention check``: an empty app fails with every problem, a complete one passes
against the fake App Store, and what Apple lost since the last sync is found."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy.orm import Session

from flask_retention import RealtimeRequest, Retention
from flask_retention.appstore.client import RetentionAPIClient, client_from_settings
from flask_retention.catalogue.models import Decision, PerformanceTest
from flask_retention.testing import AppStoreSigner, FakeAppStore, serve

from ..support import state_of
from .support import LOCALE, PRODUCT, InFlight, build_catalogue, fails, invoke, ok

REALTIME_URL = "https://retention.example.com/retention/realtime"


@pytest.fixture
def engine(app: Flask) -> sa.Engine:
    retention = app.extensions["retention"]
    assert isinstance(retention, Retention)
    return retention.get_engine(app)


def problems(result: Result) -> list[str]:
    """The problem lines ``check`` printed (on stderr), without their dash."""
    return [line[2:] for line in result.stderr.splitlines() if line.startswith("- ")]


def check_json(runner: FlaskCliRunner, *args: str) -> tuple[int, dict[str, Any]]:
    result = invoke(runner, "check", "--json", *args)
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.stdout)


def go_live(
    runner: FlaskCliRunner,
    app: Flask,
    store: FakeAppStore,
    tmp_path: Path,
    build: Callable[[FlaskCliRunner, Path], None] = build_catalogue,
) -> None:
    """Everything a sandbox deployment does: the catalogue ``build`` makes, sync, a passed
    performance test, the real-time URL."""
    build(runner, tmp_path)
    ok(invoke(runner, "sync"))
    endpoint = InFlight(app)
    with serve(endpoint) as url:
        store.realtime_url = f"{url}/retention/realtime"
        ok(invoke(runner, "perf-test", "2000000123"))
        assert endpoint.wait_idle()
    ok(invoke(runner, "realtime-url", "set", REALTIME_URL))


def api(app: Flask) -> RetentionAPIClient:
    """A management API client of the app's settings (the test's way to change Apple)."""
    return client_from_settings(state_of(app).settings, "Sandbox")


# -- an app that is not ready -------------------------------------------------------------


def test_an_app_just_initialised_fails_with_every_problem(
    tmp_path: Path, database_url: str
) -> None:
    app = Flask("retention_check_empty", instance_path=str(tmp_path / "instance"))
    app.config.update(TESTING=True, RETENTION_DATABASE_URI=database_url)
    retention = Retention(app)
    runner = app.test_cli_runner()
    try:
        ok(invoke(runner, "init-db"))
        result = invoke(runner, "check", "--environment", "Production")
        reason = fails(result)
        found = problems(result)
        assert reason == f"Error: {len(found)} problems found in Production (offline)."
        text = "\n".join(found)
        for expected in (
            "the endpoint accepts only Sandbox requests",
            "RETENTION_APP_APPLE_ID is not set",
            "RETENTION_ISSUER_ID is not set",
            "RETENTION_KEY_ID is not set",
            "RETENTION_PRIVATE_KEY is not set",
            "RETENTION_BUNDLE_ID is not set",
            "no selector is registered",
            "the catalogue has no messages",
            "the catalogue has no default messages",
            "no real-time URL is recorded for Production",
            "no Sandbox performance test is recorded (Production has none",
        ):
            assert expected in text
        assert "All checks passed" not in result.output

        code, report = check_json(runner, "--environment", "Production")
        assert code == 1
        assert report["ok"] is False
        assert report["online"] is False
        checks = {p["check"] for p in report["problems"]}
        assert checks >= {"environment", "settings", "selector", "catalogue", "realtime_url"}
        assert len(report["problems"]) == len(found)

        # Asked to go online without the settings: said, not a crash.
        result = invoke(runner, "check", "--online")
        assert any("--online needs the management API settings" in p for p in problems(result))
    finally:
        retention.close(app)


def test_a_database_not_migrated_stops_the_checks_that_need_it(
    tmp_path: Path, database_url: str
) -> None:
    app = Flask("retention_check_nodb", instance_path=str(tmp_path / "instance"))
    app.config.update(TESTING=True, RETENTION_DATABASE_URI=database_url)
    retention = Retention(app)
    retention.selector(lambda req: None)
    try:
        result = invoke(app.test_cli_runner(), "check")
        fails(result)
        assert any("run `flask retention init-db`" in p for p in problems(result))
        assert not any("catalogue has no messages" in p for p in problems(result))
    finally:
        retention.close(app)


# -- a complete app, against the fake -------------------------------------------------


def test_a_complete_app_passes_online_and_offline(
    runner: FlaskCliRunner, app: Flask, fake_app_store: FakeAppStore, tmp_path: Path
) -> None:
    go_live(runner, app, fake_app_store, tmp_path)
    since = len(fake_app_store.requests)
    result = ok(invoke(runner, "check"))
    assert "All checks passed (Sandbox, online)." in result.output
    assert f"Note: real-time URL: {REALTIME_URL}" in result.output
    assert "Note: last Sandbox performance test: PASS" in result.output
    asked = [str(r.endpoint) for r in fake_app_store.requests[since:]]
    assert sorted(asked) == ["get_image_list", "get_message_list", "get_realtime_url"]

    assert (
        "All checks passed (Sandbox, offline)." in ok(invoke(runner, "check", "--offline")).output
    )
    code, report = check_json(runner)
    assert code == 0
    assert report["ok"] is True
    assert report["online"] is True
    assert report["problems"] == []


def test_verify_defaults_finds_a_default_apple_lost(
    runner: FlaskCliRunner, app: Flask, fake_app_store: FakeAppStore, tmp_path: Path
) -> None:
    go_live(runner, app, fake_app_store, tmp_path)
    with api(app) as client:
        client.delete_default_message(PRODUCT, LOCALE)
    # Apple still lists the message, so only reading the default back finds the loss.
    ok(invoke(runner, "check"))
    result = invoke(runner, "check", "--verify-defaults")
    fails(result)
    assert problems(result) == [
        f"default {PRODUCT} / {LOCALE}: Apple holds no default there in Sandbox (according "
        "to Apple); run `flask retention sync --environment Sandbox`."
    ]
    assert "Reading 1 default from Apple: about 0 s" in result.stderr
    code, report = check_json(runner, "--verify-defaults")
    assert code == 1
    assert report["defaults_read"] == 1
    # The checks changed nothing here: the record still says Apple holds the default.
    status = json.loads(ok(invoke(runner, "status", "--environment", "Sandbox", "--json")).stdout)
    assert status[0]["defaults"][0]["apple"] is not None
    ok(invoke(runner, "sync", "--verify-defaults"))
    ok(invoke(runner, "check", "--verify-defaults"))


def test_a_default_whose_message_apple_lost_is_read_without_asking(
    runner: FlaskCliRunner, app: Flask, fake_app_store: FakeAppStore, tmp_path: Path
) -> None:
    go_live(runner, app, fake_app_store, tmp_path)
    held = fake_app_store.defaults[(PRODUCT, LOCALE)]
    with api(app) as client:
        client.delete_default_message(PRODUCT, LOCALE)
        client.delete_message(held)
    result = invoke(runner, "check")
    fails(result)
    text = "\n".join(problems(result))
    assert f"default {PRODUCT} / {LOCALE}: message 'winback' has no version APPROVED" in text
    assert "not uploaded yet, according to Apple" in text
    assert [r.endpoint for r in fake_app_store.requests].count("get_default_message") == 1


def test_the_realtime_url_is_compared_with_what_was_recorded(
    runner: FlaskCliRunner, app: Flask, fake_app_store: FakeAppStore, tmp_path: Path
) -> None:
    go_live(runner, app, fake_app_store, tmp_path)
    fake_app_store.realtime_url = "https://other.example.com/rt"
    result = invoke(runner, "check")
    fails(result)
    assert problems(result) == [
        "Apple's real-time URL for Sandbox is https://other.example.com/rt, but "
        f"`realtime-url set` recorded {REALTIME_URL}: it was changed elsewhere; set the right "
        "one with `flask retention realtime-url set URL --environment Sandbox`."
    ]
    with api(app) as client:
        client.delete_realtime_url()
    result = invoke(runner, "check")
    assert any(p.startswith("Apple holds no real-time URL for Sandbox") for p in problems(result))
    # Offline, the record is all there is: it still shows the URL set here.
    result = ok(invoke(runner, "check", "--offline"))
    assert f"real-time URL (as recorded, not asked): {REALTIME_URL}" in result.output


def test_a_url_set_elsewhere_is_a_note(
    runner: FlaskCliRunner, app: Flask, fake_app_store: FakeAppStore, tmp_path: Path
) -> None:
    go_live(runner, app, fake_app_store, tmp_path)
    ok(invoke(runner, "realtime-url", "delete", "--yes"))
    fake_app_store.realtime_url = REALTIME_URL
    result = ok(invoke(runner, "check"))
    assert "it was set elsewhere" in result.output


def test_a_failed_or_unfinished_performance_test_is_a_problem(
    runner: FlaskCliRunner,
    app: Flask,
    fake_app_store: FakeAppStore,
    engine: sa.Engine,
    tmp_path: Path,
) -> None:
    go_live(runner, app, fake_app_store, tmp_path)
    failed = uuid.uuid4()
    with Session(engine) as session, session.begin():
        session.add(PerformanceTest(request_id=failed, environment="Sandbox", status="FAIL"))
    result = invoke(runner, "check")
    assert problems(result) == [
        "the last Sandbox performance test ended FAIL: make the endpoint answer within "
        "Apple's limit and run `flask retention perf-test` again."
    ]
    pending = uuid.uuid4()
    with Session(engine) as session, session.begin():
        session.add(PerformanceTest(request_id=pending, environment="Sandbox", status="PENDING"))
    result = invoke(runner, "check")
    assert any(f"--result {pending}" in p for p in problems(result))


def test_traffic_without_a_default_and_unapproved_defaults(
    runner: FlaskCliRunner, engine: sa.Engine, tmp_path: Path
) -> None:
    build_catalogue(runner, tmp_path)
    with Session(engine) as session, session.begin():
        session.add(
            Decision(
                product_id="com.example.retention.yearly",
                locale="fr-FR",
                environment="Sandbox",
                status=200,
            )
        )
    result = invoke(runner, "check", "--offline")
    text = "\n".join(problems(result))
    assert f"default {PRODUCT} / {LOCALE}: message 'winback' has no version APPROVED" in text
    assert "not uploaded yet, according to the record of the last sync" in text
    assert "com.example.retention.yearly / fr-FR gets real-time requests in Sandbox" in text


def test_apple_out_of_reach_is_one_problem_and_the_records_are_used(
    tmp_path: Path,
    database_url: str,
    app_store_key: ec.EllipticCurvePrivateKey,
    app_store_key_id: str,
    app_store_issuer_id: str,
    app_store_bundle_id: str,
    app_store_signer: AppStoreSigner,
) -> None:
    from .support import sync_app

    with serve(lambda environ, start_response: []) as url:
        closed = url  # the server stops at the end of this block: nothing listens there
    with sync_app(
        tmp_path,
        database_url,
        store_url=closed,
        key=app_store_key,
        key_id=app_store_key_id,
        issuer_id=app_store_issuer_id,
        bundle_id=app_store_bundle_id,
        signer=app_store_signer,
    ) as app:
        result = invoke(app.test_cli_runner(), "check")
        fails(result)
        found = problems(result)
        assert found[0].startswith("could not ask Apple (")
        assert "pass --offline to skip Apple" in found[0]
        assert "no real-time URL is recorded for Sandbox" in "\n".join(found)


def test_the_selector_of_a_complete_app_counts(tmp_path: Path, database_url: str) -> None:
    app = Flask("retention_check_selector", instance_path=str(tmp_path / "instance"))
    app.config.update(TESTING=True, RETENTION_DATABASE_URI=database_url)
    retention = Retention(app)

    @retention.selector
    def choose(req: RealtimeRequest) -> None:
        return None

    try:
        ok(invoke(app.test_cli_runner(), "init-db"))
        result = invoke(app.test_cli_runner(), "check")
        assert not any("selector" in p for p in problems(result))
    finally:
        retention.close(app)
