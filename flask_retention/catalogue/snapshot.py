"""The request path's in-memory view of the catalogue.

A :class:`CatalogueSnapshot` answers :class:`~flask_retention.catalogue.lookup.CatalogueLookup`
calls with dictionary lookups on an immutable view, never touching the
database. A daemon thread, started in the serving process by its first
real-time request or by ``Retention.warm_up`` (so that ``gunicorn --preload``
forks each start their own), loads the view, then checks the catalogue
version counter every ``RETENTION_CATALOGUE_REFRESH`` seconds and reloads the
view only when it changed. Requests that arrive before the first load wait
for it (:meth:`CatalogueSnapshot.ready`). Each refresh runs in a
:func:`~flask_retention.core.database.bounded` transaction, so a silent
database costs it a deadline, not the thread, and a connection that went bad
(read-only, shut down, lost) is replaced on the next tick. When the database
fails the last view keeps serving; the failure is logged once, with its cause,
and so is the recovery.
"""

from __future__ import annotations

import logging
import threading
import uuid
import weakref
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import sqlalchemy as sa

from flask_retention.catalogue.lookup import MessageFacts, parse_uuid
from flask_retention.catalogue.models import AppleState, BulletPoint, Default, Image, Message
from flask_retention.catalogue.store import read_version
from flask_retention.core.apple import ENVIRONMENTS, MessageRef
from flask_retention.core.database import bounded, failure_reason
from flask_retention.core.per_process import DaemonThread, PerProcess

logger = logging.getLogger(__name__)

APPROVED: Final = "APPROVED"


@dataclass(frozen=True, slots=True)
class CatalogueView:
    """One consistent, immutable view of the catalogue: plain dictionaries.

    ``names`` maps ``(environment, name)`` to the facts of the version that
    name resolves to there; ``uuids`` ``(environment, uuid.int)`` to every known
    version's facts (the integer: a ``uuid.UUID`` hashes in Python, an int in
    C); ``defaults`` ``(product_id, locale, environment)`` to the resolved
    default message.
    """

    version: int | None = None
    names: dict[tuple[str, str], MessageFacts] = field(default_factory=dict)
    uuids: dict[tuple[str, int], MessageFacts] = field(default_factory=dict)
    defaults: dict[tuple[str, str, str], MessageFacts] = field(default_factory=dict)

    def lookup(self, message: MessageRef, environment: str) -> MessageFacts | None:
        """Facts for a name or UUID in ``environment`` (a name wins over a UUID-like string)."""
        if isinstance(message, str):
            facts = self.names.get((environment, message))
            if facts is not None:
                return facts
            parsed = parse_uuid(message)
            if parsed is None:
                return None
            return self.uuids.get((environment, parsed.int))
        return self.uuids.get((environment, message.int))

    def default_for(self, product_id: str, locale: str, environment: str) -> MessageFacts | None:
        """The local default for a product and locale, resolved like a name."""
        return self.defaults.get((product_id, locale, environment))


EMPTY_VIEW: Final = CatalogueView()


def load_view(connection: sa.Connection) -> CatalogueView:
    """Read the whole catalogue and Apple's states into a :class:`CatalogueView`.

    A name resolves, per environment, to its newest version that Apple
    approved there (with its images), else to its newest version, so an
    edited message keeps serving its approved predecessor during review.
    Retired names (no current version) do not resolve; their UUIDs do.
    """
    version = read_version(connection)
    image_uuids: dict[int, uuid.UUID] = dict(
        connection.execute(sa.select(Image.id, Image.uuid)).all()
    )
    states: dict[tuple[str, uuid.UUID, str], str | None] = {
        (kind, key, env): state
        for kind, key, env, state in connection.execute(
            sa.select(AppleState.kind, AppleState.uuid, AppleState.environment, AppleState.state)
        )
    }
    bullets: dict[int, list[int]] = defaultdict(list)
    for bulleted, bullet_image in connection.execute(
        sa.select(BulletPoint.message_id, BulletPoint.image_id)
    ):
        bullets[bulleted].append(bullet_image)
    rows = connection.execute(
        sa.select(
            Message.id,
            Message.name,
            Message.version,
            Message.uuid,
            Message.image_id,
            Message.retired_at.is_(None),
        ).order_by(Message.name, Message.version.desc())
    )
    lineages: dict[str, list[tuple[int, uuid.UUID, int | None]]] = defaultdict(list)
    live: set[str] = set()
    for message_id, name, _, key, image_id, current in rows:
        lineages[name].append((message_id, key, image_id))
        if current:
            live.add(name)

    names: dict[tuple[str, str], MessageFacts] = {}
    uuids: dict[tuple[str, int], MessageFacts] = {}
    for environment in ENVIRONMENTS:
        for name, versions in lineages.items():
            chosen: MessageFacts | None = None
            newest: MessageFacts | None = None
            for message_id, key, image_id in versions:
                bullet_ids = bullets.get(message_id, ())
                facts = MessageFacts(
                    uuid=key,
                    name=name,
                    state=states.get(("message", key, environment)),
                    has_image=image_id is not None,
                    image_state=(
                        None
                        if image_id is None
                        else states.get(("image", image_uuids[image_id], environment))
                    ),
                    has_bullets=bool(bullet_ids),
                    bullet_images_approved=all(
                        states.get(("image", image_uuids[i], environment)) == APPROVED
                        for i in bullet_ids
                    ),
                )
                uuids[(environment, key.int)] = facts
                if newest is None:
                    newest = facts
                if chosen is None and facts.approved:
                    chosen = facts
            resolved = chosen or newest
            if name in live and resolved is not None:
                names[(environment, name)] = resolved

    defaults: dict[tuple[str, str, str], MessageFacts] = {}
    for product_id, locale, message_name in connection.execute(
        sa.select(Default.product_id, Default.locale, Default.message_name)
    ):
        for environment in ENVIRONMENTS:
            resolved = names.get((environment, message_name))
            if resolved is not None:
                defaults[(product_id, locale, environment)] = resolved
    return CatalogueView(version=version, names=names, uuids=uuids, defaults=defaults)


@dataclass(eq=False)
class _Refresher:
    """The refresh thread of one process, and the events and locks around it."""

    # Each made when the state is, in the serving process (gevent's when patched).
    attempted: threading.Event = field(default_factory=lambda: threading.Event())
    stop: threading.Event = field(default_factory=lambda: threading.Event())
    refresh_lock: threading.Lock = field(default_factory=lambda: threading.Lock())
    thread: DaemonThread = field(default_factory=lambda: DaemonThread("flask-retention-catalogue"))


def _refresh_loop(ref: weakref.ReferenceType[CatalogueSnapshot], refresher: _Refresher) -> None:
    while not refresher.stop.is_set():
        snapshot = ref()
        if snapshot is None:
            return
        snapshot._tick()
        refresher.attempted.set()
        interval = snapshot.interval
        del snapshot
        if refresher.stop.wait(interval):
            return


class CatalogueSnapshot:
    """A :class:`~flask_retention.catalogue.lookup.CatalogueLookup` refreshed in the background.

    ``engine`` is called (in the refresh thread) to get the database engine;
    ``deadline`` bounds each refresh (in seconds). :meth:`ready` starts the
    thread in this process and waits for its first load; until a load succeeds
    the snapshot knows no message and says so (:attr:`loaded`). Call
    :meth:`refresh` to load synchronously (at start-up, in tests) and
    :meth:`close` to stop the thread (the next :meth:`ready` starts it again).
    """

    def __init__(
        self, engine: Callable[[], sa.Engine], *, interval: float = 5.0, deadline: float = 5.0
    ) -> None:
        self._engine = engine
        self.interval = interval
        self.deadline = deadline
        self._view: CatalogueView = EMPTY_VIEW
        self._loaded = False
        self._failing = False
        self._refresher: PerProcess[_Refresher] = PerProcess(_Refresher)

    # -- CatalogueLookup ----------------------------------------------------

    @property
    def loaded(self) -> bool:
        """Whether a view was loaded from the database (the last one keeps serving)."""
        return self._loaded

    def ready(self, timeout: float) -> bool:
        """Start the refresh thread unless it runs, and wait at most ``timeout`` seconds
        for this process's first load attempt; :attr:`loaded`."""
        refresher = self.start()
        if not self._loaded:
            refresher.attempted.wait(timeout)
        return self._loaded

    def lookup(self, message: MessageRef, environment: str) -> MessageFacts | None:
        """Facts for a name or UUID in ``environment``; see :class:`CatalogueView`."""
        return self._view.lookup(message, environment)

    def default_for(self, product_id: str, locale: str, environment: str) -> MessageFacts | None:
        """The local default for a product and locale in ``environment``."""
        return self._view.defaults.get((product_id, locale, environment))

    # -- state ---------------------------------------------------------------

    @property
    def view(self) -> CatalogueView:
        """The view currently served (empty before the first successful load)."""
        return self._view

    @property
    def version(self) -> int | None:
        """The catalogue version of the view served; ``None`` before the first load."""
        return self._view.version

    def refresh(self) -> bool:
        """Check the version now and reload if it changed; ``True`` when it reloaded.

        Runs in the calling thread and raises database errors, and
        :class:`~flask_retention.core.database.DatabaseTimeout` after
        :attr:`deadline` seconds (the background thread logs them instead).
        """
        with self._refresher.get().refresh_lock:
            with bounded(self._engine(), self.deadline) as connection:
                if self._loaded and read_version(connection) == self._view.version:
                    return False
                view = load_view(connection)
            self._view = view
            self._loaded = True
            return True

    def _tick(self) -> None:
        try:
            reloaded = self.refresh()
        except Exception as e:  # the request path must never see this
            if not self._failing:
                self._failing = True
                logger.warning(
                    "flask-retention could not %s the catalogue: %s; %s; retrying every %g s.",
                    "refresh" if self._loaded else "load",
                    failure_reason(e),
                    f"still serving the last snapshot (catalogue version {self._view.version})"
                    if self._loaded
                    else "message names get the fallback (catalogue_unavailable) until it loads",
                    self.interval,
                )
            return
        if self._failing:
            self._failing = False
            logger.warning(
                "flask-retention reads the catalogue again (version %s).", self._view.version
            )
        if reloaded:
            logger.debug("catalogue snapshot reloaded (version %s)", self._view.version)

    # -- thread ----------------------------------------------------------------

    def start(self) -> _Refresher:
        """Start the refresh thread in this process, unless it is running."""
        refresher = self._refresher.get()
        refresher.thread.start(
            _refresh_loop, weakref.ref(self), refresher, before=refresher.stop.clear
        )
        return refresher

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop the refresh thread; safe to repeat.

        The last view keeps answering; a later :meth:`ready` starts a new thread.
        """
        refresher = self._refresher.peek()
        if refresher is None:
            return
        refresher.thread.stop(refresher.stop.set, timeout)
