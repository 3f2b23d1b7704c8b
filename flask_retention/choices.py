"""What a selector receives (:class:`RealtimeRequest`) and what it returns."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

ENVIRONMENTS: Final = ("Sandbox", "Production")
BILLING_PLAN_TYPES: Final = ("BILLED_UPFRONT", "MONTHLY")

BillingPlanType = Literal["BILLED_UPFRONT", "MONTHLY"]
MessageRef = str | uuid.UUID


@dataclass(frozen=True)
class RealtimeRequest:
    """A verified ``Get Retention Message`` request, as the selector sees it.

    The endpoint makes its requests with :func:`lazy_request`: their
    ``request_identifier`` and ``signed_date`` are parsed from ``raw`` on
    first use (most selectors never read them), and are then the same values
    as the constructor's.
    """

    original_transaction_id: str
    app_apple_id: int
    product_id: str
    locale: str
    request_identifier: uuid.UUID
    environment: str
    signed_date: datetime
    raw: dict[str, Any] = field(repr=False, compare=False)

    if not TYPE_CHECKING:  # type checkers see the fields only, not any attribute

        def __getattr__(self, name: str) -> Any:
            # Reached only for an attribute the instance lacks: a lazy request's two.
            if name == "request_identifier":
                value = uuid.UUID(self.raw["requestIdentifier"])
            elif name == "signed_date":
                value = datetime.fromtimestamp(self.raw["signedDate"] / 1000, tz=UTC)
            else:
                raise AttributeError(
                    f"{type(self).__name__!r} object has no attribute {name!r}", name=name, obj=self
                )
            object.__setattr__(self, name, value)
            return value


_new_object = object.__new__


def lazy_request(
    raw: dict[str, Any],
    original_transaction_id: str,
    app_apple_id: int,
    product_id: str,
    locale: str,
    environment: str,
) -> RealtimeRequest:
    """A :class:`RealtimeRequest` whose ``request_identifier`` and ``signed_date`` come
    from ``raw["requestIdentifier"]`` (a UUID string) and ``raw["signedDate"]``
    (milliseconds since the epoch) when first read.

    The caller has checked that both parse: the endpoint's verified payloads.
    """
    req = _new_object(RealtimeRequest)
    req.__dict__.update(
        original_transaction_id=original_transaction_id,
        app_apple_id=app_apple_id,
        product_id=product_id,
        locale=locale,
        environment=environment,
        raw=raw,
    )
    return req


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
    """The checks every choice with a message makes; the usual one (a message UUID, no
    experiment) costs two comparisons, since selectors build one per request."""
    message = choice.message
    if type(message) is not uuid.UUID:
        _check_message(message)
    if choice.experiment is not None or choice.variant is not None:
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
