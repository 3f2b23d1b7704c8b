"""Sign App Store-like JWS with a test certificate chain, for tests of the endpoint.

:class:`AppStoreSigner` makes a chain shaped like Apple's (a root, an
intermediate with Apple's WWDR extension, a leaf with Apple's receipt-signing
extension, key identifiers, EC P-256 keys), signs real-time request payloads
the way the App Store does, and makes each kind of broken token a verifier
must refuse. A host app trusts it with
``RETENTION_ROOT_CERTIFICATES=[signer.root_pem]``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, ClassVar, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from flask_retention.core.errors import VerificationReason
from flask_retention.realtime.verification import INTERMEDIATE_OID, LEAF_OID

__all__ = ["BROKEN_VARIANT_REASONS", "AppStoreSigner"]

#: Each broken variant :meth:`AppStoreSigner.sign_broken` makes, and the
#: ``VerificationError.reason`` a verifier trusting the signer's root gives it.
BROKEN_VARIANT_REASONS: Final[Mapping[str, VerificationReason]] = MappingProxyType(
    {
        "alg_none": "bad_alg",
        "alg_hs256": "bad_alg",
        "missing_x5c": "bad_chain",
        "undecodable_certificate": "bad_chain",
        "missing_leaf_oid": "missing_oid",
        "missing_intermediate_oid": "missing_oid",
        "expired_leaf": "expired",
        "not_yet_valid_leaf": "expired",
        "wrong_root": "untrusted_root",
        "foreign_leaf": "bad_chain",
        "two_certificates": "bad_chain",
        "four_certificates": "bad_chain",
        "leaf_is_ca": "bad_chain",
        "intermediate_not_ca": "bad_chain",
        "tampered_signature": "bad_signature",
        "tampered_payload": "bad_signature",
        "wrong_key": "bad_signature",
    }
)

_ECDSA_SHA256: Final = ec.ECDSA(hashes.SHA256())
_PEM_OR_PATH = bytes | str | os.PathLike[str]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "flask-retention testing"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Not Apple Inc."),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )


def _issue(
    *,
    subject: x509.Name,
    key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    valid_from: datetime,
    valid_until: datetime,
    ca: bool,
    oid: x509.ObjectIdentifier | None,
) -> x509.Certificate:
    """One certificate with the extensions Apple's carry."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_until)
        .add_extension(
            x509.BasicConstraints(ca=ca, path_length=0 if ca and subject != issuer else None),
            critical=True,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
    )
    if subject != issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    if oid is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(oid, b"\x05\x00"), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _der_b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


def _read(value: _PEM_OR_PATH, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        with open(value, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(
            f"cannot read the {what} from {os.fspath(value)!r}: {e.strerror}"
        ) from None


def _load_cert(value: _PEM_OR_PATH, what: str) -> x509.Certificate:
    data = _read(value, what)
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise ValueError(f"the {what} is not a PEM or DER X.509 certificate") from None


def _load_key(value: _PEM_OR_PATH, what: str) -> ec.EllipticCurvePrivateKey:
    data = _read(value, what)
    try:
        key = (
            serialization.load_pem_private_key(data, password=None)
            if b"-----BEGIN" in data
            else serialization.load_der_private_key(data, password=None)
        )
    except (ValueError, TypeError):
        raise ValueError(f"the {what} is not an unencrypted PEM or DER private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"the {what} is not an EC P-256 key")
    return key


def _utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{what} must be an aware datetime (e.g. datetime.now(UTC)), not naive")
    return moment.astimezone(UTC)


def _ms(moment: datetime | int | None, what: str, *, default: datetime | None = None) -> int:
    """Milliseconds since the epoch, Apple's timestamps; ``None`` is ``default`` or now."""
    if moment is None:
        moment = default or datetime.now(UTC)
    if isinstance(moment, datetime):
        return int(_utc(moment, what).timestamp() * 1000)
    return moment


class AppStoreSigner:
    """A test App Store: an Apple-like certificate chain and a signer of its JWS.

    ``valid_from``/``valid_until`` bound every certificate of the chain
    (default: from a day ago for ten years). Trust it in an app with
    ``RETENTION_ROOT_CERTIFICATES=[signer.root_pem]``.
    """

    BROKEN_VARIANTS: ClassVar[tuple[str, ...]] = tuple(BROKEN_VARIANT_REASONS)

    def __init__(
        self, *, valid_from: datetime | None = None, valid_until: datetime | None = None
    ) -> None:
        now = datetime.now(UTC).replace(microsecond=0)
        start = (
            _utc(valid_from, "valid_from") if valid_from is not None else now - timedelta(days=1)
        )
        end = (
            _utc(valid_until, "valid_until")
            if valid_until is not None
            else now + timedelta(days=3650)
        )
        if end <= start:
            raise ValueError("valid_until must be later than valid_from")
        root_key, intermediate_key, leaf_key = _new_key(), _new_key(), _new_key()
        root_name = _name("flask-retention Test Root CA")
        intermediate_name = _name("flask-retention Test Worldwide Developer Relations CA")
        root = _issue(
            subject=root_name,
            key=root_key.public_key(),
            issuer=root_name,
            issuer_key=root_key,
            valid_from=start,
            valid_until=end,
            ca=True,
            oid=None,
        )
        intermediate = _issue(
            subject=intermediate_name,
            key=intermediate_key.public_key(),
            issuer=root_name,
            issuer_key=root_key,
            valid_from=start,
            valid_until=end,
            ca=True,
            oid=INTERMEDIATE_OID,
        )
        leaf = _issue(
            subject=_name("flask-retention Test Receipt Signing"),
            key=leaf_key.public_key(),
            issuer=intermediate_name,
            issuer_key=intermediate_key,
            valid_from=start,
            valid_until=end,
            ca=False,
            oid=LEAF_OID,
        )
        self._setup(root, root_key, intermediate, intermediate_key, leaf, leaf_key)

    def _setup(
        self,
        root: x509.Certificate,
        root_key: ec.EllipticCurvePrivateKey | None,
        intermediate: x509.Certificate,
        intermediate_key: ec.EllipticCurvePrivateKey | None,
        leaf: x509.Certificate,
        leaf_key: ec.EllipticCurvePrivateKey,
    ) -> None:
        self.root_certificate: x509.Certificate = root
        self.intermediate_certificate: x509.Certificate = intermediate
        self.leaf_certificate: x509.Certificate = leaf
        self.root_pem: bytes = root.public_bytes(serialization.Encoding.PEM)
        self.x5c: list[str] = [_der_b64(leaf), _der_b64(intermediate), _der_b64(root)]
        self._root_key = root_key
        self._intermediate_key = intermediate_key
        self._leaf_key = leaf_key
        self._variants: dict[str, tuple[list[str], ec.EllipticCurvePrivateKey]] = {}

    @classmethod
    def from_files(
        cls,
        *,
        root: _PEM_OR_PATH,
        intermediate_cert: _PEM_OR_PATH,
        leaf_cert: _PEM_OR_PATH,
        leaf_key: _PEM_OR_PATH,
        intermediate_key: _PEM_OR_PATH | None = None,
        root_key: _PEM_OR_PATH | None = None,
    ) -> AppStoreSigner:
        """A signer over an existing chain (PEM or DER ``bytes``, or file paths).

        For example Apple's own test PKI. ``leaf_key`` signs; the optional
        ``intermediate_key`` and ``root_key`` let :meth:`sign_broken` issue the
        broken certificates of the variants that need them.
        """
        leaf = _load_cert(leaf_cert, "leaf certificate")
        key = _load_key(leaf_key, "leaf key")
        if leaf.public_key() != key.public_key():
            raise ValueError("leaf_key is not the private key of leaf_cert")
        signer = cls.__new__(cls)
        signer._setup(
            _load_cert(root, "root certificate"),
            _load_key(root_key, "root key") if root_key is not None else None,
            _load_cert(intermediate_cert, "intermediate certificate"),
            _load_key(intermediate_key, "intermediate key")
            if intermediate_key is not None
            else None,
            leaf,
            key,
        )
        return signer

    def export_pem(self) -> dict[str, bytes]:
        """The chain as PEM, keyed like :meth:`from_files`'s arguments, to save and reload it.

        Holds ``root``, ``intermediate_cert``, ``leaf_cert``, ``leaf_key`` and,
        when this signer has it, ``intermediate_key`` (unencrypted PKCS#8: keep
        such files private). The root's key is never exported.
        """

        def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
            return key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )

        pem = serialization.Encoding.PEM
        files = {
            "root": self.root_pem,
            "intermediate_cert": self.intermediate_certificate.public_bytes(pem),
            "leaf_cert": self.leaf_certificate.public_bytes(pem),
            "leaf_key": key_pem(self._leaf_key),
        }
        if self._intermediate_key is not None:
            files["intermediate_key"] = key_pem(self._intermediate_key)
        return files

    @property
    def leaf_public_key(self) -> ec.EllipticCurvePublicKey:
        """The public half of the signing key."""
        return self._leaf_key.public_key()

    def sign(self, payload: Mapping[str, Any], *, header: Mapping[str, Any] | None = None) -> str:
        """A compact ES256 JWS of ``payload``; ``header`` adds to or replaces header fields."""
        full: dict[str, Any] = {"alg": "ES256", "x5c": list(self.x5c)}
        if header:
            full.update(header)
        return self._sign_with(self._leaf_key, full, payload)

    @staticmethod
    def _sign_with(
        key: ec.EllipticCurvePrivateKey, header: Mapping[str, Any], payload: Mapping[str, Any]
    ) -> str:
        signing_input = f"{_b64url(_json(header))}.{_b64url(_json(payload))}"
        r, s = decode_dss_signature(key.sign(signing_input.encode("ascii"), _ECDSA_SHA256))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def realtime_payload(
        self,
        *,
        original_transaction_id: str = "1000000000000001",
        app_apple_id: int = 1234567890,
        product_id: str = "com.example.monthly",
        locale: str = "en-US",
        request_identifier: str | uuid.UUID | None = None,
        environment: str = "Sandbox",
        signed_date: datetime | int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """A ``DecodedRealtimeRequestBody`` as Apple sends it; ``extra`` adds or replaces fields.

        ``request_identifier`` defaults to a fresh UUID and ``signed_date`` to
        now (an ``int`` is milliseconds since the epoch).
        """
        signed_ms = _ms(signed_date, "signed_date")
        payload: dict[str, Any] = {
            "originalTransactionId": original_transaction_id,
            "appAppleId": app_apple_id,
            "productId": product_id,
            "userLocale": locale,
            "requestIdentifier": str(request_identifier or uuid.uuid4()),
            "environment": environment,
            "signedDate": signed_ms,
        }
        payload.update(extra)
        return payload

    def sign_realtime_request(self, **fields: Any) -> str:
        """The ``signedPayload`` of a real-time request; ``fields`` as :meth:`realtime_payload`."""
        return self.sign(self.realtime_payload(**fields))

    def realtime_body(self, **fields: Any) -> bytes:
        """The HTTP body the App Store POSTs: ``{"signedPayload": "..."}``."""
        return _json({"signedPayload": self.sign_realtime_request(**fields)})

    def transaction_payload(
        self,
        *,
        original_transaction_id: str = "1000000000000001",
        transaction_id: str | None = None,
        product_id: str = "com.example.monthly",
        bundle_id: str = "com.example.app",
        environment: str = "Sandbox",
        purchase_date: datetime | int | None = None,
        expires_date: datetime | int | None = None,
        signed_date: datetime | int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """A ``JWSTransactionDecodedPayload`` of a monthly subscription; ``extra`` adds fields.

        ``transaction_id`` defaults to the original transaction ID, the dates
        to now and a month from the purchase.
        """
        purchased = _ms(purchase_date, "purchase_date")
        payload: dict[str, Any] = {
            "transactionId": transaction_id or original_transaction_id,
            "originalTransactionId": original_transaction_id,
            "webOrderLineItemId": "2000000000000001",
            "bundleId": bundle_id,
            "productId": product_id,
            "subscriptionGroupIdentifier": "21000001",
            "purchaseDate": purchased,
            "originalPurchaseDate": purchased,
            "expiresDate": _ms(
                expires_date,
                "expires_date",
                default=datetime.fromtimestamp(purchased / 1000, UTC) + timedelta(days=30),
            ),
            "quantity": 1,
            "type": "Auto-Renewable Subscription",
            "inAppOwnershipType": "PURCHASED",
            "signedDate": _ms(signed_date, "signed_date"),
            "environment": environment,
            "transactionReason": "PURCHASE",
            "storefront": "USA",
            "storefrontId": "143441",
            "price": 9990,
            "currency": "USD",
        }
        payload.update(extra)
        return payload

    def renewal_payload(
        self,
        *,
        original_transaction_id: str = "1000000000000001",
        product_id: str = "com.example.monthly",
        auto_renew_product_id: str | None = None,
        auto_renew_status: int = 1,
        environment: str = "Sandbox",
        offer_type: int | None = None,
        offer_identifier: str | None = None,
        signed_date: datetime | int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """A ``JWSRenewalInfoDecodedPayload``; the offer fields are left out when ``None``.

        ``auto_renew_product_id`` defaults to ``product_id`` (a different one
        is a switched plan); ``auto_renew_status`` 0 means cancelled.
        """
        signed = _ms(signed_date, "signed_date")
        month = 30 * 24 * 3600 * 1000
        payload: dict[str, Any] = {
            "originalTransactionId": original_transaction_id,
            "productId": product_id,
            "autoRenewProductId": auto_renew_product_id or product_id,
            "autoRenewStatus": auto_renew_status,
            "signedDate": signed,
            "environment": environment,
            "recentSubscriptionStartDate": signed - month,
            "renewalDate": signed + month,
        }
        if offer_type is not None:
            payload["offerType"] = offer_type
        if offer_identifier is not None:
            payload["offerIdentifier"] = offer_identifier
        payload.update(extra)
        return payload

    def notification_payload(
        self,
        notification_type: str,
        *,
        subtype: str | None = None,
        notification_uuid: str | uuid.UUID | None = None,
        bundle_id: str = "com.example.app",
        app_apple_id: int | None = 1234567890,
        environment: str = "Sandbox",
        transaction: Mapping[str, Any] | None = None,
        renewal_info: Mapping[str, Any] | None = None,
        status: int | None = None,
        signed_date: datetime | int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """A ``ResponseBodyV2DecodedPayload`` (App Store Server Notifications V2).

        ``transaction`` and ``renewal_info`` (see :meth:`transaction_payload`,
        :meth:`renewal_payload`) are signed into ``data.signedTransactionInfo``
        and ``data.signedRenewalInfo``; ``app_apple_id=None`` leaves it out, as
        sandbox notifications do. ``extra`` adds or replaces top-level fields.
        """
        data: dict[str, Any] = {"bundleId": bundle_id, "environment": environment}
        if app_apple_id is not None:
            data["appAppleId"] = app_apple_id
        if transaction is not None or renewal_info is not None:
            data["bundleVersion"] = "1"
        if transaction is not None:
            data["signedTransactionInfo"] = self.sign(transaction)
        if renewal_info is not None:
            data["signedRenewalInfo"] = self.sign(renewal_info)
        if status is not None:
            data["status"] = status
        payload: dict[str, Any] = {"notificationType": notification_type}
        if subtype is not None:
            payload["subtype"] = subtype
        payload.update(
            notificationUUID=str(notification_uuid or uuid.uuid4()),
            data=data,
            version="2.0",
            signedDate=_ms(signed_date, "signed_date"),
        )
        payload.update(extra)
        return payload

    def sign_notification(self, notification_type: str, **fields: Any) -> str:
        """The ``signedPayload`` of a notification; ``fields`` as :meth:`notification_payload`."""
        return self.sign(self.notification_payload(notification_type, **fields))

    def notification_body(self, notification_type: str, **fields: Any) -> bytes:
        """The HTTP body of a notification: ``{"signedPayload": "..."}``."""
        return _json({"signedPayload": self.sign_notification(notification_type, **fields)})

    def sign_broken(self, variant: str, payload: Mapping[str, Any]) -> str:
        """A token of ``payload`` broken as ``variant`` says; see :data:`BROKEN_VARIANT_REASONS`."""
        if variant not in BROKEN_VARIANT_REASONS:
            raise ValueError(
                f"unknown broken variant {variant!r}; "
                f"choose one of {', '.join(self.BROKEN_VARIANTS)}"
            )
        header = {"alg": "ES256", "x5c": list(self.x5c)}
        if variant == "alg_none":
            return f"{_b64url(_json({**header, 'alg': 'none'}))}.{_b64url(_json(payload))}."
        if variant == "alg_hs256":
            # The classic confusion attack: HMAC keyed with the leaf's *public* key.
            secret = self.leaf_public_key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            signing_input = (
                f"{_b64url(_json({**header, 'alg': 'HS256'}))}.{_b64url(_json(payload))}"
            )
            mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
            return f"{signing_input}.{_b64url(mac)}"
        if variant == "missing_x5c":
            return self._sign_with(self._leaf_key, {"alg": "ES256"}, payload)
        if variant == "undecodable_certificate":
            return self._sign_with(
                self._leaf_key, {**header, "x5c": [self.x5c[0], "AAAA", self.x5c[2]]}, payload
            )
        if variant == "two_certificates":
            return self._sign_with(self._leaf_key, {**header, "x5c": self.x5c[:2]}, payload)
        if variant == "four_certificates":
            return self._sign_with(
                self._leaf_key, {**header, "x5c": [*self.x5c, self.x5c[2]]}, payload
            )
        if variant == "tampered_signature":
            token = self.sign(payload)
            signing_input, signature = token.rsplit(".", 1)
            raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
            raw[0] ^= 0x01
            return f"{signing_input}.{_b64url(bytes(raw))}"
        if variant == "tampered_payload":
            header_part, _, signature = self.sign(payload).split(".")
            changed = {**payload, "tampered": True}
            return f"{header_part}.{_b64url(_json(changed))}.{signature}"
        if variant == "wrong_key":
            return self._sign_with(_new_key(), header, payload)
        if variant in ("expired_leaf", "not_yet_valid_leaf"):
            return self._sign_timed_leaf(variant, payload)
        x5c, key = self._variant_chain(variant)
        return self._sign_with(key, {**header, "x5c": x5c}, payload)

    def _sign_timed_leaf(self, variant: str, payload: Mapping[str, Any]) -> str:
        """A leaf that is valid, but not at the payload's ``signedDate``."""
        signed = payload.get("signedDate")
        moment = (
            datetime.fromtimestamp(signed / 1000, UTC)
            if isinstance(signed, int) and not isinstance(signed, bool)
            else datetime.now(UTC)
        )
        if variant == "expired_leaf":
            start, end = moment - timedelta(days=30), moment - timedelta(days=1)
        else:
            start, end = moment + timedelta(days=1), moment + timedelta(days=30)
        leaf = _issue(
            subject=self.leaf_certificate.subject,
            key=self._leaf_key.public_key(),
            issuer=self.intermediate_certificate.subject,
            issuer_key=self._require(self._intermediate_key, "intermediate_key", variant),
            valid_from=start,
            valid_until=end,
            ca=False,
            oid=LEAF_OID,
        )
        x5c = [_der_b64(leaf), *self.x5c[1:]]
        return self._sign_with(self._leaf_key, {"alg": "ES256", "x5c": x5c}, payload)

    @staticmethod
    def _require(
        key: ec.EllipticCurvePrivateKey | None, name: str, variant: str
    ) -> ec.EllipticCurvePrivateKey:
        if key is None:
            raise ValueError(
                f"the broken variant {variant!r} issues a certificate: give {name} to from_files"
            )
        return key

    def _variant_chain(self, variant: str) -> tuple[list[str], ec.EllipticCurvePrivateKey]:
        """The x5c and signing key of a variant with certificates of its own (made once)."""
        if variant in self._variants:
            return self._variants[variant]
        intermediate = self.intermediate_certificate
        start = intermediate.not_valid_before_utc
        end = intermediate.not_valid_after_utc
        leaf_key = _new_key()

        def leaf(
            issuer: x509.Name,
            issuer_key: ec.EllipticCurvePrivateKey,
            *,
            ca: bool = False,
            oid: x509.ObjectIdentifier | None = LEAF_OID,
        ) -> x509.Certificate:
            return _issue(
                subject=self.leaf_certificate.subject,
                key=leaf_key.public_key(),
                issuer=issuer,
                issuer_key=issuer_key,
                valid_from=start,
                valid_until=end,
                ca=ca,
                oid=oid,
            )

        def own_intermediate(
            *, ca: bool, oid: x509.ObjectIdentifier | None, issuer_key: ec.EllipticCurvePrivateKey
        ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
            key = _new_key()
            cert = _issue(
                subject=intermediate.subject,
                key=key.public_key(),
                issuer=intermediate.issuer,
                issuer_key=issuer_key,
                valid_from=start,
                valid_until=end,
                ca=ca,
                oid=oid,
            )
            return cert, key

        root_b64 = self.x5c[2]
        if variant in ("missing_leaf_oid", "leaf_is_ca"):
            int_key = self._require(self._intermediate_key, "intermediate_key", variant)
            cert = leaf(
                intermediate.subject,
                int_key,
                ca=variant == "leaf_is_ca",
                oid=None if variant == "missing_leaf_oid" else LEAF_OID,
            )
            x5c = [_der_b64(cert), self.x5c[1], root_b64]
        elif variant in ("missing_intermediate_oid", "intermediate_not_ca"):
            root_key = self._require(self._root_key, "root_key", variant)
            inter, inter_key = own_intermediate(
                ca=variant == "missing_intermediate_oid",
                oid=INTERMEDIATE_OID if variant == "intermediate_not_ca" else None,
                issuer_key=root_key,
            )
            x5c = [_der_b64(leaf(inter.subject, inter_key)), _der_b64(inter), root_b64]
        elif variant == "foreign_leaf":
            # Another intermediate of the same name issues the leaf; x5c names ours.
            _, other_key = own_intermediate(ca=True, oid=INTERMEDIATE_OID, issuer_key=_new_key())
            x5c = [_der_b64(leaf(intermediate.subject, other_key)), self.x5c[1], root_b64]
        else:  # wrong_root: a complete chain of the same shape under another root.
            other = AppStoreSigner(valid_from=start, valid_until=end)
            x5c, leaf_key = other.x5c, other._leaf_key
        self._variants[variant] = (x5c, leaf_key)
        return x5c, leaf_key
