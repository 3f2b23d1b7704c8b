"""Sync against a production fake: Apple's review holds defaults and deletions back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flask.testing import FlaskCliRunner

from flask_retention.testing import FakeAppStore

from .support import LOCALE, PRODUCT, build_catalogue, endpoints, invoke, ok, writes


@pytest.fixture
def app_store_environment() -> str:
    return "Production"


@pytest.fixture
def extra_config() -> dict[str, object]:
    return {"RETENTION_ENVIRONMENT": ["Production", "Sandbox"]}


def _uuids(runner: FlaskCliRunner) -> dict[str, str]:
    listed = json.loads(ok(invoke(runner, "message", "list", "--json")).output)
    return {m["name"]: m["uuid"] for m in listed}


def _approve_everything(store: FakeAppStore) -> None:
    for ident, image in store.images.items():
        if image.state == "PENDING":
            store.approve(ident)
    for ident, message in store.messages.items():
        if message.state == "PENDING":
            store.approve(ident)


def test_production_sync_asks_first(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    build_catalogue(runner, tmp_path)
    result = invoke(runner, "sync", input="n\n")
    assert result.exit_code == 1
    assert "Apply 4 change(s) to Apple's Production" in result.output
    assert writes(fake_app_store) == []


def test_review_is_picked_up_by_a_later_sync(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    build_catalogue(runner, tmp_path)
    first = ok(invoke(runner, "sync", "--yes"))
    assert "Waiting for Apple's review" in first.output
    assert "message winback v1: PENDING at Apple" in first.output
    assert fake_app_store.defaults == {}
    status = json.loads(
        ok(invoke(runner, "status", "--environment", "Production", "--json")).output
    )
    assert {m["apple_state"] for m in status[0]["messages"]} == {"PENDING"}

    before = len(fake_app_store.requests)
    ok(invoke(runner, "sync", "--yes"))
    assert writes(fake_app_store, before) == []

    _approve_everything(fake_app_store)
    before = len(fake_app_store.requests)
    result = ok(invoke(runner, "sync", "--yes"))
    assert endpoints(writes(fake_app_store, before)) == ["configure_default_message"]
    assert fake_app_store.defaults == {(PRODUCT, LOCALE): _uuids(runner)["winback"]}
    assert "Waiting" not in result.output
    status = json.loads(
        ok(invoke(runner, "status", "--environment", "Production", "--json")).output
    )
    assert {m["apple_state"] for m in status[0]["messages"]} == {"APPROVED"}


def test_old_version_is_deleted_only_after_the_new_one_is_approved_and_the_default_moved(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    build_catalogue(runner, tmp_path)
    ok(invoke(runner, "sync", "--yes"))
    _approve_everything(fake_app_store)
    ok(invoke(runner, "sync", "--yes"))
    old = _uuids(runner)["winback"]
    ok(invoke(runner, "message", "add", "--name", "winback", "--header", "Wait", "--body", "New"))
    new = _uuids(runner)["winback"]

    before = len(fake_app_store.requests)
    result = ok(invoke(runner, "sync", "--yes"))
    assert endpoints(writes(fake_app_store, before)) == ["upload_message"]
    assert old in fake_app_store.messages
    assert fake_app_store.defaults == {(PRODUCT, LOCALE): old}
    assert "waits for winback v2 (PENDING at Apple" in result.output

    fake_app_store.approve(new)
    before = len(fake_app_store.requests)
    ok(invoke(runner, "sync", "--yes"))
    assert endpoints(writes(fake_app_store, before)) == [
        "configure_default_message",
        "delete_message",
    ]
    assert fake_app_store.defaults == {(PRODUCT, LOCALE): new}
    assert old not in fake_app_store.messages


def test_a_rejected_message_is_reported_and_the_default_stays(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore
) -> None:
    build_catalogue(runner, tmp_path)
    ok(invoke(runner, "sync", "--yes"))
    _approve_everything(fake_app_store)
    fake_app_store.reject(_uuids(runner)["winback"])
    result = ok(invoke(runner, "sync", "--yes"))
    assert "Rejected by Apple" in result.output
    assert "message winback v1: REJECTED at Apple" in result.output
    assert fake_app_store.defaults == {}
