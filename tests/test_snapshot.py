"""The request path's catalogue snapshot: resolution rules, refresh, several apps, outages."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from flask_retention.catalogue.snapshot import CatalogueSnapshot
from flask_retention.catalogue.store import Catalogue

from .catalogue_support import bullet_png, full_png, migrated_engine, retention_app
from .support import in_forked_child, state_of
from .tcp_proxy import TCPProxy

SANDBOX, PRODUCTION = "Sandbox", "Production"


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Wait until ``condition()`` is true; fail after a generous ``timeout`` (not a speed test)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = migrated_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def catalogue(engine: sa.Engine) -> Catalogue:
    return Catalogue(engine)


@pytest.fixture
def snapshot(engine: sa.Engine) -> Iterator[CatalogueSnapshot]:
    snap = CatalogueSnapshot(lambda: engine, interval=0.05)
    yield snap
    snap.close()


def approve(catalogue: Catalogue, kind: str, key: uuid.UUID, environment: str = SANDBOX) -> None:
    catalogue.record_apple_state(kind, key, environment, "APPROVED")  # type: ignore[arg-type]


# -- resolution -------------------------------------------------------------------


def test_empty_before_the_first_load(snapshot: CatalogueSnapshot, catalogue: Catalogue) -> None:
    catalogue.add_message("plain", "Stay", "Body")
    assert snapshot.view.lookup("plain", SANDBOX) is None
    assert snapshot.version is None


def test_unapproved_name_resolves_to_its_newest_version(
    snapshot: CatalogueSnapshot, catalogue: Catalogue
) -> None:
    message = catalogue.add_message("plain", "Stay", "Body")
    snapshot.refresh()
    facts = snapshot.view.lookup("plain", SANDBOX)
    assert facts is not None
    assert facts.uuid == message.uuid
    assert facts.name == "plain"
    assert facts.state is None
    assert not facts.approved


def test_edited_message_keeps_serving_its_approved_version_during_review(
    snapshot: CatalogueSnapshot, catalogue: Catalogue
) -> None:
    old = catalogue.add_message("plain", "Stay", "Body")
    approve(catalogue, "message", old.uuid, SANDBOX)
    new = catalogue.add_message("plain", "Stay", "New body")
    catalogue.record_apple_state("message", new.uuid, SANDBOX, "PENDING")
    snapshot.refresh()
    sandbox = snapshot.view.lookup("plain", SANDBOX)
    production = snapshot.view.lookup("plain", PRODUCTION)
    assert sandbox is not None
    assert sandbox.uuid == old.uuid
    assert sandbox.approved
    assert production is not None
    assert production.uuid == new.uuid
    assert not production.approved

    approve(catalogue, "message", new.uuid, SANDBOX)
    snapshot.refresh()
    sandbox = snapshot.view.lookup("plain", SANDBOX)
    assert sandbox is not None
    assert sandbox.uuid == new.uuid


def test_a_message_is_approved_only_with_its_images(
    snapshot: CatalogueSnapshot, catalogue: Catalogue
) -> None:
    hero = catalogue.add_image("hero", full_png())
    tick = catalogue.add_image("tick", bullet_png())
    message = catalogue.add_message(
        "rich",
        "Header",
        "Body",
        image="hero",
        image_alt_text="alt",
        bullet_points=[("point", "tick", "alt")],
    )
    approve(catalogue, "message", message.uuid)
    snapshot.refresh()
    facts = snapshot.view.lookup("rich", SANDBOX)
    assert facts is not None
    assert facts.has_image
    assert facts.has_bullets
    assert facts.image_state is None
    assert not facts.bullet_images_approved
    assert not facts.approved

    approve(catalogue, "image", hero.uuid)
    approve(catalogue, "image", tick.uuid)
    snapshot.refresh()
    facts = snapshot.view.lookup("rich", SANDBOX)
    assert facts is not None
    assert facts.image_state == "APPROVED"
    assert facts.bullet_images_approved
    assert facts.approved


def test_uuids_resolve_as_uuid_or_string_including_retired_versions(
    snapshot: CatalogueSnapshot, catalogue: Catalogue
) -> None:
    old = catalogue.add_message("plain", "Stay", "Body")
    catalogue.add_message("plain", "Stay", "Edited")
    approve(catalogue, "message", old.uuid)
    snapshot.refresh()
    by_object = snapshot.view.lookup(old.uuid, SANDBOX)
    by_string = snapshot.view.lookup(str(old.uuid), SANDBOX)
    assert by_object is not None
    assert by_object == by_string
    assert by_object.state == "APPROVED"
    assert snapshot.view.lookup(uuid.uuid4(), SANDBOX) is None
    assert snapshot.view.lookup("no-such-name", SANDBOX) is None


def test_a_retired_name_no_longer_resolves(
    snapshot: CatalogueSnapshot, catalogue: Catalogue
) -> None:
    message = catalogue.add_message("plain", "Stay", "Body")
    approve(catalogue, "message", message.uuid)
    catalogue.retire_message("plain")
    snapshot.refresh()
    assert snapshot.view.lookup("plain", SANDBOX) is None
    assert snapshot.view.lookup(message.uuid, SANDBOX) is not None


def test_a_name_wins_over_a_uuid_like_string(
    snapshot: CatalogueSnapshot, catalogue: Catalogue
) -> None:
    other = catalogue.add_message("plain", "Stay", "Body")
    name = str(other.uuid)
    named = catalogue.add_message(name, "Odd", "A name that looks like a UUID")
    snapshot.refresh()
    facts = snapshot.view.lookup(name, SANDBOX)
    assert facts is not None
    assert facts.uuid == named.uuid


def test_defaults_resolve_like_names_per_environment(
    snapshot: CatalogueSnapshot, catalogue: Catalogue
) -> None:
    old = catalogue.add_message("plain", "Stay", "Body")
    catalogue.set_default("com.example.monthly", "en-US", "plain")
    approve(catalogue, "message", old.uuid, PRODUCTION)
    new = catalogue.add_message("plain", "Stay", "Edited")
    snapshot.refresh()
    production = snapshot.default_for("com.example.monthly", "en-US", PRODUCTION)
    sandbox = snapshot.default_for("com.example.monthly", "en-US", SANDBOX)
    assert production is not None
    assert production.uuid == old.uuid
    assert sandbox is not None
    assert sandbox.uuid == new.uuid
    assert snapshot.default_for("com.example.monthly", "fr-FR", SANDBOX) is None


def test_refresh_reloads_only_when_the_version_moved(
    snapshot: CatalogueSnapshot, catalogue: Catalogue
) -> None:
    assert snapshot.refresh() is True
    view = snapshot.view
    assert snapshot.refresh() is False
    assert snapshot.view is view
    catalogue.add_message("plain", "Stay", "Body")
    assert snapshot.refresh() is True
    assert snapshot.version == catalogue.version


# -- the background thread ------------------------------------------------------------


def refresh_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "flask-retention-catalogue"]


def test_ready_starts_the_refresh_thread_and_close_stops_it(
    engine: sa.Engine, catalogue: Catalogue
) -> None:
    before = refresh_threads()
    catalogue.add_message("plain", "Stay", "Body")
    snap = CatalogueSnapshot(lambda: engine, interval=0.05)
    try:
        assert refresh_threads() == before  # nothing runs until it is needed
        assert snap.ready(30) is True
        assert snap.lookup("plain", SANDBOX) is not None
        catalogue.add_message("second", "Stay", "Body")
        wait_for(lambda: snap.lookup("second", SANDBOX) is not None, "the background refresh")
    finally:
        snap.close()
    assert refresh_threads() == before
    catalogue.add_message("third", "Stay", "Body")
    time.sleep(0.3)  # six refresh intervals: nothing refreshes a closed snapshot
    assert snap.lookup("third", SANDBOX) is None
    try:
        assert snap.ready(30) is True  # starts again, as Retention.close() promises
        wait_for(lambda: snap.lookup("third", SANDBOX) is not None, "the restarted refresh")
    finally:
        snap.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_starts_its_own_refresh_thread(
    tmp_path: Path, engine: sa.Engine, catalogue: Catalogue
) -> None:
    catalogue.add_message("plain", "Stay", "Body")
    snap = CatalogueSnapshot(lambda: engine, interval=0.05)
    try:
        assert snap.ready(30)

        def child() -> str:  # the parent's thread does not exist here
            engine.dispose(close=False)  # the parent's connections are the parent's
            inherited = refresh_threads()
            Catalogue(engine).add_message("child", "Stay", "Body")
            ready = snap.ready(30)
            wait_for(lambda: snap.lookup("child", SANDBOX) is not None, "the child's refresh")
            return f"{inherited} {ready} {len(refresh_threads())}"

        assert in_forked_child(child) == "[] True 1"
    finally:
        snap.close()


def is_loaded(snap: CatalogueSnapshot) -> bool:
    """``snap.loaded``, read afresh: mypy would keep an earlier check's narrowing of
    ``snap.loaded`` across the calls that change it."""
    return snap.loaded


def test_ready_waits_for_the_first_load(engine: sa.Engine, catalogue: Catalogue) -> None:
    """A fresh worker's first request must not miss the catalogue (bounded wait)."""
    message = catalogue.add_message("plain", "Stay", "Body")
    snap = CatalogueSnapshot(lambda: engine, interval=60)
    try:
        assert is_loaded(snap) is False
        assert snap.ready(30) is True
        assert is_loaded(snap) is True
        facts = snap.lookup("plain", SANDBOX)
        assert facts is not None
        assert facts.uuid == message.uuid
    finally:
        snap.close()


def test_ready_gives_up_after_its_timeout_while_the_load_hangs(catalogue: Catalogue) -> None:
    release = threading.Event()

    def slow_engine() -> sa.Engine:
        release.wait(30)
        raise RuntimeError("database not reachable yet")

    snap = CatalogueSnapshot(slow_engine, interval=60)
    try:
        started = time.monotonic()
        assert snap.ready(0.05) is False
        assert time.monotonic() - started < 10
        assert snap.lookup("plain", SANDBOX) is None  # empty, not stuck
    finally:
        release.set()
        snap.close()


def test_a_failed_first_load_answers_at_once_and_says_so(
    catalogue: Catalogue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_retention")

    def no_database() -> sa.Engine:
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))

    snap = CatalogueSnapshot(no_database, interval=60)
    try:
        assert snap.ready(30) is False
        started = time.monotonic()
        assert snap.ready(30) is False  # the attempt is over: no second wait
        assert time.monotonic() - started < 5
        assert "could not load the catalogue" in caplog.text
        assert "catalogue_unavailable" in caplog.text
    finally:
        snap.close()


def test_the_extension_loads_its_snapshot_on_warm_up(database_url: str, tmp_path: Path) -> None:
    migrated_engine(database_url).dispose()
    with retention_app(tmp_path, database_url, mode="uri") as (app, retention):
        with app.app_context():
            retention.catalogue.add_message("plain", "Stay", "Body")
        assert retention.stats(app).catalogue.loaded is False
        assert retention.warm_up(app) is True
        stats = retention.stats(app).catalogue
        assert stats.loaded is True
        with app.app_context():
            assert stats.version == retention.catalogue.version


def test_a_change_in_one_app_is_seen_by_another_sharing_the_database(
    database_url: str, tmp_path: Path
) -> None:
    migrated_engine(database_url).dispose()
    with (
        retention_app(tmp_path / "one", database_url, mode="uri") as (first, first_retention),
        retention_app(tmp_path / "two", database_url, mode="engine") as (second, _),
    ):
        lookup = state_of(second).lookup
        assert lookup.ready(30)
        assert lookup.lookup("winback", SANDBOX) is None
        with first.app_context():
            message = first_retention.catalogue.add_message("winback", "Stay", "Body")
        wait_for(lambda: lookup.lookup("winback", SANDBOX) is not None, "the second app")
        with first.app_context():
            first_retention.catalogue.record_apple_state(
                "message", message.uuid, SANDBOX, "APPROVED"
            )

        def approved() -> bool:
            facts = lookup.lookup("winback", SANDBOX)
            return facts is not None and facts.approved

        wait_for(approved, "the approval in the second app")


def test_failures_are_logged_once_per_outage_and_lookups_keep_working(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flask_retention")
    path = tmp_path / "catalogue.db"
    engine = migrated_engine(f"sqlite:///{path}")
    Catalogue(engine).add_message("plain", "Stay", "Body")
    calls = 0
    broken = threading.Event()

    def factory() -> sa.Engine:
        nonlocal calls
        calls += 1
        if broken.is_set():
            raise sa.exc.OperationalError("SELECT 1", {}, Exception("database is gone"))
        return engine

    snap = CatalogueSnapshot(factory, interval=0.01)
    try:
        snap.refresh()
        broken.set()
        snap.start()
        start = calls
        wait_for(lambda: calls > start + 5, "several failed checks")
        assert snap.lookup("plain", SANDBOX) is not None
        failures = [r for r in caplog.records if "could not refresh" in r.getMessage()]
        assert len(failures) == 1
        assert "database is gone" in failures[0].getMessage()
        broken.clear()
        wait_for(lambda: any("again" in r.getMessage() for r in caplog.records), "the recovery log")
    finally:
        snap.close()
        engine.dispose()


POSTGRES = os.environ.get("RETENTION_TEST_DATABASE_URL")


@pytest.mark.postgresql
@pytest.mark.skipif(not POSTGRES, reason="needs RETENTION_TEST_DATABASE_URL (PostgreSQL)")
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_lookups_resolve_from_the_last_snapshot_while_postgresql_is_unreachable(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flask_retention")
    direct = migrated_engine(database_url)
    catalogue = Catalogue(direct)
    old = catalogue.add_message("plain", "Stay", "Body")
    approve(catalogue, "message", old.uuid)
    url = sa.make_url(database_url)
    assert url.host is not None
    with TCPProxy(url.host, url.port or 5432) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        with retention_app(tmp_path, proxied, mode="uri") as (app, _):
            lookup = state_of(app).lookup
            assert isinstance(lookup, CatalogueSnapshot)
            lookup.refresh()
            lookup.start()
            proxy.cut()
            new = catalogue.add_message("plain", "Stay", "Edited during the outage")
            catalogue.add_message("fresh", "New", "Added during the outage")
            wait_for(
                lambda: any("could not refresh" in r.getMessage() for r in caplog.records),
                "the outage to be noticed",
            )
            facts = lookup.lookup("plain", SANDBOX)
            assert facts is not None
            assert facts.uuid == old.uuid
            assert facts.approved
            assert lookup.lookup("fresh", SANDBOX) is None

            proxy.restore()
            wait_for(lambda: lookup.lookup("fresh", SANDBOX) is not None, "the reload")
            facts = lookup.lookup("plain", SANDBOX)
            assert facts is not None
            assert facts.uuid == old.uuid
            assert lookup.lookup(new.uuid, SANDBOX) is not None
            failures = [r for r in caplog.records if "could not refresh" in r.getMessage()]
            assert len(failures) == 1
    direct.dispose()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_worker_drops_the_parents_pooled_connections(
    database_url: str, tmp_path: Path
) -> None:
    migrated_engine(database_url).dispose()
    with retention_app(tmp_path, database_url, mode="uri") as (app, _):
        database = state_of(app).database
        with database.engine.connect() as connection:  # the parent's pool holds a connection
            connection.execute(sa.text("SELECT 1"))
        parent_pool = database.engine.pool

        def child() -> str:
            engine = database.engine
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
            return f"{engine.pool is parent_pool} {database.engine.pool is engine.pool}"

        assert in_forked_child(child) == "False True"
        assert database.engine.pool is parent_pool  # the parent keeps its own
