"""The interface between the real-time path and the message catalogue.

The endpoint resolves a selector's choice through a :class:`CatalogueLookup`
without touching the network or (usually) the database. The catalogue's
in-memory snapshot implements it; :class:`EmptyLookup` knows nothing and is
used until a catalogue is available.

A name looked up with the request's ``userLocale`` resolves to one of the
message's texts (its base text or a translation, each its own Apple
message) through the catalogue's fallback chain
(:func:`~flask_retention.catalogue.languages.pick_text`); the facts say which
text and why (:attr:`MessageFacts.locale_reason`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final, Protocol

from flask_retention.core.apple import MessageRef

#: The longest :attr:`MessageFacts.locale_reason` (the decision log's column length).
LOCALE_REASON_LENGTH: Final = 64


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What the request path needs to know of one message text in one environment.

    ``state`` is Apple's review state there (``"APPROVED"``, ``"PENDING"``,
    ``"REJECTED"``) or ``None`` when it was never uploaded; ``image_state``
    likewise for its image (``None`` also when it has none).

    ``locale`` is the text's locale (the catalogue's base locale for a base
    text; ``None`` when the lookup does not know it) and ``translated``
    whether its message has translations. For a name looked up with a
    locale, ``reason`` is the step of the fallback chain that picked this
    text (``"exact"``, ``"language"``, ``"region"``, ``"base"``), or
    ``"none"`` when no text may answer that locale: then these are the facts
    of the first text passed over (in review), or of the base text when the
    message has no text in the subscriber's language; ``skipped`` lists the
    better texts passed over because they are not usable yet. ``reason`` is
    ``None`` for a UUID, or a name looked up without a locale.
    """

    uuid: uuid.UUID
    name: str | None
    state: str | None
    has_image: bool = False
    image_state: str | None = None
    has_bullets: bool = False
    bullet_images_approved: bool = True
    locale: str | None = None
    translated: bool = False
    reason: str | None = None
    skipped: tuple[str, ...] = ()

    @property
    def answers(self) -> bool:
        """Whether the fallback chain let this text answer the locale it was looked up for
        (always, for a lookup without a locale)."""
        return self.reason != "none"

    @property
    def locale_reason(self) -> str | None:
        """Why this text answers (``"region; fr-CA pending"``: the step of the chain, then
        the better texts passed over), at most :data:`LOCALE_REASON_LENGTH` characters;
        ``None`` when looked up without a locale."""
        if self.reason is None:
            return None
        if not self.skipped:
            return self.reason
        text = f"{self.reason}; {', '.join(self.skipped)} pending"
        if len(text) <= LOCALE_REASON_LENGTH:
            return text
        return text[: LOCALE_REASON_LENGTH - 3] + "..."

    @property
    def approved(self) -> bool:
        """Whether Apple would show this message: it and all its images APPROVED (and the
        fallback chain let it answer)."""
        if self.state != "APPROVED" or self.reason == "none":
            return False
        if self.has_image and self.image_state != "APPROVED":
            return False
        return self.bullet_images_approved


class CatalogueLookup(Protocol):
    """Resolve names and defaults for the request path."""

    @property
    def loaded(self) -> bool:
        """Whether the catalogue is there to answer (a name it lacks is truly unknown)."""
        ...

    def ready(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the catalogue to be there; :attr:`loaded`."""
        ...

    def lookup(
        self, message: MessageRef, environment: str, locale: str | None = None
    ) -> MessageFacts | None:
        """Facts for a name or UUID in ``environment``; ``None`` when unknown.

        A name resolves to one text: with ``locale`` (the request's
        ``userLocale``), the one the catalogue's fallback chain picks among
        the texts usable in ``environment``; without, its base text. A text
        resolves to its newest version APPROVED in that environment, or to its
        newest version when none is approved (so the caller can say why it is
        not sent). A UUID resolves to that version, whatever the locale.
        """
        ...

    def default_for(self, product_id: str, locale: str, environment: str) -> MessageFacts | None:
        """The local default message for ``(product_id, locale)``, if any: the text the
        fallback chain picks for ``locale``, as sync configures it at Apple."""
        ...


class EmptyLookup:
    """A catalogue that knows no message: names never resolve, UUIDs pass through."""

    loaded = True

    def ready(self, timeout: float) -> bool:
        return True

    def lookup(
        self, message: MessageRef, environment: str, locale: str | None = None
    ) -> MessageFacts | None:
        return None

    def default_for(self, product_id: str, locale: str, environment: str) -> MessageFacts | None:
        return None


def parse_uuid(message: MessageRef) -> uuid.UUID | None:
    """``message`` as a UUID when it is one (a ``UUID`` or its string form), else ``None``."""
    if isinstance(message, uuid.UUID):
        return message
    try:
        return uuid.UUID(message)
    except ValueError:
        return None
