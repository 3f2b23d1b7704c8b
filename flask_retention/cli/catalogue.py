"""``flask retention image|message|default ...``: the catalogue, one entry at a time.

Thin commands over :class:`~flask_retention.catalogue.store.Catalogue`; nothing
here talks to Apple (``flask retention sync`` does). Also the small helpers
the command modules share: one-line failures, tables, the environment option.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from flask_retention.cli.common import (
    confirm,
    current_retention,
    current_state,
    echo_json,
    failures,
    one_line,
    plural,
    retention_cli,
    table,
    yes_option,
)


def _catalogue() -> Any:
    return current_retention().catalogue


def _environments() -> tuple[str, ...]:
    return current_state().settings.environments


def _max_image_bytes() -> int:
    return current_state().settings.max_image_bytes


# -- the database, import and export -----------------------------------------------------


@retention_cli.command("init-db")
def init_db_command() -> None:
    """Create or upgrade the catalogue tables; safe to repeat."""
    from flask_retention.catalogue.schema import current_revision, upgrade

    with failures():
        engine = current_retention().get_engine()
        upgrade(engine)
        click.echo(f"Catalogue tables are up to date (revision {current_revision(engine)}).")


@retention_cli.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--prune", is_flag=True, help="Retire entries the file does not list.")
def import_command(file: Path, prune: bool) -> None:
    """Load a catalogue file (TOML or JSON) into the database; safe to repeat.

    The file is checked whole first (as `validate` does) and nothing is
    written when it has a problem. Images must be regular files of at most
    RETENTION_MAX_IMAGE_BYTES.
    """
    with failures(file):
        result = current_retention().catalogue.import_file(
            file, prune=prune, max_image_bytes=_max_image_bytes()
        )
    for warning in result.warnings:
        click.echo(f"Warning: {file}: {one_line(warning)}", err=True)
    click.echo(f"Imported {file}: {result.summary()}.")


@retention_cli.command("validate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--json", "as_json", is_flag=True, help="Print the result as one JSON object, for pipelines."
)
def validate_command(file: Path, as_json: bool) -> None:
    """Check a catalogue file as `import` does and list every problem; nothing is written.

    Each problem is one line naming the entry and the field; the exit status
    is 1 when there is any. The file is checked alone, as a whole catalogue:
    the database is never opened, so this runs before `init-db`, in CI.
    Warnings (an unknown locale, an image outside the file's folder) go to
    standard error and do not fail the check.
    """
    from flask_retention.catalogue.files import check_catalogue_file

    check = check_catalogue_file(file, max_image_bytes=_max_image_bytes())
    if as_json:
        echo_json(check.to_json())
        if not check.ok:
            click.get_current_context().exit(1)
        return
    for warning in check.warnings:
        click.echo(f"Warning: {file}: {one_line(warning)}", err=True)
    if not check.ok:
        for problem in check.problems:
            click.echo(f"{file}: {one_line(problem)}")
        raise click.ClickException(
            f"{file}: {plural(len(check.problems), 'problem')}, listed above."
        )
    counts = ", ".join(
        plural(n or 0, noun)
        for n, noun in (
            (check.images, "image"),
            (check.messages, "message"),
            (check.translations, "translation"),
            (check.defaults, "default"),
        )
        if n or noun != "translation"
    )
    click.echo(f"{file}: {counts}; no problems.")


@retention_cli.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def export_command(file: Path) -> None:
    """Write the current catalogue as a catalogue file (TOML or JSON, by extension)."""
    with failures(file):
        current_retention().catalogue.export_file(file)
    click.echo(f"Exported the catalogue to {file}.")


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

    PATH must be a regular file of at most RETENTION_MAX_IMAGE_BYTES. Adding
    a name again with other bytes makes a new version, and a new version of
    every message that uses it; `sync` uploads them.
    """
    with failures(path):
        image = _catalogue().add_image(name, path, size, max_image_bytes=_max_image_bytes())
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
@click.option(
    "--locale",
    default=None,
    help="Add or update the translation in this App Store locale (e.g. fr-FR) of the "
    "existing message --name, instead of its base text.",
)
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
    help="A bullet point: text, BULLET_POINT image name, alt text (repeat, up to 5). "
    "With --locale, an IMAGE of - shares the base text's bullet image at that position.",
)
def message_add_command(
    name: str,
    locale: str | None,
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

    With --locale, this adds (or updates) a translation of the existing
    message: its own header, body, alt texts and bullet texts, one Apple
    message of its own. The image, header position and bullet images are the
    base text's unless given; an edited translation makes a new version of
    that translation only.
    """
    if locale is not None:
        from flask_retention.catalogue.validation import locale_warning

        with failures():
            translation = _catalogue().add_translation(
                name,
                locale,
                header,
                body,
                image=image,
                image_alt_text=image_alt_text,
                header_position=header_position,
                bullet_points=list(bullets),
            )
        warning = locale_warning(locale)
        if warning is not None:
            click.echo(f"Warning: {warning}", err=True)
        click.echo(
            f"Message {translation.label} is version {translation.version} ({translation.uuid})."
        )
        return
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
    """List the current version of every message and of each of its translations, with
    Apple's review state per environment (each translation is its own Apple message)."""
    envs = _environments()
    with failures():
        catalogue = _catalogue()
        messages = catalogue.list_messages()
        base_locale = catalogue.language_settings().base_locale
    if as_json:
        echo_json(
            [
                {
                    "name": m.name,
                    "locale": m.locale or base_locale,
                    "translation": bool(m.locale),
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
        ["NAME", "LOCALE", "VERSION", "HEADER", "IMAGE", "BULLETS", "UUID", *envs],
        [
            [
                m.name,
                m.locale or f"{base_locale} (base)",
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
@click.option("--locale", default=None, help="Retire only this translation of NAME.")
@yes_option
def message_retire_command(name: str, locale: str | None, yes: bool) -> None:
    """Retire message NAME and its translations: `sync` then deletes them from Apple
    (refused while a default uses it). With --locale, only that translation."""
    what = f"{name} [{locale}]" if locale else name
    confirm(f"Retire message {what!r}? The next sync deletes it from Apple.", yes)
    with failures():
        if locale:
            _catalogue().retire_translation(name, locale)
        else:
            _catalogue().retire_message(name)
    click.echo(f"Retired message {what}; `flask retention sync` deletes it from Apple.")


# -- defaults ---------------------------------------------------------------------------


@retention_cli.group("default", short_help="Choose or remove default messages.")
def default_group() -> None:
    """Choose the default message Apple shows for a product and locale."""


@default_group.command("set")
@click.argument("product_id")
@click.argument("locales", nargs=-1)
@click.argument("message")
@click.option(
    "--all-translations",
    is_flag=True,
    help="Every locale MESSAGE has a text in (each translation's and the base text's), "
    "including translations added later; give no LOCALE.",
)
def default_set_command(
    product_id: str, locales: tuple[str, ...], message: str, all_translations: bool
) -> None:
    """Make MESSAGE the default for PRODUCT_ID in each LOCALE (local; `sync` configures Apple).

    Each (product, locale) gets the translation of MESSAGE the fallback
    chain picks for that locale among those Apple approved (fr-CA -> fr-FR),
    following its newest approved version in each environment; a locale the
    chain cannot serve gets no default (the sync plan says so). An exact
    LOCALE wins over --all-translations for that locale.
    """
    if all_translations == bool(locales):
        raise click.UsageError("give one or more LOCALEs, or --all-translations (not both).")
    with failures():
        catalogue = _catalogue()
        if all_translations:
            warnings = catalogue.set_translations_default(product_id, message)
        else:
            warnings = catalogue.set_defaults(product_id, locales, message)
    for warning in warnings:
        click.echo(f"Warning: {warning}", err=True)
    where = "every translation" if all_translations else ", ".join(locales)
    click.echo(f"Default for {product_id} / {where} is {message}; run `flask retention sync`.")


@default_group.command("remove")
@click.argument("product_id")
@click.argument("locale", required=False)
@click.option(
    "--all-translations",
    is_flag=True,
    help="Remove the default set with --all-translations instead of one LOCALE's.",
)
@yes_option
def default_remove_command(
    product_id: str, locale: str | None, all_translations: bool, yes: bool
) -> None:
    """Remove the default of PRODUCT_ID and LOCALE (`sync` removes it at Apple)."""
    if all_translations == (locale is not None):
        raise click.UsageError("give a LOCALE, or --all-translations (not both).")
    locale = locale or "every translation"
    confirm(
        f"Remove the default of {product_id} / {locale}? After the next sync Apple shows "
        "nothing there when the endpoint does not answer.",
        yes,
    )
    with failures():
        if all_translations:
            removed = _catalogue().remove_translations_default(product_id)
        else:
            removed = _catalogue().remove_default(product_id, locale)
    if not removed:
        raise click.ClickException(f"there is no default for {product_id} / {locale}.")
    click.echo(f"Removed the default of {product_id} / {locale}; run `flask retention sync`.")
