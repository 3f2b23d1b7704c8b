"""The example app: a small subscription backend whose selector uses its own users.

Run it with ``flask --app example_app.app run``; it needs no Apple account.
Flask finds :func:`create_app`; nothing happens when this module is imported.

On every start (each step is safe to repeat) the app

1. creates its own tables (:mod:`example_app.models`) and seeds sample subscribers,
2. creates flask-retention's tables (:func:`flask_retention.catalogue.schema.upgrade`),
3. imports ``catalogue.toml`` into flask-retention's catalogue, and
4. marks the catalogue ``APPROVED`` in Sandbox: a LOCAL DEMO SHORTCUT, because
   there is no Apple account here. A real app learns Apple's review states
   from ``flask retention sync``.

Promotional offers are signed with a throwaway P-256 key that the example
writes into its instance folder: a LOCAL STAND-IN for the In-App Purchase key
you download from App Store Connect.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import httpx
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy.orm import configure_mappers

from flask_retention import Message, PromotionalOffer, RealtimeRequest, Retention, SwitchPlan
from flask_retention.catalogue.schema import upgrade
from flask_retention.catalogue.store import Catalogue

from . import models

if TYPE_CHECKING:
    from flask_retention.testing import AppStoreSigner

HERE = Path(__file__).resolve().parent
CATALOGUE_FILE = HERE / "catalogue.toml"

#: The stand-in In-App Purchase key, written into the instance folder on first start.
OFFER_KEY_FILE = "example-offer-key.LOCAL-STAND-IN.p8"
OFFER_KEY_LABEL = (
    "LOCAL STAND-IN made by flask-retention's example app: NOT an App Store Connect key.\n"
    "Apple will not accept offers signed with it. In a real app set RETENTION_PRIVATE_KEY_PATH,\n"
    "RETENTION_KEY_ID and RETENTION_ISSUER_ID to your In-App Purchase key.\n"
)

#: Subscribers this many months in, still paying monthly, are offered the yearly plan.
LONG_TENURE_MONTHS = 12
#: Subscribers who have not opened the app for longer than this get the come-back offer.
LAPSED_DAYS = 30
COME_BACK_OFFER_ID = "comeback50"

EXAMPLE_KEY = "example_app"

TRY_COMMANDS = (
    "flask --app example_app.app retention dev-ca",
    "flask --app example_app.app run",
    "flask --app example_app.app retention simulate --requests 20",
    "flask --app example_app.app example-request 1000000000000002",
    "flask --app example_app.app retention report",
)

retention = Retention()


def _engine() -> sa.Engine:
    """The example's own database engine (not flask-retention's)."""
    engine: sa.Engine = current_app.extensions[EXAMPLE_KEY]
    return engine


def offer_for(
    subscription: models.Subscription, today: date
) -> Message | SwitchPlan | PromotionalOffer:
    """The example's rules for a known subscriber, in order."""
    if subscription.plan == "monthly" and subscription.tenure_months >= LONG_TENURE_MONTHS:
        return SwitchPlan("switch-to-yearly", product_id=models.YEARLY)
    if subscription.lapsed(today, LAPSED_DAYS):
        return PromotionalOffer("come-back", offer_id=COME_BACK_OFFER_ID)
    return Message("winback")


@retention.selector
def choose(req: RealtimeRequest) -> Message | SwitchPlan | PromotionalOffer | None:
    """Choose with the example's own data: long-tenure monthly subscribers see the yearly
    plan, lapsed ones a promotional offer, others a message; unknown ones the default."""
    subscription = models.find_subscription(_engine(), req.original_transaction_id)
    if subscription is None:
        return None
    return offer_for(subscription, date.today())


def ensure_offer_key(path: Path) -> bool:
    """Write a throwaway P-256 key to ``path`` unless one is there; ``True`` if written.

    The file starts with a label saying it is a local stand-in (PEM readers
    skip text before the key). Mode ``0600``: it is still a private key.
    """
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(OFFER_KEY_LABEL.encode() + pem)
    partial.replace(path)
    return True


def approve_in_sandbox_for_demo(catalogue: Catalogue) -> int:
    """LOCAL DEMO SHORTCUT: record every current version Sandbox has no state for as
    ``APPROVED``, as if Apple had reviewed it; the number of states recorded.

    Only for this example, which has no Apple account. A real app uploads its
    catalogue and learns Apple's states with ``flask retention sync``.
    """
    recorded = 0
    images = {
        i.uuid: "APPROVED"
        for i in catalogue.image_versions(include_retired=False)
        if i.state("Sandbox") is None
    }
    if images:
        recorded += catalogue.record_apple_states("image", "Sandbox", images)
    messages = {
        m.uuid: "APPROVED"
        for m in catalogue.message_versions(include_retired=False)
        if m.state("Sandbox") is None
    }
    if messages:
        recorded += catalogue.record_apple_states("message", "Sandbox", messages)
    return recorded


def prepare(app: Flask) -> bool:
    """Make the example ready to answer (every step safe to repeat); ``True`` on first start."""
    first_start = models.seed(app.extensions[EXAMPLE_KEY]) > 0
    # Warm up: the first real-time request should not pay for opening the database.
    models.find_subscription(app.extensions[EXAMPLE_KEY], "")
    engine = retention.get_engine(app)
    upgrade(engine)
    catalogue = Catalogue(engine)
    catalogue.import_file(app.config["EXAMPLE_CATALOGUE"], prune=True)
    approve_in_sandbox_for_demo(catalogue)
    # Load the catalogue snapshot now, so that the first request finds it at once.
    retention.warm_up(app)
    return first_start


def how_to_try() -> str:
    """The commands that send the example signed requests, as printed on first start."""
    lines = [
        "flask-retention example: try it (Sandbox, signed by a local dev CA, no Apple account):",
        "  1. make the dev CA once:      " + TRY_COMMANDS[0],
        "  2. start the server:          " + TRY_COMMANDS[1],
        "  3. in another terminal:       " + TRY_COMMANDS[2],
        "  one request, answer printed:  " + TRY_COMMANDS[3],
        "     (works without the server; add --url http://127.0.0.1:5000/retention/realtime",
        "      to send it to the running one)",
        "  what was answered, and why:   " + TRY_COMMANDS[4],
    ]
    return "\n".join(lines)


def create_app(
    test_config: Mapping[str, Any] | None = None, *, instance_path: str | None = None
) -> Flask:
    """The example app; ``FLASK_*`` environment variables, then ``test_config``, override
    its configuration."""
    app = Flask(__name__, instance_relative_config=True, instance_path=instance_path)
    instance = Path(app.instance_path)
    app.config.from_mapping(
        EXAMPLE_DATABASE_URI=f"sqlite:///{instance / 'example.sqlite3'}",
        EXAMPLE_CATALOGUE=str(CATALOGUE_FILE),
        EXAMPLE_PREPARE=True,
        RETENTION_ENVIRONMENT="Sandbox",
        RETENTION_APP_APPLE_ID=1234567890,
        RETENTION_BUNDLE_ID="com.example.app",
        # The stand-in In-App Purchase key and made-up IDs (see OFFER_KEY_LABEL).
        RETENTION_PRIVATE_KEY_PATH=str(instance / OFFER_KEY_FILE),
        RETENTION_KEY_ID="LOCALSTANDIN",
        RETENTION_ISSUER_ID="00000000-0000-0000-0000-000000000000",
        # Trust the local dev CA of `flask retention dev-ca` (refused with Production).
        RETENTION_TRUST_DEV_CA=True,
    )
    # Any key can be set from the environment, e.g. FLASK_RETENTION_SELECTOR_TIMEOUT=1.
    app.config.from_prefixed_env()
    if test_config is not None:
        app.config.from_mapping(test_config)
    if app.config["RETENTION_PRIVATE_KEY_PATH"] == str(instance / OFFER_KEY_FILE):
        ensure_offer_key(instance / OFFER_KEY_FILE)

    retention.init_app(app)
    app.extensions[EXAMPLE_KEY] = models.create_engine(app.config["EXAMPLE_DATABASE_URI"])
    configure_mappers()

    @app.get("/")
    def index() -> dict[str, Any]:
        today = date.today()
        subscribers = [
            {
                "original_transaction_id": sub.original_transaction_id,
                "name": sub.user.name,
                "plan": sub.plan,
                "tenure_months": sub.tenure_months,
                "last_active_on": sub.last_active_on.isoformat(),
                "selector_gives": type(offer_for(sub, today)).__name__,
            }
            for sub in models.all_subscriptions(app.extensions[EXAMPLE_KEY])
        ]
        return {
            "service": "flask-retention example subscription backend",
            "environment": app.config["RETENTION_ENVIRONMENT"],
            "retention_endpoint": app.config["RETENTION_ENDPOINT"],
            "subscribers": subscribers,
            "try": list(TRY_COMMANDS),
        }

    app.cli.add_command(example_request)

    if app.config["EXAMPLE_PREPARE"]:
        try:
            first_start = prepare(app)
        except BaseException:
            retention.close(app)
            app.extensions[EXAMPLE_KEY].dispose()
            raise
        if first_start:
            click.echo(how_to_try(), err=True)
    return app


def send_example_request(
    app: Flask,
    signer: AppStoreSigner,
    original_transaction_id: str,
    *,
    product_id: str = models.MONTHLY,
    locale: str = "en-US",
    url: str | None = None,
    timeout: float = 5.0,
) -> tuple[int, Any]:
    """Sign one real-time request with ``signer`` and send it to ``app``'s endpoint
    (in-process), or to ``url``; the status and the JSON answer."""
    accepted = app.config["RETENTION_ENVIRONMENT"]  # one name, or a list whose first is the CLI's
    body = signer.realtime_body(
        original_transaction_id=original_transaction_id,
        app_apple_id=app.config["RETENTION_APP_APPLE_ID"],
        product_id=product_id,
        locale=locale,
        request_identifier=uuid.uuid4(),
        environment=accepted if isinstance(accepted, str) else accepted[0],
    )
    headers = {"Content-Type": "application/json"}
    if url is None:
        response = app.test_client().post(
            app.config["RETENTION_ENDPOINT"], data=body, headers=headers
        )
        return response.status_code, response.get_json(silent=True)
    answer = httpx.post(url, content=body, headers=headers, timeout=timeout)
    try:
        return answer.status_code, answer.json()
    except ValueError:
        return answer.status_code, answer.text


@click.command("example-request")
@with_appcontext
@click.argument("original_transaction_id", default="1000000000000001")
@click.option("--product-id", default=models.MONTHLY, show_default=True)
@click.option("--locale", default="en-US", show_default=True)
@click.option(
    "--url",
    help="Send to a running endpoint, e.g. http://127.0.0.1:5000/retention/realtime "
    "(default: in-process, no server needed).",
)
def example_request(
    original_transaction_id: str, product_id: str, locale: str, url: str | None
) -> None:
    """Sign one request with the dev CA for a subscriber and print the endpoint's answer."""
    from flask_retention.core.errors import RetentionError
    from flask_retention.realtime.devca import dev_ca_folder, load_dev_ca_signer

    app = current_app
    try:
        signer = load_dev_ca_signer(dev_ca_folder(app))
        status, answer = send_example_request(
            app, signer, original_transaction_id, product_id=product_id, locale=locale, url=url
        )
    except RetentionError as e:
        raise click.ClickException(str(e)) from None
    except httpx.HTTPError as e:
        raise click.ClickException(f"cannot reach {url}: {e}") from None
    click.echo(f"HTTP {status}", err=True)
    click.echo(json.dumps(answer, indent=2, ensure_ascii=False))
    if status != 200:
        sys.exit(1)
