"""JWSVerifier: Apple's real signature, Apple's test PKI, our broken variants, the cache."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
)
from cryptography.x509.oid import NameOID

from flask_retention import ConfigurationError, VerificationError
from flask_retention.core.config import bundled_root_pem
from flask_retention.realtime.verification import (
    INTERMEDIATE_OID,
    LEAF_OID,
    JWSVerifier,
    _signed_date_ms,
)
from flask_retention.testing import BROKEN_VARIANT_REASONS, AppStoreSigner

from .support import vector

PKI = "apple-test-pki/"
REAL_JWS = "genuine-production-test-notification.jws"
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def read_token(name: str) -> str:
    return vector(name).read_text().strip()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: Any) -> str:
    return b64url(json.dumps(value).encode())


def der_b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def pem_cert(name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(vector(PKI + name).read_bytes())


def pem_key(name: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(vector(PKI + name).read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def payload_at(moment: datetime | None = None, **extra: Any) -> dict[str, Any]:
    return {"signedDate": ms(moment or datetime.now(UTC)), "hello": "world", **extra}


def pyjwt_token(
    key: ec.EllipticCurvePrivateKey, certs: list[x509.Certificate], payload: dict[str, Any]
) -> str:
    """Signed by PyJWT, an implementation independent of ours."""
    return jwt.encode(payload, key, algorithm="ES256", headers={"x5c": [der_b64(c) for c in certs]})


def apple_test_verifier(**kwargs: Any) -> JWSVerifier:
    return JWSVerifier([vector(PKI + "testCA.der").read_bytes()], **kwargs)


def reason_of(verifier: JWSVerifier, token: Any) -> str:
    with pytest.raises(VerificationError) as info:
        verifier.verify(token)
    return info.value.reason


# ----------------------------------------------------------------- custom chains


class Chain:
    """A root -> intermediate -> leaf chain with knobs, for cases the signer does not make."""

    def __init__(
        self,
        *,
        root_until: timedelta = timedelta(days=3650),
        intermediate_cert_sign: bool = True,
        leaf_issuer: str = "intermediate",
        intermediate_pathlen: int | None = 0,
        leaf_signs: bool = True,
        leaf_unknown_critical: bool = False,
    ) -> None:
        now = datetime.now(UTC)
        self.root_key, self.int_key, self.leaf_key = (
            ec.generate_private_key(ec.SECP256R1()) for _ in range(3)
        )
        root_name, int_name = self.name("Root"), self.name("Intermediate")
        self.root = self.issue(
            root_name, self.root_key, root_name, self.root_key, now + root_until, ca=True
        )
        self.intermediate = self.issue(
            int_name,
            self.int_key,
            root_name,
            self.root_key,
            now + timedelta(days=3650),
            ca=True,
            cert_sign=intermediate_cert_sign,
            pathlen=intermediate_pathlen,
            oid=INTERMEDIATE_OID,
        )
        issuer_name, issuer_key = (
            (root_name, self.root_key) if leaf_issuer == "root" else (int_name, self.int_key)
        )
        self.leaf = self.issue(
            self.name("Leaf"),
            self.leaf_key,
            issuer_name,
            issuer_key,
            now + timedelta(days=3650),
            ca=False,
            cert_sign=leaf_signs,
            oid=LEAF_OID,
            unknown_critical=leaf_unknown_critical,
        )

    @staticmethod
    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Custom test {cn}")])

    @staticmethod
    def issue(
        subject: x509.Name,
        key: ec.EllipticCurvePrivateKey,
        issuer: x509.Name,
        issuer_key: ec.EllipticCurvePrivateKey,
        until: datetime,
        *,
        ca: bool,
        cert_sign: bool = True,  # the certificate's own use: keyCertSign or digitalSignature
        pathlen: int | None = None,
        oid: x509.ObjectIdentifier | None = None,
        unknown_critical: bool = False,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(datetime.now(UTC) - timedelta(days=2))
            .not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=pathlen), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=not ca and cert_sign,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=ca and cert_sign,
                    crl_sign=ca,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                critical=False,
            )
        )
        if oid is not None:
            builder = builder.add_extension(x509.UnrecognizedExtension(oid, b"\x05\x00"), False)
        if unknown_critical:
            unknown = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")
            builder = builder.add_extension(x509.UnrecognizedExtension(unknown, b"\x05\x00"), True)
        return builder.sign(issuer_key, hashes.SHA256())

    def verifier(self, **kwargs: Any) -> JWSVerifier:
        return JWSVerifier([self.root], **kwargs)

    def token(self, payload: dict[str, Any]) -> str:
        return pyjwt_token(self.leaf_key, [self.leaf, self.intermediate, self.root], payload)


# ----------------------------------------------------------------- Apple's real JWS


def test_apples_real_notification_verifies_against_the_bundled_root() -> None:
    payload = JWSVerifier().verify(read_token(REAL_JWS))

    assert payload["notificationType"] == "TEST"
    assert payload["data"]["environment"] == "Production"
    assert payload["signedDate"] == 1729136651128


def test_apples_real_notification_verifies_although_its_leaf_has_expired() -> None:
    """Validity is checked at signedDate (2024-10-17), not now (the leaf expired 2025-10-11)."""
    header = json.loads(base64.urlsafe_b64decode(read_token(REAL_JWS).split(".")[0] + "=="))
    leaf = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    assert leaf.not_valid_after_utc < datetime.now(UTC)

    assert JWSVerifier().verify(read_token(REAL_JWS))["notificationType"] == "TEST"


def flipped(token: str, position: int) -> str:
    char = token[position]
    return token[:position] + ("A" if char != "A" else "B") + token[position + 1 :]


def flip_positions(token: str) -> list[int]:
    """Every 37th character of the header, the ends of each part, all of payload and signature."""
    header_end = token.index(".")
    positions = set(range(0, header_end, 37)) | set(range(header_end + 1, len(token)))
    start = 0
    for part in token.split("."):
        positions |= {start, start + len(part) - 1}
        start += len(part) + 1
    return sorted(p for p in positions if token[p] != ".")


def test_changing_any_character_of_apples_real_notification_breaks_it() -> None:
    token = read_token(REAL_JWS)
    header_end = token.index(".")
    payload_end = token.rindex(".")
    verifier = JWSVerifier()
    positions = flip_positions(token)
    assert len(positions) > 400

    for position in positions:
        reason = reason_of(verifier, flipped(token, position))
        if position > payload_end:
            assert reason == "bad_signature", position
        elif position > header_end:
            # The payload is JSON under the signature: broken JSON, a changed signedDate or
            # any other change all fail.
            assert reason in {"malformed", "expired", "bad_signature"}, position
        else:
            # A changed header: base64/JSON, alg, a certificate, or the signed bytes.
            assert reason in {
                "malformed",
                "bad_alg",
                "bad_chain",
                "untrusted_root",
                "missing_oid",
                "expired",
                "bad_signature",
            }, position


def with_changed_certificate(token: str, index: int, position: int) -> str:
    header_part, payload_part, signature = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(header_part + "=="))
    der = bytearray(base64.b64decode(header["x5c"][index]))
    der[position] ^= 0x01
    header["x5c"][index] = base64.b64encode(bytes(der)).decode()
    return f"{b64json(header)}.{payload_part}.{signature}"


def test_changing_any_byte_of_apples_real_certificates_breaks_the_token() -> None:
    """The header is signed too, so even a change in x5c[2], which is not trusted, fails."""
    token = read_token(REAL_JWS)
    verifier = JWSVerifier()
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    for index, cert in enumerate(header["x5c"]):
        for position in range(0, len(base64.b64decode(cert)), 23):
            with pytest.raises(VerificationError):
                verifier.verify(with_changed_certificate(token, index, position))


def test_a_changed_signature_in_apples_real_leaf_is_a_bad_chain() -> None:
    """Byte -10 lies in the intermediate's signature over the leaf."""
    changed = with_changed_certificate(read_token(REAL_JWS), 0, -10)

    assert reason_of(JWSVerifier(), changed) == "bad_chain"


def test_apples_real_notification_is_refused_without_apples_root() -> None:
    assert reason_of(apple_test_verifier(), read_token(REAL_JWS)) == "untrusted_root"


# ----------------------------------------------------------------- Apple's test PKI


def apple_test_chain(leaf: str = "testLeaf.pem", intermediate: str = "testIntermediate.pem") -> str:
    payload = payload_at(datetime(2025, 6, 1, tzinfo=UTC))
    certs = [pem_cert(leaf), pem_cert(intermediate), pem_cert("testCA.pem")]
    return pyjwt_token(pem_key("testLeaf.key"), certs, payload)


def test_apples_test_chain_verifies_with_its_test_root() -> None:
    payload = apple_test_verifier().verify(apple_test_chain())

    assert payload["hello"] == "world"


def test_apples_test_chain_is_refused_with_the_bundled_apple_root() -> None:
    assert reason_of(JWSVerifier(), apple_test_chain()) == "untrusted_root"


def test_a_leaf_without_apples_leaf_oid_is_refused() -> None:
    token = apple_test_chain(leaf="testInvalidOIDLeaf.pem")

    assert reason_of(apple_test_verifier(), token) == "missing_oid"


def test_an_intermediate_without_apples_intermediate_oid_is_refused() -> None:
    """It carries 1.2.840.113635.100.6.2.2, not .2.1; otherwise the chain is sound."""
    token = apple_test_chain(
        leaf="testInvalidIntermediateLeaf.pem", intermediate="testInvalidOIDIntermediate.pem"
    )

    with pytest.raises(VerificationError) as info:
        apple_test_verifier().verify(token)
    assert info.value.reason == "missing_oid"
    assert "intermediate" in info.value.message


def test_apples_python_test_notification_verifies() -> None:
    """Signed by the chain of Apple's Python library tests, rooted at python-testCA.der.

    Its certificates have no authority or subject key identifiers, no keyUsage and a
    non-critical basicConstraints, which the Web PKI defaults refuse; our extension
    policies accept them (still requiring CA:TRUE on CAs and not on the leaf). Its x5c[2] is
    another self-signed certificate with the same name and key as python-testCA.der: trust
    comes from the configured root, not from x5c[2].
    """
    verifier = JWSVerifier([vector(PKI + "python-testCA.der").read_bytes()])

    payload = verifier.verify(read_token(PKI + "python-testNotification.jws"))

    assert payload["notificationType"] == "TEST"
    assert payload["data"]["bundleId"] == "com.example"


def test_apples_python_test_without_x5c_is_a_bad_chain() -> None:
    token = read_token(PKI + "python-missingX5CHeaderClaim.jws")

    assert reason_of(apple_test_verifier(), token) == "bad_chain"


def test_a_signer_over_apples_test_pki_signs_what_the_verifier_accepts() -> None:
    signer = AppStoreSigner.from_files(
        root=vector(PKI + "testCA.pem"),
        intermediate_cert=vector(PKI + "testIntermediate.pem"),
        leaf_cert=vector(PKI + "testLeaf.pem"),
        leaf_key=vector(PKI + "testLeaf.key"),
    )
    token = signer.sign_realtime_request(signed_date=datetime(2025, 6, 1, tzinfo=UTC))

    assert apple_test_verifier().verify(token)["productId"] == "com.example.monthly"


# ----------------------------------------------------------------- our signer's chains


@pytest.fixture(scope="module")
def signer() -> AppStoreSigner:
    return AppStoreSigner()


@pytest.fixture
def verifier(signer: AppStoreSigner) -> JWSVerifier:
    return JWSVerifier([signer.root_pem])


def test_a_signed_realtime_request_verifies(signer: AppStoreSigner, verifier: JWSVerifier) -> None:
    payload = signer.realtime_payload()

    assert verifier.verify(signer.sign(payload)) == payload


@pytest.mark.parametrize("variant", AppStoreSigner.BROKEN_VARIANTS)
def test_each_broken_variant_is_refused_with_its_reason(
    signer: AppStoreSigner, verifier: JWSVerifier, variant: str
) -> None:
    token = signer.sign_broken(variant, signer.realtime_payload())

    assert reason_of(verifier, token) == BROKEN_VARIANT_REASONS[variant]


@pytest.mark.parametrize("variant", AppStoreSigner.BROKEN_VARIANTS)
def test_each_broken_variant_is_refused_after_the_good_chain_is_cached(
    signer: AppStoreSigner, verifier: JWSVerifier, variant: str
) -> None:
    verifier.verify(signer.sign_realtime_request())

    token = signer.sign_broken(variant, signer.realtime_payload())

    assert reason_of(verifier, token) == BROKEN_VARIANT_REASONS[variant]


def test_x5c_root_is_not_trusted_for_being_in_the_token(signer: AppStoreSigner) -> None:
    other = AppStoreSigner()
    token = other.sign_realtime_request()

    assert reason_of(JWSVerifier([signer.root_pem]), token) == "untrusted_root"
    assert JWSVerifier([signer.root_pem, other.root_pem]).verify(token)


# ----------------------------------------------------------------- alg


def hs256_token(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{b64json(header)}.{b64json(payload)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def test_hs256_keyed_with_the_leafs_public_key_is_refused(
    signer: AppStoreSigner, verifier: JWSVerifier
) -> None:
    """The classic algorithm confusion: the public key used as an HMAC secret."""
    secret = signer.leaf_public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = hs256_token({"alg": "HS256", "x5c": signer.x5c}, signer.realtime_payload(), secret)

    assert reason_of(verifier, token) == "bad_alg"


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "none"},
        {"alg": "HS256"},
        {"alg": "ES384"},
        {"alg": "RS256"},
        {"alg": "es256"},
        {"alg": None},
        {"alg": ["ES256"]},
        {},
    ],
    ids=repr,
)
def test_alg_other_than_es256_is_refused_before_anything_else(
    verifier: JWSVerifier, header: dict[str, Any]
) -> None:
    """No x5c, no key, a junk signature: the alg alone decides."""
    token = f"{b64json(header)}.{b64json(payload_at())}.{b64url(b'junk')}"

    assert reason_of(verifier, token) == "bad_alg"


def test_alg_none_with_an_empty_signature_is_bad_alg(
    signer: AppStoreSigner, verifier: JWSVerifier
) -> None:
    token = f"{b64json({'alg': 'none', 'x5c': signer.x5c})}.{b64json(payload_at())}."

    assert reason_of(verifier, token) == "bad_alg"


# ----------------------------------------------------------------- validity at signedDate


def test_signed_date_before_the_chain_is_valid_is_expired(
    signer: AppStoreSigner, verifier: JWSVerifier
) -> None:
    token = signer.sign_realtime_request(signed_date=datetime.now(UTC) - timedelta(days=3))

    assert reason_of(verifier, token) == "expired"


def test_signed_date_after_the_chain_expired_is_expired(
    signer: AppStoreSigner, verifier: JWSVerifier
) -> None:
    token = signer.sign_realtime_request(signed_date=datetime.now(UTC) + timedelta(days=3700))

    assert reason_of(verifier, token) == "expired"


def test_signed_date_outside_the_chain_is_expired_on_a_cache_hit(
    signer: AppStoreSigner, verifier: JWSVerifier
) -> None:
    verifier.verify(signer.sign_realtime_request())
    late = signer.sign_realtime_request(signed_date=datetime.now(UTC) + timedelta(days=3700))
    early = signer.sign_realtime_request(signed_date=datetime.now(UTC) - timedelta(days=3))

    assert reason_of(verifier, late) == "expired"
    assert reason_of(verifier, early) == "expired"
    info = verifier.cache_info()
    assert (info.hits, info.misses) == (2, 1)


def test_a_root_expired_at_signed_date_is_expired_on_a_miss_and_on_a_hit() -> None:
    chain = Chain(root_until=timedelta(days=10))
    verifier = chain.verifier()
    after_root = payload_at(datetime.now(UTC) + timedelta(days=20))

    assert reason_of(verifier, chain.token(after_root)) == "expired"
    verifier.verify(chain.token(payload_at()))
    assert reason_of(verifier, chain.token(after_root)) == "expired"
    assert verifier.cache_info().hits == 1


@pytest.mark.parametrize(
    "signed_date",
    [None, "1729136651128", True, [1], 1.5e300, float("inf"), float("nan"), 10**20, -1],
)
def test_payload_without_a_usable_signed_date_is_malformed(
    signer: AppStoreSigner, verifier: JWSVerifier, signed_date: Any
) -> None:
    payload = signer.realtime_payload()
    if signed_date is None:
        del payload["signedDate"]
    else:
        payload["signedDate"] = signed_date
    token = signer.sign(payload)

    assert reason_of(verifier, token) == "malformed"


YEAR_9999_MS = 253_370_764_800_000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (1729136651128, 1729136651128),
        (YEAR_9999_MS - 1, YEAR_9999_MS - 1),
        (1.9, 1),
        (float(YEAR_9999_MS - 1024), YEAR_9999_MS - 1024),
        (YEAR_9999_MS, None),
        (float(YEAR_9999_MS), None),
        (-1, None),
        (-0.5, 0),
        (True, None),
        (False, None),
        (None, None),
    ],
)
def test_signed_date_bounds(value: Any, expected: int | None) -> None:
    if expected is None:
        with pytest.raises(VerificationError) as info:
            _signed_date_ms({"signedDate": value})
        assert info.value.reason == "malformed"
    else:
        assert _signed_date_ms({"signedDate": value}) == expected


# ----------------------------------------------------------------- chains cryptography refuses


def test_a_leaf_issued_by_the_root_directly_is_refused() -> None:
    """x5c names an intermediate, but the leaf chains to the root without it."""
    chain = Chain(leaf_issuer="root")

    assert reason_of(chain.verifier(), chain.token(payload_at())) == "bad_chain"


def test_an_intermediate_not_allowed_to_sign_certificates_is_refused() -> None:
    chain = Chain(intermediate_cert_sign=False)

    with pytest.raises(VerificationError) as info:
        chain.verifier().verify(chain.token(payload_at()))
    assert info.value.reason == "bad_chain"
    assert "keyCertSign" in info.value.message


def test_a_leaf_whose_key_usage_excludes_signatures_is_refused() -> None:
    chain = Chain(leaf_signs=False)

    with pytest.raises(VerificationError) as info:
        chain.verifier().verify(chain.token(payload_at()))
    assert info.value.reason == "bad_chain"
    assert "digitalSignature" in info.value.message


def test_a_leaf_with_an_unknown_critical_extension_is_refused() -> None:
    chain = Chain(leaf_unknown_critical=True)

    with pytest.raises(VerificationError) as info:
        chain.verifier().verify(chain.token(payload_at()))
    assert info.value.reason == "bad_chain"
    assert "1.3.6.1.4.1.55555.1" in info.value.message


def test_an_intermediate_with_a_sound_chain_verifies_whatever_its_path_length() -> None:
    chain = Chain(intermediate_pathlen=None)

    assert chain.verifier().verify(chain.token(payload_at()))["hello"] == "world"


# ----------------------------------------------------------------- malformed input


def good_parts(signer: AppStoreSigner) -> list[str]:
    return signer.sign_realtime_request().split(".")


NESTED_OBJECT = b'{"a":' * 50_000 + b"1" + b"}" * 50_000

MALFORMED: list[tuple[str, Callable[[AppStoreSigner], Any]]] = [
    ("not a string", lambda s: b"a.b.c"),
    ("none", lambda s: None),
    ("empty", lambda s: ""),
    ("one part", lambda s: good_parts(s)[0]),
    ("two parts", lambda s: ".".join(good_parts(s)[:2])),
    ("four parts", lambda s: ".".join([*good_parts(s), "AAAA"])),
    ("empty header", lambda s: "." + ".".join(good_parts(s)[1:])),
    ("empty payload", lambda s: good_parts(s)[0] + ".." + good_parts(s)[2]),
    ("header not base64url", lambda s: "eyJ+" + "." + ".".join(good_parts(s)[1:])),
    ("header with padding", lambda s: b64json({"alg": "ES256"}) + "==.e30.AAAA"),
    ("header bad length", lambda s: "eyJhb.e30.AAAA"),
    ("header not JSON", lambda s: f"{b64url(b'{alg: ES256')}.e30.AAAA"),
    ("header a list", lambda s: f"{b64json(['ES256'])}.e30.AAAA"),
    ("header a string", lambda s: f"{b64json('ES256')}.e30.AAAA"),
    ("header not utf-8", lambda s: f"{b64url(bytes([0xFF, 0xFE]))}.e30.AAAA"),
    ("header deeply nested", lambda s: f"{b64url(b'[' * 100_000 + b']' * 100_000)}.e30.AA"),
    (
        "payload deeply nested",
        lambda s: f"{good_parts(s)[0]}.{b64url(NESTED_OBJECT)}.AA",
    ),
    ("crit header", lambda s: s.sign(s.realtime_payload(), header={"crit": ["b64"], "b64": False})),
    ("payload not JSON", lambda s: f"{good_parts(s)[0]}.{b64url(b'nope')}.{good_parts(s)[2]}"),
    ("payload a list", lambda s: f"{good_parts(s)[0]}.{b64json([1])}.{good_parts(s)[2]}"),
    ("payload not base64url", lambda s: f"{good_parts(s)[0]}.e30=.{good_parts(s)[2]}"),
    ("signature not base64url", lambda s: ".".join([*good_parts(s)[:2], "abc+def/"])),
]


@pytest.mark.parametrize(("case", "make"), MALFORMED, ids=[case for case, _ in MALFORMED])
def test_malformed_input_is_refused_as_malformed(
    signer: AppStoreSigner, verifier: JWSVerifier, case: str, make: Callable[[AppStoreSigner], Any]
) -> None:
    assert reason_of(verifier, make(signer)) == "malformed"


BAD_X5C: list[tuple[str, Callable[[AppStoreSigner], str]]] = [
    (
        "x5c missing",
        lambda s: s.sign_broken("missing_x5c", s.realtime_payload()),
    ),
    ("x5c a string", lambda s: s.sign(s.realtime_payload(), header={"x5c": s.x5c[0]})),
    ("x5c empty", lambda s: s.sign(s.realtime_payload(), header={"x5c": []})),
    ("x5c numbers", lambda s: s.sign(s.realtime_payload(), header={"x5c": [1, 2, 3]})),
    (
        "x5c not base64",
        lambda s: s.sign(s.realtime_payload(), header={"x5c": ["!!!!", *s.x5c[1:]]}),
    ),
    (
        "x5c base64url",
        lambda s: s.sign(
            s.realtime_payload(),
            header={"x5c": [s.x5c[0].replace("+", "-").replace("/", "_") + "-_", *s.x5c[1:]]},
        ),
    ),
    (
        "x5c not DER",
        lambda s: s.sign(
            s.realtime_payload(),
            header={"x5c": [s.x5c[0], base64.b64encode(b"not a cert").decode(), s.x5c[2]]},
        ),
    ),
    (
        "x5c root not DER",
        lambda s: s.sign(s.realtime_payload(), header={"x5c": [*s.x5c[:2], "AAAA"]}),
    ),
]


@pytest.mark.parametrize(("case", "make"), BAD_X5C, ids=[case for case, _ in BAD_X5C])
def test_a_missing_or_unreadable_x5c_is_a_bad_chain(
    signer: AppStoreSigner, verifier: JWSVerifier, case: str, make: Callable[[AppStoreSigner], Any]
) -> None:
    """DESIGN.md: an x5c chain that fails is a 401, whatever is wrong with it."""
    assert reason_of(verifier, make(signer)) == "bad_chain"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_a_header_not_in_utf8_is_malformed(encoding: str) -> None:
    """Correctly signed with Apple's test PKI, but RFC 7515 says the header is UTF-8 JSON."""
    certs = [der_b64(pem_cert(name)) for name in ("testLeaf.pem", "testIntermediate.pem")]
    header = json.dumps({"alg": "ES256", "x5c": [*certs, certs[1]]})
    payload = b64json(payload_at(datetime(2025, 6, 1, tzinfo=UTC)))

    def signed(header_bytes: bytes) -> str:
        signing_input = f"{b64url(header_bytes)}.{payload}"
        der = pem_key("testLeaf.key").sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    assert apple_test_verifier().verify(signed(header.encode()))["hello"] == "world"
    assert reason_of(apple_test_verifier(), signed(header.encode(encoding))) == "malformed"


@pytest.mark.parametrize("length", [0, 63, 65, 96])
def test_a_signature_of_the_wrong_length_is_a_bad_signature(
    signer: AppStoreSigner, verifier: JWSVerifier, length: int
) -> None:
    header, payload, _ = good_parts(signer)

    assert reason_of(verifier, f"{header}.{payload}.{b64url(bytes(length))}") == "bad_signature"


def test_a_non_canonical_signature_encoding_is_refused(
    signer: AppStoreSigner, verifier: JWSVerifier
) -> None:
    """The last of 86 characters carries 2 unused bits: setting them must not pass."""
    header, payload, signature = good_parts(signer)
    last = B64URL.index(signature[-1])
    assert last & 0b11 == 0
    changed = signature[:-1] + B64URL[last | 0b01]
    assert base64.urlsafe_b64decode(changed + "==") == base64.urlsafe_b64decode(signature + "==")

    assert reason_of(verifier, f"{header}.{payload}.{changed}") == "bad_signature"


@pytest.mark.parametrize("bit", [0b0001, 0b0010, 0b0100, 0b1000])
def test_each_unused_bit_of_the_last_signature_character_is_refused(
    signer: AppStoreSigner, verifier: JWSVerifier, bit: int
) -> None:
    header, payload, signature = good_parts(signer)
    changed = signature[:-1] + B64URL[B64URL.index(signature[-1]) | bit]

    assert reason_of(verifier, f"{header}.{payload}.{changed}") == "bad_signature"


def test_signatures_ending_in_each_canonical_character_verify(
    signer: AppStoreSigner, verifier: JWSVerifier
) -> None:
    """ECDSA signatures are random: sign until each of A, Q, g and w has ended one."""
    endings: set[str] = set()
    for _ in range(400):
        token = signer.sign_realtime_request()
        if token[-1] not in endings:
            assert verifier.verify(token)["appAppleId"] == 1234567890
            endings.add(token[-1])
        if len(endings) == 4:
            break

    assert endings == {"A", "Q", "g", "w"}


def test_error_messages_never_contain_the_token(
    signer: AppStoreSigner, verifier: JWSVerifier
) -> None:
    for variant in AppStoreSigner.BROKEN_VARIANTS:
        token = signer.sign_broken(variant, signer.realtime_payload())
        with pytest.raises(VerificationError) as info:
            verifier.verify(token)
        for part in token.split("."):
            assert not part or part[:24] not in info.value.message


# ----------------------------------------------------------------- roots


def test_roots_accept_certificates_and_pem_bytes(signer: AppStoreSigner) -> None:
    token = signer.sign_realtime_request()
    cases: list[Any] = [
        [signer.root_certificate],
        signer.root_certificate,
        [signer.root_pem],
        signer.root_pem,
        (bundled_root_pem(), signer.root_certificate),
    ]
    for roots in cases:
        assert JWSVerifier(roots).verify(token)["productId"] == "com.example.monthly"


def test_roots_accept_der_bytes_and_paths() -> None:
    der = vector(PKI + "testCA.der")
    token = apple_test_chain()
    cases: list[Any] = [[der.read_bytes()], [str(der)], [der], der, str(vector(PKI + "testCA.pem"))]
    for roots in cases:
        assert JWSVerifier(roots).verify(token)["hello"] == "world"


def test_the_default_root_is_the_bundled_apple_root_ca_g3() -> None:
    (root,) = JWSVerifier().roots

    assert root.subject.rfc4514_string().endswith("CN=Apple Root CA - G3")
    assert root == x509.load_pem_x509_certificate(bundled_root_pem())


@pytest.mark.parametrize("roots", [[], [b"not a certificate"], [Path("/nonexistent/ca.pem")], [1]])
def test_bad_roots_are_refused_with_a_configuration_error(roots: list[Any]) -> None:
    with pytest.raises(ConfigurationError):
        JWSVerifier(roots)


def test_a_leaf_is_refused_as_a_root(signer: AppStoreSigner) -> None:
    with pytest.raises(ConfigurationError, match="not a CA"):
        JWSVerifier([signer.leaf_certificate])


@pytest.mark.parametrize(
    "kwargs", [{"cache_size": -1}, {"cache_size": 1.5}, {"cache_ttl": -1}, {"cache_ttl": "9"}]
)
def test_bad_cache_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="cache_"):
        JWSVerifier(**kwargs)


# ----------------------------------------------------------------- the chain cache


def test_a_repeated_chain_is_verified_once(signer: AppStoreSigner, verifier: JWSVerifier) -> None:
    for _ in range(5):
        verifier.verify(signer.sign_realtime_request())

    info = verifier.cache_info()
    assert (info.hits, info.misses, info.currsize) == (4, 1, 1)


def test_reading_cache_info_does_not_change_it(
    signer: AppStoreSigner, verifier: JWSVerifier
) -> None:
    infos = []
    for _ in range(4):
        verifier.verify(signer.sign_realtime_request())
        infos += [verifier.cache_info(), verifier.cache_info()]

    assert [(i.hits, i.misses) for i in infos[::2]] == [(0, 1), (1, 1), (2, 1), (3, 1)]
    assert infos[::2] == infos[1::2]


def test_every_lookup_counts_once_when_threads_share_a_chain(signer: AppStoreSigner) -> None:
    verifier = JWSVerifier([signer.root_pem])
    tokens = [signer.sign_realtime_request() for _ in range(50)]
    start = threading.Barrier(4)

    def work() -> None:
        start.wait()
        for token in tokens:
            verifier.verify(token)
            verifier.cache_info()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    info = verifier.cache_info()
    assert info.hits + info.misses == 200
    assert 1 <= info.misses <= 4


def test_the_cache_is_keyed_by_the_exact_chain(
    signer: AppStoreSigner, verifier: JWSVerifier
) -> None:
    verifier.verify(signer.sign_realtime_request())
    verifier.verify(signer.sign(signer.realtime_payload(), header={"typ": "JWT"}))
    assert verifier.cache_info().currsize == 1

    # x5c[2] is not trusted, so another certificate there still verifies: as another chain.
    apple_root = x509.load_pem_x509_certificate(bundled_root_pem())
    x5c = [*signer.x5c[:2], der_b64(apple_root)]
    verifier.verify(signer.sign(signer.realtime_payload(), header={"x5c": x5c}))
    assert verifier.cache_info().currsize == 2


def test_the_cache_is_bounded_and_least_recently_used_goes_first() -> None:
    signers = [AppStoreSigner() for _ in range(3)]
    verifier = JWSVerifier([s.root_pem for s in signers], cache_size=2)
    a, b, c = signers

    for s in (a, b, a, c):  # c evicts b, the least recently used
        verifier.verify(s.sign_realtime_request())
    assert verifier.cache_info().currsize == 2
    misses = verifier.cache_info().misses
    verifier.verify(a.sign_realtime_request())
    assert verifier.cache_info().misses == misses
    verifier.verify(b.sign_realtime_request())
    assert verifier.cache_info().misses == misses + 1


def test_cached_chains_expire_after_the_ttl(signer: AppStoreSigner) -> None:
    verifier = JWSVerifier([signer.root_pem], cache_ttl=0.01)
    verifier.verify(signer.sign_realtime_request())
    time.sleep(0.05)

    verifier.verify(signer.sign_realtime_request())

    assert verifier.cache_info().misses == 2


def test_cached_chains_live_until_the_ttl(signer: AppStoreSigner) -> None:
    verifier = JWSVerifier([signer.root_pem], cache_ttl=3600)
    verifier.verify(signer.sign_realtime_request())
    time.sleep(0.05)

    verifier.verify(signer.sign_realtime_request())

    assert verifier.cache_info().misses == 1


def test_a_cache_size_of_zero_turns_the_cache_off(signer: AppStoreSigner) -> None:
    verifier = JWSVerifier([signer.root_pem], cache_size=0)
    for _ in range(3):
        verifier.verify(signer.sign_realtime_request())

    info = verifier.cache_info()
    assert (info.hits, info.misses, info.currsize) == (0, 3, 0)


def test_refused_chains_are_not_cached(signer: AppStoreSigner, verifier: JWSVerifier) -> None:
    for variant in ("missing_leaf_oid", "wrong_root", "expired_leaf"):
        reason_of(verifier, signer.sign_broken(variant, signer.realtime_payload()))

    assert verifier.cache_info().currsize == 0


def test_clear_cache_forgets_every_chain(signer: AppStoreSigner, verifier: JWSVerifier) -> None:
    verifier.verify(signer.sign_realtime_request())
    verifier.clear_cache()

    verifier.verify(signer.sign_realtime_request())

    assert verifier.cache_info().misses == 2


def test_concurrent_verification_gives_each_token_its_own_answer() -> None:
    signers = [AppStoreSigner() for _ in range(3)]
    verifier = JWSVerifier([s.root_pem for s in signers], cache_size=2)
    cases: list[tuple[str, str | None]] = []
    for i, s in enumerate(signers):
        payload = s.realtime_payload(original_transaction_id=str(i))
        cases.append((s.sign(payload), str(i)))
        for variant in ("tampered_signature", "missing_leaf_oid", "wrong_root", "expired_leaf"):
            cases.append((s.sign_broken(variant, payload), BROKEN_VARIANT_REASONS[variant]))
    wrong: list[str] = []
    start = threading.Barrier(6)

    def work(offset: int) -> None:
        start.wait()
        for n in range(60):
            token, expected = cases[(n + offset) % len(cases)]
            try:
                got = verifier.verify(token)["originalTransactionId"]
            except VerificationError as e:
                got = e.reason
            if got != expected:
                wrong.append(f"{expected} -> {got}")

    threads = [threading.Thread(target=work, args=(i * 5,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert wrong == []
    assert verifier.cache_info().currsize <= 2
