"""Sync through `flask retention sync` against the fake App Store over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner

from flask_retention.testing import FakeAppStore

from .support import (
    LOCALE,
    PRODUCT,
    build_catalogue,
    endpoints,
    fails,
    invoke,
    ok,
    writes,
)


def test_first_sync_uploads_everything_in_order(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    build_catalogue(runner, tmp_path)
    result = ok(invoke(runner, "sync"))
    assert "Applied 5 change(s) to Sandbox" in result.output
    assert endpoints(writes(fake_app_store)) == [
        "upload_image",
        "upload_image",
        "upload_message",
        "upload_message",
        "configure_default_message",
    ]
    assert endpoints(fake_app_store.requests)[:2] == ["get_image_list", "get_message_list"]
    assert {i.state for i in fake_app_store.images.values()} == {"APPROVED"}
    winback = json.loads(ok(invoke(runner, "message", "list", "--json")).output)
    uuid_of = {m["name"]: m["uuid"] for m in winback}
    assert fake_app_store.defaults == {(PRODUCT, LOCALE): uuid_of["winback"]}
    assert all(m["apple_state"]["Sandbox"] == "APPROVED" for m in winback)


def test_second_sync_makes_no_write(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    build_catalogue(runner, tmp_path)
    ok(invoke(runner, "sync"))
    before = len(fake_app_store.requests)
    result = ok(invoke(runner, "sync"))
    assert "Nothing to change at Apple." in result.output
    assert writes(fake_app_store, before) == []
    assert endpoints(fake_app_store.requests[before:]) == ["get_image_list", "get_message_list"]


def test_an_edited_message_is_a_new_version_and_the_default_moves_to_it(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    build_catalogue(runner, tmp_path)
    ok(invoke(runner, "sync"))
    old = fake_app_store.defaults[(PRODUCT, LOCALE)]
    ok(invoke(runner, "message", "add", "--name", "winback", "--header", "Wait", "--body", "New"))
    new = json.loads(ok(invoke(runner, "message", "list", "--json")).output)
    new_uuid = next(m["uuid"] for m in new if m["name"] == "winback")
    assert new_uuid != old
    before = len(fake_app_store.requests)
    ok(invoke(runner, "sync"))
    assert endpoints(writes(fake_app_store, before)) == [
        "upload_message",
        "configure_default_message",
        "delete_message",
    ]
    assert fake_app_store.defaults == {(PRODUCT, LOCALE): new_uuid}
    assert old not in fake_app_store.messages
    deleted = writes(fake_app_store, before)[-1]
    assert deleted.path.endswith(old)


def test_dry_run_changes_nothing_on_either_side(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    build_catalogue(runner, tmp_path)
    version_before = ok(invoke(runner, "status", "--json")).output
    result = ok(invoke(runner, "sync", "--dry-run"))
    assert "upload" in result.output
    assert "hero v1" in result.output
    assert "winback v1" in result.output
    assert writes(fake_app_store) == []
    assert fake_app_store.images == {}
    assert ok(invoke(runner, "status", "--json")).output == version_before
    plan = json.loads(ok(invoke(runner, "sync", "--dry-run", "--json")).output)
    assert [s["action"] for s in plan["plan"]["steps"]] == [
        "upload_image",
        "upload_image",
        "upload_message",
        "upload_message",
    ]


def test_an_upload_whose_answer_is_lost_is_not_duplicated(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    build_catalogue(runner, tmp_path)
    fake_app_store.drop_next(after_processing=True, endpoint="upload_message")
    ok(invoke(runner, "sync"))
    assert len(fake_app_store.messages) == 2
    assert len(fake_app_store.defaults) == 1
    assert [r.status for r in writes(fake_app_store) if r.endpoint == "upload_message"] == [
        None,
        409,
        200,
    ]


def test_a_sync_cut_off_by_the_network_resumes_without_duplicates(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    build_catalogue(runner, tmp_path)
    # The first message lands, then its answer and every retry are lost.
    fake_app_store.drop_next(after_processing=True, endpoint="upload_message")
    fake_app_store.drop_next(3, endpoint="upload_message")
    reason = fails(invoke(runner, "sync"))
    assert "Upload Message failed" in reason
    assert len(fake_app_store.images) == 2
    assert len(fake_app_store.messages) == 1

    ok(invoke(runner, "sync"))
    assert len(fake_app_store.images) == 2
    assert len(fake_app_store.messages) == 2
    uploads = [r for r in writes(fake_app_store) if r.status == 200]
    assert endpoints(uploads) == [
        "upload_image",
        "upload_image",
        "upload_message",
        "configure_default_message",
    ]
    before = len(fake_app_store.requests)
    ok(invoke(runner, "sync"))
    assert writes(fake_app_store, before) == []


def test_a_sync_stopped_by_server_errors_resumes_to_the_same_end_state(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    build_catalogue(runner, tmp_path)
    fake_app_store.fail_next(4, 500, endpoint="configure_default_message")
    reason = fails(invoke(runner, "sync"))
    assert "Configure Default Message failed: HTTP 500" in reason
    assert "GeneralInternalError" in reason
    assert fake_app_store.defaults == {}
    ok(invoke(runner, "sync"))
    assert len(fake_app_store.defaults) == 1
    assert len(fake_app_store.messages) == 2
    assert [r.endpoint for r in writes(fake_app_store) if r.status == 200].count(
        "upload_message"
    ) == 2


def test_a_storm_of_429s_is_waited_out(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    build_catalogue(runner, tmp_path)
    fake_app_store.throttle_next(3, retry_after_ms=20)
    fake_app_store.throttle_next(2, retry_after_ms=20, endpoint="upload_image")
    ok(invoke(runner, "sync"))
    assert sum(r.status == 429 for r in fake_app_store.requests) == 5
    assert len(fake_app_store.defaults) == 1


def test_remote_items_unknown_here_are_deleted_only_with_prune(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    from flask_retention.api import UploadMessageRequestBody, client_from_app

    build_catalogue(runner, tmp_path)
    with runner.app.app_context(), client_from_app(environment="Sandbox") as client:
        client.upload_message(
            "6e2a1b8e-1c1d-4f55-9b7e-0d9f1a0c0a01", UploadMessageRequestBody("Old", "Stray")
        )
    result = ok(invoke(runner, "sync"))
    assert "6e2a1b8e-1c1d-4f55-9b7e-0d9f1a0c0a01" in result.output
    assert "--prune deletes it" in result.output
    assert "6e2a1b8e-1c1d-4f55-9b7e-0d9f1a0c0a01" in fake_app_store.messages
    refused = invoke(runner, "sync", "--prune", input="n\n")
    assert refused.exit_code == 1
    assert "6e2a1b8e-1c1d-4f55-9b7e-0d9f1a0c0a01" in fake_app_store.messages
    ok(invoke(runner, "sync", "--prune", "--yes"))
    assert "6e2a1b8e-1c1d-4f55-9b7e-0d9f1a0c0a01" not in fake_app_store.messages
    assert len(fake_app_store.messages) == 2


def test_retired_entries_and_removed_defaults_are_deleted_in_reverse_order(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    build_catalogue(runner, tmp_path)
    ok(invoke(runner, "sync"))
    ok(invoke(runner, "default", "remove", PRODUCT, LOCALE, "--yes"))
    ok(invoke(runner, "message", "retire", "winback", "--yes"))
    ok(invoke(runner, "message", "retire", "plain", "--yes"))
    ok(invoke(runner, "image", "retire", "hero", "--yes"))
    ok(invoke(runner, "image", "retire", "tick", "--yes"))
    before = len(fake_app_store.requests)
    ok(invoke(runner, "sync"))
    assert endpoints(writes(fake_app_store, before)) == [
        "delete_default_message",
        "delete_message",
        "delete_message",
        "delete_image",
        "delete_image",
    ]
    assert fake_app_store.images == {}
    assert fake_app_store.messages == {}


def test_sync_json_reports_what_it_applied(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    build_catalogue(runner, tmp_path)
    report = json.loads(ok(invoke(runner, "sync", "--json")).output)
    assert [s["action"] for s in report["applied"]] == [
        "upload_image",
        "upload_image",
        "upload_message",
        "upload_message",
        "configure_default",
    ]
    assert report["waiting"] == []
    assert report["remaining"] == []


@pytest.mark.parametrize("stop_after", [1, 3, 4])
def test_a_sync_stopped_by_ctrl_c_anywhere_finishes_on_the_next_run(
    app: Flask,
    runner: FlaskCliRunner,
    tmp_path: Path,
    fake_app_store: FakeAppStore,
    stop_after: int,
) -> None:
    from flask_retention.api import client_from_app
    from flask_retention.appstore.sync import SyncProgress, acquire_sync_lock, run_sync

    build_catalogue(runner, tmp_path)

    def interrupt(progress: SyncProgress) -> None:
        if progress.done == stop_after:
            raise KeyboardInterrupt

    with app.app_context(), client_from_app(environment="Sandbox") as client:
        catalogue = app.extensions["retention"].catalogue
        with pytest.raises(KeyboardInterrupt):
            run_sync(catalogue, client, progress=interrupt)
        assert len(writes(fake_app_store)) == stop_after
        acquire_sync_lock(catalogue.engine, "Sandbox").release()  # the lock was given back
        result = run_sync(catalogue, client)
        assert result.complete
        assert len(result.steps) == 5 - stop_after
        assert run_sync(catalogue, client).steps == ()
    assert [r.status for r in writes(fake_app_store)] == [200] * 5
    assert len(fake_app_store.defaults) == 1


def test_progress_counts_steps_and_estimates_from_the_clients_pacing(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    from flask_retention.api import client_from_app
    from flask_retention.appstore.sync import SyncProgress, plan_sync, run_sync

    build_catalogue(runner, tmp_path)
    seen: list[SyncProgress] = []
    with app.app_context(), client_from_app(environment="Sandbox") as client:
        catalogue = app.extensions["retention"].catalogue
        plan = plan_sync(catalogue, client)
        interval = client.limit("upload_image").interval
        assert plan.estimate(client) == pytest.approx(interval * 1 + interval * 1)
        assert plan.estimate() == pytest.approx(20.0)  # Apple's sandbox pacing: 10 s apart
        run_sync(catalogue, client, progress=seen.append, plan=plan)
    assert [(p.done, p.total) for p in seen] == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 5), (5, 5)]
    assert seen[-1].step is None
    assert seen[-1].eta == 0
    assert all(p.eta >= 0 for p in seen)


def test_a_changed_image_replaces_its_messages_and_the_old_image_goes_last(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    from ..catalogue_support import full_png

    build_catalogue(runner, tmp_path)
    ok(invoke(runner, "sync"))
    old_images = set(fake_app_store.images)
    hero = tmp_path / "hero2.png"
    hero.write_bytes(full_png(color=(200, 30, 30)))
    ok(invoke(runner, "image", "add", str(hero), "--name", "hero"))
    before = len(fake_app_store.requests)
    ok(invoke(runner, "sync"))
    assert endpoints(writes(fake_app_store, before)) == [
        "upload_image",
        "upload_message",
        "configure_default_message",
        "delete_message",
        "delete_image",
    ]
    assert len(fake_app_store.images) == 2
    assert len(old_images & set(fake_app_store.images)) == 1
    before = len(fake_app_store.requests)
    ok(invoke(runner, "sync"))
    assert writes(fake_app_store, before) == []
