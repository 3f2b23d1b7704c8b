"""Coverage: where subscribers see a retention message in their own language, in
another one, or none at all, before and after requests arrive.

:func:`build_coverage` returns a plain dictionary (the ``coverage --json``
object); :func:`render_coverage_text` and :func:`coverage_html` present it
(the latter is the coverage section of ``report --html``).

It has two parts. **Slots**: every (product, locale) default the catalogue's
defaults make (expanded as sync expands them,
:meth:`~flask_retention.catalogue.store.Catalogue.expand_defaults`, with a
text usable when Apple approved it and its images in the environment, as
last recorded), the defaults Apple holds there, and the pairs requests came
from without a default. **Locales**: per ``userLocale`` the decision log saw,
how the answered requests were answered: in that locale, in another one
(``answered_locale``), with the fallback, with no message, or unknown (rows
logged before ``answered_locale`` was recorded).
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import sqlalchemy as sa

from flask_retention.catalogue.models import metadata
from flask_retention.catalogue.store import Catalogue, DefaultSlot, StoredMessage, text_label

__all__ = [
    "APPROVED",
    "SLOT_STATUSES",
    "build_coverage",
    "coverage_html",
    "locale_line",
    "render_coverage_text",
]

#: Apple's review state of a message or image that may be shown.
APPROVED: Final = "APPROVED"

#: A slot's ``status``, and what it means. Only ``ok`` is not a gap.
SLOT_STATUSES: Final = {
    "ok": "Apple holds the default the fallback chain picks, approved",
    "sync": "the text the chain picks is approved but Apple does not hold it: run sync",
    "waiting": "the chain can serve the locale, but no text of it is approved yet",
    "unserved": "no translation / no default: the chain cannot serve the locale",
    "no_default": "requests came from it, and the catalogue sets no default there",
    "not_in_catalogue": "Apple holds a default the catalogue does not set: sync deletes it",
}

#: The per-locale counts of answered requests, each with the key of its share.
ANSWER_COUNTS: Final = {
    "exact": "exact_share",
    "other": "other_share",
    "fallbacks": "fallback_share",
    "no_message": "no_message_share",
    "unknown": "unknown_share",
}


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f} %"


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, with an ``s`` unless ``count`` is 1: "1 fallback", "2 fallbacks"."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _images(message: StoredMessage) -> list[UUID]:
    found = [b.image_uuid for b in message.bullet_points]
    if message.image_uuid is not None:
        found.append(message.image_uuid)
    return found


def _state_text(state: str | None) -> str:
    return "not uploaded yet" if state is None else state


# -- building -------------------------------------------------------------------


def build_coverage(
    catalogue: Catalogue,
    engine: sa.Engine,
    environment: str,
    *,
    since: datetime | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Coverage in ``environment`` as a dictionary; reads only, never calls Apple.

    Keys: ``environment``; ``languages`` (``base_locale``, ``base_fallback``);
    ``window`` (``since``, ``None`` for the whole log, and ``until``, ISO
    8601 UTC) of the requests counted; ``slots`` (one per (product, locale),
    see :data:`SLOT_STATUSES` for ``status``); ``locales`` (one per locale
    seen in answered requests of ``environment`` in the window, most requests
    first); and ``summary`` (slot counts per status, ``in_review`` and
    ``missing_translation`` counts, ``gaps``: slots not ``ok``).

    A text is usable when Apple approved it and every image it shows in
    ``environment``, as the last sync recorded: the notion sync configures
    defaults with.
    """
    until = now or datetime.now(UTC)
    if since is not None and since.tzinfo is None:
        raise ValueError("since must be a timezone-aware datetime")
    messages = catalogue.message_versions()
    image_states = {i.uuid: i.state(environment) for i in catalogue.image_versions()}

    def images_approved(message: StoredMessage) -> bool:
        return all(image_states.get(i) == APPROVED for i in _images(message))

    def usable(message: StoredMessage) -> bool:
        return message.state(environment) == APPROVED and images_approved(message)

    settings = catalogue.language_settings()
    base = settings.base_locale
    current = {(m.name, m.locale or base): m for m in messages if not m.retired}
    texts: dict[str, set[str]] = defaultdict(set)
    for name, text in current:
        texts[name].add(text)
    by_uuid = {m.uuid: m for m in messages}
    apple = _Apple(by_uuid, usable, images_approved, environment)
    held = catalogue.apple_defaults(environment)
    seen_products, locales = _requests(engine, environment, since, until)

    slots: list[dict[str, Any]] = []
    for expanded in catalogue.expand_defaults(usable, messages=messages):
        own = texts.get(expanded.message, set())
        missing = any(t != base for t in own) and expanded.locale not in own
        slots.append(_slot(expanded, held.get(expanded.slot), apple, current, base, missing))
    local = {(s["product_id"], s["locale"]) for s in slots}
    for (product_id, locale), ident in sorted(held.items()):
        if (product_id, locale) not in local:
            slots.append(_other_slot(product_id, locale, "not_in_catalogue", apple.held(ident)))
    for product_id, locale in sorted(seen_products - local - set(held)):
        slots.append(_other_slot(product_id, locale, "no_default", None))
    slots.sort(key=lambda s: (s["product_id"], s["locale"]))

    summary: dict[str, int] = dict.fromkeys(SLOT_STATUSES, 0)
    for slot in slots:
        summary[slot["status"]] += 1
    summary["in_review"] = sum(bool(s["in_review"] or s["waiting_for"]) for s in slots)
    summary["missing_translation"] = sum(s["missing_translation"] for s in slots)
    summary["gaps"] = sum(s["status"] != "ok" for s in slots)
    return {
        "environment": environment,
        "languages": {"base_locale": base, "base_fallback": settings.base_fallback},
        "window": {
            "since": None if since is None else since.astimezone(UTC).isoformat(),
            "until": until.astimezone(UTC).isoformat(),
        },
        "summary": summary,
        "slots": slots,
        "locales": locales,
    }


class _Apple:
    """What Apple holds, as recorded: the default of a slot and whether it is usable."""

    def __init__(
        self,
        by_uuid: Mapping[UUID, StoredMessage],
        usable: Callable[[StoredMessage], bool],
        images_approved: Callable[[StoredMessage], bool],
        environment: str,
    ) -> None:
        self.by_uuid = by_uuid
        self.usable = usable
        self.images_approved = images_approved
        self.environment = environment

    def held(self, ident: UUID | None) -> dict[str, Any] | None:
        """The default Apple holds (``None`` for none), with its message when known here."""
        if ident is None:
            return None
        message = self.by_uuid.get(ident)
        if message is None:
            return {"uuid": str(ident), "message": None, "translation": None,
                    "version": None, "state": None, "approved": False}  # fmt: skip
        return {
            "uuid": str(ident),
            "message": message.name,
            "translation": message.locale or None,
            "version": message.version,
            "state": message.state(self.environment),
            "approved": self.usable(message),
        }


def _slot(
    expanded: DefaultSlot,
    ident: UUID | None,
    apple: _Apple,
    current: Mapping[tuple[str, str], StoredMessage],
    base: str,
    missing: bool,
) -> dict[str, Any]:
    target, best, pick = expanded.target, expanded.best, expanded.pick
    if not expanded.served:
        status = "unserved"
    elif target is None:
        status = "waiting"
    elif ident != target.uuid:
        status = "sync"
    else:
        status = "ok"
    pending = [locale for locale, why in pick.skipped if why == "pending"]
    in_review = []
    for locale in pending:
        text = current.get((expanded.message, locale))
        in_review.append(
            {
                "translation": locale,
                "state": None if text is None else text.state(apple.environment),
                "images_approved": text is not None and apple.images_approved(text),
            }
        )
    waiting_for = None
    if best is not None and best is not target and (best.locale or base) not in pending:
        waiting_for = {
            "translation": best.locale or base,
            "version": best.version,
            "state": best.state(apple.environment),
        }
    slot = {
        "product_id": expanded.product_id,
        "locale": expanded.locale,
        "message": expanded.message,
        "every_translation": expanded.every_translation,
        "status": status,
        "answered_by": None
        if target is None
        else {"translation": pick.locale, "reason": pick.reason, "version": target.version},
        "missing_translation": missing,
        "in_review": in_review,
        "waiting_for": waiting_for,
        "apple": apple.held(ident),
    }
    slot["notes"] = _notes(slot, base)
    return slot


def _other_slot(
    product_id: str, locale: str, status: str, held: dict[str, Any] | None
) -> dict[str, Any]:
    """A slot the catalogue's defaults do not make: held at Apple, or seen in requests."""
    slot: dict[str, Any] = {
        "product_id": product_id,
        "locale": locale,
        "message": None,
        "every_translation": False,
        "status": status,
        "answered_by": None,
        "missing_translation": False,
        "in_review": [],
        "waiting_for": None,
        "apple": held,
    }
    slot["notes"] = _notes(slot, "")
    return slot


def _label(message: str, text: str, base: str) -> str:
    """``winback [fr-FR]``, and ``winback`` for the base text."""
    return text_label(message, "" if text == base else text)


def _notes(slot: dict[str, Any], base: str) -> list[str]:
    """What a person should know of a slot, one short sentence each."""
    notes: list[str] = []
    status, message, locale = slot["status"], slot["message"], slot["locale"]
    if status == "unserved":
        notes.append(
            f"no translation / no default: {message} has no text the fallback chain serves "
            f"{locale} with; add a translation or extend [languages.chain]"
        )
    elif status == "no_default":
        notes.append("requests came from here and the catalogue sets no default")
    elif status == "not_in_catalogue":
        notes.append("the catalogue sets no default here; sync deletes Apple's")
    elif status == "sync":
        notes.append("approved but not configured at Apple: run flask retention sync")
    if slot["missing_translation"] and status != "unserved":
        notes.append(f"no {locale} translation")
    for item in slot["in_review"]:
        images = "" if item["images_approved"] else ", an image not approved yet"
        notes.append(
            f"{_label(message, item['translation'], base)} in review "
            f"({_state_text(item['state'])}{images})"
        )
    waiting = slot["waiting_for"]
    if waiting is not None:
        label = _label(message, waiting["translation"], base)
        notes.append(f"waits for {label} v{waiting['version']} ({_state_text(waiting['state'])})")
    apple = slot["apple"]
    if apple is not None and apple["message"] is None:
        notes.append("Apple's default is a message unknown here")
    elif apple is not None and not apple["approved"]:
        notes.append("Apple's default is not approved here")
    return notes


def _requests(
    engine: sa.Engine, environment: str, since: datetime | None, until: datetime
) -> tuple[set[tuple[str, str]], list[dict[str, Any]]]:
    """The (product, locale) pairs of answered requests, and the per-locale answers."""
    t = metadata.tables["retention_decisions"]
    where = [t.c.status == 200, t.c.environment == environment, t.c.created_at <= until]
    if since is not None:
        where.append(t.c.created_at >= since)
    fallback = t.c.fallback_reason.is_not(None)
    no_message = t.c.kind == "none"
    query = (
        sa.select(
            t.c.product_id,
            t.c.locale,
            t.c.answered_locale,
            t.c.locale_reason,
            fallback.label("fallback"),
            no_message.label("no_message"),
            sa.func.count().label("n"),
        )
        .where(*where)
        .group_by(
            t.c.product_id, t.c.locale, t.c.answered_locale, t.c.locale_reason, fallback, no_message
        )
    )
    pairs: set[tuple[str, str]] = set()
    counts: dict[str, dict[str, Any]] = {}
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    for row in rows:
        n = int(row.n)
        locale = row.locale or ""
        if row.product_id is not None and row.locale is not None:
            pairs.add((row.product_id, row.locale))
        entry = counts.setdefault(
            locale,
            {"requests": 0, **dict.fromkeys(ANSWER_COUNTS, 0), "answered_in": {}, "reasons": {}},
        )
        entry["requests"] += n
        if row.locale_reason is not None:
            entry["reasons"][row.locale_reason] = entry["reasons"].get(row.locale_reason, 0) + n
        if row.fallback:
            entry["fallbacks"] += n
        elif row.answered_locale is not None:
            kind = "exact" if row.answered_locale == locale else "other"
            entry[kind] += n
            if kind == "other":
                answered = entry["answered_in"]
                answered[row.answered_locale] = answered.get(row.answered_locale, 0) + n
        elif row.no_message:
            entry["no_message"] += n
        else:
            entry["unknown"] += n
    locales = []
    for locale, entry in counts.items():
        whole = entry["requests"]
        item: dict[str, Any] = {"locale": locale or None, "requests": whole}
        for key, share in ANSWER_COUNTS.items():
            item[key] = entry[key]
            item[share] = _share(entry[key], whole)
        item["answered_in"] = [
            {"locale": other, "requests": n, "share": _share(n, whole)}
            for other, n in sorted(entry["answered_in"].items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        item["reasons"] = dict(sorted(entry["reasons"].items(), key=lambda kv: (-kv[1], kv[0])))
        item["line"] = locale_line(item)
        locales.append(item)
    locales.sort(key=lambda item: (-item["requests"], item["locale"] or ""))
    return pairs, locales


def locale_line(item: dict[str, Any]) -> str:
    """One locale's answers in a sentence:
    ``"fr-CA: 212 requests, 31 % answered in fr-FR, 9 % fallback (60 % in fr-CA)"``."""
    locale = item["locale"] or "(no locale)"
    head = f"{locale}: {plural(item['requests'], 'request')}"
    if item["exact"] == item["requests"]:
        return f"{head}, all answered in {locale}"
    parts = [f"{_percent(o['share'])} answered in {o['locale']}" for o in item["answered_in"]]
    for key, label in (
        ("fallbacks", "fallback"),
        ("no_message", "no message"),
        ("unknown", "unknown (logged before answered_locale was recorded)"),
    ):
        if item[key]:
            parts.append(f"{_percent(item[ANSWER_COUNTS[key]])} {label}")
    line = ", ".join([head, *parts])
    if item["exact"]:
        line += f" ({_percent(item['exact_share'])} in {locale})"
    return line


# -- rendering ------------------------------------------------------------------


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _answered_by(slot: dict[str, Any]) -> str | None:
    answered = slot["answered_by"]
    if answered is None:
        return None
    return f"{answered['translation']} v{answered['version']} ({answered['reason']})"


def _held(slot: dict[str, Any]) -> str:
    apple = slot["apple"]
    if apple is None:
        return "none"
    if apple["message"] is None:
        return f"{apple['uuid']} (unknown here)"
    label = text_label(apple["message"], apple["translation"] or "")
    return f"{label} v{apple['version']}, {'approved' if apple['approved'] else 'not approved'}"


def _slot_rows(coverage: dict[str, Any]) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    headers = ("product", "locale", "message", "answered by", "Apple's default", "status", "notes")
    rows = [
        (
            s["product_id"],
            s["locale"],
            s["message"],
            _answered_by(s),
            _held(s),
            s["status"],
            "; ".join(s["notes"]),
        )
        for s in coverage["slots"]
    ]
    return headers, rows


def _text_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    cells = [list(headers)] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in cells]  # fmt: skip
    lines.insert(1, "  " + "  ".join("-" * w for w in widths))
    return lines


def _heading(coverage: dict[str, Any]) -> str:
    languages = coverage["languages"]
    fallback = "on" if languages["base_fallback"] else "off"
    return (
        f"Coverage in {coverage['environment']} (base text {languages['base_locale']}, "
        f"base_fallback {fallback})"
    )


def _summary_line(coverage: dict[str, Any]) -> str:
    summary = coverage["summary"]
    if not coverage["slots"]:
        return "No defaults in the catalogue, at Apple or seen in requests."
    if not summary["gaps"]:
        return f"Every one of {plural(len(coverage['slots']), 'slot')} is ok."
    parts = [
        f"{summary[status]} {status}"
        for status in SLOT_STATUSES
        if status != "ok" and summary[status]
    ]
    return f"{plural(summary['gaps'], 'gap')} in {len(coverage['slots'])}: {', '.join(parts)}."


def _window_text(coverage: dict[str, Any]) -> str:
    since = coverage["window"]["since"]
    if since is None:
        return "the whole decision log"
    return f"since {datetime.fromisoformat(since).strftime('%Y-%m-%d %H:%M')} UTC"


def render_coverage_text(coverage: dict[str, Any]) -> str:
    """Coverage as an aligned table of slots and one line per locale seen in requests."""
    out = [_heading(coverage), "", "Defaults per product and locale"]
    out += _text_table(*_slot_rows(coverage)) if coverage["slots"] else ["  (none)"]
    out += ["", _summary_line(coverage), ""]
    out.append(f"Locales seen in answered requests ({_window_text(coverage)})")
    if coverage["locales"]:
        out += [f"  {item['line']}" for item in coverage["locales"]]
    else:
        out.append("  No answered requests in this window.")
    return "\n".join(out) + "\n"


def _html_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def coverage_html(coverage: dict[str, Any]) -> str:
    """The coverage section of an HTML page (a heading, the slots, the locale lines)."""
    parts = [
        f"<h2>{html.escape(_heading(coverage))}</h2>",
        f'<p class="sub">{html.escape(_summary_line(coverage))}</p>',
    ]
    if coverage["slots"]:
        parts.append(_html_table(*_slot_rows(coverage)))
    parts.append(
        f"<h2>Locales seen in answered requests ({html.escape(_window_text(coverage))})</h2>"
    )
    if coverage["locales"]:
        items = "".join(f"<li>{html.escape(i['line'])}</li>" for i in coverage["locales"])
        parts.append(f"<ul>{items}</ul>")
    else:
        parts.append("<p>No answered requests in this window.</p>")
    return "".join(parts)
