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

from flask_retention.catalogue import Catalogue
from flask_retention.extension import get_state
from flask_retention.snapshot import CatalogueSnapshot

from .catalogue_support import bullet_png, full_png, migrated_engine, retention_app
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


def test_a_refresh_thread_that_ends_is_started_again(
    engine: sa.Engine, catalogue: Catalogue
) -> None:
    catalogue.add_message("plain", "Stay", "Body")
    snap = CatalogueSnapshot(lambda: engine, interval=0.05)
    try:
        snap.lookup("plain", SANDBOX)
        thread = snap._thread
        assert thread is not None
        snap._stop.set()  # the thread ends on its own, not through close()
        thread.join(5)
        assert not thread.is_alive()
        snap.lookup("plain", SANDBOX)
        assert snap._thread is not thread
        assert snap._thread is not None
        assert snap._thread.is_alive()
    finally:
        snap.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_starts_its_own_refresh_thread(
    tmp_path: Path, engine: sa.Engine, catalogue: Catalogue
) -> None:
    catalogue.add_message("plain", "Stay", "Body")
    snap = CatalogueSnapshot(lambda: engine, interval=3600)
    try:
        wait_for(lambda: snap.lookup("plain", SANDBOX) is not None, "the first load")
        parent_thread = snap._thread
        pid = os.fork()
        if pid == 0:  # the child: the parent's thread does not exist here
            code = 1
            try:
                fresh = not snap._running
                snap.lookup("plain", SANDBOX)
                started = snap._thread is not parent_thread and snap._thread.is_alive()
                (tmp_path / "child.txt").write_text(f"{fresh} {started}")
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert (tmp_path / "child.txt").read_text() == "True True"
        assert snap._running
    finally:
        snap.close()


def test_thread_starts_on_first_lookup_and_stops_on_close(
    engine: sa.Engine, catalogue: Catalogue
) -> None:
    catalogue.add_message("plain", "Stay", "Body")
    snap = CatalogueSnapshot(lambda: engine, interval=0.05)
    try:
        assert snap._thread is None
        snap.lookup("plain", SANDBOX)
        thread = snap._thread
        assert thread is not None
        assert thread.is_alive()
        wait_for(lambda: snap.lookup("plain", SANDBOX) is not None, "the first load")
    finally:
        snap.close()
    assert not thread.is_alive()
    try:
        snap.lookup("plain", SANDBOX)  # restarts when needed, as Retention.close() promises
        assert snap._thread is not thread
        assert snap._thread is not None
        assert snap._thread.is_alive()
    finally:
        snap.close()
    assert not snap._thread.is_alive()


def test_the_first_lookup_waits_for_the_first_load(engine: sa.Engine, catalogue: Catalogue) -> None:
    """A fresh worker's first request must not miss the catalogue (bounded wait)."""
    message = catalogue.add_message("plain", "Stay", "Body")
    snap = CatalogueSnapshot(lambda: engine, interval=60, first_load_wait=30)
    try:
        facts = snap.lookup("plain", SANDBOX)
        assert facts is not None
        assert facts.uuid == message.uuid
    finally:
        snap.close()


def test_the_first_lookup_gives_up_waiting_after_first_load_wait(
    catalogue: Catalogue,
) -> None:
    catalogue.add_message("plain", "Stay", "Body")
    release = threading.Event()

    def slow_engine() -> sa.Engine:
        release.wait(30)
        raise RuntimeError("database not reachable yet")

    snap = CatalogueSnapshot(slow_engine, interval=60, first_load_wait=0.01)
    try:
        assert snap.lookup("plain", SANDBOX) is None  # empty, not stuck
    finally:
        release.set()
        snap.close()


def test_the_extension_installs_a_snapshot_that_starts_lazily(
    database_url: str, tmp_path: Path
) -> None:
    migrated_engine(database_url).dispose()
    with retention_app(tmp_path, database_url, mode="uri") as (app, retention):
        state = get_state(app)
        assert isinstance(state.lookup, CatalogueSnapshot)
        assert state.lookup._thread is None
        with app.app_context():
            retention.catalogue.add_message("plain", "Stay", "Body")
        wait_for(lambda: state.lookup.lookup("plain", SANDBOX) is not None, "the snapshot")
        thread = state.lookup._thread
        assert thread is not None
        assert thread.is_alive()
    assert not thread.is_alive()


def test_a_change_in_one_app_is_seen_by_another_sharing_the_database(
    database_url: str, tmp_path: Path
) -> None:
    migrated_engine(database_url).dispose()
    with (
        retention_app(tmp_path / "one", database_url, mode="uri") as (first, first_retention),
        retention_app(tmp_path / "two", database_url, mode="engine") as (second, _),
    ):
        lookup = get_state(second).lookup
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
            lookup = get_state(app).lookup
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


def test_a_forked_worker_drops_the_parents_pooled_connections(
    engine: sa.Engine, snapshot: CatalogueSnapshot
) -> None:
    snapshot.refresh()
    parent_pool = engine.pool
    snapshot._pid = -1  # as if this process were a fork of the one that refreshed
    snapshot.refresh()
    assert engine.pool is not parent_pool
    parent_pool.dispose()  # in a real fork the parent keeps using them; here, close them
    assert snapshot._pid == os.getpid()
    pool = engine.pool
    snapshot.refresh()
    assert engine.pool is pool
