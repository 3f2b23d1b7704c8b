"""``flask retention simulate`` against an endpoint served over loopback HTTP."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner

from flask_retention import ConfigurationError, RealtimeRequest, Retention
from flask_retention.appstore.simulate import SimulationError, format_result, simulate, simulate_app
from flask_retention.realtime.devca import create_dev_ca, dev_ca_folder, load_dev_ca_signer
from flask_retention.testing import serve

from .test_fake_app_store_performance import self_signed_context

ENDPOINT = "/retention/realtime"
APP_APPLE_ID = 1234567890
SLEEP = 0.3  # seconds the slow selector takes: three times the threshold it is tested with
APPLE_KEYS = {
    "config",
    "target",
    "result",
    "successRate",
    "numPending",
    "responseTimes",
    "failures",
}


@pytest.fixture
def config() -> dict[str, object]:
    return {
        "RETENTION_APP_APPLE_ID": APP_APPLE_ID,
        "RETENTION_TRUST_DEV_CA": True,
        "RETENTION_SELECTOR_TIMEOUT": 10 * SLEEP,
        "RETENTION_DECISION_LOG": False,  # these apps have no tables; the log is tested apart
    }


@pytest.fixture
def seen() -> list[RealtimeRequest]:
    return []


@pytest.fixture
def retention(app: Flask, seen: list[RealtimeRequest]) -> Iterator[Retention]:
    retention = Retention(app)
    lock = threading.Lock()

    @retention.selector
    def choose(req: RealtimeRequest) -> None:
        with lock:
            seen.append(req)
        if req.product_id == "com.example.slow":
            time.sleep(SLEEP)

    yield retention
    retention.close()


@pytest.fixture
def url(app: Flask, retention: Retention) -> Iterator[str]:
    create_dev_ca(dev_ca_folder(app))
    with serve(app) as base:
        yield base + ENDPOINT


def invoke(runner: FlaskCliRunner, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(args=["retention", "simulate", *args])
    return result.exit_code, result.stdout, result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_simulate_passes_against_a_fast_endpoint(
    runner: FlaskCliRunner, url: str, seen: list[RealtimeRequest]
) -> None:
    # A generous threshold: this tests the verdict, not the machine's speed.
    code, out, _ = invoke(
        runner, "--url", url, "--requests", "20", "--concurrency", "4", "--threshold-ms", "10000"
    )
    assert code == 0, out
    assert "Result: PASS: success rate 100 %" in out
    assert "p50" in out
    assert "p99" in out
    assert "Failures: none" in out
    assert len(seen) == 20
    assert len({req.request_identifier for req in seen}) == 20
    assert {(req.environment, req.app_apple_id) for req in seen} == {("Sandbox", APP_APPLE_ID)}


def test_simulate_fails_when_answers_are_slower_than_the_threshold(
    runner: FlaskCliRunner, url: str
) -> None:
    code, out, _ = invoke(
        runner,
        "--url",
        url,
        "--requests",
        "4",
        "--concurrency",
        "4",
        "--product",
        "com.example.slow",
        "--threshold-ms",
        str(int(SLEEP * 1000 / 3)),
    )
    assert code == 1, out
    assert "Result: FAIL: success rate 0 %" in out
    assert "TIMED_OUT: 4" in out


def test_simulate_json_is_apples_result_shape(
    runner: FlaskCliRunner, url: str, seen: list[RealtimeRequest]
) -> None:
    code, out, _ = invoke(
        runner,
        "--url",
        url,
        "--requests",
        "6",
        "--concurrency",
        "2",
        "--product",
        "com.example.a",
        "--product",
        "com.example.b",
        "--locale",
        "fr-FR",
        "--original-transaction-id",
        "2000000000000001",
        "--original-transaction-id",
        "2000000000000002",
        "--original-transaction-id",
        "2000000000000003",
        "--threshold-ms",
        "5000",
        "--success-rate",
        "100",
        "--json",
    )
    assert code == 0, out
    result = json.loads(out)
    assert set(result) == APPLE_KEYS | {"httpErrors"}
    assert result["config"] == {
        "maxConcurrentRequests": 2,
        "totalRequests": 6,
        "totalDuration": 0,
        "responseTimeThreshold": 5000,
        "successRateThreshold": 100,
    }
    assert (result["target"], result["result"], result["successRate"]) == (url, "PASS", 100)
    assert result["numPending"] == 0
    assert set(result["responseTimes"]) == {"average", "p50", "p90", "p95", "p99"}
    assert all(isinstance(v, int) for v in result["responseTimes"].values())
    assert (result["failures"], result["httpErrors"]) == ({}, {})
    assert {(r.product_id, r.locale) for r in seen} == {
        ("com.example.a", "fr-FR"),
        ("com.example.b", "fr-FR"),
    }
    assert {r.original_transaction_id for r in seen} == {
        "2000000000000001",
        "2000000000000002",
        "2000000000000003",
    }


def test_simulate_names_the_refusals_of_an_endpoint_that_does_not_trust_the_dev_ca(
    app: Flask, runner: FlaskCliRunner, retention: Retention, tmp_path: Path
) -> None:
    other = Flask("untrusting", instance_path=str(tmp_path / "other"))
    other.config.update(RETENTION_APP_APPLE_ID=APP_APPLE_ID)
    untrusting = Retention(other)
    untrusting.selector(lambda req: None)
    create_dev_ca(dev_ca_folder(app))
    try:
        with serve(other) as base:
            code, out, _ = invoke(
                runner, "--url", base + ENDPOINT, "--requests", "3", "--threshold-ms", "10000"
            )
    finally:
        untrusting.close()
    assert code == 1
    assert "UNSUCCESSFUL_HTTP_RESPONSE_CODE: 3" in out
    assert "401 untrusted_root: 3" in out
    assert "Hint: the endpoint does not trust the dev CA: set RETENTION_TRUST_DEV_CA" in out


def test_simulate_without_a_dev_ca_says_how_to_make_one(
    app: Flask, runner: FlaskCliRunner, retention: Retention
) -> None:
    code, out, err = invoke(runner, "--url", f"http://127.0.0.1:{free_port()}{ENDPOINT}")
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert "flask retention dev-ca" in err


@pytest.mark.parametrize("bad", ["ftp://127.0.0.1/x", "not a url", "http://"])
def test_simulate_refuses_a_bad_url(
    app: Flask, runner: FlaskCliRunner, retention: Retention, bad: str
) -> None:
    create_dev_ca(dev_ca_folder(app))
    code, out, err = invoke(runner, "--url", bad)
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert "is not an http:// or https:// URL" in err


def test_simulate_says_when_nothing_answers(
    app: Flask, runner: FlaskCliRunner, retention: Retention
) -> None:
    create_dev_ca(dev_ca_folder(app))
    target = f"http://127.0.0.1:{free_port()}{ENDPOINT}"
    code, out, err = invoke(runner, "--url", target, "--requests", "3")
    assert code == 1
    assert out == ""
    assert err.splitlines()[-1] == (
        f"Error: Nothing answered at {target} (3 × SOCKET_ISSUE): is the app running there? "
        "Start it (e.g. `flask run`), or give its URL."
    )
    assert "Traceback" not in err


def test_simulate_pairs_locales_with_products(runner: FlaskCliRunner, url: str) -> None:
    products = ["--product", "a", "--product", "b", "--product", "c"]
    locales = ["--locale", "en-US", "--locale", "fr-FR"]
    result = runner.invoke(args=["retention", "simulate", "--url", url, *products, *locales])
    assert result.exit_code == 2
    assert "one per --product" in result.output


def test_simulate_function_returns_apples_result(app: Flask, url: str) -> None:
    signer = load_dev_ca_signer(dev_ca_folder(app))
    result = simulate(
        url, signer, app_apple_id=APP_APPLE_ID, requests=5, concurrency=2, threshold_ms=5000
    )
    assert set(result) >= APPLE_KEYS
    assert (result["result"], result["successRate"], result["failures"]) == ("PASS", 100, {})
    assert "Result: PASS" in format_result(result)


def test_simulate_function_reports_progress(app: Flask, url: str) -> None:
    reports: list[int] = []
    result = simulate_app(app, url=url, requests=5, threshold_ms=5000, progress=reports.append)
    assert result["result"] == "PASS"
    assert reports[-1] == 5
    assert reports == sorted(reports)


@pytest.mark.parametrize(
    ("option", "value"),
    [("requests", 0), ("concurrency", 0), ("threshold_ms", 0), ("success_rate", 101)],
)
def test_simulate_function_checks_its_numbers(
    app: Flask, retention: Retention, option: str, value: int
) -> None:
    signer = load_dev_ca_signer(create_dev_ca(dev_ca_folder(app)))
    options: dict[str, Any] = {option: value}  # one of simulate's int keywords, by name
    with pytest.raises(ValueError, match=option):
        simulate("http://127.0.0.1:9/x", signer, **options)


def test_simulate_app_needs_a_dev_ca(app: Flask, retention: Retention) -> None:
    with pytest.raises(ConfigurationError, match="flask retention dev-ca"):
        simulate_app(app, url="http://127.0.0.1:9/x")


def test_simulate_app_needs_a_url_without_an_endpoint(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update(RETENTION_ENDPOINT=None)
    Retention(app)
    with pytest.raises(SimulationError, match="RETENTION_ENDPOINT is None"):
        simulate_app(app)


def test_simulate_says_when_tls_fails_everywhere(
    app: Flask, runner: FlaskCliRunner, retention: Retention, tmp_path: Path
) -> None:
    create_dev_ca(dev_ca_folder(app))
    with serve(app, ssl_context=self_signed_context(tmp_path)) as base:
        code, out, err = invoke(
            runner, "--url", base + ENDPOINT, "--requests", "2", "--threshold-ms", "10000"
        )
    assert code == 1
    assert out == ""
    assert "(2 × TLS_ISSUE): check that it speaks HTTPS" in err
