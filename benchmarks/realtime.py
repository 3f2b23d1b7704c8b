"""Per-request cost of the real-time endpoint, beside what it is built from.

Run from a checkout, in an environment with the project and (only for this
script) Apple's official library installed::

    pip install -e . app-store-server-library
    python benchmarks/realtime.py [--requests 3000] [--translated 2000]

Everything printed comes from this one run. Each call is timed on its own,
and the contenders take turns in rounds (``--block`` calls each, 10 by
default, in a shuffled order per round), so that all of them see the same
machine; the table shows percentiles of the per-call times in microseconds.
The target ratios are paired: computed within each round from the block
medians, then their median over the rounds, because a shared VM speeds up
and slows down over seconds; the same ratios from the pooled medians follow,
for reference. The contenders:

* endpoint: the whole real-time endpoint, called in-process through
  ``app.wsgi_app`` with a prepared WSGI environ (no test client), a trivial
  selector (run, as always, on a worker thread of the ``SelectorPool``), the
  catalogue and decision log in SQLite, and a fresh token per request (all
  signed before timing);
* bare view: a plain Flask view that parses the same body as JSON;
* the bare view doing one ES256 verification besides, to show what one
  verification costs in place (caches are colder than in a tight loop);
* ES256: one raw ``cryptography`` ECDSA P-256 verification, the physical
  floor of verifying a request;
* Apple: ``SignedDataVerifier.verify_and_decode_realtime_request`` of Apple's
  ``app-store-server-library`` (online checks off, as on a request path);
* the parts: our JWS verification, the payload schema, and the selector's
  hand-off to a worker thread (``SelectorPool.run`` of a trivial function,
  beside the same call made directly in an app context).

With ``--translated N``, the endpoint's database first gets a translated
catalogue of N Apple messages (N / 10 names, each a base text in ``en-US``
and 9 translations, all APPROVED in Sandbox, with an every-translation
default), and the selector names a message (``Message("winback-0042")``)
instead of a UUID; the requests come from locales that resolve through each
step of the fallback chain (exact, language, region, and one that no text
serves), so the endpoint's time includes resolving the name for the
subscriber's language.

Targets: endpoint <= 0.3 x Apple's verifier alone, and (endpoint - bare
view) <= 8 x one ES256 verification (paired ratios). The exit status is 1
when one is missed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from flask import Flask, Response, request
from werkzeug.test import EnvironBuilder

from flask_retention import Message, RealtimeRequest, Retention
from flask_retention.catalogue.files import load_catalogue_file
from flask_retention.catalogue.schema import upgrade
from flask_retention.testing import AppStoreSigner

APP_APPLE_ID = 1234567890
URL = "/retention/realtime"
MESSAGE = uuid.UUID("a1b2c3d4-e5f6-7890-a1b2-c3d4e5f67890")
TARGET_APPLE = 0.3
TARGET_ES256 = 8.0

#: ``--translated``: the base text's locale and the translations of every message.
BASE_LOCALE = "en-US"
TRANSLATIONS = ("fr-FR", "de-DE", "es-ES", "it", "ja", "pt-BR", "zh-Hans", "ko", "nl-NL")
#: The requests' locales: exact, language-only (it-IT -> it), region (fr-CA -> fr-FR,
#: es-MX -> es-ES, pt-PT -> pt-BR, en-GB -> en-US), and one that no text serves (sv-SE).
REQUEST_LOCALES = (
    "en-US", "fr-FR", "fr-CA", "de-DE", "es-MX", "it-IT", "ja", "pt-PT", "zh-Hans", "en-GB",
    "ko", "nl-NL", "sv-SE",
)  # fmt: skip


def environ_for(body: bytes) -> dict[str, Any]:
    return EnvironBuilder(
        path=URL, method="POST", data=body, content_type="application/json"
    ).get_environ()


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    if not status.startswith("200"):
        raise SystemExit(f"benchmark request failed: {status}")


def call_wsgi(app: Flask) -> Callable[[dict[str, Any]], None]:
    wsgi = app.wsgi_app

    def call(environ: dict[str, Any]) -> None:
        result = wsgi(environ, _start_response)
        b"".join(result)
        close = getattr(result, "close", None)
        if close is not None:
            close()

    return call


def state_of(app: Flask) -> Any:
    """What the extension keeps for ``app`` (its endpoint object, measured here directly)."""
    return app.extensions["retention"]._get_state(app)


def translated_catalogue(folder: str, messages: int) -> tuple[str, list[str]]:
    """A JSON catalogue file of about ``messages`` Apple messages (names x 10 texts), and
    its message names."""
    texts = 1 + len(TRANSLATIONS)
    names = [f"winback-{i:04d}" for i in range(max(messages // texts, 1))]
    data = {
        "languages": {"base_locale": BASE_LOCALE, "base_fallback": False},
        "messages": [
            {
                "name": name,
                "header": "Before you go",
                "body": f"Offer {name}: your plan includes offline mode.",
                "translations": {
                    locale: {"header": f"[{locale}] Before you go", "body": f"[{locale}] {name}"}
                    for locale in TRANSLATIONS
                },
            }
            for name in names
        ],
        "defaults": [{"product_id": "com.example.monthly", "locales": "all", "message": names[0]}],
    }
    path = os.path.join(folder, "translated.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)
    return path, names


def load_translated(app: Flask, retention: Retention, path: str) -> int:
    """Import the catalogue file and mark every text APPROVED in Sandbox; the count."""
    with app.app_context():
        catalogue = retention.catalogue
        catalogue.import_document(load_catalogue_file(path))
        versions = catalogue.message_versions()
        catalogue.record_apple_states("message", "Sandbox", {m.uuid: "APPROVED" for m in versions})
    return len(versions)


def endpoint_app(
    signer: AppStoreSigner,
    database: str,
    *,
    translated: tuple[str, list[str]] | None = None,
    **config: Any,
) -> tuple[Flask, Retention]:
    """The endpoint with a trivial selector, its catalogue and decision log in ``database``.

    ``translated``: a catalogue file to load first and its names, which the
    selector then names in turn (by the request's transaction ID).
    """
    app = Flask("benchmark_endpoint")
    app.config.update(
        RETENTION_ROOT_CERTIFICATES=[signer.root_pem],
        RETENTION_APP_APPLE_ID=APP_APPLE_ID,
        RETENTION_CLI_GROUP=None,
        RETENTION_DATABASE_URI=database,
        **config,
    )
    retention = Retention(app)
    upgrade(retention.get_engine(app))

    if translated is None:

        @retention.selector
        def choose(req: Any) -> Message:
            return Message(MESSAGE)

    else:
        path, names = translated
        count = load_translated(app, retention, path)
        print(f"loaded a translated catalogue of {count} messages", file=sys.stderr)
        choices = [Message(name) for name in names]

        @retention.selector
        def choose_name(req: RealtimeRequest) -> Message:
            return choices[int(req.original_transaction_id) % len(choices)]

    retention.warm_up(app)
    return app, retention


def bare_app(extra: Callable[[], object] | None = None) -> Flask:
    """A plain Flask view that parses the body; ``extra`` runs in it, if given."""
    app = Flask("benchmark_bare")

    @app.post(URL)
    def bare() -> Response:
        body = json.loads(request.get_data())
        token = body["signedPayload"]
        assert isinstance(token, str)
        if extra is not None:
            extra()
        return app.response_class(b"{}", mimetype="application/json")

    return app


def es256_for(token: str) -> Callable[[], None]:
    """One raw ECDSA P-256 verification of a JWS signing input as long as ``token``'s."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    signing_input = token.rsplit(".", 1)[0].encode()
    algorithm = ec.ECDSA(hashes.SHA256())
    der = key.sign(signing_input, algorithm)

    def es256() -> None:
        public.verify(der, signing_input, algorithm)

    return es256


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="calls of each contender")
    parser.add_argument(
        "--block",
        type=int,
        default=10,
        help="calls of one contender in a row before the next one's turn (in shuffled order)",
    )
    parser.add_argument(
        "--translated",
        type=int,
        default=0,
        metavar="N",
        help="load a translated catalogue of N Apple messages (N/10 names x 10 locales) "
        "first, and name its messages, from requests in many locales",
    )
    args = parser.parse_args(argv)
    n = args.requests

    try:
        from appstoreserverlibrary.models.Environment import Environment
        from appstoreserverlibrary.signed_data_verifier import SignedDataVerifier
    except ImportError:
        raise SystemExit(
            "Apple's library is needed for the comparison: pip install app-store-server-library"
        ) from None

    signer = AppStoreSigner()
    folder = tempfile.mkdtemp(prefix="retention-benchmark-")
    translated = translated_catalogue(folder, args.translated) if args.translated else None
    app, retention = endpoint_app(signer, f"sqlite:///{folder}/endpoint.db", translated=translated)
    endpoint = state_of(app).endpoint
    assert endpoint is not None

    print(f"signing {n} requests...", file=sys.stderr)
    bodies = [request_body(signer, i) for i in range(n)]
    tokens = [json.loads(b)["signedPayload"] for b in bodies]
    endpoint_environs = [environ_for(b) for b in bodies]
    bare_environs = [environ_for(b) for b in bodies]
    bare_es256_environs = [environ_for(b) for b in bodies]
    # Tokens for the verifier part: the endpoint refuses a replayed request identifier.
    part_tokens = [signer.sign_realtime_request(app_apple_id=APP_APPLE_ID) for _ in range(n)]

    es256 = es256_for(tokens[0])
    bare = bare_app()
    bare_es256 = bare_app(es256)

    # Apple's verifier, trusting the same test root (DER), online checks off.
    root_der = x509.load_pem_x509_certificate(signer.root_pem).public_bytes(Encoding.DER)
    apple = SignedDataVerifier([root_der], False, Environment.SANDBOX, "com.example", APP_APPLE_ID)
    assert apple.verify_and_decode_realtime_request(tokens[0]).appAppleId == APP_APPLE_ID

    ours = endpoint.verifier
    schema = endpoint.schema
    pool = endpoint.pool
    payload = ours.verify(tokens[0])
    call_endpoint, call_bare = call_wsgi(app), call_wsgi(bare)
    call_bare_es256 = call_wsgi(bare_es256)

    def trivial(x: Any) -> Any:
        return x

    def in_app_context(x: Any) -> Any:
        with app.app_context():
            return trivial(x)

    contenders: dict[str, Callable[[int], object]] = {
        ENDPOINT: lambda i: call_endpoint(endpoint_environs[i]),
        BARE: lambda i: call_bare(bare_environs[i]),
        BARE_ES256: lambda i: call_bare_es256(bare_es256_environs[i]),
        ES256: lambda i: es256(),
        APPLE: lambda i: apple.verify_and_decode_realtime_request(tokens[i]),
        "part: JWSVerifier.verify (chain cached)": lambda i: ours.verify(part_tokens[i]),
        "part: payload schema load": lambda i: schema.load(payload),
        HAND_OFF: lambda i: pool.run(trivial, i),
        DIRECT: in_app_context,
    }

    # Warm-up (caches, the pool's first worker), with bodies of their own: an environ's
    # input is read once, and the endpoint answers each request identifier once.
    for i in range(50):
        body = request_body(signer, i)
        for call in (call_endpoint, call_bare, call_bare_es256):
            call(environ_for(body))
        for name, run in contenders.items():
            if name not in (ENDPOINT, BARE, BARE_ES256):
                run(0)

    block = args.block
    print(f"timing {n} calls of each, in turns of {block}...", file=sys.stderr)
    times = time_in_rounds(contenders, n, block)
    print(f"selector pool after the run: {retention.stats(app).pool}", file=sys.stderr)
    retention.close()
    shutil.rmtree(folder, ignore_errors=True)
    return report(times, n, block)


def request_body(signer: AppStoreSigner, i: int) -> bytes:
    """The body of request ``i``: its own transaction ID (the translated selector's pick)
    and one of :data:`REQUEST_LOCALES` in turn."""
    return signer.realtime_body(
        app_apple_id=APP_APPLE_ID,
        original_transaction_id=str(1_000_000 + i),
        locale=REQUEST_LOCALES[i % len(REQUEST_LOCALES)],
    )


def time_in_rounds(
    contenders: dict[str, Callable[[int], object]], n: int, block: int
) -> dict[str, list[float]]:
    """Seconds per call of ``run(i)`` for i < n, for each contender, in rounds: every
    contender's ``block`` calls in a row, in a shuffled order per round."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    order = list(contenders.items())
    shuffle = random.Random(0).shuffle
    clock = time.perf_counter
    gc.collect()
    gc.freeze()  # the prepared requests are not garbage: keep collections small, as in a server
    for first in range(0, n, block):
        shuffle(order)  # no contender always follows the same one
        for name, run in order:
            record = times[name].append
            for i in range(first, min(first + block, n)):
                start = clock()
                run(i)
                record(clock() - start)
    return times


def round_medians(values: list[float], block: int) -> list[float]:
    """The median of each round's block of calls."""
    return [statistics.median(values[i : i + block]) for i in range(0, len(values), block)]


ENDPOINT = "endpoint (wsgi_app, fresh token)"
BARE = "bare Flask view, same body"
BARE_ES256 = "bare Flask view + one ES256 verification"
ES256 = "one raw ES256 verification"
APPLE = "Apple verify_and_decode_realtime_request"
HAND_OFF = "hand-off: SelectorPool.run (trivial fn)"
DIRECT = "hand-off: none (direct call, app context)"


def report(times: dict[str, list[float]], n: int, block: int) -> int:
    """Print percentiles per contender and the two target ratios (paired by round);
    0 when both targets are met, else 1."""
    stats = {}
    for name, values in times.items():
        values = sorted(values)
        stats[name] = {
            "p10": values[len(values) // 10] * 1e6,
            "median": statistics.median(values) * 1e6,
            "p90": values[9 * len(values) // 10] * 1e6,
            "mean": statistics.fmean(values) * 1e6,
        }
    print(f"python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPUs")
    print(f"{n} calls of each contender, in turns of {block}; microseconds per call")
    width = max(len(name) for name in stats)
    print(f"  {'':<{width}}  {'p10':>8}  {'median':>8}  {'p90':>8}  {'mean':>8}")
    for name, s in stats.items():
        print(
            f"  {name:<{width}}  {s['p10']:8.1f}  {s['median']:8.1f}  {s['p90']:8.1f}  "
            f"{s['mean']:8.1f}"
        )

    # The targets' ratios, paired: computed within each round (every contender's block of
    # one round runs within milliseconds of the others), then their median over the
    # rounds. A shared VM speeds up and slows down over seconds; pairing compares each
    # round with itself, where ratios of pooled medians mix the machine's states.
    er, br, esr, ar = (round_medians(times[name], block) for name in (ENDPOINT, BARE, ES256, APPLE))
    apple_ratio = statistics.median(x / y for x, y in zip(er, ar, strict=True))
    added_ratio = statistics.median((x - y) / z for x, y, z in zip(er, br, esr, strict=True))

    e, b = stats[ENDPOINT]["median"], stats[BARE]["median"]
    es, a = stats[ES256]["median"], stats[APPLE]["median"]
    be = stats[BARE_ES256]["median"]
    h, d = stats[HAND_OFF]["median"], stats[DIRECT]["median"]
    print("the same ratios from the pooled medians above, and what they show:")
    print(f"  endpoint / Apple's verifier           = {e / a:5.3f}")
    print(f"  (endpoint - bare view) / one ES256    = {(e - b) / es:5.2f}")
    for text, us in (
        ("ES256 in place: (bare + ES256) - bare", be - b),
        ("hand-off: SelectorPool.run - direct", h - d),
    ):
        print(f"  {text:<37} = {us:6.1f} us = {us / es:5.2f} ES256")

    checks = [
        (f"endpoint / Apple's verifier = {apple_ratio:.3f}", TARGET_APPLE, apple_ratio),
        (f"(endpoint - bare view) / one ES256 = {added_ratio:.2f}", TARGET_ES256, added_ratio),
    ]
    print(f"targets, paired within each round (median of {len(er)} rounds):")
    for text, target, value in checks:
        verdict = "met" if value <= target else "MISSED"
        print(f"  {text:<42} target <= {target:<4g} {verdict}")
    return 0 if all(value <= target for _, target, value in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
