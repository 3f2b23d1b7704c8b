"""The decision log: real signed requests to the endpoint, rows in SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from flask import Flask
from flask.testing import FlaskClient

from flask_retention import (
    Message,
    PromotionalOffer,
    RealtimeRequest,
    Retention,
    SwitchPlan,
    Tuning,
)
from flask_retention.catalogue.models import metadata
from flask_retention.catalogue.snapshot import CatalogueSnapshot
from flask_retention.insights.decision_log import DecisionLogWriter, decision_row, purge_decisions
from flask_retention.insights.report import build_report, render_html, render_json, render_text
from flask_retention.realtime.decisions import Decision
from flask_retention.testing import AppStoreSigner

from .catalogue_support import migrated_engine, retention_app
from .lost_reply_proxy import LostReplyProxy
from .support import in_forked_child, state_of
from .tcp_proxy import TCPProxy

URL = "/retention/realtime"
APP_APPLE_ID = 1234567890
MID = uuid.UUID("a1b2c3d4-e5f6-7890-a1b2-c3d4e5f67890")
POSTGRES = os.environ.get("RETENTION_TEST_DATABASE_URL")
DECISIONS = metadata.tables["retention_decisions"]
GENEROUS = 30.0  # seconds; only reached when a test is broken
SHORT = Tuning(decision_log_interval=0.05)
#: Writes only when a batch is full, on flush, or at close.
NO_INTERVAL = Tuning(decision_log_interval=3600, decision_log_idle=3600)
#: What :meth:`DecisionLogWriter.stats` says of a writer that wrote nothing and dropped nothing.
NOTHING = {
    "pending": 0,
    "written": 0,
    "dropped": 0,
    "replays": 0,
    "dropped_queue_full": 0,
    "dropped_unstorable": 0,
    "dropped_at_exit": 0,
}


@pytest.fixture(scope="module")
def signer() -> AppStoreSigner:
    return AppStoreSigner()


def noticed(caplog: pytest.LogCaptureFixture, text: str) -> Callable[[], bool]:
    return lambda: any(text in r.getMessage() for r in caplog.records)


def wait_for(condition: Callable[[], object], what: str, timeout: float = GENEROUS) -> None:
    """Wait until ``condition()`` is true; fail after a generous ``timeout`` (not a speed test)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@contextmanager
def logged_app(
    tmp_path: Path,
    database_url: str,
    signer: AppStoreSigner,
    tuning: Tuning = SHORT,
    **config: Any,
) -> Iterator[tuple[Flask, Retention]]:
    """An app serving the endpoint with the decision log on ``database_url`` (migrated)."""
    migrated_engine(database_url).dispose()
    settings: dict[str, Any] = {
        "RETENTION_ROOT_CERTIFICATES": [signer.root_pem],
        "RETENTION_APP_APPLE_ID": APP_APPLE_ID,
        **config,
    }
    with retention_app(tmp_path, database_url, mode="uri", tuning=tuning, **settings) as pair:
        yield pair


def writer_of(app: Flask) -> DecisionLogWriter:
    writer = state_of(app).decision_log
    assert writer is not None
    assert isinstance(writer, DecisionLogWriter)
    return writer


def rows(engine: sa.Engine, *where: Any) -> list[sa.Row[Any]]:
    with engine.connect() as connection:
        return list(connection.execute(sa.select(DECISIONS).where(*where).order_by(DECISIONS.c.id)))


def ask(client: FlaskClient, signer: AppStoreSigner, **fields: Any) -> int:
    return client.post(URL, data=signer.realtime_body(**fields)).status_code


# -- every outcome ------------------------------------------------------------------


def chooser(release: threading.Event) -> Callable[[RealtimeRequest], Any]:
    """A selector whose behaviour is chosen by the request's original transaction ID."""

    def choose(req: RealtimeRequest) -> Any:
        what = req.original_transaction_id
        if what == "message":
            return Message("winback")
        if what == "switch":
            return SwitchPlan("winback", "com.example.yearly", "MONTHLY")
        if what == "offer":
            return PromotionalOffer(MID, signature_v2="a.b.c")
        if what == "offer_unsigned":
            return PromotionalOffer(MID, "loyal50")
        if what == "none":
            return None
        if what == "raises":
            raise RuntimeError("selector bug")
        if what == "slow":
            release.wait(GENEROUS)
            return Message("winback")
        if what == "unknown":
            return Message("no-such-message")
        if what == "draft":
            return Message("draft")
        return 42  # not a choice

    return choose


def test_every_outcome_is_logged(database_url: str, tmp_path: Path, signer: AppStoreSigner) -> None:
    release = threading.Event()
    with logged_app(tmp_path, database_url, signer, RETENTION_SELECTOR_TIMEOUT=0.2) as (
        app,
        retention,
    ):
        with app.app_context():
            catalogue = retention.catalogue
            winback = catalogue.add_message("winback", "Stay", "Body")
            catalogue.record_apple_state("message", winback.uuid, "Sandbox", "APPROVED")
            catalogue.add_message("draft", "Draft", "In review")
        snapshot = state_of(app).lookup
        assert isinstance(snapshot, CatalogueSnapshot)
        snapshot.refresh()
        choose = chooser(release)
        retention.selector(product_ids=["com.example.monthly"])(choose)
        client = app.test_client()
        cases = {
            "message": ("message", winback.uuid, None),
            "switch": ("alternate_product", winback.uuid, None),
            "offer": ("promotional_offer", MID, None),
            "offer_unsigned": ("none", None, "offer_not_configured"),
            "none": ("none", None, "no_choice"),
            "raises": ("none", None, "selector_error"),
            "slow": ("none", None, "timeout"),
            "unknown": ("none", None, "unknown_name"),
            "draft": ("none", None, "unapproved"),
            "junk": ("none", None, "invalid_choice"),
        }
        ids = {otid: uuid.uuid4() for otid in cases}
        for otid in cases:
            assert (
                ask(client, signer, original_transaction_id=otid, request_identifier=ids[otid])
                == 200
            )
        release.set()
        unscoped = uuid.uuid4()
        assert (
            ask(
                client,
                signer,
                original_transaction_id="other",
                product_id="com.example.other",
                request_identifier=unscoped,
            )
            == 200
        )
        replayed = ids["message"]
        assert (
            ask(client, signer, original_transaction_id="message", request_identifier=replayed)
            == 403
        )
        wrong_env = uuid.uuid4()
        assert (
            ask(
                client,
                signer,
                original_transaction_id="prod",
                environment="Production",
                request_identifier=wrong_env,
            )
            == 403
        )
        broken = signer.sign_broken("tampered_signature", signer.realtime_payload())
        assert client.post(URL, data=json.dumps({"signedPayload": broken})).status_code == 401
        assert client.post(URL, data=b"not json").status_code == 400
        assert client.get(URL).status_code == 405

        assert writer_of(app).flush(GENEROUS)
        engine = app.extensions["retention"].get_engine(app)
        logged = rows(engine)
        assert len(logged) == len(cases) + 6
        by_id = {r.request_identifier: r for r in logged if r.request_identifier is not None}
        for otid, (kind, message, reason) in cases.items():
            row = by_id[ids[otid]]
            assert (
                row.original_transaction_id,
                row.kind,
                row.message_uuid,
                row.fallback_reason,
            ) == (
                otid,
                kind,
                message,
                reason,
            ), otid
            assert (row.status, row.error, row.replay) == (200, None, False)
            assert (row.product_id, row.locale, row.environment) == (
                "com.example.monthly",
                "en-US",
                "Sandbox",
            )
            assert row.selector is not None
            assert "choose" in row.selector
            assert row.latency_ms > 0
            assert row.claimed_request_identifier is None
        assert by_id[ids["slow"]].latency_ms >= 200

        other = by_id[unscoped]
        assert (other.fallback_reason, other.selector, other.product_id) == (
            "no_selector",
            None,
            "com.example.other",
        )

        rejected = {(r.status, r.error): r for r in logged if r.status != 200}
        assert set(rejected) == {
            (403, "replayed"),
            (403, "wrong_environment"),
            (401, "bad_signature"),
            (400, "malformed"),
            (405, "method_not_allowed"),
        }
        for row in rejected.values():
            assert row.request_identifier is None  # never claims the unique key
            assert row.kind is None
            assert row.fallback_reason is None
            assert row.latency_ms >= 0
        assert rejected[(403, "replayed")].claimed_request_identifier == str(replayed)
        assert rejected[(403, "replayed")].original_transaction_id == "message"
        assert rejected[(403, "wrong_environment")].claimed_request_identifier == str(wrong_env)
        assert rejected[(403, "wrong_environment")].environment == "Production"
        assert rejected[(401, "bad_signature")].original_transaction_id is None
        assert rejected[(405, "method_not_allowed")].claimed_request_identifier is None


def test_decision_log_off_writes_nothing(
    database_url: str, tmp_path: Path, signer: AppStoreSigner
) -> None:
    with logged_app(tmp_path, database_url, signer, RETENTION_DECISION_LOG=False) as (app, r):
        r.selector(lambda req: None)
        endpoint = state_of(app)
        assert endpoint is not None
        assert endpoint.decision_log is None
        assert ask(app.test_client(), signer) == 200
        r.close(app)
        assert rows(app.extensions["retention"].get_engine(app)) == []


# -- when rows are written ------------------------------------------------------------


def test_close_writes_what_is_queued(
    database_url: str, tmp_path: Path, signer: AppStoreSigner
) -> None:
    with logged_app(tmp_path, database_url, signer, tuning=NO_INTERVAL) as (
        app,
        retention,
    ):
        retention.selector(lambda req: None)
        client = app.test_client()
        for _ in range(3):
            assert ask(client, signer) == 200
        writer = writer_of(app)
        engine = app.extensions["retention"].get_engine(app)
        assert writer.pending == 3
        assert rows(engine) == []  # an hour before the next write
        retention.close(app)
        assert writer.pending == 0
        assert len(rows(engine)) == 3
        assert writer.stats() == {**NOTHING, "written": 3}
        # The next request starts the writer again.
        assert ask(client, signer) == 200
        assert writer.flush(GENEROUS)
        assert len(rows(engine)) == 4


def test_flush_writes_now(database_url: str, tmp_path: Path, signer: AppStoreSigner) -> None:
    with logged_app(tmp_path, database_url, signer, tuning=NO_INTERVAL) as (
        app,
        retention,
    ):
        retention.selector(lambda req: None)
        client = app.test_client()
        for _ in range(2):
            assert ask(client, signer) == 200
        engine = app.extensions["retention"].get_engine(app)
        assert rows(engine) == []
        assert writer_of(app).flush(GENEROUS) is True
        assert len(rows(engine)) == 2
        assert writer_of(app).flush(0) is True  # nothing left


def test_a_full_batch_is_written_without_waiting_for_the_interval(
    database_url: str, tmp_path: Path, signer: AppStoreSigner
) -> None:
    with logged_app(
        tmp_path,
        database_url,
        signer,
        tuning=Tuning(decision_log_interval=3600, decision_log_batch=3),
    ) as (app, retention):
        retention.selector(lambda req: None)
        client = app.test_client()
        engine = app.extensions["retention"].get_engine(app)
        for _ in range(2):
            assert ask(client, signer) == 200
        assert writer_of(app).pending == 2
        assert ask(client, signer) == 200
        wait_for(lambda: len(rows(engine)) == 3, "the batch to be written")


def test_the_interval_writes_a_partial_batch(
    database_url: str, tmp_path: Path, signer: AppStoreSigner
) -> None:
    with logged_app(tmp_path, database_url, signer) as (app, retention):
        retention.selector(lambda req: None)
        assert ask(app.test_client(), signer) == 200
        engine = app.extensions["retention"].get_engine(app)
        wait_for(lambda: len(rows(engine)) == 1, "the interval's write")


def test_a_forked_worker_writes_only_its_own_decisions(
    tmp_path: Path, signer: AppStoreSigner
) -> None:
    url = f"sqlite:///{tmp_path / 'fork.db'}"
    with logged_app(tmp_path, url, signer, tuning=NO_INTERVAL) as (
        app,
        retention,
    ):
        retention.selector(lambda req: None)
        client = app.test_client()
        assert ask(client, signer, original_transaction_id="parent") == 200
        writer = writer_of(app)
        assert writer.pending == 1
        # As under `gunicorn --preload`, no other thread is busy at the fork (a lock held
        # by one, in SQLAlchemy's caches say, would stay held in the child).
        snapshot = state_of(app).lookup
        assert isinstance(snapshot, CatalogueSnapshot)
        snapshot.close()

        def child() -> str:  # the worker: its own writer thread, its own queue
            ok = ask(client, signer, original_transaction_id="child") == 200
            writer.close()
            return f"{ok} {writer.stats()['written']}"

        assert in_forked_child(child) == "True 1"
        retention.close(app)
        written = sorted(
            r.original_transaction_id for r in rows(app.extensions["retention"].get_engine(app))
        )
        assert written == ["child", "parent"]


# -- database outages ------------------------------------------------------------------


@contextmanager
def proxied_app(
    database_url: str, tmp_path: Path, signer: AppStoreSigner, **config: Any
) -> Iterator[tuple[Flask, Retention, TCPProxy]]:
    url = sa.make_url(database_url)
    assert url.host is not None
    migrated_engine(database_url).dispose()
    with TCPProxy(url.host, url.port or 5432) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        with logged_app(tmp_path, proxied, signer, **config) as (app, retention):
            yield app, retention, proxy


def direct_rows(database_url: str) -> list[sa.Row[Any]]:
    engine = sa.create_engine(database_url)
    try:
        return rows(engine)
    finally:
        engine.dispose()


@pytest.mark.postgresql
@pytest.mark.skipif(not POSTGRES, reason="needs RETENTION_TEST_DATABASE_URL (PostgreSQL)")
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_requests_keep_answering_while_the_database_is_unreachable(
    database_url: str, tmp_path: Path, signer: AppStoreSigner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flask_retention")
    with proxied_app(database_url, tmp_path, signer) as (app, retention, proxy):
        retention.selector(lambda req: None)
        client = app.test_client()
        assert ask(client, signer, original_transaction_id="before") == 200
        writer = writer_of(app)
        assert writer.flush(GENEROUS)
        proxy.cut()
        for i in range(5):
            assert ask(client, signer, original_transaction_id=f"during-{i}") == 200
        assert writer.flush(0.3) is False  # the rows wait in memory
        wait_for(
            lambda: any(
                "could not write the decision log" in r.getMessage() for r in caplog.records
            ),
            "the outage to be noticed",
        )
        assert writer.pending == 5
        assert len(direct_rows(database_url)) == 1
        proxy.restore()
        assert writer.flush(GENEROUS)
        written = sorted(r.original_transaction_id for r in direct_rows(database_url))
        assert written == ["before"] + [f"during-{i}" for i in range(5)]
        assert writer.stats()["dropped"] == 0
        assert any(
            "writes the decision log again; 0 decisions were dropped" in r.getMessage()
            for r in caplog.records
        )


@pytest.mark.postgresql
@pytest.mark.skipif(not POSTGRES, reason="needs RETENTION_TEST_DATABASE_URL (PostgreSQL)")
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_past_the_bound_the_oldest_are_dropped_and_counted(
    database_url: str, tmp_path: Path, signer: AppStoreSigner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flask_retention")
    with proxied_app(database_url, tmp_path, signer, RETENTION_DECISION_LOG_QUEUE=3) as (
        app,
        retention,
        proxy,
    ):
        retention.selector(lambda req: None)
        client = app.test_client()
        proxy.cut()
        for i in range(5):
            assert ask(client, signer, original_transaction_id=f"r{i}") == 200
        writer = writer_of(app)
        wait_for(
            noticed(caplog, "could not write the decision log"),
            "the outage to be noticed",
        )
        proxy.restore()
        assert writer.flush(GENEROUS)
        written = sorted(r.original_transaction_id for r in direct_rows(database_url))
        assert written == ["r2", "r3", "r4"]  # the newest three
        stats = retention.stats(app).decision_log
        assert stats is not None
        assert (stats.dropped, stats.dropped_queue_full) == (2, 2)
        full = [r for r in caplog.records if "queue is full" in r.getMessage()]
        assert len(full) == 1  # once per outage
        assert any(
            "2 decisions were dropped during the outage (RETENTION_DECISION_LOG_QUEUE=3)"
            in r.getMessage()
            for r in caplog.records
        )
        # Stored with the first write after the outage, so that the report shows them.
        engine = sa.create_engine(database_url)
        try:
            report = build_report(engine, datetime.now(UTC) - timedelta(hours=1))
        finally:
            engine.dispose()
        assert report["dropped"] == {"total": 2, "queue_full": 2, "unstorable": 0}
        assert report["totals"]["requests"] == 3


# -- replays across processes -----------------------------------------------------------


def test_a_replay_answered_by_another_instance_is_caught_and_counted(
    database_url: str, tmp_path: Path, signer: AppStoreSigner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flask_retention")
    body = signer.realtime_body(original_transaction_id="twice")
    with (
        logged_app(tmp_path / "one", database_url, signer, NO_INTERVAL) as (first, r1),
        logged_app(tmp_path / "two", database_url, signer, NO_INTERVAL) as (second, r2),
    ):
        r1.selector(lambda req: None)
        r2.selector(lambda req: None)
        assert first.test_client().post(URL, data=body).status_code == 200
        assert writer_of(first).flush(GENEROUS)
        # The second host has not seen it: it answers, then the log catches the replay.
        client = second.test_client()
        assert ask(client, signer, original_transaction_id="fresh-1") == 200
        assert client.post(URL, data=body).status_code == 200
        assert ask(client, signer, original_transaction_id="fresh-2") == 200
        writer = writer_of(second)
        assert writer.flush(GENEROUS)
        assert writer.stats() == {**NOTHING, "written": 3, "replays": 1}
        engine = second.extensions["retention"].get_engine(second)
        logged = rows(engine)
        assert sorted(r.original_transaction_id for r in logged) == [
            "fresh-1",
            "fresh-2",
            "twice",
            "twice",
        ]
        original, replay = [r for r in logged if r.original_transaction_id == "twice"]
        assert original.request_identifier is not None
        assert not original.replay
        assert replay.replay
        assert replay.request_identifier is None
        assert replay.claimed_request_identifier == str(original.request_identifier)
        assert (replay.status, replay.kind, replay.fallback_reason) == (200, "none", "no_choice")
        assert any(
            "answered twice" in r.getMessage()
            and str(original.request_identifier) in r.getMessage()
            for r in caplog.records
        )
        report = build_report(engine, datetime.now(UTC) - timedelta(days=1))
        assert report["totals"]["replays"] == 1
        assert report["totals"]["requests"] == 4


# -- rows and purge --------------------------------------------------------------------


def test_a_rejected_decision_never_claims_its_identifier() -> None:
    rid = uuid.uuid4()
    decision = Decision(received_at=datetime.now(UTC), status=403, error="stale")
    decision.request_identifier = rid
    row = decision_row(decision)
    assert row["request_identifier"] is None
    assert row["claimed_request_identifier"] == str(rid)
    assert row["kind"] is None
    decision.status = 200
    decision.error = None
    assert decision_row(decision)["request_identifier"] == rid


def test_long_strings_are_cut_to_their_columns() -> None:
    decision = Decision(received_at=datetime.now(UTC))
    decision.product_id = "p" * 500
    decision.selector = "s" * 500
    row = decision_row(decision)
    assert len(row["product_id"]) == 200
    assert len(row["selector"]) == 200


def insert_aged(engine: sa.Engine, ages_in_days: list[float], now: datetime) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.insert(DECISIONS),
            [
                {
                    "status": 200,
                    "kind": "none",
                    "created_at": now - timedelta(days=age),
                    "original_transaction_id": f"{age}",
                }
                for age in ages_in_days
            ],
        )


def test_purge_deletes_only_older_rows_in_batches(database_url: str) -> None:
    engine = migrated_engine(database_url)
    now = datetime.now(UTC)
    insert_aged(engine, [100, 95, 91, 91, 120, 200, 365], now)
    insert_aged(engine, [89, 10, 0.5], now)
    deletes: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM RETENTION_DECISIONS"):
            deletes.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        assert purge_decisions(engine, timedelta(days=90), batch_size=3, now=now) == 7
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert len(deletes) == 3  # 3 + 3 + 1
    assert sorted(r.original_transaction_id for r in rows(engine)) == ["0.5", "10", "89"]
    assert purge_decisions(engine, timedelta(days=90), batch_size=3, now=now) == 0
    engine.dispose()


def test_purge_command(database_url: str, app: Flask) -> None:
    app.config["RETENTION_DATABASE_URI"] = database_url
    app.config["RETENTION_DECISION_LOG_DAYS"] = 30
    retention = Retention(app)
    engine = migrated_engine(database_url)
    now = datetime.now(UTC)
    insert_aged(engine, [45, 40, 5], now)
    runner = app.test_cli_runner()
    try:
        result = runner.invoke(args=["retention", "purge"], input="n\n")
        assert result.exit_code == 1
        assert "Delete 2 decisions recorded before" in result.output
        assert len(rows(engine)) == 3

        result = runner.invoke(args=["retention", "purge", "--older-than", "42d", "--yes"])
        assert result.exit_code == 0, result.output
        assert "Deleted 1 decision" in result.output
        result = runner.invoke(args=["retention", "purge"], input="y\n")
        assert result.exit_code == 0, result.output
        assert "Deleted 1 decision" in result.output
        assert [r.original_transaction_id for r in rows(engine)] == ["5"]

        result = runner.invoke(args=["retention", "purge", "--yes"])
        assert result.exit_code == 0
        assert "Deleted 0 decisions" in result.output
        result = runner.invoke(args=["retention", "purge"])
        assert "No decisions recorded before" in result.output

        result = runner.invoke(args=["retention", "purge", "--older-than", "ninety"])
        assert result.exit_code == 2
        assert "Invalid value for '--older-than'" in result.output
        assert "like 90d, 24h or 30m" in result.output
    finally:
        retention.close(app)
        engine.dispose()


def test_missing_tables_are_logged_once_and_requests_still_answer(
    tmp_path: Path, signer: AppStoreSigner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flask_retention")
    url = f"sqlite:///{tmp_path / 'not-migrated.db'}"
    with retention_app(
        tmp_path,
        url,
        mode="uri",
        RETENTION_ROOT_CERTIFICATES=[signer.root_pem],
        RETENTION_APP_APPLE_ID=APP_APPLE_ID,
        tuning=Tuning(decision_log_interval=0.01),
    ) as (app, retention):
        retention.selector(lambda req: None)
        client = app.test_client()
        for _ in range(3):
            assert ask(client, signer) == 200
        wait_for(noticed(caplog, "could not write the decision log"), "the failure")
        assert writer_of(app).flush(0.1) is False
        retention.close(app)
        failures = [r for r in caplog.records if "could not write" in r.getMessage()]
        assert len(failures) == 1  # once, however many retries
        assert "tables are missing" in failures[0].getMessage()
        assert "run `flask retention init-db`" in failures[0].getMessage()
        assert noticed(caplog, "3 decisions could not be written at exit")()
        assert writer_of(app).stats() == {**NOTHING, "dropped": 3, "dropped_at_exit": 3}


# -- what the log keeps -----------------------------------------------------------------


def escaped_body(signer: AppStoreSigner, payload: dict[str, Any]) -> bytes:
    """A real-time body signed by ``signer``'s leaf key, its payload JSON ASCII-escaped, so
    that it can carry a lone surrogate (``\\ud800``), which UTF-8 cannot encode."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    key = serialization.load_pem_private_key(signer.export_pem()["leaf_key"], None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    header = {"alg": "ES256", "x5c": signer.x5c}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    token = f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
    return json.dumps({"signedPayload": token}).encode()


#: Verified requests whose text no database takes as it is, and what is stored of it.
ODD_TEXT: list[tuple[dict[str, Any], tuple[str, str, str]]] = [
    (
        {"original_transaction_id": "1000\x000000001"},
        ("10000000001", "com.example.monthly", "en-US"),
    ),
    (
        {"original_transaction_id": "1000\ud8000000002"},
        ("1000\ufffd0000002", "com.example.monthly", "en-US"),
    ),
    (
        {"product_id": "com.example.\x00monthly"},
        ("1000000000000001", "com.example.monthly", "en-US"),
    ),
    ({"locale": "en-\udc00US"}, ("1000000000000001", "com.example.monthly", "en-\ufffdUS")),
]


def test_text_no_database_takes_is_cleaned_and_costs_nothing(
    database_url: str, tmp_path: Path, signer: AppStoreSigner
) -> None:
    with logged_app(tmp_path, database_url, signer, NO_INTERVAL) as (app, retention):
        retention.selector(lambda req: None)
        client = app.test_client()
        for fields, _ in ODD_TEXT:
            body = escaped_body(signer, signer.realtime_payload(**fields))
            assert client.post(URL, data=body).status_code == 200
        for i in range(50):
            assert ask(client, signer, original_transaction_id=f"next-{i}") == 200
        writer = writer_of(app)
        assert writer.flush(GENEROUS)
        logged = rows(app.extensions["retention"].get_engine(app))
        assert [(r.original_transaction_id, r.product_id, r.locale) for r in logged[:4]] == [
            stored for _, stored in ODD_TEXT
        ]
        assert [r.original_transaction_id for r in logged[4:]] == [f"next-{i}" for i in range(50)]
        assert writer.stats() == {**NOTHING, "written": 54}


def test_a_row_the_database_refuses_costs_only_itself_and_is_counted(
    database_url: str, tmp_path: Path, signer: AppStoreSigner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flask_retention")
    with logged_app(tmp_path, database_url, signer, NO_INTERVAL) as (app, retention):
        retention.selector(lambda req: None)
        client = app.test_client()
        writer = writer_of(app)
        for i in range(50):
            assert ask(client, signer, original_transaction_id=f"r{i}") == 200
            if i in (10, 30):  # a time without a zone: no column takes it
                writer.record(Decision(received_at=datetime.now()))
        assert writer.flush(GENEROUS)
        engine = app.extensions["retention"].get_engine(app)
        assert [r.original_transaction_id for r in rows(engine)] == [f"r{i}" for i in range(50)]
        stats = retention.stats(app).decision_log
        assert stats is not None
        assert (stats.written, stats.dropped, stats.dropped_unstorable) == (50, 2, 2)
        warnings = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert len(warnings) == 1  # once per burst, with the reason
        assert "naive datetime" in warnings[0]

        report = build_report(engine, datetime.now(UTC) - timedelta(hours=1))
        assert report["dropped"] == {"total": 2, "queue_full": 0, "unstorable": 2}
        assert json.loads(render_json(report))["dropped"]["unstorable"] == 2
        shown = "answered, not logged (dropped): queue full 0, unstorable 2"
        assert shown in render_text(report)
        assert shown in render_html(report)
        result = app.test_cli_runner().invoke(args=["retention", "report", "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["dropped"]["total"] == 2


@pytest.mark.postgresql
@pytest.mark.skipif(not POSTGRES, reason="needs RETENTION_TEST_DATABASE_URL (PostgreSQL)")
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_batch_written_again_after_its_commit_was_lost_is_stored_once(
    database_url: str, tmp_path: Path, signer: AppStoreSigner
) -> None:
    url = sa.make_url(database_url)
    assert url.host is not None
    migrated_engine(database_url).dispose()
    tuning = Tuning(decision_log_interval=3600, decision_log_idle=3600, decision_log_retry=0.05)
    with LostReplyProxy(url.host, url.port or 5432) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        with logged_app(tmp_path, proxied, signer, tuning) as (app, retention):
            retention.selector(lambda req: None)
            client = app.test_client()
            proxy.lose_next_commit_reply(after=b"INSERT INTO retention_decisions")
            for i in range(20):
                assert ask(client, signer, original_transaction_id=f"r{i}") == 200
            assert ask(client, signer, environment="Production") == 403  # no unique key
            writer = writer_of(app)
            assert writer.flush(GENEROUS)
            assert proxy.lost == 1  # committed, and the writer never heard so
            assert writer.stats() == {**NOTHING, "written": 21}
    logged = direct_rows(database_url)
    assert len(logged) == 21
    assert len({r.decision_uuid for r in logged}) == 21
    assert not any(r.replay for r in logged)
    engine = sa.create_engine(database_url)
    try:
        report = build_report(engine, datetime.now(UTC) - timedelta(hours=1))
    finally:
        engine.dispose()
    assert (report["totals"]["requests"], report["totals"]["replays"]) == (21, 0)


def test_a_lone_decision_is_written_without_further_traffic(
    database_url: str, tmp_path: Path, signer: AppStoreSigner
) -> None:
    idle_only = Tuning(decision_log_interval=3600, decision_log_idle=0.05)
    with logged_app(tmp_path, database_url, signer, idle_only) as (app, retention):
        retention.selector(lambda req: None)
        assert ask(app.test_client(), signer, original_transaction_id="alone") == 200
        engine = app.extensions["retention"].get_engine(app)
        wait_for(lambda: len(rows(engine)) == 1, "the idle queue to be written")
        assert rows(engine)[0].original_transaction_id == "alone"
