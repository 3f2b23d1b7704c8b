"""``flask retention image|message|default ...``: the catalogue, one entry at a time.

Thin commands over :class:`~flask_retention.catalogue.store.Catalogue`; nothing
here talks to Apple (``flask retention sync`` does). Also the small helpers
the command modules share: one-line failures, tables, the environment option.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from flask_retention.cli import _expected_failures, _one_line, retention_cli

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def failures(file: Path | None = None) -> Iterator[None]:
    """Expected failures (bad input, missing config, Apple errors, network) as one line, exit 1."""
    from flask_retention.appstore.errors import APIError
    from flask_retention.core.errors import RetentionError

    with _expected_failures(file):
        try:
            yield
        except APIError as e:
            raise click.ClickException(_one_line(str(e))) from None
        except RetentionError as e:
            from flask_retention.catalogue.validation import CatalogueError

            if isinstance(e, CatalogueError):
                raise
            raise click.ClickException(_one_line(str(e))) from None


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print ``rows`` as plain text columns aligned under ``headers``."""
    cells = [[str(h) for h in headers]] + [
        ["-" if c is None else str(c) for c in row] for row in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def environment_option(f: F) -> F:
    """``--environment Sandbox|Production`` (default: the first of RETENTION_ENVIRONMENT)."""
    return click.option(
        "--environment",
        "-e",
        type=click.Choice(["Sandbox", "Production"]),
        default=None,
        help="Apple environment to talk to (default: the first of RETENTION_ENVIRONMENT).",
    )(f)


def yes_option(f: F) -> F:
    """``--yes``: do not ask for confirmation."""
    return click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")(f)


def confirm(question: str, yes: bool) -> None:
    """Ask ``question`` unless ``yes``; a "no" (or no terminal) aborts with exit status 1."""
    if yes:
        return
    if not click.confirm(question, default=False, err=True):
        raise click.ClickException("cancelled; nothing was changed (pass --yes to skip asking).")


def _catalogue() -> Any:
    from flask_retention.extension import get_state

    return get_state().retention.catalogue


def _environments() -> tuple[str, ...]:
    from flask_retention.extension import get_state

    return get_state().settings.environments


# -- images -----------------------------------------------------------------------------


@retention_cli.group("image")
def image_group() -> None:
    """Add, list and retire the catalogue's images."""


@image_group.command("add")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Catalogue name of the image.")
@click.option(
    "--size",
    type=click.Choice(["FULL_SIZE", "BULLET_POINT"]),
    default=None,
    help="FULL_SIZE (3840 wide, 160-2160 high) or BULLET_POINT (1024x1024); inferred if omitted.",
)
def image_add_command(path: Path, name: str, size: str | None) -> None:
    """Add the PNG at PATH as the image named --name (checked: PNG, no alpha, Apple's sizes).

    Adding a name again with other bytes makes a new version, and a new
    version of every message that uses it; `sync` uploads them.
    """
    with failures(path):
        image = _catalogue().add_image(name, path, size)
    click.echo(
        f"Image {image.name} is version {image.version} ({image.size}, "
        f"{image.width}x{image.height}, {image.uuid})."
    )


@image_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def image_list_command(as_json: bool) -> None:
    """List the current version of every image with Apple's state per environment."""
    envs = _environments()
    with failures():
        images = _catalogue().list_images()
    if as_json:
        echo_json(
            [
                {
                    "name": i.name,
                    "version": i.version,
                    "uuid": str(i.uuid),
                    "size": i.size,
                    "width": i.width,
                    "height": i.height,
                    "apple_state": {env: i.state(env) for env in envs},
                }
                for i in images
            ]
        )
        return
    if not images:
        click.echo("No images. Add one with `flask retention image add PATH --name NAME`.")
        return
    table(
        ["NAME", "VERSION", "SIZE", "PIXELS", "UUID", *envs],
        [
            [i.name, i.version, i.size, f"{i.width}x{i.height}", i.uuid]
            + [i.state(env) or "not uploaded" for env in envs]
            for i in images
        ],
    )


@image_group.command("retire")
@click.argument("name")
@yes_option
def image_retire_command(name: str, yes: bool) -> None:
    """Retire image NAME: `sync` then deletes it from Apple (refused while a message uses it)."""
    confirm(f"Retire image {name!r}? The next sync deletes it from Apple.", yes)
    with failures():
        _catalogue().retire_image(name)
    click.echo(f"Retired image {name}; `flask retention sync` deletes it from Apple.")


# -- messages ---------------------------------------------------------------------------


@retention_cli.group("message")
def message_group() -> None:
    """Add, list and retire the catalogue's messages."""


@message_group.command("add")
@click.option("--name", required=True, help="Catalogue name of the message.")
@click.option("--header", required=True, help="Header text (Apple: at most 66 characters).")
@click.option("--body", required=True, help="Body text (Apple: at most 144 characters).")
@click.option("--image", default=None, help="Name of a FULL_SIZE catalogue image.")
@click.option("--image-alt-text", default=None, help="Alt text of the image (at most 150).")
@click.option(
    "--header-position",
    type=click.Choice(["ABOVE_BODY", "ABOVE_IMAGE"]),
    default=None,
    help="Where the header goes (Apple's default: ABOVE_BODY; ABOVE_IMAGE needs an image).",
)
@click.option(
    "--bullet",
    "bullets",
    type=(str, str, str),
    multiple=True,
    metavar="TEXT IMAGE ALT",
    help="A bullet point: text, BULLET_POINT image name, alt text (repeat, up to 5).",
)
def message_add_command(
    name: str,
    header: str,
    body: str,
    image: str | None,
    image_alt_text: str | None,
    header_position: str | None,
    bullets: tuple[tuple[str, str, str], ...],
) -> None:
    """Add the message named --name (checked: Apple's lengths and rules).

    Apple cannot edit a message: adding a name again with other content
    makes a new version with a new UUID; `sync` uploads it and moves the
    defaults once Apple approves it, then deletes the old version.
    """
    with failures():
        message = _catalogue().add_message(
            name,
            header,
            body,
            image=image,
            image_alt_text=image_alt_text,
            header_position=header_position,
            bullet_points=list(bullets),
        )
    click.echo(f"Message {message.name} is version {message.version} ({message.uuid}).")


@message_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def message_list_command(as_json: bool) -> None:
    """List the current version of every message with Apple's state per environment."""
    envs = _environments()
    with failures():
        messages = _catalogue().list_messages()
    if as_json:
        echo_json(
            [
                {
                    "name": m.name,
                    "version": m.version,
                    "uuid": str(m.uuid),
                    "header": m.header,
                    "body": m.body,
                    "image": m.image,
                    "bullet_points": len(m.bullet_points),
                    "apple_state": {env: m.state(env) for env in envs},
                }
                for m in messages
            ]
        )
        return
    if not messages:
        click.echo("No messages. Add one with `flask retention message add --name ...`.")
        return
    table(
        ["NAME", "VERSION", "HEADER", "IMAGE", "BULLETS", "UUID", *envs],
        [
            [
                m.name,
                m.version,
                m.header if len(m.header) <= 30 else m.header[:29] + "…",
                m.image,
                len(m.bullet_points),
                m.uuid,
            ]
            + [m.state(env) or "not uploaded" for env in envs]
            for m in messages
        ],
    )


@message_group.command("retire")
@click.argument("name")
@yes_option
def message_retire_command(name: str, yes: bool) -> None:
    """Retire message NAME: `sync` then deletes it from Apple (refused while a default uses it)."""
    confirm(f"Retire message {name!r}? The next sync deletes it from Apple.", yes)
    with failures():
        _catalogue().retire_message(name)
    click.echo(f"Retired message {name}; `flask retention sync` deletes it from Apple.")


# -- defaults ---------------------------------------------------------------------------


@retention_cli.group("default", short_help="Choose or remove default messages.")
def default_group() -> None:
    """Choose the default message Apple shows for a product and locale."""


@default_group.command("set")
@click.argument("product_id")
@click.argument("locale")
@click.argument("message")
def default_set_command(product_id: str, locale: str, message: str) -> None:
    """Make MESSAGE the default for PRODUCT_ID and LOCALE (local; `sync` configures Apple).

    Apple's default then follows the newest version of MESSAGE that Apple
    approved in each environment.
    """
    with failures():
        warnings = _catalogue().set_default(product_id, locale, message)
    for warning in warnings:
        click.echo(f"Warning: {warning}", err=True)
    click.echo(f"Default for {product_id} / {locale} is {message}; run `flask retention sync`.")


@default_group.command("remove")
@click.argument("product_id")
@click.argument("locale")
@yes_option
def default_remove_command(product_id: str, locale: str, yes: bool) -> None:
    """Remove the default of PRODUCT_ID and LOCALE (`sync` removes it at Apple)."""
    confirm(
        f"Remove the default of {product_id} / {locale}? After the next sync Apple shows "
        "nothing there when the endpoint does not answer.",
        yes,
    )
    with failures():
        removed = _catalogue().remove_default(product_id, locale)
    if not removed:
        raise click.ClickException(f"there is no default for {product_id} / {locale}.")
    click.echo(f"Removed the default of {product_id} / {locale}; run `flask retention sync`.")
