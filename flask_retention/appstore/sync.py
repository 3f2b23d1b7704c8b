"""Sync the catalogue with Apple: plan, then upload, pull review states, configure, delete.

:func:`plan_sync` compares the local catalogue (and what sync recorded of
Apple's state) with one Get Image List and one Get Message List of the
environment, plus one Get Default Message per default that needs reading
(:func:`read_apple_defaults`: those whose message Apple no longer lists, or
every managed one with ``verify_defaults``), and returns a :class:`SyncPlan`;
:func:`run_sync` applies it in
dependency order (images, messages, defaults; removals in reverse), records
each step as it succeeds, and holds a lock row in the database so that one
sync at a time talks to Apple for an environment
(:mod:`flask_retention.appstore.sync_lock`).

A sync that stops anywhere (crash, Ctrl-C, SIGTERM, network loss) is finished by
running it again: the plan is always made from Apple's lists, so anything
that landed is not uploaded twice, and a sync after a complete one makes no
call that writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from uuid import UUID

from flask_retention.appstore.client import (
    BulletPoint,
    ConflictError,
    DefaultConfigurationRequest,
    NotFoundError,
    RetentionAPIClient,
    UploadMessageImage,
    UploadMessageRequestBody,
)
from flask_retention.appstore.sync_lock import (
    DEFAULT_LOCK_HEARTBEAT,
    DEFAULT_LOCK_RELEASE_TIMEOUT,
    DEFAULT_LOCK_TIMEOUT,
    SyncInterrupted,
    SyncLockedError,
    SyncLockHandle,
    SyncLockInfo,
    acquire_sync_lock,
    sync_lock_info,
)
from flask_retention.catalogue.models import APPLE_STATES, utcnow
from flask_retention.catalogue.store import (
    Catalogue,
    DefaultSlot,
    StoredImage,
    StoredMessage,
    text_label,
)

__all__ = [
    "DEFAULT_LOCK_HEARTBEAT",
    "DEFAULT_LOCK_RELEASE_TIMEOUT",
    "DEFAULT_LOCK_TIMEOUT",
    "DefaultDrift",
    "PlanNote",
    "SyncInterrupted",
    "SyncLockHandle",
    "SyncLockInfo",
    "SyncLockedError",
    "SyncPlan",
    "SyncProgress",
    "SyncResult",
    "SyncStep",
    "acquire_sync_lock",
    "make_plan",
    "managed_default_slots",
    "plan_sync",
    "pull_remote_states",
    "read_apple_defaults",
    "run_sync",
    "sync_lock_info",
]

logger = logging.getLogger(__name__)

APPROVED: Final = "APPROVED"

#: Apple's error name for "this product and locale have no default message".
DEFAULT_NOT_FOUND: Final = "DefaultMessageNotFoundError"

Slot = tuple[str, str]

Action = Literal[
    "upload_image",
    "upload_message",
    "configure_default",
    "delete_default",
    "delete_message",
    "delete_image",
]

#: The client method (and rate-limit bucket) each action calls.
_ENDPOINTS: Final[Mapping[str, str]] = {
    "upload_image": "upload_image",
    "upload_message": "upload_message",
    "configure_default": "configure_default_message",
    "delete_default": "delete_default_message",
    "delete_message": "delete_message",
    "delete_image": "delete_image",
}

_ORDER: Final = tuple(_ENDPOINTS)


# -- the plan -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyncStep:
    """One change sync makes at Apple.

    ``name`` and ``version`` are the catalogue's (``None`` for a remote item
    unknown here), ``translation`` the locale of the message's translation
    (``None`` for a base text or an image); defaults carry ``product_id`` and
    ``locale``; ``uuid`` is the image or message identifier at Apple.
    """

    action: Action
    uuid: UUID | None = None
    name: str | None = None
    version: int | None = None
    product_id: str | None = None
    locale: str | None = None
    translation: str | None = None

    @property
    def label(self) -> str | None:
        """The catalogue name, with the translation: ``winback [fr-FR]``."""
        if self.name is None:
            return None
        return text_label(self.name, self.translation or "")

    @property
    def endpoint(self) -> str:
        """The client method this step calls (its rate-limit bucket)."""
        return _ENDPOINTS[self.action]

    @property
    def target(self) -> str:
        """What the step acts on, for people."""
        if self.product_id is not None:
            slot = f"{self.product_id} / {self.locale}"
            if self.action == "configure_default":
                return f"{slot} -> {self.label} v{self.version}"
            return slot
        if self.name is None:
            return f"{self.uuid} (unknown here)"
        return f"{self.label} v{self.version}"

    def describe(self) -> str:
        """One line: action and target."""
        return f"{self.action.replace('_', ' ')} {self.target}"

    def to_json(self) -> dict[str, Any]:
        """The step as JSON-ready data."""
        return {
            "action": self.action,
            "uuid": None if self.uuid is None else str(self.uuid),
            "name": self.name,
            "version": self.version,
            "product_id": self.product_id,
            "locale": self.locale,
            "translation": self.translation,
        }


@dataclass(frozen=True, slots=True)
class PlanNote:
    """Something sync reports but does not change: waiting for review, rejected, unknown,
    or a default slot the fallback chain cannot serve.

    ``translation`` is the locale of the message's translation (``None`` for a
    base text, an image, or a default).
    """

    kind: str
    name: str | None
    version: int | None
    uuid: UUID | None
    state: str | None
    reason: str
    translation: str | None = None

    def describe(self) -> str:
        """One line for people."""
        label = None if self.name is None else text_label(self.name, self.translation or "")
        what = f"{self.kind} {label}" if self.name else f"{self.kind}"
        if self.name and self.version is not None:
            what = f"{what} v{self.version}"
        if self.name is None and self.uuid is not None:
            what = f"{self.kind} {self.uuid}"
        return f"{what}: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        """The note as JSON-ready data."""
        return {
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "uuid": None if self.uuid is None else str(self.uuid),
            "state": self.state,
            "reason": self.reason,
            "translation": self.translation,
        }


@dataclass(frozen=True, slots=True)
class DefaultDrift:
    """A default Apple holds other than sync recorded, as Get Default Message just read it.

    ``recorded`` and ``apple`` are message UUIDs (``None``: no default);
    ``recorded_version`` and ``apple_version`` the catalogue's name and
    version of that message (``None`` when there is none or it is unknown here).
    """

    product_id: str
    locale: str
    recorded: UUID | None
    apple: UUID | None
    recorded_version: tuple[str, int] | None = None
    apple_version: tuple[str, int] | None = None

    def describe(self) -> str:
        """One line for people: what Apple holds, what was recorded."""
        apple = _held(self.apple, self.apple_version)
        recorded = _held(self.recorded, self.recorded_version)
        slot = f"{self.product_id} / {self.locale}"
        return f"default {slot}: Apple holds {apple}; recorded {recorded}"

    def to_json(self) -> dict[str, Any]:
        """The drift as JSON-ready data."""
        return {
            "product_id": self.product_id,
            "locale": self.locale,
            "apple": _held_json(self.apple, self.apple_version),
            "recorded": _held_json(self.recorded, self.recorded_version),
        }


def _held(ident: UUID | None, version: tuple[str, int] | None) -> str:
    if ident is None:
        return "none"
    if version is None:
        return f"{ident} (unknown here)"
    return f"{version[0]} v{version[1]}"


def _held_json(ident: UUID | None, version: tuple[str, int] | None) -> dict[str, Any] | None:
    if ident is None:
        return None
    return {
        "uuid": str(ident),
        "name": None if version is None else version[0],
        "version": None if version is None else version[1],
    }


@dataclass(frozen=True)
class SyncPlan:
    """What a sync would do in ``environment``, and what it would only report.

    ``steps`` are in the order they run: uploads (images, then messages),
    defaults to configure, then removals (defaults, messages, images).
    ``remote_images`` and ``remote_messages`` are Apple's lists the plan was
    made from (identifier -> review state). ``read_defaults`` are the
    defaults read from Apple for this plan ((product, locale) -> message
    UUID, ``None`` for none), and ``drift`` those that differ from what was
    recorded. ``uncovered`` notes the default slots the fallback chain cannot
    serve (no translation of the locale's language, no base fallback): Apple
    gets no default there.
    """

    environment: str
    steps: tuple[SyncStep, ...]
    waiting: tuple[PlanNote, ...] = ()
    rejected: tuple[PlanNote, ...] = ()
    unknown: tuple[PlanNote, ...] = ()
    prune: bool = False
    remote_images: Mapping[UUID, str] = field(default_factory=dict, repr=False)
    remote_messages: Mapping[UUID, str] = field(default_factory=dict, repr=False)
    read_defaults: Mapping[Slot, UUID | None] = field(default_factory=dict, repr=False)
    drift: tuple[DefaultDrift, ...] = ()
    uncovered: tuple[PlanNote, ...] = ()

    @property
    def empty(self) -> bool:
        """Whether the plan changes nothing at Apple."""
        return not self.steps

    @property
    def uploads(self) -> tuple[SyncStep, ...]:
        """Images and messages to upload."""
        return tuple(s for s in self.steps if s.action.startswith("upload"))

    @property
    def defaults(self) -> tuple[SyncStep, ...]:
        """Defaults to configure or change."""
        return tuple(s for s in self.steps if s.action == "configure_default")

    @property
    def deletions(self) -> tuple[SyncStep, ...]:
        """Defaults, messages and images to delete at Apple."""
        return tuple(s for s in self.steps if s.action.startswith("delete"))

    def estimate(self, client: RetentionAPIClient | None = None) -> float:
        """Seconds the steps take at least under the client's pacing (Apple's, by default)."""
        return _estimate(self.steps, self.environment, client)

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON-ready data."""
        return {
            "environment": self.environment,
            "prune": self.prune,
            "steps": [s.to_json() for s in self.steps],
            "waiting": [n.to_json() for n in self.waiting],
            "rejected": [n.to_json() for n in self.rejected],
            "unknown": [n.to_json() for n in self.unknown],
            "defaults_read": [
                {"product_id": p, "locale": loc, "apple": None if u is None else str(u)}
                for (p, loc), u in sorted(self.read_defaults.items())
            ],
            "drift": [d.to_json() for d in self.drift],
            "uncovered": [n.to_json() for n in self.uncovered],
        }


def _estimate(
    steps: Iterable[SyncStep], environment: str, client: RetentionAPIClient | None
) -> float:
    from flask_retention.appstore.pacing import default_limit

    counts: dict[str, int] = {}
    for step in steps:
        counts[step.endpoint] = counts.get(step.endpoint, 0) + 1
    total = 0.0
    for endpoint, count in counts.items():
        interval = (
            client.limit(endpoint).interval
            if client is not None
            else default_limit(endpoint, environment).interval
        )
        total += interval * max(0, count - 1)
    return total


def _approved(
    message: StoredMessage, remote_messages: Mapping[UUID, str], remote_images: Mapping[UUID, str]
) -> bool:
    """Whether Apple approved the message and every image it uses."""
    if remote_messages.get(message.uuid) != APPROVED:
        return False
    images = [message.image_uuid] + [b.image_uuid for b in message.bullet_points]
    return all(remote_images.get(i) == APPROVED for i in images if i is not None)


def _message_images(message: StoredMessage) -> set[UUID]:
    found = {b.image_uuid for b in message.bullet_points}
    if message.image_uuid is not None:
        found.add(message.image_uuid)
    return found


def _state_text(state: str | None) -> str:
    return "not uploaded yet" if state is None else f"{state} at Apple"


def make_plan(
    catalogue: Catalogue,
    environment: str,
    remote_images: Mapping[UUID, str],
    remote_messages: Mapping[UUID, str],
    *,
    prune: bool = False,
    read_defaults: Mapping[Slot, UUID | None] | None = None,
) -> SyncPlan:
    """The plan for ``environment`` given Apple's lists (identifier -> state); no calls.

    Every text of a message (its base text and each translation) is its own
    Apple message, uploaded, tracked and replaced like any. Defaults are the
    catalogue's expanded into exact (product, locale) slots
    (:meth:`~flask_retention.catalogue.store.Catalogue.expand_defaults`),
    each pointing to the newest approved version (with its images) of the
    text the fallback chain picks among the approved ones; a slot the chain
    cannot serve gets none, with a note in ``uncovered``. An older version is
    deleted only once a newer one of the same text is approved and no default
    of Apple's points to it; an image once no message left at Apple uses it.
    Remote items unknown here are deleted only with ``prune``.
    ``read_defaults`` ((product, locale) -> message UUID or ``None``, from
    :func:`read_apple_defaults`) override what was recorded for those slots,
    and the differences are the plan's ``drift``; nothing is recorded here.
    """
    images = catalogue.image_versions()
    messages = catalogue.message_versions()
    recorded_defaults = catalogue.apple_defaults(environment)
    read_defaults = dict(read_defaults or {})
    drift = _drift(recorded_defaults, read_defaults, messages)
    apple_defaults = {
        slot: ident
        for slot, ident in {**recorded_defaults, **read_defaults}.items()
        if ident is not None
    }
    known_images = {i.uuid for i in images}
    known_messages = {m.uuid for m in messages}

    steps: list[SyncStep] = []
    waiting: list[PlanNote] = []
    rejected: list[PlanNote] = []
    unknown: list[PlanNote] = []
    uncovered: list[PlanNote] = []

    # Uploads: every current version Apple does not list, images first.
    current_messages = [m for m in messages if not m.retired]
    needed_images = {i for m in current_messages for i in _message_images(m)}
    for image in images:
        if image.retired and image.uuid not in needed_images:
            continue
        state = remote_images.get(image.uuid)
        if state is None:
            steps.append(SyncStep("upload_image", image.uuid, image.name, image.version))
        if state is not None and state != APPROVED:
            note = PlanNote(
                "image", image.name, image.version, image.uuid, state, _state_text(state)
            )
            (rejected if state == "REJECTED" else waiting).append(note)
    for message in current_messages:
        state = remote_messages.get(message.uuid)
        if state is None:
            steps.append(
                SyncStep(
                    "upload_message",
                    message.uuid,
                    message.name,
                    message.version,
                    translation=message.locale or None,
                )
            )
        if state is not None and state != APPROVED:
            note = PlanNote(
                "message",
                message.name,
                message.version,
                message.uuid,
                state,
                _state_text(state),
                translation=message.locale or None,
            )
            (rejected if state == "REJECTED" else waiting).append(note)

    # Defaults: per slot, the newest approved version of the text the chain picks.
    slots = catalogue.expand_defaults(
        lambda m: _approved(m, remote_messages, remote_images), messages=messages
    )
    projected = dict(apple_defaults)
    local_slots: set[Slot] = set()
    for expanded in slots:
        slot = expanded.slot
        target = expanded.target
        if not expanded.served:
            uncovered.append(_uncovered_note(expanded))
            continue
        local_slots.add(slot)
        best = expanded.best
        if best is not None and best is not target:
            state = remote_messages.get(best.uuid)
            reason = (
                f"default {expanded.product_id} / {expanded.locale} waits for "
                f"{best.label} v{best.version} ({_state_text(state)}, images included)"
            )
            waiting.append(
                PlanNote(
                    "default",
                    best.name,
                    best.version,
                    best.uuid,
                    state,
                    reason,
                    translation=best.locale or None,
                )
            )
        if target is not None and projected.get(slot) != target.uuid:
            steps.append(
                SyncStep(
                    "configure_default",
                    target.uuid,
                    target.name,
                    target.version,
                    expanded.product_id,
                    expanded.locale,
                    translation=target.locale or None,
                )
            )
            projected[slot] = target.uuid
    for slot in sorted(set(apple_defaults) - local_slots):
        steps.append(
            SyncStep("delete_default", apple_defaults[slot], product_id=slot[0], locale=slot[1])
        )
        projected.pop(slot)

    # Removals: versions no default points to and that a newer approved one replaces.
    versions: dict[tuple[str, str], list[StoredMessage]] = {}
    for message in messages:
        versions.setdefault((message.name, message.locale), []).append(message)
    for lineage in versions.values():
        lineage.sort(key=lambda m: m.version, reverse=True)
    kept_by_default = set(projected.values())
    removed_messages: set[UUID] = set()
    for _, lineage in sorted(versions.items()):
        retired_text = not lineage or lineage[0].retired
        for index, message in enumerate(lineage):
            if message.uuid not in remote_messages or not message.retired:
                continue
            if message.uuid in kept_by_default:
                continue
            newer_approved = any(
                _approved(m, remote_messages, remote_images) for m in lineage[:index]
            )
            if retired_text or newer_approved:
                steps.append(
                    SyncStep(
                        "delete_message",
                        message.uuid,
                        message.name,
                        message.version,
                        translation=message.locale or None,
                    )
                )
                removed_messages.add(message.uuid)
    for ident, state in sorted(remote_messages.items(), key=lambda kv: str(kv[0])):
        if ident in known_messages:
            continue
        verb = "deleted (--prune)" if prune else "kept; --prune deletes it"
        unknown.append(
            PlanNote("message", None, None, ident, state, f"{state}, unknown here: {verb}")
        )
        if prune and ident not in kept_by_default:
            steps.append(SyncStep("delete_message", ident))
            removed_messages.add(ident)

    remaining = [
        m
        for m in messages
        if m.uuid not in removed_messages and (m.uuid in remote_messages or not m.retired)
    ]
    in_use = {i for m in remaining for i in _message_images(m)}
    for image in images:
        if image.uuid in remote_images and image.retired and image.uuid not in in_use:
            steps.append(SyncStep("delete_image", image.uuid, image.name, image.version))
    for ident, state in sorted(remote_images.items(), key=lambda kv: str(kv[0])):
        if ident in known_images:
            continue
        verb = "deleted (--prune)" if prune else "kept; --prune deletes it"
        unknown.append(
            PlanNote("image", None, None, ident, state, f"{state}, unknown here: {verb}")
        )
        if prune and ident not in in_use:
            steps.append(SyncStep("delete_image", ident))

    steps.sort(key=lambda s: _ORDER.index(s.action))
    return SyncPlan(
        environment=environment,
        steps=tuple(steps),
        waiting=tuple(waiting),
        rejected=tuple(rejected),
        unknown=tuple(unknown),
        prune=prune,
        remote_images=dict(remote_images),
        remote_messages=dict(remote_messages),
        read_defaults=read_defaults,
        drift=drift,
        uncovered=tuple(uncovered),
    )


def _uncovered_note(expanded: DefaultSlot) -> PlanNote:
    """The note of a default slot the chain cannot serve."""
    return PlanNote(
        "default",
        expanded.message,
        None,
        None,
        None,
        f"default {expanded.product_id} / {expanded.locale}: {expanded.message} has no "
        f"translation the fallback chain serves {expanded.locale} with (the base text "
        "stands in only with base_fallback): no default there; add a translation or "
        "extend [languages.chain]",
    )


def _drift(
    recorded: Mapping[Slot, UUID],
    read: Mapping[Slot, UUID | None],
    messages: Iterable[StoredMessage],
) -> tuple[DefaultDrift, ...]:
    """The slots where what Apple answered differs from what was recorded."""
    versions = {m.uuid: (m.label, m.version) for m in messages}
    found = []
    for (product_id, locale), apple in sorted(read.items()):
        before = recorded.get((product_id, locale))
        if apple == before:
            continue
        found.append(
            DefaultDrift(
                product_id,
                locale,
                recorded=before,
                apple=apple,
                recorded_version=None if before is None else versions.get(before),
                apple_version=None if apple is None else versions.get(apple),
            )
        )
    return tuple(found)


def pull_remote_states(client: RetentionAPIClient) -> tuple[dict[UUID, str], dict[UUID, str]]:
    """Apple's image and message lists (identifier -> review state): one call each.

    An item Apple lists without an identifier is skipped, with a warning:
    nothing can be done with it. An item without a review state, or with one
    that is not ``PENDING``, ``APPROVED`` or ``REJECTED``, counts as
    ``PENDING``, with a warning: Apple holds it, so sync does not upload it
    again, and it is not known to be approved, so no default points to it and
    no older version is deleted for it. The next sync reads the state again.
    """

    def states(kind: str, listed: Iterable[tuple[UUID | None, str | None]]) -> dict[UUID, str]:
        found: dict[UUID, str] = {}
        for ident, state in listed:
            if ident is None:
                logger.warning("Apple lists %s without an identifier; skipped", kind)
                continue
            if state is None or str(state) not in APPLE_STATES:
                logger.warning(
                    "Apple lists %s %s %s; counted as PENDING (held, not approved)",
                    kind,
                    ident,
                    "without a review state"
                    if state is None
                    else f"in review state {str(state)[:40]!r}, which sync does not know",
                )
                state = "PENDING"
            found[ident] = str(state)
        return found

    images = states(
        "an image",
        ((i.image_identifier, i.image_state) for i in client.get_image_list().image_identifiers),
    )
    messages = states(
        "a message",
        (
            (m.message_identifier, m.message_state)
            for m in client.get_message_list().message_identifiers
        ),
    )
    return images, messages


def managed_default_slots(catalogue: Catalogue, environment: str) -> list[Slot]:
    """The (product, locale) slots sync manages in ``environment``, sorted: the local
    defaults (expanded per locale) and the slots recorded as held at Apple (a default
    removed here but still at Apple is still ours to delete)."""
    local = {s.slot for s in catalogue.expand_defaults(lambda m: False)}
    return sorted(local | set(catalogue.apple_defaults(environment)))


def read_apple_defaults(
    client: RetentionAPIClient,
    slots: Iterable[Slot],
    *,
    progress: Callable[[int, int, float], None] | None = None,
) -> dict[Slot, UUID | None]:
    """What Apple holds as default per (product, locale): one Get Default Message per
    slot, in order; ``None`` where Apple answers ``DefaultMessageNotFoundError``.

    The client paces the calls (1 request/s in Production, one per 10 s in
    the sandbox). ``progress(done, total, eta_seconds)`` is called before
    each read and at the end, ``eta_seconds`` being the reads left times the
    client's interval. Records nothing; any other error of Apple's is raised.
    A slot whose answer holds no readable message identifier is left out,
    with a warning: Apple holds a default there, but not one known to be
    lost or changed, so what was recorded stands.
    """
    wanted = list(slots)
    interval = client.limit("get_default_message").interval
    held: dict[Slot, UUID | None] = {}
    for done, (product_id, locale) in enumerate(wanted):
        if progress is not None:
            progress(done, len(wanted), interval * (len(wanted) - done))
        try:
            answer = client.get_default_message(product_id, locale)
        except NotFoundError as e:
            if e.error_name != DEFAULT_NOT_FOUND:
                raise
            held[(product_id, locale)] = None
            continue
        if answer.message_identifier is None:
            logger.warning(
                "Apple's default of %s / %s has no readable messageIdentifier; "
                "what was recorded stands",
                product_id,
                locale,
            )
            continue
        held[(product_id, locale)] = answer.message_identifier
    if progress is not None:
        progress(len(wanted), len(wanted), 0.0)
    return held


def _slots_to_read(
    catalogue: Catalogue,
    environment: str,
    remote_messages: Mapping[UUID, str],
    verify_defaults: bool,
) -> list[Slot]:
    """Every managed slot with ``verify_defaults``; else those recorded with a message
    Apple no longer lists (Apple cannot hold that default any more)."""
    if verify_defaults:
        return managed_default_slots(catalogue, environment)
    return sorted(
        slot
        for slot, ident in catalogue.apple_defaults(environment).items()
        if ident not in remote_messages
    )


def plan_sync(
    catalogue: Catalogue,
    client: RetentionAPIClient,
    *,
    prune: bool = False,
    verify_defaults: bool = False,
    progress: Callable[[int, int, float], None] | None = None,
) -> SyncPlan:
    """The plan for the client's environment, from one Get Image List, one Get Message
    List and one Get Default Message per default read.

    Defaults are read whose recorded message Apple no longer lists, and
    with ``verify_defaults`` every slot of :func:`managed_default_slots`;
    ``progress`` follows the reads (see :func:`read_apple_defaults`). Nothing
    changes on either side (this is ``sync --dry-run``): what was read is in
    the plan (``read_defaults``, ``drift``), and :func:`run_sync` records it.
    """
    remote_images, remote_messages = pull_remote_states(client)
    env = client.environment
    slots = _slots_to_read(catalogue, env, remote_messages, verify_defaults)
    read = read_apple_defaults(client, slots, progress=progress) if slots else {}
    return make_plan(
        catalogue, env, remote_images, remote_messages, prune=prune, read_defaults=read
    )


def record_pulled_states(catalogue: Catalogue, plan: SyncPlan) -> int:
    """Record Apple's review states from the plan's lists, and the defaults it read
    where they drifted; the count of changes.

    Versions Apple no longer lists but that were recorded as uploaded go back
    to "not uploaded", so the next plan uploads them again; a default Apple
    lost or changed is recorded as Apple holds it, so the next plan (and
    ``status``) starts from the truth.
    """
    env = plan.environment
    changed = 0
    for drift in plan.drift:
        catalogue.record_apple_default(drift.product_id, drift.locale, env, drift.apple)
        changed += 1
    now = utcnow()
    for kind, versions, remote in (
        ("image", catalogue.image_versions(), plan.remote_images),
        ("message", catalogue.message_versions(), plan.remote_messages),
    ):
        states: dict[UUID, str | None] = {}
        for version in versions:
            if version.uuid in remote:
                states[version.uuid] = remote[version.uuid]
            elif version.state(env) is not None:
                states[version.uuid] = None
        if states:
            changed += catalogue.record_apple_states(
                kind,  # type: ignore[arg-type]
                env,
                states,
                seen_at=now,
            )
    return changed


# -- running --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """Where a running sync is: ``done`` of ``total`` steps, ``eta`` seconds left at least."""

    done: int
    total: int
    step: SyncStep | None
    eta: float


@dataclass(frozen=True)
class SyncResult:
    """What a sync did: the first ``plan``, the ``steps`` applied, and the final report."""

    environment: str
    plan: SyncPlan
    steps: tuple[SyncStep, ...]
    final: SyncPlan
    dry_run: bool = False
    taken_over_from: str | None = None

    @property
    def waiting(self) -> tuple[PlanNote, ...]:
        """What still waits for Apple's review after this sync."""
        return self.final.waiting

    @property
    def complete(self) -> bool:
        """Whether nothing is left to do or wait for."""
        return self.final.empty and not self.final.waiting

    def to_json(self) -> dict[str, Any]:
        """The result as JSON-ready data."""
        return {
            "environment": self.environment,
            "dry_run": self.dry_run,
            "plan": self.plan.to_json(),
            "applied": [s.to_json() for s in self.steps],
            "waiting": [n.to_json() for n in self.final.waiting],
            "rejected": [n.to_json() for n in self.final.rejected],
            "unknown": [n.to_json() for n in self.final.unknown],
            "remaining": [s.to_json() for s in self.final.steps],
        }


def _upload_body(message: StoredMessage) -> UploadMessageRequestBody:
    image = (
        UploadMessageImage(message.image_uuid, message.image_alt_text or "")
        if message.image_uuid is not None
        else None
    )
    return UploadMessageRequestBody(
        header=message.header,
        body=message.body,
        image=image,
        bullet_points=[
            BulletPoint(b.text, b.image_uuid, b.alt_text) for b in message.bullet_points
        ],
        header_position=message.header_position,
    )


def _apply(
    catalogue: Catalogue,
    client: RetentionAPIClient,
    step: SyncStep,
    images: Mapping[UUID, StoredImage],
    messages: Mapping[UUID, StoredMessage],
) -> None:
    """Make one step's call and record it; a step Apple already reflects counts as done."""
    env = client.environment
    assert step.uuid is not None
    if step.action == "upload_image":
        data = catalogue.image_data(step.uuid)
        image = images[step.uuid]
        assert data is not None
        try:
            client.upload_image(step.uuid, data, image.size)
        except ConflictError:
            logger.info("image %s is already at Apple (HTTP 409): counted as uploaded", step.uuid)
        catalogue.record_apple_state("image", step.uuid, env, "PENDING", uploaded_at=utcnow())
    elif step.action == "upload_message":
        message = messages[step.uuid]
        try:
            client.upload_message(step.uuid, _upload_body(message))
        except ConflictError:
            logger.info("message %s is already at Apple (HTTP 409): counted as uploaded", step.uuid)
        catalogue.record_apple_state("message", step.uuid, env, "PENDING", uploaded_at=utcnow())
    elif step.action == "configure_default":
        assert step.product_id is not None
        assert step.locale is not None
        client.configure_default_message(
            step.product_id, step.locale, DefaultConfigurationRequest(step.uuid)
        )
        catalogue.record_apple_default(step.product_id, step.locale, env, step.uuid)
    elif step.action == "delete_default":
        assert step.product_id is not None
        assert step.locale is not None
        client.delete_default_message(step.product_id, step.locale)
        catalogue.record_apple_default(step.product_id, step.locale, env, None)
    elif step.action == "delete_message":
        try:
            client.delete_message(step.uuid)
        except NotFoundError:
            logger.info("message %s was already gone at Apple", step.uuid)
        for slot, ident in catalogue.apple_defaults(env).items():
            if ident == step.uuid:
                catalogue.record_apple_default(slot[0], slot[1], env, None)
        catalogue.forget_apple_state("message", step.uuid, env)
    else:
        try:
            client.delete_image(step.uuid)
        except NotFoundError:
            logger.info("image %s was already gone at Apple", step.uuid)
        catalogue.forget_apple_state("image", step.uuid, env)


def run_sync(
    catalogue: Catalogue,
    client: RetentionAPIClient,
    *,
    prune: bool = False,
    dry_run: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    lock_heartbeat: float = DEFAULT_LOCK_HEARTBEAT,
    lock_release_timeout: float = DEFAULT_LOCK_RELEASE_TIMEOUT,
    owner: str | None = None,
    progress: Callable[[SyncProgress], None] | None = None,
    plan: SyncPlan | None = None,
    verify_defaults: bool = False,
    read_progress: Callable[[int, int, float], None] | None = None,
) -> SyncResult:
    """Bring Apple's ``client.environment`` in line with the catalogue; see the module doc.

    With ``dry_run`` only the plan is made (no lock, nothing recorded). A
    ``plan`` just made by :func:`plan_sync` may be passed to save pulling the
    lists again (the CLI shows it and asks first). ``verify_defaults`` reads
    every managed default from Apple first (see :func:`plan_sync`; ignored
    with ``plan``), ``read_progress`` follows those reads; the defaults read
    are recorded before any step. ``progress`` is called before each step
    and at the end. Raises :class:`SyncLockedError` when another sync of the
    environment runs, and the client's ``APIError`` when Apple fails: what
    succeeded is recorded, and the next run finishes.

    The lock's heartbeat moves every ``lock_heartbeat`` seconds while the
    sync runs (at most a quarter of ``lock_timeout``, after which a lock
    without heartbeat is taken over) and after each step. However the sync
    stops, the lock is given up; after an error or an interruption
    (:class:`SyncInterrupted`, ``KeyboardInterrupt``) over a new connection
    and within ``lock_release_timeout`` seconds.
    """
    env = client.environment

    def make() -> SyncPlan:
        return plan_sync(
            catalogue, client, prune=prune, verify_defaults=verify_defaults, progress=read_progress
        )

    if dry_run:
        plan = plan if plan is not None else make()
        return SyncResult(env, plan, (), plan, dry_run=True)
    lock = acquire_sync_lock(
        catalogue.engine,
        env,
        owner=owner,
        timeout=lock_timeout,
        release_timeout=lock_release_timeout,
    )
    with lock:
        lock.start_heartbeat(lock_heartbeat)
        first = make() if plan is None else plan
        record_pulled_states(catalogue, first)
        done: list[SyncStep] = []
        images = {i.uuid: i for i in catalogue.image_versions()}
        messages = {m.uuid: m for m in catalogue.message_versions()}

        def report(step: SyncStep | None, remaining: list[SyncStep]) -> None:
            if progress is not None:
                progress(
                    SyncProgress(
                        done=len(done),
                        total=len(done) + len(remaining),
                        step=step,
                        eta=_estimate(remaining, env, client),
                    )
                )

        def apply(steps: list[SyncStep]) -> None:
            for index, step in enumerate(steps):
                report(step, steps[index:])
                _apply(catalogue, client, step, images, messages)
                done.append(step)
                lock.refresh()

        uploads = list(first.uploads)
        apply(uploads)
        current = first
        if uploads:
            # Apple's review states of what just landed decide the defaults and removals
            # (the defaults read are recorded: only a default lost since then is read again).
            current = plan_sync(catalogue, client, prune=prune, progress=read_progress)
            record_pulled_states(catalogue, current)
        rest = [s for s in current.steps if not s.action.startswith("upload")]
        apply(rest)
        final = make_plan(catalogue, env, *_after(current, done), prune=prune)
        report(None, list(final.steps))
        return SyncResult(env, first, tuple(done), final, taken_over_from=lock.taken_over)


def _after(plan: SyncPlan, done: Iterable[SyncStep]) -> tuple[dict[UUID, str], dict[UUID, str]]:
    """Apple's lists as they are after ``done``, without asking again."""
    images = dict(plan.remote_images)
    messages = dict(plan.remote_messages)
    for step in done:
        if step.uuid is None:
            continue
        if step.action == "delete_image":
            images.pop(step.uuid, None)
        elif step.action == "delete_message":
            messages.pop(step.uuid, None)
    return images, messages


def wait_estimate(seconds: float) -> str:
    """A duration for people: ``42 s``, ``3 min 5 s``, ``1 h 2 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


# -- status ---------------------------------------------------------------------------


def sync_status(
    catalogue: Catalogue, environment: str, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT
) -> dict[str, Any]:
    """The catalogue beside Apple's state in ``environment``, as the last sync recorded it.

    Lists every current version and every older one still at Apple, the
    defaults (local name, the version Apple holds), the real-time URL, the
    last performance test, and who holds the sync lock (``None`` when no
    sync runs; stale after ``lock_timeout`` seconds without heartbeat). No
    call to Apple.
    """
    from flask_retention.appstore.golive import last_performance_test

    def versions(items: Iterable[StoredImage] | Iterable[StoredMessage]) -> list[dict[str, Any]]:
        return [
            {
                "name": v.name,
                **({"translation": v.locale or None} if isinstance(v, StoredMessage) else {}),
                "version": v.version,
                "uuid": str(v.uuid),
                "current": not v.retired,
                "apple_state": v.state(environment),
            }
            for v in items
            if not v.retired or v.state(environment) is not None
        ]

    messages = catalogue.message_versions()
    by_uuid = {m.uuid: m for m in messages}
    apple_defaults = catalogue.apple_defaults(environment)
    defaults = []
    for slot in catalogue.expand_defaults(
        lambda m: m.state(environment) == APPROVED, messages=messages
    ):
        ident = apple_defaults.get(slot.slot)
        held = by_uuid.get(ident) if ident is not None else None
        defaults.append(
            {
                "product_id": slot.product_id,
                "locale": slot.locale,
                "message": slot.message,
                "translation": None if slot.best is None else slot.best.locale or None,
                "apple": None
                if ident is None
                else {
                    "uuid": str(ident),
                    "name": None if held is None else held.name,
                    "version": None if held is None else held.version,
                    "translation": None if held is None else held.locale or None,
                },
            }
        )
    local_slots = {(d["product_id"], d["locale"]) for d in defaults}
    for (product_id, locale), ident in sorted(apple_defaults.items()):
        if (product_id, locale) not in local_slots:
            held = by_uuid.get(ident)
            defaults.append(
                {
                    "product_id": product_id,
                    "locale": locale,
                    "message": None,
                    "apple": {
                        "uuid": str(ident),
                        "name": None if held is None else held.name,
                        "version": None if held is None else held.version,
                    },
                }
            )
    test = last_performance_test(catalogue.engine, environment)
    lock = sync_lock_info(catalogue.engine, environment, timeout=lock_timeout)
    return {
        "environment": environment,
        "images": versions(catalogue.image_versions()),
        "messages": versions(messages),
        "defaults": defaults,
        "realtime_url": catalogue.realtime_url(environment),
        "last_performance_test": None if test is None else test.to_json(),
        "sync_lock": None if lock is None else lock.to_json(),
    }
