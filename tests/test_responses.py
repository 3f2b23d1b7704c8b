"""Resolving a selector's choice into Apple's response body, and the fallback."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flask_retention import Message, NoChoice, PromotionalOffer, RealtimeRequest, SwitchPlan
from flask_retention.catalogue.lookup import EmptyLookup, MessageFacts
from flask_retention.realtime.answers import (
    OfferSigner,
    Unsendable,
    fallback,
    resolve,
)

from .memory_lookup import MemoryLookup
from .support import vector

MID = uuid.UUID("a1b2c3d4-e5f6-7890-a1b2-c3d4e5f67890")


def realtime_request(**changes: object) -> RealtimeRequest:
    fields: dict[str, object] = {
        "original_transaction_id": "1000000000000001",
        "app_apple_id": 1234567890,
        "product_id": "com.example.monthly",
        "locale": "en-US",
        "request_identifier": uuid.uuid4(),
        "environment": "Sandbox",
        "signed_date": datetime.now(UTC),
        "raw": {},
    }
    fields.update(changes)
    return RealtimeRequest(**fields)  # type: ignore[arg-type]


@pytest.fixture
def signing_key() -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(
        vector("apple-test-pki/testSigningKey.p8").read_bytes(), password=None
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


@pytest.fixture
def offers(signing_key: ec.EllipticCurvePrivateKey) -> OfferSigner:
    return OfferSigner(
        signing_key, key_id="KEY1234567", issuer_id="issuer-uuid", bundle_id="com.example.app"
    )


def test_message_uuid_resolves_to_message_body() -> None:
    answer = resolve(Message(MID), realtime_request(), EmptyLookup(), None)
    assert answer.body == {"message": {"messageIdentifier": str(MID)}}
    assert (answer.kind, answer.message_id, answer.fallback_reason) == ("message", MID, None)


def test_message_uuid_string_is_sent_in_canonical_form() -> None:
    answer = resolve(Message(str(MID).upper()), realtime_request(), EmptyLookup(), None)
    assert answer.body == {"message": {"messageIdentifier": str(MID)}}


def test_switch_plan_with_billing_plan_type() -> None:
    choice = SwitchPlan(MID, "com.example.yearly", billing_plan_type="MONTHLY")
    answer = resolve(choice, realtime_request(), EmptyLookup(), None)
    assert answer.body == {
        "alternateProduct": {
            "messageIdentifier": str(MID),
            "productId": "com.example.yearly",
            "billingPlanType": "MONTHLY",
        }
    }
    assert answer.kind == "alternate_product"


def test_switch_plan_without_billing_plan_type_omits_it() -> None:
    answer = resolve(SwitchPlan(MID, "com.example.yearly"), realtime_request(), EmptyLookup(), None)
    assert answer.body == {
        "alternateProduct": {"messageIdentifier": str(MID), "productId": "com.example.yearly"}
    }


def test_promotional_offer_pass_through_signature() -> None:
    choice = PromotionalOffer(MID, signature_v2="header.payload.signature")
    answer = resolve(choice, realtime_request(), EmptyLookup(), None)
    assert answer.body == {
        "promotionalOffer": {
            "messageIdentifier": str(MID),
            "promotionalOfferSignatureV2": "header.payload.signature",
        }
    }
    assert answer.kind == "promotional_offer"


@pytest.mark.parametrize("signature", [b"a.b.c", 42, ""])
def test_passed_through_signature_must_be_a_string(signature: object) -> None:
    choice = PromotionalOffer(MID, signature_v2=signature)  # type: ignore[arg-type]
    with pytest.raises(Unsendable) as e:
        resolve(choice, realtime_request(), EmptyLookup(), None)
    assert e.value.reason == "invalid_choice"


def test_promotional_offer_is_signed_with_the_in_app_purchase_key(
    offers: OfferSigner, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    req = realtime_request()
    before = int(time.time())
    answer = resolve(PromotionalOffer(MID, "loyal50"), req, EmptyLookup(), offers)
    body = answer.body["promotionalOffer"]
    assert set(body) == {"messageIdentifier", "promotionalOfferSignatureV2"}
    token = body["promotionalOfferSignatureV2"]
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": "KEY1234567", "typ": "JWT"}
    claims = jwt.decode(
        token, signing_key.public_key(), algorithms=["ES256"], audience="promotional-offer"
    )
    assert set(claims) == {
        "iss", "iat", "bid", "aud", "nonce", "productId", "offerIdentifier", "transactionId"
    }  # fmt: skip
    assert claims["iss"] == "issuer-uuid"
    assert claims["bid"] == "com.example.app"
    assert claims["aud"] == "promotional-offer"
    assert claims["productId"] == "com.example.monthly"
    assert claims["offerIdentifier"] == "loyal50"
    assert claims["transactionId"] == req.original_transaction_id
    assert before <= claims["iat"] <= int(time.time())
    assert claims["nonce"] == str(uuid.UUID(claims["nonce"]))  # a lowercase UUID


def test_promotional_offer_signs_the_product_given(offers: OfferSigner) -> None:
    choice = PromotionalOffer(MID, "loyal50", product_id="com.example.yearly")
    answer = resolve(choice, realtime_request(), EmptyLookup(), offers)
    token = answer.body["promotionalOffer"]["promotionalOfferSignatureV2"]
    assert jwt.decode(token, options={"verify_signature": False})["productId"] == (
        "com.example.yearly"
    )


def test_each_offer_signature_has_a_fresh_nonce(offers: OfferSigner) -> None:
    req = realtime_request()
    nonces = {
        jwt.decode(
            resolve(PromotionalOffer(MID, "o"), req, EmptyLookup(), offers).body[
                "promotionalOffer"
            ]["promotionalOfferSignatureV2"],
            options={"verify_signature": False},
        )["nonce"]
        for _ in range(3)
    }
    assert len(nonces) == 3


def test_promotional_offer_without_configured_key_is_unsendable() -> None:
    with pytest.raises(Unsendable) as e:
        resolve(PromotionalOffer(MID, "loyal50"), realtime_request(), EmptyLookup(), None)
    assert e.value.reason == "offer_not_configured"
    assert "RETENTION_KEY_ID" in e.value.detail


def test_offer_signer_repr_hides_the_key(offers: OfferSigner) -> None:
    assert "KEY1234567" in repr(offers)
    assert "PRIVATE" not in repr(offers)


def test_name_resolves_through_the_lookup() -> None:
    lookup = MemoryLookup()
    facts = lookup.add("winback")
    answer = resolve(Message("winback"), realtime_request(), lookup, None)
    assert answer.body == {"message": {"messageIdentifier": str(facts.uuid)}}
    assert answer.message_id == facts.uuid


def test_name_resolves_per_environment() -> None:
    lookup = MemoryLookup()
    lookup.add("winback", environment="Production")
    with pytest.raises(Unsendable) as e:
        resolve(Message("winback"), realtime_request(environment="Sandbox"), lookup, None)
    assert e.value.reason == "unknown_name"


def test_unknown_name_is_unsendable() -> None:
    with pytest.raises(Unsendable) as e:
        resolve(Message("nope"), realtime_request(), EmptyLookup(), None)
    assert e.value.reason == "unknown_name"


def test_message_known_not_approved_is_unsendable() -> None:
    lookup = MemoryLookup()
    facts = lookup.add("winback", state="PENDING")
    for ref in ("winback", facts.uuid):
        with pytest.raises(Unsendable) as e:
            resolve(Message(ref), realtime_request(), lookup, None)
        assert e.value.reason == "unapproved"


def test_message_with_unapproved_image_is_unsendable() -> None:
    lookup = MemoryLookup()
    lookup.add("winback", has_image=True, image_state="PENDING")
    with pytest.raises(Unsendable) as e:
        resolve(Message("winback"), realtime_request(), lookup, None)
    assert e.value.reason == "unapproved"


def test_text_message_may_have_an_approved_image() -> None:
    lookup = MemoryLookup()
    facts = lookup.add("winback", has_image=True, image_state="APPROVED")
    answer = resolve(Message("winback"), realtime_request(), lookup, None)
    assert answer.message_id == facts.uuid


def test_switch_plan_refuses_a_message_with_an_image() -> None:
    lookup = MemoryLookup()
    lookup.add("hero", has_image=True, image_state="APPROVED")
    with pytest.raises(Unsendable) as e:
        resolve(SwitchPlan("hero", "com.example.yearly"), realtime_request(), lookup, None)
    assert e.value.reason == "not_allowed_for_kind"


def test_promotional_offer_refuses_a_message_with_bullets(offers: OfferSigner) -> None:
    lookup = MemoryLookup()
    lookup.add("list", has_bullets=True)
    with pytest.raises(Unsendable) as e:
        resolve(PromotionalOffer("list", "loyal50"), realtime_request(), lookup, offers)
    assert e.value.reason == "not_allowed_for_kind"


@pytest.mark.parametrize("junk", ["winback", 42, {"message": "x"}, MID])
def test_anything_but_a_choice_is_invalid(junk: object) -> None:
    with pytest.raises(Unsendable) as e:
        resolve(junk, realtime_request(), EmptyLookup(), None)
    assert e.value.reason == "invalid_choice"


def test_fallback_uses_the_approved_default() -> None:
    lookup = MemoryLookup()
    facts = lookup.add("default")
    lookup.set_default("com.example.monthly", "en-US", facts)
    answer = fallback(realtime_request(), lookup, "timeout")
    assert answer.body == {"message": {"messageIdentifier": str(facts.uuid)}}
    assert (answer.kind, answer.message_id, answer.fallback_reason) == (
        "message",
        facts.uuid,
        "timeout",
    )


def test_fallback_ignores_an_unapproved_default() -> None:
    lookup = MemoryLookup()
    lookup.set_default("com.example.monthly", "en-US", lookup.add("default", state="REJECTED"))
    answer = fallback(realtime_request(), lookup, "no_choice")
    assert answer.body == {}
    assert (answer.kind, answer.message_id, answer.fallback_reason) == ("none", None, "no_choice")


def test_fallback_is_per_locale() -> None:
    lookup = MemoryLookup()
    lookup.set_default("com.example.monthly", "fr-FR", lookup.add("défaut"))
    assert fallback(realtime_request(locale="en-US"), lookup, "no_choice").body == {}


class BrokenLookup(EmptyLookup):
    def default_for(self, product_id: str, locale: str, environment: str) -> MessageFacts | None:
        raise RuntimeError("catalogue snapshot broken")


def test_fallback_answers_empty_when_the_lookup_fails(caplog: pytest.LogCaptureFixture) -> None:
    answer = fallback(realtime_request(), BrokenLookup(), "selector_error")
    assert answer.body == {}
    assert "catalogue lookup failed" in caplog.text


def test_a_uuid_sent_as_is_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    mid = uuid.uuid4()
    with caplog.at_level(logging.DEBUG, logger="flask_retention"):
        answer = resolve(Message(mid), realtime_request(), EmptyLookup(), None)
    assert answer.body == {"message": {"messageIdentifier": str(mid)}}
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("DEBUG", f"flask-retention: message {mid} is not in the catalogue; sent as is.")
    ]


class UnloadedLookup(MemoryLookup):
    """A catalogue this process could not load (yet)."""

    loaded = False


def test_a_name_before_the_catalogue_loaded_is_catalogue_unavailable_not_unknown() -> None:
    with pytest.raises(Unsendable) as info:
        resolve(Message("winback"), realtime_request(), UnloadedLookup(), None)
    assert info.value.reason == "catalogue_unavailable"
    with pytest.raises(Unsendable) as known:
        resolve(Message("winback"), realtime_request(), MemoryLookup(), None)
    assert known.value.reason == "unknown_name"
    mid = uuid.uuid4()
    passed = resolve(Message(mid), realtime_request(), UnloadedLookup(), None)
    assert passed.body == {"message": {"messageIdentifier": str(mid)}}


def test_no_choice_resolves_to_the_fallback() -> None:
    lookup = MemoryLookup()
    default = lookup.add_default()
    answer = resolve(NoChoice(), realtime_request(), lookup, None)
    assert answer.body == {"message": {"messageIdentifier": str(default.uuid)}}
    assert answer.fallback_reason == "no_choice"
    assert resolve(NoChoice(), realtime_request(), EmptyLookup(), None).body == {}


MessageChoice = Message | SwitchPlan | PromotionalOffer

CHOICE_KINDS: list[Callable[..., MessageChoice]] = [
    lambda message, **tags: Message(message, **tags),
    lambda message, **tags: SwitchPlan(message, "com.example.yearly", **tags),
    lambda message, **tags: PromotionalOffer(message, "OFFER", **tags),
]


@pytest.mark.parametrize("make", CHOICE_KINDS)
@pytest.mark.parametrize("message", [None, "", "   ", 3, b"name"])
def test_every_choice_refuses_a_message_that_is_no_name_or_uuid(
    make: Callable[..., object], message: object
) -> None:
    with pytest.raises(TypeError, match="catalogue name or a message UUID"):
        make(message)


@pytest.mark.parametrize("make", CHOICE_KINDS)
@pytest.mark.parametrize(
    "tags", [{"experiment": "copy"}, {"variant": "a"}, {"experiment": "", "variant": "a"}]
)
def test_every_choice_needs_both_tags_or_neither(
    make: Callable[..., object], tags: dict[str, str]
) -> None:
    with pytest.raises(TypeError, match="go together"):
        make("name", **tags)


@pytest.mark.parametrize("make", CHOICE_KINDS)
def test_every_choice_takes_a_name_a_uuid_and_a_uuid_subclass(
    make: Callable[..., MessageChoice],
) -> None:
    class OwnUUID(uuid.UUID):
        pass

    for message in ("name", MID, OwnUUID(int=MID.int)):
        tagged = make(message, experiment="copy", variant="a")
        assert (tagged.message, tagged.experiment, tagged.variant) == (message, "copy", "a")
        assert make(message).message is message
