"""``flask retention check`` with translations, against the fake App Store over HTTP: each
default is checked per (product, locale) as sync configures it, the text the fallback chain
picks must be approved and held by Apple there, and a locale the chain can't serve is named."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy.orm import Session

from flask_retention.api import DefaultConfigurationRequest
from flask_retention.catalogue.models import Decision
from flask_retention.testing import FakeAppStore

from .support import PRODUCT, fails, invoke, ok
from .test_check import api, check_json, go_live, problems
from .test_sync_translations import (
    CATALOGUE,
    YEARLY,
    add_canadian_french,
    import_three_languages,
    text_uuids,
)

IT_IT_PROBLEM = (
    f"default {PRODUCT} / it-IT: no translation of 'winback' serves it-IT (it has de-DE, "
    "en-US, fr-FR); Apple shows nothing there: add a translation for it-IT (`flask retention "
    "message add --name winback --locale it-IT ...`), extend [languages.chain] or set "
    "base_fallback = true under [languages] in the catalogue file."
)


def test_only_the_locale_no_translation_serves_is_a_problem_until_base_fallback(
    runner: FlaskCliRunner, app: Flask, fake_app_store: FakeAppStore, tmp_path: Path
) -> None:
    go_live(runner, app, fake_app_store, tmp_path, build=import_three_languages)
    # Every expanded slot (four locales of the monthly product, each text's locale of the
    # yearly one) passes, online and offline, but it-IT: nothing serves it.
    for args in ((), ("--offline",), ("--verify-defaults",)):
        result = invoke(runner, "check", *args)
        fails(result)
        assert problems(result) == [IT_IT_PROBLEM], args
    # Seven slots read back: it-IT too (Apple must hold nothing there).
    assert "Reading 7 defaults from Apple" in invoke(runner, "check", "--verify-defaults").stderr
    code, report = check_json(runner)
    assert code == 1
    assert [p["check"] for p in report["problems"]] == ["default"]

    # The fix the problem names: the base text stands in for Italian.
    path = tmp_path / "catalogue.toml"
    path.write_text(
        CATALOGUE.replace('base_locale = "en-US"', 'base_locale = "en-US"\nbase_fallback = true'),
        encoding="utf-8",
    )
    ok(invoke(runner, "import", str(path)))
    assert problems(invoke(runner, "check")) == [
        f"default {PRODUCT} / it-IT: Apple holds no default there in Sandbox (according to "
        "Apple); run `flask retention sync --environment Sandbox`."
    ]
    ok(invoke(runner, "sync"))
    assert fake_app_store.defaults[(PRODUCT, "it-IT")] == text_uuids(runner)[("winback", "en-US")]
    assert "All checks passed (Sandbox, online)." in ok(invoke(runner, "check")).output


def test_a_text_not_approved_is_named_with_why(
    runner: FlaskCliRunner, fake_app_store: FakeAppStore, tmp_path: Path
) -> None:
    import_three_languages(runner, tmp_path)
    fake_app_store.auto_approve = False
    ok(invoke(runner, "sync"))
    uuids = text_uuids(runner)
    for image in fake_app_store.images:
        fake_app_store.approve(image)
    fake_app_store.approve(uuids[("winback", "en-US")])
    fake_app_store.reject(uuids[("winback", "de-DE")])
    ok(invoke(runner, "sync"))

    def approval(where: str, what: str, why: str, source: str = "Apple") -> str:
        return (
            f"default {where}: {what} has no version APPROVED in Sandbox ({why}, according "
            f"to {source}); run `flask retention sync --environment Sandbox` and wait for "
            "Apple's review."
        )

    waiting = "waiting for Apple's review"
    rejected = "rejected by Apple (edit the text to make a new version)"
    expected = [
        approval(f"{PRODUCT} / fr-CA", "translation 'winback [fr-FR]'", waiting),
        approval(f"{PRODUCT} / fr-FR", "translation 'winback [fr-FR]'", waiting),
        IT_IT_PROBLEM,
        approval(f"{YEARLY} / de-DE", "translation 'winback [de-DE]'", rejected),
        approval(f"{YEARLY} / fr-FR", "translation 'winback [fr-FR]'", waiting),
    ]
    result = invoke(runner, "check")
    fails(result)
    found = [p for p in problems(result) if p.startswith("default ")]
    assert found == expected
    # Offline, the record of the last sync says the same.
    offline = [p for p in problems(invoke(runner, "check", "--offline")) if p.startswith("def")]
    assert offline == [p.replace("to Apple)", "to the record of the last sync)") for p in expected]


def test_a_stand_in_is_a_note_and_apple_must_hold_the_text_the_chain_picks(
    runner: FlaskCliRunner, app: Flask, fake_app_store: FakeAppStore, tmp_path: Path
) -> None:
    go_live(runner, app, fake_app_store, tmp_path, build=import_three_languages)
    ok(invoke(runner, "default", "remove", PRODUCT, "it-IT", "--yes"))
    fake_app_store.auto_approve = False
    add_canadian_french(runner)
    ok(invoke(runner, "sync"))

    # fr-CA waits for review; the chain's fr-FR serves it meanwhile: a note, not a problem.
    result = ok(invoke(runner, "check"))
    assert (
        f"Note: default {PRODUCT} / fr-CA shows winback [fr-FR] while winback [fr-CA] is not "
        "APPROVED in Sandbox yet (the fallback chain's stand-in)"
    ) in result.output

    # Approved at Apple but not synced yet: Apple still holds the stand-in.
    uuids = text_uuids(runner)
    fake_app_store.approve(uuids[("winback", "fr-CA")])
    result = invoke(runner, "check")
    fails(result)
    assert problems(result) == [
        f"default {product} / fr-CA: Apple's default in Sandbox is 'winback [fr-FR]', not "
        "'winback [fr-CA]'; run `flask retention sync --environment Sandbox`."
        for product in (PRODUCT, YEARLY)  # the yearly product's every-translation default too
    ]
    ok(invoke(runner, "sync"))
    assert "All checks passed" in ok(invoke(runner, "check")).output

    # Another translation of the same message at Apple is not the picked text.
    assert fake_app_store.defaults[(YEARLY, "fr-FR")] == uuids[("winback", "fr-FR")]
    with api(app) as client:
        client.configure_default_message(
            YEARLY, "fr-FR", DefaultConfigurationRequest(uuids[("winback", "de-DE")])
        )
    ok(invoke(runner, "check"))  # the record still says fr-FR: only reading it back finds it
    result = invoke(runner, "check", "--verify-defaults")
    assert problems(result) == [
        f"default {YEARLY} / fr-FR: Apple's default in Sandbox is 'winback [de-DE]', not "
        "'winback [fr-FR]'; run `flask retention sync --environment Sandbox`."
    ]


def test_traffic_is_checked_against_the_expanded_slots(
    runner: FlaskCliRunner, app: Flask, fake_app_store: FakeAppStore, tmp_path: Path
) -> None:
    go_live(runner, app, fake_app_store, tmp_path, build=import_three_languages)
    engine: sa.Engine = app.extensions["retention"].get_engine(app)
    with Session(engine) as session, session.begin():
        for product_id, locale in ((YEARLY, "de-DE"), (YEARLY, "fr-CA"), (PRODUCT, "fr-CA")):
            session.add(
                Decision(product_id=product_id, locale=locale, environment="Sandbox", status=200)
            )
    traffic = [p for p in problems(invoke(runner, "check")) if "real-time requests" in p]
    # de-DE of the yearly product comes from its every-translation default; fr-CA does not.
    assert traffic == [
        f"{YEARLY} / fr-CA gets real-time requests in Sandbox but has no default message: "
        "Apple shows nothing there when the endpoint does not answer; run `flask retention "
        f"default set {YEARLY} fr-CA MESSAGE`."
    ]
