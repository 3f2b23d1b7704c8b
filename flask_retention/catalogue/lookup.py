"""The interface between the real-time path and the message catalogue.

The endpoint resolves a selector's choice through a :class:`CatalogueLookup`
without touching the network or (usually) the database. The catalogue's
in-memory snapshot implements it; :class:`EmptyLookup` knows nothing and is
used until a catalogue is available.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from flask_retention.core.apple import MessageRef


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What the request path needs to know of one message in one environment.

    ``state`` is Apple's review state there (``"APPROVED"``, ``"PENDING"``,
    ``"REJECTED"``) or ``None`` when it was never uploaded; ``image_state``
    likewise for its image (``None`` also when it has none).
    """

    uuid: uuid.UUID
    name: str | None
    state: str | None
    has_image: bool = False
    image_state: str | None = None
    has_bullets: bool = False
    bullet_images_approved: bool = True

    @property
    def approved(self) -> bool:
        """Whether Apple would show this message: it and all its images APPROVED."""
        if self.state != "APPROVED":
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

    def lookup(self, message: MessageRef, environment: str) -> MessageFacts | None:
        """Facts for a name or UUID in ``environment``; ``None`` when unknown.

        A name resolves to its newest version APPROVED in that environment, or
        to its newest version when none is approved (so the caller can say why
        it is not sent).
        """
        ...

    def default_for(self, product_id: str, locale: str, environment: str) -> MessageFacts | None:
        """The local default message for ``(product_id, locale)``, if any."""
        ...


class EmptyLookup:
    """A catalogue that knows no message: names never resolve, UUIDs pass through."""

    loaded = True

    def ready(self, timeout: float) -> bool:
        return True

    def lookup(self, message: MessageRef, environment: str) -> MessageFacts | None:
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
