"""The commands show what Apple's answers hold, whichever fields they lack.

Apple's answers come from a small stand-in for Apple's API served over
loopback HTTP: it checks each request's signed token with the public half of
the test key, as Apple does, and answers the JSON a test gives it for a
path. (The fake App Store computes its own answers, so it cannot send an
answer without ``average``.)
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskCliRunner
from werkzeug.wrappers import Request, Response

from flask_retention import Tuning
from flask_retention.testing import AppStoreSigner, serve

from .support import SYNC_TUNING, build_catalogue, fails, invoke, ok, sync_app

API = "/inApps/v1/messaging"
REQUEST_ID = "5e7c1a3b-8d2f-4e6a-9b1c-0f2e3d4c5b6a"
CONFIG = {
    "maxConcurrentRequests": 4,
    "responseTimeThreshold": 700,
    "successRateThreshold": 95,
    "totalDuration": 2000,
    "totalRequests": 20,
}
STARTED = {"config": CONFIG, "requestId": REQUEST_ID}
TARGET = "https://retention.example.com/retention/realtime"
PASSED = {
    "config": CONFIG,
    "target": TARGET,
    "result": "PASS",
    "successRate": 100,
    "numPending": 0,
    "failures": {},
}
TIMES_WITHOUT_AVERAGE = {"p50": 41, "p90": 87.5, "p95": 90, "p99": 120}
RESULT_PATH = f"{API}/performanceTest/result/{REQUEST_ID}"


class AppleAnswers:
    """Answers Apple's JSON for the paths a test sets, after checking the request's token.

    ``answers[(method, path)]`` is a list of bodies given in turn (the last
    one again and again); a ``str`` is sent as it is, anything else as JSON.
    """

    def __init__(self, public_key: ec.EllipticCurvePublicKey, issuer_id: str) -> None:
        self.public_key = public_key
        self.issuer_id = issuer_id
        self.answers: dict[tuple[str, str], list[Any]] = {}
        self.calls: list[tuple[str, str]] = []

    def answer(self, method: str, path: str, *bodies: Any) -> None:
        self.answers[(method, path)] = list(bodies)

    def __call__(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        try:
            jwt.decode(
                token,
                self.public_key,
                algorithms=["ES256"],
                audience="appstoreconnect-v1",
                issuer=self.issuer_id,
            )
        except jwt.InvalidTokenError:
            return Response(status=401)(environ, start_response)
        key = (request.method, request.path)
        self.calls.append(key)
        bodies = self.answers.get(key)
        if not bodies:
            body = {"errorCode": 4040000, "errorMessage": "not set by the test"}
            return Response(json.dumps(body), 404, mimetype="application/json")(
                environ, start_response
            )
        body = bodies.pop(0) if len(bodies) > 1 else bodies[0]
        text = body if isinstance(body, str) else json.dumps(body)
        return Response(text, mimetype="application/json")(environ, start_response)


@pytest.fixture
def apple(app_store_key: ec.EllipticCurvePrivateKey, app_store_issuer_id: str) -> AppleAnswers:
    return AppleAnswers(app_store_key.public_key(), app_store_issuer_id)


@pytest.fixture
def app(
    tmp_path: Path,
    database_url: str,
    apple: AppleAnswers,
    app_store_key: ec.EllipticCurvePrivateKey,
    app_store_key_id: str,
    app_store_issuer_id: str,
    app_store_bundle_id: str,
    app_store_signer: AppStoreSigner,
) -> Iterator[Flask]:
    with (
        serve(apple) as url,
        sync_app(
            tmp_path,
            database_url,
            store_url=url,
            key=app_store_key,
            key_id=app_store_key_id,
            issuer_id=app_store_issuer_id,
            bundle_id=app_store_bundle_id,
            signer=app_store_signer,
        ) as app,
    ):
        yield app


# -- performance test ------------------------------------------------------------------


def test_perf_test_result_without_average_shows_the_percentiles_and_passes(
    runner: FlaskCliRunner, apple: AppleAnswers
) -> None:
    apple.answer("POST", f"{API}/performanceTest", STARTED)
    apple.answer(
        "GET",
        RESULT_PATH,
        {"result": "PENDING", "numPending": 12},
        {**PASSED, "responseTimes": TIMES_WITHOUT_AVERAGE},
    )
    output = ok(invoke(runner, "perf-test", "2000000123")).output
    assert f"Started performance test {REQUEST_ID}" in output
    assert "Result: PASS" in output
    assert "Response times (ms): p50 41, p90 87.5, p95 90, p99 120\n" in output
    assert "average" not in output
    assert apple.calls.count(("GET", RESULT_PATH)) == 2
    status = ok(invoke(runner, "status", "--environment", "Sandbox")).output
    assert f"Last performance test: PASS ({REQUEST_ID}" in status


def test_perf_test_result_without_response_times_says_so_and_passes(
    runner: FlaskCliRunner, apple: AppleAnswers
) -> None:
    apple.answer("POST", f"{API}/performanceTest", STARTED)
    apple.answer("GET", RESULT_PATH, PASSED)
    output = ok(invoke(runner, "perf-test", "2000000123")).output
    assert "Result: PASS" in output
    assert "Success rate: 100%" in output
    assert "Response times: not in Apple's answer" in output


def test_perf_test_result_fetched_later_without_average_is_shown(
    runner: FlaskCliRunner, apple: AppleAnswers
) -> None:
    apple.answer("GET", RESULT_PATH, {**PASSED, "responseTimes": {"p99": 300}})
    output = ok(invoke(runner, "perf-test", "--result", REQUEST_ID)).output
    assert "Result: PASS" in output
    assert "Response times (ms): p99 300\n" in output


def test_perf_test_result_that_never_ends_stops_after_the_wait_and_says_how_to_fetch_it(
    tmp_path: Path,
    database_url: str,
    apple: AppleAnswers,
    app_store_key: ec.EllipticCurvePrivateKey,
    app_store_key_id: str,
    app_store_issuer_id: str,
    app_store_bundle_id: str,
    app_store_signer: AppStoreSigner,
) -> None:
    apple.answer("POST", f"{API}/performanceTest", STARTED)
    apple.answer("GET", RESULT_PATH, {"numPending": 3})  # no "result", ever
    tuning = dataclasses.replace(SYNC_TUNING, perf_test_max_wait=0.3)
    with (
        serve(apple) as url,
        sync_app(
            tmp_path,
            database_url,
            store_url=url,
            key=app_store_key,
            key_id=app_store_key_id,
            issuer_id=app_store_issuer_id,
            bundle_id=app_store_bundle_id,
            signer=app_store_signer,
            tuning=tuning,
        ) as app,
    ):
        reason = fails(invoke(app.test_cli_runner(), "perf-test", "2000000123"))
    assert reason == (
        f"Error: Apple has no result for performance test {REQUEST_ID} after 0.3 s; fetch "
        f"it later with `flask retention perf-test --result {REQUEST_ID}`."
    )
    assert apple.calls.count(("GET", RESULT_PATH)) >= 1  # it followed the test, then gave up


def test_the_real_perf_test_wait_is_half_an_hour() -> None:
    assert Tuning().perf_test_max_wait == 1800.0


def test_perf_test_start_without_config_still_follows_the_test(
    runner: FlaskCliRunner, apple: AppleAnswers
) -> None:
    apple.answer("POST", f"{API}/performanceTest", {"requestId": REQUEST_ID})
    apple.answer("GET", RESULT_PATH, {"result": "PENDING"}, PASSED)
    output = ok(invoke(runner, "perf-test", "2000000123")).output
    assert "Apple's answer does not say how the test runs." in output
    assert "Result: PASS" in output


def test_perf_test_config_with_a_wrong_typed_value_shows_the_rest(
    runner: FlaskCliRunner, apple: AppleAnswers, caplog: pytest.LogCaptureFixture
) -> None:
    apple.answer(
        "POST",
        f"{API}/performanceTest",
        {**STARTED, "config": {**CONFIG, "successRateThreshold": "95%"}},
    )
    apple.answer("GET", RESULT_PATH, PASSED)
    output = ok(invoke(runner, "perf-test", "2000000123", "--no-wait")).output
    header, row = output.splitlines()[1:3]
    assert header.startswith("REQUESTS")
    assert header.endswith("SUCCESS RATE")
    assert row.split() == ["20", "4", "2000", "700", "-"]
    assert "PerformanceTestConfig.successRateThreshold is a string" in caplog.text


def test_perf_test_start_without_request_id_is_a_one_line_error(
    runner: FlaskCliRunner, apple: AppleAnswers
) -> None:
    apple.answer("POST", f"{API}/performanceTest", {"config": CONFIG})
    reason = fails(invoke(runner, "perf-test", "2000000123"))
    assert "Apple started a performance test but did not return its requestId" in reason
    assert "then run `flask retention perf-test ORIGINAL_TRANSACTION_ID` again" in reason
    assert apple.calls == [("POST", f"{API}/performanceTest")]


def test_perf_test_result_that_is_not_an_object_is_a_one_line_error(
    runner: FlaskCliRunner, apple: AppleAnswers
) -> None:
    apple.answer("GET", RESULT_PATH, ["PASS"])
    reason = fails(invoke(runner, "perf-test", "--result", REQUEST_ID))
    assert "Get Performance Test Results failed: HTTP 200" in reason
    assert "PerformanceTestResultResponse is a list, not a JSON object" in reason
    assert "its answer cannot be read; retry later" in reason


def test_perf_test_result_that_is_not_json_is_a_one_line_error(
    runner: FlaskCliRunner, apple: AppleAnswers
) -> None:
    apple.answer("GET", RESULT_PATH, "<html>maintenance</html>")
    reason = fails(invoke(runner, "perf-test", "--result", REQUEST_ID))
    assert "Get Performance Test Results failed: HTTP 200 (the body is not JSON)" in reason


# -- real-time URL ---------------------------------------------------------------------


def test_realtime_url_answer_without_the_url_is_a_one_line_error(
    runner: FlaskCliRunner, apple: AppleAnswers
) -> None:
    apple.answer("GET", f"{API}/realtime/url", {"realtimeUrl": TARGET})
    reason = fails(invoke(runner, "realtime-url", "get", "--environment", "Sandbox"))
    assert "answer to Get Realtime URL has no realtimeURL" in reason
    assert "flask retention realtime-url set URL" in reason


# -- sync ------------------------------------------------------------------------------


def uuids(runner: FlaskCliRunner, kind: str) -> dict[str, str]:
    listed = json.loads(ok(invoke(runner, kind, "list", "--json")).output)
    return {item["name"]: item["uuid"] for item in listed}


def states(runner: FlaskCliRunner, kind: str) -> dict[str, str | None]:
    listed = json.loads(ok(invoke(runner, kind, "list", "--json")).output)
    return {item["name"]: item["apple_state"]["Sandbox"] for item in listed}


def test_sync_skips_items_without_identifier_and_holds_items_without_state(
    runner: FlaskCliRunner,
    apple: AppleAnswers,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    build_catalogue(runner, tmp_path)
    images = uuids(runner, "image")
    messages = uuids(runner, "message")
    stranger = str(uuid.uuid4())
    apple.answer(
        "GET",
        f"{API}/image/list",
        {
            "imageIdentifiers": [
                {"imageIdentifier": images["hero"], "imageState": "APPROVED"},
                {"imageIdentifier": images["tick"]},
                {"imageState": "APPROVED"},
            ]
        },
    )
    apple.answer(
        "GET",
        f"{API}/message/list",
        {
            "messageIdentifiers": [
                {"messageIdentifier": messages["winback"], "messageState": "APPROVED"},
                {"messageIdentifier": messages["plain"], "messageState": "IN_REVIEW"},
                {"messageIdentifier": stranger, "messageState": None},
            ]
        },
    )
    output = ok(invoke(runner, "sync")).output
    # Nothing uploaded again (Apple holds all four) and no default (tick is not approved).
    assert "Nothing to change at Apple." in output
    assert [call for call in apple.calls if call[0] != "GET"] == []
    assert "image tick v1: PENDING at Apple" in output
    assert "message plain v1: PENDING at Apple" in output
    assert states(runner, "image") == {"hero": "APPROVED", "tick": "PENDING"}
    assert states(runner, "message") == {"winback": "APPROVED", "plain": "PENDING"}
    assert "Apple lists an image without an identifier; skipped" in caplog.text
    assert f"Apple lists an image {images['tick']} without a review state" in caplog.text
    assert "in review state 'IN_REVIEW', which sync does not know" in caplog.text
    assert f"Apple lists a message {stranger} without a review state" in caplog.text


def test_sync_dry_run_shows_the_held_item_as_waiting(
    runner: FlaskCliRunner, apple: AppleAnswers, tmp_path: Path
) -> None:
    build_catalogue(runner, tmp_path)
    images = uuids(runner, "image")
    messages = uuids(runner, "message")
    apple.answer(
        "GET",
        f"{API}/image/list",
        {
            "imageIdentifiers": [
                {"imageIdentifier": images["hero"], "imageState": "APPROVED"},
                {"imageIdentifier": images["tick"], "imageState": "APPROVED"},
            ]
        },
    )
    apple.answer(
        "GET",
        f"{API}/message/list",
        {"messageIdentifiers": [{"messageIdentifier": messages["winback"]}]},
    )
    output = ok(invoke(runner, "sync", "--dry-run")).output
    steps = [line.split() for line in output.splitlines() if line.startswith(("upload", "conf"))]
    assert steps == [["upload", "message", "plain", "v1", messages["plain"]]]
    assert "message winback v1: PENDING at Apple" in output
