"""The catalogue's Python API: images, messages, defaults, import, export, Apple's state.

Every test runs on SQLite and PostgreSQL, with a plain engine and with
Flask-SQLAlchemy.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask

from flask_retention import Retention
from flask_retention.catalogue.entries import (
    BulletPointEntry,
    CatalogueDocument,
    DefaultEntry,
    MessageEntry,
)
from flask_retention.catalogue.png import encode_png
from flask_retention.catalogue.store import Catalogue
from flask_retention.catalogue.validation import CatalogueError, check_image

from .catalogue_support import bullet_png, full_png, migrated_engine, retention_app


@pytest.fixture(params=["engine", "flask-sqlalchemy"])
def app_and_retention(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> Iterator[tuple[Flask, Retention]]:
    migrated_engine(database_url).dispose()
    with retention_app(tmp_path, database_url, mode=request.param) as pair:
        yield pair


@pytest.fixture
def catalogue(app_and_retention: tuple[Flask, Retention]) -> Iterator[Catalogue]:
    app, retention = app_and_retention
    with app.app_context():
        yield retention.catalogue


def seed(catalogue: Catalogue) -> None:
    catalogue.add_image("hero", full_png())
    catalogue.add_image("tick", bullet_png())
    catalogue.add_message(
        "winback",
        "Before you go",
        "Your plan includes offline mode.",
        image="hero",
        image_alt_text="A family reading",
        header_position="ABOVE_IMAGE",
        bullet_points=[("Offline mode", "tick", "tick")],
    )
    catalogue.add_message("plain", "Stay", "We would miss you.")
    catalogue.set_default("com.example.monthly", "en-US", "winback")


def document(header: str = "Before you go", hero: bytes | None = None) -> CatalogueDocument:
    return CatalogueDocument(
        images=(
            check_image(hero or full_png(), name="hero"),
            check_image(bullet_png(), name="tick"),
        ),
        messages=(
            MessageEntry(
                name="winback",
                header=header,
                body="Your plan includes offline mode.",
                image="hero",
                image_alt_text="A family reading",
                header_position="ABOVE_IMAGE",
                bullet_points=(BulletPointEntry("Offline mode", "tick", "tick"),),
            ),
            MessageEntry(name="plain", header="Stay", body="We would miss you."),
        ),
        defaults=(DefaultEntry("com.example.monthly", "en-US", "winback"),),
    )


def snapshot_of(catalogue: Catalogue) -> tuple[object, ...]:
    """Everything stored, to compare before and after."""
    return (
        catalogue.version,
        [(i.name, i.version, i.uuid, i.retired) for i in catalogue.image_versions()],
        [(m.name, m.version, m.uuid, m.retired) for m in catalogue.message_versions()],
        catalogue.list_defaults(),
    )


# -- images -------------------------------------------------------------------------


def test_add_image_infers_size_and_keeps_the_bytes(catalogue: Catalogue) -> None:
    data = full_png()
    image = catalogue.add_image("hero", data)
    assert (image.name, image.size, image.width, image.height) == ("hero", "FULL_SIZE", 3840, 400)
    assert image.version == 1
    assert not image.retired
    assert catalogue.get_image("hero") == image
    assert catalogue.image_data("hero") == data
    assert catalogue.image_data(image.uuid) == data
    assert [i.name for i in catalogue.list_images()] == ["hero"]


def test_add_image_from_a_path(catalogue: Catalogue, tmp_path: Path) -> None:
    path = tmp_path / "tick.png"
    path.write_bytes(bullet_png())
    assert catalogue.add_image("tick", path).size == "BULLET_POINT"


def test_add_image_refuses_transparency_and_stores_nothing(catalogue: Catalogue) -> None:
    before = snapshot_of(catalogue)
    with pytest.raises(CatalogueError, match="hero"):
        catalogue.add_image("hero", encode_png(3840, 400, alpha=True))
    assert snapshot_of(catalogue) == before
    assert catalogue.get_image("hero") is None


def test_adding_the_same_image_again_changes_nothing(catalogue: Catalogue) -> None:
    first = catalogue.add_image("hero", full_png())
    version = catalogue.version
    assert catalogue.add_image("hero", full_png()) == first
    assert catalogue.version == version


def test_changed_image_is_a_new_version_and_so_are_its_messages(catalogue: Catalogue) -> None:
    seed(catalogue)
    old_image = catalogue.get_image("hero")
    old_message = catalogue.get_message("winback")
    plain = catalogue.get_message("plain")
    assert old_image is not None
    assert old_message is not None
    new_image = catalogue.add_image("hero", full_png(color=(200, 0, 0)))
    assert new_image.uuid != old_image.uuid
    assert new_image.version == 2
    message = catalogue.get_message("winback")
    assert message is not None
    assert message.uuid != old_message.uuid
    assert message.version == 2
    assert message.image_uuid == new_image.uuid
    assert message.header == old_message.header
    assert catalogue.get_message("plain") == plain
    versions = {(i.name, i.version): i.retired for i in catalogue.image_versions()}
    assert versions == {("hero", 1): True, ("hero", 2): False, ("tick", 1): False}


def test_changed_bullet_image_makes_a_new_message_version(catalogue: Catalogue) -> None:
    seed(catalogue)
    old = catalogue.get_message("winback")
    tick = catalogue.add_image("tick", bullet_png(color=(1, 2, 3)))
    new = catalogue.get_message("winback")
    assert old is not None
    assert new is not None
    assert new.uuid != old.uuid
    assert new.bullet_points[0].image_uuid == tick.uuid
    assert new.image_uuid == old.image_uuid


def test_retire_image(catalogue: Catalogue) -> None:
    catalogue.add_image("hero", full_png())
    catalogue.retire_image("hero")
    assert catalogue.get_image("hero") is None
    assert catalogue.list_images() == []
    (version,) = catalogue.image_versions()
    assert version.retired


def test_retire_image_in_use_is_refused(catalogue: Catalogue) -> None:
    seed(catalogue)
    with pytest.raises(CatalogueError, match="winback"):
        catalogue.retire_image("tick")
    assert catalogue.get_image("tick") is not None


def test_retire_unknown_image_says_so(catalogue: Catalogue) -> None:
    with pytest.raises(CatalogueError, match="no such image"):
        catalogue.retire_image("nope")


# -- messages -----------------------------------------------------------------------


def test_add_message_with_image_and_bullets(catalogue: Catalogue) -> None:
    seed(catalogue)
    message = catalogue.get_message("winback")
    hero, tick = catalogue.get_image("hero"), catalogue.get_image("tick")
    assert message is not None
    assert hero is not None
    assert tick is not None
    assert message.image == "hero"
    assert message.image_uuid == hero.uuid
    assert message.header_position == "ABOVE_IMAGE"
    assert [(b.text, b.image, b.image_uuid, b.alt_text) for b in message.bullet_points] == [
        ("Offline mode", "tick", tick.uuid, "tick")
    ]
    assert [m.name for m in catalogue.list_messages()] == ["plain", "winback"]


def test_bullet_points_keep_their_order(catalogue: Catalogue) -> None:
    catalogue.add_image("tick", bullet_png())
    texts = [f"point {i}" for i in range(5)]
    catalogue.add_message(
        "many",
        "Header",
        "Body",
        bullet_points=[BulletPointEntry(t, "tick", t) for t in reversed(texts)],
    )
    message = catalogue.get_message("many")
    assert message is not None
    assert [b.text for b in message.bullet_points] == list(reversed(texts))


def test_changed_text_is_a_new_version_and_the_old_one_retired(catalogue: Catalogue) -> None:
    seed(catalogue)
    old = catalogue.get_message("winback")
    assert old is not None
    new = catalogue.add_message(
        "winback",
        "Wait!",
        old.body,
        image="hero",
        image_alt_text="A family reading",
        header_position="ABOVE_IMAGE",
        bullet_points=[("Offline mode", "tick", "tick")],
    )
    assert new.uuid != old.uuid
    assert new.version == 2
    assert new.header == "Wait!"
    versions = [
        (m.version, m.uuid, m.retired) for m in catalogue.message_versions() if m.name == "winback"
    ]
    assert versions == [(1, old.uuid, True), (2, new.uuid, False)]
    assert catalogue.list_defaults() == [DefaultEntry("com.example.monthly", "en-US", "winback")]


def test_same_message_again_changes_nothing(catalogue: Catalogue) -> None:
    first = catalogue.add_message("plain", "Stay", "We would miss you.")
    version = catalogue.version
    assert catalogue.add_message("plain", "Stay", "We would miss you.") == first
    assert catalogue.version == version


def test_add_message_refuses_an_unknown_image(catalogue: Catalogue) -> None:
    with pytest.raises(CatalogueError, match="image") as info:
        catalogue.add_message("m", "Header", "Body", image="ghost", image_alt_text="alt")
    assert "ghost" in str(info.value)
    assert catalogue.get_message("m") is None


def test_add_message_refuses_a_bullet_point_image_as_main_image(catalogue: Catalogue) -> None:
    catalogue.add_image("tick", bullet_png())
    with pytest.raises(CatalogueError, match="FULL_SIZE"):
        catalogue.add_message("m", "Header", "Body", image="tick", image_alt_text="alt")


def test_add_message_refuses_a_header_over_apples_limit(catalogue: Catalogue) -> None:
    with pytest.raises(CatalogueError, match="header"):
        catalogue.add_message("m", "x" * 67, "Body")
    assert catalogue.list_messages() == []


def test_retire_message(catalogue: Catalogue) -> None:
    catalogue.add_message("plain", "Stay", "We would miss you.")
    catalogue.retire_message("plain")
    assert catalogue.get_message("plain") is None
    assert [m.retired for m in catalogue.message_versions()] == [True]


def test_re_adding_a_retired_message_is_a_new_version(catalogue: Catalogue) -> None:
    old = catalogue.add_message("plain", "Stay", "We would miss you.")
    catalogue.retire_message("plain")
    new = catalogue.add_message("plain", "Stay", "We would miss you.")
    assert new.version == 2
    assert new.uuid != old.uuid


def test_retire_message_used_by_a_default_is_refused(catalogue: Catalogue) -> None:
    seed(catalogue)
    with pytest.raises(CatalogueError, match=r"com\.example\.monthly/en-US"):
        catalogue.retire_message("winback")
    assert catalogue.get_message("winback") is not None


# -- defaults -----------------------------------------------------------------------


def test_set_and_remove_default(catalogue: Catalogue) -> None:
    catalogue.add_message("plain", "Stay", "We would miss you.")
    catalogue.add_message("other", "Go", "Bye.")
    assert catalogue.set_default("com.example.yearly", "fr-FR", "plain") == ()
    catalogue.set_default("com.example.yearly", "fr-FR", "other")
    assert catalogue.list_defaults() == [DefaultEntry("com.example.yearly", "fr-FR", "other")]
    assert catalogue.remove_default("com.example.yearly", "fr-FR") is True
    assert catalogue.remove_default("com.example.yearly", "fr-FR") is False
    assert catalogue.list_defaults() == []


def test_default_for_an_unknown_message_is_refused(catalogue: Catalogue) -> None:
    with pytest.raises(CatalogueError, match="ghost"):
        catalogue.set_default("com.example.yearly", "en-US", "ghost")
    assert catalogue.list_defaults() == []


def test_default_with_an_unknown_locale_is_a_warning(catalogue: Catalogue) -> None:
    catalogue.add_message("plain", "Stay", "We would miss you.")
    warnings = catalogue.set_default("com.example.yearly", "xx-XX", "plain")
    assert warnings
    assert "xx-XX" in warnings[0]
    assert len(catalogue.list_defaults()) == 1


# -- import and export --------------------------------------------------------------


def test_import_adds_everything(catalogue: Catalogue) -> None:
    result = catalogue.import_document(document())
    assert result.images_added == ("hero", "tick")
    assert result.messages_added == ("winback", "plain")
    assert result.defaults_set == ("com.example.monthly/en-US",)
    assert result.changes == 5
    assert [m.name for m in catalogue.list_messages()] == ["plain", "winback"]


def test_importing_the_same_document_twice_changes_nothing(catalogue: Catalogue) -> None:
    catalogue.import_document(document())
    before = snapshot_of(catalogue)
    result = catalogue.import_document(document())
    assert result.changes == 0
    assert result.summary() == "no changes"
    assert snapshot_of(catalogue) == before


def test_import_of_changed_text_makes_a_new_version(catalogue: Catalogue) -> None:
    catalogue.import_document(document())
    old = catalogue.get_message("winback")
    result = catalogue.import_document(document(header="Wait, there is more"))
    assert result.messages_changed == ("winback",)
    assert result.changes == 1
    new = catalogue.get_message("winback")
    assert old is not None
    assert new is not None
    assert new.uuid != old.uuid
    assert new.header == "Wait, there is more"
    assert catalogue.list_defaults()[0].message == "winback"


def test_import_of_a_changed_image_versions_the_messages_using_it(catalogue: Catalogue) -> None:
    catalogue.import_document(document())
    catalogue.add_message("also", "Hero too", "Body", image="hero", image_alt_text="alt")
    result = catalogue.import_document(document(hero=full_png(color=(9, 9, 9))))
    assert result.images_changed == ("hero",)
    assert sorted(result.messages_changed) == ["also", "winback"]
    plain = [m for m in catalogue.message_versions() if m.name == "plain"]
    assert len(plain) == 1


def test_a_bad_document_changes_nothing(catalogue: Catalogue) -> None:
    catalogue.import_document(document())
    before = snapshot_of(catalogue)
    bad = CatalogueDocument(
        images=(check_image(full_png(color=(5, 5, 5)), name="hero"),),
        messages=(
            MessageEntry(name="plain", header="Changed", body="Changed"),
            MessageEntry(name="broken", header="H", body="B", image="ghost", image_alt_text="a"),
        ),
    )
    with pytest.raises(CatalogueError) as info:
        catalogue.import_document(bad)
    assert any("broken" in e and "ghost" in e for e in info.value.errors)
    assert snapshot_of(catalogue) == before


def test_a_bad_file_changes_nothing_and_names_entry_and_field(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    catalogue.import_document(document())
    before = snapshot_of(catalogue)
    path = tmp_path / "catalogue.json"
    path.write_text(
        json.dumps(
            {
                "messages": [
                    {"name": "plain", "header": "New text", "body": "New body"},
                    {"name": "long", "header": "x" * 70, "body": "ok"},
                ]
            }
        )
    )
    with pytest.raises(CatalogueError) as info:
        catalogue.import_file(path)
    assert any("long" in e and "header" in e for e in info.value.errors)
    assert snapshot_of(catalogue) == before


def test_import_keeps_entries_the_document_does_not_list(catalogue: Catalogue) -> None:
    catalogue.import_document(document())
    catalogue.add_message("extra", "Extra", "Kept")
    result = catalogue.import_document(document())
    assert result.changes == 0
    assert catalogue.get_message("extra") is not None


def test_import_with_prune_retires_what_the_document_does_not_list(catalogue: Catalogue) -> None:
    catalogue.import_document(document())
    catalogue.add_image("spare", full_png(color=(1, 1, 1)))
    catalogue.add_message("extra", "Extra", "Gone", image="spare", image_alt_text="alt")
    catalogue.set_default("com.example.yearly", "en-US", "extra")
    result = catalogue.import_document(document(), prune=True)
    assert result.messages_retired == ("extra",)
    assert result.images_retired == ("spare",)
    assert result.defaults_removed == ("com.example.yearly/en-US",)
    assert catalogue.get_message("extra") is None
    assert catalogue.get_image("spare") is None
    assert catalogue.list_defaults() == [DefaultEntry("com.example.monthly", "en-US", "winback")]


def test_import_may_refer_to_images_already_stored(catalogue: Catalogue) -> None:
    catalogue.add_image("hero", full_png())
    doc = CatalogueDocument(
        messages=(MessageEntry(name="m", header="H", body="B", image="hero", image_alt_text="a"),)
    )
    assert catalogue.import_document(doc).messages_added == ("m",)
    with pytest.raises(CatalogueError, match="hero"):
        catalogue.import_document(doc, prune=True)


def test_export_then_import_changes_nothing(catalogue: Catalogue) -> None:
    seed(catalogue)
    catalogue.add_message("plain", "Stay", "Changed, so there is a retired version.")
    exported = catalogue.export_document()
    assert [m.name for m in exported.messages] == ["plain", "winback"]
    assert exported.messages[0].body == "Changed, so there is a retired version."
    assert catalogue.import_document(exported).changes == 0


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_export_file_imports_into_another_database(
    catalogue: Catalogue, tmp_path: Path, suffix: str
) -> None:
    seed(catalogue)
    path = tmp_path / "out" / f"catalogue{suffix}"
    path.parent.mkdir()
    catalogue.export_file(path)
    other_engine = migrated_engine(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        other = Catalogue(other_engine)
        result = other.import_file(path)
        assert result.messages_added
        assert result.images_added
        assert other.export_document() == catalogue.export_document()
        assert other.import_file(path).changes == 0
    finally:
        other_engine.dispose()


# -- Apple's state, defaults at Apple, real-time URL ----------------------------------


def test_record_apple_state_per_environment(catalogue: Catalogue) -> None:
    seed(catalogue)
    message = catalogue.get_message("winback")
    assert message is not None
    version = catalogue.version
    assert catalogue.record_apple_state("message", message.uuid, "Sandbox", "PENDING")
    assert catalogue.version == version + 1
    assert not catalogue.record_apple_state("message", message.uuid, "Sandbox", "PENDING")
    assert catalogue.version == version + 1
    stored = catalogue.get_message("winback")
    assert stored is not None
    assert stored.state("Sandbox") == "PENDING"
    assert stored.state("Production") is None


def test_record_many_states_and_times(catalogue: Catalogue) -> None:
    seed(catalogue)
    images = catalogue.list_images()
    when = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    changed = catalogue.record_apple_states(
        "image", "Production", {i.uuid: "APPROVED" for i in images}, uploaded_at=when, seen_at=when
    )
    assert changed == 2
    for image in catalogue.image_versions():
        status = image.apple["Production"]
        assert status.state == "APPROVED"
        assert status.uploaded_at == when
        assert status.last_seen_at == when


def test_forget_apple_state(catalogue: Catalogue) -> None:
    key = uuid.uuid4()
    catalogue.record_apple_state("message", key, "Sandbox", "APPROVED")
    assert catalogue.forget_apple_state("message", key, "Sandbox") is True
    assert catalogue.forget_apple_state("message", key, "Sandbox") is False


def test_record_apple_state_refuses_unknown_values(catalogue: Catalogue) -> None:
    key = uuid.uuid4()
    with pytest.raises(ValueError, match="environment"):
        catalogue.record_apple_state("message", key, "Staging", "APPROVED")
    with pytest.raises(ValueError, match="state"):
        catalogue.record_apple_state("message", key, "Sandbox", "LIVE")
    with pytest.raises(ValueError, match="kind"):
        catalogue.record_apple_state("video", key, "Sandbox", "APPROVED")  # type: ignore[arg-type]


def test_apple_defaults_per_environment(catalogue: Catalogue) -> None:
    key = uuid.uuid4()
    catalogue.record_apple_default("com.example.monthly", "en-US", "Sandbox", key)
    assert catalogue.apple_defaults("Sandbox") == {("com.example.monthly", "en-US"): key}
    assert catalogue.apple_defaults("Production") == {}
    other = uuid.uuid4()
    catalogue.record_apple_default("com.example.monthly", "en-US", "Sandbox", other)
    assert catalogue.apple_defaults("Sandbox") == {("com.example.monthly", "en-US"): other}
    catalogue.record_apple_default("com.example.monthly", "en-US", "Sandbox", None)
    assert catalogue.apple_defaults("Sandbox") == {}


def test_realtime_url_per_environment(catalogue: Catalogue) -> None:
    assert catalogue.realtime_url("Sandbox") is None
    catalogue.record_realtime_url("Sandbox", "https://example.com/retention/realtime")
    catalogue.record_realtime_url("Sandbox", "https://example.com/v2")
    assert catalogue.realtime_url("Sandbox") == "https://example.com/v2"
    assert catalogue.realtime_url("Production") is None
    catalogue.record_realtime_url("Sandbox", None)
    assert catalogue.realtime_url("Sandbox") is None


def test_concurrent_writers_are_serialised(catalogue: Catalogue) -> None:
    from concurrent.futures import ThreadPoolExecutor

    version = catalogue.version
    bodies = [f"Body number {i}" for i in range(6)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda body: catalogue.add_message("shared", "Header", body), bodies))
    versions = [m for m in catalogue.message_versions() if m.name == "shared"]
    assert [m.version for m in versions] == [1, 2, 3, 4, 5, 6]
    assert sum(not m.retired for m in versions) == 1
    assert len({m.uuid for m in versions}) == 6
    assert catalogue.version == version + 6
