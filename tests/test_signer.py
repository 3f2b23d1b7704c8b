"""AppStoreSigner: an Apple-like test chain, real-time payloads, broken variants."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jwt
import pytest
from cryptography import x509

from flask_retention import VerificationError
from flask_retention.core.config import DEFAULTS, read_settings
from flask_retention.realtime.verification import INTERMEDIATE_OID, LEAF_OID, JWSVerifier
from flask_retention.testing import BROKEN_VARIANT_REASONS, AppStoreSigner

from .support import vector

PKI = "apple-test-pki/"


@pytest.fixture(scope="module")
def signer() -> AppStoreSigner:
    return AppStoreSigner()


def decode(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def extension(cert: x509.Certificate, kind: type[Any]) -> Any:
    return cert.extensions.get_extension_for_class(kind)


def apple_test_signer(**keys: Any) -> AppStoreSigner:
    return AppStoreSigner.from_files(
        root=vector(PKI + "testCA.pem"),
        intermediate_cert=vector(PKI + "testIntermediate.pem"),
        leaf_cert=vector(PKI + "testLeaf.pem"),
        leaf_key=vector(PKI + "testLeaf.key"),
        **keys,
    )


# ----------------------------------------------------------------- the chain


def test_x5c_is_leaf_intermediate_root_in_der(signer: AppStoreSigner) -> None:
    certs = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in signer.x5c]

    assert certs == [
        signer.leaf_certificate,
        signer.intermediate_certificate,
        signer.root_certificate,
    ]
    assert x509.load_pem_x509_certificate(signer.root_pem) == signer.root_certificate


def test_the_root_is_a_self_signed_ca(signer: AppStoreSigner) -> None:
    root = signer.root_certificate

    root.verify_directly_issued_by(root)
    constraints = extension(root, x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    assert extension(root, x509.KeyUsage).value.key_cert_sign
    assert extension(root, x509.SubjectKeyIdentifier)


def test_the_intermediate_is_a_ca_with_apples_oid(signer: AppStoreSigner) -> None:
    intermediate = signer.intermediate_certificate

    intermediate.verify_directly_issued_by(signer.root_certificate)
    assert extension(intermediate, x509.BasicConstraints).value.path_length == 0
    assert extension(intermediate, x509.BasicConstraints).value.ca
    assert extension(intermediate, x509.KeyUsage).value.key_cert_sign
    assert intermediate.extensions.get_extension_for_oid(INTERMEDIATE_OID)
    assert (
        extension(intermediate, x509.AuthorityKeyIdentifier).value.key_identifier
        == extension(signer.root_certificate, x509.SubjectKeyIdentifier).value.digest
    )


def test_the_leaf_signs_and_carries_apples_oid(signer: AppStoreSigner) -> None:
    leaf = signer.leaf_certificate

    leaf.verify_directly_issued_by(signer.intermediate_certificate)
    assert not extension(leaf, x509.BasicConstraints).value.ca
    usage = extension(leaf, x509.KeyUsage).value
    assert usage.digital_signature
    assert not usage.key_cert_sign
    assert leaf.extensions.get_extension_for_oid(LEAF_OID)
    assert (
        extension(leaf, x509.AuthorityKeyIdentifier).value.key_identifier
        == extension(signer.intermediate_certificate, x509.SubjectKeyIdentifier).value.digest
    )
    assert leaf.public_key() == signer.leaf_public_key


def test_the_chain_is_valid_from_yesterday_for_ten_years(signer: AppStoreSigner) -> None:
    now = datetime.now(UTC)
    for cert in (signer.leaf_certificate, signer.intermediate_certificate, signer.root_certificate):
        assert now - timedelta(days=1, minutes=5) < cert.not_valid_before_utc < now
        assert cert.not_valid_after_utc > now + timedelta(days=3640)


def test_validity_can_be_chosen() -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    end = datetime(2031, 1, 1, tzinfo=timezone(timedelta(hours=2)))

    signer = AppStoreSigner(valid_from=start, valid_until=end)

    assert signer.leaf_certificate.not_valid_before_utc == start
    assert signer.root_certificate.not_valid_after_utc == end
    token = signer.sign_realtime_request(signed_date=datetime(2030, 6, 1, tzinfo=UTC))
    assert JWSVerifier([signer.root_pem]).verify(token)
    with pytest.raises(VerificationError) as info:
        JWSVerifier([signer.root_pem]).verify(signer.sign_realtime_request())
    assert info.value.reason == "expired"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"valid_from": datetime(2030, 1, 1)},
        {"valid_until": datetime(2030, 1, 1)},
        {
            "valid_from": datetime(2030, 1, 1, tzinfo=UTC),
            "valid_until": datetime(2029, 1, 1, tzinfo=UTC),
        },
    ],
)
def test_naive_or_empty_validity_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="valid_"):
        AppStoreSigner(**kwargs)


def test_each_signer_has_a_chain_of_its_own(signer: AppStoreSigner) -> None:
    assert AppStoreSigner().root_pem != signer.root_pem


def test_the_root_pem_is_accepted_as_retention_root_certificates(signer: AppStoreSigner) -> None:
    settings = read_settings({**DEFAULTS, "RETENTION_ROOT_CERTIFICATES": [signer.root_pem]})

    assert settings.root_certificates == (signer.root_certificate,)


# ----------------------------------------------------------------- signing


def test_sign_makes_an_es256_jws_with_the_x5c_header(signer: AppStoreSigner) -> None:
    token = signer.sign({"a": 1, "signedDate": 1})

    header = decode(token.split(".")[0])
    assert header == {"alg": "ES256", "x5c": signer.x5c}
    claims = jwt.decode(token, signer.leaf_public_key, algorithms=["ES256"])
    assert claims == {"a": 1, "signedDate": 1}


def test_sign_adds_and_replaces_header_fields(signer: AppStoreSigner) -> None:
    token = signer.sign({"a": 1}, header={"typ": "JWT", "x5c": signer.x5c[:1]})

    assert decode(token.split(".")[0]) == {"alg": "ES256", "typ": "JWT", "x5c": signer.x5c[:1]}


def test_realtime_payload_is_apples_decoded_realtime_request_body(signer: AppStoreSigner) -> None:
    before = int(datetime.now(UTC).timestamp() * 1000)
    payload = signer.realtime_payload()
    after = int(datetime.now(UTC).timestamp() * 1000)

    fixture = json.loads(vector("apple-fixtures/decodedRealtimeRequest.json").read_text())
    assert payload.keys() == fixture.keys()
    assert {k: type(v) for k, v in payload.items()} == {k: type(v) for k, v in fixture.items()}
    assert payload["originalTransactionId"] == "1000000000000001"
    assert payload["appAppleId"] == 1234567890
    assert payload["productId"] == "com.example.monthly"
    assert payload["userLocale"] == "en-US"
    assert payload["environment"] == "Sandbox"
    assert uuid.UUID(payload["requestIdentifier"]).version == 4
    assert before <= payload["signedDate"] <= after


def test_realtime_payload_takes_each_field(signer: AppStoreSigner) -> None:
    request_id = uuid.uuid4()
    payload = signer.realtime_payload(
        original_transaction_id="42",
        app_apple_id=7,
        product_id="com.example.yearly",
        locale="fr-FR",
        request_identifier=request_id,
        environment="Production",
        signed_date=datetime(2030, 1, 1, tzinfo=UTC),
        extra="field",
        appAppleId="replaced",
    )

    assert payload == {
        "originalTransactionId": "42",
        "appAppleId": "replaced",
        "productId": "com.example.yearly",
        "userLocale": "fr-FR",
        "requestIdentifier": str(request_id),
        "environment": "Production",
        "signedDate": 1893456000000,
        "extra": "field",
    }
    assert signer.realtime_payload(signed_date=123)["signedDate"] == 123


def test_each_realtime_payload_has_a_fresh_request_identifier(signer: AppStoreSigner) -> None:
    ids = {signer.realtime_payload()["requestIdentifier"] for _ in range(5)}

    assert len(ids) == 5


def test_a_naive_signed_date_is_refused(signer: AppStoreSigner) -> None:
    with pytest.raises(ValueError, match="aware"):
        signer.realtime_payload(signed_date=datetime(2030, 1, 1))


def test_sign_realtime_request_and_body_verify(signer: AppStoreSigner) -> None:
    verifier = JWSVerifier([signer.root_pem])

    token = signer.sign_realtime_request(product_id="com.example.yearly")
    body = json.loads(signer.realtime_body(locale="de-DE"))

    assert verifier.verify(token)["productId"] == "com.example.yearly"
    assert list(body) == ["signedPayload"]
    assert verifier.verify(body["signedPayload"])["userLocale"] == "de-DE"


# ----------------------------------------------------------------- broken variants


def test_broken_variants_cover_the_required_kinds() -> None:
    required = {
        "alg_none",
        "alg_hs256",
        "missing_leaf_oid",
        "missing_intermediate_oid",
        "expired_leaf",
        "wrong_root",
        "tampered_signature",
        "tampered_payload",
        "two_certificates",
        "four_certificates",
        "leaf_is_ca",
        "intermediate_not_ca",
    }

    assert required <= set(AppStoreSigner.BROKEN_VARIANTS)
    assert tuple(BROKEN_VARIANT_REASONS) == AppStoreSigner.BROKEN_VARIANTS


@pytest.mark.parametrize("variant", AppStoreSigner.BROKEN_VARIANTS)
def test_broken_variants_keep_the_payload_readable(signer: AppStoreSigner, variant: str) -> None:
    payload = signer.realtime_payload()

    token = signer.sign_broken(variant, payload)

    claims = decode(token.split(".")[1])
    assert {k: claims[k] for k in payload} == payload


def test_an_unknown_variant_is_refused_with_the_list(signer: AppStoreSigner) -> None:
    with pytest.raises(ValueError, match="alg_none"):
        signer.sign_broken("alg_rot13", signer.realtime_payload())


@pytest.mark.parametrize("variant", AppStoreSigner.BROKEN_VARIANTS)
def test_apples_test_pki_makes_each_broken_variant(variant: str) -> None:
    signer = apple_test_signer(
        intermediate_key=vector(PKI + "testIntermediate.key"),
        root_key=vector(PKI + "testCA.key"),
    )
    payload = signer.realtime_payload(signed_date=datetime(2025, 6, 1, tzinfo=UTC))
    verifier = JWSVerifier([vector(PKI + "testCA.der").read_bytes()])

    with pytest.raises(VerificationError) as info:
        verifier.verify(signer.sign_broken(variant, payload))
    assert info.value.reason == BROKEN_VARIANT_REASONS[variant]


# ----------------------------------------------------------------- from_files


def test_from_files_reads_paths_and_bytes() -> None:
    by_path = apple_test_signer()
    by_bytes = AppStoreSigner.from_files(
        root=vector(PKI + "testCA.der").read_bytes(),
        intermediate_cert=vector(PKI + "testIntermediate.pem").read_bytes(),
        leaf_cert=vector(PKI + "testLeaf.pem").read_bytes(),
        leaf_key=vector(PKI + "testLeaf.key").read_bytes(),
    )

    assert by_path.x5c == by_bytes.x5c
    assert by_path.root_pem == vector(PKI + "testCA.pem").read_bytes().replace(b"\r\n", b"\n")


def test_from_files_refuses_a_key_that_is_not_the_leafs() -> None:
    with pytest.raises(ValueError, match="not the private key"):
        AppStoreSigner.from_files(
            root=vector(PKI + "testCA.pem"),
            intermediate_cert=vector(PKI + "testIntermediate.pem"),
            leaf_cert=vector(PKI + "testLeaf.pem"),
            leaf_key=vector(PKI + "testIntermediate.key"),
        )


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("root", "/nonexistent/ca.pem", "cannot read the root certificate"),
        ("leaf_cert", b"not a certificate", "leaf certificate is not"),
        ("leaf_key", b"not a key", "leaf key is not"),
        ("leaf_key", vector(PKI + "testLeaf.pem").read_bytes(), "leaf key is not"),
    ],
)
def test_from_files_says_which_file_is_wrong(field: str, value: Any, match: str) -> None:
    files: dict[str, Any] = {
        "root": vector(PKI + "testCA.pem"),
        "intermediate_cert": vector(PKI + "testIntermediate.pem"),
        "leaf_cert": vector(PKI + "testLeaf.pem"),
        "leaf_key": vector(PKI + "testLeaf.key"),
        field: value,
    }
    with pytest.raises(ValueError, match=match):
        AppStoreSigner.from_files(**files)


@pytest.mark.parametrize(
    ("variant", "key"),
    [("missing_leaf_oid", "intermediate_key"), ("intermediate_not_ca", "root_key")],
)
def test_variants_that_issue_certificates_ask_for_the_key(variant: str, key: str) -> None:
    signer = apple_test_signer()

    with pytest.raises(ValueError, match=key):
        signer.sign_broken(variant, signer.realtime_payload())


# ----------------------------------------------------------------- notifications


def test_a_test_notification_looks_like_apples_real_one(signer: AppStoreSigner) -> None:
    real = JWSVerifier().verify(
        vector("genuine-production-test-notification.jws").read_text().strip()
    )

    payload = JWSVerifier([signer.root_pem]).verify(signer.sign_notification("TEST"))

    assert payload.keys() == real.keys()
    assert payload["data"].keys() == real["data"].keys()
    assert payload["notificationType"] == "TEST"
    assert payload["version"] == "2.0"
    assert uuid.UUID(payload["notificationUUID"])


def test_a_notification_carries_signed_transaction_and_renewal_info(
    signer: AppStoreSigner,
) -> None:
    verifier = JWSVerifier([signer.root_pem])
    transaction = signer.transaction_payload(original_transaction_id="77", product_id="p.month")
    renewal = signer.renewal_payload(
        original_transaction_id="77",
        product_id="p.month",
        auto_renew_status=0,
        offer_type=2,
        offer_identifier="winback50",
    )

    payload = verifier.verify(
        signer.sign_notification(
            "DID_CHANGE_RENEWAL_STATUS",
            subtype="AUTO_RENEW_DISABLED",
            transaction=transaction,
            renewal_info=renewal,
            status=1,
        )
    )

    assert payload["subtype"] == "AUTO_RENEW_DISABLED"
    data = payload["data"]
    assert data["status"] == 1
    assert verifier.verify(data["signedTransactionInfo"]) == transaction
    assert verifier.verify(data["signedRenewalInfo"]) == renewal
    assert renewal["autoRenewProductId"] == "p.month"
    assert (renewal["offerType"], renewal["offerIdentifier"]) == (2, "winback50")
    assert transaction["transactionId"] == transaction["originalTransactionId"] == "77"
    assert transaction["expiresDate"] - transaction["purchaseDate"] == 30 * 24 * 3600 * 1000


def test_notification_fields_can_be_chosen(signer: AppStoreSigner) -> None:
    notification_id = uuid.uuid4()
    body = json.loads(
        signer.notification_body(
            "EXPIRED",
            subtype="VOLUNTARY",
            notification_uuid=notification_id,
            bundle_id="com.example.other",
            app_apple_id=None,
            environment="Production",
            signed_date=5,
        )
    )
    payload = decode(body["signedPayload"].split(".")[1])

    assert payload == {
        "notificationType": "EXPIRED",
        "subtype": "VOLUNTARY",
        "notificationUUID": str(notification_id),
        "data": {"bundleId": "com.example.other", "environment": "Production"},
        "version": "2.0",
        "signedDate": 5,
    }


def test_renewal_payload_leaves_out_absent_offers(signer: AppStoreSigner) -> None:
    renewal = signer.renewal_payload(auto_renew_product_id="com.example.yearly")

    assert "offerType" not in renewal
    assert "offerIdentifier" not in renewal
    assert renewal["autoRenewProductId"] == "com.example.yearly"
    assert renewal["autoRenewStatus"] == 1
