"""The ``flask retention`` command group.

A thin layer over public Python functions: every command here calls code that
Python users can call too. ``init_app`` adds the group to ``app.cli`` under
``RETENTION_CLI_GROUP`` (default ``retention``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import sqlalchemy as sa
from flask.cli import AppGroup

retention_cli = AppGroup(
    "retention",
    help="Manage the retention message catalogue and sync it with Apple.",
)


# -- catalogue database, import and export ---------------------------------------


def _one_line(text: str) -> str:
    return "; ".join(line.strip(" -") for line in str(text).splitlines() if line.strip())


@contextmanager
def _expected_failures(file: Path | None = None) -> Iterator[None]:
    """Turn the failures a user can fix into a one-line message and exit status 1."""
    from flask_retention.catalogue.validation import CatalogueError

    try:
        yield
    except CatalogueError as e:
        message = _one_line("; ".join(e.errors) if e.errors else str(e))
        if file is not None and str(file) not in message and file.name not in message:
            message = f"{file}: {message}"
        raise click.ClickException(message) from None
    except (sa.exc.OperationalError, sa.exc.ProgrammingError) as e:
        reason = _one_line(str(e.orig) if e.orig is not None else str(e))
        raise click.ClickException(
            f"the catalogue database failed ({reason}); check that it is reachable and "
            "that `flask retention init-db` has run."
        ) from None
    except OSError as e:
        raise click.ClickException(f"{e.filename or ''}: {e.strerror or e}".lstrip(": ")) from None


@retention_cli.command("init-db")
def init_db_command() -> None:
    """Create or upgrade the catalogue tables; safe to repeat."""
    from flask_retention.catalogue.schema import current_revision, upgrade
    from flask_retention.extension import get_state

    engine = get_state().engine
    with _expected_failures():
        upgrade(engine)
        click.echo(f"Catalogue tables are up to date (revision {current_revision(engine)}).")


@retention_cli.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--prune", is_flag=True, help="Retire entries the file does not list.")
def import_command(file: Path, prune: bool) -> None:
    """Load a catalogue file (TOML or JSON) into the database; safe to repeat."""
    from flask_retention.extension import get_state

    with _expected_failures(file):
        result = get_state().retention.catalogue.import_file(file, prune=prune)
    for warning in result.warnings:
        click.echo(f"Warning: {warning}", err=True)
    click.echo(f"Imported {file}: {result.summary()}.")


@retention_cli.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def export_command(file: Path) -> None:
    """Write the current catalogue as a catalogue file (TOML or JSON, by extension)."""
    from flask_retention.extension import get_state

    with _expected_failures(file):
        get_state().retention.catalogue.export_file(file)
    click.echo(f"Exported the catalogue to {file}.")


from flask_retention.cli import (  # noqa: E402  (the command modules need retention_cli, defined above)
    catalogue,  # noqa: F401
    report,  # noqa: F401
    simulate,  # noqa: F401
    sync,  # noqa: F401
)
