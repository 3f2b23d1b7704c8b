"""The request path as deployments meet it: host hooks that read the body, bursts after a
start, many healthy selectors at once, selectors that change their request, a catalogue
that cannot load. Concurrent tests go through real HTTP on loopback."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import flask
import httpx
import pytest
import sqlalchemy as sa
from flask import Flask, request

from flask_retention import Decision, Message, RealtimeRequest, Retention, retention_decided
from flask_retention.catalogue.models import metadata
from flask_retention.catalogue.store import Catalogue
from flask_retention.core.database import create_engine
from flask_retention.testing import AppStoreSigner, serve

from .catalogue_support import migrated_engine

URL = "/retention/realtime"
APP_APPLE_ID = 1234567890
MID = uuid.UUID("a1b2c3d4-e5f6-7890-a1b2-c3d4e5f67890")
GENEROUS = 30.0  # seconds; only reached when a test is broken
DECISIONS = metadata.tables["retention_decisions"]


@pytest.fixture(scope="module")
def signer() -> AppStoreSigner:
    return AppStoreSigner()


def new_app(tmp_path: Path, signer: AppStoreSigner, **config: Any) -> Flask:
    app = Flask("retention_request_path", instance_path=str(tmp_path / "instance"))
    app.config.update(
        RETENTION_ROOT_CERTIFICATES=[signer.root_pem],
        RETENTION_APP_APPLE_ID=APP_APPLE_ID,
        **config,
    )
    return app


def record_decisions(app: Flask) -> list[Decision]:
    """Every decision of ``app`` from now on (the signal the decision log also gets)."""
    seen: list[Decision] = []

    def receive(sender: Flask, decision: Decision) -> None:
        seen.append(decision)

    retention_decided.connect(receive, sender=app, weak=False)
    return seen


def burst(base_url: str, bodies: list[bytes]) -> list[httpx.Response]:
    """Send ``bodies`` at once, one thread each, released together by a barrier."""
    barrier = threading.Barrier(len(bodies))

    def send(body: bytes) -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=GENEROUS) as client:
            barrier.wait(GENEROUS)
            return client.post(URL, content=body, headers={"Content-Type": "application/json"})

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, bodies))


@pytest.fixture
def closing() -> Iterator[Callable[[Retention], Retention]]:
    made: list[Retention] = []
    yield lambda r: made.append(r) or r  # type: ignore[func-returns-value]
    for retention in made:
        retention.close()


# -- the body, through Werkzeug ----------------------------------------------------------


@pytest.mark.parametrize("read", ["get_data", "get_json", "stream"])
def test_a_host_hook_that_reads_the_body_first_changes_nothing(
    tmp_path: Path, signer: AppStoreSigner, closing: Callable[[Retention], Retention], read: str
) -> None:
    app = new_app(tmp_path, signer)
    seen: list[int] = []

    @app.before_request
    def log_the_body() -> None:
        if read == "get_data":
            seen.append(len(request.get_data()))
        elif read == "get_json":
            seen.append(len(request.get_json(force=True)["signedPayload"]))
        else:  # Werkzeug's own stream, cached as get_data caches it
            seen.append(len(request.get_data(cache=True)))

    retention = closing(Retention(app))
    retention.selector(lambda req: Message(MID))
    response = app.test_client().post(URL, data=signer.realtime_body())
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"message": {"messageIdentifier": str(MID)}}
    assert seen
    assert seen[0] > 0


def test_a_host_hook_reading_after_the_endpoint_sees_the_same_body(
    tmp_path: Path, signer: AppStoreSigner, closing: Callable[[Retention], Retention]
) -> None:
    app = new_app(tmp_path, signer)
    after: list[bytes] = []

    @app.after_request
    def read_the_body_after(response: flask.Response) -> flask.Response:
        after.append(request.get_data())
        return response

    retention = closing(Retention(app))
    retention.selector(lambda req: Message(MID))
    body = signer.realtime_body()
    assert app.test_client().post(URL, data=body).status_code == 200
    assert after == [body]


def test_the_hosts_smaller_max_content_length_holds_on_the_endpoint(
    tmp_path: Path, signer: AppStoreSigner, closing: Callable[[Retention], Retention]
) -> None:
    app = new_app(tmp_path, signer, MAX_CONTENT_LENGTH=1000)
    retention = closing(Retention(app))
    retention.selector(lambda req: Message(MID))
    response = app.test_client().post(URL, data=signer.realtime_body())  # about 3 KB
    assert response.status_code == 413
    assert response.get_json()["error"] == "too_large"


def test_a_chunked_body_over_64_kib_is_refused(
    tmp_path: Path, signer: AppStoreSigner, closing: Callable[[Retention], Retention]
) -> None:
    """Werkzeug stops a body without a length at the cap; what was read shows it."""
    app = new_app(tmp_path, signer)
    closing(Retention(app)).selector(lambda req: Message(MID))
    body = b'{"signedPayload": "' + b"a" * (100 * 1024) + b'"}'
    with serve(app) as base_url, httpx.Client(base_url=base_url, timeout=GENEROUS) as client:
        response = client.post(
            URL, content=iter([body[i : i + 4096] for i in range(0, len(body), 4096)])
        )
        assert response.status_code == 413
        assert response.json()["error"] == "too_large"
        ok = client.post(URL, content=iter([signer.realtime_body()]))  # chunked, small: fine
        assert ok.status_code == 200, ok.text


# -- the cold start ------------------------------------------------------------------------


def approved_catalogue(engine: sa.Engine) -> uuid.UUID:
    catalogue = Catalogue(engine)
    message = catalogue.add_message("winback", "Before you go", "Offline mode is yours.")
    catalogue.record_apple_state("message", message.uuid, "Sandbox", "APPROVED")
    return message.uuid


def test_a_burst_right_after_the_start_waits_for_the_catalogue(
    tmp_path: Path,
    database_url: str,
    signer: AppStoreSigner,
    closing: Callable[[Retention], Retention],
) -> None:
    """A fresh process, an approved catalogue, 30 requests at once: none answered before
    the catalogue is there (the database answers its connections slowly, as one far away)."""
    setup = migrated_engine(database_url)
    message = approved_catalogue(setup)
    setup.dispose()
    engine = create_engine(database_url)
    sa.event.listen(engine, "connect", lambda *args: time.sleep(0.05))
    app = new_app(tmp_path, signer, RETENTION_SELECTOR_TIMEOUT=0.3)
    retention = closing(Retention(app, engine=engine))
    retention.selector(lambda req: Message("winback"))
    decisions = record_decisions(app)
    try:
        with serve(app) as base_url:
            responses = burst(base_url, [signer.realtime_body() for _ in range(30)])
        assert [r.status_code for r in responses] == [200] * 30
        assert [d.fallback_reason for d in decisions] == [None] * 30
        assert all(r.json() == {"message": {"messageIdentifier": str(message)}} for r in responses)
    finally:
        retention.close()
        engine.dispose()


def test_a_catalogue_that_cannot_load_gives_its_own_reason_and_uuids_pass(
    tmp_path: Path, signer: AppStoreSigner, closing: Callable[[Retention], Retention]
) -> None:
    app = new_app(tmp_path, signer)  # the database exists, its tables do not (no init-db)
    retention = closing(Retention(app))
    retention.selector(
        lambda req: Message(MID if req.original_transaction_id == "uuid" else "winback")
    )
    decisions = record_decisions(app)
    client = app.test_client()
    by_name = client.post(URL, data=signer.realtime_body())
    by_uuid = client.post(URL, data=signer.realtime_body(originalTransactionId="uuid"))
    assert (by_name.status_code, by_name.get_json()) == (200, {})
    assert by_uuid.get_json() == {"message": {"messageIdentifier": str(MID)}}
    assert [d.fallback_reason for d in decisions] == ["catalogue_unavailable", None]
    assert retention.stats(app).catalogue.loaded is False


# -- busy is not overloaded -----------------------------------------------------------------


def test_many_healthy_selectors_at_once_are_never_overloaded(
    tmp_path: Path, signer: AppStoreSigner, closing: Callable[[Retention], Retention]
) -> None:
    """24 requests at once, each selector 15 ms, 16 workers: the rest wait their turn."""
    app = new_app(tmp_path, signer, RETENTION_DECISION_LOG=False)
    retention = closing(Retention(app))
    running: list[int] = []
    most: list[int] = [0]
    lock = threading.Lock()

    def healthy(req: RealtimeRequest) -> Message:
        with lock:
            running.append(1)
            most[0] = max(most[0], len(running))
        time.sleep(0.015)
        with lock:
            running.pop()
        return Message(MID)

    retention.selector(healthy)
    decisions = record_decisions(app)
    with serve(app) as base_url:
        for _ in range(3):
            responses = burst(base_url, [signer.realtime_body() for _ in range(24)])
            assert [r.status_code for r in responses] == [200] * 24
    assert [d.fallback_reason for d in decisions] == [None] * 72
    assert retention.stats(app).pool is not None
    assert most[0] <= 16
    assert retention.stats(app).pool.started <= 16  # type: ignore[union-attr]


# -- nothing a selector does to its request changes the record ------------------------------


def test_a_selector_that_changes_its_request_still_gets_every_decision_written(
    tmp_path: Path,
    database_url: str,
    signer: AppStoreSigner,
    closing: Callable[[Retention], Retention],
) -> None:
    engine = migrated_engine(database_url)
    app = new_app(tmp_path, signer, RETENTION_DATABASE_URI=database_url)
    retention = closing(Retention(app))

    def meddler(req: RealtimeRequest) -> Message:
        how = req.original_transaction_id
        if how == "clear":
            req.raw.clear()
        elif how == "delete":
            del req.raw["requestIdentifier"]
            del req.raw["signedDate"]
        else:
            req.raw.update(productId=None, requestIdentifier="junk", signedDate="junk")
        flask.g.meddled = True
        return Message(MID)

    retention.selector(meddler)
    client = app.test_client()
    sent: list[uuid.UUID] = []
    for how in ["clear", "delete", "junk"] * 3:
        rid = uuid.uuid4()
        sent.append(rid)
        body = signer.realtime_body(originalTransactionId=how, requestIdentifier=str(rid))
        assert client.post(URL, data=body).status_code == 200
    endpoint_log = retention.stats(app).decision_log
    assert endpoint_log is not None
    retention.close(app)  # writes what is queued
    with engine.connect() as connection:
        written = connection.execute(
            sa.select(DECISIONS.c.request_identifier, DECISIONS.c.product_id)
        ).all()
    engine.dispose()
    assert sorted(r.request_identifier for r in written) == sorted(sent)
    assert {r.product_id for r in written} == {"com.example.monthly"}
