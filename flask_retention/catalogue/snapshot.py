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
from dataclasses import dataclass, field, replace
from typing import Final

import sqlalchemy as sa

from flask_retention.catalogue.entries import (
    DefaultEntry,
    LanguageSettings,
    TranslationsDefaultEntry,
)
from flask_retention.catalogue.languages import chooser_for, pick_text
from flask_retention.catalogue.locales import Chooser
from flask_retention.catalogue.lookup import MessageFacts, parse_uuid
from flask_retention.catalogue.models import (
    AppleState,
    BulletPoint,
    Default,
    Image,
    Languages,
    Message,
    TranslationsDefault,
)
from flask_retention.catalogue.store import (
    StoredBulletPoint,
    StoredMessage,
    expand_defaults,
    read_version,
)
from flask_retention.core.apple import ENVIRONMENTS, MessageRef
from flask_retention.core.database import bounded, failure_reason
from flask_retention.core.per_process import DaemonThread, PerProcess

logger = logging.getLogger(__name__)

APPROVED: Final = "APPROVED"


@dataclass(frozen=True, slots=True)
class MessageTexts:
    """The live texts of one message in one environment, for the fallback chain.

    ``facts`` maps each text's locale (the base text's under the base locale)
    to the facts of the version it resolves to (the newest usable one, else
    the newest); ``available`` to whether that version is usable (APPROVED,
    images included); ``translated`` whether the message has translations.
    """

    facts: dict[str, MessageFacts]
    available: dict[str, bool]
    translated: bool


@dataclass(frozen=True, slots=True)
class CatalogueView:
    """One consistent, immutable view of the catalogue: plain dictionaries.

    ``names`` maps ``(environment, name)`` to the facts of the version the
    name's base text resolves to there, ``texts`` to the message's live
    texts (:class:`MessageTexts`), picked among per request's locale with
    ``chooser``; ``uuids`` ``(environment, uuid.int)`` to every known
    version's facts (the integer: a ``uuid.UUID`` hashes in Python, an int in
    C); ``defaults`` ``(product_id, locale, environment)`` to the default's
    text for that exact locale, expanded as sync expands it
    (:func:`~flask_retention.catalogue.store.expand_defaults`). A pick is a
    walk over the few candidates ``chooser`` worked out when the view was
    loaded, so nothing of it is remembered per request.
    """

    version: int | None = None
    names: dict[tuple[str, str], MessageFacts] = field(default_factory=dict)
    uuids: dict[tuple[str, int], MessageFacts] = field(default_factory=dict)
    defaults: dict[tuple[str, str, str], MessageFacts] = field(default_factory=dict)
    texts: dict[tuple[str, str], MessageTexts] = field(default_factory=dict)
    chooser: Chooser | None = None

    def lookup(
        self, message: MessageRef, environment: str, locale: str | None = None
    ) -> MessageFacts | None:
        """Facts for a name or UUID in ``environment`` (a name wins over a UUID-like
        string); with ``locale``, a name resolves through the fallback chain."""
        if isinstance(message, str):
            if locale is not None:
                facts = self._pick(environment, message, locale)
            else:
                facts = self.names.get((environment, message))
            if facts is not None:
                return facts
            parsed = parse_uuid(message)
            if parsed is None:
                return None
            return self.uuids.get((environment, parsed.int))
        return self.uuids.get((environment, message.int))

    def _pick(self, environment: str, name: str, locale: str) -> MessageFacts | None:
        texts = self.texts.get((environment, name))
        if texts is None or self.chooser is None:
            return None
        pick = pick_text(self.chooser, locale, texts.available, translated=texts.translated)
        skipped = tuple(code for code, _ in pick.skipped)
        if pick.locale is not None:
            chosen = texts.facts[pick.locale]
        elif skipped:
            chosen = texts.facts[skipped[0]]
        else:  # no text of the subscriber's language: the base text's facts, marked as such
            chosen = texts.facts.get(self.chooser.base_locale) or next(iter(texts.facts.values()))
        return replace(chosen, reason=pick.reason, skipped=skipped)

    def default_for(self, product_id: str, locale: str, environment: str) -> MessageFacts | None:
        """The local default for a product and locale, resolved as sync resolves it."""
        return self.defaults.get((product_id, locale, environment))


EMPTY_VIEW: Final = CatalogueView()


def _read_languages(connection: sa.Connection) -> LanguageSettings:
    row = connection.execute(
        sa.select(Languages.base_locale, Languages.base_fallback, Languages.chain)
    ).first()
    if row is None:
        return LanguageSettings()
    base_locale, base_fallback, chain = row
    return LanguageSettings(
        base_locale=base_locale,
        base_fallback=bool(base_fallback),
        chain={str(k): tuple(v) for k, v in (chain or {}).items()},
    )


def load_view(connection: sa.Connection) -> CatalogueView:
    """Read the whole catalogue and Apple's states into a :class:`CatalogueView`.

    Each text of a message (its base text, each translation) resolves, per
    environment, to its newest version that Apple approved there (with its
    images), else to its newest version, so an edited text keeps serving its
    approved predecessor during review. Retired texts (no current version) do
    not resolve; their UUIDs do. Defaults are expanded per exact locale with
    the texts' usability in each environment, as sync expands them.
    """
    version = read_version(connection)
    languages = _read_languages(connection)
    base_locale = languages.base_locale
    images: dict[int, tuple[str, uuid.UUID]] = {
        image_id: (name, key)
        for image_id, name, key in connection.execute(sa.select(Image.id, Image.name, Image.uuid))
    }
    states: dict[tuple[str, uuid.UUID, str], str | None] = {
        (kind, key, env): state
        for kind, key, env, state in connection.execute(
            sa.select(AppleState.kind, AppleState.uuid, AppleState.environment, AppleState.state)
        )
    }
    bullets: dict[int, list[StoredBulletPoint]] = defaultdict(list)
    bullet_images: dict[int, list[uuid.UUID]] = defaultdict(list)
    for bulleted, text, bullet_image, alt_text in connection.execute(
        sa.select(
            BulletPoint.message_id, BulletPoint.text, BulletPoint.image_id, BulletPoint.alt_text
        ).order_by(BulletPoint.message_id, BulletPoint.position)
    ):
        image_name, image_uuid = images[bullet_image]
        bullets[bulleted].append(
            StoredBulletPoint(text=text, image=image_name, image_uuid=image_uuid, alt_text=alt_text)
        )
        bullet_images[bulleted].append(image_uuid)
    rows = connection.execute(
        sa.select(
            Message.id,
            Message.name,
            Message.locale,
            Message.version,
            Message.uuid,
            Message.header,
            Message.body,
            Message.image_id,
            Message.image_alt_text,
            Message.header_position,
            Message.created_at,
            Message.retired_at,
        ).order_by(Message.name, Message.locale, Message.version.desc())
    )
    # Each text's versions, newest first: (name, text locale) -> [(version, bullet images)].
    lineages: dict[tuple[str, str], list[tuple[StoredMessage, list[uuid.UUID]]]] = defaultdict(list)
    versions: list[StoredMessage] = []
    for row in rows:
        image = None if row.image_id is None else images[row.image_id]
        stored = StoredMessage(
            name=row.name,
            version=row.version,
            uuid=row.uuid,
            header=row.header,
            body=row.body,
            image=None if image is None else image[0],
            image_uuid=None if image is None else image[1],
            image_alt_text=row.image_alt_text,
            header_position=row.header_position,
            bullet_points=tuple(bullets.get(row.id, ())),
            created_at=row.created_at,
            retired_at=row.retired_at,
            locale=row.locale,
        )
        versions.append(stored)
        lineages[(row.name, row.locale or base_locale)].append(
            (stored, bullet_images.get(row.id, []))
        )
    translated_names = {name for name, locale in lineages if locale != base_locale}

    names: dict[tuple[str, str], MessageFacts] = {}
    uuids: dict[tuple[str, int], MessageFacts] = {}
    texts: dict[tuple[str, str], MessageTexts] = {}
    for environment in ENVIRONMENTS:
        for (name, locale), lineage in lineages.items():
            translated = name in translated_names
            chosen: MessageFacts | None = None
            newest: MessageFacts | None = None
            for stored, bullet_uuids in lineage:
                facts = MessageFacts(
                    uuid=stored.uuid,
                    name=name,
                    state=states.get(("message", stored.uuid, environment)),
                    has_image=stored.image_uuid is not None,
                    image_state=(
                        None
                        if stored.image_uuid is None
                        else states.get(("image", stored.image_uuid, environment))
                    ),
                    has_bullets=bool(bullet_uuids),
                    bullet_images_approved=all(
                        states.get(("image", key, environment)) == APPROVED for key in bullet_uuids
                    ),
                    locale=locale,
                    translated=translated,
                )
                uuids[(environment, stored.uuid.int)] = facts
                if newest is None:
                    newest = facts
                if chosen is None and facts.approved:
                    chosen = facts
            resolved = chosen or newest
            if resolved is None or lineage[0][0].retired:
                continue
            message_texts = texts.get((environment, name))
            if message_texts is None:
                message_texts = texts[(environment, name)] = MessageTexts({}, {}, translated)
            message_texts.facts[locale] = resolved
            message_texts.available[locale] = chosen is not None
            if locale == base_locale:
                names[(environment, name)] = resolved

    defaults: dict[tuple[str, str, str], MessageFacts] = {}
    exact = [
        DefaultEntry(product_id=product_id, locale=locale, message=message)
        for product_id, locale, message in connection.execute(
            sa.select(Default.product_id, Default.locale, Default.message_name)
        )
    ]
    every = [
        TranslationsDefaultEntry(product_id=product_id, message=message)
        for product_id, message in connection.execute(
            sa.select(TranslationsDefault.product_id, TranslationsDefault.message_name)
        )
    ]
    if exact or every:
        for environment in ENVIRONMENTS:

            def usable(stored: StoredMessage, environment: str = environment) -> bool:
                facts = uuids.get((environment, stored.uuid.int))
                return facts is not None and facts.approved

            for slot in expand_defaults(exact, every, versions, usable, languages):
                if not slot.served:
                    continue  # the chain cannot serve the locale: Apple gets no default there
                shown = slot.target or slot.best
                assert shown is not None
                defaults[(slot.product_id, slot.locale, environment)] = replace(
                    uuids[(environment, shown.uuid.int)],
                    reason=slot.pick.reason,
                    skipped=tuple(code for code, _ in slot.pick.skipped),
                )
    return CatalogueView(
        version=version,
        names=names,
        uuids=uuids,
        defaults=defaults,
        texts=texts,
        chooser=chooser_for(languages),
    )


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

    def lookup(
        self, message: MessageRef, environment: str, locale: str | None = None
    ) -> MessageFacts | None:
        """Facts for a name or UUID in ``environment`` (with ``locale``, a name resolves
        through the fallback chain); see :class:`CatalogueView`."""
        return self._view.lookup(message, environment, locale)

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
