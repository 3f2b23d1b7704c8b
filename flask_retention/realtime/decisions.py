"""What the real-time endpoint decided for one request, and the signal that announces it.

Every request to the endpoint, answered or rejected, produces one
:class:`Decision` and sends :data:`retention_decided` with
``sender=app, decision=decision``. The decision log (and any host code)
listens to it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

from blinker import Namespace

from flask_retention.realtime.choices import RealtimeRequest

_signals = Namespace()

#: Sent once per real-time request with ``sender=app`` and ``decision=`` a :class:`Decision`.
retention_decided = _signals.signal("retention-decided")

Kind = Literal["message", "alternate_product", "promotional_offer", "none"]

FallbackReason = Literal[
    "no_selector",
    "no_choice",
    "selector_error",
    "timeout",
    "overloaded",
    "invalid_choice",
    "unknown_name",
    "catalogue_unavailable",
    "unapproved",
    "translation_pending",
    "no_translation",
    "not_allowed_for_kind",
    "offer_not_configured",
    "internal_error",
]

#: Why a verified request was answered with the fallback instead of the selector's choice.
FALLBACK_REASONS: Final[frozenset[str]] = frozenset(
    (
        "no_selector",  # no selector registered for the product
        "no_choice",  # the selector returned None or NoChoice
        "selector_error",  # the selector raised
        "timeout",  # the selector overran RETENTION_SELECTOR_TIMEOUT
        "overloaded",  # every selector worker was busy (stuck selectors)
        "invalid_choice",  # the selector returned something that is not a choice
        "unknown_name",  # a message name the catalogue does not know
        "catalogue_unavailable",  # a name, while this process could not load the catalogue
        "unapproved",  # a message known not to be APPROVED
        "translation_pending",  # every text that may answer the locale is still in review
        "no_translation",  # no text of the subscriber's language, and base_fallback is off
        "not_allowed_for_kind",  # image or bullets on a switch-plan / offer message
        "offer_not_configured",  # PromotionalOffer without the In-App Purchase key set
        "internal_error",  # a bug after verification; logged with its traceback
    )
)


@dataclass(slots=True)
class Decision:
    """One real-time request and what the endpoint answered.

    Fields the endpoint did not get to (a request rejected before its payload
    was verified) are ``None``. ``kind`` is what the ``200`` body holds
    (``"none"`` for ``{}`` and for rejections), ``message_id`` the message it
    names, ``fallback_reason`` why the selector's choice was not sent (one of
    :data:`FALLBACK_REASONS`), ``error`` the error code of a non-200 answer,
    ``experiment``/``variant`` those of a choice made by an experiment.
    ``answered_locale`` is the locale of the catalogue text answered (the base
    locale for a base text) and ``locale_reason`` why the fallback chain
    picked it (``"exact"``, ``"language"``, ``"region"``, ``"base"``, then
    ``"; fr-CA pending"`` for better texts passed over), or, when ``{}``
    answered, why no text could (``"none; fr-FR pending"``); both ``None``
    where no catalogue text was resolved.
    """

    received_at: datetime
    status: int = 200
    error: str | None = None
    request_identifier: uuid.UUID | None = None
    original_transaction_id: str | None = None
    app_apple_id: int | None = None
    product_id: str | None = None
    locale: str | None = None
    environment: str | None = None
    signed_date: datetime | None = None
    selector: str | None = None
    kind: Kind = "none"
    message_id: uuid.UUID | None = None
    fallback_reason: FallbackReason | None = None
    answered_locale: str | None = None
    locale_reason: str | None = None
    experiment: str | None = None
    variant: str | None = None
    latency_ms: float = 0.0
    started: float = field(default_factory=time.perf_counter, repr=False, compare=False)
    """``time.perf_counter()`` when the request arrived; ``latency_ms`` is measured from it."""

    def note_request(self, req: RealtimeRequest) -> None:
        """Copy the verified request's typed fields into the decision (never ``raw``)."""
        self.request_identifier = req.request_identifier
        self.original_transaction_id = req.original_transaction_id
        self.app_apple_id = req.app_apple_id
        self.product_id = req.product_id
        self.locale = req.locale
        self.environment = req.environment
        self.signed_date = req.signed_date

    def note_choice(self, choice: object) -> None:
        """Record the experiment and variant a choice is tagged with (even if the fallback
        then answers: an experiment counts every subscriber assigned to a variant)."""
        self.experiment = getattr(choice, "experiment", None)
        self.variant = getattr(choice, "variant", None)
