"""``flask retention report`` and ``flask retention purge``: the decision log's commands.

Thin wrappers over :func:`~flask_retention.insights.report.build_report`,
:func:`~flask_retention.insights.decision_log.purge_decisions` and
:func:`~flask_retention.insights.privacy.purge_subscriber`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from flask_retention.cli.common import (
    confirm,
    current_retention,
    current_state,
    failures,
    plural,
    retention_cli,
    yes_option,
)
from flask_retention.core.apple import ENVIRONMENTS

if TYPE_CHECKING:
    from flask_retention.insights.privacy import SubscriberRows


@retention_cli.command("report")
@click.option(
    "--since",
    default="7d",
    show_default=True,
    help="Start of the window: a duration back from now (7d, 24h) or a date (2026-11-01).",
)
@click.option(
    "--environment", type=click.Choice(ENVIRONMENTS), help="Only requests of this environment."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write a self-contained HTML page with charts to this file.",
)
def report_command(
    since: str, environment: str | None, as_json: bool, html_file: Path | None
) -> None:
    """What the endpoint answered, fallbacks and why, latency percentiles, outcomes, per
    product, locale and message; the HTML page adds the coverage (see ``coverage``) of
    --environment (default: the first of RETENTION_ENVIRONMENT)."""
    from flask_retention.insights.coverage import build_coverage
    from flask_retention.insights.report import (
        build_report,
        parse_since,
        render_html,
        render_json,
        render_text,
    )

    now = datetime.now(UTC)
    try:
        start = parse_since(since, now)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'--since'") from None
    state = current_state()
    order = {name: list(e.variants) for name, e in current_retention().experiments.items()}
    with failures(html_file):
        report = build_report(
            state.engine,
            start,
            environment,
            now=now,
            outcome_window=state.settings.outcome_window,
            experiment_order=order,
        )
        if html_file is not None:
            coverage = build_coverage(
                current_retention().catalogue,
                state.engine,
                environment or state.settings.default_environment,
                since=start,
                now=now,
            )
            html_file.write_text(render_html(report, coverage=coverage), encoding="utf-8")
    if as_json:
        click.echo(render_json(report))
    elif html_file is None:
        click.echo(render_text(report), nl=False)
    if html_file is not None:
        click.echo(f"Wrote the report to {html_file}.", err=as_json)


@retention_cli.command("purge")
@click.option(
    "--older-than",
    help="Delete decisions older than this (90d, 12h); default RETENTION_DECISION_LOG_DAYS days.",
)
@click.option(
    "--subscriber",
    metavar="ORIGINAL_TRANSACTION_ID",
    help="Delete every decision and notification of this subscriber instead (for an erasure "
    "request). Give the real original transaction ID: rows that store it plain or "
    "pseudonymised (RETENTION_SUBSCRIBER_KEY, RETENTION_PREVIOUS_SUBSCRIBER_KEYS) are deleted.",
)
@yes_option
def purge_command(older_than: str | None, subscriber: str | None, yes: bool) -> None:
    """Delete old decisions from the decision log, and notifications as old, in batches;
    or, with --subscriber, one subscriber's decisions and notifications."""
    from flask_retention.insights.decision_log import count_older, purge_decisions
    from flask_retention.insights.notifications import purge_notifications
    from flask_retention.insights.report import parse_duration

    if subscriber is not None:
        if older_than is not None:
            raise click.UsageError("give --older-than or --subscriber, not both.")
        _purge_subscriber(subscriber, yes)
        return
    state = current_state()
    if older_than is None:
        age = timedelta(days=state.settings.decision_log_days)
    else:
        try:
            age = parse_duration(older_than)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="'--older-than'") from None
    cutoff = datetime.now(UTC) - age
    when = cutoff.strftime("%Y-%m-%d %H:%M UTC")
    with failures():
        if not yes:
            count = count_older(state.engine, cutoff)
            if not count:
                click.echo(f"No decisions recorded before {when}.")
                return
            confirm(f"Delete {plural(count, 'decision')} recorded before {when}?", yes)
        deleted = purge_decisions(state.engine, cutoff)
        notifications = purge_notifications(state.engine, cutoff)
    click.echo(f"Deleted {plural(deleted, 'decision')} recorded before {when}.")
    if notifications:
        click.echo(f"Deleted {plural(notifications, 'notification')} signed before {when}.")


def _purge_subscriber(subscriber: str, yes: bool) -> None:
    """``purge --subscriber``: one subscriber's rows, in every form they may be stored in."""
    from flask_retention.insights.privacy import count_subscriber, purge_subscriber

    subscriber = subscriber.strip()
    if not subscriber:
        raise click.BadParameter(
            "give the subscriber's original transaction ID.", param_hint="'--subscriber'"
        )
    state = current_state()
    settings = state.settings
    keys = [k for k in (settings.subscriber_key, *settings.previous_subscriber_keys) if k]
    with failures():
        if not yes:
            found = count_subscriber(state.engine, subscriber, keys)
            if not found.total:
                click.echo("No decisions or notifications of that subscriber are stored.")
                return
            confirm(f"Delete {_rows(found)} of that subscriber?", yes)
        deleted = purge_subscriber(state.engine, subscriber, keys)
    click.echo(f"Deleted {_rows(deleted)} of that subscriber.")


def _rows(found: SubscriberRows) -> str:
    decisions = plural(found.decisions, "decision")
    return f"{decisions} and {plural(found.notifications, 'notification')}"
