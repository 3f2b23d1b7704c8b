"""Helpers for the sync and command tests: a test app wired to a served FakeAppStore."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from click.testing import Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskCliRunner

from flask_retention import RealtimeRequest, Retention, Tuning
from flask_retention.api import RetentionAPIClient, client_from_app
from flask_retention.testing import AppStoreSigner, FakeAppStore, RecordedRequest

from ..catalogue_support import bullet_png, full_png

PRODUCT = "com.example.retention.monthly"
LOCALE = "en-US"


#: Short waits: the fake App Store paced 1000 times faster, Retry-After capped at 5 s.
SYNC_TUNING = Tuning(api_pacing=0.001, api_retry_after_cap=5.0, perf_test_poll_interval=0.05)


@contextmanager
def sync_app(
    tmp_path: Path,
    database_url: str,
    *,
    store_url: str,
    key: ec.EllipticCurvePrivateKey,
    key_id: str,
    issuer_id: str,
    bundle_id: str,
    signer: AppStoreSigner,
    selector_delay: float = 0.0,
    tuning: Tuning = SYNC_TUNING,
    **config: Any,
) -> Iterator[Flask]:
    """A test app (not the example app) whose management API is the fake at ``store_url``."""
    app = Flask("retention_sync_test_app", instance_path=str(tmp_path / "instance"))
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    app.config.update(
        TESTING=True,
        RETENTION_DATABASE_URI=database_url,
        RETENTION_ENVIRONMENT=["Sandbox", "Production"],
        RETENTION_APP_APPLE_ID=1234567890,
        RETENTION_ISSUER_ID=issuer_id,
        RETENTION_KEY_ID=key_id,
        RETENTION_PRIVATE_KEY=pem,
        RETENTION_BUNDLE_ID=bundle_id,
        RETENTION_API_BASE_URL=store_url,
        RETENTION_ROOT_CERTIFICATES=[signer.root_pem],
        RETENTION_CATALOGUE_REFRESH=0.05,
    )
    app.config.update(config)
    retention = Retention(app, tuning=tuning)

    @retention.selector
    def choose(req: RealtimeRequest) -> None:
        if selector_delay:
            time.sleep(selector_delay)

    runner = app.test_cli_runner()
    result = runner.invoke(args=["retention", "init-db"])
    assert result.exit_code == 0, result.output
    try:
        yield app
    finally:
        retention.close(app)


def invoke(runner: FlaskCliRunner, *args: str, input: str | None = None) -> Result:
    """Run ``flask retention ARGS``."""
    return runner.invoke(args=["retention", *args], input=input)


def ok(result: Result) -> Result:
    """``result`` after asserting it succeeded."""
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def fails(result: Result) -> str:
    """The one-line reason of an expected failure (exit 1, no traceback)."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def build_catalogue(runner: FlaskCliRunner, tmp_path: Path) -> None:
    """Two images, two messages (one with both images), one default."""
    hero = tmp_path / "hero.png"
    hero.write_bytes(full_png())
    tick = tmp_path / "tick.png"
    tick.write_bytes(bullet_png())
    ok(invoke(runner, "image", "add", str(hero), "--name", "hero"))
    ok(invoke(runner, "image", "add", str(tick), "--name", "tick", "--size", "BULLET_POINT"))
    ok(
        invoke(
            runner,
            "message",
            "add",
            "--name",
            "winback",
            "--header",
            "Before you go",
            "--body",
            "Your plan includes offline mode.",
            "--image",
            "hero",
            "--image-alt-text",
            "A family on a sofa",
            "--bullet",
            "Offline mode",
            "tick",
            "tick",
        )
    )
    ok(invoke(runner, "message", "add", "--name", "plain", "--header", "Hi", "--body", "Stay"))
    ok(invoke(runner, "default", "set", PRODUCT, LOCALE, "winback"))


def writes(store: FakeAppStore, since: int = 0) -> list[RecordedRequest]:
    """The requests that change something at the fake (not GET), from index ``since``."""
    return [r for r in store.requests[since:] if r.method != "GET"]


def endpoints(requests: list[RecordedRequest]) -> list[str | None]:
    return [r.endpoint for r in requests]


class InFlight:
    """WSGI middleware counting requests in progress, so a test can wait for them to end.

    The performance test stops waiting for an answer at its threshold, but
    the endpoint's request thread goes on; the app must not be closed under it.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.active = 0
        self._changed = threading.Condition()

    def __call__(self, environ: Any, start_response: Any) -> Any:
        with self._changed:
            self.active += 1
        try:
            return list(self.app(environ, start_response))
        finally:
            with self._changed:
                self.active -= 1
                self._changed.notify_all()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until no request is in progress; ``False`` on time-out."""
        with self._changed:
            return self._changed.wait_for(lambda: self.active == 0, timeout)


@contextmanager
def apple_client(app: Flask, environment: str = "Sandbox") -> Iterator[RetentionAPIClient]:
    """The test app's management API client, to change the fake as another tool would."""
    with app.app_context(), client_from_app(app, environment) as client:
        yield client


def message_uuids(runner: FlaskCliRunner) -> dict[str, str]:
    """The UUID of each message's current version, by name."""
    listed = json.loads(ok(invoke(runner, "message", "list", "--json")).output)
    return {m["name"]: m["uuid"] for m in listed}
