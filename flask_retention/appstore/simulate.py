"""The local simulator: a twin of Apple's performance test that runs anywhere.

:func:`simulate` sends signed real-time requests to a URL, at most
``concurrency`` at a time, and returns Apple's
``PerformanceTestResultResponse`` for them: the engine is the testing kit's
:class:`~flask_retention.testing.PerformanceTestRun` (the one the fake App
Store runs), so a success means what it means to Apple: ``200`` with a JSON
object naming at most one choice, within the threshold. :func:`simulate_app`
takes its defaults from an app (its dev CA, Apple ID, environment and
endpoint); ``flask retention simulate`` prints :func:`format_result`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from flask_retention.core.config import read_settings
from flask_retention.core.errors import RetentionError
from flask_retention.realtime.devca import dev_ca_folder, load_dev_ca_signer

if TYPE_CHECKING:
    from flask import Flask

    from flask_retention.appstore.performance import RealtimeRequestSigner

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_PRODUCT",
    "SimulationError",
    "format_result",
    "simulate",
    "simulate_app",
]

#: Where :func:`simulate_app` sends requests unless told otherwise (``flask run``'s address).
DEFAULT_BASE_URL: Final = "http://127.0.0.1:5000"

#: The (product ID, locale) of the simulated requests unless told otherwise.
DEFAULT_PRODUCT: Final = ("com.example.monthly", "en-US")

DEFAULT_APP_APPLE_ID: Final = 1234567890

#: Outcomes that mean no HTTP answer came back at all.
_UNREACHABLE: Final = frozenset({"SOCKET_ISSUE", "TLS_ISSUE"})

#: Hints for the refusals a misconfigured endpoint gives to the simulator.
_HINTS: Final = {
    "untrusted_root": "the endpoint does not trust the dev CA: set RETENTION_TRUST_DEV_CA = "
    "True in the app it serves (with the same instance folder), and restart it",
    "wrong_app": "the endpoint's RETENTION_APP_APPLE_ID differs from the one signed here",
    "wrong_environment": "the endpoint does not accept the environment signed here "
    "(RETENTION_ENVIRONMENT)",
    "stale": "this machine's clock and the endpoint's differ by more than "
    "RETENTION_MAX_REQUEST_AGE",
}


class SimulationError(RetentionError):
    """The simulation could not run, or nothing answered; the message says what to do."""


def _check_url(url: str) -> None:
    import httpx  # here, so that loading the CLI stays light

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise SimulationError(
            f"{url!r} is not an http:// or https:// URL; give the endpoint's full URL, e.g. "
            f"{DEFAULT_BASE_URL}/retention/realtime."
        )


def simulate(
    url: str,
    signer: RealtimeRequestSigner,
    *,
    app_apple_id: int = DEFAULT_APP_APPLE_ID,
    environment: str = "Sandbox",
    requests: int = 100,
    concurrency: int = 10,
    products: Sequence[tuple[str, str]] = (DEFAULT_PRODUCT,),
    original_transaction_ids: Sequence[str] = ("1000000000000001",),
    threshold_ms: int = 700,
    success_rate: int = 95,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Send ``requests`` signed real-time requests to ``url`` and return Apple's result.

    Requests go out as fast as ``concurrency`` allows, each with a fresh
    ``requestIdentifier``, taking ``products`` (product ID, locale) and
    ``original_transaction_ids`` in turn. The result is Apple's
    ``PerformanceTestResultResponse`` (``result`` is ``PASS`` when
    ``successRate >= success_rate``) plus ``httpErrors``: the non-200 answers
    by status and error code. ``progress`` is called with the number of
    requests done so far, in the calling thread. Raises
    :class:`SimulationError` for a bad URL or when nothing answered at all.
    """
    from flask_retention.appstore.performance import PerformanceTestRun

    _check_url(url)
    for name, value, low in (
        ("requests", requests, 1),
        ("concurrency", concurrency, 1),
        ("threshold_ms", threshold_ms, 1),
        ("success_rate", success_rate, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, not {value!r}")
    if success_rate > 100:
        raise ValueError(f"success_rate is a percentage (0 to 100), not {success_rate!r}")
    run = PerformanceTestRun(
        target=url,
        signer=signer,
        config={
            "totalRequests": requests,
            "maxConcurrentRequests": concurrency,
            "totalDuration": 0,
            "responseTimeThreshold": threshold_ms,
            "successRateThreshold": success_rate,
        },
        app_apple_id=app_apple_id,
        environment=environment,
        products=products,
        original_transaction_ids=original_transaction_ids,
    )
    run.start()
    try:
        while not run.wait(0.1):
            if progress is not None:
                progress(run.attempted)
    except BaseException:
        run.cancel()
        raise
    if progress is not None:
        progress(run.attempted)
    result = run.result()
    result["httpErrors"] = run.http_errors()
    failures: dict[str, int] = result["failures"]
    if failures and set(failures) <= _UNREACHABLE and sum(failures.values()) == requests:
        causes = ", ".join(f"{count} × {name}" for name, count in failures.items())
        if "TLS_ISSUE" in failures:
            advice = "check that it speaks HTTPS with a certificate this machine trusts."
        else:
            advice = "is the app running there? Start it (e.g. `flask run`), or give its URL."
        raise SimulationError(f"Nothing answered at {url} ({causes}): {advice}")
    return result


def simulate_app(
    app: Flask,
    *,
    url: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """:func:`simulate` with ``app``'s dev CA, Apple ID and environment (Sandbox when it
    accepts it, else its first), against ``url`` (default: ``app``'s endpoint on
    :data:`DEFAULT_BASE_URL`). ``options`` are :func:`simulate`'s."""
    settings = read_settings(app.config)
    if url is None:
        if settings.endpoint is None:
            raise SimulationError(
                "RETENTION_ENDPOINT is None in this app; give the URL of the endpoint to test."
            )
        url = DEFAULT_BASE_URL + settings.endpoint
    signer = load_dev_ca_signer(dev_ca_folder(app))
    options.setdefault("app_apple_id", settings.app_apple_id or DEFAULT_APP_APPLE_ID)
    options.setdefault(
        "environment", "Sandbox" if "Sandbox" in settings.environments else settings.environments[0]
    )
    return simulate(url, signer, **options)


def format_result(result: dict[str, Any]) -> str:
    """``result`` in the terms of Apple's performance test, for people."""
    config = result["config"]
    times = result["responseTimes"]
    lines = [
        f"{config['totalRequests']} requests to {result['target']}, at most "
        f"{config['maxConcurrentRequests']} at a time",
        f"Result: {result['result']}: success rate {result['successRate']} % "
        f"(needs {config['successRateThreshold']} %; a success is a 200 with a valid answer "
        f"within {config['responseTimeThreshold']} ms)",
        "Response times (ms): "
        + ", ".join(f"{key} {times[key]}" for key in ("average", "p50", "p90", "p95", "p99")),
    ]
    failures: dict[str, int] = result["failures"]
    if not failures:
        lines.append("Failures: none")
    else:
        lines.append("Failures:")
        lines.extend(
            f"  {name}: {count}"
            for name, count in sorted(failures.items(), key=lambda item: -item[1])
        )
    errors: dict[str, int] = result.get("httpErrors", {})
    if errors:
        lines.append("HTTP answers other than 200:")
        lines.extend(f"  {answer}: {count}" for answer, count in errors.items())
        hinted = {answer.partition(" ")[2] for answer in errors} & set(_HINTS)
        lines.extend(f"Hint: {_HINTS[code]}." for code in sorted(hinted))
    return "\n".join(lines)
