"""Throughput and latency of the real-time endpoint under gunicorn, sync and gthread.

Run from a checkout; gunicorn and wrk are needed for this script only::

    pip install -e . gunicorn
    apt-get install wrk          # Debian's package (wrk 4.1)
    python benchmarks/load.py [--duration 5] [--rounds 3] [--servers sync,gthread]

It serves one app under gunicorn on 127.0.0.1, first with sync workers, then
with gthread workers (``-k gthread --threads 4``), one worker per CPU core
each time, and drives it with wrk, whose Lua script posts pre-signed bodies,
each request its own (so that the replay guard answers every one): enough are
signed right before each run, with a local dev CA that the app trusts
(``RETENTION_TRUST_DEV_CA``). The app: the endpoint with a trivial selector
(``Message(uuid)``, run on the selector pool's worker threads as always), its
catalogue database in a temporary instance folder (made by ``flask retention
init-db``), the decision log on (the default); and beside it, under the same
server, a bare Flask view that parses the same body as JSON and answers
``{}``.

Reported for each server: the maximum throughput of each (closed loop,
``--connections`` connections), measured in ``--rounds`` turns (bare,
endpoint, bare, ...) so that both see the same machine load, as medians;
their ratio (median of the per-turn ratios); and p50/p99 latency at 80 % of
the endpoint's maximum (each wrk thread sends on a fixed schedule, through
LuaJIT's clock; the achieved rate is printed). Targets, for each server:
endpoint throughput >= 0.45 x the bare view's under the same server, p99 <=
50 ms at 80 % load (on an otherwise idle machine), zero errors; the exit
status is 1 when one is missed. Everything binds to 127.0.0.1 and every run
is bounded by ``--duration``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from flask import Flask, Response, request

from flask_retention import Message, RealtimeRequest, Retention
from flask_retention.realtime.devca import create_dev_ca, dev_ca_folder, load_dev_ca_signer
from flask_retention.testing import AppStoreSigner

APP_APPLE_ID = 1234567890
ENDPOINT = "/retention/realtime"
BARE = "/bare"
MESSAGE = uuid.UUID("a1b2c3d4-e5f6-7890-a1b2-c3d4e5f67890")
INSTANCE_ENV = "RETENTION_LOAD_INSTANCE"
LOAD = 0.8
TARGET_RATIO = 0.45
TARGET_P99_MS = 50.0


def create_app() -> Flask:
    """The benchmark app (gunicorn loads it as ``load:create_app()``)."""
    instance = os.environ[INSTANCE_ENV]
    app = Flask("load_benchmark", instance_path=instance)
    app.config.update(
        RETENTION_APP_APPLE_ID=APP_APPLE_ID,
        RETENTION_TRUST_DEV_CA=True,
        RETENTION_DATABASE_URI=f"sqlite:///{Path(instance) / 'retention.db'}",
        RETENTION_DECISION_LOG=True,
    )
    retention = Retention(app)

    @retention.selector
    def choose(req: RealtimeRequest) -> Message:
        return Message(MESSAGE)

    @app.post(BARE)
    def bare() -> Response:
        body = json.loads(request.get_data())
        if not isinstance(body.get("signedPayload"), str):
            return app.response_class(b'{"error":"malformed"}', 400, mimetype="application/json")
        return app.response_class(b"{}", mimetype="application/json")

    return app


LUA = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } load_timespec;
int clock_gettime(int clk_id, load_timespec *tp);
]]
local bodies = {}
local counter = 1
local created = 0

function setup(thread)
  thread:set("id", created)
  created = created + 1
end

function init(args)
  local nthreads = tonumber(args[2])
  local i = 0
  for line in io.lines(args[1]) do
    if i % nthreads == id then table.insert(bodies, line) end
    i = i + 1
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local body = bodies[counter]
  counter = counter + 1
  if counter > #bodies then counter = 1 end
  return wrk.format(nil, nil, nil, body)
end
-- DELAY --
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'LOADRESULT {"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d},"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""

PACED = r"""
local interval = INTERVAL_MS
local clock = ffi.new("load_timespec")
local next_slot = nil

function delay()
  ffi.C.clock_gettime(1, clock)
  local now = tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
  if next_slot == nil then next_slot = now end
  local slot = next_slot
  next_slot = next_slot + interval
  if slot > now then return slot - now end
  return 0
end
"""


@dataclass
class Run:
    """One wrk run's figures."""

    requests: int
    seconds: float
    errors: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def line(self, label: str) -> str:
        errors = ", ".join(f"{k} {v}" for k, v in self.errors.items() if v) or "none"
        return (
            f"  {label:<34} {self.rate:8.0f} req/s  p50 {self.p50_ms:6.2f}  "
            f"p90 {self.p90_ms:6.2f}  p99 {self.p99_ms:6.2f}  max {self.max_ms:7.2f} ms  "
            f"({self.requests} requests; errors: {errors})"
        )


class Bench:
    """The dev CA, the signer, the server and wrk, for one benchmark run."""

    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args = args
        self.folder = folder
        self.instance = folder / "instance"
        self.signer: AppStoreSigner | None = None
        self.base = ""
        self.server: subprocess.Popen[bytes] | None = None
        self.scripts: dict[float, Path] = {}

    def prepare(self) -> None:
        """The dev CA and the catalogue database in the instance folder, and the signer."""
        create_dev_ca(dev_ca_folder(Flask("x", instance_path=str(self.instance))))
        os.environ[INSTANCE_ENV] = str(self.instance)
        app = create_app()
        result = app.test_cli_runner().invoke(args=["retention", "init-db"])
        if result.exit_code != 0:
            raise SystemExit(f"flask retention init-db failed: {result.output}")
        self.signer = load_dev_ca_signer(dev_ca_folder(app))

    def start(self, server: str) -> None:
        """Serve the app under gunicorn with ``server`` workers (``sync`` or ``gthread``)."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            *worker_options(server, self.args.gthreads),
            "--workers",
            str(self.args.workers),
            "--bind",
            f"127.0.0.1:{port}",
            "--backlog",
            "2048",
            *control_socket_off(),
            "--pythonpath",
            str(Path(__file__).resolve().parent),
            "--log-level",
            "warning",
            "load:create_app()",
        ]
        self.server = subprocess.Popen(command, env=dict(os.environ))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise SystemExit("gunicorn exited before serving; see its output above")
            try:
                if httpx.post(self.base + BARE, json={"signedPayload": "x"}).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise SystemExit("gunicorn did not answer within 30 s")

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        self.server = None

    def bodies(self, count: int, name: str) -> Path:
        """``count`` distinct signed bodies, one per line, signed now."""
        assert self.signer is not None
        path = self.folder / f"{name}.bodies"
        with path.open("w") as f:
            for i in range(count):
                token = self.signer.sign_realtime_request(
                    app_apple_id=APP_APPLE_ID,
                    original_transaction_id=str(1000000000000000 + i % 1000),
                )
                f.write(json.dumps({"signedPayload": token}, separators=(",", ":")) + "\n")
        return path

    def script(self, interval_ms: float) -> Path:
        """The Lua script; with ``interval_ms``, each wrk thread sends one request per
        interval, on a schedule (a connection whose slot has passed sends at once)."""
        if interval_ms not in self.scripts:
            delay = PACED.replace("INTERVAL_MS", f"{interval_ms:.6f}") if interval_ms else ""
            path = self.folder / f"post-{len(self.scripts)}.lua"
            path.write_text(LUA.replace("-- DELAY --", delay))
            self.scripts[interval_ms] = path
        return self.scripts[interval_ms]

    def wrk(self, path: str, bodies: Path, seconds: float, rate: float = 0) -> Run:
        """A wrk run on ``path`` posting ``bodies``; at most ``rate`` req/s when given."""
        threads = self.args.threads
        command = [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(self.args.connections),
            "-d",
            f"{seconds:g}s",
            "--timeout",
            "5s",
            "-s",
            str(self.script(threads / rate * 1000 if rate else 0)),
            self.base + path,
            "--",
            str(bodies),
            str(threads),
        ]
        out = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 60, check=True
        ).stdout
        line = next(x for x in out.splitlines() if x.startswith("LOADRESULT "))
        data: dict[str, Any] = json.loads(line.removeprefix("LOADRESULT "))
        return Run(
            requests=data["requests"],
            seconds=data["duration_us"] / 1e6,
            errors=data["errors"],
            p50_ms=data["p50_us"] / 1000,
            p90_ms=data["p90_us"] / 1000,
            p99_ms=data["p99_us"] / 1000,
            max_ms=data["max_us"] / 1000,
            mean_ms=data["mean_us"] / 1000,
        )

    def endpoint_run(self, seconds: float, expected: float, limit: float = 0) -> Run:
        """A run of the endpoint with fresh bodies for ``expected`` req/s, and a margin;
        at most ``limit`` req/s when given."""
        count = int(expected * seconds * 1.5) + 200 * self.args.connections
        return self.wrk(ENDPOINT, self.bodies(count, "endpoint"), seconds, limit)


def worker_options(server: str, threads: int) -> list[str]:
    """gunicorn's options for ``server`` workers."""
    return ["-k", "gthread", "--threads", str(threads)] if server == "gthread" else ["-k", "sync"]


def control_socket_off() -> list[str]:
    """``--no-control-socket`` where gunicorn has a control socket (25.1+), which would
    otherwise be made in the home folder."""
    import gunicorn

    major, minor = (int(part) for part in gunicorn.__version__.split(".")[:2])
    return ["--no-control-socket"] if (major, minor) >= (25, 1) else []


def versions() -> str:
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    wrk_version = (wrk.stdout + wrk.stderr).split("[")[0].strip() or "wrk"
    import gunicorn

    return (
        f"python {platform.python_version()} on {platform.platform()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
        f"gunicorn {gunicorn.__version__}; {wrk_version}"
    )


@dataclass
class Result:
    """One server's runs: turns of bare and endpoint at their maximum, then the paced run."""

    server: str
    bare_runs: list[Run]
    endpoint_runs: list[Run]
    loaded: Run
    target: float

    @property
    def bare_max(self) -> float:
        return statistics.median(r.rate for r in self.bare_runs)

    @property
    def endpoint_max(self) -> float:
        return statistics.median(r.rate for r in self.endpoint_runs)

    @property
    def ratios(self) -> list[float]:
        return [e.rate / b.rate for b, e in zip(self.bare_runs, self.endpoint_runs, strict=True)]

    def checks(self) -> list[tuple[str, str, bool]]:
        ratio = statistics.median(self.ratios)
        errors = sum(r.error_count for r in (*self.bare_runs, *self.endpoint_runs, self.loaded))
        load = self.loaded.rate / self.endpoint_max
        return [
            (
                f"endpoint / bare throughput = {ratio:.3f}",
                f">= {TARGET_RATIO}",
                ratio >= TARGET_RATIO,
            ),
            (
                f"p99 at {load:.0%} load = {self.loaded.p99_ms:.1f} ms",
                f"<= {TARGET_P99_MS:g} ms",
                self.loaded.p99_ms <= TARGET_P99_MS,
            ),
            (f"errors = {errors}", "0", errors == 0),
        ]

    def report(self) -> None:
        print(f"{self.server}: results (latency in ms, from sending to the full answer):")
        for turn, (b, e) in enumerate(zip(self.bare_runs, self.endpoint_runs, strict=True), 1):
            print(b.line(f"turn {turn}: bare Flask view, max"))
            print(e.line(f"turn {turn}: endpoint, max"))
        print(self.loaded.line(f"endpoint at {LOAD:.0%} (target {self.target:.0f}/s)"))
        print(
            f"  max throughput (medians of the turns): bare {self.bare_max:.0f} req/s, endpoint "
            f"{self.endpoint_max:.0f} req/s; ratios per turn: "
            + ", ".join(f"{r:.3f}" for r in self.ratios)
        )
        print(f"  {self.server} targets:")
        for text, wanted, ok in self.checks():
            print(f"    {text:<40} target {wanted:<9} {'met' if ok else 'MISSED'}")


def measure(bench: Bench, server: str) -> Result:
    """Serve under ``server`` workers and measure the bare view and the endpoint."""
    args = bench.args
    bench.start(server)
    try:
        short = min(2.0, args.duration)
        # Warm up both (imports, chain cache, catalogue, selector workers) and size the runs.
        bench.wrk(BARE, bench.bodies(500, "bare"), short)
        probe = bench.endpoint_run(short, expected=2000)
        # Turns, so that both see the same machine load; medians of the turns.
        bare_runs: list[Run] = []
        endpoint_runs: list[Run] = []
        for _ in range(args.rounds):
            bare_runs.append(bench.wrk(BARE, bench.bodies(2000, "bare"), args.duration))
            expected = max(endpoint_runs[-1].rate if endpoint_runs else probe.rate, 100)
            endpoint_runs.append(bench.endpoint_run(args.duration, expected))
        target = LOAD * statistics.median(r.rate for r in endpoint_runs)
        loaded = bench.endpoint_run(args.duration, expected=target, limit=target)
    finally:
        bench.stop()
    return Result(server, bare_runs, endpoint_runs, loaded, target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=3, help="turns of bare and endpoint")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="gunicorn workers (cores)"
    )
    parser.add_argument("--gthreads", type=int, default=4, help="threads per gthread worker")
    parser.add_argument(
        "--servers", default="sync,gthread", help="gunicorn worker classes, in order"
    )
    args = parser.parse_args(argv)
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if not servers or not set(servers) <= {"sync", "gthread"}:
        parser.error("--servers is a comma-separated list of sync and gthread")
    if not 1 <= args.duration <= 120:
        parser.error("--duration is between 1 and 120 seconds")
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds is between 1 and 20")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed: apt-get install wrk")
    if importlib.util.find_spec("gunicorn") is None:
        parser.error("gunicorn is not installed: pip install gunicorn")

    print(versions())
    print(
        f"gunicorn: {args.workers} workers on 127.0.0.1 ({', '.join(servers)}; gthread with "
        f"{args.gthreads} threads each); catalogue: SQLite made by init-db; decision log on"
    )
    print(
        f"wrk: {args.threads} threads, {args.connections} connections, {args.duration:g} s per run"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="retention-load-") as tmp:
        bench = Bench(args, Path(tmp))
        bench.prepare()
        for server in servers:
            print(f"measuring under gunicorn {server}...", file=sys.stderr)
            results.append(measure(bench, server))
    for result in results:
        result.report()
    ok = all(ok for result in results for _, _, ok in result.checks())
    print(f"all targets met under {', '.join(servers)}" if ok else "a target was MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
