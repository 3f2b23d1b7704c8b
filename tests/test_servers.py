"""The real-time endpoint under real WSGI servers: gunicorn (sync, gthread, gevent with
``--preload``), waitress, uWSGI and granian.

Each server runs once per module as a subprocess on a free loopback port, serving
:mod:`tests.server_app` (a host app with a body-reading ``before_request`` hook and a
catch-all selector) from the repository root, and every test runs against each server.
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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from flask_retention.catalogue.schema import upgrade
from flask_retention.core.database import create_engine
from flask_retention.testing import AppStoreSigner

from . import server_app
from .server_app import FRESH, HOST_PAGE, LEAKED, SLOW_PRODUCT

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
BIN: Final = Path(sys.executable).parent
HOST: Final = "127.0.0.1"
ENDPOINT: Final = "/retention/realtime"
SELECTOR_TIMEOUT: Final = 0.5
#: Slack over the selector timeout for the slow selector's answer to arrive.
TIMEOUT_MARGIN: Final = 1.5
#: The endpoint's body limit (64 KiB), and a body well over it.
BODY_LIMIT: Final = 64 * 1024
BIG_BODY_SIZE: Final = 100 * 1024
READY_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 5.0
#: Seconds a client waits for any answer: a frozen server fails a test, not the run.
REQUEST_TIMEOUT: Final = 5.0
LOG_TAIL: Final = 6000
JSON_HEADERS: Final = {"Content-Type": "application/json"}

APP_FACTORY: Final = "tests.server_app:create_app"


def _gunicorn_control_socket_off() -> list[str]:
    """``--no-control-socket`` where gunicorn has a control socket (25.1+), which would
    otherwise be made in the home folder and shared by every gunicorn of the user."""
    major, minor = (int(part) for part in version("gunicorn").split(".")[:2])
    return ["--no-control-socket"] if (major, minor) >= (25, 1) else []


def _gunicorn(*options: str) -> Callable[[int], list[str]]:
    def argv(port: int) -> list[str]:
        return [
            str(BIN / "gunicorn"),
            *options,
            "--bind",
            f"{HOST}:{port}",
            *_gunicorn_control_socket_off(),
            f"{APP_FACTORY}()",
        ]

    return argv


def _waitress(port: int) -> list[str]:
    return [str(BIN / "waitress-serve"), f"--listen={HOST}:{port}", "--call", APP_FACTORY]


def _uwsgi(port: int) -> list[str]:
    return [
        str(BIN / "uwsgi"),
        "--http-socket",
        f"{HOST}:{port}",
        "--master",
        "--processes",
        "1",
        "--threads",
        "4",
        "--enable-threads",
        "--module",
        f"{APP_FACTORY}()",
    ]


def _granian(port: int) -> list[str]:
    return [
        str(BIN / "granian"),
        "--interface",
        "wsgi",
        "--host",
        HOST,
        "--port",
        str(port),
        "--factory",
        APP_FACTORY,
    ]


@dataclass(frozen=True)
class ServerKind:
    """How to start and stop one WSGI server."""

    name: str
    argv: Callable[[int], list[str]]
    #: uWSGI (2.0) reloads on SIGTERM, and stops on SIGINT.
    stop_signal: signal.Signals = signal.SIGTERM
    #: Whether the app sees a chunked body's content (uWSGI's HTTP socket gives it none).
    dechunks: bool = True
    #: Whether a client may reuse a connection: uWSGI's HTTP socket answers HTTP/1.1
    #: without ``Connection: close`` yet closes each connection, so a reused one can be
    #: reset under the next request.
    keepalive: bool = True


SERVERS: Final = [
    ServerKind("gunicorn-sync", _gunicorn("--workers", "2")),
    ServerKind("gunicorn-gthread", _gunicorn("--worker-class", "gthread", "--threads", "4")),
    ServerKind(
        "gunicorn-gevent-preload",
        _gunicorn("--worker-class", "gevent", "--preload", "--workers", "1"),
    ),
    ServerKind("waitress", _waitress),
    ServerKind("uwsgi", _uwsgi, stop_signal=signal.SIGINT, dechunks=False, keepalive=False),
    ServerKind("granian", _granian),
]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RunningServer:
    """A server subprocess serving the host app, and its output file."""

    kind: ServerKind
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def output(self, start: int = 0) -> str:
        """The server's output from byte ``start``: its last :data:`LOG_TAIL` characters."""
        with self.log_path.open("rb") as f:
            f.seek(start)
            text = f.read().decode(errors="replace")
        return text[-LOG_TAIL:]

    def log_size(self) -> int:
        return self.log_path.stat().st_size


def _wait_until_ready(server: RunningServer) -> None:
    """Poll the host page until it answers, the server exits, or :data:`READY_TIMEOUT`."""
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer yet"
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=1.0) as client:
        while time.monotonic() < deadline:
            code = server.process.poll()
            if code is not None:
                pytest.fail(
                    f"{server.kind.name} exited with {code} before serving; its output:\n"
                    f"{server.output()}"
                )
            try:
                response = client.get("/")
            except httpx.TransportError as e:
                last = repr(e)
            else:
                if response.status_code == 200 and response.text == HOST_PAGE:
                    return
                last = f"{response.status_code} {response.text[:200]!r}"
            time.sleep(0.1)
    pytest.fail(
        f"{server.kind.name} did not serve the host page within {READY_TIMEOUT} s "
        f"(last: {last}); its output:\n{server.output()}"
    )


def _stop(process: subprocess.Popen[bytes], stop_signal: signal.Signals) -> None:
    """Stop the server with ``stop_signal``, then SIGKILL its process group if it or any
    of its workers is still there after :data:`STOP_TIMEOUT` seconds."""
    group = process.pid  # start_new_session: the server leads a group of its own
    if process.poll() is None:
        process.send_signal(stop_signal)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
            process.wait(STOP_TIMEOUT)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


@pytest.fixture(scope="module")
def signer() -> AppStoreSigner:
    """The test App Store whose root every server trusts."""
    return AppStoreSigner()


@pytest.fixture(scope="module", params=SERVERS, ids=lambda kind: kind.name)
def running_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    signer: AppStoreSigner,
) -> Iterator[RunningServer]:
    """One server, started once for the module, with a catalogue database of its own."""
    kind: ServerKind = request.param
    folder = tmp_path_factory.mktemp(kind.name)
    root_pem = folder / "root.pem"
    root_pem.write_bytes(signer.root_pem)
    database_uri = f"sqlite:///{folder / 'retention.db'}"
    engine = create_engine(database_uri)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    env = {
        **os.environ,
        server_app.ENV_INSTANCE_PATH: str(folder / "instance"),
        server_app.ENV_ROOT_PEM: str(root_pem),
        server_app.ENV_DATABASE_URI: database_uri,
        server_app.ENV_SELECTOR_TIMEOUT: str(SELECTOR_TIMEOUT),
        "PYTHONUNBUFFERED": "1",
    }
    port = _free_port()
    log_path = folder / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            kind.argv(port),
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = RunningServer(kind, f"http://{HOST}:{port}", process, log_path)
    try:
        _wait_until_ready(server)
        yield server
    finally:
        _stop(process, kind.stop_signal)


@pytest.fixture
def server(running_server: RunningServer) -> Iterator[RunningServer]:
    """The module's server; what it wrote during a failed test is shown with the failure."""
    start = running_server.log_size()
    yield running_server
    if running_server.process.poll() is not None:
        print(f"{running_server.kind.name} exited with {running_server.process.returncode}")
    print(f"--- {running_server.kind.name} output during the test ---")
    print(running_server.output(start))


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    """A client of the server that goes nowhere else (no proxy from the environment)."""
    limits = httpx.Limits() if server.kind.keepalive else httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(
        base_url=server.base_url, trust_env=False, timeout=REQUEST_TIMEOUT, limits=limits
    ) as client:
        yield client


def _realtime(client: httpx.Client, body: bytes) -> httpx.Response:
    return client.post(ENDPOINT, content=body, headers=JSON_HEADERS)


def _answer(response: httpx.Response) -> tuple[int, Any]:
    """The status and JSON body of an answer (the raw text when it is not JSON)."""
    try:
        return response.status_code, response.json()
    except json.JSONDecodeError:
        return response.status_code, response.text


def _message(identifier: object) -> dict[str, Any]:
    return {"message": {"messageIdentifier": str(identifier)}}


def test_signed_requests_get_the_selectors_message(
    client: httpx.Client, signer: AppStoreSigner
) -> None:
    """Signed requests, one after another, are answered 200 with the selector's message.

    The host's ``before_request`` hook reads the body of every request, as request
    logging does: these answers also show that it changes nothing for the endpoint.
    """
    for _ in range(5):
        response = _realtime(client, signer.realtime_body())
        assert _answer(response) == (200, _message(FRESH))


def test_selector_sees_a_fresh_g(client: httpx.Client, signer: AppStoreSigner) -> None:
    """Concurrent requests' selectors never see the ``flask.g`` the host's hook set."""
    bodies = [signer.realtime_body() for _ in range(8)]
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda body: _answer(_realtime(client, body)), bodies))
    assert (200, _message(LEAKED)) not in answers
    assert answers == [(200, _message(FRESH))] * len(bodies)


def test_chunked_body_over_the_limit_is_refused(
    client: httpx.Client, server: RunningServer
) -> None:
    """A chunked body over 64 KiB is refused with ``413 too_large``.

    uWSGI's HTTP socket gives the app nothing to read of a chunked body (no length,
    an empty ``wsgi.input``), so there the request must be refused with some 4xx.
    """

    def chunks() -> Iterator[bytes]:
        for _ in range(BIG_BODY_SIZE // 1024):
            yield b"x" * 1024

    response = client.post(ENDPOINT, content=chunks(), headers=JSON_HEADERS)
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in response.request.headers
    status, body = _answer(response)
    if server.kind.dechunks:
        assert status == 413
        assert isinstance(body, dict)
        assert body.get("error") == "too_large"
    else:
        assert 400 <= status < 500, (status, body)


def test_body_over_the_limit_with_a_length_is_refused(client: httpx.Client) -> None:
    """A body over 64 KiB with a ``Content-Length`` is refused with ``413 too_large``,
    even when it is otherwise a well-formed request body."""
    padding = "a" * (BIG_BODY_SIZE - len('{"signedPayload": ""}'))
    body = json.dumps({"signedPayload": padding}).encode()
    assert len(body) > BODY_LIMIT
    response = _realtime(client, body)
    assert response.request.headers["Content-Length"] == str(len(body))
    status, answer = _answer(response)
    assert status == 413
    assert isinstance(answer, dict)
    assert answer.get("error") == "too_large"


def test_slow_selector_gets_the_fallback_and_the_host_still_serves(
    client: httpx.Client, signer: AppStoreSigner
) -> None:
    """A selector sleeping past the limit gets the fallback (``{}``, no default message)
    in time, and the host page answers while that request is in flight."""
    body = signer.realtime_body(product_id=SLOW_PRODUCT)
    slow: dict[str, Any] = {}
    started = threading.Event()

    def post_slow() -> None:
        started.set()
        begin = time.monotonic()
        try:
            slow["answer"] = _answer(_realtime(client, body))
        except httpx.HTTPError as e:
            slow["answer"] = repr(e)
        slow["elapsed"] = time.monotonic() - begin

    thread = threading.Thread(target=post_slow)
    thread.start()
    try:
        started.wait()
        time.sleep(0.1)
        begin = time.monotonic()
        page = client.get("/", timeout=3.0)
        page_elapsed = time.monotonic() - begin
    finally:
        thread.join()
    assert (page.status_code, page.text) == (200, HOST_PAGE)
    assert page_elapsed < 3.0
    assert slow["answer"] == (200, {})
    assert slow["elapsed"] < SELECTOR_TIMEOUT + TIMEOUT_MARGIN
