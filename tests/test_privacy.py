"""Pseudonymised subscribers (``RETENTION_SUBSCRIBER_KEY``): real signed requests and
notifications, rows in SQLite and PostgreSQL, the report, ``purge --subscriber`` and
``check``; the secret never shown."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_retention import ConfigurationError, Message, Retention, SwitchPlan
from flask_retention.catalogue.models import metadata
from flask_retention.insights.decision_log import decision_row
from flask_retention.insights.privacy import pseudonym
from flask_retention.realtime.decisions import Decision
from flask_retention.testing import AppStoreSigner

from .catalogue_support import migrated_engine
from .memory_lookup import MemoryLookup
from .support import state_of
from .test_decision_log import APP_APPLE_ID, GENEROUS, logged_app, writer_of
from .test_experiments import expected_variant
from .test_outcome_report import BUNDLE, NOTIFICATIONS, notify

URL = "/retention/realtime"
DECISIONS = metadata.tables["retention_decisions"]
NOTIFIED = metadata.tables["retention_notifications"]

#: Secrets distinctive enough to be found in any output they leak into.
SECRET = "privacy-test-secret-Qx7#current-0123456789"
OLD_SECRET = "privacy-test-secret-Qx7#previous-9876543210"
SHORT_SECRET = "privacy-short-Qx7#"
SECRETS = (SECRET, OLD_SECRET, SHORT_SECRET)

ALICE = "2000000000000001"
BOB = "2000000000000002"
CAROL = "2000000000000003"


def keyed(secret: str, otid: str) -> str:
    """HMAC-SHA256 of the ID under the secret, as the docs say, computed here."""
    return hmac.new(secret.encode(), otid.encode(), hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def signer() -> AppStoreSigner:
    return AppStoreSigner(valid_from=datetime.now(UTC) - timedelta(days=60))


@pytest.fixture
def outputs(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Where a test collects what its commands and reports said, for :func:`no_secret_in`;
    every log record is captured too."""
    caplog.set_level(logging.DEBUG)
    return []


def no_secret_in(outputs: list[str], caplog: pytest.LogCaptureFixture) -> None:
    """No secret in any output, log message or log record's arguments."""
    said = [*outputs, caplog.text]
    for record in caplog.records:
        said += [record.getMessage(), repr(record.args), str(record.exc_info)]
    for text in said:
        for secret in SECRETS:
            assert secret not in text
            assert secret.encode().hex() not in text


@contextmanager
def served(
    tmp_path: Path,
    database_url: str,
    signer: AppStoreSigner,
    key: str | bytes | None = SECRET,
    **config: Any,
) -> Iterator[tuple[Flask, Retention]]:
    """An app with the decision log and the notifications endpoint, pseudonymising with
    ``key`` (``None``: storing IDs as they are)."""
    with logged_app(
        tmp_path,
        database_url,
        signer,
        RETENTION_BUNDLE_ID=BUNDLE,
        RETENTION_NOTIFICATIONS_ENDPOINT=NOTIFICATIONS,
        RETENTION_SUBSCRIBER_KEY=key,
        **config,
    ) as pair:
        yield pair


def decide(app: Flask, signer: AppStoreSigner, otid: str) -> None:
    """One answered real-time request for ``otid``, written to the log."""
    body = signer.realtime_body(original_transaction_id=otid, app_apple_id=APP_APPLE_ID)
    assert app.test_client().post(URL, data=body).status_code == 200
    assert writer_of(app).flush(GENEROUS)


def cancel(app: Flask, signer: AppStoreSigner, otid: str) -> None:
    """A signed AUTO_RENEW_DISABLED for ``otid``, signed after every decision so far (Apple's
    dates are in milliseconds) and before anything that follows."""
    now = datetime.now(UTC)
    at = now.replace(microsecond=now.microsecond // 1000 * 1000) + timedelta(milliseconds=2)
    notify(app.test_client(), signer, otid, at)
    while datetime.now(UTC) <= at:
        time.sleep(0.001)


def stored_ids(database_url: str, table: sa.Table) -> list[str | None]:
    engine = migrated_engine(database_url)
    try:
        with engine.connect() as connection:
            query = sa.select(table.c.original_transaction_id).order_by(table.c.id)
            return list(connection.execute(query).scalars())
    finally:
        engine.dispose()


def all_values(database_url: str) -> list[str]:
    """Every value of every column of the two tables, as text."""
    engine = migrated_engine(database_url)
    try:
        with engine.connect() as connection:
            return [
                str(value)
                for table in (DECISIONS, NOTIFIED)
                for row in connection.execute(sa.select(table))
                for value in row
            ]
    finally:
        engine.dispose()


# -- what is stored ------------------------------------------------------------------


@pytest.mark.parametrize("key", [SECRET, SECRET.encode()], ids=["str", "bytes"])
def test_decisions_and_notifications_store_the_keyed_hash(
    tmp_path: Path,
    database_url: str,
    signer: AppStoreSigner,
    outputs: list[str],
    caplog: pytest.LogCaptureFixture,
    key: str | bytes,
) -> None:
    seen: list[str] = []
    with served(tmp_path, database_url, signer, key) as (app, retention):

        @retention.selector
        def choose(req: Any) -> None:
            seen.append(req.original_transaction_id)

        decide(app, signer, ALICE)
        cancel(app, signer, ALICE)
    assert seen == [ALICE]  # the selector gets the real ID
    hashed = keyed(SECRET, ALICE)
    assert stored_ids(database_url, DECISIONS) == [hashed]
    assert stored_ids(database_url, NOTIFIED) == [hashed]
    assert len(hashed) == 64
    assert hashed == hashed.lower()
    assert not any(ALICE in value for value in all_values(database_url))
    no_secret_in(outputs, caplog)


def test_without_a_key_the_id_is_stored_as_it_is(
    tmp_path: Path, database_url: str, signer: AppStoreSigner
) -> None:
    with served(tmp_path, database_url, signer, None) as (app, _):
        decide(app, signer, ALICE)
        cancel(app, signer, ALICE)
    assert stored_ids(database_url, DECISIONS) == [ALICE]
    assert stored_ids(database_url, NOTIFIED) == [ALICE]


def test_an_id_no_database_takes_is_hashed_once_cleaned() -> None:
    decision = Decision(received_at=datetime.now(UTC))
    decision.original_transaction_id = "2000\x00000\ud800"
    row = decision_row(decision, SECRET.encode())
    assert row["original_transaction_id"] == keyed(SECRET, "2000000\ufffd")
    assert row["original_transaction_id"] == pseudonym(SECRET.encode(), "2000000\ufffd")


# -- outcomes and experiments ---------------------------------------------------------


def test_an_outcome_is_joined_to_its_decision_in_the_report(
    tmp_path: Path,
    database_url: str,
    signer: AppStoreSigner,
    outputs: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    page = tmp_path / "report.html"
    with served(tmp_path, database_url, signer) as (app, _):
        decide(app, signer, ALICE)
        decide(app, signer, BOB)
        cancel(app, signer, ALICE)
        runner = app.test_cli_runner()
        as_json = runner.invoke(args=["retention", "report", "--since", "1d", "--json"])
        as_text = runner.invoke(args=["retention", "report", "--since", "1d"])
        as_html = runner.invoke(args=["retention", "report", "--since", "1d", "--html", page])
    outputs += [as_json.output, as_text.output, as_html.output, page.read_text()]
    assert as_json.exit_code == as_text.exit_code == as_html.exit_code == 0, as_json.output
    report = json.loads(as_json.output)
    outcomes = report["outcomes"]
    assert (outcomes["decided"], outcomes["cancelled"], outcomes["pending"]) == (2, 1, 1)
    assert outcomes["events"] == 1
    assert report["subscriber_ids"] == {
        "decisions": {"pseudonymised": 2, "plain": 0},
        "notifications": {"pseudonymised": 1, "plain": 0},
    }
    assert "Stored subscriber IDs" in as_text.output
    assert "Both kinds" not in as_text.output
    assert "Stored subscriber IDs" in page.read_text()
    no_secret_in(outputs, caplog)


def test_switching_the_option_on_moves_no_one_to_another_variant(
    tmp_path: Path,
    database_url: str,
    signer: AppStoreSigner,
    outputs: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    ids = [str(3000000000000000 + i) for i in range(24)]
    variants: dict[str, Message | SwitchPlan] = {
        "control": Message("winback"),
        "switch": SwitchPlan("yearly-msg", "com.x.yearly"),
    }
    for key in (None, SECRET):
        with served(tmp_path, database_url, signer, key) as (app, retention):
            lookup = MemoryLookup()
            lookup.add("winback")
            lookup.add("yearly-msg")
            state_of(app).endpoint.lookup = lookup
            retention.selector(retention.experiment("winback-2026", variants).choose)
            for otid in ids:
                decide(app, signer, otid)
            if key is not None:
                result = app.test_cli_runner().invoke(
                    args=["retention", "report", "--since", "1d", "--json"]
                )
                outputs.append(result.output)
    engine = migrated_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(DECISIONS.c.original_transaction_id, DECISIONS.c.variant).order_by(
                DECISIONS.c.id
            )
        ).all()
    engine.dispose()
    expected = {
        otid: expected_variant("winback-2026", otid, {"control": 1, "switch": 1}) for otid in ids
    }
    before, after = rows[: len(ids)], rows[len(ids) :]
    assert dict(before) == expected
    assert dict(after) == {keyed(SECRET, otid): variant for otid, variant in expected.items()}
    assert len(set(expected.values())) == 2  # both variants are exercised
    report = json.loads(outputs[-1])
    experiment = report["experiments"]["winback-2026"]
    assert sum(v["decided"] for v in experiment.values()) == 2 * len(ids)
    assert report["subscriber_ids"]["decisions"] == {
        "pseudonymised": len(ids),
        "plain": len(ids),
    }
    no_secret_in(outputs, caplog)


# -- rotation ---------------------------------------------------------------------------


def test_a_rotation_keeps_old_rows_and_the_report_counts_each_kind(
    tmp_path: Path,
    database_url: str,
    signer: AppStoreSigner,
    outputs: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with served(tmp_path, database_url, signer, None) as (app, _):  # before the option
        decide(app, signer, ALICE)
        cancel(app, signer, ALICE)
    with served(tmp_path, database_url, signer, OLD_SECRET) as (app, _):
        decide(app, signer, ALICE)
        decide(app, signer, BOB)
        decide(app, signer, CAROL)
        cancel(app, signer, ALICE)
        cancel(app, signer, BOB)
    with served(
        tmp_path, database_url, signer, SECRET, RETENTION_PREVIOUS_SUBSCRIBER_KEYS=[OLD_SECRET]
    ) as (app, _):
        decide(app, signer, ALICE)
        cancel(app, signer, CAROL)  # decided under the old secret: no longer joined
        runner = app.test_cli_runner()
        as_json = runner.invoke(args=["retention", "report", "--since", "1d", "--json"])
        as_text = runner.invoke(args=["retention", "report", "--since", "1d"])
    outputs += [as_json.output, as_text.output]

    assert stored_ids(database_url, DECISIONS) == [
        ALICE,
        keyed(OLD_SECRET, ALICE),
        keyed(OLD_SECRET, BOB),
        keyed(OLD_SECRET, CAROL),
        keyed(SECRET, ALICE),
    ]
    assert stored_ids(database_url, NOTIFIED) == [
        ALICE,
        keyed(OLD_SECRET, ALICE),
        keyed(OLD_SECRET, BOB),
        keyed(SECRET, CAROL),
    ]
    report = json.loads(as_json.output)
    assert report["subscriber_ids"] == {
        "decisions": {"pseudonymised": 4, "plain": 1},
        "notifications": {"pseudonymised": 3, "plain": 1},
    }
    outcomes = report["outcomes"]
    # Joined within each kind: Alice plain, Alice and Bob under the old secret. Carol's
    # decision (old secret) misses her notification (new secret); Alice's new one is open.
    assert (outcomes["decided"], outcomes["cancelled"], outcomes["pending"]) == (5, 3, 2)
    assert "Both kinds in this window" in as_text.output
    no_secret_in(outputs, caplog)


# -- erasure -----------------------------------------------------------------------------


def test_purge_subscriber_deletes_exactly_one_subscribers_rows(
    tmp_path: Path,
    database_url: str,
    signer: AppStoreSigner,
    outputs: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with served(tmp_path, database_url, signer, None) as (app, _):
        decide(app, signer, ALICE)  # plain, from before the option
        decide(app, signer, BOB)
        cancel(app, signer, ALICE)
    with served(tmp_path, database_url, signer, OLD_SECRET) as (app, _):
        decide(app, signer, ALICE)
        cancel(app, signer, ALICE)
    with served(
        tmp_path, database_url, signer, SECRET, RETENTION_PREVIOUS_SUBSCRIBER_KEYS=[OLD_SECRET]
    ) as (app, _):
        decide(app, signer, ALICE)
        cancel(app, signer, BOB)
        assert app.test_client().post(URL, data=b"{}").status_code == 400  # no subscriber
        assert writer_of(app).flush(GENEROUS)
        runner = app.test_cli_runner()
        purge = ["retention", "purge", "--subscriber"]
        refused = runner.invoke(args=[*purge, ALICE], input="n\n")
        assert refused.exit_code == 1
        assert "Delete 3 decisions and 2 notifications of that subscriber?" in refused.output
        assert "nothing was changed" in refused.output
        assert len(stored_ids(database_url, DECISIONS)) == 5

        deleted = runner.invoke(args=[*purge, ALICE, "--yes"])
        again = runner.invoke(args=[*purge, ALICE, "--yes"])
        asked = runner.invoke(args=[*purge, ALICE])
        bob = runner.invoke(args=[*purge, BOB], input="y\n")
        both = runner.invoke(args=[*purge, BOB, "--older-than", "1d"])
        empty = runner.invoke(args=[*purge, " "])
    outputs += [r.output for r in (refused, deleted, again, asked, bob, both, empty)]
    assert deleted.exit_code == 0, deleted.output
    assert "Deleted 3 decisions and 2 notifications of that subscriber." in deleted.output
    assert "Deleted 0 decisions and 0 notifications" in again.output
    assert "No decisions or notifications of that subscriber are stored." in asked.output
    assert bob.exit_code == 0, bob.output
    assert "Delete 1 decision and 1 notification of that subscriber?" in bob.output
    assert "Deleted 1 decision and 1 notification of that subscriber." in bob.output
    assert both.exit_code == 2
    assert "not both" in both.output
    assert empty.exit_code == 2
    assert "original transaction ID" in empty.output
    assert stored_ids(database_url, DECISIONS) == [None]  # the unverified request stays
    assert stored_ids(database_url, NOTIFIED) == []
    no_secret_in(outputs, caplog)


def test_purge_subscriber_leaves_other_subscribers_rows(
    tmp_path: Path,
    database_url: str,
    signer: AppStoreSigner,
    outputs: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with served(tmp_path, database_url, signer) as (app, _):
        for otid in (ALICE, BOB, CAROL):
            decide(app, signer, otid)
            cancel(app, signer, otid)
        result = app.test_cli_runner().invoke(
            args=["retention", "purge", "--subscriber", BOB, "--yes"]
        )
    outputs.append(result.output)
    assert "Deleted 1 decision and 1 notification of that subscriber." in result.output
    kept = [keyed(SECRET, ALICE), keyed(SECRET, CAROL)]
    assert stored_ids(database_url, DECISIONS) == kept
    assert stored_ids(database_url, NOTIFIED) == kept
    no_secret_in(outputs, caplog)


# -- the secret is never shown --------------------------------------------------------------


def test_check_reports_a_short_secret_without_showing_it(
    tmp_path: Path,
    database_url: str,
    signer: AppStoreSigner,
    outputs: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    for key, flagged in ((SHORT_SECRET, True), (SECRET, False)):
        with served(tmp_path, database_url, signer, key) as (app, _):
            runner = app.test_cli_runner()
            text = runner.invoke(args=["retention", "check", "--offline"])
            as_json = runner.invoke(args=["retention", "check", "--offline", "--json"])
        outputs += [text.output, as_json.output]
        problems = json.loads(as_json.output)["problems"]
        privacy = [p["message"] for p in problems if p["check"] == "privacy"]
        assert ("RETENTION_SUBSCRIBER_KEY is shorter than 32 bytes" in text.output) is flagged
        if flagged:
            assert len(privacy) == 1
            assert "secrets.token_hex(32)" in privacy[0]
        else:
            assert privacy == []
    no_secret_in(outputs, caplog)


def test_settings_stats_and_errors_never_show_the_secret(
    tmp_path: Path,
    database_url: str,
    signer: AppStoreSigner,
    outputs: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with served(
        tmp_path, database_url, signer, SECRET, RETENTION_PREVIOUS_SUBSCRIBER_KEYS=[OLD_SECRET]
    ) as (app, retention):
        decide(app, signer, ALICE)
        settings = state_of(app).settings
        assert settings.subscriber_key == SECRET.encode()
        assert settings.previous_subscriber_keys == (OLD_SECRET.encode(),)
        outputs += [repr(settings), str(settings), repr(retention.stats(app))]
        outputs.append(json.dumps(retention.stats(app).as_dict()))
    for bad in (
        {"RETENTION_PREVIOUS_SUBSCRIBER_KEYS": SECRET},
        {"RETENTION_PREVIOUS_SUBSCRIBER_KEYS": [SECRET, 42]},
        {"RETENTION_PREVIOUS_SUBSCRIBER_KEYS": [OLD_SECRET, ""]},
        {"RETENTION_SUBSCRIBER_KEY": [SECRET]},
    ):
        broken = Flask("broken", instance_path=str(tmp_path / "broken"))
        broken.config.update(bad)
        with pytest.raises(ConfigurationError) as info:
            Retention(broken)
        message = str(info.value)
        outputs.append(message)
        assert len(message.splitlines()) == 1
        assert next(iter(bad)) in message
    no_secret_in(outputs, caplog)
