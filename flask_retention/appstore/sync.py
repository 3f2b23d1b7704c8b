"""Sync the catalogue with Apple: plan, then upload, pull review states, configure, delete.

:func:`plan_sync` compares the local catalogue (and what sync recorded of
Apple's state) with one Get Image List and one Get Message List of the
environment, and returns a :class:`SyncPlan`; :func:`run_sync` applies it in
dependency order (images, messages, defaults; removals in reverse), records
each step as it succeeds, and holds a lock row in the database so that one
sync at a time talks to Apple for an environment.

A sync that stops anywhere (crash, Ctrl-C, network loss) is finished by
running it again: the plan is always made from Apple's lists, so anything
that landed is not uploaded twice, and a sync after a complete one makes no
call that writes.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid as uuid_mod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal
from uuid import UUID

import sqlalchemy as sa

from flask_retention.appstore.client import (
    BulletPoint,
    ConflictError,
    DefaultConfigurationRequest,
    NotFoundError,
    RetentionAPIClient,
    UploadMessageImage,
    UploadMessageRequestBody,
)
from flask_retention.catalogue.models import SyncLock, utcnow
from flask_retention.catalogue.store import Catalogue, StoredImage, StoredMessage
from flask_retention.core.errors import RetentionError

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "PlanNote",
    "SyncLockHandle",
    "SyncLockedError",
    "SyncPlan",
    "SyncProgress",
    "SyncResult",
    "SyncStep",
    "acquire_sync_lock",
    "make_plan",
    "plan_sync",
    "run_sync",
]

logger = logging.getLogger(__name__)

#: Seconds after its last heartbeat that a sync lock counts as abandoned and is taken over.
DEFAULT_LOCK_TIMEOUT: Final = 900.0

APPROVED: Final = "APPROVED"

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


class SyncLockedError(RetentionError):
    """Another sync holds the lock of this environment (and its heartbeat is fresh)."""

    def __init__(self, environment: str, owner: str, since: datetime | None) -> None:
        self.environment = environment
        self.owner = owner
        self.since = since
        when = f" since {since.isoformat(timespec='seconds')}" if since is not None else ""
        super().__init__(
            f"another sync of {environment} is running ({owner}{when}); wait for it to finish, "
            "or, if it died, wait until its lock is 15 minutes old"
        )


# -- the plan -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyncStep:
    """One change sync makes at Apple.

    ``name`` and ``version`` are the catalogue's (``None`` for a remote item
    unknown here); defaults carry ``product_id`` and ``locale``; ``uuid`` is
    the image or message identifier at Apple.
    """

    action: Action
    uuid: UUID | None = None
    name: str | None = None
    version: int | None = None
    product_id: str | None = None
    locale: str | None = None

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
                return f"{slot} -> {self.name} v{self.version}"
            return slot
        if self.name is None:
            return f"{self.uuid} (unknown here)"
        return f"{self.name} v{self.version}"

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
        }


@dataclass(frozen=True, slots=True)
class PlanNote:
    """Something sync reports but does not change: waiting for review, rejected, unknown."""

    kind: str
    name: str | None
    version: int | None
    uuid: UUID | None
    state: str | None
    reason: str

    def describe(self) -> str:
        """One line for people."""
        what = f"{self.kind} {self.name} v{self.version}" if self.name else f"{self.kind}"
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
        }


@dataclass(frozen=True)
class SyncPlan:
    """What a sync would do in ``environment``, and what it would only report.

    ``steps`` are in the order they run: uploads (images, then messages),
    defaults to configure, then removals (defaults, messages, images).
    ``remote_images`` and ``remote_messages`` are Apple's lists the plan was
    made from (identifier -> review state).
    """

    environment: str
    steps: tuple[SyncStep, ...]
    waiting: tuple[PlanNote, ...] = ()
    rejected: tuple[PlanNote, ...] = ()
    unknown: tuple[PlanNote, ...] = ()
    prune: bool = False
    remote_images: Mapping[UUID, str] = field(default_factory=dict, repr=False)
    remote_messages: Mapping[UUID, str] = field(default_factory=dict, repr=False)

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
) -> SyncPlan:
    """The plan for ``environment`` given Apple's lists (identifier -> state); no calls.

    Defaults point to the newest version of their message that Apple
    approved (with its images); an older version is deleted only once a newer
    one is approved and no default of Apple's points to it; an image once no
    message left at Apple uses it. Remote items unknown here are deleted only
    with ``prune``.
    """
    images = catalogue.image_versions()
    messages = catalogue.message_versions()
    defaults = catalogue.list_defaults()
    apple_defaults = catalogue.apple_defaults(environment)
    known_images = {i.uuid for i in images}
    known_messages = {m.uuid for m in messages}

    steps: list[SyncStep] = []
    waiting: list[PlanNote] = []
    rejected: list[PlanNote] = []
    unknown: list[PlanNote] = []

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
            steps.append(SyncStep("upload_message", message.uuid, message.name, message.version))
        if state is not None and state != APPROVED:
            note = PlanNote(
                "message", message.name, message.version, message.uuid, state, _state_text(state)
            )
            (rejected if state == "REJECTED" else waiting).append(note)

    # Defaults: the newest approved version of the message, once approved.
    versions: dict[str, list[StoredMessage]] = {}
    for message in messages:
        versions.setdefault(message.name, []).append(message)
    for lineage in versions.values():
        lineage.sort(key=lambda m: m.version, reverse=True)
    projected = dict(apple_defaults)
    for default in defaults:
        slot = (default.product_id, default.locale)
        lineage = versions.get(default.message, [])
        target = next((m for m in lineage if _approved(m, remote_messages, remote_images)), None)
        current = lineage[0] if lineage and not lineage[0].retired else None
        if current is not None and current is not target:
            reason = (
                f"default {default.product_id} / {default.locale} waits for "
                f"{default.message} v{current.version} "
                f"({_state_text(remote_messages.get(current.uuid))}, images included)"
            )
            waiting.append(
                PlanNote(
                    "default",
                    default.message,
                    current.version,
                    current.uuid,
                    remote_messages.get(current.uuid),
                    reason,
                )
            )
        if target is not None and projected.get(slot) != target.uuid:
            steps.append(
                SyncStep(
                    "configure_default",
                    target.uuid,
                    target.name,
                    target.version,
                    default.product_id,
                    default.locale,
                )
            )
            projected[slot] = target.uuid
    local_slots = {(d.product_id, d.locale) for d in defaults}
    for slot in sorted(set(apple_defaults) - local_slots):
        steps.append(
            SyncStep("delete_default", apple_defaults[slot], product_id=slot[0], locale=slot[1])
        )
        projected.pop(slot)

    # Removals: messages no default points to and that a newer approved version replaces.
    kept_by_default = set(projected.values())
    removed_messages: set[UUID] = set()
    for name, lineage in sorted(versions.items()):
        retired_name = not lineage or lineage[0].retired
        for index, message in enumerate(lineage):
            if message.uuid not in remote_messages or not message.retired:
                continue
            if message.uuid in kept_by_default:
                continue
            newer_approved = any(
                _approved(m, remote_messages, remote_images) for m in lineage[:index]
            )
            if retired_name or newer_approved:
                steps.append(SyncStep("delete_message", message.uuid, name, message.version))
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
    )


def _pull(client: RetentionAPIClient) -> tuple[dict[UUID, str], dict[UUID, str]]:
    """Apple's image and message lists: one call each."""
    images = {
        i.image_identifier: str(i.image_state) for i in client.get_image_list().image_identifiers
    }
    messages = {
        m.message_identifier: str(m.message_state)
        for m in client.get_message_list().message_identifiers
    }
    return images, messages


def plan_sync(catalogue: Catalogue, client: RetentionAPIClient, *, prune: bool = False) -> SyncPlan:
    """The plan for the client's environment, from one Get Image List and one Get Message List.

    Nothing changes on either side (this is ``sync --dry-run``).
    """
    remote_images, remote_messages = _pull(client)
    return make_plan(catalogue, client.environment, remote_images, remote_messages, prune=prune)


def record_pulled_states(catalogue: Catalogue, plan: SyncPlan) -> int:
    """Record Apple's review states from the plan's lists; the count of changes.

    Versions Apple no longer lists but that were recorded as uploaded go back
    to "not uploaded", so the next plan uploads them again.
    """
    env = plan.environment
    changed = 0
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


# -- the lock -------------------------------------------------------------------------


def _locks() -> sa.Table:
    table = SyncLock.__table__
    assert isinstance(table, sa.Table)
    return table


class SyncLockHandle:
    """A held sync lock; :meth:`refresh` after each step, :meth:`release` at the end."""

    def __init__(self, engine: sa.Engine, environment: str, owner: str) -> None:
        self.engine = engine
        self.environment = environment
        self.owner = owner
        self.taken_over: str | None = None

    def refresh(self) -> None:
        """Move the heartbeat on; raise :class:`SyncLockedError` if another sync took the lock."""
        table = _locks()
        with self.engine.begin() as connection:
            updated = connection.execute(
                sa.update(table)
                .where(table.c.environment == self.environment, table.c.owner == self.owner)
                .values(heartbeat_at=utcnow())
            )
            if updated.rowcount != 1:
                row = connection.execute(
                    sa.select(table.c.owner, table.c.acquired_at).where(
                        table.c.environment == self.environment
                    )
                ).first()
                raise SyncLockedError(
                    self.environment,
                    row.owner if row is not None else "nobody",
                    row.acquired_at if row is not None else None,
                )

    def release(self) -> None:
        """Give the lock up (only ours: a lock another sync took over stays)."""
        table = _locks()
        with self.engine.begin() as connection:
            connection.execute(
                sa.delete(table).where(
                    table.c.environment == self.environment, table.c.owner == self.owner
                )
            )

    def __enter__(self) -> SyncLockHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def default_owner() -> str:
    """Who holds a lock, for the message another sync shows: host, process, a nonce."""
    return f"{socket.gethostname()} pid {os.getpid()} ({uuid_mod.uuid4().hex[:8]})"


def acquire_sync_lock(
    engine: sa.Engine,
    environment: str,
    *,
    owner: str | None = None,
    timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> SyncLockHandle:
    """Take the sync lock of ``environment``, or raise :class:`SyncLockedError`.

    A lock whose heartbeat is older than ``timeout`` seconds belongs to a sync
    that died; it is taken over (compare-and-set on its owner and heartbeat,
    so two takers cannot both win).
    """
    table = _locks()
    owner = owner or default_owner()
    for _attempt in range(3):
        now = utcnow()
        try:
            with engine.begin() as connection:
                connection.execute(
                    sa.insert(table).values(
                        environment=environment, owner=owner, acquired_at=now, heartbeat_at=now
                    )
                )
            return SyncLockHandle(engine, environment, owner)
        except sa.exc.IntegrityError:
            pass
        with engine.begin() as connection:
            row = connection.execute(
                sa.select(table.c.owner, table.c.acquired_at, table.c.heartbeat_at).where(
                    table.c.environment == environment
                )
            ).first()
            if row is None:
                continue
            if row.heartbeat_at > now - timedelta(seconds=timeout):
                raise SyncLockedError(environment, row.owner, row.acquired_at)
            taken = connection.execute(
                sa.update(table)
                .where(
                    table.c.environment == environment,
                    table.c.owner == row.owner,
                    table.c.heartbeat_at == row.heartbeat_at,
                )
                .values(owner=owner, acquired_at=now, heartbeat_at=now)
            )
            if taken.rowcount == 1:
                logger.warning(
                    "took over the stale sync lock of %s from %s (no heartbeat since %s)",
                    environment,
                    row.owner,
                    row.heartbeat_at.isoformat(timespec="seconds"),
                )
                handle = SyncLockHandle(engine, environment, owner)
                handle.taken_over = row.owner
                return handle
    raise SyncLockedError(environment, "another sync", None)


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
    owner: str | None = None,
    progress: Callable[[SyncProgress], None] | None = None,
    plan: SyncPlan | None = None,
) -> SyncResult:
    """Bring Apple's ``client.environment`` in line with the catalogue; see the module doc.

    With ``dry_run`` only the plan is made (no lock, nothing recorded). A
    ``plan`` just made by :func:`plan_sync` may be passed to save pulling the
    lists again (the CLI shows it and asks first). ``progress`` is called
    before each step and at the end. Raises :class:`SyncLockedError` when
    another sync of the environment runs, and the client's ``APIError`` when
    Apple fails: what succeeded is recorded, and the next run finishes.
    """
    env = client.environment
    if dry_run:
        plan = plan if plan is not None else plan_sync(catalogue, client, prune=prune)
        return SyncResult(env, plan, (), plan, dry_run=True)
    lock = acquire_sync_lock(catalogue.engine, env, owner=owner, timeout=lock_timeout)
    with lock:
        first = plan_sync(catalogue, client, prune=prune) if plan is None else plan
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
            # Apple's review states of what just landed decide the defaults and removals.
            current = plan_sync(catalogue, client, prune=prune)
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


def sync_status(catalogue: Catalogue, environment: str) -> dict[str, Any]:
    """The catalogue beside Apple's state in ``environment``, as the last sync recorded it.

    Lists every current version and every older one still at Apple, the
    defaults (local name, the version Apple holds), the real-time URL and
    the last performance test. No call to Apple.
    """
    from flask_retention.appstore.golive import last_performance_test

    def versions(items: Iterable[StoredImage] | Iterable[StoredMessage]) -> list[dict[str, Any]]:
        return [
            {
                "name": v.name,
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
    for default in catalogue.list_defaults():
        ident = apple_defaults.get((default.product_id, default.locale))
        held = by_uuid.get(ident) if ident is not None else None
        defaults.append(
            {
                "product_id": default.product_id,
                "locale": default.locale,
                "message": default.message,
                "apple": None
                if ident is None
                else {
                    "uuid": str(ident),
                    "name": None if held is None else held.name,
                    "version": None if held is None else held.version,
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
    return {
        "environment": environment,
        "images": versions(catalogue.image_versions()),
        "messages": versions(messages),
        "defaults": defaults,
        "realtime_url": catalogue.realtime_url(environment),
        "last_performance_test": None if test is None else test.to_json(),
    }
