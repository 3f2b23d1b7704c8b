"""Outcomes in ``flask retention report``: from the endpoint's decision log and signed
notifications to the JSON, text and HTML report (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from flask_retention import Message, Retention, SwitchPlan
from flask_retention.catalogue.models import Decision, Notification
from flask_retention.catalogue.schema import upgrade
from flask_retention.insights.report import build_report, render_html, render_text
from flask_retention.testing import AppStoreSigner

from .memory_lookup import MemoryLookup
from .support import state_of

APP_APPLE_ID = 1234567890
BUNDLE = "com.example.app"
NOTIFICATIONS = "/retention/notifications"
NOW = datetime.now(UTC).replace(microsecond=0)
GENEROUS = 10.0


@pytest.fixture(scope="module")
def signer() -> AppStoreSigner:
    return AppStoreSigner(valid_from=datetime.now(UTC) - timedelta(days=60))


@pytest.fixture
def config(signer: AppStoreSigner, database_url: str) -> dict[str, object]:
    return {
        "RETENTION_ROOT_CERTIFICATES": [signer.root_pem],
        "RETENTION_APP_APPLE_ID": APP_APPLE_ID,
        "RETENTION_BUNDLE_ID": BUNDLE,
        "RETENTION_NOTIFICATIONS_ENDPOINT": NOTIFICATIONS,
        "RETENTION_DATABASE_URI": database_url,
        "RETENTION_SELECTOR_TIMEOUT": GENEROUS,
    }


@pytest.fixture
def retention(app: Flask) -> Iterator[Retention]:
    retention = Retention(app)
    upgrade(app.extensions["retention"].get_engine(app))
    yield retention
    retention.close()


def notify(client: FlaskClient, signer: AppStoreSigner, otid: str, at: datetime) -> None:
    token = signer.sign_notification(
        "DID_CHANGE_RENEWAL_STATUS",
        subtype="AUTO_RENEW_DISABLED",
        bundle_id=BUNDLE,
        signed_date=at,
        renewal_info=signer.renewal_payload(original_transaction_id=otid, auto_renew_status=0),
    )
    response = client.post(NOTIFICATIONS, json={"signedPayload": token})
    assert response.status_code == 200, response.get_data(as_text=True)


def test_the_decision_log_records_experiment_and_variant(
    app: Flask, client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    lookup = MemoryLookup()
    lookup.add("winback")
    lookup.add("yearly-msg")
    state_of(app).endpoint.lookup = lookup
    experiment = retention.experiment(
        "winback-2026",
        {"control": Message("winback"), "switch": SwitchPlan("yearly-msg", "com.example.yearly")},
    )
    retention.selector(experiment.choose)
    ids = [str(4000000000000000 + i) for i in range(12)]
    for otid in ids:
        body = signer.realtime_body(original_transaction_id=otid, app_apple_id=APP_APPLE_ID)
        assert client.post("/retention/realtime", data=body).status_code == 200
    endpoint = state_of(app)
    assert endpoint is not None
    assert endpoint.decision_log is not None
    assert endpoint.decision_log.flush(GENEROUS)
    with state_of(app).database.session() as session:
        rows = {
            r.original_transaction_id: (r.experiment, r.variant, r.kind)
            for r in session.scalars(sa.select(Decision))
        }
    kinds = {"control": "message", "switch": "alternate_product"}
    assert rows == {
        otid: ("winback-2026", experiment.variant_for(otid), kinds[experiment.variant_for(otid)])
        for otid in ids
    }


def add_decisions(app: Flask, rows: list[dict[str, Any]]) -> None:
    base: dict[str, Any] = {"environment": "Sandbox", "status": 200, "selector": "choose"}
    with state_of(app).database.session() as session:
        session.add_all(
            Decision(request_identifier=uuid.uuid4(), **{**base, **row}) for row in rows
        )
        session.commit()


def known_set(app: Flask, client: FlaskClient, signer: AppStoreSigner) -> tuple[uuid.UUID, ...]:
    """Two messages and a two-variant experiment with known outcomes."""
    winback, yearly = uuid.uuid4(), uuid.uuid4()
    start = NOW - timedelta(days=14)
    rows: list[dict[str, Any]] = []
    for i in range(4):  # winback: 4 shown, 1 cancelled
        rows.append(
            {"original_transaction_id": f"w{i}", "kind": "message", "message_uuid": winback,
             "created_at": start}
        )  # fmt: skip
    for i in range(2):  # yearly switch: 2 shown, one still open
        rows.append(
            {"original_transaction_id": f"y{i}", "kind": "alternate_product",
             "message_uuid": yearly, "created_at": start if i == 0 else NOW - timedelta(days=1)}
        )  # fmt: skip
    for variant, n, cancelled in (("control", 40, 20), ("offer", 40, 8)):
        for i in range(n):
            rows.append(
                {"original_transaction_id": f"{variant}{i}", "kind": "message",
                 "message_uuid": winback, "created_at": start, "experiment": "copy",
                 "variant": variant, "selector": "Experiment.choose"}
            )  # fmt: skip
            if i < cancelled:
                notify(client, signer, f"{variant}{i}", start + timedelta(hours=2))
    add_decisions(app, rows)
    notify(client, signer, "w0", start + timedelta(days=1))
    with state_of(app).database.session() as session:
        session.add(
            Notification(
                notification_uuid=uuid.uuid4(),
                notification_type="DID_CHANGE_RENEWAL_PREF",
                subtype="UPGRADE",
                original_transaction_id="y0",
                environment="Sandbox",
                signed_date=start + timedelta(hours=1),
            )
        )
        session.commit()
    return winback, yearly


def test_report_figures_for_a_known_set(
    app: Flask, client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    winback, yearly = known_set(app, client, signer)
    report = build_report(
        app.extensions["retention"].get_engine(app),
        NOW - timedelta(days=30),
        now=NOW,
        experiment_order={"copy": ["control", "offer"]},
    )
    assert report["outcomes"] == {
        "decided": 86,
        "closed": 85,
        "redeemed_offer": 0,
        "switched_plan": 1,
        "cancelled": 29,
        "kept": 55,
        "pending": 1,
        "save_rate": round(56 / 85, 4),
        "events": 30,
    }
    by_message = {(m["message"], m["kind"]): m for m in report["by_message"]}
    shown = by_message[(str(winback), "message")]
    assert (shown["requests"], shown["cancelled"], shown["kept"], shown["save_rate"]) == (
        84,
        29,
        55,
        round(55 / 84, 4),
    )
    switch = by_message[(str(yearly), "alternate_product")]
    assert (switch["switched_plan"], switch["pending"], switch["save_rate"]) == (1, 1, 1.0)
    assert report["outcomes_by"]["selector"]["Experiment.choose"]["cancelled"] == 28
    assert report["outcomes_by"]["kind"]["alternate_product"]["decided"] == 2
    control, offer = (
        report["experiments"]["copy"]["control"],
        report["experiments"]["copy"]["offer"],
    )
    assert (control["closed"], control["cancelled"], control["cancel_rate"]) == (40, 20, 0.5)
    assert (offer["closed"], offer["cancelled"], offer["cancel_rate"]) == (40, 8, 0.2)
    assert offer["difference"] == -0.3
    # pooled 28/80 = 0.35; z = -0.3 / sqrt(0.35 * 0.65 * (2/40)) = -2.8128; two-sided p
    # from the standard library's normal distribution: 0.0049106.
    assert offer["p_value"] == pytest.approx(0.0049106, abs=1e-6)
    assert offer["verdict"] == "cancels less than control (p = 0.00491)"

    text = render_text(report)
    assert "Outcomes per message" in text
    assert "Outcomes per selector" in text
    assert "Experiment copy" in text
    assert "cancels less than control (p = 0.00491)" in text
    assert "65.5 %" in text  # the winback message's save rate
    page = render_html(report)
    assert "Experiment copy" in page
    assert "cancels less than control" in page


def test_too_few_decisions_are_said_plainly(
    app: Flask, client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    start = NOW - timedelta(days=10)
    add_decisions(
        app,
        [
            {"original_transaction_id": f"{v}{i}", "kind": "message", "experiment": "small",
             "variant": v, "created_at": start}
            for v in ("a", "b") for i in range(5)
        ],
    )  # fmt: skip
    report = build_report(
        app.extensions["retention"].get_engine(app), NOW - timedelta(days=30), now=NOW
    )
    b = report["experiments"]["small"]["b"]
    assert b["verdict"] == (
        "too few decisions to tell: 5 and 5 closed, at least 30 each are needed"
    )
    assert "too few decisions to tell" in render_text(report)
    assert "no App Store Server Notifications stored" in render_text(report)


def test_the_report_command_prints_outcomes_and_experiments_in_declared_order(
    app: Flask, client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    known_set(app, client, signer)
    retention.experiment("copy", {"offer": Message("b"), "control": Message("a")})
    result = app.test_cli_runner().invoke(args=["retention", "report", "--since", "30d", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert {"cancelled", "redeemed_offer", "switched_plan", "kept", "pending", "save_rate"} <= set(
        report["outcomes"]
    )
    assert list(report["experiments"]["copy"]) == ["offer", "control"]  # as declared
    assert report["experiments"]["copy"]["offer"]["baseline"] is True
    assert report["experiments"]["copy"]["control"]["difference"] == 0.3


def test_purge_deletes_old_notifications_too(
    app: Flask, client: FlaskClient, retention: Retention, signer: AppStoreSigner
) -> None:
    add_decisions(
        app,
        [
            {
                "original_transaction_id": "1",
                "kind": "message",
                "created_at": NOW - timedelta(days=40),
            }
        ],
    )
    notify(client, signer, "1", NOW - timedelta(days=39))
    notify(client, signer, "1", NOW - timedelta(days=1))
    result = app.test_cli_runner().invoke(
        args=["retention", "purge", "--older-than", "30d", "--yes"]
    )
    assert result.exit_code == 0, result.output
    assert "Deleted 1 decision" in result.output
    assert "Deleted 1 notification" in result.output
    with state_of(app).database.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Notification)) == 1
