"""Where the real-time endpoint's time goes, step by step, measured in place.

Run from a checkout (no Apple library needed)::

    pip install -e .
    python benchmarks/realtime_parts.py [--requests 3000]

``benchmarks/realtime.py`` measures the endpoint against its targets; this
script explains the figure. It serves the same signed requests to the
endpoint with one more step taken away each time (the time limit, the
selector and resolution, the decision log, the checks, the payload's
loading, everything but the verification), beside a bare Flask view, the
bare view with one ES256 verification, and one bare ES256 verification.
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

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask, Response, request

sys.path.insert(0, str(Path(__file__).parent))
import realtime as bench  # the sibling benchmark: its apps and helpers

from flask_retention.extension import get_state
from flask_retention.realtime import RealtimeEndpoint, read_signed_payload
from flask_retention.responses import message_answer
from flask_retention.selection import Outcome
from flask_retention.testing import AppStoreSigner


def variants(signer: AppStoreSigner, folder: str) -> dict[str, Flask]:
    """The endpoint with steps taken away, one app per variant, in order."""

    def endpoint(name: str, **config: Any) -> tuple[Flask, RealtimeEndpoint]:
        app, _ = bench.endpoint_app(signer, f"sqlite:///{folder}/{name}.db", **config)
        found = get_state(app).endpoint
        assert found is not None
        return app, found

    apps: dict[str, Flask] = {}
    apps["endpoint"] = endpoint("full")[0]

    app, ep = endpoint("no_context")
    alarm = ep.alarm
    assert alarm is not None
    alarm.run = lambda fn, arg: alarm._run(fn, arg, None)  # type: ignore[method-assign]
    apps["  without the checks and the selector's own context"] = app

    app, ep = endpoint("inline")

    class Inline:
        def run(self, fn: Callable[[Any], Any], arg: Any) -> Outcome:
            return Outcome("ok", fn(arg))

    ep.alarm = Inline()
    apps["  selector called directly (no time limit)"] = app

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
            step(ep, read_signed_payload(request, None))
            return app.response_class(b"{}", mimetype="application/json")

        app.view_functions["flask_retention.realtime"] = view
        return app

    apps["  read, verify, load the payload (nothing else)"] = only(
        "verify_load", lambda ep, token: ep.verify(token)
    )
    apps["  read, verify"] = only("verify", lambda ep, token: ep.verifier.verify(token))
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

    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    signing_input = json.loads(bodies[0])["signedPayload"].rsplit(".", 1)[0].encode()
    algorithm = ec.ECDSA(hashes.SHA256())
    der = key.sign(signing_input, algorithm)

    def es256() -> None:
        public.verify(der, signing_input, algorithm)

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
    shutil.rmtree(folder, ignore_errors=True)

    def rounds(name: str) -> list[float]:
        return bench.round_medians(times[name], block)

    bare, one = rounds(BARE), rounds(ES256)
    print(f"{n} calls each, in turns of {block}; (variant - bare view) / one ES256, paired:")
    for name in runs:
        if name in (BARE, ES256):
            continue
        ratio = statistics.median(
            (x - b) / e for x, b, e in zip(rounds(name), bare, one, strict=True)
        )
        print(
            f"  {name:<52} {ratio:5.2f}   (median {statistics.median(times[name]) * 1e6:6.1f} us)"
        )
    print(f"  {BARE:<52}  0.00   (median {statistics.median(times[BARE]) * 1e6:6.1f} us)")
    print(f"  {ES256:<52}         (median {statistics.median(times[ES256]) * 1e6:6.1f} us)")


BARE = "bare Flask view, same body"
ES256 = "one bare ES256 verification"

if __name__ == "__main__":
    main()
