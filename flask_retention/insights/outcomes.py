"""Did it retain? Join App Store Server Notifications to the decision log.

The rule (``docs/outcomes.md``): each stored notification event is
attributed to the latest decision for its original transaction ID (and
environment) made at or before the event's ``signedDate``, when the event
falls within ``RETENTION_OUTCOME_WINDOW`` of that decision. A decision's
outcome, by precedence:

1. ``redeemed_offer``: an ``OFFER_REDEEMED`` was attributed to it;
2. ``switched_plan``: a ``DID_CHANGE_RENEWAL_PREF`` (``UPGRADE``/``DOWNGRADE``);
3. ``cancelled``: an ``EXPIRED``/``VOLUNTARY``, or an ``AUTO_RENEW_DISABLED``
   not followed (within the window) by an ``AUTO_RENEW_ENABLED``;
4. ``kept`` once the decision is closed with none of those, else ``pending``.

A decision is closed when its window has passed or a later decision for the
same subscriber supersedes it. Save rate = (closed − cancelled among
closed) / closed. Everything is computed in Python over plain rows
(:func:`decide_outcomes` is pure), so SQLite and PostgreSQL give the same
figures.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import sqlalchemy as sa

Outcome = Literal["redeemed_offer", "switched_plan", "cancelled", "kept", "pending"]
Effect = Literal["redeemed_offer", "switched_plan", "cancelled", "expired", "re_enabled"]

#: Outcomes in precedence order, then the two without an event.
OUTCOMES: Final[tuple[Outcome, ...]] = (
    "redeemed_offer",
    "switched_plan",
    "cancelled",
    "kept",
    "pending",
)

#: Closed decisions each variant needs before the report compares cancel rates.
MIN_CLOSED_PER_VARIANT: Final = 30

#: Two-sided significance level of the report's verdicts.
ALPHA: Final = 0.05

_Z95: Final = 1.959963984540054


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """What outcome attribution needs of one answered decision."""

    id: int
    original_transaction_id: str
    created_at: datetime
    environment: str | None = None


@dataclass(frozen=True, slots=True)
class OutcomeEvent:
    """What outcome attribution needs of one stored notification."""

    notification_type: str
    subtype: str | None
    original_transaction_id: str
    signed_date: datetime
    environment: str | None = None


def event_effect(notification_type: str, subtype: str | None) -> Effect | None:
    """What a notification says about a retention decision, or ``None`` (not an outcome)."""
    if notification_type == "OFFER_REDEEMED":
        return "redeemed_offer"
    if notification_type == "DID_CHANGE_RENEWAL_PREF" and subtype in ("UPGRADE", "DOWNGRADE"):
        return "switched_plan"  # no subtype: a pending downgrade was undone, not a switch
    if notification_type == "DID_CHANGE_RENEWAL_STATUS":
        if subtype == "AUTO_RENEW_DISABLED":
            return "cancelled"
        if subtype == "AUTO_RENEW_ENABLED":
            return "re_enabled"
    if notification_type == "EXPIRED" and subtype == "VOLUNTARY":
        return "expired"
    return None


def _outcome(effects: Sequence[Effect], closed: bool) -> Outcome:
    """The outcome of one decision from its attributed effects, in time order."""
    if "redeemed_offer" in effects:
        return "redeemed_offer"
    if "switched_plan" in effects:
        return "switched_plan"
    if "expired" in effects:
        return "cancelled"
    renewal = [e for e in effects if e in ("cancelled", "re_enabled")]
    if renewal and renewal[-1] == "cancelled":
        return "cancelled"
    return "kept" if closed else "pending"


@dataclass(frozen=True, slots=True)
class DecisionOutcome:
    """A decision's outcome, and whether it is final (the decision is closed)."""

    outcome: Outcome
    closed: bool


def decide_outcomes(
    decisions: Iterable[DecisionRecord],
    events: Iterable[OutcomeEvent],
    *,
    window: timedelta,
    now: datetime,
) -> dict[int, DecisionOutcome]:
    """Each decision's outcome by the rule of this module (pure: no database, no clock)."""
    timelines: dict[tuple[str | None, str], list[DecisionRecord]] = defaultdict(list)
    for d in decisions:
        timelines[(d.environment, d.original_transaction_id)].append(d)
    for timeline in timelines.values():
        timeline.sort(key=lambda d: (d.created_at, d.id))
    starts = {key: [d.created_at for d in timeline] for key, timeline in timelines.items()}

    attributed: dict[int, list[tuple[datetime, Effect]]] = defaultdict(list)
    for event in events:
        effect = event_effect(event.notification_type, event.subtype)
        key = (event.environment, event.original_transaction_id)
        if effect is None or key not in timelines:
            continue
        at = bisect.bisect_right(starts[key], event.signed_date) - 1
        if at < 0:
            continue  # before any decision of this subscriber
        decision = timelines[key][at]
        if event.signed_date - decision.created_at < window:
            attributed[decision.id].append((event.signed_date, effect))

    result: dict[int, DecisionOutcome] = {}
    for timeline in timelines.values():
        for i, d in enumerate(timeline):
            closed = now >= d.created_at + window or i + 1 < len(timeline)
            effects = [effect for _, effect in sorted(attributed.get(d.id, []))]
            result[d.id] = DecisionOutcome(_outcome(effects, closed), closed)
    return result


@dataclass(slots=True)
class OutcomeCounts:
    """Outcome counts of a group of decisions, with its save rate."""

    decided: int = 0
    closed: int = 0
    closed_cancelled: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))

    def add(self, result: DecisionOutcome) -> None:
        """Count one decision."""
        self.decided += 1
        self.counts[result.outcome] += 1
        if result.closed:
            self.closed += 1
            if result.outcome == "cancelled":
                self.closed_cancelled += 1

    @property
    def save_rate(self) -> float | None:
        """(closed − cancelled) / closed; ``None`` before any decision is closed."""
        if not self.closed:
            return None
        return (self.closed - self.closed_cancelled) / self.closed

    @property
    def cancel_rate(self) -> float | None:
        """Cancelled / closed; ``None`` before any decision is closed."""
        return None if not self.closed else self.closed_cancelled / self.closed

    def as_dict(self) -> dict[str, Any]:
        """The report's JSON shape."""
        return {
            "decided": self.decided,
            "closed": self.closed,
            **self.counts,
            "save_rate": _round(self.save_rate),
        }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


# -- statistics ----------------------------------------------------------------------


def wilson_interval(successes: int, n: int, z: float = _Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95 % by default); ``None`` when ``n`` is 0."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_test(k1: int, n1: int, k0: int, n0: int) -> tuple[float, float] | None:
    """``(p1 − p0, two-sided p-value)`` of the pooled two-proportion z-test; ``None`` when a
    group is empty. Identical all-or-nothing groups give a p-value of 1."""
    if n1 <= 0 or n0 <= 0:
        return None
    p1, p0 = k1 / n1, k0 / n0
    pooled = (k1 + k0) / (n1 + n0)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    if se == 0:
        return p1 - p0, 1.0
    z = (p1 - p0) / se
    return p1 - p0, math.erfc(abs(z) / math.sqrt(2))


def compare_variants(
    counts: Mapping[str, OutcomeCounts], order: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Each variant's counts, cancel rate with its 95 % interval, and its difference from the
    first variant of ``order`` with a p-value and a plain verdict."""
    baseline = order[0]
    base = counts[baseline]
    result: dict[str, dict[str, Any]] = {}
    for variant in order:
        c = counts[variant]
        interval = wilson_interval(c.closed_cancelled, c.closed)
        entry = c.as_dict()
        entry.update(
            cancel_rate=_round(c.cancel_rate),
            cancel_rate_ci95=None if interval is None else [_round(x) for x in interval],
            baseline=variant == baseline,
            difference=None,
            p_value=None,
        )
        if variant == baseline:
            entry["verdict"] = "baseline"
        elif min(c.closed, base.closed) < MIN_CLOSED_PER_VARIANT:
            entry["verdict"] = (
                f"too few decisions to tell: {c.closed} and {base.closed} closed, at least "
                f"{MIN_CLOSED_PER_VARIANT} each are needed"
            )
        else:
            test = two_proportion_test(
                c.closed_cancelled, c.closed, base.closed_cancelled, base.closed
            )
            assert test is not None
            difference, p_value = test
            entry.update(difference=_round(difference), p_value=_round(p_value, 6))
            if p_value < ALPHA:
                direction = "less" if difference < 0 else "more"
                entry["verdict"] = f"cancels {direction} than {baseline} (p = {p_value:.3g})"
            else:
                entry["verdict"] = f"no clear difference from {baseline} (p = {p_value:.3g})"
        result[variant] = entry
    return result


# -- from the database -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """An answered decision with what the report groups it by."""

    record: DecisionRecord
    kind: str | None
    message_uuid: Any
    selector: str | None
    experiment: str | None
    variant: str | None


def load_decisions(
    connection: sa.Connection, since: datetime, until: datetime, environment: str | None
) -> list[DecisionRow]:
    """Answered (``200``) decisions about a subscriber made in ``[since, until]``."""
    from flask_retention.catalogue.models import Decision

    query = sa.select(
        Decision.id,
        Decision.original_transaction_id,
        Decision.created_at,
        Decision.environment,
        Decision.kind,
        Decision.message_uuid,
        Decision.selector,
        Decision.experiment,
        Decision.variant,
    ).where(
        Decision.status == 200,
        Decision.replay.is_(False),  # another process answered it too; counted once
        Decision.original_transaction_id.is_not(None),
        Decision.created_at >= since,
        Decision.created_at <= until,
    )
    if environment is not None:
        query = query.where(Decision.environment == environment)
    return [
        DecisionRow(
            DecisionRecord(r.id, r.original_transaction_id, r.created_at, r.environment),
            r.kind,
            r.message_uuid,
            r.selector,
            r.experiment,
            r.variant,
        )
        for r in connection.execute(query)
    ]


def load_events(
    connection: sa.Connection, since: datetime, until: datetime, environment: str | None
) -> list[OutcomeEvent]:
    """Stored outcome events signed in ``[since, until]``."""
    from flask_retention.catalogue.models import Notification

    query = sa.select(
        Notification.notification_type,
        Notification.subtype,
        Notification.original_transaction_id,
        Notification.signed_date,
        Notification.environment,
    ).where(
        Notification.original_transaction_id.is_not(None),
        Notification.signed_date >= since,
        Notification.signed_date <= until,
    )
    if environment is not None:
        query = query.where(Notification.environment == environment)
    return [
        OutcomeEvent(
            r.notification_type, r.subtype, r.original_transaction_id, r.signed_date, r.environment
        )
        for r in connection.execute(query)
    ]


@dataclass
class OutcomeReport:
    """Outcomes of the decisions of a period: overall, per group and per experiment."""

    total: OutcomeCounts
    groups: dict[str, dict[str, OutcomeCounts]]
    experiments: dict[str, dict[str, Any]]
    events: int = 0
    """Stored notifications of the period that are outcome events (attributed or not)."""

    def as_dict(self) -> dict[str, Any]:
        """``outcomes`` (with ``events``), ``experiments`` and ``outcomes_by`` (one mapping
        per group)."""
        return {
            "outcomes": {**self.total.as_dict(), "events": self.events},
            "experiments": self.experiments,
            "outcomes_by": {
                group: {key: counts.as_dict() for key, counts in sorted(values.items())}
                for group, values in self.groups.items()
            },
        }


GroupKey = Callable[[DecisionRow], str]

DEFAULT_GROUPS: Final[Mapping[str, GroupKey]] = {
    "kind": lambda row: row.kind or "none",
    "message": lambda row: str(row.message_uuid) if row.message_uuid is not None else "none",
    "selector": lambda row: row.selector or "none",
}


def outcome_report(
    engine: sa.Engine,
    since: datetime,
    *,
    environment: str | None = None,
    now: datetime | None = None,
    window: float | timedelta = 604800,
    experiment_order: Mapping[str, Sequence[str]] | None = None,
    groups: Mapping[str, GroupKey] = DEFAULT_GROUPS,
) -> OutcomeReport:
    """The outcomes of the decisions made since ``since`` (up to ``now``).

    ``experiment_order`` gives each experiment's variants in their declared
    order (the first is the baseline); unknown experiments list variants
    alphabetically. ``groups`` names the breakdowns (``kind``, ``message``,
    ``selector`` by default).
    """
    now = now or datetime.now(UTC)
    span = window if isinstance(window, timedelta) else timedelta(seconds=window)
    with engine.connect() as connection:
        rows = load_decisions(connection, since, now, environment)
        events = load_events(connection, since, now, environment)
    results = decide_outcomes((r.record for r in rows), events, window=span, now=now)

    total = OutcomeCounts()
    by: dict[str, dict[str, OutcomeCounts]] = {name: defaultdict(OutcomeCounts) for name in groups}
    variants: dict[str, dict[str, OutcomeCounts]] = defaultdict(lambda: defaultdict(OutcomeCounts))
    for row in rows:
        result = results[row.record.id]
        total.add(result)
        for name, key in groups.items():
            by[name][key(row)].add(result)
        if row.experiment is not None and row.variant is not None:
            variants[row.experiment][row.variant].add(result)

    experiments: dict[str, dict[str, Any]] = {}
    declared = experiment_order or {}
    for name in sorted(variants):
        seen = variants[name]
        order = list(declared.get(name, ()))  # declared variants count even when unseen
        order += sorted(v for v in seen if v not in order)
        experiments[name] = compare_variants(seen, order)
    useful = sum(1 for e in events if event_effect(e.notification_type, e.subtype) is not None)
    return OutcomeReport(
        total, {name: dict(values) for name, values in by.items()}, experiments, useful
    )
