"""Loading a verified payload into a RealtimeRequest: the schema and its hot-path shortcut."""

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


def test_shortcut_parses_the_uuid_and_date_when_first_read() -> None:
    req = plain_request(PAYLOAD)
    assert req is not None
    assert "request_identifier" not in vars(req)
    assert "signed_date" not in vars(req)
    rid = req.request_identifier
    assert rid == uuid.UUID(PAYLOAD["requestIdentifier"])
    assert req.request_identifier is rid  # parsed once
    assert req.signed_date == datetime(2023, 10, 24, 12, 1, 40, tzinfo=UTC)
    assert req.signed_date.tzinfo is UTC


def test_a_lazy_request_behaves_as_a_frozen_dataclass() -> None:
    eager = schema_request(PAYLOAD)
    for make in (
        lambda: plain_request(PAYLOAD),
        lambda: copy.copy(plain_request(PAYLOAD)),
        lambda: pickle.loads(pickle.dumps(plain_request(PAYLOAD))),  # noqa: S301 - our own bytes
    ):
        req = make()
        assert req is not None
        assert req == eager
        assert hash(req) == hash(eager)
        assert repr(req) == repr(eager)
        assert dataclasses.asdict(req) == dataclasses.asdict(eager)  # type: ignore[arg-type]
    lazy = plain_request(PAYLOAD)
    assert lazy is not None
    moved = dataclasses.replace(lazy, product_id="com.example.other")
    assert moved.request_identifier == lazy.request_identifier
    assert moved.signed_date == lazy.signed_date
    with pytest.raises(dataclasses.FrozenInstanceError):
        lazy.product_id = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        getattr(lazy, "nothing")  # noqa: B009


@pytest.mark.parametrize("signed", [-1, 253_402_300_800_000, 10**30])
def test_shortcut_leaves_dates_outside_its_range_to_the_schema(signed: int) -> None:
    assert plain_request({**PAYLOAD, "signedDate": signed}) is None


def test_a_decision_reads_the_lazy_fields_when_completed() -> None:
    req = plain_request(PAYLOAD)
    assert req is not None
    decision = Decision(received_at=datetime.now(UTC))
    decision.note_request(req)
    assert (decision.product_id, decision.locale) == ("com.example.product", "en-US")
    assert decision.request_identifier is None  # not parsed on the request path
    assert "request_identifier" not in vars(req)
    assert decision.complete() is decision
    assert decision.request_identifier == uuid.UUID(PAYLOAD["requestIdentifier"])
    assert decision.signed_date == datetime(2023, 10, 24, 12, 1, 40, tzinfo=UTC)
