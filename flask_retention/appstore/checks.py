"""``flask retention check``: everything that must hold before Apple calls the endpoint.

:func:`run_checks` returns a :class:`CheckReport` with every problem it finds
(never only the first), each one line that says how to fix it, so that a
deploy script can fail early. Offline it trusts what sync, ``realtime-url
set`` and ``perf-test`` recorded; online (with a client) it asks Apple: the
image and message lists, the real-time URL, and the defaults whose message
Apple no longer lists (all of them with ``verify_defaults``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec

from flask_retention.appstore.client import APIError, NotFoundError, RetentionAPIClient
from flask_retention.core.config import MIN_SUBSCRIBER_KEY_BYTES, Settings
from flask_retention.core.errors import ConfigurationError

if TYPE_CHECKING:
    from flask_retention.catalogue.store import DefaultSlot, StoredMessage

__all__ = ["API_SETTINGS", "CheckReport", "Problem", "run_checks"]

#: The settings the management API needs (attribute of Settings, config key, where to find it).
API_SETTINGS: Final = (
    ("issuer_id", "RETENTION_ISSUER_ID", "the Issuer ID above the key list"),
    ("key_id", "RETENTION_KEY_ID", "the Key ID of the In-App Purchase key"),
    (
        "private_key",
        "RETENTION_PRIVATE_KEY",
        "the key's .p8 file (or RETENTION_PRIVATE_KEY_PATH to its path)",
    ),
    ("bundle_id", "RETENTION_BUNDLE_ID", "the app's Bundle ID"),
)

_KEYS_PAGE: Final = "App Store Connect > Users and Access > Integrations > In-App Purchase"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing that must be fixed before going live: ``check`` names what was checked
    (``settings``, ``environment``, ``certificates``, ``selector``, ``database``,
    ``catalogue``, ``approval``, ``default``, ``traffic``, ``realtime_url``,
    ``performance_test``, ``apple``, ``privacy``), ``message`` says what is wrong and how
    to fix it."""

    check: str
    message: str

    def to_json(self) -> dict[str, str]:
        """The problem as JSON-ready data."""
        return {"check": self.check, "message": self.message}


@dataclass(frozen=True)
class CheckReport:
    """What ``check`` found for ``environment``: ``problems`` (empty when ready), ``notes``
    (facts worth showing that are not problems), whether Apple was asked (``online``)
    and how many defaults were read back from Apple."""

    environment: str
    online: bool
    problems: tuple[Problem, ...]
    notes: tuple[str, ...] = ()
    defaults_read: int = 0

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "environment": self.environment,
            "online": self.online,
            "ok": self.ok,
            "problems": [p.to_json() for p in self.problems],
            "notes": list(self.notes),
            "defaults_read": self.defaults_read,
        }


def missing_api_settings(settings: Settings) -> list[str]:
    """The config keys of the management API settings that are not set."""
    return [key for attribute, key, _where in API_SETTINGS if getattr(settings, attribute) is None]


class _Checks:
    """Collects problems and notes of one run."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.notes: list[str] = []

    def problem(self, check: str, message: str) -> None:
        self.problems.append(Problem(check, message))


def run_checks(
    settings: Settings,
    engine: sa.Engine,
    *,
    config: Mapping[str, Any],
    has_selector: bool,
    environment: str | None = None,
    client: RetentionAPIClient | None = None,
    verify_defaults: bool = False,
    progress: Callable[[int, int, float], None] | None = None,
) -> CheckReport:
    """Every problem of an app before Apple calls it in ``environment``.

    ``settings``, ``engine`` and ``config`` are the app's, ``has_selector``
    whether it registered a selector. With a ``client`` (for
    ``environment``) the checks ask Apple; without one they use what was
    recorded. ``verify_defaults`` reads every default back from Apple (one
    Get Default Message each, paced: ``progress(done, total, eta_seconds)``
    follows it); otherwise only the defaults whose message Apple no longer
    lists are read.

    Checks: the settings the environment needs (the app's Apple ID for
    Production, the management API key, issuer, key ID and bundle ID), that
    the endpoint accepts the environment, the In-App Purchase key's curve,
    the root certificates, a ``RETENTION_SUBSCRIBER_KEY`` (when set) of at
    least 32 bytes, a selector, the database (reachable, migrated), a
    catalogue with messages and defaults, and each default expanded per
    (product, locale) as sync configures it (several locales and "every
    translation" rules make one slot per locale): the fallback chain serves
    the locale, the text it picks (and its images) is ``APPROVED`` in the
    environment, and Apple holds a version of that text as the default there;
    a default for every (product, locale) that got real-time requests, the
    real-time URL (held by Apple, and the one ``realtime-url set``
    recorded), and the last Sandbox performance test passed.
    """
    from flask_retention.appstore.golive import last_performance_test
    from flask_retention.catalogue.schema import current_revision, head_revision
    from flask_retention.catalogue.store import Catalogue

    env = environment or settings.default_environment
    out = _Checks()
    if client is not None and client.environment != env:
        raise ValueError(f"the client talks to {client.environment}, not {env}")
    _check_settings(settings, config, env, out)
    if not has_selector:
        out.problem(
            "selector",
            "no selector is registered: decorate a function with @retention.selector, or every "
            "request gets the fallback.",
        )

    try:
        revision = current_revision(engine)
    except sa.exc.SQLAlchemyError as e:
        reason = str(getattr(e, "orig", None) or e).splitlines()[0]
        out.problem(
            "database",
            f"the catalogue database is not reachable ({reason}): check RETENTION_DATABASE_URI "
            "(or the db/engine given to Retention) and that the database server is up.",
        )
        return CheckReport(env, False, tuple(out.problems), tuple(out.notes))
    head = head_revision()
    if revision != head:
        out.problem(
            "database",
            f"the catalogue database is at revision {revision or 'none'}, not {head}: run "
            "`flask retention init-db`.",
        )
        return CheckReport(env, False, tuple(out.problems), tuple(out.notes))

    catalogue = Catalogue(engine)
    apple = _Apple(catalogue, client, env, out) if client is not None else None
    slots = _check_catalogue(catalogue, env, apple, verify_defaults, progress, out)
    _check_traffic(engine, slots, env, out)
    _check_realtime_url(catalogue, env, apple, settings.endpoint, out)

    sandbox_test = last_performance_test(engine, "Sandbox")
    where = "" if env == "Sandbox" else " (Production has none: Apple tests in the sandbox)"
    if sandbox_test is None:
        out.problem(
            "performance_test",
            f"no Sandbox performance test is recorded{where}: configure the sandbox real-time "
            "URL, then run `flask retention perf-test ORIGINAL_TRANSACTION_ID`.",
        )
    else:
        when = sandbox_test.created_at.isoformat(sep=" ", timespec="seconds")
        rate = (sandbox_test.results or {}).get("successRate")
        summary = (
            f"last Sandbox performance test: {sandbox_test.status} "
            f"({sandbox_test.request_id}, {when}"
            + (f", success rate {rate}%" if rate is not None else "")
            + ")"
        )
        out.notes.append(summary)
        if sandbox_test.status == "PENDING":
            out.problem(
                "performance_test",
                f"the last Sandbox performance test ({sandbox_test.request_id}) has no result "
                "yet: run `flask retention perf-test --result "
                f"{sandbox_test.request_id}`.",
            )
        elif sandbox_test.status != "PASS":
            out.problem(
                "performance_test",
                f"the last Sandbox performance test ended {sandbox_test.status}{where}: make "
                "the endpoint answer within Apple's limit and run `flask retention perf-test` "
                "again.",
            )
    online = apple is not None and apple.reachable
    return CheckReport(
        env,
        online,
        tuple(out.problems),
        tuple(out.notes),
        defaults_read=apple.defaults_read if apple is not None else 0,
    )


def _check_settings(settings: Settings, config: Mapping[str, Any], env: str, out: _Checks) -> None:
    from flask_retention.core.config import load_root_certificates

    if env not in settings.environments:
        accepted = " and ".join(settings.environments)
        out.problem(
            "environment",
            f"the endpoint accepts only {accepted} requests, so it refuses Apple's {env} "
            f"requests: add {env!r} to RETENTION_ENVIRONMENT"
            + (" and set RETENTION_APP_APPLE_ID." if env == "Production" else "."),
        )
    if env == "Production" and settings.app_apple_id is None:
        out.problem(
            "settings",
            "RETENTION_APP_APPLE_ID is not set; Production requests carry it and the endpoint "
            "checks it: copy the Apple ID from App Store Connect > your app > App Information.",
        )
    for key in missing_api_settings(settings):
        where = next(w for _a, k, w in API_SETTINGS if k == key)
        page = (
            "App Store Connect > your app > App Information"
            if key == "RETENTION_BUNDLE_ID"
            else _KEYS_PAGE
        )
        out.problem(
            "settings",
            f"{key} is not set; sync, realtime-url and perf-test need {where} ({page}).",
        )
    try:
        load_root_certificates(config.get("RETENTION_ROOT_CERTIFICATES"))
    except ConfigurationError as e:
        out.problem("certificates", str(e))
    secret = settings.subscriber_key
    if secret is not None and len(secret) < MIN_SUBSCRIBER_KEY_BYTES:
        out.problem(
            "privacy",
            f"RETENTION_SUBSCRIBER_KEY is shorter than {MIN_SUBSCRIBER_KEY_BYTES} bytes: a "
            "short secret can be guessed, and with it every pseudonymised subscriber ID; use "
            f"{MIN_SUBSCRIBER_KEY_BYTES} random bytes or more (secrets.token_hex(32)), and keep "
            "the old one in RETENTION_PREVIOUS_SUBSCRIBER_KEYS.",
        )
    private_key = settings.private_key
    if private_key is not None and not isinstance(private_key.curve, ec.SECP256R1):
        out.problem(
            "settings",
            f"RETENTION_PRIVATE_KEY is an EC key on {private_key.curve.name}, but Apple's In-App "
            "Purchase keys are P-256: use the .p8 file from App Store Connect.",
        )


class _Apple:
    """What Apple holds, asked once per run; a failed call becomes one problem."""

    def __init__(self, catalogue: Any, client: RetentionAPIClient, env: str, out: _Checks) -> None:
        self.catalogue = catalogue
        self.client = client
        self.env = env
        self.out = out
        self.reachable = True
        self.defaults_read = 0
        self.images: dict[UUID, str] | None = None
        self.messages: dict[UUID, str] | None = None
        from flask_retention.appstore.sync import pull_remote_states

        try:
            self.images, self.messages = pull_remote_states(client)
        except APIError as e:
            self.failed(e)

    def failed(self, error: APIError) -> None:
        if self.reachable:
            self.out.problem(
                "apple",
                f"could not ask Apple ({' '.join(str(error).split())}); the checks below use "
                "what was recorded (pass --offline to skip Apple).",
            )
        self.reachable = False

    def read_defaults(
        self,
        slots: list[tuple[str, str]],
        progress: Callable[[int, int, float], None] | None,
    ) -> dict[tuple[str, str], UUID | None] | None:
        from flask_retention.appstore.sync import read_apple_defaults

        if not self.reachable or not slots:
            return {}
        try:
            found: dict[tuple[str, str], UUID | None] = read_apple_defaults(
                self.client, slots, progress=progress
            )
        except APIError as e:
            self.failed(e)
            return None
        self.defaults_read += len(slots)
        return found

    def realtime_url(self) -> tuple[bool, str | None]:
        """(asked, url): ``asked`` is False when Apple could not be asked."""
        if not self.reachable:
            return False, None
        try:
            url = self.client.get_realtime_url().realtime_url
        except NotFoundError as e:
            if e.error_name != "RealtimeUrlNotFoundError":
                self.failed(e)
                return False, None
            return True, None
        except APIError as e:
            self.failed(e)
            return False, None
        return True, url


def _check_catalogue(
    catalogue: Any,
    env: str,
    apple: _Apple | None,
    verify_defaults: bool,
    progress: Callable[[int, int, float], None] | None,
    out: _Checks,
) -> set[tuple[str, str]]:
    """The catalogue and its defaults, expanded per (product, locale) as sync configures
    them; returns the expanded slots (served or not)."""
    sync = f"`flask retention sync --environment {env}`"
    messages = catalogue.message_versions()
    images = catalogue.image_versions()
    defaults = catalogue.list_defaults()
    every_translation = catalogue.list_translation_defaults()
    if not messages:
        out.problem(
            "catalogue",
            "the catalogue has no messages: add them with `flask retention import FILE` or "
            "`flask retention message add`, then sync.",
        )
    if not defaults and not every_translation:
        out.problem(
            "catalogue",
            "the catalogue has no default messages: Apple needs one for every product and "
            "locale you answer in real time; run `flask retention default set PRODUCT_ID "
            "LOCALE MESSAGE`, then sync.",
        )
        return set()

    remote_messages = apple.messages if apple is not None else None
    remote_images = apple.images if apple is not None else None
    online = remote_messages is not None and remote_images is not None
    message_state: dict[UUID, str | None]
    image_state: dict[UUID, str | None]
    if remote_messages is not None and remote_images is not None:
        message_state = {m.uuid: remote_messages.get(m.uuid) for m in messages}
        image_state = {i.uuid: remote_images.get(i.uuid) for i in images}
    else:
        message_state = {m.uuid: m.state(env) for m in messages}
        image_state = {i.uuid: i.state(env) for i in images}

    def approved(message: StoredMessage) -> bool:
        if message_state.get(message.uuid) != "APPROVED":
            return False
        used = [message.image_uuid] + [b.image_uuid for b in message.bullet_points]
        return all(image_state.get(u) == "APPROVED" for u in used if u is not None)

    expanded: list[DefaultSlot] = catalogue.expand_defaults(approved, messages=messages)
    by_uuid = {m.uuid: m for m in messages}
    held = dict(catalogue.apple_defaults(env))
    if apple is not None and remote_messages is not None:
        slots = sorted(
            {s.slot for s in expanded} | set(held)
            if verify_defaults
            else {slot for slot, ident in held.items() if ident not in remote_messages}
        )
        read = apple.read_defaults(slots, progress)
        for read_slot, read_ident in (read or {}).items():
            if read_ident is None:
                held.pop(read_slot, None)
            else:
                held[read_slot] = read_ident
    elif verify_defaults:
        out.problem(
            "apple",
            "--verify-defaults needs Apple: set the management API settings (or drop --offline).",
        )

    source = "Apple" if online else "the record of the last sync"
    newest: dict[tuple[str, str], StoredMessage] = {}
    for message in messages:
        key = (message.name, message.locale)
        if key not in newest or newest[key].version < message.version:
            newest[key] = message
    texts: dict[str, list[StoredMessage]] = {}
    for text in newest.values():
        if not text.retired:
            texts.setdefault(text.name, []).append(text)
    for rule in every_translation:
        if rule.message not in texts:
            out.problem(
                "default",
                f"default {rule.product_id} / every translation: message {rule.message!r} is "
                "not in the catalogue: add it or change the default.",
            )
    languages = catalogue.language_settings()
    for slot in expanded:
        where = f"{slot.product_id} / {slot.locale}"
        ident = held.get(slot.slot)
        if slot.message not in texts:
            out.problem(
                "default",
                f"default {where}: message {slot.message!r} is not in the catalogue: add it "
                "or change the default.",
            )
            continue
        if slot.best is None:
            holder = by_uuid.get(ident) if ident is not None else None
            shown = (
                "Apple shows nothing there"
                if ident is None
                else f"sync removes Apple's default there ({_label(holder, ident)}), then Apple "
                "shows nothing there"
            )
            has = ", ".join(
                sorted({m.locale or languages.base_locale for m in texts[slot.message]})
            )
            out.problem(
                "default",
                f"default {where}: no translation of {slot.message!r} serves {slot.locale} "
                f"(it has {has}); {shown}: add a translation for {slot.locale} (`flask "
                f"retention message add --name {slot.message} --locale {slot.locale} ...`), "
                "extend [languages.chain] or set base_fallback = true under [languages] in "
                "the catalogue file.",
            )
            continue
        target = slot.target
        if target is None:
            text = slot.best
            lineage = [m for m in messages if (m.name, m.locale) == (text.name, text.locale)]
            states = {message_state.get(m.uuid) for m in lineage}
            why = (
                "not uploaded yet"
                if states == {None}
                else "waiting for Apple's review"
                if "PENDING" in states
                else "rejected by Apple (edit the text to make a new version)"
                if "REJECTED" in states
                else "its images are not approved yet"
            )
            out.problem(
                "approval",
                f"default {where}: {_kind(text)} {text.label!r} has no version APPROVED in "
                f"{env} ({why}, according to {source}); run {sync} and wait for Apple's "
                "review.",
            )
            continue
        best = slot.best
        if best.locale != target.locale:
            out.notes.append(
                f"default {where} shows {target.label} while {best.label} is not APPROVED in "
                f"{env} yet (the fallback chain's stand-in)"
            )
        holder = by_uuid.get(ident) if ident is not None else None
        if ident is None:
            out.problem(
                "default",
                f"default {where}: Apple holds no default there in {env} (according to "
                f"{source if apple is None or not apple.reachable else 'Apple'}); run {sync}.",
            )
        elif holder is None or (holder.name, holder.locale) != (target.name, target.locale):
            out.problem(
                "default",
                f"default {where}: Apple's default in {env} is {_label(holder, ident)}, not "
                f"{target.label!r}; run {sync}.",
            )
    return {s.slot for s in expanded}


def _kind(message: StoredMessage) -> str:
    return "translation" if message.locale else "message"


def _label(holder: StoredMessage | None, ident: UUID) -> str:
    """Apple's default named: the text here, or its UUID when unknown here."""
    return f"{holder.label!r}" if holder is not None else f"message {ident} (unknown here)"


def _check_traffic(engine: sa.Engine, slots: set[tuple[str, str]], env: str, out: _Checks) -> None:
    from flask_retention.catalogue.models import Decision

    with engine.connect() as connection:
        used = connection.execute(
            sa.select(Decision.product_id, Decision.locale)
            .where(
                Decision.environment == env,
                Decision.product_id.is_not(None),
                Decision.locale.is_not(None),
            )
            .distinct()
        ).all()
    for product_id, locale in sorted((p, loc) for p, loc in used if (p, loc) not in slots):
        out.problem(
            "traffic",
            f"{product_id} / {locale} gets real-time requests in {env} but has no default "
            f"message: Apple shows nothing there when the endpoint does not answer; run "
            f"`flask retention default set {product_id} {locale} MESSAGE`.",
        )


def _check_realtime_url(
    catalogue: Any, env: str, apple: _Apple | None, endpoint: str | None, out: _Checks
) -> None:
    recorded = catalogue.realtime_url(env)
    path = endpoint or "/PATH"
    fix = f"run `flask retention realtime-url set https://YOUR-HOST{path} --environment {env}`"
    asked, held = apple.realtime_url() if apple is not None else (False, None)
    if not asked:
        if recorded is None:
            out.problem(
                "realtime_url",
                f"no real-time URL is recorded for {env}, so Apple does not call the endpoint: "
                f"{fix}.",
            )
        else:
            out.notes.append(f"real-time URL (as recorded, not asked): {recorded}")
        return
    if held is None:
        out.problem(
            "realtime_url",
            f"Apple holds no real-time URL for {env}, so it does not call the endpoint"
            + (f" (`realtime-url set` recorded {recorded})" if recorded else "")
            + f": {fix}.",
        )
    elif recorded is None:
        out.notes.append(
            f"Apple's real-time URL is {held}; it was set elsewhere (not by `realtime-url set` "
            "with this database)."
        )
    elif recorded != held:
        out.problem(
            "realtime_url",
            f"Apple's real-time URL for {env} is {held}, but `realtime-url set` recorded "
            f"{recorded}: it was changed elsewhere; set the right one with `flask retention "
            f"realtime-url set URL --environment {env}`.",
        )
    else:
        out.notes.append(f"real-time URL: {held}")
