"""Where the real-time endpoint's time goes, step by step, measured in place.

Run from a checkout (no Apple library needed)::

    pip install -e .
    python benchmarks/realtime_parts.py [--requests 3000]

``benchmarks/realtime.py`` measures the endpoint against its targets; this
script explains the figure. It serves the same signed requests to the
endpoint with one more step taken away each time (the selector's hand-off
to a worker thread, the selector and resolution, the decision log, the
checks, the payload's loading, the verification), beside a bare Flask view,
the bare view with one ES256 verification, and one raw ES256 verification.
Contenders take turns in rounds of ``--block`` calls (shuffled order), and
each variant's cost is paired by round: its block median minus the bare
view's, divided by the ES256 block median, then the median over rounds. The
differences between consecutive lines are the steps' costs in place (caches
as cold as serving leaves them), in units of one ES256 verification.

The variants replace the endpoint's own methods on one app each: they
measure, they are not ways to run the endpoint.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, Response, request

sys.path.insert(0, str(Path(__file__).parent))
import realtime as bench  # the sibling benchmark: its apps and helpers

from flask_retention.realtime.answers import message_answer
from flask_retention.realtime.endpoint import RealtimeEndpoint, read_signed_payload
from flask_retention.realtime.runner import Outcome
from flask_retention.testing import AppStoreSigner


def variants(signer: AppStoreSigner, folder: str) -> dict[str, Flask]:
    """The endpoint with steps taken away, one app per variant, in order."""

    def endpoint(name: str, **config: Any) -> tuple[Flask, RealtimeEndpoint]:
        app, _ = bench.endpoint_app(signer, f"sqlite:///{folder}/{name}.db", **config)
        found = bench.state_of(app).endpoint
        assert found is not None
        return app, found

    apps: dict[str, Flask] = {}
    apps["endpoint"] = endpoint("full")[0]

    app, ep = endpoint("inline")

    class Inline:
        """The selector called by the request thread itself: no worker, no time limit."""

        def start(self, fn: Callable[[Any], Any], arg: Any) -> Outcome:
            return Outcome("ok", fn(arg))

        def close(self) -> None:
            pass

    ep.pool = Inline()  # type: ignore[assignment]
    apps["  selector called directly (no hand-off, no time limit)"] = app

    answer = message_answer(bench.MESSAGE)
    app, ep = endpoint("no_answer")
    ep.answer = lambda req, decision: answer
    apps["  no selector, no resolution"] = app

    app, ep = endpoint("no_log", RETENTION_DECISION_LOG=False)
    ep.answer = lambda req, decision: answer
    apps["  ... and no decision log"] = app

    app, ep = endpoint("no_check", RETENTION_DECISION_LOG=False)
    ep.answer = lambda req, decision: answer
    ep.check = lambda req, now: None
    apps["  ... and no checks (app, environment, age, replay)"] = app

    def only(name: str, step: Callable[[RealtimeEndpoint, str], object]) -> Flask:
        app, ep = endpoint(name, RETENTION_DECISION_LOG=False)

        def view() -> Response:
            step(ep, read_signed_payload(request))
            return app.response_class(b"{}", mimetype="application/json")

        app.view_functions["flask_retention.realtime.endpoint"] = view
        return app

    apps["  read, verify, load the payload (nothing else)"] = only(
        "verify_load", lambda ep, token: ep.verify(token)
    )
    apps["  read, verify"] = only("verify", lambda ep, token: ep.verifier.verify(token))
    apps["  read the body and its signedPayload"] = only("read", lambda ep, token: None)
    return apps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="calls of each contender")
    parser.add_argument("--block", type=int, default=10, help="calls in a row per turn")
    args = parser.parse_args(argv)
    n, block = args.requests, args.block

    signer = AppStoreSigner()
    folder = tempfile.mkdtemp(prefix="retention-parts-")
    apps = variants(signer, folder)
    bodies = [signer.realtime_body(app_apple_id=bench.APP_APPLE_ID) for _ in range(n + 50)]

    es256 = bench.es256_for(json.loads(bodies[0])["signedPayload"])
    apps["bare Flask view + one ES256 verification"] = bench.bare_app(es256)
    apps[BARE] = bench.bare_app()

    runs: dict[str, Callable[[int], object]] = {}
    for name, app in apps.items():
        call = bench.call_wsgi(app)
        environs = [bench.environ_for(body) for body in bodies]
        for i in range(n, n + 50):  # warm-up, with requests of its own
            call(environs[i])
        runs[name] = lambda i, call=call, environs=environs: call(environs[i])
    runs[ES256] = lambda i: es256()

    print(f"timing {n} calls of each, in turns of {block}...", file=sys.stderr)
    times = bench.time_in_rounds(runs, n, block)
    for app in apps.values():
        if "retention" in app.extensions:
            app.extensions["retention"].close(app)
    shutil.rmtree(folder, ignore_errors=True)

    def rounds(name: str) -> list[float]:
        return bench.round_medians(times[name], block)

    bare, one = rounds(BARE), rounds(ES256)
    width = max(len(name) for name in runs)
    print(f"{n} calls each, in turns of {block}; (variant - bare view) / one ES256, paired:")
    for name in runs:
        if name in (BARE, ES256):
            continue
        ratio = statistics.median(
            (x - b) / e for x, b, e in zip(rounds(name), bare, one, strict=True)
        )
        median = statistics.median(times[name]) * 1e6
        print(f"  {name:<{width}} {ratio:5.2f}   (median {median:6.1f} us)")
    for name, ratio in ((BARE, " 0.00"), (ES256, "     ")):
        median = statistics.median(times[name]) * 1e6
        print(f"  {name:<{width}} {ratio}   (median {median:6.1f} us)")


BARE = "bare Flask view, same body"
ES256 = "one raw ES256 verification"

if __name__ == "__main__":
    main()
