"""How many logged decisions a stopped or killed server loses, per WSGI server.

Run from a checkout (the servers of the test suite installed)::

    python benchmarks/kill_window.py [--url postgresql+psycopg://...] [--load 2]
        [--clients 8] [--servers gunicorn-sync,waitress] [--signals SIGTERM,SIGKILL]

For each server and each signal it serves ``tests/server_app.py`` (the
endpoint, a catch-all selector, the decision log on with its default
timings) on a fresh database (a SQLite file, or a new schema of ``--url``),
drives it with ``--clients`` threads posting requests, each signed with its
own ``requestIdentifier``, for ``--load`` seconds, then sends the signal:
``SIGTERM`` to the server's main process (what ``docker stop``, systemd or
Kubernetes send), or ``SIGKILL`` to its whole process group (the OOM killer,
a host that dies). After the server is gone it compares the identifiers
answered ``200`` with those in ``retention_decisions``. Printed per run: the
answers, how many of them are missing from the log, and that as
milliseconds of the run's traffic.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import sqlalchemy as sa

from flask_retention.catalogue.schema import upgrade
from flask_retention.core.database import create_engine
from flask_retention.testing import AppStoreSigner

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
APP_FACTORY = "tests.server_app:create_app"
ENDPOINT = "/retention/realtime"


def _gunicorn(*options: str) -> Callable[[int], list[str]]:
    return lambda port: [
        str(BIN / "gunicorn"),
        *options,
        "--bind",
        f"{HOST}:{port}",
        "--no-control-socket",
        f"{APP_FACTORY}()",
    ]


SERVERS: dict[str, Callable[[int], list[str]]] = {
    "gunicorn-sync": _gunicorn("--workers", "2"),
    "gunicorn-gthread": _gunicorn("--worker-class", "gthread", "--workers", "2", "--threads", "4"),
    "gunicorn-gevent": _gunicorn("--worker-class", "gevent", "--workers", "2"),
    "waitress": lambda port: [
        str(BIN / "waitress-serve"),
        f"--listen={HOST}:{port}",
        "--call",
        APP_FACTORY,
    ],
    "uwsgi": lambda port: [
        str(BIN / "uwsgi"),
        "--http-socket",
        f"{HOST}:{port}",
        "--master",
        "--processes",
        "2",
        "--threads",
        "4",
        "--module",
        f"{APP_FACTORY}()",
    ],
    "granian": lambda port: [
        str(BIN / "granian"),
        "--interface",
        "wsgi",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "2",
        "--factory",
        APP_FACTORY,
    ],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def fresh_database(url: str | None, folder: Path) -> Iterator[str]:
    """A migrated, empty database: a SQLite file in ``folder``, or a new schema of ``url``."""
    if url is None:
        path = folder / "retention.db"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        uri = f"sqlite:///{path}"
        schema = None
    else:
        schema = f"kill_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(url)
        with admin.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        admin.dispose()
        uri = (
            sa.make_url(url)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    engine = create_engine(uri)
    upgrade(engine)
    engine.dispose()
    try:
        yield uri
    finally:
        if url is not None:
            admin = sa.create_engine(url)
            with admin.begin() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            admin.dispose()


def logged_identifiers(uri: str) -> set[str]:
    engine = create_engine(uri)
    try:
        with engine.connect() as connection:
            found = connection.execute(
                sa.text(
                    "SELECT request_identifier FROM retention_decisions "
                    "WHERE request_identifier IS NOT NULL"
                )
            ).scalars()
            return {str(uuid.UUID(str(v))) for v in found}
    finally:
        engine.dispose()


def wait_ready(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    with httpx.Client(base_url=base, trust_env=False, timeout=1.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"the server exited with {process.returncode} before serving")
            with contextlib.suppress(httpx.TransportError):
                if client.get("/").status_code == 200:
                    return
            time.sleep(0.1)
    raise SystemExit("the server did not answer within 30 s")


def gone(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return True
    return False


def stop(process: subprocess.Popen[bytes], name: str, sig: signal.Signals) -> str:
    """Send ``sig``; return how the server ended."""
    group = process.pid
    if sig == signal.SIGKILL:
        os.killpg(group, signal.SIGKILL)
    else:
        process.send_signal(sig)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not gone(group):
        if process.poll() is not None and name != "uwsgi":
            break
        time.sleep(0.05)
    how = "exited" if process.poll() is not None else "still running"
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # uWSGI 2.0 reloads on SIGTERM, stops on SIGINT
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    process.wait()
    return how


def run(
    name: str,
    sig: signal.Signals,
    bodies: list[tuple[str, bytes]],
    uri: str,
    folder: Path,
    root_pem: Path,
    load: float,
    clients: int,
) -> None:
    port = free_port()
    base = f"http://{HOST}:{port}"
    env = {
        **os.environ,
        "SERVER_APP_INSTANCE_PATH": str(folder / "instance"),
        "SERVER_APP_ROOT_PEM": str(root_pem),
        "SERVER_APP_DATABASE_URI": uri,
        "SERVER_APP_SELECTOR_TIMEOUT": "0.5",
    }
    with (folder / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(
            SERVERS[name](port),
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_ready(base, process)
    source = iter(bodies)
    lock = threading.Lock()
    answered: set[str] = set()
    stopping = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=base, trust_env=False, timeout=5.0) as http:
            while not stopping.is_set():
                with lock:
                    item = next(source, None)
                if item is None:
                    return
                rid, body = item
                try:
                    response = http.post(ENDPOINT, content=body)
                except httpx.TransportError:
                    time.sleep(0.01)
                    continue
                if response.status_code == 200:
                    with lock:
                        answered.add(rid)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(load)
    with lock:
        rate = len(answered) / (time.monotonic() - started)
    how = stop(process, name, sig)
    stopping.set()
    for t in threads:
        t.join(10)
    lost = answered - logged_identifiers(uri)
    print(
        f"{name:18} {sig.name:8} {len(answered):6} answered at {rate:6.0f}/s; "
        f"{len(lost):5} not logged (~{len(lost) / rate * 1000 if rate else 0:4.0f} ms); "
        f"server {how} after the signal",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a PostgreSQL URL (default: a SQLite file)")
    parser.add_argument("--load", type=float, default=2.0, help="seconds of traffic")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--signals", default="SIGTERM,SIGKILL")
    parser.add_argument("--requests", type=int, default=20000, help="bodies signed up front")
    args = parser.parse_args()
    signer = AppStoreSigner()
    print(f"signing {args.requests} requests ...", flush=True)
    bodies = []
    for _ in range(args.requests):
        rid = str(uuid.uuid4())
        bodies.append((rid, signer.realtime_body(request_identifier=rid)))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        root_pem = folder / "root.pem"
        root_pem.write_bytes(signer.root_pem)
        for name, sig_name in itertools.product(args.servers.split(","), args.signals.split(",")):
            with fresh_database(args.url, folder) as uri:
                run(
                    name,
                    signal.Signals[sig_name],
                    bodies,
                    uri,
                    folder,
                    root_pem,
                    args.load,
                    args.clients,
                )


if __name__ == "__main__":
    main()
