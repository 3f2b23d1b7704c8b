"""Sync checks Apple's defaults: it reads back the ones it must (Get Default Message) and
configures again a default Apple lost or changed, against the fake App Store over HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskCliRunner
from werkzeug.wrappers import Request, Response

from flask_retention import Tuning
from flask_retention.api import DefaultConfigurationRequest, NotFoundError, RetentionAPIClient
from flask_retention.appstore.sync import (
    managed_default_slots,
    read_apple_defaults,
)
from flask_retention.testing import FakeAppStore, serve

from .support import (
    LOCALE,
    PRODUCT,
    apple_client,
    build_catalogue,
    endpoints,
    fails,
    invoke,
    message_uuids,
    ok,
    writes,
)

#: Apple's own pacing (the other tests pace 1000 times faster).
APPLE_PACING = Tuning(api_retry_after_cap=5.0)


def _synced(runner: FlaskCliRunner, tmp_path: Path) -> dict[str, str]:
    """The test catalogue synced to the fake; message UUIDs by name."""
    build_catalogue(runner, tmp_path)
    ok(invoke(runner, "sync"))
    return message_uuids(runner)


def _status_defaults(runner: FlaskCliRunner) -> list[dict[str, Any]]:
    report = json.loads(ok(invoke(runner, "status", "--environment", "Sandbox", "--json")).output)
    defaults: list[dict[str, Any]] = report[0]["defaults"]
    return defaults


def test_verify_defaults_restores_a_default_deleted_at_apple(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    uuids = _synced(runner, tmp_path)
    with apple_client(app) as client:
        client.delete_default_message(PRODUCT, LOCALE)
    before = len(fake_app_store.requests)
    result = ok(invoke(runner, "sync", "--verify-defaults"))
    assert "Reading 1 default from Apple: about" in result.output
    assert f"default {PRODUCT} / {LOCALE}: Apple holds none; recorded winback v1" in result.output
    assert endpoints(writes(fake_app_store, before)) == ["configure_default_message"]
    assert endpoints(fake_app_store.requests[before:]).count("get_default_message") == 1
    assert fake_app_store.defaults == {(PRODUCT, LOCALE): uuids["winback"]}


def test_a_plain_sync_does_not_read_a_default_whose_message_apple_still_lists(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    _synced(runner, tmp_path)
    with apple_client(app) as client:
        client.delete_default_message(PRODUCT, LOCALE)
    before = len(fake_app_store.requests)
    result = ok(invoke(runner, "sync"))
    assert "Nothing to change at Apple." in result.output
    assert endpoints(fake_app_store.requests[before:]) == ["get_image_list", "get_message_list"]
    assert fake_app_store.defaults == {}


def test_a_plain_sync_restores_a_default_whose_message_is_gone_at_apple(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    uuids = _synced(runner, tmp_path)
    with apple_client(app) as client:
        client.delete_message(uuids["winback"])  # Apple drops the default with it
    assert fake_app_store.defaults == {}
    before = len(fake_app_store.requests)
    result = ok(invoke(runner, "sync"))
    assert "Reading 1 default whose message Apple no longer lists: about" in result.output
    assert "Apple holds none; recorded winback v1" in result.output
    assert endpoints(writes(fake_app_store, before)) == [
        "upload_message",
        "configure_default_message",
    ]
    assert endpoints(fake_app_store.requests[before:]).count("get_default_message") == 1
    assert fake_app_store.defaults == {(PRODUCT, LOCALE): uuids["winback"]}
    assert _status_defaults(runner)[0]["apple"]["uuid"] == uuids["winback"]


def test_a_default_changed_at_apple_is_configured_again(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    uuids = _synced(runner, tmp_path)
    with apple_client(app) as client:
        client.configure_default_message(
            PRODUCT, LOCALE, DefaultConfigurationRequest(uuids["plain"])
        )
    before = len(fake_app_store.requests)
    result = ok(invoke(runner, "sync", "--verify-defaults"))
    assert "Apple holds plain v1; recorded winback v1" in result.output
    assert endpoints(writes(fake_app_store, before)) == ["configure_default_message"]
    assert fake_app_store.defaults == {(PRODUCT, LOCALE): uuids["winback"]}
    assert uuids["plain"] in fake_app_store.messages


def test_dry_run_verify_defaults_shows_the_drift_and_changes_nothing(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    uuids = _synced(runner, tmp_path)
    with apple_client(app) as client:
        client.delete_default_message(PRODUCT, LOCALE)
    recorded = ok(invoke(runner, "status", "--json")).output
    before = len(fake_app_store.requests)

    result = ok(invoke(runner, "sync", "--dry-run", "--verify-defaults"))
    assert "Defaults at Apple differ from what was recorded:" in result.output
    assert f"default {PRODUCT} / {LOCALE}: Apple holds none; recorded winback v1" in result.output
    assert f"{PRODUCT} / {LOCALE} -> winback v1" in result.output  # the step it would take
    report = json.loads(
        ok(invoke(runner, "sync", "--dry-run", "--verify-defaults", "--json")).stdout
    )
    assert report["plan"]["drift"] == [
        {
            "product_id": PRODUCT,
            "locale": LOCALE,
            "apple": None,
            "recorded": {"uuid": uuids["winback"], "name": "winback", "version": 1},
        }
    ]
    assert [s["action"] for s in report["plan"]["steps"]] == ["configure_default"]

    assert writes(fake_app_store, before) == []
    assert fake_app_store.defaults == {}
    assert ok(invoke(runner, "status", "--json")).output == recorded


def test_a_second_verify_defaults_makes_no_write(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    _synced(runner, tmp_path)
    with apple_client(app) as client:
        client.delete_default_message(PRODUCT, LOCALE)
    ok(invoke(runner, "sync", "--verify-defaults"))
    before = len(fake_app_store.requests)
    result = ok(invoke(runner, "sync", "--verify-defaults"))
    assert "Defaults read from Apple: 1, all as recorded." in result.output
    assert "Nothing to change at Apple." in result.output
    assert writes(fake_app_store, before) == []
    assert endpoints(fake_app_store.requests[before:]) == [
        "get_image_list",
        "get_message_list",
        "get_default_message",
    ]


def test_a_default_removed_here_and_gone_at_apple_needs_no_delete(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    _synced(runner, tmp_path)
    ok(invoke(runner, "default", "remove", PRODUCT, LOCALE, "--yes"))
    with apple_client(app) as client:
        client.delete_default_message(PRODUCT, LOCALE)
    before = len(fake_app_store.requests)
    result = ok(invoke(runner, "sync", "--verify-defaults"))
    assert "Recorded 1 default as Apple holds them." in result.output
    assert writes(fake_app_store, before) == []
    assert _status_defaults(runner) == []


def test_a_sync_stopped_after_reading_is_finished_by_a_plain_sync(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    uuids = _synced(runner, tmp_path)
    with apple_client(app) as client:
        client.delete_default_message(PRODUCT, LOCALE)
    fake_app_store.fail_next(1, 403, endpoint="configure_default_message")
    assert "Configure Default Message failed: HTTP 403" in fails(
        invoke(runner, "sync", "--verify-defaults")
    )
    assert _status_defaults(runner)[0]["apple"] is None  # what Apple answered was recorded
    before = len(fake_app_store.requests)
    ok(invoke(runner, "sync"))
    assert "get_default_message" not in endpoints(fake_app_store.requests[before:])
    assert endpoints(writes(fake_app_store, before)) == ["configure_default_message"]
    assert fake_app_store.defaults == {(PRODUCT, LOCALE): uuids["winback"]}


def test_sync_json_reports_the_drift_it_recorded(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    uuids = _synced(runner, tmp_path)
    with apple_client(app) as client:
        client.configure_default_message(
            PRODUCT, LOCALE, DefaultConfigurationRequest(uuids["plain"])
        )
    report = json.loads(ok(invoke(runner, "sync", "--verify-defaults", "--json")).stdout)
    assert [d["apple"]["name"] for d in report["plan"]["drift"]] == ["plain"]
    assert report["plan"]["defaults_read"] == [
        {"product_id": PRODUCT, "locale": LOCALE, "apple": uuids["plain"]}
    ]
    assert [s["action"] for s in report["applied"]] == ["configure_default"]


def test_read_apple_defaults_answers_none_for_no_default_and_reports_progress(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    uuids = _synced(runner, tmp_path)
    seen: list[tuple[int, int, float]] = []
    slots = [(PRODUCT, LOCALE), (PRODUCT, "fr-FR")]
    before = len(fake_app_store.requests)
    with apple_client(app) as client:
        held = read_apple_defaults(client, slots, progress=lambda *p: seen.append(p))
        interval = client.limit("get_default_message").interval
    assert {k: None if v is None else str(v) for k, v in held.items()} == {
        (PRODUCT, LOCALE): uuids["winback"],
        (PRODUCT, "fr-FR"): None,
    }
    assert [(done, total) for done, total, _ in seen] == [(0, 2), (1, 2), (2, 2)]
    assert [eta for _, _, eta in seen] == pytest.approx([2 * interval, interval, 0.0])
    assert endpoints(fake_app_store.requests[before:]) == ["get_default_message"] * 2


def test_read_apple_defaults_raises_a_404_that_is_not_no_default(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    _synced(runner, tmp_path)
    fake_app_store.fail_next(1, 404, endpoint="get_default_message")
    with apple_client(app) as client, pytest.raises(NotFoundError) as raised:
        read_apple_defaults(client, [(PRODUCT, LOCALE)])
    assert raised.value.error_name is None


def test_managed_default_slots_are_local_and_recorded_ones(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    _synced(runner, tmp_path)
    ok(invoke(runner, "default", "remove", PRODUCT, LOCALE, "--yes"))
    ok(invoke(runner, "default", "set", PRODUCT, "de-DE", "plain"))
    with app.app_context():
        catalogue = app.extensions["retention"].catalogue
        assert managed_default_slots(catalogue, "Sandbox") == [
            (PRODUCT, "de-DE"),
            (PRODUCT, LOCALE),
        ]
        assert managed_default_slots(catalogue, "Production") == [(PRODUCT, "de-DE")]


@pytest.mark.parametrize("extra_config", [{"tuning": APPLE_PACING}])
@pytest.mark.parametrize(
    ("environment", "estimate", "pacing"),
    [
        ("Production", "about 1 min 40 s", "1 request every 1 s in production"),
        ("Sandbox", "about 16 min 40 s", "1 request every 10 s in the sandbox"),
    ],
)
def test_the_estimate_of_reading_100_defaults_follows_apples_pacing(
    app: Flask,
    runner: FlaskCliRunner,
    fake_app_store: FakeAppStore,
    environment: str,
    estimate: str,
    pacing: str,
) -> None:
    ok(invoke(runner, "message", "add", "--name", "plain", "--header", "Hi", "--body", "Stay"))
    with app.app_context():
        catalogue = app.extensions["retention"].catalogue
        for index in range(100):
            catalogue.set_default(f"com.example.plan{index:03}", LOCALE, "plain")
    # Apple's pacing lets the first read go at once; it fails, so nothing waits for the next.
    fake_app_store.fail_next(1, 403, endpoint="get_default_message")
    result = invoke(runner, "sync", "--dry-run", "--verify-defaults", "-e", environment)
    assert "Get Default Message failed: HTTP 403" in fails(result)
    assert (
        f"Reading 100 defaults from Apple: {estimate} (Get Default Message: {pacing})"
        in result.output
    )
    assert endpoints(fake_app_store.requests).count("get_default_message") == 1


@pytest.mark.parametrize("extra_config", [{"tuning": APPLE_PACING}])
@pytest.mark.parametrize(("environment", "seconds"), [("Production", 100.0), ("Sandbox", 1000.0)])
def test_read_apple_defaults_estimates_from_the_clients_pacing(
    app: Flask, fake_app_store: FakeAppStore, environment: str, seconds: float
) -> None:
    class Stop(Exception):
        pass

    seen: list[tuple[int, int, float]] = []

    def first(done: int, total: int, eta: float) -> None:
        seen.append((done, total, eta))
        raise Stop  # before the first read: nothing is sent, nothing waits

    slots = [(f"com.example.plan{i:03}", LOCALE) for i in range(100)]
    with apple_client(app, environment) as client, pytest.raises(Stop):
        read_apple_defaults(client, slots, progress=first)
    assert [(done, total) for done, total, _ in seen] == [(0, 100)]
    assert seen[0][2] == pytest.approx(seconds)
    assert fake_app_store.requests == []


def test_read_apple_defaults_leaves_out_an_answer_without_a_message_identifier(
    app_store_key: ec.EllipticCurvePrivateKey,
    app_store_key_id: str,
    app_store_issuer_id: str,
    app_store_bundle_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def apple(environ: Any, start_response: Any) -> Any:
        """Answers Get Default Message with an object that lacks messageIdentifier."""
        request = Request(environ)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        jwt.decode(
            token,
            app_store_key.public_key(),
            algorithms=["ES256"],
            audience="appstoreconnect-v1",
            issuer=app_store_issuer_id,
        )
        assert request.path == f"/inApps/v1/messaging/default/{PRODUCT}/{LOCALE}"
        return Response("{}", mimetype="application/json")(environ, start_response)

    with (
        serve(apple) as url,
        RetentionAPIClient(
            issuer_id=app_store_issuer_id,
            key_id=app_store_key_id,
            private_key=app_store_key,
            bundle_id=app_store_bundle_id,
            environment="Sandbox",
            base_url=url,
            pacing=0,
        ) as client,
    ):
        assert read_apple_defaults(client, [(PRODUCT, LOCALE)]) == {}
    assert f"default of {PRODUCT} / {LOCALE} has no readable messageIdentifier" in caplog.text
