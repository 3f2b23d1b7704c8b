"""Translations in the catalogue: the file shape, storage, versioning per translation,
default rules expanded per locale, the 0005 -> 0006 upgrade and the checks.

Every database test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from flask_retention.catalogue.entries import LanguageSettings, MessageEntry
from flask_retention.catalogue.files import check_catalogue_file, load_catalogue_file
from flask_retention.catalogue.schema import current_revision, head_revision, upgrade
from flask_retention.catalogue.store import Catalogue, StoredMessage
from flask_retention.catalogue.validation import CatalogueError, check_document
from flask_retention.core.database import create_engine

from .catalogue_support import bullet_png, full_png

PRODUCT = "com.example.monthly"

CATALOGUE_TOML = """
[languages]
base_locale = "en-US"
base_fallback = false

[languages.chain]
fr-CA = ["fr-FR"]

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
bullet_points = [{ text = "Offline mode", image = "tick", alt_text = "A tick" }]

[messages.translations.fr-FR]
header = "Avant de partir"
body = "Votre abonnement inclut le mode hors ligne."
image_alt_text = "Une famille qui lit"
bullet_points = [{ text = "Mode hors ligne", alt_text = "Une coche" }]

[messages.translations.de-DE]
header = "Bevor Sie gehen"
body = "Ihr Abo enthält den Offline-Modus."
image_alt_text = "Eine lesende Familie"
bullet_points = [{ text = "Offline-Modus", alt_text = "Ein Haken" }]

[[messages]]
name = "plain"
header = "Stay"
body = "We would miss you."

[[defaults]]
product_id = "com.example.monthly"
locales = ["en-US", "fr-FR", "fr-CA", "it-IT"]
message = "winback"

[[defaults]]
product_id = "com.example.yearly"
locales = "all"
message = "winback"

[[defaults]]
product_id = "com.example.weekly"
locale = "en-GB"
message = "plain"
"""


def write_three_languages(folder: Path, suffix: str = ".toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hero.png").write_bytes(full_png())
    (folder / "tick.png").write_bytes(bullet_png())
    path = folder / "catalogue.toml"
    path.write_text(CATALOGUE_TOML, encoding="utf-8")
    if suffix == ".json":
        document = load_catalogue_file(path)
        json_path = folder / "catalogue.json"
        from flask_retention.catalogue.files import write_catalogue_file

        write_catalogue_file(document, json_path)
        return json_path
    return path


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def catalogue(engine: sa.Engine) -> Catalogue:
    upgrade(engine)
    return Catalogue(engine)


def texts(catalogue: Catalogue) -> dict[tuple[str, str], StoredMessage]:
    return {(m.name, m.locale): m for m in catalogue.list_messages()}


# -- the file ----------------------------------------------------------------------------


def test_a_file_with_translations_loads_with_images_shared(tmp_path: Path) -> None:
    document = load_catalogue_file(write_three_languages(tmp_path))
    winback = document.messages[0]
    assert [t.locale for t in winback.translations] == ["de-DE", "fr-FR"]
    french = winback.text("fr-FR")
    assert (french.header, french.image, french.image_alt_text) == (
        "Avant de partir",
        "hero",
        "Une famille qui lit",
    )
    assert [(b.text, b.image) for b in french.bullet_points] == [("Mode hors ligne", "tick")]
    assert document.languages == LanguageSettings("en-US", False, {"fr-CA": ("fr-FR",)})
    assert [(d.product_id, d.locale) for d in document.defaults] == [
        (PRODUCT, "en-US"),
        (PRODUCT, "fr-FR"),
        (PRODUCT, "fr-CA"),
        (PRODUCT, "it-IT"),
        ("com.example.weekly", "en-GB"),
    ]
    assert [(r.product_id, r.message) for r in document.translation_defaults] == [
        ("com.example.yearly", "winback")
    ]


def test_toml_and_json_load_the_same_document(tmp_path: Path) -> None:
    toml = load_catalogue_file(write_three_languages(tmp_path / "t"))
    json_path = write_three_languages(tmp_path / "j", ".json")
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert data["messages"][0]["translations"]["fr-FR"]["header"] == "Avant de partir"
    assert "image" not in data["messages"][0]["translations"]["fr-FR"]
    loaded = load_catalogue_file(json_path)
    assert loaded.messages == toml.messages
    assert loaded.defaults == toml.defaults
    assert loaded.translation_defaults == toml.translation_defaults
    assert loaded.languages == toml.languages


def test_a_malformed_translation_key_is_an_error_with_the_fix(tmp_path: Path) -> None:
    path = write_three_languages(tmp_path)
    path.write_text(CATALOGUE_TOML.replace("translations.de-DE", "translations.de_DE"))
    check = check_catalogue_file(path)
    assert check.problems == (
        "messages[0] (winback).translations.de_DE: 'de_DE' uses an underscore; App Store "
        "locale short codes use hyphens: write de-DE",
    )


def test_an_unknown_locale_is_a_warning_everywhere(tmp_path: Path) -> None:
    path = write_three_languages(tmp_path)
    path.write_text(
        CATALOGUE_TOML.replace("translations.de-DE", "translations.de-AT").replace(
            'fr-CA = ["fr-FR"]', 'fr-CA = ["fr-FR"]\nfr-CH = ["fr-FR"]'
        )
    )
    check = check_catalogue_file(path)
    assert check.ok, check.problems
    assert [w.split(":")[0] for w in check.warnings] == [
        "languages.chain.fr-CH",
        "messages[0] (winback).translations.de-AT",
    ]
    assert all("is not one of the App Store locale short codes" in w for w in check.warnings)


def test_a_malformed_chain_or_default_locale_is_an_error_with_the_fix(tmp_path: Path) -> None:
    path = write_three_languages(tmp_path)
    path.write_text(
        CATALOGUE_TOML.replace('fr-CA = ["fr-FR"]', 'fr-CA = ["fr_FR"]').replace(
            '"it-IT"]', '"IT-it"]'
        )
    )
    problems = check_catalogue_file(path).problems
    assert problems == (
        "languages.chain.fr-CA[0]: 'fr_FR' uses an underscore; App Store locale short codes "
        "use hyphens: write fr-FR",
        "defaults[0].locales[3]: 'IT-it' has the wrong case; locale short codes are "
        "case-sensitive: write it-IT",
    )


def test_a_translation_keeps_apples_text_limits_and_alt_text_rule(tmp_path: Path) -> None:
    path = write_three_languages(tmp_path)
    path.write_text(
        CATALOGUE_TOML.replace('header = "Avant de partir"', f'header = "{"x" * 67}"').replace(
            'image_alt_text = "Eine lesende Familie"\n', ""
        )
    )
    assert check_catalogue_file(path).problems == (
        "messages[0] (winback).translations.fr-FR.header: 67 characters, Apple's limit is 66",
        "messages[0] (winback).translations.de-DE.image_alt_text: missing: Apple requires alt "
        "text with the image (it shares the base text's image 'hero'); describe it in de-DE",
    )


def test_a_translation_in_the_base_locale_is_refused() -> None:
    message = MessageEntry("m", "Hi", "There")
    from flask_retention.catalogue.entries import CatalogueDocument, TranslationEntry

    doc = CatalogueDocument(
        messages=(
            MessageEntry("m", "Hi", "There", translations=(TranslationEntry("en-US", "H", "B"),)),
        )
    )
    assert message.translations == ()
    with pytest.raises(CatalogueError, match=r"en-US is the base text's locale"):
        check_document(doc)


def test_approaching_apples_2000_messages_warns_counting_translations() -> None:
    from flask_retention.catalogue.entries import CatalogueDocument, TranslationEntry

    french = (TranslationEntry("fr-FR", "Avant", "Corps"),)
    messages = tuple(MessageEntry(f"m{i}", "h", "b", translations=french) for i in range(901))
    checked = check_document(CatalogueDocument(messages=messages))
    assert checked.warnings == (
        "messages: 1802 Apple messages (base texts and translations), close to Apple's limit "
        "of 2000 per app; an edit needs room for its new version while the old one is still "
        "at Apple",
    )
    more = tuple(MessageEntry(f"x{i}", "h", "b", translations=french) for i in range(100))
    with pytest.raises(CatalogueError, match=r"messages: 2002 Apple messages .* limit is 2000"):
        check_document(CatalogueDocument(messages=(*messages, *more)))


# -- the database ------------------------------------------------------------------------


def test_import_export_and_import_again_changes_nothing(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    result = catalogue.import_file(write_three_languages(tmp_path / "in"))
    assert result.translations_added == ("winback [de-DE]", "winback [fr-FR]")
    assert result.settings_changed == ("chain",)
    version = catalogue.version
    for suffix in (".toml", ".json"):
        exported = tmp_path / "out" / f"catalogue{suffix}"
        exported.parent.mkdir(exist_ok=True)
        catalogue.export_file(exported)
        again = catalogue.import_file(exported)
        assert again.changes == 0, again
        original = load_catalogue_file(write_three_languages(tmp_path / "in"))
        assert sorted(load_catalogue_file(exported).messages, key=lambda m: m.name) == sorted(
            original.messages, key=lambda m: m.name
        )
    assert catalogue.version == version
    assert "[messages.translations.fr-FR]" in (tmp_path / "out" / "catalogue.toml").read_text()


def test_each_translation_is_its_own_message_with_its_own_uuid(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    catalogue.import_file(write_three_languages(tmp_path))
    found = texts(catalogue)
    assert sorted(found) == [
        ("plain", ""),
        ("winback", ""),
        ("winback", "de-DE"),
        ("winback", "fr-FR"),
    ]
    assert len({m.uuid for m in found.values()}) == 4
    assert found[("winback", "fr-FR")].image_uuid == found[("winback", "")].image_uuid
    assert found[("winback", "fr-FR")].label == "winback [fr-FR]"


def test_an_edited_translation_makes_a_new_version_of_that_translation_only(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    catalogue.import_file(write_three_languages(tmp_path))
    before = texts(catalogue)
    edited = catalogue.add_translation(
        "winback",
        "fr-FR",
        "Avant de nous quitter",
        "Votre abonnement inclut le mode hors ligne.",
        image_alt_text="Une famille qui lit",
        bullet_points=[("Mode hors ligne", None, "Une coche")],
    )
    after = texts(catalogue)
    assert edited.version == 2
    assert after[("winback", "fr-FR")].uuid == edited.uuid != before[("winback", "fr-FR")].uuid
    for key in [("winback", ""), ("winback", "de-DE"), ("plain", "")]:
        assert after[key] == before[key]
    versions = [m for m in catalogue.message_versions() if m.locale == "fr-FR"]
    assert [(m.version, m.retired) for m in versions] == [(1, True), (2, False)]


def test_a_changed_image_makes_new_versions_of_every_translation_using_it(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    catalogue.import_file(write_three_languages(tmp_path))
    catalogue.add_image("hero", full_png(color=(200, 0, 0)))
    assert {k: m.version for k, m in texts(catalogue).items()} == {
        ("plain", ""): 1,
        ("winback", ""): 2,
        ("winback", "de-DE"): 2,
        ("winback", "fr-FR"): 2,
    }


def test_retiring_a_message_retires_its_translations(catalogue: Catalogue, tmp_path: Path) -> None:
    catalogue.import_file(write_three_languages(tmp_path))
    catalogue.import_document(catalogue.export_document().__class__(), prune=True)
    assert catalogue.list_messages() == []
    assert {m.label for m in catalogue.message_versions() if m.retired} == {
        "plain",
        "winback",
        "winback [fr-FR]",
        "winback [de-DE]",
    }


def test_a_translation_needs_its_message(catalogue: Catalogue) -> None:
    with pytest.raises(CatalogueError, match=r"no message named 'nope'.*add its base text first"):
        catalogue.add_translation("nope", "fr-FR", "Bonjour", "Corps")


def test_defaults_expand_per_locale_through_the_chain(catalogue: Catalogue, tmp_path: Path) -> None:
    catalogue.import_file(write_three_languages(tmp_path))
    slots = {
        s.slot: s
        for s in catalogue.expand_defaults(lambda m: True)
        if s.product_id != "com.example.weekly"
    }
    picked = {slot: (s.pick.locale, s.pick.reason, s.served) for slot, s in slots.items()}
    assert picked == {
        (PRODUCT, "en-US"): ("en-US", "exact", True),
        (PRODUCT, "fr-FR"): ("fr-FR", "exact", True),
        (PRODUCT, "fr-CA"): ("fr-FR", "region", True),
        (PRODUCT, "it-IT"): (None, "none", False),
        ("com.example.yearly", "de-DE"): ("de-DE", "exact", True),
        ("com.example.yearly", "en-US"): ("en-US", "exact", True),
        ("com.example.yearly", "fr-FR"): ("fr-FR", "exact", True),
    }
    target = slots[(PRODUCT, "fr-CA")].target
    assert target is not None
    assert (target.name, target.locale) == ("winback", "fr-FR")


def test_a_pending_translation_leaves_its_slot_to_the_chain_until_approved(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    catalogue.import_file(write_three_languages(tmp_path))
    catalogue.add_translation(
        "winback",
        "fr-CA",
        "Avant de partir",
        "Québec",
        image_alt_text="Une famille",
        bullet_points=[("Mode hors ligne", None, "Une coche")],
    )
    (slot,) = [
        s
        for s in catalogue.expand_defaults(lambda m: m.locale != "fr-CA")
        if s.slot == (PRODUCT, "fr-CA")
    ]
    assert (slot.pick.locale, slot.pick.reason, slot.pick.skipped) == (
        "fr-FR",
        "region",
        (("fr-CA", "pending"),),
    )
    assert slot.best is not None
    assert slot.best.locale == "fr-CA"


def test_a_message_without_translations_serves_every_locale_as_before(
    catalogue: Catalogue,
) -> None:
    catalogue.add_message("plain", "Stay", "We would miss you.")
    catalogue.set_defaults(PRODUCT, ["en-US", "ja-JP"], "plain")
    slots = catalogue.expand_defaults(lambda m: True)
    assert [(s.locale, s.pick.locale, s.served) for s in slots] == [
        ("en-US", "en-US", True),
        ("ja-JP", "en-US", True),
    ]


def test_base_fallback_lets_the_base_text_stand_in(catalogue: Catalogue, tmp_path: Path) -> None:
    catalogue.import_file(write_three_languages(tmp_path))
    catalogue.set_languages(LanguageSettings(base_fallback=True))
    (slot,) = [s for s in catalogue.expand_defaults(lambda m: True) if s.locale == "it-IT"]
    assert (slot.pick.locale, slot.pick.reason) == ("en-US", "base")


def test_a_0005_database_upgrades_with_its_messages_as_base_texts(engine: sa.Engine) -> None:
    upgrade(engine, "0005")
    key = uuid.uuid4()
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO retention_messages (name, version, uuid, header, body, created_at) "
                "VALUES ('winback', 1, :uuid, 'Before you go', 'Stay', :now)"
            ),
            {"uuid": key.hex if engine.dialect.name == "sqlite" else str(key), "now": now},
        )
        connection.execute(
            sa.text(
                "INSERT INTO retention_defaults (product_id, locale, message_name, updated_at) "
                "VALUES (:p, 'fr-FR', 'winback', :now)"
            ),
            {"p": PRODUCT, "now": now},
        )
    upgrade(engine)
    assert current_revision(engine) == head_revision() == "0006"
    catalogue = Catalogue(engine)
    (message,) = catalogue.list_messages()
    assert (message.name, message.locale, message.version, message.uuid) == (
        "winback",
        "",
        1,
        key,
    )
    assert catalogue.get_languages() is None
    assert catalogue.language_settings() == LanguageSettings()
    (slot,) = catalogue.expand_defaults(lambda m: True)
    assert (slot.locale, slot.target) == ("fr-FR", message)
    added = catalogue.add_translation("winback", "fr-FR", "Avant de partir", "Restez")
    assert (added.locale, added.version) == ("fr-FR", 1)
