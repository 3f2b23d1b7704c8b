"""``flask retention fake-app-store``: a fake App Store for the CLI in one command.

The command runs as a real subprocess (``flask --app tests.fake_app_store_app``),
the app takes the config it prints, and ``sync``, ``realtime-url set --allow-http``
and ``perf-test`` run through the CLI against it, with the app's endpoint served
on loopback. ``--allow-http`` is refused against Apple and for other hosts.
"""

from __future__ import annotations

import ast
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskCliRunner

from flask_retention import Retention
from flask_retention.api import BadRequestError, RealtimeUrlRequest, client_from_app
from flask_retention.appstore.golive import GoLiveError, configure_realtime_url
from flask_retention.testing import FakeAppStorePair, serve

from . import fake_app_store_app
from .sync.support import LOCALE, PRODUCT, SYNC_TUNING, build_catalogue, fails, invoke, ok

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
READY_LINE: Final = "Serving until Ctrl-C."
READY_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 10.0
#: A short performance test with a threshold loose enough for a busy test machine.
PERF_TEST_CONFIG: Final = (
    "totalRequests=20",
    "maxConcurrentRequests=4",
    "totalDuration=0",
    "responseTimeThreshold=5000",
)
CONFIG_KEYS: Final = {
    "RETENTION_API_BASE_URL",
    "RETENTION_ISSUER_ID",
    "RETENTION_KEY_ID",
    "RETENTION_PRIVATE_KEY_PATH",
    "RETENTION_BUNDLE_ID",
    "RETENTION_TRUST_DEV_CA",
}


@dataclass
class FakeStoreProcess:
    """``flask retention fake-app-store`` running as a subprocess, and its output file."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_until_ready(self) -> str:
        """The output once the command says it serves; fails if it exits or takes too long."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            output = self.output()
            if READY_LINE in output:
                return output
            code = self.process.poll()
            if code is not None:
                pytest.fail(f"fake-app-store exited with {code} before serving:\n{output}")
            time.sleep(0.05)
        pytest.fail(f"fake-app-store did not serve within {READY_TIMEOUT} s:\n{self.output()}")

    def interrupt(self) -> int:
        """Ctrl-C: send SIGINT and return the exit status."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(STOP_TIMEOUT)


def printed_config(output: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The Python config lines (evaluated) and the environment variables the command printed."""
    python: dict[str, Any] = {}
    environment: dict[str, str] = {}
    for line in output.splitlines():
        text = line.strip()
        if text.startswith("export FLASK_RETENTION_"):
            name, _, value = shlex.split(text)[1].partition("=")
            environment[name] = value
        elif text.startswith("RETENTION_") and " = " in text:
            key, _, value = text.partition(" = ")
            python[key] = ast.literal_eval(value)
    return python, environment


@pytest.fixture
def host_environment(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test app's instance folder and database, in the environment of this process (for
    the apps built here) and of the subprocess; its tables are made."""
    monkeypatch.setenv(fake_app_store_app.ENV_INSTANCE_PATH, str(tmp_path / "instance"))
    monkeypatch.setenv("FLASK_RETENTION_DATABASE_URI", database_url)
    with host_app() as app:
        ok(invoke(app.test_cli_runner(), "init-db"))


@contextmanager
def host_app() -> Iterator[Flask]:
    """``tests.fake_app_store_app.create_app()``, closed on leaving the block."""
    app = fake_app_store_app.create_app()
    try:
        yield app
    finally:
        retention: Retention = app.extensions["retention"]
        retention.close(app)


def key_line(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("In-App Purchase key:"))


@pytest.fixture
def start_fake(tmp_path: Path, host_environment: None) -> Iterator[Callable[..., FakeStoreProcess]]:
    """Start ``flask retention fake-app-store --port 0 ARGS`` in this process's environment
    (killed after the test if it still runs)."""
    started: list[FakeStoreProcess] = []

    def start(*args: str) -> FakeStoreProcess:
        log_path = tmp_path / f"fake-app-store-{len(started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "flask",
                    "--app",
                    "tests.fake_app_store_app",
                    "retention",
                    "fake-app-store",
                    "--port",
                    "0",
                    *args,
                ],
                cwd=REPO_ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(FakeStoreProcess(process, log_path))
        return started[-1]

    yield start
    for fake in started:
        if fake.process.poll() is None:
            fake.process.kill()
            fake.process.wait(STOP_TIMEOUT)


def perf_test_args() -> list[str]:
    return [arg for item in PERF_TEST_CONFIG for arg in ("--perf-test-config", item)]


def test_sync_realtime_url_and_perf_test_work_end_to_end(
    start_fake: Callable[..., FakeStoreProcess],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    fake = start_fake("--approve-production", *perf_test_args())
    output = fake.wait_until_ready()
    python, environment = printed_config(output)
    assert set(python) == CONFIG_KEYS
    assert set(environment) == {f"FLASK_{key}" for key in CONFIG_KEYS}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    with host_app() as app:
        for key, value in python.items():  # the two forms say the same
            assert app.config[key] == value, key
        runner = app.test_cli_runner()
        build_catalogue(runner, tmp_path)  # the product comes from this default
        ok(invoke(runner, "sync"))
        with serve(app) as base_url:
            endpoint = f"{base_url}/retention/realtime"
            ok(invoke(runner, "realtime-url", "set", endpoint, "--allow-http"))
            result = ok(invoke(runner, "perf-test", "2000000123"))
            assert "Result: PASS" in result.output
            production = ["--environment", "Production", "--allow-http"]
            ok(invoke(runner, "realtime-url", "set", endpoint, *production))
        with app.app_context():
            winback = app.extensions["retention"].catalogue.get_message("winback")
        with client_from_app(app, "Sandbox") as api:
            default = api.get_default_message(PRODUCT, LOCALE)
            assert default.message_identifier == winback.uuid
            assert api.get_realtime_url().realtime_url == endpoint
            with pytest.raises(BadRequestError) as caught:
                api.get_default_message("com.example.not.sold", LOCALE)
        assert caught.value.error_name == "InvalidProductIdError"
        ok(invoke(runner, "sync", "--environment", "Production", "--yes"))
        with client_from_app(app, "Production") as api:
            assert api.get_realtime_url().realtime_url == endpoint
            assert api.get_default_message(PRODUCT, LOCALE).message_identifier == winback.uuid

    assert fake.interrupt() == 0
    stopped = fake.output()
    assert stopped.rstrip().endswith("Stopped the fake App Store.")
    assert "Traceback" not in stopped


def test_key_is_written_once_kept_and_never_printed(
    start_fake: Callable[..., FakeStoreProcess], tmp_path: Path
) -> None:
    first = start_fake()
    output = first.wait_until_ready()
    assert first.interrupt() == 0
    python, _ = printed_config(output)
    key_path = Path(python["RETENTION_PRIVATE_KEY_PATH"])
    assert (
        key_path
        == tmp_path / "instance" / "fake-app-store" / f"AuthKey_{python['RETENTION_KEY_ID']}.p8"
    )
    assert key_path.stat().st_mode & 0o777 == 0o600
    pem = key_path.read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    secret_lines = [line for line in pem.decode().splitlines() if "-----" not in line]
    assert not any(line in output for line in secret_lines)
    assert key_line(output).endswith("(made now)")
    issuer_id = python["RETENTION_ISSUER_ID"]
    assert str(uuid.UUID(issuer_id)) == issuer_id

    second = start_fake()
    again = second.wait_until_ready()
    assert second.interrupt() == 0
    python_again, _ = printed_config(again)
    for key_name in ("RETENTION_KEY_ID", "RETENTION_ISSUER_ID", "RETENTION_PRIVATE_KEY_PATH"):
        assert python_again[key_name] == python[key_name]
    assert key_path.read_bytes() == pem
    assert key_line(again).endswith("(kept)")


def test_products_given_on_the_command_line_are_named(
    start_fake: Callable[..., FakeStoreProcess],
) -> None:
    fake = start_fake("--product", "com.example.b", "--product", "com.example.a")
    output = fake.wait_until_ready()
    assert fake.interrupt() == 0
    assert "Products: com.example.a, com.example.b" in output


def test_products_of_every_translation_defaults_are_learned(
    start_fake: Callable[..., FakeStoreProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    with host_app() as app:
        runner = app.test_cli_runner()
        text = ("--header", "Before you go", "--body", "Stay a while.")
        ok(invoke(runner, "message", "add", "--name", "winback", *text))
        french = ("--header", "Avant de partir", "--body", "Restez encore.")
        ok(invoke(runner, "message", "add", "--name", "winback", "--locale", "fr-FR", *french))
        ok(invoke(runner, "default", "set", PRODUCT, "winback", "--all-translations"))
    fake = start_fake()
    output = fake.wait_until_ready()
    assert f"read at each call (now: {PRODUCT})" in output
    _, environment = printed_config(output)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with host_app() as app:
        ok(invoke(app.test_cli_runner(), "sync"))
        with app.app_context():
            catalogue = app.extensions["retention"].catalogue
            texts = {loc: catalogue.get_message("winback", loc).uuid for loc in ("", "fr-FR")}
        with client_from_app(app, "Sandbox") as api:
            held = {
                loc: api.get_default_message(PRODUCT, loc).message_identifier
                for loc in ("en-US", "fr-FR")
            }
    assert held == {"en-US": texts[""], "fr-FR": texts["fr-FR"]}
    assert fake.interrupt() == 0


def test_the_app_bundle_id_is_used(
    start_fake: Callable[..., FakeStoreProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLASK_RETENTION_BUNDLE_ID", "com.example.mine")
    fake = start_fake()
    output = fake.wait_until_ready()
    assert fake.interrupt() == 0
    python, _ = printed_config(output)
    assert python["RETENTION_BUNDLE_ID"] == "com.example.mine"


# ---------------------------------------------------------------- bad options


@pytest.fixture
def cli(tmp_path: Path, database_url: str) -> Iterator[FlaskCliRunner]:
    app = Flask("fake_app_store_cli_test", instance_path=str(tmp_path / "instance"))
    app.config.update(RETENTION_DATABASE_URI=database_url)
    retention = Retention(app)
    runner = app.test_cli_runner()
    ok(invoke(runner, "init-db"))
    yield runner
    retention.close(app)


@pytest.mark.parametrize(
    ("value", "complaint"),
    [("speed=fast", "KEY=VALUE"), ("speed=3", "unknown performance_test_config key")],
)
def test_bad_perf_test_config_is_a_usage_error(
    cli: FlaskCliRunner, value: str, complaint: str
) -> None:
    result = invoke(cli, "fake-app-store", "--perf-test-config", value)
    assert result.exit_code == 2
    assert complaint in result.output
    assert "Traceback" not in result.output


def test_damaged_key_is_refused_in_one_line_without_its_content(
    cli: FlaskCliRunner, tmp_path: Path
) -> None:
    folder = tmp_path / "instance" / "fake-app-store"
    folder.mkdir(parents=True)
    (folder / "AuthKey_BROKEN1234.p8").write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n")
    error = fails(invoke(cli, "fake-app-store", "--port", "0"))
    assert "AuthKey_BROKEN1234.p8 is not an unencrypted EC P-256 key" in error
    assert "delete it" in error
    assert "c2VjcmV0" not in error


def test_port_in_use_is_refused_in_one_line(cli: FlaskCliRunner) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        error = fails(invoke(cli, "fake-app-store", "--port", str(port)))
    assert f"cannot serve on 127.0.0.1:{port}" in error
    assert "--port 0" in error


# ---------------------------------------------------------------- --allow-http


KEY_ID: Final = "ABCDE12345"
ISSUER_ID: Final = "57246542-96fe-1a63-e053-0824d011072a"
BUNDLE_ID: Final = "com.example.app"


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def configured_app(
    tmp_path: Path, database_url: str, key: ec.EllipticCurvePrivateKey, base_url: object
) -> Flask:
    app = Flask("allow_http_test", instance_path=str(tmp_path / "instance"))
    app.config.update(
        RETENTION_DATABASE_URI=database_url,
        RETENTION_KEY_ID=KEY_ID,
        RETENTION_ISSUER_ID=ISSUER_ID,
        RETENTION_BUNDLE_ID=BUNDLE_ID,
        RETENTION_PRIVATE_KEY=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        RETENTION_API_BASE_URL=base_url,
    )
    Retention(app, tuning=SYNC_TUNING)
    ok(invoke(app.test_cli_runner(), "init-db"))
    return app


@pytest.fixture
def pair(key: ec.EllipticCurvePrivateKey) -> Iterator[FakeAppStorePair]:
    fakes = FakeAppStorePair(
        public_key=key.public_key(),
        key_id=KEY_ID,
        issuer_id=ISSUER_ID,
        bundle_id=BUNDLE_ID,
        product_ids=[PRODUCT],
        allow_http_targets=True,
    )
    yield fakes
    fakes.close()


@pytest.fixture
def fake_app(
    tmp_path: Path,
    database_url: str,
    key: ec.EllipticCurvePrivateKey,
    pair: FakeAppStorePair,
) -> Iterator[Flask]:
    """An app whose management API is ``pair``, served on loopback."""
    with serve(pair) as url:
        app = configured_app(tmp_path, database_url, key, pair.base_urls(url))
        yield app
        app.extensions["retention"].close(app)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:5000/rt", "http://localhost:5000/rt", "http://[::1]:5000/rt"]
)
def test_allow_http_sends_a_loopback_url_to_a_fake(
    fake_app: Flask, pair: FakeAppStorePair, url: str
) -> None:
    result = ok(invoke(fake_app.test_cli_runner(), "realtime-url", "set", url, "--allow-http"))
    assert url in result.output
    assert pair.sandbox.realtime_url == url


def test_loopback_http_without_the_flag_is_refused_with_a_hint(
    fake_app: Flask, pair: FakeAppStorePair
) -> None:
    error = fails(invoke(fake_app.test_cli_runner(), "realtime-url", "set", "http://127.0.0.1/rt"))
    assert "https://" in error
    assert "--allow-http" in error
    assert pair.sandbox.requests == []


@pytest.mark.parametrize(
    "url", ["http://192.0.2.1/rt", "http://example.com/rt", "http://127.0.0.1.example.com/rt"]
)
def test_allow_http_refuses_other_hosts_before_any_call(
    fake_app: Flask, pair: FakeAppStorePair, url: str
) -> None:
    error = fails(invoke(fake_app.test_cli_runner(), "realtime-url", "set", url, "--allow-http"))
    assert "loopback" in error
    assert pair.sandbox.requests == []


@pytest.mark.parametrize(
    ("base_url", "environment", "host"),
    [
        (None, "Sandbox", "api.storekit-sandbox.apple.com"),
        (None, "Production", "api.storekit.apple.com"),
        (
            {"Sandbox": "https://api.storekit-sandbox.itunes.apple.com"},
            "Sandbox",
            "api.storekit-sandbox.itunes.apple.com",
        ),
        ("https://api.storekit.itunes.apple.com", "Production", "api.storekit.itunes.apple.com"),
    ],
)
def test_allow_http_is_refused_against_apple(
    tmp_path: Path,
    database_url: str,
    key: ec.EllipticCurvePrivateKey,
    base_url: object,
    environment: str,
    host: str,
) -> None:
    app = configured_app(tmp_path, database_url, key, base_url)
    try:
        args = ["realtime-url", "set", "http://127.0.0.1:5000/rt", "--allow-http"]
        error = fails(invoke(app.test_cli_runner(), *args, "--environment", environment))
        with app.app_context():
            recorded = app.extensions["retention"].catalogue.realtime_url(environment)
    finally:
        app.extensions["retention"].close(app)
    assert host in error
    assert "drop --allow-http" in error
    assert recorded is None


def test_configure_realtime_url_takes_loopback_http_only_when_asked(
    fake_app: Flask, pair: FakeAppStorePair
) -> None:
    with fake_app.app_context(), client_from_app(fake_app, "Sandbox") as api:
        catalogue = fake_app.extensions["retention"].catalogue
        with pytest.raises(GoLiveError, match="https://"):
            configure_realtime_url(catalogue, api, "http://127.0.0.1:5000/rt")
        configure_realtime_url(catalogue, api, "http://127.0.0.1:5000/rt", allow_loopback_http=True)
        assert catalogue.realtime_url("Sandbox") == "http://127.0.0.1:5000/rt"
    assert pair.sandbox.realtime_url == "http://127.0.0.1:5000/rt"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/rt", "http://localhost:8000/rt", "http://[::1]/rt"]
)
def test_realtime_url_request_takes_loopback_http_only_when_asked(url: str) -> None:
    with pytest.raises(ValueError, match="https://"):
        RealtimeUrlRequest(url)
    assert RealtimeUrlRequest(url, allow_loopback_http=True).realtime_url == url


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://10.1.2.3/rt", "must be on loopback"),
        ("http://localhost.example/rt", "must be on loopback"),
        ("ftp://localhost/rt", "https://"),
    ],
)
def test_realtime_url_request_refuses_other_http_even_when_asked(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        RealtimeUrlRequest(url, allow_loopback_http=True)
    assert RealtimeUrlRequest("https://example.com/rt", allow_loopback_http=True)
