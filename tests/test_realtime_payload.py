"""Loading a verified payload into a RealtimeRequest: the schema and its hot-path shortcut."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
import pytest

from flask_retention import RealtimeRequest
from flask_retention.realtime import RealtimeRequestSchema, plain_request

PAYLOAD: dict[str, Any] = {
    "originalTransactionId": "99371282",
    "appAppleId": 531412,
    "productId": "com.example.product",
    "userLocale": "en-US",
    "requestIdentifier": "3db5c98d-8acf-4e29-831e-8e1f82f9f6e9",
    "environment": "Sandbox",
    "signedDate": 1698148900000,
}

ODD_VALUES: list[object] = [
    None,
    True,
    False,
    0,
    -1,
    1698148900000,
    10**30,
    1.5,
    1698148900000.0,
    "",
    " ",
    "x",
    "3DB5C98D-8ACF-4E29-831E-8E1F82F9F6E9",
    "{3db5c98d-8acf-4e29-831e-8e1f82f9f6e9}",
    "3db5c98d8acf4e29831e8e1f82f9f6e9",
    "not-a-uuid",
    "531412",
    [],
    {},
]


def schema_request(payload: dict[str, Any]) -> RealtimeRequest | None:
    try:
        loaded = RealtimeRequestSchema().load(payload)
    except ma.ValidationError:
        return None
    return RealtimeRequest(**loaded, raw=payload)


def test_schema_loads_apple_fixture_payload() -> None:
    req = schema_request(PAYLOAD)
    assert req == RealtimeRequest(
        original_transaction_id="99371282",
        app_apple_id=531412,
        product_id="com.example.product",
        locale="en-US",
        request_identifier=uuid.UUID("3db5c98d-8acf-4e29-831e-8e1f82f9f6e9"),
        environment="Sandbox",
        signed_date=datetime(2023, 10, 24, 12, 1, 40, tzinfo=UTC),
        raw=PAYLOAD,
    )
    assert req is not None
    assert req.signed_date.tzinfo is UTC


def test_plain_payload_takes_the_shortcut_with_the_schema_result() -> None:
    req = plain_request(PAYLOAD)
    assert req is not None
    assert req == schema_request(PAYLOAD)
    assert req.raw is PAYLOAD


def test_schema_ignores_fields_apple_may_add() -> None:
    payload = {**PAYLOAD, "futureField": 1}
    assert schema_request(payload) == plain_request(payload) == schema_request(PAYLOAD)


@pytest.mark.parametrize("field", sorted(PAYLOAD))
@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
def test_shortcut_accepts_only_what_the_schema_accepts(field: str, value: object) -> None:
    payload = {**PAYLOAD, field: value}
    shortcut = plain_request(payload)
    if shortcut is not None:
        assert shortcut == schema_request(payload)


@pytest.mark.parametrize("field", sorted(PAYLOAD))
def test_missing_field_is_refused_by_both(field: str) -> None:
    payload = {k: v for k, v in PAYLOAD.items() if k != field}
    assert plain_request(payload) is None
    assert schema_request(payload) is None


@pytest.mark.parametrize("payload", [[], "x", 1, None])
def test_payload_that_is_not_an_object_is_not_taken_by_the_shortcut(payload: Any) -> None:
    assert plain_request(payload) is None
