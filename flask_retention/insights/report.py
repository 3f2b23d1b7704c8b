"""What the decision log says: :func:`build_report` computes it, the renderers show it.

:func:`build_report` returns a plain dictionary (the ``report --json``
object of DESIGN.md); :func:`render_text`, :func:`render_json` and
:func:`render_html` only present it, so that more figures (outcomes,
experiments) are added to the dictionary and to each renderer on their own.

Latency percentiles use the **nearest-rank** method: the p-th percentile of
``n`` sorted values is the value at rank ``ceil(p * n / 100)`` (1-based). It
is computed with integers and read with ``ORDER BY ... OFFSET``, so SQLite
and PostgreSQL give the same numbers, always one of the measured values.
"""

from __future__ import annotations

import html
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

import sqlalchemy as sa

from flask_retention.catalogue.models import Message, metadata
from flask_retention.insights.coverage import coverage_html, plural
from flask_retention.insights.privacy import subscriber_kinds

#: Apple's response time limit for the real-time endpoint, in milliseconds.
APPLE_LIMIT_MS: Final = 700.0

#: Latency counted as "near the limit" (``latency_ms.near_limit``): at or over 500 ms,
#: close enough to Apple's 700 ms that a slower host or network could cross it.
NEAR_LIMIT_MS: Final = 500.0

#: The percentiles of ``latency_ms``.
PERCENTILES: Final = (50, 95, 99)

#: Upper bounds (ms) of the latency histogram's buckets; the last bucket is open.
LATENCY_BUCKETS_MS: Final = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 700.0)

#: How the text and HTML reports label ``totals.replays``: requests answered a second
#: time by another process, found afterwards in the decision log. Not the ``replayed``
#: rejection, which the endpoint refused with a ``403``.
REPLAYS_LABEL: Final = "answered again (replay across processes)"

#: How the text and HTML reports label ``dropped.total``: decisions answered but never
#: logged, so not in the other figures (the log's queue was full, or the row was refused).
DROPPED_LABEL: Final = "answered, not logged (dropped)"

#: Reasons a decision was dropped, in ``dropped`` (see the decision log).
DROP_REASONS: Final = ("queue_full", "unstorable")

#: The title of the table of ``subscriber_ids`` in the text and HTML reports.
SUBSCRIBER_IDS_TITLE: Final = (
    "Stored subscriber IDs (pseudonymised: HMAC-SHA256 with RETENTION_SUBSCRIBER_KEY; "
    "plain: the original transaction ID)"
)


#: Labels of rejection codes that need more than the code in the text and HTML reports.
REJECTION_LABELS: Final[Mapping[str, str]] = {
    "replayed": "replayed: refused, already answered (403)",
}


def _rejection_rows(report: dict[str, Any]) -> list[Sequence[Any]]:
    return [(REJECTION_LABELS.get(code, code), n) for code, n in report["rejections"].items()]


_DURATION = re.compile(r"^\s*(\d+)\s*([dhm])\s*$")
_UNITS: Final = {"d": "days", "h": "hours", "m": "minutes"}


# -- parsing --------------------------------------------------------------------


def parse_duration(text: str) -> timedelta:
    """``"7d"``, ``"24h"`` or ``"30m"`` as a :class:`~datetime.timedelta`; ``ValueError`` else."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration; write a whole number of days, hours or minutes, "
            "like 90d, 24h or 30m."
        )
    amount = int(match.group(1))
    if amount == 0:
        raise ValueError(f"{text!r} is zero; give a positive duration, like 7d.")
    return timedelta(**{_UNITS[match.group(2)]: amount})


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """The start of a report window: a duration back from ``now`` (``7d``, ``24h``) or
    a date (``2026-11-01``, midnight UTC). ``ValueError`` with the accepted forms else."""
    now = now or datetime.now(UTC)
    if _DURATION.match(text):
        return now - parse_duration(text)
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (like 7d or 24h) nor a date (like 2026-11-01)."
        ) from None
    since = datetime.combine(day, time(), tzinfo=UTC)
    if since > now:
        raise ValueError(f"{text} is in the future; give a past date or a duration like 7d.")
    return since


# -- percentiles ----------------------------------------------------------------


def nearest_rank(p: int, n: int) -> int:
    """The 1-based rank of the ``p``-th percentile among ``n`` values (nearest-rank)."""
    if not 0 < p <= 100 or n < 1:
        raise ValueError("p must be in (0, 100] and n >= 1")
    return max(1, -(-p * n // 100))


def percentile(values: Sequence[float], p: int) -> float | None:
    """The ``p``-th percentile of ``values`` by nearest rank; ``None`` when empty."""
    if not values:
        return None
    return sorted(values)[nearest_rank(p, len(values)) - 1]


# -- the report -----------------------------------------------------------------


def _day(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.strftime("%Y-%m-%d")
    return str(value)[:10]


def _day_expression(dialect: str, column: Any) -> Any:
    """The UTC day of ``column`` as text ``YYYY-MM-DD`` (SQLite stores UTC already)."""
    if dialect == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD")
    return sa.func.date(column)


def _counts() -> dict[str, int]:
    return {"requests": 0, "answered": 0, "fallbacks": 0, "rejected": 0}


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def build_report(
    engine: sa.Engine,
    since: datetime,
    environment: str | None = None,
    now: datetime | None = None,
    *,
    outcome_window: float = 604800,
    experiment_order: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """The decision log from ``since`` to ``now`` (default: the current time) as a dict.

    Keys (DESIGN.md): ``totals`` (``requests``, ``answered``, ``fallbacks``,
    ``rejected``, ``replays``, and ``fallback_share`` = fallbacks / answered),
    ``by_day`` (UTC day -> counts), ``by_product`` (product and locale),
    ``by_locale`` (per ``userLocale``: the counts and ``fallback_share``, and with
    outcomes ``decided``, the outcome counts and ``save_rate``),
    ``by_message`` (message UUID, catalogue name and version when known,
    kind), ``by_kind``, ``fallbacks`` (reason -> count), ``latency_ms``
    (``p50``, ``p95``, ``p99``, ``max``, ``near_limit`` >= :data:`NEAR_LIMIT_MS`,
    and a ``histogram``), ``dropped`` (decisions the log dropped in the window:
    ``total`` and per reason, :data:`DROP_REASONS`; every environment),
    ``subscriber_ids`` (per table, ``decisions`` and ``notifications``: rows of
    the window that store a ``pseudonymised`` or a ``plain`` original
    transaction ID, see :mod:`~flask_retention.insights.privacy`), and
    ``window``. With ``environment``, only requests of that environment count
    (requests rejected before verification have none and are left out).
    Latency covers every request in the window.

    Outcomes (:mod:`~flask_retention.insights.outcomes`, with ``outcome_window``
    seconds): ``outcomes`` (``decided``, ``closed``, ``redeemed_offer``,
    ``switched_plan``, ``cancelled``, ``kept``, ``pending``, ``save_rate``,
    ``events``), ``outcomes_by`` (``kind``, ``selector`` -> the same counts),
    ``experiments`` (name -> variant -> the counts, cancel rate and its 95 %
    interval, the difference from the first variant of ``experiment_order``,
    its p-value and a verdict), and the counts on each ``by_message`` entry.
    """
    if since.tzinfo is None:
        raise ValueError("since must be a timezone-aware datetime")
    until = now or datetime.now(UTC)
    t = metadata.tables["retention_decisions"]
    where = [t.c.created_at >= since, t.c.created_at <= until]
    if environment is not None:
        where.append(t.c.environment == environment)
    answered = t.c.status == 200
    day = _day_expression(engine.dialect.name, t.c.created_at).label("day")
    grouped = (
        sa.select(
            day,
            t.c.product_id,
            t.c.locale,
            t.c.kind,
            t.c.message_uuid,
            t.c.fallback_reason,
            answered.label("answered"),
            t.c.error,
            t.c.replay,
            sa.func.count().label("n"),
        )
        .where(*where)
        .group_by(
            day,
            t.c.product_id,
            t.c.locale,
            t.c.kind,
            t.c.message_uuid,
            t.c.fallback_reason,
            answered,
            t.c.error,
            t.c.replay,
        )
    )
    totals = {**_counts(), "replays": 0}
    by_day: dict[str, dict[str, int]] = defaultdict(_counts)
    by_product: dict[tuple[str | None, str | None], dict[str, int]] = defaultdict(_counts)
    by_locale: dict[str | None, dict[str, int]] = defaultdict(_counts)
    by_message: dict[tuple[str, str], dict[str, int]] = defaultdict(
        lambda: {"requests": 0, "fallbacks": 0}
    )
    by_kind: dict[str, int] = defaultdict(int)
    fallbacks: dict[str, int] = defaultdict(int)
    errors: dict[str, int] = defaultdict(int)
    with engine.connect() as connection:
        rows = connection.execute(grouped).all()
        for row in rows:
            n = int(row.n)
            counts = [
                totals,
                by_day[_day(row.day)],
                by_product[(row.product_id, row.locale)],
                by_locale[row.locale],
            ]
            for c in counts:
                c["requests"] += n
            if row.replay:
                totals["replays"] += n
            if not row.answered:
                for c in counts:
                    c["rejected"] += n
                errors[row.error or "unknown"] += n
                continue
            for c in counts:
                c["answered"] += n
            kind = row.kind or "none"
            by_kind[kind] += n
            if row.fallback_reason is not None:
                for c in counts:
                    c["fallbacks"] += n
                fallbacks[row.fallback_reason] += n
            if row.message_uuid is not None:
                entry = by_message[(str(row.message_uuid), kind)]
                entry["requests"] += n
                if row.fallback_reason is not None:
                    entry["fallbacks"] += n
        names = _message_names(connection, {key for key, _ in by_message})
        latency = _latency(connection, t, where)
        dropped = _dropped(connection, since, until)
        subscriber_ids = subscriber_kinds(connection, since, until, environment)

    totals["fallback_share"] = _share(totals["fallbacks"], totals["answered"])  # type: ignore[assignment]
    messages: list[dict[str, Any]] = [
        {
            "message": key,
            "name": names.get(key, (None, None))[0],
            "version": names.get(key, (None, None))[1],
            "kind": kind,
            **counts,
        }
        for (key, kind), counts in by_message.items()
    ]
    messages.sort(key=lambda m: (-m["requests"], m["message"], m["kind"]))
    products: list[dict[str, Any]] = [
        {"product_id": product, "locale": locale, **counts}
        for (product, locale), counts in by_product.items()
    ]
    products.sort(key=lambda p: (-p["requests"], p["product_id"] or "", p["locale"] or ""))
    locales: list[dict[str, Any]] = [
        {
            "locale": locale,
            **counts,
            "fallback_share": _share(counts["fallbacks"], counts["answered"]),
        }
        for locale, counts in by_locale.items()
    ]
    locales.sort(key=lambda entry: (-entry["requests"], entry["locale"] or ""))
    report: dict[str, Any] = {
        "window": {
            "since": since.astimezone(UTC).isoformat(),
            "until": until.astimezone(UTC).isoformat(),
            "environment": environment,
        },
        "totals": totals,
        "by_day": dict(sorted(by_day.items())),
        "by_product": products,
        "by_locale": locales,
        "by_message": messages,
        "by_kind": dict(sorted(by_kind.items(), key=lambda kv: (-kv[1], kv[0]))),
        "fallbacks": dict(sorted(fallbacks.items(), key=lambda kv: (-kv[1], kv[0]))),
        "rejections": dict(sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))),
        "latency_ms": latency,
        "dropped": dropped,
        "subscriber_ids": subscriber_ids,
    }
    _add_outcomes(report, engine, since, until, environment, outcome_window, experiment_order)
    return report


#: The outcome counts added to each ``by_message`` entry, and the per-message columns.
OUTCOME_FIELDS: Final = ("closed", "cancelled", "redeemed_offer", "switched_plan", "kept")


def _add_outcomes(
    report: dict[str, Any],
    engine: sa.Engine,
    since: datetime,
    until: datetime,
    environment: str | None,
    window: float,
    experiment_order: Mapping[str, Sequence[str]] | None,
) -> None:
    from flask_retention.insights.outcomes import DecisionRow, outcome_report

    def message_key(row: DecisionRow) -> str:
        if row.message_uuid is None:
            return ""
        return f"{row.message_uuid}|{row.kind or 'none'}"

    locale_of = _answered_locales(engine, since, until, environment)

    outcomes = outcome_report(
        engine,
        since,
        environment=environment,
        now=until,
        window=window,
        experiment_order=experiment_order,
        groups={
            "kind": lambda row: row.kind or "none",
            "selector": lambda row: row.selector or "none",
            "message": message_key,
            "locale": lambda row: locale_of.get(row.record.id) or "",
        },
    ).as_dict()
    per_message = outcomes["outcomes_by"].pop("message")
    per_locale = outcomes["outcomes_by"].pop("locale")
    empty = {"decided": 0, **dict.fromkeys(OUTCOME_FIELDS, 0), "pending": 0, "save_rate": None}
    for entry in report["by_message"]:
        counts = per_message.get(f"{entry['message']}|{entry['kind']}", empty)
        entry.update({key: counts[key] for key in (*OUTCOME_FIELDS, "pending", "save_rate")})
    for entry in report["by_locale"]:
        counts = per_locale.get(entry["locale"] or "", empty)
        entry.update(
            {key: counts[key] for key in ("decided", *OUTCOME_FIELDS, "pending", "save_rate")}
        )
    report["outcomes"] = outcomes["outcomes"]
    report["outcomes_by"] = outcomes["outcomes_by"]
    report["experiments"] = outcomes["experiments"]


def _answered_locales(
    engine: sa.Engine, since: datetime, until: datetime, environment: str | None
) -> dict[int, str | None]:
    """The ``userLocale`` of each answered decision of the window, by decision ID."""
    t = metadata.tables["retention_decisions"]
    where = [t.c.status == 200, t.c.created_at >= since, t.c.created_at <= until]
    if environment is not None:
        where.append(t.c.environment == environment)
    with engine.connect() as connection:
        return {
            row.id: row.locale
            for row in connection.execute(sa.select(t.c.id, t.c.locale).where(*where))
        }


def _message_names(connection: sa.Connection, keys: Iterable[str]) -> dict[str, tuple[str, int]]:
    """Catalogue name and version of each message UUID the catalogue knows."""
    import uuid

    wanted = [uuid.UUID(k) for k in keys]
    found: dict[str, tuple[str, int]] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        for key, name, version in connection.execute(
            sa.select(Message.uuid, Message.name, Message.version).where(Message.uuid.in_(chunk))
        ):
            found[str(key)] = (name, version)
    return found


def _dropped(connection: sa.Connection, since: datetime, until: datetime) -> dict[str, int]:
    """Decisions dropped from ``since`` to ``until``: ``total`` and per reason."""
    d = metadata.tables["retention_dropped_decisions"]
    counts = dict.fromkeys(DROP_REASONS, 0)
    for reason, n in connection.execute(
        sa.select(d.c.reason, sa.func.sum(d.c.count))
        .where(d.c.dropped_at >= since, d.c.dropped_at <= until)
        .group_by(d.c.reason)
    ):
        counts[reason] = counts.get(reason, 0) + int(n or 0)
    return {"total": sum(counts.values()), **counts}


def _dropped_row(report: dict[str, Any]) -> list[tuple[str, int]]:
    """The totals' row of dropped decisions (none when nothing was dropped)."""
    dropped = report.get("dropped") or {"total": 0}
    if not dropped["total"]:
        return []
    reasons = ", ".join(
        f"{reason.replace('_', ' ')} {n}" for reason, n in dropped.items() if reason != "total"
    )
    return [(f"{DROPPED_LABEL}: {reasons}", dropped["total"])]


def _latency(connection: sa.Connection, t: sa.Table, where: list[Any]) -> dict[str, Any]:
    """Nearest-rank percentiles, maximum, near-limit count and histogram of ``latency_ms``."""
    measured = [*where, t.c.latency_ms.is_not(None)]
    n, maximum, near = connection.execute(
        sa.select(
            sa.func.count(),
            sa.func.max(t.c.latency_ms),
            sa.func.count().filter(t.c.latency_ms >= NEAR_LIMIT_MS),
        ).where(*measured)
    ).one()
    result: dict[str, Any] = {f"p{p}": None for p in PERCENTILES}
    for p in PERCENTILES if n else ():
        result[f"p{p}"] = connection.execute(
            sa.select(t.c.latency_ms)
            .where(*measured)
            .order_by(t.c.latency_ms)
            .limit(1)
            .offset(nearest_rank(p, n) - 1)
        ).scalar_one()
    result["max"] = maximum
    result["near_limit"] = int(near or 0)
    result["near_limit_ms"] = NEAR_LIMIT_MS
    result["count"] = int(n)
    bucket = sa.case(
        *((t.c.latency_ms < bound, i) for i, bound in enumerate(LATENCY_BUCKETS_MS)),
        else_=len(LATENCY_BUCKETS_MS),
    ).label("bucket")
    counts: dict[Any, Any] = dict(
        connection.execute(
            sa.select(bucket, sa.func.count()).where(*measured).group_by(bucket)
        ).all()
    )
    edges = (0.0, *LATENCY_BUCKETS_MS)
    result["histogram"] = [
        {
            "from": edges[i],
            "to": LATENCY_BUCKETS_MS[i] if i < len(LATENCY_BUCKETS_MS) else None,
            "count": int(counts.get(i, 0)),
        }
        for i in range(len(LATENCY_BUCKETS_MS) + 1)
    ]
    return result


# -- renderers ------------------------------------------------------------------


def render_json(report: dict[str, Any]) -> str:
    """The report as indented JSON (the ``--json`` output)."""
    return json.dumps(report, indent=2)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f} %"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric_from: int = 1) -> str:
    """An aligned plain-text table: text columns left, columns from ``numeric_from`` right."""
    cells = [list(headers)] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        parts = [
            c.rjust(widths[i]) if i >= numeric_from else c.ljust(widths[i]) for i, c in enumerate(r)
        ]
        lines.append("  " + "  ".join(parts).rstrip())
    lines.insert(1, "  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _window_line(report: dict[str, Any]) -> str:
    window = report["window"]
    since = datetime.fromisoformat(window["since"]).strftime("%Y-%m-%d %H:%M")
    until = datetime.fromisoformat(window["until"]).strftime("%Y-%m-%d %H:%M")
    env = window["environment"] or "all environments"
    return f"Decisions from {since} to {until} UTC ({env})"


def _product_rows(
    report: dict[str, Any],
) -> tuple[tuple[str, ...], list[Sequence[Any]]]:
    """The per-product-and-locale table's headers and rows, for text and HTML."""
    keys = ("product_id", "locale", "requests", "answered", "fallbacks", "rejected")
    headers = ("product", "locale", "requests", "answered", "fallbacks", "rejected")
    return headers, [tuple(p[k] for k in keys) for p in report["by_product"]]


def _locale_rows(
    report: dict[str, Any],
) -> tuple[tuple[str, ...], list[Sequence[Any]]]:
    """The per-locale table's headers and rows (save rates when there are outcomes)."""
    outcomes = report.get("outcomes")
    with_outcomes = bool(outcomes and outcomes["decided"])
    headers: tuple[str, ...] = ("locale", "requests", "answered", "fallbacks", "fallback share")
    if with_outcomes:
        headers += ("closed", "cancelled", "save rate")
    rows: list[Sequence[Any]] = []
    for entry in report.get("by_locale", []):
        cells: tuple[Any, ...] = (
            entry["locale"],
            entry["requests"],
            entry["answered"],
            entry["fallbacks"],
            _pct(entry["fallback_share"]),
        )
        if with_outcomes:
            cells += (entry["closed"], entry["cancelled"], _pct(entry["save_rate"]))
        rows.append(cells)
    return headers, rows


def render_text(report: dict[str, Any]) -> str:
    """The report as aligned tables for a terminal."""
    totals = report["totals"]
    out = [_window_line(report), ""]
    out.append("Totals")
    out.append(
        table(
            ("", "count"),
            [
                ("requests", totals["requests"]),
                ("answered", totals["answered"]),
                (f"fallbacks ({_pct(totals['fallback_share'])} of answered)", totals["fallbacks"]),
                ("rejected", totals["rejected"]),
                (REPLAYS_LABEL, totals["replays"]),
                *_dropped_row(report),
            ],
        )
    )
    if not totals["requests"]:
        out += ["", "No decisions in this window."]
        return "\n".join(out) + "\n"
    sections: list[tuple[str, Sequence[str], list[Sequence[Any]], int]] = [
        (
            "Per day (UTC)",
            ("day", "requests", "answered", "fallbacks", "rejected"),
            [
                (d, c["requests"], c["answered"], c["fallbacks"], c["rejected"])
                for d, c in report["by_day"].items()
            ],
            1,
        ),
        (
            "Per product and locale",
            *_product_rows(report),
            2,
        ),
        ("Per locale", *_locale_rows(report), 1),
        (
            "Per message",
            ("message", "name", "kind", "requests", "fallbacks"),
            [
                (
                    m["message"],
                    m["name"] if m["version"] is None else f"{m['name']} v{m['version']}",
                    m["kind"],
                    m["requests"],
                    m["fallbacks"],
                )
                for m in report["by_message"]
            ],
            3,
        ),
        ("Answers by kind", ("kind", "requests"), list(report["by_kind"].items()), 1),
        ("Fallback reasons", ("reason", "requests"), list(report["fallbacks"].items()), 1),
        ("Rejections", ("error", "requests"), _rejection_rows(report), 1),
    ]
    for title, headers, rows, numeric_from in sections:
        if rows:
            out += ["", title, table(headers, rows, numeric_from)]
    lat = report["latency_ms"]
    out += [
        "",
        f"Latency (ms, nearest rank; near limit = at or over {lat['near_limit_ms']:.0f} ms, "
        f"Apple's limit is {APPLE_LIMIT_MS:.0f} ms)",
        table(
            ("p50", "p95", "p99", "max", "near limit"),
            [(lat["p50"], lat["p95"], lat["p99"], lat["max"], lat["near_limit"])],
            0,
        ),
    ]
    for title, headers, rows, numeric_from in _outcome_tables(report):
        out += ["", title, table(headers, rows, numeric_from)]
    kinds = _subscriber_rows(report)
    if kinds is not None:
        rows, note = kinds
        out += ["", SUBSCRIBER_IDS_TITLE, table(("rows", "pseudonymised", "plain"), rows)]
        if note:
            out.append(f"  {note}")
    return "\n".join(out) + "\n"


def _subscriber_rows(report: dict[str, Any]) -> tuple[list[Sequence[Any]], str] | None:
    """The rows of the ``subscriber_ids`` table and a note when both kinds are present;
    ``None`` when no row of the window stores an ID."""
    kinds = report.get("subscriber_ids")
    if not kinds or not any(sum(c.values()) for c in kinds.values()):
        return None
    rows: list[Sequence[Any]] = [
        (name, counts["pseudonymised"], counts["plain"]) for name, counts in kinds.items()
    ]
    mixed = sum(c["pseudonymised"] for c in kinds.values()) and sum(
        c["plain"] for c in kinds.values()
    )
    note = (
        "Both kinds in this window: a decision and a notification are joined into an outcome "
        "only when both store the same kind (and the same key)."
        if mixed
        else ""
    )
    return rows, note


_OUTCOME_HEADERS: Final = ("shown", "closed", "cancelled", "redeemed", "switched", "kept")


def _outcome_cells(counts: dict[str, Any], shown: int) -> tuple[Any, ...]:
    return (
        shown,
        counts["closed"],
        counts["cancelled"],
        counts["redeemed_offer"],
        counts["switched_plan"],
        counts["kept"],
        _pct(counts["save_rate"]),
    )


def _interval(bounds: list[float] | None) -> str:
    return "-" if bounds is None else f"{bounds[0] * 100:.1f}-{bounds[1] * 100:.1f} %"


def _outcome_tables(report: dict[str, Any]) -> list[tuple[str, Sequence[str], list[Any], int]]:
    """The outcome and experiment tables: ``(title, headers, rows, numeric_from)`` each."""
    outcomes = report.get("outcomes")
    if outcomes is None or not outcomes["decided"]:
        return []
    note = (
        plural(outcomes["events"], "outcome notification")
        if outcomes["events"]
        else "no App Store Server Notifications stored: set RETENTION_NOTIFICATIONS_ENDPOINT, "
        "or every closed decision counts as kept"
    )
    tables: list[tuple[str, Sequence[str], list[Any], int]] = [
        (
            f"Outcomes (save rate over closed decisions; {note})",
            ("", *_OUTCOME_HEADERS, "pending", "save rate"),
            [
                (
                    "all",
                    *_outcome_cells(outcomes, outcomes["decided"])[:-1],
                    outcomes["pending"],
                    _pct(outcomes["save_rate"]),
                )
            ],
            1,
        ),
        (
            "Outcomes per message",
            ("message", "name", "kind", *_OUTCOME_HEADERS, "save rate"),
            [
                (m["message"], m["name"], m["kind"], *_outcome_cells(m, m["requests"]))
                for m in report["by_message"]
            ],
            3,
        ),
    ]
    for group, label in (("kind", "kind"), ("selector", "selector")):
        tables.append(
            (
                f"Outcomes per {label}",
                (label, *_OUTCOME_HEADERS, "save rate"),
                [
                    (key, *_outcome_cells(counts, counts["decided"]))
                    for key, counts in report["outcomes_by"][group].items()
                ],
                1,
            )
        )
    for name, variants in report["experiments"].items():
        tables.append(
            (
                f"Experiment {name} (cancel rate = cancelled / closed, 95 % Wilson interval; "
                "difference from the first variant, two-proportion z-test)",
                (
                    "variant",
                    "closed",
                    "cancelled",
                    "cancel rate",
                    "95 % interval",
                    "difference",
                    "p-value",
                    "verdict",
                ),
                [
                    (
                        variant,
                        v["closed"],
                        v["cancelled"],
                        _pct(v["cancel_rate"]),
                        _interval(v["cancel_rate_ci95"]),
                        "-" if v["difference"] is None else f"{v['difference'] * 100:+.1f} pts",
                        "-" if v["p_value"] is None else f"{v['p_value']:.3g}",
                        v["verdict"],
                    )
                    for variant, v in variants.items()
                ],
                1,
            )
        )
    return tables


# -- HTML -----------------------------------------------------------------------

_CSS: Final = """
body{font:14px/1.45 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#1d1d1f;
margin:2em auto;max-width:980px;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:2em}
.sub{color:#6e6e73}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:1em 0}
.card{border:1px solid #d2d2d7;border-radius:8px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:1.5em}
table{border-collapse:collapse;margin:.5em 0}
th,td{padding:3px 10px;border-bottom:1px solid #e5e5ea;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
svg text{font-size:11px;fill:#1d1d1f}
.legend span{display:inline-block;margin-right:14px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
"""

_COLOURS: Final = {"answered": "#34c759", "fallbacks": "#ff9f0a", "rejected": "#ff3b30"}


def _e(value: Any) -> str:
    return html.escape(_fmt(value))


def _html_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric_from: int) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{_e(v)}</td>' if i >= numeric_from else f"<td>{_e(v)}</td>"
            for i, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _svg_days(by_day: dict[str, dict[str, int]]) -> str:
    """Stacked bars per day: answered by the selector, fallbacks, rejected."""
    days = list(by_day.items())
    width, height, left, bottom = 900, 240, 44, 40
    peak = max((c["requests"] for _, c in days), default=0) or 1
    slot = (width - left) / max(len(days), 1)
    bar = max(min(slot * 0.7, 60), 2)
    parts = [
        f'<svg role="img" aria-label="Requests per day" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width}" y2="{height - bottom}" '
        'stroke="#8e8e93"/>',
        f'<text x="{left - 6}" y="14" text-anchor="end">{peak}</text>',
        f'<text x="{left - 6}" y="{height - bottom}" text-anchor="end">0</text>',
    ]
    scale = (height - bottom - 10) / peak
    for i, (day, c) in enumerate(days):
        x = left + i * slot + (slot - bar) / 2
        y = float(height - bottom)
        by_selector = c["answered"] - c["fallbacks"]
        segments = (
            ("answered", by_selector, f"{by_selector} answered by the selector"),
            ("fallbacks", c["fallbacks"], plural(c["fallbacks"], "fallback")),
            ("rejected", c["rejected"], f"{c['rejected']} rejected"),
        )
        for name, value, label in segments:
            h = value * scale
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{_COLOURS[name]}"><title>{html.escape(day)}: {label}</title></rect>'
            )
        if len(days) <= 16 or i % max(len(days) // 16, 1) == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - bottom + 14}" '
                f'text-anchor="middle">{html.escape(day[5:])}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _svg_hbars(items: list[tuple[str, int]], colour: str, label: str) -> str:
    """Horizontal bars with a label and count each."""
    row, left, width = 22, 190, 900
    height = row * max(len(items), 1) + 6
    peak = max((v for _, v in items), default=0) or 1
    parts = [
        f'<svg role="img" aria-label="{html.escape(label)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">'
    ]
    for i, (name, value) in enumerate(items):
        y = i * row + 3
        w = (width - left - 60) * value / peak
        parts.append(
            f'<text x="{left - 8}" y="{y + 14}" text-anchor="end">{html.escape(name)}</text>'
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{row - 6}" fill="{colour}"/>'
            f'<text x="{left + w + 6:.1f}" y="{y + 14}">{value}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _bucket_label(bucket: dict[str, Any]) -> str:
    if bucket["to"] is None:
        return f">= {bucket['from']:.0f} ms"
    return f"{bucket['from']:.0f}-{bucket['to']:.0f} ms"


def render_html(report: dict[str, Any], *, coverage: dict[str, Any] | None = None) -> str:
    """One self-contained HTML page: inline CSS and SVG charts, no network assets, no script.

    ``coverage`` (:func:`~flask_retention.insights.coverage.build_coverage`) adds its
    section: the defaults per product and locale, and how each locale was answered.
    """
    totals = report["totals"]
    lat = report["latency_ms"]
    cards = [
        ("requests", totals["requests"]),
        ("answered", totals["answered"]),
        ("fallbacks", f"{totals['fallbacks']} ({_pct(totals['fallback_share'])})"),
        ("rejected", totals["rejected"]),
        (REPLAYS_LABEL, totals["replays"]),
        *_dropped_row(report),
        ("p99 latency", "-" if lat["p99"] is None else f"{lat['p99']:.1f} ms"),
        (f"at or over {lat['near_limit_ms']:.0f} ms", lat["near_limit"]),
    ]
    legend = "".join(
        f'<span><i style="background:{colour}"></i>{name}</span>'
        for name, colour in (
            ("answered by the selector", _COLOURS["answered"]),
            ("fallback", _COLOURS["fallbacks"]),
            ("rejected", _COLOURS["rejected"]),
        )
    )
    histogram = [(_bucket_label(b), b["count"]) for b in lat["histogram"]]
    body = [
        "<h1>Retention messaging decisions</h1>",
        f'<p class="sub">{html.escape(_window_line(report))}</p>',
        '<div class="cards">'
        + "".join(f'<div class="card"><b>{_e(v)}</b>{html.escape(k)}</div>' for k, v in cards)
        + "</div>",
        "<h2>Requests per day (UTC)</h2>",
        f'<div class="legend">{legend}</div>',
        _svg_days(report["by_day"]),
        "<h2>Fallback reasons</h2>",
        _svg_hbars(list(report["fallbacks"].items()), _COLOURS["fallbacks"], "Fallback reasons")
        if report["fallbacks"]
        else "<p>No fallbacks.</p>",
        "<h2>Latency distribution</h2>",
        f'<p class="sub">Nearest-rank percentiles: p50 {_e(lat["p50"])} ms, p95 '
        f"{_e(lat['p95'])} ms, p99 {_e(lat['p99'])} ms, max {_e(lat['max'])} ms. "
        f"Apple's limit is {APPLE_LIMIT_MS:.0f} ms.</p>",
        _svg_hbars(histogram, "#0a84ff", "Latency distribution"),
        "<h2>Per product and locale</h2>",
        _html_table(
            *_product_rows(report),
            2,
        ),
        "<h2>Per locale</h2>",
        _html_table(*_locale_rows(report), 1),
        "<h2>Per message</h2>",
        _html_table(
            ("message", "name", "version", "kind", "requests", "fallbacks"),
            [
                (m["message"], m["name"], m["version"], m["kind"], m["requests"], m["fallbacks"])
                for m in report["by_message"]
            ],
            4,
        ),
        "<h2>Answers by kind</h2>",
        _html_table(("kind", "requests"), list(report["by_kind"].items()), 1),
        "<h2>Rejections</h2>",
        _html_table(("error", "requests"), _rejection_rows(report), 1),
    ]
    for title, headers, rows, numeric_from in _outcome_tables(report):
        body += [f"<h2>{html.escape(title)}</h2>", _html_table(headers, rows, numeric_from)]
    if coverage is not None:
        body.append(coverage_html(coverage))
    kinds = _subscriber_rows(report)
    if kinds is not None:
        body += [
            f"<h2>{html.escape(SUBSCRIBER_IDS_TITLE)}</h2>",
            _html_table(("rows", "pseudonymised", "plain"), kinds[0], 1),
        ]
        if kinds[1]:
            body.append(f'<p class="sub">{html.escape(kinds[1])}</p>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Retention messaging decisions</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )
