"""``flask retention sync|status|realtime-url|perf-test|check``: the catalogue and Apple.

Thin commands over :mod:`flask_retention.appstore.sync`, :mod:`flask_retention.appstore.golive`
and :mod:`flask_retention.appstore.checks`.
"""

from __future__ import annotations

import contextlib
from typing import Any

import click
from flask import current_app

from flask_retention.cli.common import (
    Progress,
    confirm,
    current_retention,
    current_state,
    echo_json,
    environment_option,
    failures,
    retention_cli,
    table,
    yes_option,
)


def _environment(environment: str | None) -> str:
    env: str = environment or current_state().settings.default_environment
    return env


def _client(environment: str) -> Any:
    from flask_retention.appstore.client import client_from_settings

    return client_from_settings(
        current_state().settings, environment, tuning=current_retention().tuning
    )


# -- sync -------------------------------------------------------------------------------


def _print_plan(plan: Any, client: Any) -> None:
    from flask_retention.appstore.sync import wait_estimate

    click.echo(f"Sync plan for {plan.environment}:")
    if plan.drift:
        click.echo("Defaults at Apple differ from what was recorded:")
        for drift in plan.drift:
            click.echo(f"  {drift.describe()}")
    elif plan.read_defaults:
        click.echo(f"Defaults read from Apple: {len(plan.read_defaults)}, all as recorded.")
    if plan.steps:
        table(["STEP", "KIND", "WHAT", "UUID"], [_step_row(s) for s in plan.steps])
        click.echo(
            f"{len(plan.steps)} change(s) at Apple; at least "
            f"{wait_estimate(plan.estimate(client))} under Apple's pacing."
        )
    else:
        click.echo("Nothing to change at Apple.")
    _print_notes(plan)


def _step_row(step: Any) -> list[object]:
    verb, _, kind = step.action.partition("_")
    return [verb, kind, step.target, step.uuid]


def _print_notes(plan: Any) -> None:
    for title, notes in (
        ("Waiting for Apple's review", plan.waiting),
        ("Rejected by Apple (edit them to make a new version)", plan.rejected),
        ("At Apple but unknown here", plan.unknown),
        ("No default: the fallback chain cannot serve these locales", plan.uncovered),
    ):
        if notes:
            click.echo(f"{title}:")
            for note in notes:
                click.echo(f"  {note.describe()}")


class _SigtermStopsSync:
    """In the main thread, SIGTERM raises :class:`SyncInterrupted` (once: another SIGTERM
    during the clean-up is ignored) so that the sync gives its lock up; the previous handler
    is restored on leaving."""

    def __enter__(self) -> None:
        import signal
        import threading

        from flask_retention.appstore.sync import SyncInterrupted

        self.previous: Any = None
        if threading.current_thread() is not threading.main_thread():
            return
        raised = False

        def interrupt(signum: int, frame: object) -> None:
            nonlocal raised
            if not raised:
                raised = True
                raise SyncInterrupted("SIGTERM")

        previous = signal.signal(signal.SIGTERM, interrupt)
        self.previous = signal.SIG_DFL if previous is None else previous

    def __exit__(self, *exc_info: object) -> None:
        import signal

        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def _interrupted(error: Any, env: str, tuning: Any) -> str:
    """The one line a sync stopped by a signal ends with."""
    if error.lock_released is None:
        return f"stopped by {error.signal_name} before it changed anything at Apple; run sync again"
    if error.lock_released:
        return (
            f"stopped by {error.signal_name}; the sync lock of {env} was released; "
            "run sync again to finish"
        )
    return (
        f"stopped by {error.signal_name}; the sync lock of {env} could not be released within "
        f"{tuning.sync_lock_release_timeout:g} s (the database did not answer), and the next sync "
        f"takes it over {tuning.sync_lock_timeout:g} s after its last heartbeat; run sync again "
        "to finish"
    )


@retention_cli.command("sync", short_help="Sync the catalogue with Apple (plan, upload, defaults).")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing on either side.")
@click.option("--prune", is_flag=True, help="Also delete images and messages unknown here.")
@click.option(
    "--verify-defaults",
    is_flag=True,
    help="Read every managed default back from Apple first (one Get Default Message each, "
    "paced: 1 s apart in Production, 10 s in the sandbox) and configure again any that Apple "
    "lost or changed.",
)
@environment_option
@yes_option
@click.option("--json", "as_json", is_flag=True, help="Print the plan and result as JSON.")
def sync_command(
    dry_run: bool,
    prune: bool,
    verify_defaults: bool,
    environment: str | None,
    yes: bool,
    as_json: bool,
) -> None:
    """Upload the catalogue to Apple, pull review states and configure the defaults.

    The plan comes from what was recorded plus one Get Image List and one
    Get Message List, and one Get Default Message for each default whose
    message Apple no longer lists (`--verify-defaults`: for every default
    managed here); a default Apple lost or changed is configured again, and
    the plan shows what Apple holds beside what was recorded. Images go
    first, then messages, then defaults (only once Apple approved the
    message and its images); removals run in reverse, and an old version is
    deleted only after its successor is approved and the defaults point to
    it. One sync at a time per environment: a lock in the database, whose
    heartbeat moves while the sync runs, and which is taken over a minute
    after its last heartbeat (a sync that was killed). SIGTERM stops the sync
    cleanly: the lock is released and the command exits with status 143. A
    sync that stopped half-way is finished by running it again, and a sync
    with nothing to do makes no change at Apple.
    """
    from flask_retention.appstore.sync import (
        SyncInterrupted,
        SyncProgress,
        plan_sync,
        run_sync,
        wait_estimate,
    )

    env = _environment(environment)
    try:
        with _SigtermStopsSync(), failures():
            tuning = current_retention().tuning
            catalogue = current_retention().catalogue
            with _client(env) as client, Progress(1, "Reading defaults from Apple") as reading:
                interval = client.limit("get_default_message").interval
                where = "the sandbox" if env == "Sandbox" else "production"
                which = "from Apple" if verify_defaults else "whose message Apple no longer lists"

                def read_progress(done: int, total: int, eta: float) -> None:
                    if done == 0 and total:
                        click.echo(
                            f"Reading {total} default{'' if total == 1 else 's'} {which}: "
                            f"about {wait_estimate(eta)} (Get Default Message: 1 request every "
                            f"{interval:g} s in {where})",
                            err=as_json,
                        )
                    reading.show(done, total, f"Reading defaults (about {wait_estimate(eta)} left)")

                plan = plan_sync(
                    catalogue,
                    client,
                    prune=prune,
                    verify_defaults=verify_defaults,
                    progress=read_progress,
                )
                reading.close()
                if not as_json:
                    _print_plan(plan, client)
                if dry_run:
                    if as_json:
                        echo_json({"dry_run": True, "plan": plan.to_json()})
                    return
                if plan.steps and (env == "Production" or prune):
                    deletes = sum(1 for s in plan.steps if s.action.startswith("delete"))
                    confirm(
                        f"Apply {len(plan.steps)} change(s) to Apple's {env} "
                        f"({deletes} deletion(s))?",
                        yes,
                    )
                with Progress(len(plan.steps), f"Syncing {env}") as bar:

                    def progress(p: SyncProgress) -> None:
                        if plan.steps and not as_json:
                            bar.show(
                                p.done,
                                p.total,
                                f"Syncing {env} (about {wait_estimate(p.eta)} left)",
                            )

                    result = run_sync(
                        catalogue,
                        client,
                        prune=prune,
                        lock_timeout=tuning.sync_lock_timeout,
                        lock_heartbeat=tuning.sync_lock_heartbeat,
                        lock_release_timeout=tuning.sync_lock_release_timeout,
                        progress=progress,
                        plan=plan,
                    )
    except SyncInterrupted as e:
        click.echo(f"Error: {_interrupted(e, env, current_retention().tuning)}", err=True)
        click.get_current_context().exit(143)  # 128 + SIGTERM, as a shell reports it
    if as_json:
        echo_json(result.to_json())
        return
    if result.taken_over_from:
        click.echo(f"Took over a stale sync lock from {result.taken_over_from}.")
    click.echo(f"Applied {len(result.steps)} change(s) to {env}.")
    if result.plan.drift:
        count = len(result.plan.drift)
        click.echo(f"Recorded {count} default{'' if count == 1 else 's'} as Apple holds them.")
    if result.final.steps:
        click.echo(f"{len(result.final.steps)} change(s) wait for a later sync.")
    _print_notes(result.final)


# -- status -----------------------------------------------------------------------------


@retention_cli.command("status", short_help="Show the catalogue beside Apple's state.")
@environment_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def status_command(environment: str | None, as_json: bool) -> None:
    """Show the catalogue beside Apple's state, per environment, as the last sync saw it.

    Each image and message version with Apple's review state, the defaults
    (local and Apple's), the real-time URL, the last performance test, and
    who holds the sync lock (a running sync: host, process, since when, and
    its last heartbeat).
    """
    from flask_retention.appstore.sync import sync_status

    state = current_state()
    envs = [environment] if environment else list(state.settings.environments)
    with failures():
        catalogue = current_retention().catalogue
        timeout = current_retention().tuning.sync_lock_timeout
        reports = [sync_status(catalogue, env, lock_timeout=timeout) for env in envs]
    if as_json:
        echo_json(reports)
        return
    for index, report in enumerate(reports):
        if index:
            click.echo("")
        click.echo(f"== {report['environment']} ==")
        for kind in ("images", "messages"):
            rows = [
                [
                    v["name"],
                    v["version"],
                    "current" if v["current"] else "old",
                    v["apple_state"] or "not uploaded",
                    v["uuid"],
                ]
                for v in report[kind]
            ]
            click.echo(f"{kind.capitalize()}:")
            if rows:
                table(["NAME", "VERSION", "", "APPLE", "UUID"], rows)
            else:
                click.echo("  none")
        click.echo("Defaults:")
        if report["defaults"]:
            table(
                ["PRODUCT", "LOCALE", "MESSAGE", "APPLE"],
                [
                    [
                        d["product_id"],
                        d["locale"],
                        d["message"] or "(removed here)",
                        "none"
                        if d["apple"] is None
                        else (
                            f"{d['apple']['name']} v{d['apple']['version']}"
                            if d["apple"]["name"]
                            else d["apple"]["uuid"]
                        ),
                    ]
                    for d in report["defaults"]
                ],
            )
        else:
            click.echo("  none")
        click.echo(f"Real-time URL: {report['realtime_url'] or 'not configured'}")
        test = report["last_performance_test"]
        if test is None:
            click.echo("Last performance test: none")
        else:
            rate = (test["results"] or {}).get("successRate")
            click.echo(
                f"Last performance test: {test['status']} ({test['request_id']}, "
                f"{test['created_at'][:19]}"
                + (f", success rate {rate}%" if rate is not None else "")
                + ")"
            )
        lock = report["sync_lock"]
        if lock is None:
            click.echo("Sync lock: free")
        else:
            click.echo(
                f"Sync lock: held by {lock['owner']} since "
                f"{lock['acquired_at'][:19].replace('T', ' ')} UTC, "
                f"last heartbeat {lock['heartbeat_age']:.0f} s ago"
                + (" (stale: the next sync takes it over)" if lock["stale"] else "")
            )


# -- real-time URL ----------------------------------------------------------------------


@retention_cli.group("realtime-url", short_help="Configure, show or delete Apple's real-time URL.")
def realtime_url_group() -> None:
    """Configure, show or delete the URL Apple calls for real-time messages."""


@realtime_url_group.command("set")
@click.argument("url")
@environment_option
@click.option(
    "--allow-http",
    is_flag=True,
    help="Also send an http:// URL on loopback (127.0.0.1, ::1, localhost), for a fake "
    "App Store (`fake-app-store`); refused when talking to Apple.",
)
def realtime_url_set_command(url: str, environment: str | None, allow_http: bool) -> None:
    """Configure URL (https://, at most 256 characters) at Apple.

    Production needs a passed performance test first (`perf-test` in the
    sandbox): without one recorded, this refuses before calling Apple.
    `--allow-http` lets a loopback http:// URL through to a fake App Store;
    it is refused, before any call, against Apple's hosts.
    """
    from flask_retention.appstore.golive import configure_realtime_url

    env = _environment(environment)
    with failures():
        catalogue = current_retention().catalogue
        with _client(env) as client:
            configure_realtime_url(catalogue, client, url, allow_loopback_http=allow_http)
    click.echo(f"Apple's {env} real-time URL is {url}.")


@realtime_url_group.command("get")
@environment_option
def realtime_url_get_command(environment: str | None) -> None:
    """Show the real-time URL Apple holds."""
    from flask_retention.appstore.golive import get_realtime_url

    env = _environment(environment)
    with failures():
        catalogue = current_retention().catalogue
        with _client(env) as client:
            url = get_realtime_url(catalogue, client)
    click.echo(url if url is not None else f"No real-time URL is configured in {env}.")


@realtime_url_group.command("delete")
@environment_option
@yes_option
def realtime_url_delete_command(environment: str | None, yes: bool) -> None:
    """Delete the real-time URL: Apple stops calling the endpoint and shows defaults."""
    from flask_retention.appstore.golive import delete_realtime_url

    env = _environment(environment)
    confirm(f"Delete Apple's {env} real-time URL? Apple stops calling the endpoint.", yes)
    with failures():
        catalogue = current_retention().catalogue
        with _client(env) as client:
            delete_realtime_url(catalogue, client)
    click.echo(f"Deleted Apple's {env} real-time URL.")


# -- performance test -------------------------------------------------------------------


def _print_result(result: Any) -> None:
    click.echo(f"Result: {result.result}")
    if result.success_rate is not None:
        click.echo(f"Success rate: {result.success_rate}%")
    times = result.response_times
    given = (
        []
        if times is None
        else [
            f"{label} {value:g}"
            for label, value in (
                ("p50", times.p50),
                ("p90", times.p90),
                ("p95", times.p95),
                ("p99", times.p99),
                ("average", times.average),
            )
            if value is not None
        ]
    )
    if given:
        click.echo(f"Response times (ms): {', '.join(given)}")
    else:
        click.echo("Response times: not in Apple's answer")
    if result.failures:
        click.echo("Failures by reason:")
        table(["REASON", "COUNT"], [[str(k), v] for k, v in sorted(result.failures.items())])


@retention_cli.command("perf-test", short_help="Run Apple's performance test (sandbox).")
@click.argument("original_transaction_id", required=False)
@click.option("--no-wait", is_flag=True, help="Start the test, print its request ID and return.")
@click.option("--result", "request_id", default=None, help="Fetch the result of REQUEST_ID.")
def perf_test_command(
    original_transaction_id: str | None, no_wait: bool, request_id: str | None
) -> None:
    """Run Apple's performance test of the sandbox real-time URL and print the result.

    Apple signs requests for ORIGINAL_TRANSACTION_ID (a sandbox purchase)
    and calls the sandbox real-time URL. The command follows the test
    (polling every 5 seconds)
    and exits 1 on FAIL. `--no-wait` prints the request ID; `--result
    REQUEST_ID` fetches it later.
    """
    from flask_retention.appstore.golive import (
        fetch_performance_test,
        follow_performance_test,
        start_performance_test,
    )

    if (original_transaction_id is None) == (request_id is None):
        raise click.UsageError("give ORIGINAL_TRANSACTION_ID, or --result REQUEST_ID (not both).")
    engine = current_retention().get_engine()
    with failures():
        interval = current_retention().tuning.perf_test_poll_interval
        with _client("Sandbox") as client:
            if request_id is not None:
                try:
                    result = fetch_performance_test(engine, client, request_id)
                except ValueError as e:
                    raise click.ClickException(str(e)) from None
                if not result.finished:
                    click.echo(f"Performance test {request_id} is still running.")
                    return
            else:
                assert original_transaction_id is not None
                started = start_performance_test(engine, client, original_transaction_id)
                assert started.request_id is not None  # start_performance_test refuses None
                c = started.config
                click.echo(f"Started performance test {started.request_id}:")
                if c is None:
                    click.echo("Apple's answer does not say how the test runs.")
                else:
                    rate = c.success_rate_threshold
                    table(
                        [
                            "REQUESTS",
                            "CONCURRENT",
                            "DURATION (ms)",
                            "THRESHOLD (ms)",
                            "SUCCESS RATE",
                        ],
                        [
                            [
                                c.total_requests,
                                c.max_concurrent_requests,
                                c.total_duration,
                                c.response_time_threshold,
                                None if rate is None else f"{rate}%",
                            ]
                        ],
                    )
                if no_wait:
                    click.echo(
                        f"Fetch the result with `flask retention perf-test --result "
                        f"{started.request_id}`."
                    )
                    return
                total = None if c is None else c.total_requests
                with Progress(total or 1, "Performance test") as bar:

                    def on_poll(r: Any) -> None:
                        known = total
                        if known is None and r.config is not None:
                            known = r.config.total_requests
                        if known is not None:
                            pending = r.num_pending if r.num_pending is not None else known
                            bar.show(max(0, known - pending), total=known)

                    result = follow_performance_test(
                        engine,
                        client,
                        started.request_id,
                        interval=interval,
                        on_poll=on_poll,
                        max_wait=current_retention().tuning.perf_test_max_wait,
                    )
    _print_result(result)
    if not result.passed:
        raise click.ClickException("the performance test failed.")


# -- check ------------------------------------------------------------------------------


@retention_cli.command("check", short_help="Check everything Apple needs before it calls the app.")
@environment_option
@click.option(
    "--online/--offline",
    default=None,
    help="Ask Apple what it holds (default: online when the management API settings are set).",
)
@click.option(
    "--verify-defaults",
    is_flag=True,
    help="Read every default back from Apple (one Get Default Message each: slow, paced).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check_command(
    environment: str | None, online: bool | None, verify_defaults: bool, as_json: bool
) -> None:
    """Check everything that must hold before Apple calls the endpoint; exit 1 on problems.

    For the environment asked: the settings it needs (RETENTION_APP_APPLE_ID
    for Production; the management API's issuer ID, key ID, key and bundle
    ID), that the endpoint accepts it, the key and root certificates, a
    selector, the database migrated, a catalogue with messages and defaults,
    each default per (product, locale) as sync configures it (the text the
    fallback chain picks APPROVED there and held by Apple; a locale no
    translation serves is named), a default for every product and
    locale that got requests, the real-time URL, and the last Sandbox
    performance test passed. Online (the default when the API settings are
    set) it asks Apple: the image and message lists, the real-time URL (and
    whether it is the one `realtime-url set` recorded), and the defaults whose
    message Apple no longer lists; `--verify-defaults` reads every default
    (about 1 s each in Production, 10 s in the sandbox). Every problem is one
    line with its fix.
    """
    from flask_retention.appstore.checks import Problem, missing_api_settings, run_checks
    from flask_retention.appstore.sync import wait_estimate

    retention = current_retention()
    state = current_state()
    env = _environment(environment)
    missing = missing_api_settings(state.settings)
    if online is None:
        online = not missing
    with failures(), contextlib.ExitStack() as stack:
        client = None
        if online and not missing:
            client = stack.enter_context(_client(env))
        bar = stack.enter_context(Progress(1, "Reading defaults from Apple"))
        announced: list[bool] = []

        def progress(done: int, total: int, eta: float) -> None:
            if not announced:
                announced.append(True)
                interval = client.limit("get_default_message").interval if client else 0.0
                click.echo(
                    f"Reading {total} default{'' if total == 1 else 's'} from Apple: about "
                    f"{wait_estimate(eta)} (Get Default Message: one request every "
                    f"{interval:g} s in {env}).",
                    err=True,
                )
            bar.show(done, total)

        report = run_checks(
            state.settings,
            state.engine,
            config=current_app.config,
            has_selector=retention.has_selector,
            environment=env,
            client=client,
            verify_defaults=verify_defaults,
            progress=progress,
        )
    problems = list(report.problems)
    if online and missing:
        problems.append(
            Problem(
                "apple",
                f"--online needs the management API settings ({', '.join(missing)}): set "
                "them, or pass --offline.",
            )
        )
    if as_json:
        echo_json({**report.to_json(), "problems": [p.to_json() for p in problems]})
        if problems:
            raise SystemExit(1)
        return
    mode = "online" if report.online else "offline"
    for note in report.notes:
        click.echo(f"Note: {note}")
    if problems:
        for problem in problems:
            click.echo(f"- {problem.message}", err=True)
        count = len(problems)
        raise click.ClickException(
            f"{count} problem{'' if count == 1 else 's'} found in {env} ({mode})."
        )
    click.echo(f"All checks passed ({env}, {mode}).")
