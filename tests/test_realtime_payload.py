"""Loading a verified payload into a RealtimeRequest: the schema, the one parser."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import uuid
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
import pytest

from flask_retention import Decision, RealtimeRequest
from flask_retention.realtime.endpoint import RealtimeRequestSchema

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


def test_schema_ignores_fields_apple_may_add() -> None:
    assert schema_request({**PAYLOAD, "futureField": 1}) == schema_request(PAYLOAD)


@pytest.mark.parametrize("field", sorted(PAYLOAD))
def test_a_missing_field_is_refused(field: str) -> None:
    assert schema_request({k: v for k, v in PAYLOAD.items() if k != field}) is None


def loads(field: str, value: object) -> bool:
    """Whether ``value`` is of the JSON type the schema takes for ``field``."""
    if field == "requestIdentifier":
        return isinstance(value, str) and value not in ("", " ", "x", "not-a-uuid", "531412")
    if field in ("appAppleId", "signedDate"):
        return type(value) is int and (field == "appAppleId" or -1 <= value < 10**15)
    return isinstance(value, str) and (field == "environment" or value != "")


@pytest.mark.parametrize("field", sorted(PAYLOAD))
@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
def test_a_field_loads_only_with_its_json_type(field: str, value: object) -> None:
    """Strings stay strings, integers stay integers (no bool, no float), UUIDs parse."""
    assert (schema_request({**PAYLOAD, field: value}) is not None) == loads(field, value)


def test_the_request_is_frozen_and_compares_without_raw() -> None:
    req = schema_request(PAYLOAD)
    assert req is not None
    same = schema_request({**PAYLOAD, "futureField": 1})
    assert req == same
    assert hash(req) == hash(same)
    assert "raw" not in repr(req)
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.product_id = "x"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(req)) == req  # noqa: S301 - our own bytes
    assert copy.copy(req) == req


@pytest.mark.parametrize("signed", [253_402_300_800_000, 10**30])
def test_a_signed_date_out_of_range_is_refused(signed: int) -> None:
    assert schema_request({**PAYLOAD, "signedDate": signed}) is None


def test_a_decision_copies_the_typed_fields_of_its_request() -> None:
    req = schema_request(dict(PAYLOAD))
    assert req is not None
    decision = Decision(received_at=datetime.now(UTC))
    decision.note_request(req)
    req.raw.clear()  # what a selector may do to its request's raw
    assert (decision.product_id, decision.locale) == ("com.example.product", "en-US")
    assert decision.request_identifier == uuid.UUID(PAYLOAD["requestIdentifier"])
    assert decision.signed_date == datetime(2023, 10, 24, 12, 1, 40, tzinfo=UTC)
