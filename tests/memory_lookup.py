"""A small in-memory :class:`~flask_retention.catalogue.lookup.CatalogueLookup` for tests.

A real implementation of the interface (names and UUIDs per environment,
defaults per product and locale), kept in dictionaries instead of the
catalogue's database snapshot.
"""

from __future__ import annotations

import uuid

from flask_retention.catalogue.lookup import MessageFacts, parse_uuid
from flask_retention.core.apple import MessageRef


class MemoryLookup:
    """Messages and defaults held in dictionaries, per environment."""

    def __init__(self) -> None:
        self._by_name: dict[tuple[str, str], MessageFacts] = {}
        self._by_uuid: dict[tuple[str, uuid.UUID], MessageFacts] = {}
        self._defaults: dict[tuple[str, str, str], uuid.UUID] = {}

    def add(
        self,
        name: str,
        *,
        state: str | None = "APPROVED",
        environment: str = "Sandbox",
        has_image: bool = False,
        image_state: str | None = None,
        has_bullets: bool = False,
    ) -> MessageFacts:
        """Add a message named ``name`` with a new UUID; returns its facts."""
        facts = MessageFacts(
            uuid=uuid.uuid4(),
            name=name,
            state=state,
            has_image=has_image,
            image_state=image_state,
            has_bullets=has_bullets,
        )
        self._by_name[environment, name] = facts
        self._by_uuid[environment, facts.uuid] = facts
        return facts

    def set_default(
        self, product_id: str, locale: str, facts: MessageFacts, environment: str = "Sandbox"
    ) -> None:
        """Make ``facts`` the default message for ``(product_id, locale)``."""
        self._defaults[environment, product_id, locale] = facts.uuid

    def add_default(
        self,
        name: str = "default",
        product_id: str = "com.example.monthly",
        locale: str = "en-US",
    ) -> MessageFacts:
        """Add an approved message and make it the default of ``(product_id, locale)``
        (by default, the signer's product and locale)."""
        facts = self.add(name)
        self.set_default(product_id, locale, facts)
        return facts

    loaded = True

    def ready(self, timeout: float) -> bool:
        return True

    def lookup(
        self, message: MessageRef, environment: str, locale: str | None = None
    ) -> MessageFacts | None:
        """Facts for a name or UUID; one text per name, whatever ``locale``."""
        known = parse_uuid(message)
        if known is not None:
            return self._by_uuid.get((environment, known))
        assert isinstance(message, str)
        return self._by_name.get((environment, message))

    def default_for(self, product_id: str, locale: str, environment: str) -> MessageFacts | None:
        mid = self._defaults.get((environment, product_id, locale))
        return None if mid is None else self._by_uuid.get((environment, mid))
