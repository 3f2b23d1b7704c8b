"""App Store Server Notifications V2: real signed notifications through the endpoint."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from flask_retention import (
    ConfigurationError,
    NotificationError,
    Retention,
    Tuning,
    VerificationError,
)
from flask_retention.catalogue.models import Notification
from flask_retention.catalogue.schema import upgrade
from flask_retention.core.database import create_engine
from flask_retention.insights.notifications import purge_notifications
from flask_retention.testing import BROKEN_VARIANT_REASONS, AppStoreSigner

from .support import state_of, vector
from .tcp_proxy import TCPProxy

URL = "/retention/notifications"
BUNDLE = "com.example.app"
APP_APPLE_ID = 1234567890
OTID = "1000000000000042"
POSTGRES = os.environ.get("RETENTION_TEST_DATABASE_URL")
GENEROUS = 30.0  # seconds; only reached when a test is broken


@pytest.fixture(scope="module")
def signer() -> AppStoreSigner:
    return AppStoreSigner(valid_from=datetime.now(UTC) - timedelta(days=30))


@pytest.fixture
def config(signer: AppStoreSigner, database_url: str) -> dict[str, object]:
    return {
        "RETENTION_ROOT_CERTIFICATES": [signer.root_pem],
        "RETENTION_APP_APPLE_ID": APP_APPLE_ID,
        "RETENTION_BUNDLE_ID": BUNDLE,
        "RETENTION_NOTIFICATIONS_ENDPOINT": URL,
        "RETENTION_DATABASE_URI": database_url,
    }


@pytest.fixture
def retention(app: Flask) -> Iterator[Retention]:
    retention = Retention(app)
    upgrade(app.extensions["retention"].get_engine(app))
    yield retention
    retention.close()


@pytest.fixture
def received(retention: Retention) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    retention.on_notification(seen.append)
    return seen


def rows(app: Flask) -> list[Notification]:
    with state_of(app).database.session() as session:
        return list(session.scalars(sa.select(Notification).order_by(Notification.id)))


def post(client: FlaskClient, token: str) -> TestResponse:
    return client.post(URL, json={"signedPayload": token})


def assert_error(response: TestResponse, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error", "message"}
    assert body["error"] == code
    assert body["message"]


def notification(
    signer: AppStoreSigner,
    kind: str,
    subtype: str | None = None,
    *,
    renewal: dict[str, Any] | None = None,
    transaction: dict[str, Any] | None = None,
    **fields: Any,
) -> str:
    """A signed notification about :data:`OTID`, with nested transaction and renewal info."""
    return signer.sign_notification(
        kind,
        subtype=subtype,
        transaction=transaction
        if transaction is not None
        else signer.transaction_payload(original_transaction_id=OTID),
        renewal_info=renewal
        if renewal is not None
        else signer.renewal_payload(original_transaction_id=OTID),
        **fields,
    )


EVENTS = [
    ("DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_DISABLED"),
    ("DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_ENABLED"),
    ("OFFER_REDEEMED", "UPGRADE"),
    ("DID_CHANGE_RENEWAL_PREF", "DOWNGRADE"),
    ("EXPIRED", "VOLUNTARY"),
]


# -- stored events -------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "subtype"), EVENTS)
def test_each_retention_event_is_stored_once_even_when_sent_twice(
    app: Flask, client: FlaskClient, signer: AppStoreSigner, kind: str, subtype: str
) -> None:
    signed = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    token = notification(signer, kind, subtype, signed_date=signed)
    first, second = post(client, token), post(client, token)
    assert first.status_code == 200, first.get_data(as_text=True)
    assert first.get_json()["result"] == "stored"
    assert second.status_code == 200
    assert second.get_json()["result"] == "duplicate"
    (row,) = rows(app)
    assert (row.notification_type, row.subtype) == (kind, subtype)
    assert row.original_transaction_id == OTID
    assert row.environment == "Sandbox"
    assert row.signed_date == signed
    assert str(row.notification_uuid) == first.get_json()["notificationUUID"]


def test_offer_and_plan_come_from_the_renewal_info(
    app: Flask, client: FlaskClient, signer: AppStoreSigner
) -> None:
    renewal = signer.renewal_payload(
        original_transaction_id=OTID,
        auto_renew_product_id="com.example.yearly",
        offer_type=2,
        offer_identifier="winback50",
    )
    transaction = signer.transaction_payload(
        original_transaction_id=OTID, offerIdentifier="intro", offerType=1
    )
    token = notification(
        signer, "OFFER_REDEEMED", "UPGRADE", renewal=renewal, transaction=transaction
    )
    assert post(client, token).status_code == 200
    (row,) = rows(app)
    assert (row.offer_identifier, row.offer_type) == ("winback50", 2)
    assert (row.product_id, row.auto_renew_product_id) == (
        "com.example.monthly",
        "com.example.yearly",
    )


def test_offer_comes_from_the_transaction_without_one_in_the_renewal_info(
    app: Flask, client: FlaskClient, signer: AppStoreSigner
) -> None:
    transaction = signer.transaction_payload(
        original_transaction_id=OTID, offerIdentifier="winback50", offerType=2
    )
    assert (
        post(client, notification(signer, "OFFER_REDEEMED", transaction=transaction)).status_code
        == 200
    )
    (row,) = rows(app)
    assert (row.offer_identifier, row.offer_type) == ("winback50", 2)


def test_sandbox_notifications_without_an_app_apple_id_are_accepted(
    app: Flask, client: FlaskClient, signer: AppStoreSigner
) -> None:
    token = notification(signer, "EXPIRED", "VOLUNTARY", app_apple_id=None)
    assert post(client, token).status_code == 200
    assert len(rows(app)) == 1


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("TEST", {}),
        ("DID_RENEW", {}),
        (
            "RENEWAL_EXTENSION",
            {
                "subtype": "SUMMARY",
                "summary": {
                    "requestIdentifier": str(uuid.uuid4()),
                    "environment": "Sandbox",
                    "appAppleId": APP_APPLE_ID,
                    "bundleId": BUNDLE,
                    "productId": "com.example.monthly",
                    "storefrontCountryCodes": ["USA"],
                    "failedCount": 0,
                    "succeededCount": 3,
                },
            },
        ),
    ],
)
def test_other_types_are_verified_and_passed_on_but_not_stored(
    app: Flask,
    client: FlaskClient,
    signer: AppStoreSigner,
    received: list[dict[str, Any]],
    kind: str,
    fields: dict[str, Any],
) -> None:
    payload = signer.notification_payload(kind, **fields)
    if "summary" in fields:
        del payload["data"]
    response = post(client, signer.sign(payload))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["result"] == "not_stored"
    assert rows(app) == []
    assert [n["notificationType"] for n in received] == [kind]


# -- the callback ----------------------------------------------------------------------


def test_the_callback_receives_the_decoded_notification_once(
    client: FlaskClient, signer: AppStoreSigner, received: list[dict[str, Any]]
) -> None:
    renewal = signer.renewal_payload(original_transaction_id=OTID, auto_renew_status=0)
    token = notification(
        signer, "DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_DISABLED", renewal=renewal
    )
    post(client, token)
    post(client, token)
    (decoded,) = received
    assert decoded["notificationType"] == "DID_CHANGE_RENEWAL_STATUS"
    assert decoded["subtype"] == "AUTO_RENEW_DISABLED"
    assert decoded["data"]["bundleId"] == BUNDLE
    assert decoded["data"]["renewalInfo"] == renewal
    assert decoded["data"]["transactionInfo"]["originalTransactionId"] == OTID
    assert isinstance(decoded["data"]["signedTransactionInfo"], str)


def test_a_failing_callback_is_logged_and_the_notification_kept(
    app: Flask,
    client: FlaskClient,
    retention: Retention,
    signer: AppStoreSigner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    @retention.on_notification
    def explode(notification: dict[str, Any]) -> None:
        raise RuntimeError("host bug")

    with caplog.at_level(logging.ERROR, logger="flask_retention"):
        response = post(client, notification(signer, "EXPIRED", "VOLUNTARY"))
    assert response.status_code == 200
    assert len(rows(app)) == 1
    assert "on_notification callback raised" in caplog.text


# -- refused notifications ---------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(BROKEN_VARIANT_REASONS))
def test_unverifiable_notifications_are_refused_and_not_stored(
    app: Flask,
    client: FlaskClient,
    signer: AppStoreSigner,
    received: list[dict[str, Any]],
    variant: str,
) -> None:
    payload = signer.notification_payload(
        "EXPIRED", subtype="VOLUNTARY", renewal_info=signer.renewal_payload()
    )
    reason = BROKEN_VARIANT_REASONS[variant]
    response = post(client, signer.sign_broken(variant, payload))
    assert_error(response, 400 if reason == "malformed" else 401, reason)
    assert rows(app) == []
    assert received == []


def test_a_tampered_nested_transaction_is_refused(
    app: Flask, client: FlaskClient, signer: AppStoreSigner
) -> None:
    payload = signer.notification_payload(
        "OFFER_REDEEMED", transaction=signer.transaction_payload(original_transaction_id=OTID)
    )
    header, _, signature = payload["data"]["signedTransactionInfo"].split(".")
    other = signer.sign(signer.transaction_payload(original_transaction_id="999"))
    payload["data"]["signedTransactionInfo"] = f"{header}.{other.split('.')[1]}.{signature}"
    response = post(client, signer.sign(payload))
    assert_error(response, 401, "bad_signature")
    assert "signedTransactionInfo" in response.get_json()["message"]
    assert rows(app) == []


def test_a_nested_renewal_info_from_another_chain_is_refused(
    app: Flask, client: FlaskClient, signer: AppStoreSigner
) -> None:
    payload = signer.notification_payload(
        "DID_CHANGE_RENEWAL_STATUS", subtype="AUTO_RENEW_DISABLED"
    )
    payload["data"]["signedRenewalInfo"] = signer.sign_broken(
        "wrong_root", signer.renewal_payload(original_transaction_id=OTID)
    )
    assert_error(post(client, signer.sign(payload)), 401, "untrusted_root")
    assert rows(app) == []


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"bundle_id": "com.other.app"}, "wrong_bundle"),
        ({"app_apple_id": 42}, "wrong_app"),
        ({"environment": "Production"}, "wrong_environment"),
        ({"transaction": {"bundleId": "com.other.app"}}, "wrong_bundle"),
        ({"renewal": {"environment": "Production"}}, "wrong_environment"),
    ],
)
def test_notifications_for_another_app_or_environment_are_refused(
    app: Flask, client: FlaskClient, signer: AppStoreSigner, fields: dict[str, Any], code: str
) -> None:
    if "transaction" in fields:
        fields["transaction"] = signer.transaction_payload(
            original_transaction_id=OTID, **fields["transaction"]
        )
    if "renewal" in fields:
        fields["renewal"] = signer.renewal_payload(
            original_transaction_id=OTID, **fields["renewal"]
        )
    token = notification(signer, "DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_DISABLED", **fields)
    assert_error(post(client, token), 403, code)
    assert rows(app) == []


@pytest.mark.parametrize(
    "change",
    [
        {"notificationUUID": "not-a-uuid"},
        {"notificationType": 7},
        {"data": None},
        {"data": {"bundleId": BUNDLE}},
        {"summary": {"bundleId": BUNDLE, "environment": "Sandbox"}},
        {"subtype": "X" * 65},
    ],
)
def test_malformed_notifications_are_refused(
    app: Flask, client: FlaskClient, signer: AppStoreSigner, change: dict[str, Any]
) -> None:
    payload = signer.notification_payload("EXPIRED", subtype="VOLUNTARY")
    payload.update(change)
    assert_error(post(client, signer.sign(payload)), 400, "malformed")
    assert rows(app) == []


def test_a_nested_transaction_for_another_subscriber_than_the_renewal_is_refused(
    app: Flask, client: FlaskClient, signer: AppStoreSigner
) -> None:
    token = notification(
        signer,
        "EXPIRED",
        "VOLUNTARY",
        transaction=signer.transaction_payload(original_transaction_id="1"),
        renewal=signer.renewal_payload(original_transaction_id="2"),
    )
    assert_error(post(client, token), 400, "malformed")
    assert rows(app) == []


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"signedPayload": 3}', b'{"signedPayload": "a.b"}']
)
def test_malformed_bodies_get_400(client: FlaskClient, body: bytes) -> None:
    assert_error(client.post(URL, data=body), 400, "malformed")


@pytest.mark.parametrize("method", ["GET", "PROPFIND", "BREW"])
def test_other_methods_get_a_json_405(client: FlaskClient, method: str) -> None:
    response = client.open(URL, method=method)
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "POST"


# -- storage -------------------------------------------------------------------------


def test_a_storage_failure_answers_503_so_that_apple_retries(
    app: Flask, signer: AppStoreSigner, caplog: pytest.LogCaptureFixture
) -> None:
    Retention(app)  # no init-db: the table is missing
    token = notification(signer, "EXPIRED", "VOLUNTARY")
    with caplog.at_level(logging.ERROR, logger="flask_retention"):
        response = post(app.test_client(), token)
    assert_error(response, 503, "storage_unavailable")
    assert token not in caplog.text
    upgrade(app.extensions["retention"].get_engine(app))
    retried = post(app.test_client(), token)
    assert retried.status_code == 200
    assert retried.get_json()["result"] == "stored"
    state_of(app).close()


def test_text_no_database_takes_is_stored_cleaned(
    app: Flask, client: FlaskClient, signer: AppStoreSigner
) -> None:
    odd = "1000\x000000042"  # PostgreSQL takes no NUL character in text
    transaction = signer.transaction_payload(
        original_transaction_id=odd, offerIdentifier="win\x00back", offerType=2
    )
    renewal = signer.renewal_payload(original_transaction_id=odd)
    token = notification(
        signer, "OFFER_REDEEMED", "UPGRADE", transaction=transaction, renewal=renewal
    )
    response = post(client, token)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["result"] == "stored"
    (row,) = rows(app)
    assert (row.original_transaction_id, row.offer_identifier) == ("10000000042", "winback")
    assert post(client, token).get_json()["result"] == "duplicate"


def answered(request: Callable[[], TestResponse]) -> TestResponse:
    """``request()``'s response; fails (instead of hanging the run) when none comes."""
    responses: list[TestResponse] = []
    thread = threading.Thread(target=lambda: responses.append(request()), daemon=True)
    thread.start()
    thread.join(GENEROUS)
    assert responses, "the notifications endpoint did not answer"
    return responses[0]


@pytest.mark.postgresql
@pytest.mark.skipif(not POSTGRES, reason="needs RETENTION_TEST_DATABASE_URL (PostgreSQL)")
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_silent_database_gets_a_503_within_the_bound_and_the_retry_is_stored(
    app: Flask, signer: AppStoreSigner, database_url: str
) -> None:
    url = sa.make_url(database_url)
    assert url.host is not None
    direct = create_engine(database_url)
    upgrade(direct)
    with TCPProxy(url.host, url.port or 5432) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port)
        app.config["RETENTION_DATABASE_URI"] = proxied.render_as_string(hide_password=False)
        retention = Retention(app)  # the real bound: Tuning.notifications_timeout, 2 s
        client = app.test_client()
        try:
            assert post(client, notification(signer, "EXPIRED", "VOLUNTARY")).status_code == 200
            proxy.stall()  # the database accepts, and never answers
            token = notification(signer, "DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_DISABLED")
            assert_error(answered(lambda: post(client, token)), 503, "storage_unavailable")
            proxy.restore()
            assert post(client, token).status_code == 200  # Apple's retry
        finally:
            retention.close(app)
    with direct.connect() as connection:
        kinds = connection.scalars(sa.select(Notification.notification_type)).all()
    direct.dispose()
    assert sorted(kinds) == ["DID_CHANGE_RENEWAL_STATUS", "EXPIRED"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_locked_sqlite_database_gets_a_503_within_the_bound(
    app: Flask, signer: AppStoreSigner, tmp_path: Any
) -> None:
    path = tmp_path / "locked.db"
    app.config["RETENTION_DATABASE_URI"] = f"sqlite:///{path}"
    retention = Retention(app, tuning=Tuning(notifications_timeout=0.2))
    upgrade(retention.get_engine(app))
    client = app.test_client()
    token = notification(signer, "EXPIRED", "VOLUNTARY")
    writer = sqlite3.connect(path)  # another process's write, holding the lock
    try:
        writer.execute("BEGIN IMMEDIATE")
        assert_error(answered(lambda: post(client, token)), 503, "storage_unavailable")
    finally:
        writer.rollback()
        writer.close()
    retried = post(client, token)
    assert retried.status_code == 200
    assert retried.get_json()["result"] in ("stored", "duplicate")  # the first may land late
    assert len(rows(app)) == 1
    retention.close(app)


# -- record_notification for a host's own handler ------------------------------------


def test_record_notification_verifies_stores_and_returns_the_notification(
    app: Flask, retention: Retention, signer: AppStoreSigner, received: list[dict[str, Any]]
) -> None:
    token = notification(signer, "DID_CHANGE_RENEWAL_PREF", "UPGRADE")
    with app.app_context():
        decoded = retention.record_notification(token)
        again = retention.record_notification(token)
    assert decoded == again
    assert decoded["notificationType"] == "DID_CHANGE_RENEWAL_PREF"
    assert decoded["data"]["transactionInfo"]["originalTransactionId"] == OTID
    assert len(rows(app)) == 1
    assert received == [decoded]


def test_record_notification_raises_for_what_it_refuses(
    app: Flask, retention: Retention, signer: AppStoreSigner
) -> None:
    payload = signer.notification_payload("EXPIRED", subtype="VOLUNTARY")
    with app.app_context():
        with pytest.raises(VerificationError) as verification:
            retention.record_notification(signer.sign_broken("wrong_key", payload))
        with pytest.raises(NotificationError) as wrong:
            retention.record_notification(signer.sign_notification("TEST", bundle_id="x.y"))
    assert verification.value.reason == "bad_signature"
    assert (wrong.value.code, wrong.value.status) == ("wrong_bundle", 403)
    assert rows(app) == []


def test_record_notification_accepts_apples_genuine_production_test_notification(
    tmp_path: Any,
) -> None:
    app = Flask("genuine", instance_path=str(tmp_path / "instance"))
    app.config.update(
        RETENTION_ENVIRONMENT="Production",
        RETENTION_APP_APPLE_ID=6450284872,
        RETENTION_BUNDLE_ID="com.nineton.taller",
        RETENTION_DATABASE_URI=f"sqlite:///{tmp_path / 'genuine.db'}",
    )
    retention = Retention(app)
    token = vector("genuine-production-test-notification.jws").read_text().strip()
    with app.app_context():
        decoded = retention.record_notification(token)
    assert decoded["notificationType"] == "TEST"
    assert decoded["notificationUUID"] == "2e2a6ce0-ec9f-4037-b1bf-618af85527bd"
    retention.close()


def test_record_notification_needs_the_bundle_id(app: Flask, signer: AppStoreSigner) -> None:
    app.config.update(RETENTION_NOTIFICATIONS_ENDPOINT=None, RETENTION_BUNDLE_ID=None)
    retention = Retention(app)
    with app.app_context(), pytest.raises(ConfigurationError, match="RETENTION_BUNDLE_ID"):
        retention.record_notification(signer.sign_notification("TEST"))


# -- configuration -------------------------------------------------------------------------


def test_the_endpoint_needs_the_bundle_id(app: Flask) -> None:
    app.config["RETENTION_BUNDLE_ID"] = None
    retention = Retention()
    with pytest.raises(ConfigurationError, match="RETENTION_BUNDLE_ID is required"):
        retention.init_app(app)
    assert "retention" not in app.extensions  # nothing attached: fix the config, call again
    app.config["RETENTION_BUNDLE_ID"] = BUNDLE
    retention.init_app(app)
    retention.close()


def test_the_endpoint_is_off_by_default(app: Flask, signer: AppStoreSigner) -> None:
    app.config["RETENTION_NOTIFICATIONS_ENDPOINT"] = None
    Retention(app)
    response = app.test_client().post(URL, data=json.dumps({"signedPayload": "x"}))
    assert response.status_code == 404


def test_the_endpoint_cannot_share_the_real_time_rule(app: Flask) -> None:
    app.config["RETENTION_NOTIFICATIONS_ENDPOINT"] = "/retention/realtime"
    with pytest.raises(ConfigurationError, match="must differ"):
        Retention(app)


def test_old_notifications_are_accepted_because_apple_retries_for_days(
    app: Flask, client: FlaskClient, signer: AppStoreSigner
) -> None:
    old = datetime.now(UTC) - timedelta(days=3)
    response = post(client, notification(signer, "EXPIRED", "VOLUNTARY", signed_date=old))
    assert response.status_code == 200
    assert len(rows(app)) == 1


def test_purge_deletes_notifications_signed_before_the_cutoff_in_batches(
    app: Flask, client: FlaskClient, signer: AppStoreSigner
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    for days in (20, 15, 12, 2):
        token = notification(signer, "EXPIRED", "VOLUNTARY", signed_date=now - timedelta(days=days))
        assert post(client, token).status_code == 200
    engine = app.extensions["retention"].get_engine(app)
    assert purge_notifications(engine, now - timedelta(days=10), batch_size=2) == 3
    assert [r.signed_date for r in rows(app)] == [now - timedelta(days=2)]
    assert purge_notifications(engine, now - timedelta(days=10)) == 0
    with pytest.raises(ValueError, match="timezone-aware"):
        purge_notifications(engine, datetime(2026, 1, 1))
