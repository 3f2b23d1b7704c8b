"""What a selector receives (:class:`RealtimeRequest`) and what it returns."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from flask_retention.core.apple import MessageRef

BILLING_PLAN_TYPES: Final = ("BILLED_UPFRONT", "MONTHLY")

BillingPlanType = Literal["BILLED_UPFRONT", "MONTHLY"]


@dataclass(frozen=True, slots=True)
class RealtimeRequest:
    """A verified ``Get Retention Message`` request, as the selector sees it.

    The typed fields are parsed once, by the endpoint's schema. ``raw`` is the
    decoded payload: the selector gets a copy of its own, so nothing a
    selector does to it changes what the endpoint checks or records.
    """

    original_transaction_id: str
    app_apple_id: int
    product_id: str
    locale: str
    request_identifier: uuid.UUID
    environment: str
    signed_date: datetime
    raw: dict[str, Any] = field(repr=False, compare=False)


def _check_tag(experiment: object, variant: object) -> None:
    if experiment is None and variant is None:
        return
    if (experiment is None) != (variant is None) or not all(
        v is None or (isinstance(v, str) and v) for v in (experiment, variant)
    ):
        raise TypeError("experiment and variant go together: give both (non-empty) or neither")


def _check_message(message: object) -> None:
    if isinstance(message, uuid.UUID):
        return
    if not isinstance(message, str) or not message.strip():
        raise TypeError(
            "message must be a catalogue name or a message UUID (str or uuid.UUID), "
            f"not {message!r}"
        )


def _check_choice(choice: Message | SwitchPlan | PromotionalOffer) -> None:
    """The checks every choice with a message makes."""
    _check_message(choice.message)
    _check_tag(choice.experiment, choice.variant)


@dataclass(frozen=True, slots=True)
class Message:
    """Show a text message (with its image and bullet points, if it has them)."""

    message: MessageRef
    experiment: str | None = field(default=None, kw_only=True)
    variant: str | None = field(default=None, kw_only=True)
    """The experiment and variant that chose it (see :meth:`Retention.experiment`), which
    the decision records."""

    def __post_init__(self) -> None:
        _check_choice(self)


@dataclass(frozen=True, slots=True)
class SwitchPlan:
    """Suggest another subscription of the same group (Apple's ``alternateProduct``)."""

    message: MessageRef
    product_id: str
    billing_plan_type: BillingPlanType | None = None
    experiment: str | None = field(default=None, kw_only=True)
    variant: str | None = field(default=None, kw_only=True)
    """The experiment and variant that chose it (see :meth:`Retention.experiment`), which
    the decision records."""

    def __post_init__(self) -> None:
        _check_choice(self)
        if not isinstance(self.product_id, str) or not self.product_id:
            raise TypeError("SwitchPlan needs the product_id of the plan to suggest")
        if self.billing_plan_type is not None and self.billing_plan_type not in BILLING_PLAN_TYPES:
            raise ValueError(
                f"billing_plan_type must be one of {', '.join(BILLING_PLAN_TYPES)} or None, "
                f"not {self.billing_plan_type!r}"
            )


@dataclass(frozen=True, slots=True)
class PromotionalOffer:
    """Offer a promotional offer, signed with the configured In-App Purchase key.

    Give ``offer_id`` (and optionally ``product_id``; the request's product
    otherwise) and the extension signs a ``promotionalOfferSignatureV2``; or
    give a ready ``signature_v2`` to pass it through as it is.
    """

    message: MessageRef
    offer_id: str | None = None
    product_id: str | None = None
    signature_v2: str | None = field(default=None, kw_only=True, repr=False)
    experiment: str | None = field(default=None, kw_only=True)
    variant: str | None = field(default=None, kw_only=True)
    """The experiment and variant that chose it (see :meth:`Retention.experiment`), which
    the decision records."""

    def __post_init__(self) -> None:
        _check_choice(self)
        if (self.offer_id is None) == (self.signature_v2 is None):
            raise TypeError("PromotionalOffer needs exactly one of offer_id or signature_v2")
        if self.signature_v2 is not None and self.product_id is not None:
            raise TypeError("product_id is signed into signature_v2; do not give it beside one")


@dataclass(frozen=True, slots=True)
class NoChoice:
    """Choose nothing, as a selector that returns ``None`` does (the fallback answers:
    the default message, or ``{}``), but tagged: an experiment's "no message" arm."""

    experiment: str | None = field(default=None, kw_only=True)
    variant: str | None = field(default=None, kw_only=True)
    """The experiment and variant that chose it (see :meth:`Retention.experiment`), which
    the decision records."""

    def __post_init__(self) -> None:
        _check_tag(self.experiment, self.variant)


Choice = Message | SwitchPlan | PromotionalOffer | NoChoice
