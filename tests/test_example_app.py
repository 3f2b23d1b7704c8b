"""The example app starts and its selector follows its rules."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from flask_retention import Message, PromotionalOffer, RealtimeRequest, SwitchPlan


def request_for(otid: str) -> RealtimeRequest:
    return RealtimeRequest(
        original_transaction_id=otid,
        app_apple_id=1,
        product_id="com.example.monthly",
        locale="en-US",
        request_identifier=uuid.uuid4(),
        environment="Sandbox",
        signed_date=datetime.now(UTC),
        raw={},
    )


def test_example_app_serves_its_index() -> None:
    from example_app import app as module

    response = module.app.test_client().get("/")
    assert response.status_code == 200
    assert response.json["retention_endpoint"] == "/retention/realtime"


def test_example_selector_rules() -> None:
    from example_app.app import choose

    assert choose(request_for("1000000000000001")) == SwitchPlan(
        "switch-to-yearly", product_id="com.example.yearly"
    )
    assert choose(request_for("1000000000000002")) == PromotionalOffer(
        "come-back", offer_id="comeback50"
    )
    assert choose(request_for("1000000000000003")) == Message("winback")
    assert choose(request_for("999")) is None
