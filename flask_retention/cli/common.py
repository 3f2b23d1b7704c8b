"""The ``flask retention`` group, the options its commands share, and the one wrapper that
turns the failures a user can fix into a one-line message and exit status 1.

The group's callback puts the app's :class:`~flask_retention.Retention` in
``ctx.obj``; commands reach it with :func:`current_retention`. It also bounds
the command's first use of the database: a database that does not answer
within ``RETENTION_DATABASE_TIMEOUT`` seconds ends the command with one line
(the queries after that first answer are not bounded: a long report is not a
silent database).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from flask_retention.appstore.errors import APIError
from flask_retention.catalogue.validation import CatalogueError
from flask_retention.core.database import (
    UNUSABLE_SQLSTATES,
    DatabaseTimeout,
    failure_reason,
    sqlstate,
)
from flask_retention.core.errors import RetentionError

if TYPE_CHECKING:
    from flask_retention.extension import Retention, _State

F = TypeVar("F", bound=Callable[..., Any])


@click.group("retention", cls=AppGroup)
@with_appcontext
def retention_cli() -> None:
    """Manage the retention message catalogue and sync it with Apple."""
    click.get_current_context().obj = current_app.extensions["retention"]
    state = current_state()
    state.database.bound_first_use(state.settings.database_timeout)


def current_retention() -> Retention:
    """The app's :class:`~flask_retention.Retention`, which the group put in ``ctx.obj``."""
    retention: Retention = click.get_current_context().obj
    return retention


def current_state() -> _State:
    """What the extension keeps for the current app (settings, database, ...)."""
    return current_retention()._get_state()


def one_line(text: str) -> str:
    """``text`` on one line (its lines joined with "; ")."""
    return "; ".join(line.strip(" -") for line in str(text).splitlines() if line.strip())


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, with an ``s`` unless ``count`` is 1: "1 image", "2 images"."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


@contextmanager
def failures(file: Path | None = None) -> Iterator[None]:
    """Expected failures (bad input, missing config, Apple errors, the database, files) as
    one line and exit status 1; ``file`` is named when the message does not name it."""
    try:
        yield
    except CatalogueError as e:
        message = one_line("; ".join(e.errors) if e.errors else str(e))
        if file is not None and str(file) not in message and file.name not in message:
            message = f"{file}: {message}"
        raise click.ClickException(message) from None
    except DatabaseTimeout as e:
        raise click.ClickException(
            f"the catalogue database did not answer within {e.seconds:g} s "
            "(RETENTION_DATABASE_TIMEOUT); check that it is running and reachable."
        ) from None
    except (APIError, RetentionError) as e:
        raise click.ClickException(one_line(str(e))) from None
    except (
        sa.exc.OperationalError,
        sa.exc.ProgrammingError,
        sa.exc.InterfaceError,
        sa.exc.InternalError,
    ) as e:
        reason = one_line(failure_reason(e)).rstrip(".")
        if "init-db" not in reason and sqlstate(e) not in UNUSABLE_SQLSTATES:
            reason += "; check that it is reachable and that `flask retention init-db` has run"
        raise click.ClickException(f"the catalogue database failed: {reason}.") from None
    except OSError as e:
        raise click.ClickException(f"{e.filename or ''}: {e.strerror or e}".lstrip(": ")) from None


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print ``rows`` as plain text columns aligned under ``headers``."""
    cells = [[str(h) for h in headers]] + [
        ["-" if c is None else str(c) for c in row] for row in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


class Progress:
    """A progress bar on stderr while stderr is a terminal, and no output at all otherwise
    (a pipe or a CI log gets the result, not a bar's labels).

    The bar starts on the first :meth:`show`, so a command that fails before
    any progress prints only why. Use it as a context manager.
    """

    def __init__(self, total: int, label: str) -> None:
        self.total = max(total, 1)
        self.label = label
        self._bar: Any = None
        self._enabled = sys.stderr.isatty()

    def show(self, done: int, total: int | None = None, label: str | None = None) -> None:
        """Move the bar to ``done`` of ``total`` (kept when ``None``), with a new ``label``."""
        if total is not None:
            self.total = max(total, 1)
        if label is not None:
            self.label = label
        if not self._enabled:
            return
        if self._bar is None:
            self._bar = click.progressbar(
                length=self.total, label=self.label, file=sys.stderr, show_pos=True
            )
            self._bar.__enter__()
        self._bar.length = self.total
        self._bar.label = self.label
        self._bar.update(max(0, done - self._bar.pos))

    def close(self) -> None:
        """End the bar (its line stays on the terminal)."""
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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
