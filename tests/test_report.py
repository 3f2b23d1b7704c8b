"""The report: figures from a known set of rows (SQLite and PostgreSQL), renderers, CLI."""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_retention import Retention
from flask_retention.catalogue.models import metadata
from flask_retention.insights.report import (
    NEAR_LIMIT_MS,
    build_report,
    nearest_rank,
    parse_duration,
    parse_since,
    percentile,
    render_html,
    render_json,
    render_text,
)

from .catalogue_support import migrated_engine

DECISIONS = metadata.tables["retention_decisions"]
MESSAGES = metadata.tables["retention_messages"]
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SINCE = datetime(2026, 11, 15, tzinfo=UTC)
M1 = uuid.UUID("11111111-1111-4111-8111-111111111111")
M2 = uuid.UUID("22222222-2222-4222-8222-222222222222")
DAY1 = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
DAY2 = datetime(2026, 11, 21, 23, 59, tzinfo=UTC)
MONTHLY, YEARLY = "com.example.monthly", "com.example.yearly"


def row(at: datetime, latency: float, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "request_identifier": uuid.uuid4(),
        "claimed_request_identifier": None,
        "original_transaction_id": "1000",
        "product_id": MONTHLY,
        "locale": "en-US",
        "environment": "Sandbox",
        "selector": "choose",
        "kind": "none",
        "message_uuid": None,
        "fallback_reason": None,
        "status": 200,
        "error": None,
        "latency_ms": latency,
        "created_at": at,
        "replay": False,
    }
    base.update(fields)
    return base


def known_rows() -> list[dict[str, Any]]:
    """Eleven decisions in the window (and one before it)."""
    rid = uuid.uuid4()
    return [
        row(DAY1, 10.0, kind="message", message_uuid=M1),
        row(DAY1, 20.0, kind="message", message_uuid=M1),
        row(DAY1, 30.0, kind="message", message_uuid=M1),
        row(DAY1, 40.0, kind="alternate_product", message_uuid=M1, product_id=YEARLY,
            locale="fr-FR"),
        row(DAY1, 5.0, fallback_reason="no_choice"),
        row(DAY1, 6.0, fallback_reason="no_choice"),
        row(DAY2, 650.0, kind="message", message_uuid=M2, fallback_reason="timeout"),
        row(DAY2, 520.0, kind="promotional_offer", message_uuid=M2, environment="Production"),
        row(DAY2, 1.0, request_identifier=None, status=401, error="bad_signature", kind=None,
            product_id=None, locale=None, environment=None, selector=None,
            original_transaction_id=None),
        row(DAY2, 2.0, request_identifier=None, claimed_request_identifier=str(rid),
            status=403, error="replayed", kind=None, selector=None),
        row(DAY2, 8.0, request_identifier=None, claimed_request_identifier=str(rid),
            fallback_reason="no_choice", replay=True),
        row(SINCE - timedelta(days=5), 900.0, kind="message", message_uuid=M1),
    ]  # fmt: skip


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = migrated_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            sa.insert(MESSAGES),
            [{"name": "winback", "version": 1, "uuid": M1, "header": "Stay", "body": "Body",
              "created_at": NOW}],
        )  # fmt: skip
        connection.execute(sa.insert(DECISIONS), known_rows())
    yield engine
    engine.dispose()


def outcome_columns(closed: int, pending: int) -> dict[str, Any]:
    """Outcome counts when every closed decision was kept."""
    return {
        "closed": closed,
        "redeemed_offer": 0,
        "switched_plan": 0,
        "cancelled": 0,
        "kept": closed,
        "pending": pending,
        "save_rate": 1.0 if closed else None,
    }


EXPECTED: dict[str, Any] = {
    "window": {
        "since": "2026-11-15T00:00:00+00:00",
        "until": "2026-11-22T12:00:00+00:00",
        "environment": None,
    },
    "totals": {
        "requests": 11,
        "answered": 9,
        "fallbacks": 4,
        "rejected": 2,
        "replays": 1,
        "fallback_share": 0.4444,
    },
    "by_day": {
        "2026-11-20": {"requests": 6, "answered": 6, "fallbacks": 2, "rejected": 0},
        "2026-11-21": {"requests": 5, "answered": 3, "fallbacks": 2, "rejected": 2},
    },
    "by_product": [
        {"product_id": MONTHLY, "locale": "en-US",
         "requests": 9, "answered": 8, "fallbacks": 4, "rejected": 1},
        {"product_id": None, "locale": None,
         "requests": 1, "answered": 0, "fallbacks": 0, "rejected": 1},
        {"product_id": YEARLY, "locale": "fr-FR",
         "requests": 1, "answered": 1, "fallbacks": 0, "rejected": 0},
    ],
    "by_locale": [
        {"locale": "en-US", "requests": 9, "answered": 8, "fallbacks": 4, "rejected": 1,
         "fallback_share": 0.5, "decided": 7, **outcome_columns(closed=5, pending=2)},
        {"locale": None, "requests": 1, "answered": 0, "fallbacks": 0, "rejected": 1,
         "fallback_share": None, "decided": 0, **outcome_columns(closed=0, pending=0)},
        {"locale": "fr-FR", "requests": 1, "answered": 1, "fallbacks": 0, "rejected": 0,
         "fallback_share": 0.0, "decided": 1, **outcome_columns(closed=1, pending=0)},
    ],
    "by_message": [
        {"message": str(M1), "name": "winback", "version": 1, "kind": "message",
         "requests": 3, "fallbacks": 0, **outcome_columns(closed=3, pending=0)},
        {"message": str(M1), "name": "winback", "version": 1, "kind": "alternate_product",
         "requests": 1, "fallbacks": 0, **outcome_columns(closed=1, pending=0)},
        {"message": str(M2), "name": None, "version": None, "kind": "message",
         "requests": 1, "fallbacks": 1, **outcome_columns(closed=0, pending=1)},
        {"message": str(M2), "name": None, "version": None, "kind": "promotional_offer",
         "requests": 1, "fallbacks": 0, **outcome_columns(closed=0, pending=1)},
    ],
    "by_kind": {"message": 4, "none": 3, "alternate_product": 1, "promotional_offer": 1},
    "fallbacks": {"no_choice": 3, "timeout": 1},
    "rejections": {"bad_signature": 1, "replayed": 1},
    "latency_ms": {
        "p50": 10.0,
        "p95": 650.0,
        "p99": 650.0,
        "max": 650.0,
        "near_limit": 2,
        "near_limit_ms": 500.0,
        "count": 11,
        "histogram": [
            {"from": 0.0, "to": 5.0, "count": 2},
            {"from": 5.0, "to": 10.0, "count": 3},
            {"from": 10.0, "to": 25.0, "count": 2},
            {"from": 25.0, "to": 50.0, "count": 2},
            {"from": 50.0, "to": 100.0, "count": 0},
            {"from": 100.0, "to": 250.0, "count": 0},
            {"from": 250.0, "to": 500.0, "count": 0},
            {"from": 500.0, "to": 700.0, "count": 2},
            {"from": 700.0, "to": None, "count": 0},
        ],
    },
    "dropped": {"total": 0, "queue_full": 0, "unstorable": 0},
    "subscriber_ids": {
        "decisions": {"pseudonymised": 0, "plain": 10},  # the 11th was refused unverified
        "notifications": {"pseudonymised": 0, "plain": 0},
    },
    # No notifications: every closed decision is kept. Subscriber 1000's decisions
    # supersede each other (closed); the last one in each environment is still open.
    "outcomes": {"decided": 8, **outcome_columns(closed=6, pending=2), "events": 0},
    "outcomes_by": {
        "kind": {
            "alternate_product": {"decided": 1, **outcome_columns(closed=1, pending=0)},
            "message": {"decided": 4, **outcome_columns(closed=3, pending=1)},
            "none": {"decided": 2, **outcome_columns(closed=2, pending=0)},
            "promotional_offer": {"decided": 1, **outcome_columns(closed=0, pending=1)},
        },
        "selector": {"choose": {"decided": 8, **outcome_columns(closed=6, pending=2)}},
    },
    "experiments": {},
}  # fmt: skip


def test_report_figures_match_the_known_rows(engine: sa.Engine) -> None:
    report = build_report(engine, SINCE, now=NOW)
    assert report == EXPECTED
    assert list(report) == list(EXPECTED)
    # The fixed keys of DESIGN.md.
    assert {"totals", "by_day", "by_message", "by_kind", "fallbacks", "latency_ms"} <= set(report)
    assert {"requests", "answered", "fallbacks", "rejected", "replays"} <= set(report["totals"])
    assert {"p50", "p95", "p99", "max", "near_limit"} <= set(report["latency_ms"])
    # The percentiles are those of the rows' latencies by nearest rank.
    latencies = [r["latency_ms"] for r in known_rows()[:-1]]
    for p in (50, 95, 99):
        assert report["latency_ms"][f"p{p}"] == percentile(latencies, p)
    assert report["latency_ms"]["near_limit"] == sum(x >= NEAR_LIMIT_MS for x in latencies)
    assert json.loads(render_json(report)) == report


def test_report_for_one_environment(engine: sa.Engine) -> None:
    report = build_report(engine, SINCE, "Sandbox", now=NOW)
    assert report["window"]["environment"] == "Sandbox"
    assert report["totals"] == {
        "requests": 9,
        "answered": 8,
        "fallbacks": 4,
        "rejected": 1,
        "replays": 1,
        "fallback_share": 0.5,
    }
    assert "promotional_offer" not in report["by_kind"]
    assert report["rejections"] == {"replayed": 1}
    assert report["latency_ms"]["p99"] == 650.0
    assert report["latency_ms"]["near_limit"] == 1
    production = build_report(engine, SINCE, "Production", now=NOW)
    assert production["totals"]["requests"] == 1
    assert production["latency_ms"]["p50"] == 520.0


def test_the_window_bounds_the_rows(engine: sa.Engine) -> None:
    report = build_report(engine, DAY2 - timedelta(hours=1), now=NOW)
    assert report["totals"]["requests"] == 5
    assert list(report["by_day"]) == ["2026-11-21"]
    before = build_report(engine, SINCE - timedelta(days=30), now=DAY1 + timedelta(minutes=1))
    assert before["totals"]["requests"] == 7  # the old row and day 1
    assert before["latency_ms"]["max"] == 900.0


def test_an_empty_window(engine: sa.Engine) -> None:
    report = build_report(engine, NOW - timedelta(hours=1), now=NOW)
    assert report["totals"] == {
        "requests": 0,
        "answered": 0,
        "fallbacks": 0,
        "rejected": 0,
        "replays": 0,
        "fallback_share": None,
    }
    assert report["by_day"] == {}
    assert report["by_message"] == []
    assert report["fallbacks"] == {}
    lat = report["latency_ms"]
    assert (lat["p50"], lat["p95"], lat["p99"], lat["max"], lat["near_limit"]) == (
        None,
        None,
        None,
        None,
        0,
    )
    assert "No decisions in this window." in render_text(report)
    assert "<svg" in render_html(report)


def test_database_percentiles_are_nearest_rank_on_many_rows(database_url: str) -> None:
    engine = migrated_engine(database_url)
    generator = random.Random(7)
    latencies = [round(generator.lognormvariate(3, 1), 3) for _ in range(257)]
    with engine.begin() as connection:
        connection.execute(
            sa.insert(DECISIONS),
            [row(DAY1 + timedelta(seconds=i), x) for i, x in enumerate(latencies)],
        )
    lat = build_report(engine, SINCE, now=NOW)["latency_ms"]
    engine.dispose()
    ordered = sorted(latencies)
    assert lat["p50"] == ordered[128]  # rank ceil(0.50 * 257) = 129
    assert lat["p95"] == ordered[244]  # rank ceil(0.95 * 257) = 245
    assert lat["p99"] == ordered[254]  # rank ceil(0.99 * 257) = 255
    assert lat["max"] == ordered[-1]
    assert lat["count"] == 257
    assert sum(b["count"] for b in lat["histogram"]) == 257


# -- percentiles and parsing ------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "n", "rank"),
    [(50, 11, 6), (95, 11, 11), (99, 11, 11), (50, 100, 50), (95, 100, 95), (99, 100, 99),
     (95, 20, 19), (50, 1, 1), (99, 1, 1), (100, 7, 7), (1, 1000, 10), (50, 2, 1)],
)  # fmt: skip
def test_nearest_rank(p: int, n: int, rank: int) -> None:
    assert nearest_rank(p, n) == rank


def test_percentile_is_one_of_the_values() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.0
    assert percentile([3.0, 1.0, 2.0, 4.0], 51) == 3.0
    with pytest.raises(ValueError, match="p must be in"):
        nearest_rank(0, 5)
    with pytest.raises(ValueError, match="n >= 1"):
        nearest_rank(50, 0)


def test_since_accepts_durations_and_dates() -> None:
    assert parse_since("7d", NOW) == NOW - timedelta(days=7)
    assert parse_since("24h", NOW) == NOW - timedelta(hours=24)
    assert parse_since(" 30m ", NOW) == NOW - timedelta(minutes=30)
    assert parse_since("2026-11-01", NOW) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_duration("90d") == timedelta(days=90)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("7x", "neither a duration (like 7d or 24h) nor a date (like 2026-11-01)"),
        ("", "neither a duration"),
        ("-7d", "neither a duration"),
        ("7.5d", "neither a duration"),
        ("2026-13-01", "neither a duration"),
        ("0d", "is zero"),
        ("2026-12-01", "is in the future"),
    ],
)
def test_since_errors_say_what_is_accepted(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_since(text, NOW)


# -- renderers ----------------------------------------------------------------------------


def test_text_report_has_aligned_tables(engine: sa.Engine) -> None:
    text = render_text(build_report(engine, SINCE, now=NOW))
    assert text.startswith("Decisions from 2026-11-15 00:00 to 2026-11-22 12:00 UTC")
    for title in (
        "Totals",
        "Per day (UTC)",
        "Per product and locale",
        "Per locale",
        "Per message",
        "Answers by kind",
        "Fallback reasons",
        "Rejections",
        "Latency (ms, nearest rank",
    ):
        assert f"\n{title}" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["day", "requests"])
    day_rows = lines[header : header + 4]
    assert day_rows[2].split() == ["2026-11-20", "6", "6", "2", "0"]
    assert day_rows[3].split() == ["2026-11-21", "5", "3", "2", "2"]
    assert len({len(line) for line in day_rows}) == 1  # aligned: right-justified numbers
    assert "winback v1" in text
    assert "fallbacks (44.4 % of answered)" in text


def test_html_page_is_self_contained(engine: sa.Engine) -> None:
    page = render_html(build_report(engine, SINCE, now=NOW))
    assert page.startswith("<!DOCTYPE html>")
    assert "http" not in page.lower()
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    assert page.count("<svg") == 3  # requests per day, fallback reasons, latency
    assert "no_choice" in page
    assert "winback" in page
    assert "<style>" in page


def test_html_escapes_what_it_shows(database_url: str) -> None:
    engine = migrated_engine(database_url)
    with engine.begin() as connection:
        connection.execute(sa.insert(DECISIONS), [row(DAY1, 3.0, product_id="<b>&evil")])
    page = render_html(build_report(engine, SINCE, now=NOW))
    engine.dispose()
    assert "<b>&evil" not in page
    assert "&lt;b&gt;&amp;evil" in page


def test_replays_and_replayed_rejections_cannot_be_confused(engine: sa.Engine) -> None:
    report = build_report(engine, SINCE, now=NOW)
    text = render_text(report)
    assert re.search(r"^  answered again \(replay across processes\) +1$", text, re.MULTILINE)
    assert re.search(r"^  replayed: refused, already answered \(403\) +1$", text, re.MULTILINE)
    assert not re.search(r"^  replays? ", text, re.MULTILINE)  # never a bare "replays" row
    page = render_html(report)
    assert "<b>1</b>answered again (replay across processes)</div>" in page
    assert "<td>replayed: refused, already answered (403)</td>" in page
    assert ">replays<" not in page
    # The JSON keeps DESIGN.md's keys.
    data = json.loads(render_json(report))
    assert data["totals"]["replays"] == 1
    assert data["rejections"]["replayed"] == 1


def test_html_day_bars_count_in_the_singular_and_plural(database_url: str) -> None:
    engine = migrated_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            sa.insert(DECISIONS),
            [
                row(DAY1, 3.0, fallback_reason="no_choice"),
                row(DAY2, 3.0, fallback_reason="no_choice"),
                row(DAY2, 4.0, fallback_reason="timeout"),
            ],
        )
    page = render_html(build_report(engine, SINCE, now=NOW))
    engine.dispose()
    assert "<title>2026-11-20: 1 fallback</title>" in page
    assert "<title>2026-11-21: 2 fallbacks</title>" in page
    assert "<title>2026-11-21: 0 answered by the selector</title>" in page


def test_the_outcome_notification_count_is_singular_for_one(engine: sa.Engine) -> None:
    report = build_report(engine, SINCE, now=NOW)
    report["outcomes"]["events"] = 1
    assert "(save rate over closed decisions; 1 outcome notification)" in render_text(report)
    report["outcomes"]["events"] = 2
    assert "(save rate over closed decisions; 2 outcome notifications)" in render_text(report)


# -- the command ----------------------------------------------------------------------------


@pytest.fixture
def cli_app(app: Flask, engine: sa.Engine, database_url: str) -> Iterator[Flask]:
    app.config["RETENTION_DATABASE_URI"] = database_url
    retention = Retention(app)
    yield app
    retention.close(app)


def test_report_command_prints_tables_json_and_html(cli_app: Flask, tmp_path: Path) -> None:
    runner = cli_app.test_cli_runner()
    # The known rows are in November 2026; a date reaches them whatever today is.
    result = runner.invoke(args=["retention", "report", "--since", "2026-11-15"])
    assert result.exit_code == 0, result.output
    assert "Per day (UTC)" in result.output
    assert "no_choice" in result.output

    result = runner.invoke(args=["retention", "report", "--since", "2026-11-15", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["totals"] == EXPECTED["totals"]
    assert report["by_day"] == EXPECTED["by_day"]
    assert report["fallbacks"] == EXPECTED["fallbacks"]
    assert report["latency_ms"] == EXPECTED["latency_ms"]

    result = runner.invoke(
        args=["retention", "report", "--since", "2026-11-15", "--environment", "Production",
              "--json"]
    )  # fmt: skip
    assert json.loads(result.output)["totals"]["requests"] == 1

    page = tmp_path / "report.html"
    result = runner.invoke(
        args=["retention", "report", "--since", "2026-11-15", "--html", str(page)]
    )
    assert result.exit_code == 0, result.output
    assert f"Wrote the report to {page}." in result.output
    assert "http" not in page.read_text(encoding="utf-8").lower()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--since", "7x"], "neither a duration (like 7d or 24h) nor a date"),
        (["--since", "2999-01-01"], "is in the future"),
        (["--environment", "Staging"], "'Staging' is not one of 'Sandbox', 'Production'"),
    ],
)
def test_report_command_refuses_bad_options(cli_app: Flask, args: list[str], says: str) -> None:
    result = cli_app.test_cli_runner().invoke(args=["retention", "report", *args])
    assert result.exit_code == 2
    assert says in result.output
    assert "Traceback" not in result.output


def test_report_command_without_tables_says_to_run_init_db(app: Flask) -> None:
    app.config["RETENTION_DATABASE_URI"] = f"sqlite:///{app.instance_path}/empty.db"
    retention = Retention(app)
    try:
        result = app.test_cli_runner().invoke(args=["retention", "report"])
    finally:
        retention.close(app)
    assert result.exit_code == 1
    assert "flask retention init-db" in result.output
    assert "Traceback" not in result.output


def test_purge_counts_in_the_singular_and_plural(app: Flask, database_url: str) -> None:
    engine = migrated_engine(database_url)
    old = datetime.now(UTC) - timedelta(days=40)
    with engine.begin() as connection:
        connection.execute(sa.insert(DECISIONS), [row(old, 1.0)])
    app.config["RETENTION_DATABASE_URI"] = database_url
    retention = Retention(app)
    runner = app.test_cli_runner()
    try:
        asked = runner.invoke(args=["retention", "purge", "--older-than", "30d"], input="n\n")
        assert "Delete 1 decision recorded before" in asked.output
        result = runner.invoke(args=["retention", "purge", "--older-than", "30d", "--yes"])
        assert result.exit_code == 0, result.output
        assert "Deleted 1 decision recorded before" in result.output
        with engine.begin() as connection:
            connection.execute(sa.insert(DECISIONS), [row(old, 1.0), row(old, 2.0)])
        result = runner.invoke(args=["retention", "purge", "--older-than", "30d", "--yes"])
        assert "Deleted 2 decisions recorded before" in result.output
    finally:
        retention.close(app)
        engine.dispose()
