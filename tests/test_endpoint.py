"""The real-time endpoint, end to end: real signed requests through the Flask test client."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import flask
import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import EnvironBuilder, TestResponse
from werkzeug.wrappers import Response

from flask_retention import (
    Decision,
    Message,
    PromotionalOffer,
    RealtimeRequest,
    Retention,
    SwitchPlan,
    retention_decided,
)
from flask_retention.catalogue.lookup import MessageFacts
from flask_retention.testing import BROKEN_VARIANT_REASONS, AppStoreSigner

from .conftest import POSTGRES_URL
from .memory_lookup import MemoryLookup
from .support import state_of, vector

URL = "/retention/realtime"
APP_APPLE_ID = 1234567890
MID = uuid.UUID("a1b2c3d4-e5f6-7890-a1b2-c3d4e5f67890")
GENEROUS = 10.0  # seconds; only reached when a test is broken
SHORT = 0.05


@pytest.fixture(scope="module")
def signer() -> AppStoreSigner:
    return AppStoreSigner()


@pytest.fixture
def config(signer: AppStoreSigner) -> dict[str, object]:
    return {
        "RETENTION_ROOT_CERTIFICATES": [signer.root_pem],
        "RETENTION_APP_APPLE_ID": APP_APPLE_ID,
        "RETENTION_SELECTOR_TIMEOUT": GENEROUS,
    }


@pytest.fixture
def retention(app: Flask) -> Iterator[Retention]:
    retention = Retention(app)
    yield retention
    retention.close()


@pytest.fixture
def decisions(app: Flask, retention: Retention) -> Iterator[list[Decision]]:
    seen: list[Decision] = []

    def receive(sender: Flask, decision: Decision) -> None:
        seen.append(decision)

    with retention_decided.connected_to(receive, sender=app):
        yield seen


def post(client: FlaskClient, body: bytes, content_type: str = "application/json") -> TestResponse:
    return client.post(URL, data=body, content_type=content_type)


def ask(client: FlaskClient, signer: AppStoreSigner, **fields: Any) -> TestResponse:
    return post(client, signer.realtime_body(**fields))


def assert_error(response: TestResponse, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error", "message"}
    assert body["error"] == code
    assert isinstance(body["message"], str)
    assert body["message"]


# -- answers ------------------------------------------------------------------


def test_message_answer(client: FlaskClient, retention: Retention, signer: AppStoreSigner) -> None:
    retention.selector(lambda req: Message(MID))
    response = ask(client, signer)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {"message": {"messageIdentifier": str(MID)}}


def test_switch_plan_answer(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    retention.selector(lambda req: SwitchPlan(MID, "com.example.yearly", "BILLED_UPFRONT"))
    assert ask(client, signer).get_json() == {
        "alternateProduct": {
            "messageIdentifier": str(MID),
            "productId": "com.example.yearly",
            "billingPlanType": "BILLED_UPFRONT",
        }
    }


def test_switch_plan_answer_without_billing_plan_type(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    retention.selector(lambda req: SwitchPlan(MID, "com.example.yearly"))
    assert ask(client, signer).get_json() == {
        "alternateProduct": {"messageIdentifier": str(MID), "productId": "com.example.yearly"}
    }


def test_passed_through_offer_answer(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    retention.selector(lambda req: PromotionalOffer(MID, signature_v2="a.b.c"))
    assert ask(client, signer).get_json() == {
        "promotionalOffer": {"messageIdentifier": str(MID), "promotionalOfferSignatureV2": "a.b.c"}
    }


@pytest.fixture
def offer_config(config: dict[str, object]) -> dict[str, object]:
    config.update(
        RETENTION_PRIVATE_KEY_PATH=str(vector("apple-test-pki/testSigningKey.p8")),
        RETENTION_KEY_ID="KEY1234567",
        RETENTION_ISSUER_ID="5f1c7f2e-0000-4000-8000-000000000001",
        RETENTION_BUNDLE_ID="com.example.app",
    )
    return config


@pytest.mark.usefixtures("offer_config")
def test_signed_offer_answer(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    retention.selector(lambda req: PromotionalOffer(MID, "loyal50"))
    response = ask(client, signer, original_transaction_id="2000000000000002")
    body = response.get_json()["promotionalOffer"]
    assert set(body) == {"messageIdentifier", "promotionalOfferSignatureV2"}
    assert body["messageIdentifier"] == str(MID)
    token = body["promotionalOfferSignatureV2"]
    key = serialization.load_pem_private_key(
        vector("apple-test-pki/testSigningKey.p8").read_bytes(), password=None
    )
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": "KEY1234567", "typ": "JWT"}
    claims = jwt.decode(
        token,
        key.public_key(),  # type: ignore[arg-type]
        algorithms=["ES256"],
        audience="promotional-offer",
        issuer="5f1c7f2e-0000-4000-8000-000000000001",
    )
    assert claims["bid"] == "com.example.app"
    assert claims["productId"] == "com.example.monthly"
    assert claims["offerIdentifier"] == "loyal50"
    assert claims["transactionId"] == "2000000000000002"
    assert uuid.UUID(claims["nonce"])
    assert isinstance(claims["iat"], int)


def test_offer_without_configured_key_takes_the_fallback(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner, decisions: list[Decision]
) -> None:
    retention.selector(lambda req: PromotionalOffer(MID, "loyal50"))
    assert ask(client, signer).get_json() == {}
    assert decisions[0].fallback_reason == "offer_not_configured"


def test_no_choice_answers_empty(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner, decisions: list[Decision]
) -> None:
    retention.selector(lambda req: None)
    response = ask(client, signer)
    assert response.status_code == 200
    assert response.get_json() == {}
    assert decisions[0].fallback_reason == "no_choice"


def test_json_with_a_text_content_type_is_answered(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    retention.selector(lambda req: Message(MID))
    response = post(client, signer.realtime_body(), content_type="text/plain")
    assert response.get_json() == {"message": {"messageIdentifier": str(MID)}}


def test_selector_receives_the_verified_request(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    seen: list[RealtimeRequest] = []
    rid = uuid.uuid4()
    retention.selector(lambda req: seen.append(req))
    ask(
        client,
        signer,
        original_transaction_id="3000000000000003",
        product_id="com.example.weekly",
        locale="fr-FR",
        request_identifier=str(rid),
    )
    (req,) = seen
    assert req.original_transaction_id == "3000000000000003"
    assert req.app_apple_id == APP_APPLE_ID
    assert req.product_id == "com.example.weekly"
    assert req.locale == "fr-FR"
    assert req.request_identifier == rid
    assert req.environment == "Sandbox"
    assert req.signed_date.tzinfo is not None
    assert abs(req.signed_date - datetime.now(UTC)) < timedelta(minutes=1)
    assert req.raw["userLocale"] == "fr-FR"


def test_scoped_selector_is_chosen_over_the_catch_all(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    other = uuid.uuid4()
    retention.selector(lambda req: Message(MID))
    retention.selector(product_ids=["com.example.yearly"])(lambda req: Message(other))
    assert ask(client, signer, product_id="com.example.yearly").get_json() == {
        "message": {"messageIdentifier": str(other)}
    }
    assert ask(client, signer, product_id="com.example.monthly").get_json() == {
        "message": {"messageIdentifier": str(MID)}
    }


def test_selector_has_app_context_and_no_request_context(
    app: Flask, client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    seen: dict[str, object] = {}

    def probe(req: RealtimeRequest) -> None:
        seen["request_context"] = flask.has_request_context()
        seen["app"] = flask.current_app._get_current_object()  # type: ignore[attr-defined]

    retention.selector(probe)
    assert ask(client, signer).status_code == 200
    assert seen == {"request_context": False, "app": app}


# -- names and defaults through the catalogue lookup ----------------------------


@pytest.fixture
def lookup(app: Flask, retention: Retention) -> MemoryLookup:
    lookup = MemoryLookup()
    state_of(app).endpoint.lookup = lookup
    return lookup


def test_names_resolve_through_the_catalogue(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner, lookup: MemoryLookup
) -> None:
    facts = lookup.add("winback")
    retention.selector(lambda req: Message("winback"))
    assert ask(client, signer).get_json() == {"message": {"messageIdentifier": str(facts.uuid)}}


def test_fallback_is_the_approved_default(
    client: FlaskClient,
    retention: Retention,
    signer: AppStoreSigner,
    lookup: MemoryLookup,
    decisions: list[Decision],
) -> None:
    default = lookup.add_default()
    retention.selector(lambda req: Message("no-such-name"))
    assert ask(client, signer).get_json() == {"message": {"messageIdentifier": str(default.uuid)}}
    assert decisions[0].fallback_reason == "unknown_name"
    assert decisions[0].kind == "message"
    assert decisions[0].message_id == default.uuid


def test_unapproved_default_is_not_sent(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner, lookup: MemoryLookup
) -> None:
    lookup.set_default("com.example.monthly", "en-US", lookup.add("default", state="PENDING"))
    retention.selector(lambda req: None)
    assert ask(client, signer).get_json() == {}


def test_unapproved_choice_takes_the_fallback(
    client: FlaskClient,
    retention: Retention,
    signer: AppStoreSigner,
    lookup: MemoryLookup,
    decisions: list[Decision],
) -> None:
    lookup.add("draft", state="PENDING")
    retention.selector(lambda req: Message("draft"))
    assert ask(client, signer).get_json() == {}
    assert decisions[0].fallback_reason == "unapproved"


def test_switch_plan_with_image_message_takes_the_fallback(
    client: FlaskClient,
    retention: Retention,
    signer: AppStoreSigner,
    lookup: MemoryLookup,
    decisions: list[Decision],
) -> None:
    lookup.add("hero", has_image=True, image_state="APPROVED")
    retention.selector(lambda req: SwitchPlan("hero", "com.example.yearly"))
    assert ask(client, signer).get_json() == {}
    assert decisions[0].fallback_reason == "not_allowed_for_kind"


class FailingLookup(MemoryLookup):
    def lookup(
        self, message: object, environment: str, locale: str | None = None
    ) -> MessageFacts | None:
        raise RuntimeError("snapshot corrupted")


def test_unexpected_failure_after_verification_takes_the_fallback(
    app: Flask,
    client: FlaskClient,
    retention: Retention,
    signer: AppStoreSigner,
    decisions: list[Decision],
    caplog: pytest.LogCaptureFixture,
) -> None:
    lookup = FailingLookup()
    default = lookup.add_default()
    state_of(app).endpoint.lookup = lookup
    retention.selector(lambda req: Message("winback"))
    response = ask(client, signer)
    assert response.status_code == 200
    assert response.get_json() == {"message": {"messageIdentifier": str(default.uuid)}}
    assert decisions[0].fallback_reason == "internal_error"
    assert "snapshot corrupted" in caplog.text


# -- selector failures ----------------------------------------------------------------


def test_selector_raising_takes_the_fallback(
    client: FlaskClient,
    retention: Retention,
    signer: AppStoreSigner,
    decisions: list[Decision],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(req: RealtimeRequest) -> None:
        raise KeyError("user")

    retention.selector(broken)
    response = ask(client, signer)
    assert response.status_code == 200
    assert response.get_json() == {}
    assert decisions[0].fallback_reason == "selector_error"
    assert "broken" in caplog.text


@pytest.mark.parametrize("junk", ["winback", 42, {"message": str(MID)}])
def test_selector_returning_junk_takes_the_fallback(
    client: FlaskClient,
    retention: Retention,
    signer: AppStoreSigner,
    decisions: list[Decision],
    junk: object,
) -> None:
    retention.selector(lambda req: junk)
    response = ask(client, signer)
    assert response.status_code == 200
    assert response.get_json() == {}
    assert decisions[0].fallback_reason == "invalid_choice"


@pytest.fixture
def short_timeout(config: dict[str, object]) -> None:
    config.update(RETENTION_SELECTOR_TIMEOUT=SHORT, RETENTION_SELECTOR_WORKERS=1)


@pytest.mark.usefixtures("short_timeout")
def test_overrunning_selector_does_not_hold_the_answer(
    app: Flask,
    client: FlaskClient,
    retention: Retention,
    signer: AppStoreSigner,
    lookup: MemoryLookup,
    decisions: list[Decision],
) -> None:
    default = lookup.add_default()
    entered, release = threading.Event(), threading.Event()

    def stuck(req: RealtimeRequest) -> Message:
        entered.set()
        release.wait(GENEROUS)
        return Message(MID)

    retention.selector(stuck)
    try:
        response = ask(client, signer)
        assert entered.is_set()
        assert not release.is_set()
        assert response.status_code == 200
        assert response.get_json() == {"message": {"messageIdentifier": str(default.uuid)}}
        assert decisions[0].fallback_reason == "timeout"
    finally:
        release.set()


@pytest.mark.usefixtures("short_timeout")
def test_all_workers_stuck_answers_overloaded_within_the_time_limit(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner, decisions: list[Decision]
) -> None:
    release = threading.Event()
    calls: list[RealtimeRequest] = []

    def stuck(req: RealtimeRequest) -> None:
        calls.append(req)
        release.wait(GENEROUS)

    retention.selector(stuck)
    try:
        assert ask(client, signer).get_json() == {}
        assert ask(client, signer).get_json() == {}
        assert len(calls) == 1
        assert [d.fallback_reason for d in decisions] == ["timeout", "overloaded"]
    finally:
        release.set()


def test_no_selector_takes_the_fallback_logged_once(
    client: FlaskClient,
    retention: Retention,
    signer: AppStoreSigner,
    decisions: list[Decision],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="flask_retention"):
        for _ in range(3):
            assert ask(client, signer).get_json() == {}
    assert caplog.text.count("no selector is registered") == 1
    assert [d.fallback_reason for d in decisions] == ["no_selector"] * 3


# -- the decision signal ----------------------------------------------------------


def test_signal_carries_the_decision(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner, decisions: list[Decision]
) -> None:
    rid = uuid.uuid4()
    retention.selector(lambda req: Message(MID))
    ask(client, signer, request_identifier=str(rid), original_transaction_id="4000000000000004")
    (d,) = decisions
    assert d.status == 200
    assert d.error is None
    assert d.request_identifier == rid
    assert d.original_transaction_id == "4000000000000004"
    assert d.app_apple_id == APP_APPLE_ID
    assert d.product_id == "com.example.monthly"
    assert d.locale == "en-US"
    assert d.environment == "Sandbox"
    assert d.selector is not None
    assert "lambda" in d.selector
    assert d.kind == "message"
    assert d.message_id == MID
    assert d.fallback_reason is None
    assert d.latency_ms > 0


def test_signal_carries_rejections(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner, decisions: list[Decision]
) -> None:
    ask(client, signer, app_apple_id=999)
    post(client, b"not json")
    assert [(d.status, d.error) for d in decisions] == [(403, "wrong_app"), (400, "malformed")]
    assert decisions[0].app_apple_id == 999
    assert decisions[0].request_identifier is not None
    assert decisions[1].request_identifier is None


def test_a_failing_signal_receiver_does_not_change_the_answer(
    app: Flask, client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    def bad_receiver(sender: Flask, decision: Decision) -> None:
        raise RuntimeError("receiver bug")

    retention.selector(lambda req: Message(MID))
    with retention_decided.connected_to(bad_receiver, sender=app):
        assert ask(client, signer).get_json() == {"message": {"messageIdentifier": str(MID)}}


# -- rejections ---------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(BROKEN_VARIANT_REASONS))
def test_broken_signature_is_refused_with_its_reason(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner, variant: str
) -> None:
    retention.selector(lambda req: Message(MID))
    token = signer.sign_broken(variant, signer.realtime_payload())
    reason = BROKEN_VARIANT_REASONS[variant]
    response = post(client, json.dumps({"signedPayload": token}).encode())
    assert_error(response, 400 if reason == "malformed" else 401, reason)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"",
        b"{",
        b"\xff\xfe\x00garbage",
        b"[1, 2]",
        b'"just a string"',
        b"{}",
        b'{"signedPayload": 42}',
        b'{"signedPayload": null}',
        b'{"signedPayload": ["a.b.c"]}',
        b'{"signed_payload": "a.b.c"}',
        b'{"signedPayload": "only.two"}',
        b'{"signedPayload": "a.b.c"}',
        b"[" * 60000,
    ],
    ids=lambda b: repr(b[:30]),
)
def test_malformed_body_is_refused(client: FlaskClient, retention: Retention, body: bytes) -> None:
    assert_error(post(client, body), 400, "malformed")


def test_non_json_with_a_json_content_type_is_refused(
    client: FlaskClient, retention: Retention
) -> None:
    assert_error(post(client, b"signedPayload=a.b.c", "application/json"), 400, "malformed")


def test_form_body_is_not_read_as_a_form(client: FlaskClient, retention: Retention) -> None:
    response = post(client, b"signedPayload=a.b.c", "application/x-www-form-urlencoded")
    assert_error(response, 400, "malformed")


PAYLOAD_FIELDS = [
    "originalTransactionId",
    "appAppleId",
    "productId",
    "userLocale",
    "requestIdentifier",
    "environment",
    "signedDate",
]


@pytest.mark.parametrize("field", PAYLOAD_FIELDS)
def test_payload_missing_a_field_is_refused(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner, field: str
) -> None:
    payload = signer.realtime_payload()
    del payload[field]
    response = post(client, json.dumps({"signedPayload": signer.sign(payload)}).encode())
    assert_error(response, 400, "malformed")
    assert field in response.get_json()["message"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("originalTransactionId", 1000000000000001),
        ("originalTransactionId", ""),
        ("appAppleId", str(APP_APPLE_ID)),
        ("appAppleId", float(APP_APPLE_ID)),
        ("appAppleId", True),
        ("productId", None),
        ("userLocale", ["en-US"]),
        ("requestIdentifier", "not-a-uuid"),
        ("requestIdentifier", 12345),
        ("environment", 1),
        ("signedDate", "2026-11-22T00:00:00Z"),
        ("signedDate", "float"),
        ("signedDate", 10**30),
    ],
)
def test_payload_with_a_mistyped_field_is_refused(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner, field: str, value: object
) -> None:
    payload = signer.realtime_payload()
    payload[field] = payload[field] + 0.5 if value == "float" else value
    response = post(client, json.dumps({"signedPayload": signer.sign(payload)}).encode())
    assert_error(response, 400, "malformed")


def test_payload_that_is_not_an_object_is_refused(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    token = signer.sign([1, 2, 3])  # type: ignore[arg-type]
    assert_error(post(client, json.dumps({"signedPayload": token}).encode()), 400, "malformed")


def test_unknown_payload_fields_are_kept_in_raw(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    seen: list[RealtimeRequest] = []
    retention.selector(lambda req: seen.append(req))
    payload = signer.realtime_payload()
    payload["futureField"] = "x"
    assert post(client, json.dumps({"signedPayload": signer.sign(payload)}).encode()).status_code
    assert seen[0].raw["futureField"] == "x"


def test_huge_body_is_refused(client: FlaskClient, retention: Retention) -> None:
    body = json.dumps({"signedPayload": "a" * 70_000}).encode()
    assert_error(post(client, body), 413, "too_large")


def test_huge_body_without_content_length_is_refused(app: Flask, retention: Retention) -> None:
    body = json.dumps({"signedPayload": "a" * 70_000}).encode()
    environ = EnvironBuilder(
        path=URL, method="POST", data=body, content_type="application/json"
    ).get_environ()
    del environ["CONTENT_LENGTH"]
    environ["wsgi.input_terminated"] = True  # as a server does for a chunked body
    response = Response.from_app(app, environ)
    assert response.status_code == 413
    assert json.loads(response.get_data())["error"] == "too_large"


def test_body_just_under_the_limit_is_read(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    retention.selector(lambda req: Message(MID))
    body = signer.realtime_body()
    padded = body[:-1] + b" " * (64 * 1024 - len(body)) + b"}"
    assert len(padded) == 64 * 1024
    assert post(client, padded).status_code == 200


@pytest.mark.parametrize(
    "method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND", "MKCOL", "BREW"]
)
def test_other_methods_are_refused_as_json(
    client: FlaskClient, retention: Retention, method: str
) -> None:
    response = client.open(URL, method=method)
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "POST"


def test_unknown_methods_elsewhere_keep_the_hosts_405(app: Flask, retention: Retention) -> None:
    app.add_url_rule("/page", "page", lambda: "a page")
    response = app.test_client().open("/page", method="PROPFIND")
    assert response.status_code == 405
    assert response.mimetype == "text/html"  # Flask's own 405, not the endpoint's JSON


def test_the_hosts_other_requests_run_nothing_of_ours(app: Flask, retention: Retention) -> None:
    # The endpoint's rule matches every method itself: no app-wide hook does that job.
    assert not any(app.before_request_funcs.values())
    assert not any(app.after_request_funcs.values())


def test_wrong_app_is_refused(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    assert_error(ask(client, signer, app_apple_id=987654321), 403, "wrong_app")


def test_wrong_environment_is_refused(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    assert_error(ask(client, signer, environment="Production"), 403, "wrong_environment")


def test_both_environments_when_configured(
    app: Flask, signer: AppStoreSigner, config: dict[str, object]
) -> None:
    app.config["RETENTION_ENVIRONMENT"] = ["Production", "Sandbox"]
    retention = Retention(app)
    retention.selector(lambda req: Message(MID))
    try:
        client = app.test_client()
        assert ask(client, signer, environment="Production").status_code == 200
        assert ask(client, signer, environment="Sandbox").status_code == 200
    finally:
        retention.close()


@pytest.mark.parametrize("offset", [timedelta(seconds=-301), timedelta(seconds=301)])
def test_stale_request_is_refused(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner, offset: timedelta
) -> None:
    signed = datetime.now(UTC) + offset
    response = ask(client, signer, signed_date=signed)
    assert_error(response, 403, "stale")
    assert ("future" if offset > timedelta(0) else "past") in response.get_json()["message"]


def test_request_within_the_age_limit_is_answered(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    retention.selector(lambda req: Message(MID))
    signed = datetime.now(UTC) - timedelta(seconds=250)
    assert ask(client, signer, signed_date=signed).status_code == 200


def test_replayed_request_is_refused(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    retention.selector(lambda req: Message(MID))
    body = signer.realtime_body()
    assert post(client, body).status_code == 200
    assert_error(post(client, body), 403, "replayed")


def test_same_identifier_in_a_new_signature_is_refused(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    rid = str(uuid.uuid4())
    assert ask(client, signer, request_identifier=rid).status_code == 200
    assert_error(ask(client, signer, request_identifier=rid), 403, "replayed")


def test_rejected_request_is_not_remembered_as_answered(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    rid = str(uuid.uuid4())
    assert_error(ask(client, signer, request_identifier=rid, app_apple_id=1), 403, "wrong_app")
    assert ask(client, signer, request_identifier=rid).status_code == 200


# -- the host app's own handlers do not change our answers ------------------------


@pytest.fixture
def html_host(app: Flask) -> Flask:
    """A host app whose own error handlers and hooks answer in HTML."""

    @app.errorhandler(400)
    @app.errorhandler(404)
    @app.errorhandler(405)
    @app.errorhandler(413)
    @app.errorhandler(500)
    def html_error(e: Exception) -> tuple[str, int]:
        return "<h1>host error page</h1>", 418

    @app.errorhandler(Exception)
    def html_exception(e: Exception) -> tuple[str, int]:
        return "<h1>host exception page</h1>", 418

    @app.before_request
    def host_hook() -> None:
        flask.g.host_hook_ran = True

    return app


@pytest.mark.usefixtures("html_host")
def test_host_error_handlers_do_not_change_our_errors(
    client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    assert_error(post(client, b"not json"), 400, "malformed")
    assert_error(client.get(URL), 405, "method_not_allowed")
    assert_error(post(client, b"x" * 70_000), 413, "too_large")
    assert_error(ask(client, signer, app_apple_id=1), 403, "wrong_app")
    token = signer.sign_broken("tampered_signature", signer.realtime_payload())
    assert_error(post(client, json.dumps({"signedPayload": token}).encode()), 401, "bad_signature")
    assert client.get("/elsewhere").status_code == 418  # the host's pages stay the host's
    assert_error(client.open(URL, method="PROPFIND"), 405, "method_not_allowed")
    assert client.open("/elsewhere", method="PROPFIND").status_code == 418  # still the host's


def test_host_max_content_length_gives_our_json_413(
    app: Flask, client: FlaskClient, retention: Retention
) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 100
    assert_error(post(client, json.dumps({"signedPayload": "a" * 200}).encode()), 413, "too_large")


def test_host_hook_aborting_gives_our_json(
    app: Flask, client: FlaskClient, retention: Retention
) -> None:
    @app.before_request
    def deny() -> None:
        flask.abort(403)

    assert_error(post(client, b"{}"), 403, "forbidden")


def test_unexpected_error_around_the_view_is_json_without_traceback(
    app: Flask, client: FlaskClient, retention: Retention, caplog: pytest.LogCaptureFixture
) -> None:
    @app.before_request
    def broken_hook() -> None:
        raise RuntimeError("host hook bug")

    response = post(client, b"{}")
    assert_error(response, 500, "internal_error")
    assert "host hook bug" not in response.get_data(as_text=True)
    assert "host hook bug" in caplog.text


# -- configuration and lifecycle --------------------------------------------------


def test_custom_endpoint_rule(app: Flask, signer: AppStoreSigner) -> None:
    app.config["RETENTION_ENDPOINT"] = "/apple/retention"
    retention = Retention(app)
    retention.selector(lambda req: Message(MID))
    try:
        client = app.test_client()
        response = client.post("/apple/retention", data=signer.realtime_body())
        assert response.get_json() == {"message": {"messageIdentifier": str(MID)}}
        assert client.post(URL, data=signer.realtime_body()).status_code == 404
    finally:
        retention.close()


# -- where the selector runs: a worker thread, in a fresh app context -------------------


def test_selector_runs_on_a_worker_in_a_fresh_app_context(
    app: Flask, client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    """The same on every server: none of the request's ``g``, no request context."""
    app.before_request(lambda: setattr(flask.g, "marked", "by the request"))
    #: (thread, g.marked, has_app_context, has_request_context, current_app.name) per call
    seen: list[tuple[int, object, bool, bool, str]] = []

    def probe(req: RealtimeRequest) -> None:
        seen.append(
            (
                threading.get_ident(),
                flask.g.get("marked"),
                flask.has_app_context(),
                flask.has_request_context(),
                flask.current_app.name,
            )
        )
        flask.g.marked = "by the selector"

    retention.selector(probe)
    assert ask(client, signer).status_code == 200
    assert ask(client, signer).status_code == 200
    for ident, marked, app_context, request_context, name in seen:
        assert ident != threading.get_ident()
        assert (marked, app_context, request_context, name) == (None, True, False, app.name)


def test_the_selectors_app_context_is_torn_down_after_each_call(
    app: Flask, client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    torn_down: list[object] = []
    app.teardown_appcontext(lambda exc: torn_down.append(flask.g.get("selector_was_here")))
    retention.selector(lambda req: setattr(flask.g, "selector_was_here", req.product_id))
    assert ask(client, signer).status_code == 200
    assert "com.example.monthly" in torn_down


@pytest.mark.postgresql
@pytest.mark.skipif(not POSTGRES_URL, reason="needs RETENTION_TEST_DATABASE_URL (PostgreSQL)")
@pytest.mark.usefixtures("short_timeout")
def test_a_slow_query_gets_the_fallback_and_a_statement_timeout_frees_its_worker(
    app: Flask,
    client: FlaskClient,
    retention: Retention,
    signer: AppStoreSigner,
    decisions: list[Decision],
) -> None:
    """No runner can stop a query; the statement timeout the docs advise does."""
    assert POSTGRES_URL is not None
    engine = sa.create_engine(POSTGRES_URL, pool_size=1, max_overflow=0)
    failures: list[str] = []

    def slow(req: RealtimeRequest) -> Message:
        try:
            with engine.begin() as connection:
                connection.execute(sa.text("SET LOCAL statement_timeout = '300ms'"))
                connection.execute(sa.text("SELECT pg_sleep(:s)"), {"s": GENEROUS})
        except sa.exc.OperationalError as e:
            failures.append(type(e.orig).__name__)
            raise
        return Message(MID)

    retention.selector(slow)
    try:
        started = time.monotonic()
        assert ask(client, signer).get_json() == {}
        assert time.monotonic() - started < GENEROUS / 2
        assert decisions[0].fallback_reason == "timeout"
        wait_until(lambda: retention.stats(app).pool.busy == 0)  # type: ignore[union-attr]
        assert failures == ["QueryCanceled"]
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


def wait_until(condition: Any) -> None:
    deadline = time.monotonic() + GENEROUS
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_no_endpoint_when_rule_is_none(app: Flask, signer: AppStoreSigner) -> None:
    app.config["RETENTION_ENDPOINT"] = None
    Retention(app)
    assert state_of(app).endpoint is None
    assert app.test_client().post(URL, data=signer.realtime_body()).status_code == 404


def test_close_stops_the_selector_workers(
    app: Flask, client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    retention.selector(lambda req: Message(MID))
    ask(client, signer)
    endpoint = state_of(app).endpoint
    assert endpoint is not None
    assert endpoint.pool.stats().started == 1
    retention.close(app)
    assert endpoint.pool.stats().started == 0
    assert ask(client, signer).status_code == 200  # workers start again when needed
