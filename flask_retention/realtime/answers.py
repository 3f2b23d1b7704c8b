"""Turn a selector's choice into Apple's ``RealtimeResponseBody``, or into the fallback.

A choice is resolved through the catalogue lookup: a name must resolve, a
UUID the catalogue does not know passes through, a message known not to be
``APPROVED`` or that breaks Apple's rules for its kind is not sent. A name
resolves, for the request's ``userLocale``, to the text (base text or
translation) the catalogue's fallback chain picks; the answer says which
locale answered and why. Whenever the choice cannot be sent, the fallback
answers: the default message for ``(productId, userLocale)`` when it is known
and ``APPROVED``, else ``{}`` (Apple then shows the default it holds).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from flask_retention.catalogue.lookup import CatalogueLookup, MessageFacts, parse_uuid
from flask_retention.core.apple import MessageRef
from flask_retention.core.config import Settings
from flask_retention.realtime.choices import (
    Message,
    NoChoice,
    PromotionalOffer,
    RealtimeRequest,
    SwitchPlan,
)
from flask_retention.realtime.decisions import FallbackReason, Kind

logger = logging.getLogger(__name__)

OFFER_AUDIENCE = "promotional-offer"


@dataclass(frozen=True, slots=True)
class Answer:
    """A ``200`` body and what it holds, for the decision.

    ``answered_locale`` is the locale of the text the body names (``None``
    for ``{}``, a UUID the catalogue does not know, or a lookup that knows no
    locales); ``locale_reason`` why the fallback chain picked it, or, for
    ``{}``, why no text could answer (``"none; fr-FR pending"``).
    """

    body: dict[str, Any]
    kind: Kind
    message_id: uuid.UUID | None = None
    fallback_reason: FallbackReason | None = None
    answered_locale: str | None = None
    locale_reason: str | None = None


def message_answer(
    mid: uuid.UUID, reason: FallbackReason | None = None, facts: MessageFacts | None = None
) -> Answer:
    """The answer ``{"message": {"messageIdentifier": mid}}``; ``facts``: the text's."""
    return Answer(
        {"message": {"messageIdentifier": str(mid)}},
        "message",
        mid,
        reason,
        *_locale_of(facts),
    )


def _locale_of(facts: MessageFacts | None) -> tuple[str | None, str | None]:
    """``(answered_locale, locale_reason)`` of a text that answers."""
    if facts is None:
        return None, None
    return facts.locale, facts.locale_reason


class Unsendable(Exception):
    """The choice cannot be sent; ``reason`` says why (a fallback reason), ``facts`` are
    those of the text that could not be sent, when the catalogue knows it."""

    def __init__(
        self, reason: FallbackReason, detail: str, facts: MessageFacts | None = None
    ) -> None:
        super().__init__(detail)
        self.reason: FallbackReason = reason
        self.detail = detail
        self.facts = facts


class OfferSigner:
    """Signs ``promotionalOfferSignatureV2`` JWS with the App Store Connect In-App Purchase key."""

    def __init__(
        self,
        private_key: ec.EllipticCurvePrivateKey,
        *,
        key_id: str,
        issuer_id: str,
        bundle_id: str,
    ) -> None:
        self._key = private_key
        self.key_id = key_id
        self.issuer_id = issuer_id
        self.bundle_id = bundle_id

    def __repr__(self) -> str:
        return f"OfferSigner(key_id={self.key_id!r}, bundle_id={self.bundle_id!r})"

    @classmethod
    def from_settings(cls, settings: Settings) -> OfferSigner | None:
        """The signer of the configured key, or ``None`` when the key or its IDs are not set."""
        if (
            settings.private_key is None
            or settings.key_id is None
            or settings.issuer_id is None
            or settings.bundle_id is None
        ):
            return None
        return cls(
            settings.private_key,
            key_id=settings.key_id,
            issuer_id=settings.issuer_id,
            bundle_id=settings.bundle_id,
        )

    def sign(self, *, product_id: str, offer_id: str, transaction_id: str) -> str:
        """A fresh signature (new nonce, ``iat`` now) for one offer to one subscriber."""
        claims = {
            "iss": self.issuer_id,
            "iat": int(time.time()),
            "bid": self.bundle_id,
            "aud": OFFER_AUDIENCE,
            "nonce": str(uuid.uuid4()),
            "productId": product_id,
            "offerIdentifier": offer_id,
            "transactionId": transaction_id,
        }
        return jwt.encode(
            claims, self._key, algorithm="ES256", headers={"kid": self.key_id, "typ": "JWT"}
        )


def _message_id(
    message: MessageRef, req: RealtimeRequest, lookup: CatalogueLookup, *, bare: bool
) -> tuple[uuid.UUID, MessageFacts | None]:
    """The UUID to send for ``message``, and its facts when the catalogue knows it;
    ``bare``: the kind forbids image and bullets."""
    facts = lookup.lookup(message, req.environment, req.locale)
    if facts is None:
        known = parse_uuid(message)
        if known is None:
            if not lookup.loaded:
                raise Unsendable(
                    "catalogue_unavailable",
                    f"message {message!r} is a name, and this process has not loaded the "
                    "catalogue (is the database reachable, and did `flask retention init-db` "
                    "run?)",
                )
            raise Unsendable(
                "unknown_name", f"no message named {message!r} in the {req.environment} catalogue"
            )
        logger.debug("flask-retention: message %s is not in the catalogue; sent as is.", known)
        return known, None
    if not facts.answers:
        if facts.translated and facts.skipped:
            raise Unsendable(
                "translation_pending",
                f"message {message!r} has no text APPROVED in {req.environment} for "
                f"{req.locale}: {', '.join(facts.skipped)} not yet",
                facts,
            )
        if facts.translated:
            raise Unsendable(
                "no_translation",
                f"message {message!r} has no text for {req.locale} (no translation of its "
                "language, and base_fallback is off)",
                facts,
            )
    if not facts.approved:
        raise Unsendable(
            "unapproved", f"message {message!r} is not APPROVED in {req.environment}", facts
        )
    if bare and (facts.has_image or facts.has_bullets):
        raise Unsendable(
            "not_allowed_for_kind",
            f"message {message!r} has an image or bullet points, which Apple refuses "
            "for switch-plan and promotional-offer messages",
            facts,
        )
    return facts.uuid, facts


def resolve(
    choice: object,
    req: RealtimeRequest,
    lookup: CatalogueLookup,
    offers: OfferSigner | None,
) -> Answer:
    """Apple's response body for ``choice``; raises :class:`Unsendable` when it cannot be sent."""
    if isinstance(choice, Message):
        mid, facts = _message_id(choice.message, req, lookup, bare=False)
        return message_answer(mid, None, facts)
    if isinstance(choice, SwitchPlan):
        mid, facts = _message_id(choice.message, req, lookup, bare=True)
        product: dict[str, Any] = {"messageIdentifier": str(mid), "productId": choice.product_id}
        if choice.billing_plan_type is not None:
            product["billingPlanType"] = choice.billing_plan_type
        return Answer(
            {"alternateProduct": product}, "alternate_product", mid, None, *_locale_of(facts)
        )
    if isinstance(choice, PromotionalOffer):
        mid, facts = _message_id(choice.message, req, lookup, bare=True)
        signature = choice.signature_v2
        if signature is not None and (not isinstance(signature, str) or not signature):
            raise Unsendable(
                "invalid_choice", "PromotionalOffer.signature_v2 must be a compact JWS string"
            )
        if signature is None:
            if offers is None:
                raise Unsendable(
                    "offer_not_configured",
                    "PromotionalOffer needs RETENTION_PRIVATE_KEY (or _PATH), RETENTION_KEY_ID, "
                    "RETENTION_ISSUER_ID and RETENTION_BUNDLE_ID to sign the offer",
                )
            assert choice.offer_id is not None
            signature = offers.sign(
                product_id=choice.product_id or req.product_id,
                offer_id=choice.offer_id,
                transaction_id=req.original_transaction_id,
            )
        offer = {"messageIdentifier": str(mid), "promotionalOfferSignatureV2": signature}
        return Answer(
            {"promotionalOffer": offer}, "promotional_offer", mid, None, *_locale_of(facts)
        )
    if isinstance(choice, NoChoice):
        return fallback(req, lookup, "no_choice")
    raise Unsendable(
        "invalid_choice",
        f"the selector returned {type(choice).__name__}, not Message, SwitchPlan, "
        "PromotionalOffer, NoChoice or None",
    )


def fallback(
    req: RealtimeRequest,
    lookup: CatalogueLookup,
    reason: FallbackReason,
    unsent: MessageFacts | None = None,
) -> Answer:
    """The default message for the request's product and locale when APPROVED, else ``{}``.

    The default is the text the fallback chain picks for the locale, as sync
    configures it at Apple. ``unsent`` are the facts of the choice that could
    not be sent: when ``{}`` answers, the answer's ``locale_reason`` says why
    no text could (the default's reason, else the choice's), so a pending
    translation is on record rather than hidden behind ``{}``.
    """
    try:
        facts = lookup.default_for(req.product_id, req.locale, req.environment)
    except Exception:
        logger.exception("flask-retention: the catalogue lookup failed; answering {}.")
        facts = None
    if facts is not None and facts.approved:
        return message_answer(facts.uuid, reason, facts)
    why = next((f.locale_reason for f in (facts, unsent) if f is not None and not f.answers), None)
    return Answer({}, "none", None, reason, None, why)
