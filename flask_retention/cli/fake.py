"""``flask retention fake-app-store``: the testing kit's fake App Store on loopback, so that
``sync``, ``realtime-url`` and ``perf-test`` can be tried without an Apple account.

A thin command over :class:`~flask_retention.testing.FakeAppStorePair` and
:func:`~flask_retention.testing.serve`; it keeps a made-up In-App Purchase key
in the instance folder and prints the configuration that points the app at
the fake.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import string
import threading
import uuid
from collections.abc import Callable, Collection, Mapping
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import click
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import current_app

from flask_retention.appstore.performance import (
    DEFAULT_PERFORMANCE_TEST_CONFIG,
    performance_test_config,
)
from flask_retention.catalogue.store import Catalogue
from flask_retention.cli.common import current_retention, current_state, failures, retention_cli
from flask_retention.core.apple import ENVIRONMENTS
from flask_retention.realtime.devca import (
    DEV_CA_FILES,
    create_dev_ca,
    dev_ca_folder,
    load_dev_ca_signer,
)

if TYPE_CHECKING:
    from flask_retention.realtime.signer import AppStoreSigner

#: The fake's folder inside the app's instance folder (its In-App Purchase key).
FAKE_APP_STORE_FOLDER: Final = "fake-app-store"
#: The loopback port served unless ``--port`` says otherwise.
DEFAULT_PORT: Final = 8790
#: The bundle ID the fake expects when the app sets no ``RETENTION_BUNDLE_ID``.
PLACEHOLDER_BUNDLE_ID: Final = "com.example.app"
#: The app Apple ID of the performance test's requests when the app sets none.
PLACEHOLDER_APP_APPLE_ID: Final = 1234567890
#: The original transaction ID the printed next steps use (any 8 to 19 digits will do).
EXAMPLE_TRANSACTION_ID: Final = "2000000123"
HOST: Final = "127.0.0.1"

_KEY_ID_CHARACTERS: Final = string.ascii_uppercase + string.digits
_ISSUER_NAMESPACE: Final = uuid.UUID("6b1c3f52-8e0a-4c55-9d0e-3f7f0a2b9c41")


def _new_key_id() -> str:
    """Ten characters like App Store Connect's key IDs; the first a letter, so that Flask's
    ``from_prefixed_env`` reads it as a string, never as a number."""
    rest = "".join(secrets.choice(_KEY_ID_CHARACTERS) for _ in range(9))
    return secrets.choice(string.ascii_uppercase) + rest


def _read_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise click.ClickException(
            f"{path} is not an unencrypted EC P-256 key (a .p8); delete it and run "
            "`flask retention fake-app-store` again to make a new one."
        )
    return key


def _write_key(folder: Path) -> tuple[Path, ec.EllipticCurvePrivateKey]:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = folder / f"AuthKey_{_new_key_id()}.p8"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return path, key


def fake_key(folder: Path) -> tuple[str, Path, ec.EllipticCurvePrivateKey, bool]:
    """The key ID, path and key of the fake's In-App Purchase key in ``folder``, and whether
    it was made now: an ``AuthKey_<KEYID>.p8`` there is kept across runs."""
    existing = sorted(folder.glob("AuthKey_*.p8"))
    if existing:
        path, made = existing[0], False
        key = _read_key(path)
    else:
        (path, key), made = _write_key(folder), True
    return path.stem.removeprefix("AuthKey_"), path, key, made


def issuer_id_for(key_id: str) -> str:
    """The issuer ID the fake expects with ``key_id``: derived from it, so it stays the same
    while the key is kept."""
    return str(uuid.uuid5(_ISSUER_NAMESPACE, key_id))


def _dev_ca_signer() -> tuple[AppStoreSigner, Path, bool]:
    """The dev CA's signer (the app trusts it with RETENTION_TRUST_DEV_CA), made if absent."""
    folder = dev_ca_folder(current_app)
    made = not any((folder / name).exists() for name in DEV_CA_FILES.values())
    if made:
        create_dev_ca(folder)
    return load_dev_ca_signer(folder), folder, made


def catalogue_products(catalogue: Catalogue) -> Callable[[], frozenset[str]]:
    """A function giving the products of the catalogue's defaults (exact and "every
    translation" ones), and of the defaults sync recorded at Apple (so that removing one at
    Apple still names a known product)."""

    def products() -> frozenset[str]:
        found = {entry.product_id for entry in catalogue.list_defaults()}
        found.update(entry.product_id for entry in catalogue.list_translation_defaults())
        for environment in ENVIRONMENTS:
            found.update(product for product, _locale in catalogue.apple_defaults(environment))
        return frozenset(found)

    return products


def _perf_config(pairs: tuple[str, ...]) -> dict[str, int]:
    overrides: dict[str, int] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not value.strip().isdigit():
            raise click.BadParameter(
                f"{pair!r} is not KEY=VALUE with a whole number, e.g. totalDuration=0",
                param_hint="--perf-test-config",
            )
        overrides[name.strip()] = int(value)
    try:
        return performance_test_config(overrides)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--perf-test-config") from None


def config_lines(config: Mapping[str, Any]) -> list[str]:
    """``KEY = value`` lines of Python for the app's config."""
    return [f"{key} = {value!r}" for key, value in config.items()]


def _env_value(value: Any) -> str:
    """``value`` as ``Config.from_prefixed_env`` reads it back: JSON, except a string that
    JSON would not parse, which is kept as it is."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
    return json.dumps(value)


def env_lines(config: Mapping[str, Any], prefix: str = "FLASK") -> list[str]:
    """``export PREFIX_KEY=value`` lines that ``app.config.from_prefixed_env()`` reads."""
    return [f"export {prefix}_{key}={shlex.quote(_env_value(v))}" for key, v in config.items()]


def _wait_for_stop() -> None:
    """Return on Ctrl-C (SIGINT) or, in the main thread, SIGTERM."""
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    try:
        with suppress(KeyboardInterrupt):
            stop.wait()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@retention_cli.command(
    "fake-app-store", short_help="Serve a fake App Store on loopback and print its config."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port on 127.0.0.1; 0 picks a free one (printed).",
)
@click.option(
    "--product",
    "products",
    multiple=True,
    metavar="ID",
    help="A product ID the app sells; repeat for several. Default: the products of the "
    "catalogue's defaults, read at each call.",
)
@click.option(
    "--approve-production",
    is_flag=True,
    help="Approve Production uploads at once; by default they stay PENDING, as in Apple's "
    "review, and sync leaves Production's defaults waiting.",
)
@click.option(
    "--perf-test-config",
    "perf_test_config",
    multiple=True,
    metavar="KEY=VALUE",
    help="Change the performance test the fake runs, e.g. totalDuration=0; keys: "
    + ", ".join(f"{k} ({v})" for k, v in DEFAULT_PERFORMANCE_TEST_CONFIG.items())
    + ".",
)
def fake_app_store_command(
    port: int,
    products: tuple[str, ...],
    approve_production: bool,
    perf_test_config: tuple[str, ...],
) -> None:
    """Serve a fake of Apple's management API on 127.0.0.1, and print the config to use it.

    Both environments of the app, under /sandbox and /production of one
    server, answer as Apple documents (the testing kit's FakeAppStore):
    the Sandbox approves uploads at once, Production accepts a real-time URL
    only after a Sandbox performance test passed, and that test sends
    requests signed with the app's dev CA (made if absent) to the sandbox
    real-time URL. The fake's In-App Purchase key is kept in the instance
    folder (fake-app-store/AuthKey_KEYID.p8, mode 0600) and reused. Its state
    lives in memory: a restart starts empty. Runs until Ctrl-C (or SIGTERM).
    """
    from flask_retention.testing import FakeAppStorePair, serve

    overrides = _perf_config(perf_test_config)
    settings = current_state().settings
    with failures():
        folder = Path(current_app.instance_path) / FAKE_APP_STORE_FOLDER
        key_id, key_path, key, made_key = fake_key(folder)
        signer, ca_folder, made_ca = _dev_ca_signer()
        if products:
            product_ids: Collection[str] | Callable[[], frozenset[str]] = frozenset(products)
        else:
            product_ids = catalogue_products(current_retention().catalogue)
            learned = sorted(product_ids())
    bundle_id = settings.bundle_id or PLACEHOLDER_BUNDLE_ID
    pair = FakeAppStorePair(
        public_key=key.public_key(),
        key_id=key_id,
        issuer_id=issuer_id_for(key_id),
        bundle_id=bundle_id,
        product_ids=product_ids,
        signer=signer,
        app_apple_id=settings.app_apple_id or PLACEHOLDER_APP_APPLE_ID,
        performance_test_config=overrides,
        allow_http_targets=True,
        production={"auto_approve": True} if approve_production else None,
    )
    with ExitStack() as stack:
        stack.callback(pair.close)
        try:
            url = stack.enter_context(serve(pair, HOST, port))
        except OSError as e:
            raise click.ClickException(
                f"cannot serve on {HOST}:{port} ({e.strerror or e}); pick another --port, "
                "or --port 0 for a free one."
            ) from None
        config: dict[str, Any] = {
            "RETENTION_API_BASE_URL": pair.base_urls(url),
            "RETENTION_ISSUER_ID": issuer_id_for(key_id),
            "RETENTION_KEY_ID": key_id,
            "RETENTION_PRIVATE_KEY_PATH": str(key_path.resolve()),
            "RETENTION_BUNDLE_ID": bundle_id,
            "RETENTION_TRUST_DEV_CA": True,
        }
        click.echo(f"Fake App Store (Sandbox and Production of {bundle_id}) on {url}")
        if products:
            click.echo(f"Products: {', '.join(sorted(products))}")
        else:
            click.echo(
                "Products: those of the catalogue's defaults, read at each call (now: "
                f"{', '.join(learned) or 'none; add one with `flask retention default set`'})"
            )
        click.echo(f"In-App Purchase key: {key_path} ({'made now' if made_key else 'kept'})")
        click.echo(
            f"Performance tests sign with the dev CA in {ca_folder} "
            f"({'made now' if made_ca else 'kept'})"
        )
        click.echo("\nPut this in the app's config:\n")
        for line in config_lines(config):
            click.echo(f"    {line}")
        click.echo(
            "\nor, if the app calls app.config.from_prefixed_env(), set these environment "
            "variables:\n"
        )
        for line in env_lines(config):
            click.echo(f"    {line}")
        if "Production" in settings.environments:
            click.echo(
                "\nRETENTION_TRUST_DEV_CA needs RETENTION_ENVIRONMENT = 'Sandbox' (the dev CA "
                "is refused while Production requests are accepted)."
            )
        endpoint = f"http://{HOST}:5000{settings.endpoint or '/retention/realtime'}"
        click.echo(
            "\nThen, with the app running (flask run), in another terminal:\n\n"
            "    flask retention sync\n"
            f"    flask retention realtime-url set {endpoint} --allow-http\n"
            f"    flask retention perf-test {EXAMPLE_TRANSACTION_ID}\n"
        )
        click.echo("Serving until Ctrl-C.")
        _wait_for_stop()
    click.echo("Stopped the fake App Store.")
