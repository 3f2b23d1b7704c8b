"""``flask retention dev-ca`` and ``flask retention simulate``: thin commands over
:mod:`flask_retention.realtime.devca` and :mod:`flask_retention.appstore.simulate`."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from flask import current_app

from flask_retention.appstore.simulate import (
    DEFAULT_BASE_URL,
    DEFAULT_PRODUCT,
    format_result,
    simulate_app,
)
from flask_retention.cli.common import Progress, retention_cli
from flask_retention.core.errors import RetentionError
from flask_retention.realtime.devca import DEV_CA_FILES, create_dev_ca, dev_ca_folder


@retention_cli.command("dev-ca")
@click.option("--force", is_flag=True, help="Replace an existing dev CA.")
def dev_ca_command(force: bool) -> None:
    """Make a local test CA in the instance folder, for `simulate`."""
    folder = dev_ca_folder(current_app)
    try:
        create_dev_ca(folder, force=force)
    except (RetentionError, OSError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"Wrote a dev CA to {folder}: {', '.join(DEV_CA_FILES.values())}.")
    click.echo(
        "Next: set RETENTION_TRUST_DEV_CA = True in the app's config, start it "
        "(flask run), then run: flask retention simulate"
    )


def _products(products: tuple[str, ...], locales: tuple[str, ...]) -> list[tuple[str, str]]:
    if not products and not locales:
        return [DEFAULT_PRODUCT]
    if not products:
        return [(DEFAULT_PRODUCT[0], locale) for locale in locales]
    if not locales:
        return [(product, DEFAULT_PRODUCT[1]) for product in products]
    if len(locales) == 1:
        return [(product, locales[0]) for product in products]
    if len(locales) != len(products):
        raise click.UsageError("Give one --locale for all products, or one per --product.")
    return list(zip(products, locales, strict=True))


@retention_cli.command("simulate")
@click.option(
    "--url",
    help=f"The endpoint to test (default: this app's endpoint on {DEFAULT_BASE_URL}).",
)
@click.option(
    "--requests",
    "requests",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Requests to send, each signed afresh.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Requests in flight at most.",
)
@click.option("--product", "products", multiple=True, help="Product ID; repeat for several.")
@click.option("--locale", "locales", multiple=True, help="userLocale; one, or one per --product.")
@click.option(
    "--original-transaction-id",
    "original_transaction_ids",
    multiple=True,
    help="Original transaction ID; repeat for several (taken in turn).",
)
@click.option(
    "--threshold-ms",
    type=click.IntRange(min=1),
    default=700,
    show_default=True,
    help="Slower answers fail, as in Apple's test.",
)
@click.option(
    "--success-rate",
    type=click.IntRange(0, 100),
    default=95,
    show_default=True,
    help="Percentage of successes needed to PASS.",
)
@click.option("--json", "as_json", is_flag=True, help="Print Apple's result shape as JSON.")
def simulate_command(
    url: str | None,
    requests: int,
    concurrency: int,
    products: tuple[str, ...],
    locales: tuple[str, ...],
    original_transaction_ids: tuple[str, ...],
    threshold_ms: int,
    success_rate: int,
    as_json: bool,
) -> None:
    """Send signed requests to an endpoint and report like Apple's performance test.

    Requests are signed with the dev CA (`flask retention dev-ca`); the
    endpoint must trust it (RETENTION_TRUST_DEV_CA). Exits 1 on FAIL.
    """
    options: dict[str, Any] = {
        "requests": requests,
        "concurrency": concurrency,
        "products": _products(products, locales),
        "threshold_ms": threshold_ms,
        "success_rate": success_rate,
    }
    if original_transaction_ids:
        options["original_transaction_ids"] = list(original_transaction_ids)
    with Progress(requests, "Sending") as bar:
        try:
            result = simulate_app(
                current_app,
                url=url,
                progress=None if as_json else bar.show,
                **options,
            )
        except RetentionError as e:
            raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(format_result(result))
    if result["result"] != "PASS":
        sys.exit(1)
