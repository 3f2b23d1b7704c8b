"""Apple's own names that every layer uses: environments and message references."""

from __future__ import annotations

import uuid
from typing import Final

#: The App Store environments, as Apple spells them.
ENVIRONMENTS: Final = ("Sandbox", "Production")

#: A message as a selector names it: a catalogue name, or a message UUID.
MessageRef = str | uuid.UUID
