"""A database that fails: silent, read-only, gone and back. Nothing waits on it for ever,
connections heal, and the decision log and the catalogue refresher recover by themselves.

PostgreSQL sits behind :class:`~tests.tcp_proxy.TCPProxy` (stalled: it accepts and
never answers; restored: the host is back and has forgotten the old connections), and
a database of its own is switched read-only with ``ALTER DATABASE`` as a failover or
a full disk would. Waits are short (``Tuning``); one test per mechanism keeps the
production defaults.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from flask_retention import Retention, Tuning
from flask_retention.catalogue.models import metadata
from flask_retention.catalogue.snapshot import CatalogueSnapshot
from flask_retention.catalogue.store import Catalogue
from flask_retention.core.config import DEFAULT_TUNING
from flask_retention.core.database import (
    POSTGRESQL_CONNECT_ARGS,
    DatabaseTimeout,
    bounded,
    create_engine,
    sqlstate,
)
from flask_retention.testing import AppStoreSigner

from . import server_app
from .catalogue_support import migrated_engine, retention_app
from .support import state_of
from .tcp_proxy import TCPProxy

POSTGRES_URL: Final = os.environ.get("RETENTION_TEST_DATABASE_URL")
DECISIONS: Final = metadata.tables["retention_decisions"]
APP_APPLE_ID: Final = 1234567890
URL: Final = "/retention/realtime"
#: Seconds a test waits for something that should take well under one; only a broken
#: test reaches it.
GENEROUS: Final = 30.0
#: The deadline of background work in these tests, and the commands' bound.
DEADLINE: Final = 0.5
COMMAND_TIMEOUT: Final = 1.0
FAST: Final = Tuning(database_deadline=DEADLINE, decision_log_retry=0.1)
REPO_ROOT: Final = Path(__file__).resolve().parent.parent
BIN: Final = Path(sys.executable).parent

pytestmark = [
    pytest.mark.postgresql,
    pytest.mark.skipif(not POSTGRES_URL, reason="needs RETENTION_TEST_DATABASE_URL (PostgreSQL)"),
]

postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture(scope="module")
def signer() -> AppStoreSigner:
    return AppStoreSigner()


def wait_for(condition: Callable[[], object], what: str) -> None:
    """Wait until ``condition()`` is true; fail after :data:`GENEROUS` seconds."""
    deadline = time.monotonic() + GENEROUS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


@contextmanager
def proxy_to(database_url: str) -> Iterator[tuple[TCPProxy, str]]:
    """A proxy in front of ``database_url``'s server, and the URL through it (new
    connections give up after 2 s, libpq's least)."""
    url = sa.make_url(database_url)
    assert url.host is not None
    with TCPProxy(url.host, url.port or 5432) as proxy:
        through = url.set(host="127.0.0.1", port=proxy.port).update_query_dict(
            {"connect_timeout": "2"}
        )
        yield proxy, through.render_as_string(hide_password=False)


@contextmanager
def a_database_of_its_own() -> Iterator[str]:
    """A new PostgreSQL database with flask-retention's tables; dropped afterwards."""
    assert POSTGRES_URL is not None
    name = f"retention_ro_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    try:
        migrated_engine(url).dispose()
        yield url
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def switch_read_only(database_url: str, read_only: bool) -> None:
    """Make new sessions of the database read-only (or writable again). Switching it
    read-only also ends its sessions, as a failover does; switching back does not, so
    that the sessions opened meanwhile stay read-only until flask-retention drops them."""
    assert POSTGRES_URL is not None
    name = sa.make_url(database_url).database
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            value = "on" if read_only else "off"
            connection.exec_driver_sql(
                f'ALTER DATABASE "{name}" SET default_transaction_read_only = {value}'
            )
            if read_only:
                connection.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )
    finally:
        admin.dispose()


def written(database_url: str) -> set[str]:
    """The ``originalTransactionId`` of every decision stored, read over a connection of
    its own."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            return set(connection.execute(sa.select(DECISIONS.c.original_transaction_id)).scalars())
    finally:
        engine.dispose()


@contextmanager
def logging_app(
    tmp_path: Path, database_url: str, signer: AppStoreSigner
) -> Iterator[tuple[Flask, Retention, FlaskClient]]:
    """An app whose endpoint logs its decisions to ``database_url``, with short waits."""
    with retention_app(
        tmp_path,
        database_url,
        mode="uri",
        tuning=FAST,
        RETENTION_ROOT_CERTIFICATES=[signer.root_pem],
        RETENTION_APP_APPLE_ID=APP_APPLE_ID,
    ) as (app, retention):
        retention.selector(lambda request: None)
        yield app, retention, app.test_client()


def ask(client: FlaskClient, signer: AppStoreSigner, transaction: str) -> int:
    body = signer.realtime_body(original_transaction_id=transaction)
    return client.post(URL, data=body).status_code


def query(engine: sa.Engine, sql: str) -> Any:
    """The one value ``sql`` gives, in a transaction bounded by :data:`DEADLINE`."""
    with bounded(engine, DEADLINE) as connection:
        return connection.execute(sa.text(sql)).scalar_one()


# -- engines we create ---------------------------------------------------------------


def test_postgresql_engines_we_create_carry_keepalives_and_timeouts() -> None:
    """The real defaults reach libpq, and the socket itself: keepalives and a TCP user
    timeout (a vanished host), a connect timeout; a recycle on the pool."""
    assert POSTGRES_URL is not None
    engine = create_engine(POSTGRES_URL)
    try:
        with engine.connect() as connection:
            dbapi = connection.connection.dbapi_connection
            assert dbapi is not None
            parameters = dbapi.info.get_parameters()
            sock = socket.socket(fileno=os.dup(dbapi.fileno()))
            try:
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 30000
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
            finally:
                sock.close()
        for key, value in POSTGRESQL_CONNECT_ARGS.items():
            assert parameters[key] == str(value)
    finally:
        engine.dispose()


def test_a_parameter_in_the_url_wins_over_ours() -> None:
    assert POSTGRES_URL is not None
    url = sa.make_url(POSTGRES_URL).update_query_dict({"connect_timeout": "3"})
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            dbapi = connection.connection.dbapi_connection
            assert dbapi.info.get_parameters()["connect_timeout"] == "3"  # type: ignore[union-attr]
    finally:
        engine.dispose()


def test_a_pooled_connection_the_server_ended_is_replaced_before_use() -> None:
    """The pre-ping (at its real timeout) finds the connection dead and makes a new one:
    the caller never sees the error."""
    assert POSTGRES_URL is not None
    engine = create_engine(POSTGRES_URL)
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            first = connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        with admin.connect() as connection:
            connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        with engine.connect() as connection:
            second = connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        assert second != first
    finally:
        engine.dispose()
        admin.dispose()


# -- bounded transactions ---------------------------------------------------------------


def test_our_transactions_carry_a_statement_timeout() -> None:
    """``SET LOCAL`` at the real deadline (not a startup parameter), also on an engine that
    is not ours; a slow statement is cancelled by the server, not by the deadline."""
    assert POSTGRES_URL is not None
    engine = sa.create_engine(POSTGRES_URL)  # a host's engine: nothing of ours on it
    try:
        with bounded(engine, DEFAULT_TUNING.database_deadline) as connection:
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "4s"
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "0"
        with pytest.raises(sa.exc.OperationalError) as caught:
            query(engine, "SELECT pg_sleep(5)")
        assert sqlstate(caught.value) == "57014"
    finally:
        engine.dispose()


@postgresql_only
def test_a_silent_database_costs_a_deadline_and_the_next_call_heals(database_url: str) -> None:
    with proxy_to(database_url) as (proxy, through):
        engine = create_engine(through)
        try:
            assert query(engine, "SELECT 1") == 1

            def silent_midway() -> None:
                with bounded(engine, DEADLINE) as connection:
                    connection.execute(sa.text("SELECT 2"))
                    proxy.stall()
                    connection.execute(sa.text("SELECT 3"))

            with pytest.raises(DatabaseTimeout, match=r"did not answer within 0\.5 s"):
                silent_midway()
            with pytest.raises(DatabaseTimeout):  # a new connection: connect_timeout ends it
                query(engine, "SELECT 4")
            proxy.restore()
            assert query(engine, "SELECT 5") == 5
        finally:
            engine.dispose()


# -- the decision log ------------------------------------------------------------------


def test_decisions_wait_out_a_read_only_database_and_are_all_written(
    tmp_path: Path, signer: AppStoreSigner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flask_retention")
    with a_database_of_its_own() as url, logging_app(tmp_path, url, signer) as (app, _, client):
        assert ask(client, signer, "before") == 200
        wait_for(lambda: written(url) == {"before"}, "the first decision")
        switch_read_only(url, True)
        during = {f"during-{i}" for i in range(20)}
        for transaction in sorted(during):
            assert ask(client, signer, transaction) == 200
        wait_for(lambda: messages(caplog, "could not write the decision log"), "the failure")
        switch_read_only(url, False)
        wait_for(lambda: written(url) == {"before"} | during, "every decision")
        failures = messages(caplog, "could not write the decision log")
        assert len(failures) == 1
        assert "the database is read-only" in failures[0]
        assert len(messages(caplog, "writes the decision log again")) == 1
        assert state_of(app).decision_log.stats()["dropped"] == 0


@postgresql_only
def test_decisions_wait_out_a_silent_database_and_are_all_written(
    database_url: str, tmp_path: Path, signer: AppStoreSigner, caplog: pytest.LogCaptureFixture
) -> None:
    """The host vanished without resetting its connections, then came back: the writer's
    call on the dead connection is abandoned at its deadline, not waited on for ever."""
    caplog.set_level(logging.INFO, logger="flask_retention")
    migrated_engine(database_url).dispose()
    with (
        proxy_to(database_url) as (proxy, through),
        logging_app(tmp_path, through, signer) as (app, _, client),
    ):
        assert ask(client, signer, "before") == 200
        wait_for(lambda: written(database_url) == {"before"}, "the first decision")
        proxy.stall()
        during = {f"during-{i}" for i in range(20)}
        for transaction in sorted(during):
            assert ask(client, signer, transaction) == 200
        wait_for(lambda: messages(caplog, "did not answer within 0.5 s"), "the deadline")
        proxy.restore()
        wait_for(lambda: written(database_url) == {"before"} | during, "every decision")
        assert len(messages(caplog, "could not write the decision log")) == 1
        assert len(messages(caplog, "writes the decision log again")) == 1
        assert state_of(app).decision_log.stats()["dropped"] == 0


# -- the catalogue refresher -------------------------------------------------------------


@postgresql_only
def test_the_refresher_waits_out_a_silent_database_and_reloads(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flask_retention")
    direct = migrated_engine(database_url)
    catalogue = Catalogue(direct)
    catalogue.add_message("plain", "Stay", "Body")
    try:
        with (
            proxy_to(database_url) as (proxy, through),
            retention_app(tmp_path, through, mode="uri", tuning=FAST) as (app, _),
        ):
            lookup = state_of(app).lookup
            assert isinstance(lookup, CatalogueSnapshot)
            assert lookup.ready(GENEROUS)
            proxy.stall()
            catalogue.add_message("fresh", "New", "Added while the database was silent")
            wait_for(lambda: messages(caplog, "could not refresh the catalogue"), "the failure")
            assert lookup.lookup("plain", "Sandbox") is not None
            proxy.restore()
            wait_for(lambda: lookup.lookup("fresh", "Sandbox") is not None, "the reload")
            # The view is swapped before the recovery is logged.
            wait_for(lambda: messages(caplog, "reads the catalogue again"), "the recovery log")
            failures = messages(caplog, "could not refresh the catalogue")
            assert len(failures) == 1
            assert "did not answer within 0.5 s" in failures[0]
            assert len(messages(caplog, "reads the catalogue again")) == 1
    finally:
        direct.dispose()


# -- commands --------------------------------------------------------------------------


def server_app_env(folder: Path, signer: AppStoreSigner, database_uri: str) -> dict[str, str]:
    """The environment that makes :mod:`tests.server_app` serve from ``database_uri``."""
    root_pem = folder / "root.pem"
    root_pem.write_bytes(signer.root_pem)
    return {
        **os.environ,
        server_app.ENV_INSTANCE_PATH: str(folder / "instance"),
        server_app.ENV_ROOT_PEM: str(root_pem),
        server_app.ENV_DATABASE_URI: database_uri,
        server_app.ENV_SELECTOR_TIMEOUT: "0.5",
        "PYTHONUNBUFFERED": "1",
    }


@postgresql_only
@pytest.mark.parametrize(
    "command",
    [["check", "--offline"], ["report", "--json"], ["status"], ["import", "catalogue.toml"]],
    ids=" ".join,
)
def test_a_command_gives_up_on_a_silent_database_in_one_line(
    command: list[str], database_url: str, tmp_path: Path, signer: AppStoreSigner
) -> None:
    """The real command, in a process of its own: it ends within its bound (plus a
    generous margin for the interpreter), with one line and no traceback."""
    migrated_engine(database_url).dispose()
    (tmp_path / "catalogue.toml").write_text(
        '[[messages]]\nname = "winback"\nheader = "Before you go"\nbody = "Stay a while."\n',
        encoding="utf-8",
    )
    with proxy_to(database_url) as (proxy, through):
        proxy.stall()
        env = server_app_env(tmp_path, signer, through)
        env[server_app.ENV_DATABASE_TIMEOUT] = str(COMMAND_TIMEOUT)
        result = subprocess.run(
            [str(BIN / "flask"), "--app", "tests.server_app:create_app", "retention", *command],
            cwd=tmp_path,
            env={**env, "PYTHONPATH": str(REPO_ROOT)},
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT + GENEROUS,
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: the catalogue database did not answer within 1 s (RETENTION_DATABASE_TIMEOUT); "
        "check that it is running and reachable."
    ]


# -- under gevent --------------------------------------------------------------------------


def test_gunicorn_gevent_writes_every_decision_after_read_only_and_silent_outages(
    tmp_path: Path, signer: AppStoreSigner
) -> None:
    """One gevent worker: while the database is read-only, then silent, requests and
    the host's page keep answering (background database work never blocks the hub),
    and every decision is written once the database is back."""
    pytest.importorskip("gevent")
    from .test_servers import (
        HOST,
        JSON_HEADERS,
        _free_port,
        _gunicorn_control_socket_off,
        _stop,
    )

    with a_database_of_its_own() as url, proxy_to(url) as (proxy, through):
        env = server_app_env(tmp_path, signer, through)
        env[server_app.ENV_DATABASE_DEADLINE] = str(DEADLINE)
        port = _free_port()
        log_path = tmp_path / "server.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    str(BIN / "gunicorn"),
                    "--bind",
                    f"{HOST}:{port}",
                    "--worker-class",
                    "gevent",
                    "--workers",
                    "1",
                    *_gunicorn_control_socket_off(),
                    "tests.server_app:create_app()",
                ],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            with httpx.Client(
                base_url=f"http://{HOST}:{port}", trust_env=False, timeout=5.0
            ) as client:

                def serving() -> bool:
                    try:
                        return client.get("/").status_code == 200
                    except httpx.TransportError:
                        assert process.poll() is None, log_path.read_text()
                        return False

                def post(transaction: str) -> int:
                    body = signer.realtime_body(original_transaction_id=transaction)
                    return client.post(URL, content=body, headers=JSON_HEADERS).status_code

                wait_for(serving, "the server")
                assert post("before") == 200
                wait_for(lambda: written(url) == {"before"}, "the first decision")
                expected = {"before"}
                for number, outage in enumerate(("read-only", "silent"), start=1):
                    if outage == "read-only":
                        switch_read_only(url, True)
                    else:
                        proxy.stall()
                    during = {f"{outage}-{i}" for i in range(20)}
                    for transaction in sorted(during):
                        assert post(transaction) == 200
                    assert client.get("/").status_code == 200

                    def noticed(number: int = number) -> bool:
                        text = log_path.read_text()
                        return text.count("could not write the decision log") == number

                    wait_for(noticed, f"the failure ({outage})")
                    assert client.get("/").status_code == 200
                    if outage == "read-only":
                        switch_read_only(url, False)
                    else:
                        proxy.restore()
                    expected |= during

                    def all_written(expected: frozenset[str] = frozenset(expected)) -> bool:
                        return written(url) == expected

                    wait_for(all_written, f"the decisions ({outage})")
        finally:
            _stop(process, signal.SIGTERM)
        output = log_path.read_text()
        assert output.count("could not write the decision log") == 2, output
        assert output.count("writes the decision log again") == 2, output
        assert "Traceback" not in output, output
