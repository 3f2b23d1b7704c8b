"""Outcomes: the attribution rule on its own, the statistics, and the report from the database."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from statistics import NormalDist
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from flask_retention import Retention
from flask_retention.catalogue.models import Decision, Notification
from flask_retention.catalogue.schema import upgrade
from flask_retention.insights.outcomes import (
    MIN_CLOSED_PER_VARIANT,
    DecisionOutcome,
    DecisionRecord,
    OutcomeCounts,
    OutcomeEvent,
    decide_outcomes,
    load_decisions,
    load_events,
    outcome_report,
    two_proportion_test,
    wilson_interval,
)
from flask_retention.testing import AppStoreSigner

from .support import state_of

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)
LATER = T0 + timedelta(days=30)  # every window has closed


def d(
    id: int, at: timedelta = timedelta(0), otid: str = "A", env: str = "Sandbox"
) -> DecisionRecord:
    return DecisionRecord(id, otid, T0 + at, env)


def e(
    kind: str,
    subtype: str | None,
    at: timedelta,
    otid: str = "A",
    env: str = "Sandbox",
) -> OutcomeEvent:
    return OutcomeEvent(kind, subtype, otid, T0 + at, env)


def outcome_of(
    decisions: list[DecisionRecord], events: list[OutcomeEvent], now: datetime = LATER
) -> dict[int, str]:
    results = decide_outcomes(decisions, events, window=WEEK, now=now)
    return {k: v.outcome for k, v in results.items()}


HOUR = timedelta(hours=1)
DISABLED = ("DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_DISABLED")
ENABLED = ("DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_ENABLED")


# -- the rule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "subtype", "expected"),
    [
        ("DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_DISABLED", "cancelled"),
        ("EXPIRED", "VOLUNTARY", "cancelled"),
        ("OFFER_REDEEMED", "UPGRADE", "redeemed_offer"),
        ("OFFER_REDEEMED", None, "redeemed_offer"),
        ("DID_CHANGE_RENEWAL_PREF", "UPGRADE", "switched_plan"),
        ("DID_CHANGE_RENEWAL_PREF", "DOWNGRADE", "switched_plan"),
        ("DID_CHANGE_RENEWAL_PREF", None, "kept"),  # a pending downgrade undone
        ("DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_ENABLED", "kept"),
        ("EXPIRED", "BILLING_RETRY", "kept"),
    ],
)
def test_each_event_gives_its_outcome(kind: str, subtype: str | None, expected: str) -> None:
    assert outcome_of([d(1)], [e(kind, subtype, HOUR)]) == {1: expected}


def test_an_event_goes_to_the_latest_decision_before_it() -> None:
    decisions = [d(1), d(2, timedelta(days=2)), d(3, timedelta(days=5))]
    assert outcome_of(decisions, [e(*DISABLED, timedelta(days=3))]) == {
        1: "kept",  # superseded by decision 2 before anything happened
        2: "cancelled",
        3: "kept",
    }


def test_an_event_after_the_window_or_before_any_decision_counts_for_nothing() -> None:
    events = [e(*DISABLED, WEEK), e(*DISABLED, -HOUR)]
    assert outcome_of([d(1)], events) == {1: "kept"}


def test_the_window_is_half_open() -> None:
    just_inside = e(*DISABLED, WEEK - timedelta(milliseconds=1))
    assert outcome_of([d(1)], [just_inside]) == {1: "cancelled"}


def test_an_event_at_the_decisions_time_counts() -> None:
    assert outcome_of([d(1)], [e(*DISABLED, timedelta(0))]) == {1: "cancelled"}


def test_events_of_other_subscribers_and_environments_do_not_count() -> None:
    events = [e(*DISABLED, HOUR, otid="B"), e(*DISABLED, HOUR, env="Production")]
    assert outcome_of([d(1)], events) == {1: "kept"}


def test_pending_while_the_window_is_open_then_kept() -> None:
    decisions = [d(1)]
    assert decide_outcomes(decisions, [], window=WEEK, now=T0 + timedelta(days=6)) == {
        1: DecisionOutcome("pending", closed=False)
    }
    assert decide_outcomes(decisions, [], window=WEEK, now=T0 + WEEK) == {
        1: DecisionOutcome("kept", closed=True)
    }


def test_an_event_decides_an_open_decision_which_stays_open() -> None:
    now = T0 + timedelta(days=1)
    assert decide_outcomes([d(1)], [e(*DISABLED, HOUR)], window=WEEK, now=now) == {
        1: DecisionOutcome("cancelled", closed=False)
    }


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([DISABLED, ("OFFER_REDEEMED", None)], "redeemed_offer"),
        ([("DID_CHANGE_RENEWAL_PREF", "UPGRADE"), ("OFFER_REDEEMED", None)], "redeemed_offer"),
        ([DISABLED, ("DID_CHANGE_RENEWAL_PREF", "DOWNGRADE")], "switched_plan"),
        ([DISABLED, ENABLED], "kept"),  # the cancellation was undone
        ([ENABLED, DISABLED], "cancelled"),
        ([DISABLED, ENABLED, DISABLED], "cancelled"),
        ([("EXPIRED", "VOLUNTARY"), ENABLED], "cancelled"),
    ],
)
def test_precedence(events: list[tuple[str, str | None]], expected: str) -> None:
    timed = [e(kind, subtype, HOUR * (i + 1)) for i, (kind, subtype) in enumerate(events)]
    assert outcome_of([d(1)], list(reversed(timed))) == {1: expected}


def test_save_rate_counts_closed_decisions_only() -> None:
    counts = OutcomeCounts()
    for outcome, closed in [
        ("cancelled", True),
        ("kept", True),
        ("redeemed_offer", True),
        ("switched_plan", True),
        ("cancelled", False),
        ("pending", False),
    ]:
        counts.add(DecisionOutcome(outcome, closed))  # type: ignore[arg-type]
    assert counts.as_dict() == {
        "decided": 6,
        "closed": 4,
        "redeemed_offer": 1,
        "switched_plan": 1,
        "cancelled": 2,
        "kept": 1,
        "pending": 1,
        "save_rate": 0.75,
    }
    assert OutcomeCounts().save_rate is None


# -- statistics --------------------------------------------------------------------------


def test_wilson_interval_matches_published_values() -> None:
    low, high = wilson_interval(10, 100) or (0, 0)
    assert (round(low, 4), round(high, 4)) == (0.0552, 0.1744)
    low, high = wilson_interval(0, 20) or (1, 1)
    assert low == 0.0
    assert round(high, 4) == 0.1611
    assert wilson_interval(0, 0) is None


def test_two_proportion_test_matches_the_normal_distribution() -> None:
    difference, p_value = two_proportion_test(30, 100, 50, 100) or (0, 0)
    pooled = 80 / 200
    z = (0.3 - 0.5) / math.sqrt(pooled * (1 - pooled) * (2 / 100))
    assert difference == pytest.approx(-0.2)
    assert p_value == pytest.approx(2 * (1 - NormalDist().cdf(abs(z))), rel=1e-9)
    assert p_value == pytest.approx(0.00389, abs=1e-5)
    assert two_proportion_test(0, 40, 0, 40) == (0.0, 1.0)
    assert two_proportion_test(1, 0, 1, 10) is None


# -- the report, from the database (SQLite and PostgreSQL) ----------------------------------

BUNDLE = "com.example.app"
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def signer() -> AppStoreSigner:
    return AppStoreSigner(valid_from=datetime.now(UTC) - timedelta(days=60))


@pytest.fixture
def config(signer: AppStoreSigner, database_url: str) -> dict[str, object]:
    return {
        "RETENTION_ROOT_CERTIFICATES": [signer.root_pem],
        "RETENTION_BUNDLE_ID": BUNDLE,
        "RETENTION_NOTIFICATIONS_ENDPOINT": "/retention/notifications",
        "RETENTION_DATABASE_URI": database_url,
    }


@pytest.fixture
def retention(app: Flask) -> Iterator[Retention]:
    retention = Retention(app)
    upgrade(app.extensions["retention"].get_engine(app))
    yield retention
    retention.close()


def insert_decision(app: Flask, otid: str, at: datetime, **fields: Any) -> int:
    values: dict[str, Any] = {
        "request_identifier": uuid.uuid4(),
        "original_transaction_id": otid,
        "environment": "Sandbox",
        "status": 200,
        "kind": "message",
        "created_at": at,
    }
    values.update(fields)
    with state_of(app).database.session() as session:
        row = Decision(**values)
        session.add(row)
        session.commit()
        return row.id


def notify(
    client: FlaskClient, signer: AppStoreSigner, otid: str, at: datetime, kind: str, sub: str | None
) -> None:
    token = signer.sign_notification(
        kind,
        subtype=sub,
        bundle_id=BUNDLE,
        signed_date=at,
        transaction=signer.transaction_payload(original_transaction_id=otid, bundle_id=BUNDLE),
        renewal_info=signer.renewal_payload(original_transaction_id=otid),
    )
    response = client.post("/retention/notifications", json={"signedPayload": token})
    assert response.status_code == 200, response.get_data(as_text=True)


def test_signed_notifications_become_the_outcomes_of_the_right_decisions(
    app: Flask, client: FlaskClient, signer: AppStoreSigner
) -> None:
    start = NOW - timedelta(days=20)
    winback, offer = uuid.uuid4(), uuid.uuid4()
    first_view = insert_decision(app, "1", start, message_uuid=winback)
    second_view = insert_decision(app, "1", start + timedelta(days=1), message_uuid=winback)
    insert_decision(
        app, "2", start, kind="promotional_offer", message_uuid=offer, selector="offers"
    )
    insert_decision(app, "3", start, kind="alternate_product")
    insert_decision(app, "4", start, message_uuid=winback)
    insert_decision(app, "5", start, message_uuid=winback)
    insert_decision(app, "6", start, message_uuid=winback)
    insert_decision(app, "7", NOW - timedelta(days=1), message_uuid=winback)
    insert_decision(app, "8", start, status=401, kind="none")  # refused: not shown to anyone
    notify(client, signer, "1", start + timedelta(days=2), *DISABLED)
    notify(client, signer, "2", start + HOUR, *DISABLED)
    notify(client, signer, "2", start + 2 * HOUR, "OFFER_REDEEMED", "UPGRADE")
    notify(client, signer, "3", start + HOUR, "DID_CHANGE_RENEWAL_PREF", "DOWNGRADE")
    notify(client, signer, "4", start + timedelta(days=6), "EXPIRED", "VOLUNTARY")
    notify(client, signer, "5", start + timedelta(days=8), *DISABLED)  # after the window
    notify(client, signer, "6", start + timedelta(days=8), *DISABLED)  # after the window
    notify(client, signer, "9", start + HOUR, *DISABLED)  # no decision for this subscriber

    engine = app.extensions["retention"].get_engine(app)
    with engine.connect() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(Notification)) == 8
    report = outcome_report(engine, NOW - timedelta(days=30), now=NOW)
    assert report.as_dict()["outcomes"] == {
        "decided": 8,
        "closed": 7,
        "redeemed_offer": 1,
        "switched_plan": 1,
        "cancelled": 2,  # the second view and the voluntary expiry
        "kept": 3,
        "pending": 1,
        "save_rate": round(5 / 7, 4),
        "events": 8,
    }
    by = report.as_dict()["outcomes_by"]
    assert by["kind"]["promotional_offer"]["redeemed_offer"] == 1
    assert by["kind"]["alternate_product"]["switched_plan"] == 1
    assert by["message"][str(winback)] == {
        "decided": 6,
        "closed": 5,
        "redeemed_offer": 0,
        "switched_plan": 0,
        "cancelled": 2,
        "kept": 3,
        "pending": 1,
        "save_rate": 0.6,
    }
    assert by["selector"]["offers"]["decided"] == 1
    window = timedelta(seconds=state_of(app).settings.outcome_window)
    with engine.connect() as connection:
        rows = load_decisions(connection, start, NOW, None)
        events = load_events(connection, start, NOW, None)
    results = decide_outcomes([r.record for r in rows], events, window=window, now=NOW)
    assert results[first_view] == DecisionOutcome("kept", closed=True)
    assert results[second_view] == DecisionOutcome("cancelled", closed=True)


def add_variant(
    app: Flask, experiment: str, variant: str, decided: int, cancelled: int, start: datetime
) -> None:
    rows, events = [], []
    for i in range(decided):
        otid = f"{experiment}-{variant}-{i}"
        rows.append(
            Decision(
                request_identifier=uuid.uuid4(),
                original_transaction_id=otid,
                environment="Sandbox",
                status=200,
                kind="message",
                experiment=experiment,
                variant=variant,
                created_at=start,
            )
        )
        if i < cancelled:
            events.append(
                Notification(
                    notification_uuid=uuid.uuid4(),
                    notification_type="DID_CHANGE_RENEWAL_STATUS",
                    subtype="AUTO_RENEW_DISABLED",
                    original_transaction_id=otid,
                    environment="Sandbox",
                    signed_date=start + HOUR,
                )
            )
    with state_of(app).database.session() as session:
        session.add_all(rows + events)
        session.commit()


def test_the_report_compares_each_variant_with_the_first(app: Flask, retention: Retention) -> None:
    start = NOW - timedelta(days=10)
    add_variant(app, "winback", "control", 100, 50, start)
    add_variant(app, "winback", "offer", 100, 30, start)
    add_variant(app, "winback", "copy", 100, 45, start)
    add_variant(app, "winback", "new", MIN_CLOSED_PER_VARIANT - 1, 0, start)
    report = outcome_report(
        app.extensions["retention"].get_engine(app),
        NOW - timedelta(days=30),
        now=NOW,
        experiment_order={"winback": ["control", "offer", "copy", "new"]},
    ).as_dict()
    variants = report["experiments"]["winback"]
    assert list(variants) == ["control", "offer", "copy", "new"]
    control, offer, copy, new = (variants[v] for v in ("control", "offer", "copy", "new"))
    assert control["verdict"] == "baseline"
    assert control["cancel_rate"] == 0.5
    assert control["cancel_rate_ci95"] == [round(x, 4) for x in wilson_interval(50, 100) or ()]
    assert (offer["cancelled"], offer["kept"], offer["save_rate"]) == (30, 70, 0.7)
    assert offer["difference"] == -0.2
    assert offer["p_value"] == pytest.approx(0.00389, abs=1e-5)
    assert offer["verdict"] == "cancels less than control (p = 0.00389)"
    assert copy["verdict"].startswith("no clear difference from control")
    assert new["p_value"] is None
    assert new["verdict"].startswith("too few decisions to tell")
    assert report["outcomes"]["decided"] == 329


def test_without_a_declared_order_variants_are_alphabetical(
    app: Flask, retention: Retention
) -> None:
    start = NOW - timedelta(days=10)
    add_variant(app, "copy", "b", 3, 1, start)
    add_variant(app, "copy", "a", 3, 2, start)
    report = outcome_report(
        app.extensions["retention"].get_engine(app), NOW - timedelta(days=30), now=NOW
    )
    assert list(report.experiments["copy"]) == ["a", "b"]
    assert report.experiments["copy"]["a"]["baseline"] is True


def test_the_environment_filter(app: Flask, retention: Retention) -> None:
    insert_decision(app, "1", NOW - timedelta(days=10))
    insert_decision(app, "2", NOW - timedelta(days=10), environment="Production")
    engine = app.extensions["retention"].get_engine(app)
    since = NOW - timedelta(days=30)
    assert outcome_report(engine, since, now=NOW).total.decided == 2
    report = outcome_report(engine, since, now=NOW, environment="Production")
    assert report.total.decided == 1
