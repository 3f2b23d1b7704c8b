"""The example app: a subscription backend whose selector uses its own users.

Run it with ``flask --app example_app.app run``; it needs no Apple account.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, jsonify

from flask_retention import Message, PromotionalOffer, RealtimeRequest, Retention, SwitchPlan


@dataclass(frozen=True)
class Subscriber:
    original_transaction_id: str
    plan: str
    months: int
    active_last_30_days: bool


SUBSCRIBERS = {
    s.original_transaction_id: s
    for s in (
        Subscriber("1000000000000001", "monthly", 14, True),
        Subscriber("1000000000000002", "monthly", 3, False),
        Subscriber("1000000000000003", "yearly", 26, True),
    )
}

retention = Retention()


@retention.selector
def choose(req: RealtimeRequest) -> Message | SwitchPlan | PromotionalOffer | None:
    """Long-tenure monthly subscribers see the yearly plan; lapsed users an offer."""
    user = SUBSCRIBERS.get(req.original_transaction_id)
    if user is None:
        return None
    if user.plan == "monthly" and user.months >= 12:
        return SwitchPlan("switch-to-yearly", product_id="com.example.yearly")
    if not user.active_last_30_days:
        return PromotionalOffer("come-back", offer_id="comeback50")
    return Message("winback")


def create_app() -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(RETENTION_ENVIRONMENT="Sandbox")
    retention.init_app(app)

    @app.get("/")
    def index() -> object:
        return jsonify(
            service="example subscription backend",
            retention_endpoint=app.config["RETENTION_ENDPOINT"],
            subscribers=len(SUBSCRIBERS),
        )

    return app


app = create_app()
