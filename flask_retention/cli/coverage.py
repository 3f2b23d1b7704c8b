"""``flask retention coverage``: where subscribers see a message in their language, in
another one, or none.

A thin wrapper over :func:`~flask_retention.insights.coverage.build_coverage`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from flask_retention.cli.common import (
    current_retention,
    current_state,
    echo_json,
    environment_option,
    failures,
    retention_cli,
)


@retention_cli.command("coverage")
@environment_option
@click.option(
    "--since",
    default="7d",
    show_default=True,
    help="Count requests from this point: a duration back from now (7d, 24h) or a date "
    "(2026-11-01).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the coverage as one JSON object.")
def coverage_command(environment: str | None, since: str, as_json: bool) -> None:
    """Show, per product and locale, the default the fallback chain picks, whether Apple
    holds it approved, the translations missing or in review and the locales the chain
    cannot serve; and per locale seen in requests, how many were answered in that
    locale, in another one, or with the fallback.

    A view, not a check: it exits with status 0 whatever it finds (1 only when the
    database fails). Apple's states are those the last sync recorded; no call to Apple.
    """
    from flask_retention.insights.coverage import build_coverage, render_coverage_text
    from flask_retention.insights.report import parse_since

    now = datetime.now(UTC)
    try:
        start = parse_since(since, now)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'--since'") from None
    state = current_state()
    env = environment or state.settings.default_environment
    with failures():
        coverage = build_coverage(
            current_retention().catalogue, state.engine, env, since=start, now=now
        )
    if as_json:
        echo_json(coverage)
    else:
        click.echo(render_coverage_text(coverage), nl=False)
