"""Sync with translations, against the fake App Store over HTTP: one Apple message per
translation, defaults expanded per (product, locale) through the fallback chain."""

from __future__ import annotations

import json
from pathlib import Path

from flask.testing import FlaskCliRunner

from flask_retention.testing import FakeAppStore

from ..catalogue_support import bullet_png, full_png
from .support import PRODUCT, endpoints, invoke, ok, writes

YEARLY = "com.example.retention.yearly"

CATALOGUE = f"""
[languages]
base_locale = "en-US"

[[images]]
name = "hero"
file = "hero.png"

[[images]]
name = "tick"
file = "tick.png"
size = "BULLET_POINT"

[[messages]]
name = "winback"
header = "Before you go"
body = "Your plan includes offline mode."
image = "hero"
image_alt_text = "A family reading"
bullet_points = [{{ text = "Offline mode", image = "tick", alt_text = "A tick" }}]

[messages.translations.fr-FR]
header = "Avant de partir"
body = "Votre abonnement inclut le mode hors ligne."
image_alt_text = "Une famille qui lit"
bullet_points = [{{ text = "Mode hors ligne", alt_text = "Une coche" }}]

[messages.translations.de-DE]
header = "Bevor Sie gehen"
body = "Ihr Abo enthält den Offline-Modus."
image_alt_text = "Eine lesende Familie"
bullet_points = [{{ text = "Offline-Modus", alt_text = "Ein Haken" }}]

[[defaults]]
product_id = "{PRODUCT}"
locales = ["en-US", "fr-FR", "fr-CA", "it-IT"]
message = "winback"

[[defaults]]
product_id = "{YEARLY}"
locales = "all"
message = "winback"
"""


def import_three_languages(runner: FlaskCliRunner, tmp_path: Path) -> None:
    (tmp_path / "hero.png").write_bytes(full_png())
    (tmp_path / "tick.png").write_bytes(bullet_png())
    path = tmp_path / "catalogue.toml"
    path.write_text(CATALOGUE, encoding="utf-8")
    ok(invoke(runner, "import", str(path)))


def add_canadian_french(runner: FlaskCliRunner) -> None:
    """Add the fr-CA translation of winback (its bullet image shared)."""
    ok(
        invoke(
            runner,
            "message",
            "add",
            "--name",
            "winback",
            "--locale",
            "fr-CA",
            "--header",
            "Avant de partir",
            "--body",
            "Votre forfait inclut le mode hors ligne.",
            "--image-alt-text",
            "Une famille qui lit",
            "--bullet",
            "Mode hors ligne",
            "-",
            "Une coche",
        )
    )


def text_uuids(runner: FlaskCliRunner) -> dict[tuple[str, str], str]:
    """The UUID of each text's current version, by (name, locale)."""
    listed = json.loads(ok(invoke(runner, "message", "list", "--json")).output)
    return {(m["name"], m["locale"]): m["uuid"] for m in listed}


def test_each_translation_is_uploaded_as_its_own_apple_message(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    import_three_languages(runner, tmp_path)
    result = ok(invoke(runner, "sync"))
    uuids = text_uuids(runner)
    assert len(fake_app_store.messages) == 3
    headers = {key: fake_app_store.messages[ident].body["header"] for key, ident in uuids.items()}
    assert headers == {
        ("winback", "en-US"): "Before you go",
        ("winback", "fr-FR"): "Avant de partir",
        ("winback", "de-DE"): "Bevor Sie gehen",
    }
    french = fake_app_store.messages[uuids[("winback", "fr-FR")]].body
    english = fake_app_store.messages[uuids[("winback", "en-US")]].body
    assert french["image"]["imageIdentifier"] == english["image"]["imageIdentifier"]
    assert "winback [fr-FR] v1" in result.output


def test_defaults_are_expanded_per_locale_through_the_chain(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    import_three_languages(runner, tmp_path)
    result = ok(invoke(runner, "sync"))
    uuids = text_uuids(runner)
    base, french, german = (uuids[("winback", loc)] for loc in ("en-US", "fr-FR", "de-DE"))
    assert fake_app_store.defaults == {
        (PRODUCT, "en-US"): base,
        (PRODUCT, "fr-FR"): french,
        (PRODUCT, "fr-CA"): french,
        (YEARLY, "en-US"): base,
        (YEARLY, "fr-FR"): french,
        (YEARLY, "de-DE"): german,
    }
    assert "No default: the fallback chain cannot serve these locales:" in result.output
    assert f"default {PRODUCT} / it-IT: winback has no translation" in result.output
    applied = json.loads(ok(invoke(runner, "sync", "--json")).output)["applied"]
    assert applied == []
    plan = json.loads(ok(invoke(runner, "sync", "--dry-run", "--json")).output)["plan"]
    assert [n["reason"].split(":")[0] for n in plan["uncovered"]] == [f"default {PRODUCT} / it-IT"]


def test_a_pending_translation_waits_while_the_chain_serves_its_locale(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    import_three_languages(runner, tmp_path)
    ok(invoke(runner, "sync"))
    fake_app_store.auto_approve = False
    add_canadian_french(runner)
    result = ok(invoke(runner, "sync"))
    uuids = text_uuids(runner)
    assert "upload message winback [fr-CA] v1" in " ".join(result.output.split())
    assert f"default {PRODUCT} / fr-CA waits for winback [fr-CA] v1" in result.output
    assert fake_app_store.defaults[(PRODUCT, "fr-CA")] == uuids[("winback", "fr-FR")]

    fake_app_store.approve(uuids[("winback", "fr-CA")])
    ok(invoke(runner, "sync"))
    assert fake_app_store.defaults[(PRODUCT, "fr-CA")] == uuids[("winback", "fr-CA")]
    assert fake_app_store.defaults[(PRODUCT, "fr-FR")] == uuids[("winback", "fr-FR")]


def test_an_edited_translation_replaces_only_that_translation_at_apple(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    import_three_languages(runner, tmp_path)
    ok(invoke(runner, "sync"))
    before = text_uuids(runner)
    ok(
        invoke(
            runner,
            "message",
            "add",
            "--name",
            "winback",
            "--locale",
            "fr-FR",
            "--header",
            "Avant de nous quitter",
            "--body",
            "Votre abonnement inclut le mode hors ligne.",
            "--image-alt-text",
            "Une famille qui lit",
            "--bullet",
            "Mode hors ligne",
            "-",
            "Une coche",
        )
    )
    since = len(fake_app_store.requests)
    result = json.loads(ok(invoke(runner, "sync", "--json")).output)
    after = text_uuids(runner)
    changed = {key for key in after if after[key] != before[key]}
    assert changed == {("winback", "fr-FR")}
    assert endpoints(writes(fake_app_store, since)) == [
        "upload_message",
        "configure_default_message",
        "configure_default_message",
        "configure_default_message",
        "delete_message",
    ]
    steps = [
        (s["action"], s["name"], s["translation"], s["version"], s["locale"])
        for s in result["applied"]
    ]
    assert steps == [
        ("upload_message", "winback", "fr-FR", 2, None),
        ("configure_default", "winback", "fr-FR", 2, "fr-CA"),
        ("configure_default", "winback", "fr-FR", 2, "fr-FR"),
        ("configure_default", "winback", "fr-FR", 2, "fr-FR"),
        ("delete_message", "winback", "fr-FR", 1, None),
    ]
    assert before[("winback", "fr-FR")] not in fake_app_store.messages
    assert fake_app_store.defaults[(PRODUCT, "fr-CA")] == after[("winback", "fr-FR")]


def test_message_list_shows_translations_with_their_review_states(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    import_three_languages(runner, tmp_path)
    fake_app_store.auto_approve = False
    ok(invoke(runner, "sync"))
    fake_app_store.approve(text_uuids(runner)[("winback", "fr-FR")])
    ok(invoke(runner, "sync", "--environment", "Sandbox"))
    listed = json.loads(ok(invoke(runner, "message", "list", "--json")).output)
    states = {(m["locale"], m["translation"]): m["apple_state"]["Sandbox"] for m in listed}
    assert states == {
        ("en-US", False): "PENDING",
        ("de-DE", True): "PENDING",
        ("fr-FR", True): "APPROVED",
    }
    table = ok(invoke(runner, "message", "list")).output
    assert "en-US (base)" in table
    assert "fr-FR" in table


def test_default_set_for_several_locales_and_every_translation(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    import_three_languages(runner, tmp_path)
    ok(invoke(runner, "default", "set", PRODUCT, "de-DE", "en-GB", "winback"))
    ok(invoke(runner, "default", "remove", YEARLY, "--all-translations", "--yes"))
    result = ok(invoke(runner, "default", "set", YEARLY, "winback", "--all-translations"))
    assert f"Default for {YEARLY} / every translation is winback" in result.output
    ok(invoke(runner, "sync"))
    uuids = text_uuids(runner)
    assert fake_app_store.defaults[(PRODUCT, "de-DE")] == uuids[("winback", "de-DE")]
    assert fake_app_store.defaults[(PRODUCT, "en-GB")] == uuids[("winback", "en-US")]
    assert (YEARLY, "de-DE") in fake_app_store.defaults
    exported = tmp_path / "out" / "catalogue.toml"
    exported.parent.mkdir()
    ok(invoke(runner, "export", str(exported)))
    assert "no changes" in ok(invoke(runner, "import", str(exported))).output
    assert 'locales = "all"' in exported.read_text(encoding="utf-8")
