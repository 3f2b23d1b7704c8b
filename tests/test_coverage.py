"""Coverage: the defaults per product and locale against Apple's recorded states, the
locales seen in requests and how they were answered (``flask retention coverage``), and
the report by locale (``report --json`` ``by_locale``, ``report --html``).

Every test runs on SQLite and PostgreSQL. Decisions are inserted as rows, with
``answered_locale`` and ``locale_reason`` set as the request path records them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_retention import Retention
from flask_retention.catalogue.models import Decision, Notification
from flask_retention.catalogue.schema import upgrade
from flask_retention.catalogue.store import Catalogue
from flask_retention.core.database import create_engine
from flask_retention.insights.coverage import build_coverage, render_coverage_text
from flask_retention.insights.report import build_report, render_html, render_text

from .catalogue_support import full_png

MONTHLY, YEARLY = "com.example.monthly", "com.example.yearly"
NOW = datetime.now(UTC).replace(microsecond=0)
RECENT = NOW - timedelta(days=1)

THREE_LANGUAGES = f"""
[languages]
base_locale = "en-US"
base_fallback = false

[[images]]
name = "hero"
file = "hero.png"

[[images]]
name = "hero-de"
file = "hero-de.png"

[[messages]]
name = "winback"
header = "Before you go"
body = "Your plan includes offline mode."
image = "hero"
image_alt_text = "A family reading"

[messages.translations.fr-FR]
header = "Avant de partir"
body = "Votre abonnement inclut le mode hors ligne."
image_alt_text = "Une famille qui lit"

[messages.translations.fr-CA]
header = "Avant de partir"
body = "Votre forfait inclut le mode hors ligne."
image_alt_text = "Une famille qui lit"

[messages.translations.de-DE]
header = "Bevor Sie gehen"
body = "Ihr Abo enthält den Offline-Modus."
image = "hero-de"
image_alt_text = "Eine lesende Familie"

[[defaults]]
product_id = "{MONTHLY}"
locales = ["en-US", "fr-FR", "fr-CA", "it-IT"]
message = "winback"

[[defaults]]
product_id = "{YEARLY}"
locales = "all"
message = "winback"
"""


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def catalogue(engine: sa.Engine, tmp_path: Path) -> Catalogue:
    """Three languages (en-US base, French twice, German), reviewed in the Sandbox: the
    base text and fr-FR approved, fr-CA in review, de-DE approved but its own image not.
    Apple holds the monthly en-US, fr-FR and fr-CA defaults and the yearly en-US one."""
    (tmp_path / "hero.png").write_bytes(full_png())
    (tmp_path / "hero-de.png").write_bytes(full_png(color=(255, 204, 0)))
    path = tmp_path / "catalogue.toml"
    path.write_text(THREE_LANGUAGES, encoding="utf-8")
    catalogue = Catalogue(engine)
    catalogue.import_file(path)
    texts = {m.locale: m for m in catalogue.list_messages()}
    images = {i.name: i for i in catalogue.list_images()}
    catalogue.record_apple_states(
        "image", "Sandbox", {images["hero"].uuid: "APPROVED", images["hero-de"].uuid: "PENDING"}
    )
    catalogue.record_apple_states(
        "message",
        "Sandbox",
        {
            texts[""].uuid: "APPROVED",
            texts["fr-FR"].uuid: "APPROVED",
            texts["fr-CA"].uuid: "PENDING",
            texts["de-DE"].uuid: "APPROVED",
        },
    )
    for product, locale, text in [
        (MONTHLY, "en-US", ""),
        (MONTHLY, "fr-FR", "fr-FR"),
        (MONTHLY, "fr-CA", "fr-FR"),
        (YEARLY, "en-US", ""),
    ]:
        catalogue.record_apple_default(product, locale, "Sandbox", texts[text].uuid)
    return catalogue


def decision(locale: str | None, answered: str | None, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "request_identifier": uuid.uuid4(),
        "original_transaction_id": None,
        "product_id": MONTHLY,
        "locale": locale,
        "environment": "Sandbox",
        "selector": "choose",
        "kind": "message",
        "message_uuid": uuid.uuid4(),
        "fallback_reason": None,
        "answered_locale": answered,
        "locale_reason": None if answered is None else "exact",
        "status": 200,
        "latency_ms": 3.0,
        "created_at": RECENT,
    }
    row.update(fields)
    return row


def add(engine: sa.Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as connection:
        connection.execute(sa.insert(Decision), rows)


def requests_seen(engine: sa.Engine) -> None:
    """fr-CA answered in fr-CA, in fr-FR and with the fallback; en-US in en-US; pt-BR
    before answered_locale was recorded; and rows the window or environment leave out."""
    add(
        engine,
        [decision("fr-CA", "fr-CA") for _ in range(3)]
        + [decision("fr-CA", "fr-FR", locale_reason="region") for _ in range(6)]
        + [decision("fr-CA", None, kind="none", fallback_reason="no_translation")]
        + [decision("en-US", "en-US") for _ in range(4)]
        + [decision("pt-BR", None) for _ in range(2)]
        + [decision("fr-CA", "fr-FR", environment="Production") for _ in range(5)]
        + [decision("fr-CA", "fr-FR", created_at=NOW - timedelta(days=30))],
    )


def slots(coverage: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(s["product_id"], s["locale"]): s for s in coverage["slots"]}


# -- the slots ----------------------------------------------------------------------------


def test_every_slot_says_what_the_chain_picks_and_what_apple_holds(
    catalogue: Catalogue, engine: sa.Engine
) -> None:
    coverage = build_coverage(catalogue, engine, "Sandbox")
    found = slots(coverage)
    assert {slot: s["status"] for slot, s in found.items()} == {
        (MONTHLY, "en-US"): "ok",
        (MONTHLY, "fr-CA"): "ok",
        (MONTHLY, "fr-FR"): "ok",
        (MONTHLY, "it-IT"): "unserved",
        (YEARLY, "de-DE"): "waiting",
        (YEARLY, "en-US"): "ok",
        (YEARLY, "fr-CA"): "sync",
        (YEARLY, "fr-FR"): "sync",
    }
    fr_ca = found[(MONTHLY, "fr-CA")]
    assert fr_ca["answered_by"] == {"translation": "fr-FR", "reason": "region", "version": 1}
    assert fr_ca["in_review"] == [
        {"translation": "fr-CA", "state": "PENDING", "images_approved": True}
    ]
    assert fr_ca["apple"] is not None
    assert (fr_ca["apple"]["translation"], fr_ca["apple"]["approved"]) == ("fr-FR", True)
    assert found[(MONTHLY, "en-US")]["answered_by"]["translation"] == "en-US"
    assert found[(YEARLY, "fr-FR")]["apple"] is None
    assert found[(YEARLY, "fr-CA")]["every_translation"] is True
    assert coverage["summary"] == {
        "ok": 4,
        "sync": 2,
        "waiting": 1,
        "unserved": 1,
        "no_default": 0,
        "not_in_catalogue": 0,
        "in_review": 3,
        "missing_translation": 1,
        "gaps": 4,
    }


def test_a_locale_the_chain_cannot_serve_is_named_unserved(
    catalogue: Catalogue, engine: sa.Engine
) -> None:
    italian = slots(build_coverage(catalogue, engine, "Sandbox"))[(MONTHLY, "it-IT")]
    assert italian["answered_by"] is None
    assert italian["missing_translation"] is True
    assert italian["notes"][0].startswith(
        "no translation / no default: winback has no text the fallback chain serves it-IT"
    )
    assert len(italian["notes"]) == 1


def test_a_text_whose_image_is_in_review_waits_for_it(
    catalogue: Catalogue, engine: sa.Engine
) -> None:
    german = slots(build_coverage(catalogue, engine, "Sandbox"))[(YEARLY, "de-DE")]
    assert german["answered_by"] is None
    assert german["in_review"] == [
        {"translation": "de-DE", "state": "APPROVED", "images_approved": False}
    ]
    assert "winback [de-DE] in review (APPROVED, an image not approved yet)" in german["notes"]


def test_another_environment_has_its_own_states(catalogue: Catalogue, engine: sa.Engine) -> None:
    coverage = build_coverage(catalogue, engine, "Production")
    statuses = {s["status"] for s in coverage["slots"]}
    assert statuses == {"waiting", "unserved"}  # nothing reviewed or held in Production
    assert coverage["environment"] == "Production"


def test_defaults_apple_holds_beyond_the_catalogue_and_requests_without_one_are_gaps(
    catalogue: Catalogue, engine: sa.Engine
) -> None:
    base = catalogue.get_message("winback")
    assert base is not None
    catalogue.record_apple_default("com.example.weekly", "en-GB", "Sandbox", base.uuid)
    requests_seen(engine)
    found = slots(build_coverage(catalogue, engine, "Sandbox"))
    weekly = found[("com.example.weekly", "en-GB")]
    assert weekly["status"] == "not_in_catalogue"
    assert weekly["apple"]["message"] == "winback"
    portuguese = found[(MONTHLY, "pt-BR")]
    assert portuguese["status"] == "no_default"
    assert portuguese["notes"] == ["requests came from here and the catalogue sets no default"]


# -- the locales seen in requests -----------------------------------------------------------


def test_each_locale_seen_says_how_its_requests_were_answered(
    catalogue: Catalogue, engine: sa.Engine
) -> None:
    requests_seen(engine)
    coverage = build_coverage(catalogue, engine, "Sandbox", since=NOW - timedelta(days=7))
    locales = {item["locale"]: item for item in coverage["locales"]}
    assert [item["locale"] for item in coverage["locales"]] == ["fr-CA", "en-US", "pt-BR"]
    fr_ca = locales["fr-CA"]
    assert (fr_ca["requests"], fr_ca["exact"], fr_ca["other"], fr_ca["fallbacks"]) == (10, 3, 6, 1)
    assert fr_ca["answered_in"] == [{"locale": "fr-FR", "requests": 6, "share": 0.6}]
    assert (fr_ca["exact_share"], fr_ca["fallback_share"]) == (0.3, 0.1)
    assert fr_ca["reasons"] == {"region": 6, "exact": 3}
    assert (
        fr_ca["line"] == "fr-CA: 10 requests, 60 % answered in fr-FR, 10 % fallback (30 % in fr-CA)"
    )
    assert locales["en-US"]["line"] == "en-US: 4 requests, all answered in en-US"
    # Rows logged before answered_locale existed are counted, as unknown.
    assert locales["pt-BR"]["unknown"] == 2
    assert locales["pt-BR"]["line"] == (
        "pt-BR: 2 requests, 100 % unknown (logged before answered_locale was recorded)"
    )


def test_the_window_and_environment_bound_the_requests(
    catalogue: Catalogue, engine: sa.Engine
) -> None:
    requests_seen(engine)
    whole = build_coverage(catalogue, engine, "Sandbox")
    assert whole["window"]["since"] is None
    assert {i["locale"]: i["requests"] for i in whole["locales"]}["fr-CA"] == 11
    production = build_coverage(catalogue, engine, "Production", since=NOW - timedelta(days=7))
    assert [i["line"] for i in production["locales"]] == [
        "fr-CA: 5 requests, 100 % answered in fr-FR"
    ]


def test_the_text_names_the_gaps(catalogue: Catalogue, engine: sa.Engine) -> None:
    requests_seen(engine)
    coverage = build_coverage(catalogue, engine, "Sandbox", since=NOW - timedelta(days=7))
    text = render_coverage_text(coverage)
    assert text.startswith("Coverage in Sandbox (base text en-US, base_fallback off)")
    lines = text.splitlines()
    it_it = next(line for line in lines if "it-IT" in line)
    assert "unserved" in it_it
    assert "no translation / no default" in it_it
    fr_ca = next(line for line in lines if MONTHLY in line and "fr-CA" in line)
    assert "fr-FR v1 (region)" in fr_ca
    assert "winback [fr-CA] in review (PENDING)" in fr_ca
    yearly_fr = next(line for line in lines if YEARLY in line and " fr-FR " in line)
    assert "sync" in yearly_fr
    assert "run flask retention sync" in yearly_fr
    assert "5 gaps in 9: 2 sync, 1 waiting, 1 unserved, 1 no_default." in text
    assert "  fr-CA: 10 requests, 60 % answered in fr-FR, 10 % fallback (30 % in fr-CA)" in text


# -- the command ---------------------------------------------------------------------------


@pytest.fixture
def cli_app(app: Flask, catalogue: Catalogue, database_url: str) -> Iterator[Flask]:
    app.config["RETENTION_DATABASE_URI"] = database_url
    retention = Retention(app)
    yield app
    retention.close(app)


def test_the_coverage_command_prints_text_and_json(cli_app: Flask, engine: sa.Engine) -> None:
    requests_seen(engine)
    runner = cli_app.test_cli_runner()
    result = runner.invoke(args=["retention", "coverage"])
    assert result.exit_code == 0, result.output  # gaps found, still a view: status 0
    assert "no translation / no default" in result.output
    assert "fr-CA: 10 requests, 60 % answered in fr-FR, 10 % fallback" in result.output

    result = runner.invoke(args=["retention", "coverage", "--json", "--since", "60d"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["environment"] == "Sandbox"
    assert slots(data)[(MONTHLY, "it-IT")]["status"] == "unserved"
    assert data["locales"][0]["requests"] == 11  # the 30-day-old row too

    result = runner.invoke(args=["retention", "coverage", "-e", "Production", "--json"])
    assert json.loads(result.output)["environment"] == "Production"


def test_the_coverage_command_refuses_a_bad_since_in_one_line(cli_app: Flask) -> None:
    result = cli_app.test_cli_runner().invoke(args=["retention", "coverage", "--since", "7x"])
    assert result.exit_code == 2
    assert "neither a duration (like 7d or 24h) nor a date" in result.output
    assert "Traceback" not in result.output


def test_the_coverage_command_without_tables_says_to_run_init_db(app: Flask) -> None:
    app.config["RETENTION_DATABASE_URI"] = f"sqlite:///{app.instance_path}/empty.db"
    retention = Retention(app)
    try:
        result = app.test_cli_runner().invoke(args=["retention", "coverage"])
    finally:
        retention.close(app)
    assert result.exit_code == 1
    assert "flask retention init-db" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


# -- the report by locale -------------------------------------------------------------------


def outcome_set(engine: sa.Engine) -> None:
    """fr-CA: four subscribers, one cancels, one answered with the fallback; en-US: two
    subscribers who stay. The decisions are two weeks old, so every one is closed."""
    shown = NOW - timedelta(days=14)
    rows = [
        decision("fr-CA", "fr-FR", original_transaction_id=f"f{i}", created_at=shown)
        for i in range(3)
    ]
    rows.append(
        decision(
            "fr-CA", None, original_transaction_id="f3", created_at=shown, kind="none",
            fallback_reason="timeout",
        )
    )  # fmt: skip
    rows += [
        decision("en-US", "en-US", original_transaction_id=f"e{i}", created_at=shown)
        for i in range(2)
    ]
    add(engine, rows)
    with engine.begin() as connection:
        connection.execute(
            sa.insert(Notification),
            [
                {
                    "notification_uuid": uuid.uuid4(),
                    "notification_type": "DID_CHANGE_RENEWAL_STATUS",
                    "subtype": "AUTO_RENEW_DISABLED",
                    "original_transaction_id": "f0",
                    "environment": "Sandbox",
                    "signed_date": shown + timedelta(hours=2),
                }
            ],
        )


def test_the_report_breaks_requests_down_by_locale_with_save_rates(engine: sa.Engine) -> None:
    outcome_set(engine)
    report = build_report(engine, NOW - timedelta(days=30), now=NOW)
    assert report["by_locale"] == [
        {"locale": "fr-CA", "requests": 4, "answered": 4, "fallbacks": 1, "rejected": 0,
         "fallback_share": 0.25, "decided": 4, "closed": 4, "cancelled": 1,
         "redeemed_offer": 0, "switched_plan": 0, "kept": 3, "pending": 0, "save_rate": 0.75},
        {"locale": "en-US", "requests": 2, "answered": 2, "fallbacks": 0, "rejected": 0,
         "fallback_share": 0.0, "decided": 2, "closed": 2, "cancelled": 0,
         "redeemed_offer": 0, "switched_plan": 0, "kept": 2, "pending": 0, "save_rate": 1.0},
    ]  # fmt: skip
    text = render_text(report)
    fr_ca = next(line for line in text.split("\nPer locale\n")[1].splitlines() if "fr-CA" in line)
    assert fr_ca.split() == ["fr-CA", "4", "4", "1", "25.0", "%", "4", "1", "75.0", "%"]


def test_the_report_without_outcomes_shows_no_save_rate(engine: sa.Engine) -> None:
    add(engine, [decision("fr-CA", "fr-FR")])  # no subscriber ID: no outcome
    report = build_report(engine, NOW - timedelta(days=7), now=NOW)
    assert report["by_locale"][0]["save_rate"] is None
    section = render_text(report).split("\nPer locale\n")[1]
    assert "save rate" not in section.splitlines()[0]


def test_the_report_page_has_the_coverage_and_by_locale_sections(
    cli_app: Flask, engine: sa.Engine, tmp_path: Path
) -> None:
    requests_seen(engine)
    outcome_set(engine)
    page = tmp_path / "report.html"
    result = cli_app.test_cli_runner().invoke(
        args=["retention", "report", "--since", "20d", "--html", str(page)]
    )
    assert result.exit_code == 0, result.output
    html = page.read_text(encoding="utf-8")
    assert "<h2>Per locale</h2>" in html
    assert "<h2>Coverage in Sandbox (base text en-US, base_fallback off)</h2>" in html
    assert "no translation / no default" in html
    assert (
        "<li>fr-CA: 14 requests, 64 % answered in fr-FR, 14 % fallback (21 % in fr-CA)</li>" in html
    )
    assert "http" not in html.lower()

    result = cli_app.test_cli_runner().invoke(
        args=["retention", "report", "--since", "20d", "--json"]
    )
    data = json.loads(result.output)
    assert [entry["locale"] for entry in data["by_locale"]] == ["fr-CA", "en-US", "pt-BR"]
    assert "coverage" not in data  # the JSON keeps its keys; coverage --json has its own


def test_the_report_page_renders_the_coverage_it_is_given(
    catalogue: Catalogue, engine: sa.Engine
) -> None:
    report = build_report(engine, NOW - timedelta(days=7), now=NOW)
    assert "Coverage in" not in render_html(report)
    page = render_html(report, coverage=build_coverage(catalogue, engine, "Sandbox"))
    assert "<td>it-IT</td>" in page
    assert "<td>unserved</td>" in page
