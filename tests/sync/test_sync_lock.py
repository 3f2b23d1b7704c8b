"""The sync lock can't strand anyone: SIGTERM releases it, a heartbeat keeps it while a step
waits, a killed sync's lock is taken over after a minute, and ``status`` says who holds it.

The signal tests run ``flask --app tests.sync.sync_lock_app retention sync`` as a real
subprocess against the fake App Store served behind a :class:`Gate` that holds a write
until the test lets it go, so the test knows the sync is in the middle of a step.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy.orm import Session

from flask_retention import Retention
from flask_retention.appstore.sync import (
    SyncInterrupted,
    SyncLockedError,
    SyncLockHandle,
    acquire_sync_lock,
    sync_lock_info,
)
from flask_retention.catalogue.models import SyncLock, utcnow
from flask_retention.core.database import create_engine
from flask_retention.testing import FakeAppStore, serve

from . import sync_lock_app
from .support import build_catalogue, fails, invoke, ok, writes

REPO_ROOT: Final = Path(__file__).resolve().parent.parent.parent
FLASK: Final = (sys.executable, "-m", "flask", "--app", "tests.sync.sync_lock_app")
#: Seconds to wait for the subprocess to reach the gate, or to exit.
WAIT_TIMEOUT: Final = 30.0
#: Seconds the gate holds a request at most (a test that fails does not hang).
HOLD_TIMEOUT: Final = 60.0
#: The short lock timeout of the heartbeat test, and its heartbeat.
SHORT_LOCK_TIMEOUT: Final = 2.0
SHORT_HEARTBEAT: Final = 0.05
#: The keys of the test app's config the subprocess gets.
CONFIG_KEYS: Final = (
    "RETENTION_DATABASE_URI",
    "RETENTION_ENVIRONMENT",
    "RETENTION_APP_APPLE_ID",
    "RETENTION_ISSUER_ID",
    "RETENTION_KEY_ID",
    "RETENTION_PRIVATE_KEY",
    "RETENTION_BUNDLE_ID",
)


class Gate:
    """WSGI middleware letting GETs and the first ``let_through`` writes pass, and holding
    every later write until :meth:`open` (then passed on, or answered 503 with ``drop``)."""

    def __init__(self, app: Any, let_through: int) -> None:
        self.app = app
        self.let_through = let_through
        self.holding = threading.Event()
        self._opened = threading.Event()
        self._drop = False
        self._writes = 0
        self._active = 0
        self._changed = threading.Condition()

    def __call__(self, environ: Any, start_response: Any) -> Iterable[bytes]:
        with self._changed:
            self._active += 1
            if environ["REQUEST_METHOD"] != "GET":
                self._writes += 1
                held = self._writes > self.let_through
            else:
                held = False
        try:
            if held:
                self.holding.set()
                self._opened.wait(HOLD_TIMEOUT)
                if self._drop:
                    start_response("503 Service Unavailable", [("Content-Length", "0")])
                    return []
            return list(self.app(environ, start_response))
        finally:
            with self._changed:
                self._active -= 1
                self._changed.notify_all()

    def open(self, *, drop: bool = False) -> None:
        """Let the held writes go on to the fake (or answer them 503 with ``drop``)."""
        self._drop = drop
        self._opened.set()

    def close(self) -> None:
        """Answer what is held 503 and wait until no request is in progress."""
        self.open(drop=True)
        with self._changed:
            self._changed.wait_for(lambda: self._active == 0, WAIT_TIMEOUT)


@dataclass
class SyncProcess:
    """``flask retention sync`` running as a subprocess, and its output file."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        """Poll ``condition``; fail if the sync exits first or it takes too long."""
        deadline = time.monotonic() + WAIT_TIMEOUT
        while not condition():
            code = self.process.poll()
            if code is not None:
                pytest.fail(f"sync exited with {code} before {what}:\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"not {what} within {WAIT_TIMEOUT} s:\n{self.output()}")
            time.sleep(0.02)

    def wait(self) -> int:
        return self.process.wait(WAIT_TIMEOUT)


@pytest.fixture
def engine(app: Flask) -> sa.Engine:
    retention = app.extensions["retention"]
    assert isinstance(retention, Retention)
    return retention.get_engine(app)


@pytest.fixture
def start_sync(app: Flask, tmp_path: Path) -> Iterator[Callable[..., SyncProcess]]:
    """Start ``flask retention sync`` on the test app's database against ``store_url``, with
    ``Tuning`` overrides (killed after the test if it still runs)."""
    started: list[SyncProcess] = []

    def start(store_url: str, **tuning: float) -> SyncProcess:
        config = {key: app.config[key] for key in CONFIG_KEYS}
        config.update(RETENTION_API_BASE_URL=store_url, INSTANCE_PATH=app.instance_path)
        log_path = tmp_path / f"sync-{len(started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*FLASK, "retention", "sync"],
                cwd=REPO_ROOT,
                env={
                    **os.environ,
                    "PYTHONUNBUFFERED": "1",
                    sync_lock_app.ENV_CONFIG: json.dumps(config),
                    sync_lock_app.ENV_TUNING: json.dumps(tuning),
                },
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(SyncProcess(process, log_path))
        return started[-1]

    yield start
    for sync in started:
        if sync.process.poll() is None:
            sync.process.kill()
            sync.process.wait(WAIT_TIMEOUT)


@pytest.fixture
def gated(fake_app_store: FakeAppStore) -> Iterator[Callable[[int], tuple[Gate, str]]]:
    """Serve ``fake_app_store`` behind a :class:`Gate`; yields a function that starts one and
    returns it with its URL."""
    with contextlib.ExitStack() as stack:

        def start(let_through: int) -> tuple[Gate, str]:
            gate = Gate(fake_app_store, let_through)
            url = stack.enter_context(serve(gate))
            stack.callback(gate.close)  # before the server stops
            return gate, url

        yield start


def lock_rows(engine: sa.Engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        return [(lock.environment, lock.owner) for lock in session.scalars(sa.select(SyncLock))]


def put_lock(engine: sa.Engine, owner: str, heartbeat_at: datetime) -> None:
    """A lock row as a sync on another host leaves it (its last heartbeat at ``heartbeat_at``)."""
    with Session(engine) as session, session.begin():
        session.add(
            SyncLock(
                environment="Sandbox",
                owner=owner,
                acquired_at=heartbeat_at - timedelta(minutes=5),
                heartbeat_at=heartbeat_at,
            )
        )


# -- SIGTERM ---------------------------------------------------------------------------


def test_sigterm_releases_the_lock_and_the_next_sync_finishes(
    runner: FlaskCliRunner,
    tmp_path: Path,
    engine: sa.Engine,
    fake_app_store: FakeAppStore,
    gated: Callable[[int], tuple[Gate, str]],
    start_sync: Callable[..., SyncProcess],
) -> None:
    build_catalogue(runner, tmp_path)
    gate, url = gated(2)  # both images are uploaded, the first message waits
    sync = start_sync(url)
    sync.wait_until(gate.holding.is_set, "a write reached the gate")
    assert [env for env, _owner in lock_rows(engine)] == ["Sandbox"]

    sync.process.send_signal(signal.SIGTERM)
    assert sync.wait() == 143
    output = sync.output()
    assert (
        "Error: stopped by SIGTERM; the sync lock of Sandbox was released; run sync again to finish"
    ) in output
    assert "Traceback" not in output
    assert lock_rows(engine) == []

    gate.open(drop=True)  # the upload the sync was waiting for never landed
    result = ok(invoke(runner, "sync"))
    assert "Took over" not in result.output
    assert "Applied 3 change(s) to Sandbox." in result.output
    assert [r.status for r in writes(fake_app_store)] == [200] * 5
    assert len(fake_app_store.defaults) == 1
    assert "Applied 0 change(s)" in ok(invoke(runner, "sync")).output


def test_a_sync_lock_left_on_a_silent_database_is_given_up_within_its_limit() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        port = silent.getsockname()[1]
        silent_engine = create_engine(f"postgresql+psycopg://retention@127.0.0.1:{port}/x")
        try:
            with (
                pytest.raises(SyncInterrupted) as stopped,
                SyncLockHandle(silent_engine, "Sandbox", "me", release_timeout=0.2),
            ):
                raise SyncInterrupted("SIGTERM")
        finally:
            silent_engine.dispose()
    assert stopped.value.lock_released is False


def test_sync_restores_the_sigterm_handler_and_stops_its_heartbeat(
    runner: FlaskCliRunner, tmp_path: Path
) -> None:
    def mine(signum: int, frame: object) -> None:
        raise AssertionError("not called")

    build_catalogue(runner, tmp_path)
    before = signal.signal(signal.SIGTERM, mine)
    try:
        ok(invoke(runner, "sync"))
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)
    assert not [t for t in threading.enumerate() if "sync lock" in t.name]


# -- the heartbeat ---------------------------------------------------------------------


def test_the_heartbeat_keeps_the_lock_of_a_sync_in_a_long_step(
    runner: FlaskCliRunner,
    tmp_path: Path,
    engine: sa.Engine,
    fake_app_store: FakeAppStore,
    gated: Callable[[int], tuple[Gate, str]],
    start_sync: Callable[..., SyncProcess],
) -> None:
    build_catalogue(runner, tmp_path)
    gate, url = gated(0)  # the first upload waits, longer than the lock's timeout
    sync = start_sync(
        url, sync_lock_timeout=SHORT_LOCK_TIMEOUT, sync_lock_heartbeat=SHORT_HEARTBEAT
    )
    sync.wait_until(gate.holding.is_set, "a write reached the gate")

    def heartbeat_past_timeout() -> bool:
        lock = sync_lock_info(engine, "Sandbox")
        assert lock is not None
        return lock.heartbeat_at - lock.acquired_at > timedelta(seconds=SHORT_LOCK_TIMEOUT)

    sync.wait_until(heartbeat_past_timeout, "the heartbeat moved while the step waits")
    with pytest.raises(SyncLockedError, match=f"pid {sync.process.pid} "):
        acquire_sync_lock(engine, "Sandbox", owner="another sync", timeout=SHORT_LOCK_TIMEOUT)

    gate.open()
    assert sync.wait() == 0, sync.output()
    assert "Applied 5 change(s) to Sandbox." in sync.output()
    assert lock_rows(engine) == []
    assert len(fake_app_store.defaults) == 1


def test_a_sync_whose_lock_is_taken_over_during_a_step_stops_at_the_next(
    runner: FlaskCliRunner,
    tmp_path: Path,
    engine: sa.Engine,
    fake_app_store: FakeAppStore,
    gated: Callable[[int], tuple[Gate, str]],
    start_sync: Callable[..., SyncProcess],
) -> None:
    build_catalogue(runner, tmp_path)
    gate, url = gated(0)
    sync = start_sync(url)
    sync.wait_until(gate.holding.is_set, "a write reached the gate")
    with Session(engine) as session, session.begin():
        lock = session.get(SyncLock, "Sandbox")
        assert lock is not None
        lock.owner = "a sync on host-b"
        lock.heartbeat_at = utcnow()

    gate.open()
    assert sync.wait() == 1
    output = sync.output()
    assert "Error: another sync of Sandbox is running (a sync on host-b" in output
    assert "Traceback" not in output
    assert len(writes(fake_app_store)) == 1
    assert lock_rows(engine) == [("Sandbox", "a sync on host-b")]


# -- stale locks (the real default: about a minute) ------------------------------------


def test_a_lock_without_heartbeat_for_two_minutes_is_taken_over(
    runner: FlaskCliRunner, tmp_path: Path, engine: sa.Engine, fake_app_store: FakeAppStore
) -> None:
    build_catalogue(runner, tmp_path)
    put_lock(engine, "a sync that was killed", utcnow() - timedelta(minutes=2))
    result = ok(invoke(runner, "sync"))
    assert "Took over a stale sync lock from a sync that was killed." in result.output
    assert len(fake_app_store.defaults) == 1
    assert lock_rows(engine) == []


def test_a_lock_with_a_heartbeat_half_a_minute_old_is_not_taken_over(
    runner: FlaskCliRunner, tmp_path: Path, engine: sa.Engine, fake_app_store: FakeAppStore
) -> None:
    build_catalogue(runner, tmp_path)
    put_lock(engine, "a sync on host-b", utcnow() - timedelta(seconds=30))
    reason = fails(invoke(runner, "sync"))
    assert "another sync of Sandbox is running (a sync on host-b since " in reason
    assert "taken over 60 s after its last heartbeat" in reason
    assert writes(fake_app_store) == []
    assert lock_rows(engine) == [("Sandbox", "a sync on host-b")]


# -- status ----------------------------------------------------------------------------


def test_status_says_who_holds_the_lock_and_since_when(
    runner: FlaskCliRunner, engine: sa.Engine
) -> None:
    held = acquire_sync_lock(engine, "Sandbox", owner="cron on host-b")
    text = ok(invoke(runner, "status")).output
    sandbox, production = text.split("== Production ==")
    assert "Sync lock: held by cron on host-b since " in sandbox
    assert "stale" not in sandbox
    assert "Sync lock: free" in production

    reports = json.loads(ok(invoke(runner, "status", "--json")).output)
    lock = {r["environment"]: r["sync_lock"] for r in reports}
    assert lock["Production"] is None
    assert lock["Sandbox"]["owner"] == "cron on host-b"
    assert lock["Sandbox"]["stale"] is False
    info = sync_lock_info(engine, "Sandbox")
    assert info is not None
    assert datetime.fromisoformat(lock["Sandbox"]["acquired_at"]) == info.acquired_at
    assert f"since {info.acquired_at:%Y-%m-%d %H:%M:%S} UTC" in sandbox
    held.release()
    assert "Sync lock: free" in ok(invoke(runner, "status", "-e", "Sandbox")).output


def test_status_shows_a_stale_lock_as_stale(runner: FlaskCliRunner, engine: sa.Engine) -> None:
    put_lock(engine, "a sync that was killed", utcnow() - timedelta(minutes=2))
    text = ok(invoke(runner, "status", "-e", "Sandbox")).output
    assert "Sync lock: held by a sync that was killed since " in text
    assert "(stale: the next sync takes it over)" in text
    [report] = json.loads(ok(invoke(runner, "status", "-e", "Sandbox", "--json")).output)
    assert report["sync_lock"]["stale"] is True
    assert report["sync_lock"]["heartbeat_age"] >= 120
