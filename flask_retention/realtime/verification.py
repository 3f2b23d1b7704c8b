"""Verify the JWS that the App Store signs: real-time requests, notifications, transactions.

:class:`JWSVerifier` checks, in this order, and stops at the first failure
with a :class:`~flask_retention.VerificationError` whose ``reason`` says what
failed:

1. the token is three base64url parts, the header a JSON object (``malformed``);
2. ``alg`` is ``ES256``, before anything else of the header is used (``bad_alg``),
   and the header has an ``x5c`` list (``bad_chain``);
3. the payload is a JSON object with a ``signedDate`` in milliseconds (``malformed``);
4. ``x5c`` holds exactly three DER certificates (``bad_chain``), the leaf is not a CA and the
   intermediate is (``bad_chain``), they carry Apple's OIDs (``missing_oid``),
   each is valid at the payload's ``signedDate`` (``expired``), and the leaf
   chains through the intermediate to one of the *configured* roots, never to
   ``x5c[2]`` as sent (``untrusted_root`` or ``bad_chain``);
5. the signature verifies with the leaf's key (``bad_signature``).

Certificate validity is checked at the payload's ``signedDate``, as Apple's
libraries do offline, so a payload keeps verifying after its leaf expires.
A verified chain is cached (bounded, expiring, keyed by the exact ``x5c``
strings), so a repeated chain costs one ES256 verification; each token's
``signedDate`` is still checked against the cached chain's validity window.

There is deliberately **no online revocation check (OCSP)**: the App Store
gives the real-time endpoint 700 ms to answer, and Apple's official library
blocks for up to 30 seconds on OCSP when it is enabled. Apple's leaf
certificates are short-lived, the chain is pinned to the configured roots, and
every payload is bound to its ``signedDate``; a host that needs revocation can
check it off the request path.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509 import verification as x509v

from flask_retention.core.config import load_root_certificates
from flask_retention.core.errors import VerificationError
from flask_retention.core.per_process import process_lock

__all__ = ["INTERMEDIATE_OID", "LEAF_OID", "CacheInfo", "JWSVerifier"]

#: Apple's "Mac App Store Receipt Signing" extension, required on the leaf.
LEAF_OID: Final = x509.ObjectIdentifier("1.2.840.113635.100.6.11.1")
#: Apple's "Worldwide Developer Relations" extension, required on the intermediate.
INTERMEDIATE_OID: Final = x509.ObjectIdentifier("1.2.840.113635.100.6.2.1")

_B64URL: Final = re.compile(r"[A-Za-z0-9_-]*")
_ECDSA_SHA256: Final = ec.ECDSA(hashes.SHA256())
#: The base64url characters whose 4 low bits are 0: the only canonical last of 86 characters.
_CANONICAL_LAST: Final = "AQgw"
#: The first millisecond of year 9999: a ``signedDate`` must be below it (and not negative).
YEAR_9999_MS: Final = 253_370_764_800_000
_CERT_ERRORS: Final = (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


class CacheInfo(NamedTuple):
    """Verified-chain cache statistics: lookups answered, lookups that verified, size."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


@dataclass(frozen=True, slots=True)
class _Chain:
    """A verified chain, reduced to what a cache hit needs."""

    public_key: ec.EllipticCurvePublicKey
    not_before_ms: int
    not_after_ms: int
    expires_at: float


def _b64url(part: str, what: str) -> bytes:
    """Decode unpadded base64url; ``malformed`` for anything else."""
    if _B64URL.fullmatch(part) is None:
        raise VerificationError("malformed", f"the JWS {what} is not base64url")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except binascii.Error:
        raise VerificationError("malformed", f"the JWS {what} is not base64url") from None


def _json_object(part: str, what: str) -> dict[str, Any]:
    """The JSON object that ``part`` encodes in base64url UTF-8 (RFC 7515)."""
    raw = _b64url(part, what)
    try:
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        raise VerificationError("malformed", f"the JWS {what} is not base64url JSON") from None
    if not isinstance(value, dict):
        raise VerificationError("malformed", f"the JWS {what} is not a JSON object")
    return value


def _x5c(header: dict[str, Any]) -> tuple[str, ...]:
    """The header's ``x5c``: a non-empty list of strings, or ``bad_chain``."""
    x5c = header.get("x5c")
    if not isinstance(x5c, list) or not x5c or not all(isinstance(c, str) and c for c in x5c):
        raise VerificationError(
            "bad_chain", "the JWS header has no x5c list of base64 certificates"
        )
    return tuple(x5c)


def _check_signature(
    public_key: ec.EllipticCurvePublicKey, signature: bytes, last_char: str, signing_input: bytes
) -> None:
    """Step 5: ``signature`` decoded from base64url ending in ``last_char``, over the input."""
    # 64 bytes are 86 characters, the last one carrying 4 unused bits that must be 0.
    if len(signature) != 64 or last_char not in _CANONICAL_LAST:
        raise VerificationError(
            "bad_signature", "the JWS signature is not a 64-byte ES256 signature"
        )
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    try:
        public_key.verify(encode_dss_signature(r, s), signing_input, _ECDSA_SHA256)
    except InvalidSignature:
        raise VerificationError(
            "bad_signature", "the JWS signature does not verify with the leaf's key"
        ) from None


def _signed_date_ms(payload: dict[str, Any]) -> int:
    value = payload.get("signedDate")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise VerificationError(
            "malformed", "the payload has no signedDate (milliseconds since the epoch)"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise VerificationError("malformed", "the payload's signedDate is not a finite number")
    ms = int(value)
    if not 0 <= ms < YEAR_9999_MS:
        raise VerificationError("malformed", "the payload's signedDate is out of range")
    return ms


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _has_extension(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bool:
    try:
        cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _valid_at(cert: x509.Certificate, moment_ms: int) -> bool:
    return _ms(cert.not_valid_before_utc) <= moment_ms <= _ms(cert.not_valid_after_utc)


def _require_ca(policy: x509v.Policy, cert: x509.Certificate, ext: x509.BasicConstraints) -> None:
    if not ext.ca:
        raise ValueError("basicConstraints does not say CA:TRUE")


def _ca_key_usage(policy: x509v.Policy, cert: x509.Certificate, ext: x509.KeyUsage | None) -> None:
    if ext is not None and not ext.key_cert_sign:
        raise ValueError("keyUsage lacks keyCertSign")


def _leaf_constraints(
    policy: x509v.Policy, cert: x509.Certificate, ext: x509.BasicConstraints | None
) -> None:
    if ext is not None and ext.ca:
        raise ValueError("the leaf is a CA")


def _leaf_key_usage(
    policy: x509v.Policy, cert: x509.Certificate, ext: x509.KeyUsage | None
) -> None:
    if ext is not None and not ext.digital_signature:
        raise ValueError("keyUsage lacks digitalSignature")


def _extension_policies() -> tuple[x509v.ExtensionPolicy, x509v.ExtensionPolicy]:
    """CA and leaf extension policies that accept what Apple really issues.

    The Web PKI defaults do not fit: Apple's leaf has no subjectAltName and no
    extendedKeyUsage, and Apple's test certificates (from its own libraries)
    have non-critical basicConstraints and no key identifiers. So: any
    extension may be present, but basicConstraints must say CA on CAs and not
    on the leaf, and a keyUsage, when present, must allow what each one does.
    """
    agnostic = x509v.Criticality.AGNOSTIC
    ca = (
        x509v.ExtensionPolicy.permit_all()
        .require_present(x509.BasicConstraints, agnostic, _require_ca)
        .may_be_present(x509.KeyUsage, agnostic, _ca_key_usage)
    )
    ee = (
        x509v.ExtensionPolicy.permit_all()
        .may_be_present(x509.BasicConstraints, agnostic, _leaf_constraints)
        .may_be_present(x509.KeyUsage, agnostic, _leaf_key_usage)
    )
    return ca, ee


class JWSVerifier:
    """Verifies App Store JWS against pinned root certificates; thread-safe.

    ``roots`` is what ``RETENTION_ROOT_CERTIFICATES`` accepts (PEM or DER
    ``bytes``, file paths) or ``x509.Certificate`` objects; ``None`` means the
    bundled Apple Root CA - G3. Up to ``cache_size`` verified chains are kept
    for ``cache_ttl`` seconds (``cache_size=0`` turns the cache off).
    """

    def __init__(
        self,
        roots: Sequence[x509.Certificate | bytes | str | os.PathLike[str]]
        | x509.Certificate
        | bytes
        | str
        | os.PathLike[str]
        | None = None,
        *,
        cache_size: int = 32,
        cache_ttl: float = 900.0,
    ) -> None:
        if isinstance(roots, x509.Certificate):
            roots = [roots]
        if isinstance(roots, Sequence) and not isinstance(roots, bytes | str):
            roots = [
                r.public_bytes(serialization.Encoding.PEM) if isinstance(r, x509.Certificate) else r
                for r in roots
            ]
        loaded = load_root_certificates(roots, key="roots")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f"cache_size must be an integer >= 0, not {cache_size!r}")
        if isinstance(cache_ttl, bool) or not isinstance(cache_ttl, int | float) or cache_ttl < 0:
            raise ValueError(f"cache_ttl must be a number of seconds >= 0, not {cache_ttl!r}")
        self.roots: tuple[x509.Certificate, ...] = loaded
        self.cache_size = cache_size
        self.cache_ttl = float(cache_ttl)
        self._store = x509v.Store(list(loaded))
        self._ca_policy, self._ee_policy = _extension_policies()
        self._cache: OrderedDict[tuple[str, ...], _Chain] = OrderedDict()
        self._hits = self._misses = 0
        self._lock = process_lock()

    def verify(self, token: str) -> dict[str, Any]:
        """Return the payload of ``token`` once verified; raise ``VerificationError``."""
        parts = token.split(".") if isinstance(token, str) else ()
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise VerificationError(
                "malformed", "the JWS is not three base64url parts separated by dots"
            )
        header_part, payload_part, signature_part = parts
        header = _json_object(header_part, "header")
        alg = header.get("alg")
        if alg != "ES256":
            raise VerificationError("bad_alg", f"the JWS alg must be ES256, not {str(alg)[:20]!r}")
        if "crit" in header:
            raise VerificationError(
                "malformed", "the JWS header has critical extensions ('crit') not understood"
            )
        x5c = _x5c(header)
        payload = _json_object(payload_part, "payload")
        signed_ms = _signed_date_ms(payload)
        signature = _b64url(signature_part, "signature")
        public_key = self._chain_key(x5c, signed_ms)
        _check_signature(
            public_key,
            signature,
            signature_part[-1:],
            f"{header_part}.{payload_part}".encode("ascii"),
        )
        return payload

    def clear_cache(self) -> None:
        """Forget every verified chain."""
        with self._lock.get():
            self._cache.clear()

    def cache_info(self) -> CacheInfo:
        """Chain cache statistics, like ``functools.lru_cache``'s."""
        with self._lock.get():
            return CacheInfo(self._hits, self._misses, self.cache_size, len(self._cache))

    def _chain_key(self, x5c: tuple[str, ...], signed_ms: int) -> ec.EllipticCurvePublicKey:
        """The leaf's key of a chain valid at ``signed_ms``, from the cache when possible."""
        now = time.monotonic()
        with self._lock.get():
            chain = self._cache.get(x5c)
            if chain is not None and chain.expires_at <= now:
                del self._cache[x5c]
                chain = None
            if chain is None:
                self._misses += 1
            else:
                self._hits += 1
                self._cache.move_to_end(x5c)
        if chain is None:
            chain = self._verify_chain(x5c, signed_ms, now)
            if self.cache_size:
                with self._lock.get():
                    self._cache[x5c] = chain
                    self._cache.move_to_end(x5c)
                    while len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
        elif not chain.not_before_ms <= signed_ms <= chain.not_after_ms:
            raise VerificationError(
                "expired", "a certificate of the chain is not valid at the payload's signedDate"
            )
        return chain.public_key

    def _verify_chain(self, x5c: tuple[str, ...], signed_ms: int, now: float) -> _Chain:
        if len(x5c) != 3:
            raise VerificationError(
                "bad_chain", f"x5c must hold exactly 3 certificates, not {len(x5c)}"
            )
        try:
            leaf, intermediate = (
                x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in x5c[:2]
            )
            # x5c[2] is parsed only to refuse junk: trust comes from the configured roots.
            x509.load_der_x509_certificate(base64.b64decode(x5c[2], validate=True))
            leaf_is_ca, intermediate_is_ca = _is_ca(leaf), _is_ca(intermediate)
            has_oids = (
                _has_extension(leaf, LEAF_OID),
                _has_extension(intermediate, INTERMEDIATE_OID),
            )
            leaf_key = leaf.public_key()
        except (*_CERT_ERRORS, binascii.Error):
            raise VerificationError(
                "bad_chain", "an x5c entry is not a base64 DER X.509 certificate"
            ) from None
        if leaf_is_ca:
            raise VerificationError("bad_chain", f"the leaf {_name(leaf)!r} is a CA certificate")
        if not intermediate_is_ca:
            raise VerificationError(
                "bad_chain", f"the intermediate {_name(intermediate)!r} is not a CA certificate"
            )
        if not isinstance(leaf_key, ec.EllipticCurvePublicKey) or not isinstance(
            leaf_key.curve, ec.SECP256R1
        ):
            raise VerificationError("bad_chain", "the leaf's key is not an EC P-256 key (ES256)")
        if not has_oids[0]:
            raise VerificationError(
                "missing_oid", f"the leaf lacks Apple's extension {LEAF_OID.dotted_string}"
            )
        if not has_oids[1]:
            raise VerificationError(
                "missing_oid",
                f"the intermediate lacks Apple's extension {INTERMEDIATE_OID.dotted_string}",
            )
        for role, cert in (("leaf", leaf), ("intermediate", intermediate)):
            if not _valid_at(cert, signed_ms):
                raise VerificationError(
                    "expired", f"the {role} certificate is not valid at the payload's signedDate"
                )

        moment = datetime.fromtimestamp(signed_ms / 1000, UTC)
        verifier = (
            x509v.PolicyBuilder()
            .store(self._store)
            .time(moment)
            .extension_policies(ca_policy=self._ca_policy, ee_policy=self._ee_policy)
            .build_client_verifier()
        )
        try:
            built = verifier.verify(leaf, [intermediate]).chain
        except x509v.VerificationError as e:
            raise self._explain(leaf, intermediate, signed_ms, str(e)) from None
        if len(built) != 3 or built[1] != intermediate:
            raise VerificationError(
                "bad_chain", "the leaf does not chain through the x5c intermediate"
            )
        root = built[2]
        return _Chain(
            public_key=leaf_key,
            not_before_ms=max(_ms(c.not_valid_before_utc) for c in (leaf, intermediate, root)),
            not_after_ms=min(_ms(c.not_valid_after_utc) for c in (leaf, intermediate, root)),
            expires_at=now + self.cache_ttl,
        )

    def _explain(
        self, leaf: x509.Certificate, intermediate: x509.Certificate, signed_ms: int, detail: str
    ) -> VerificationError:
        """Turn a failed path build into the most precise reason."""
        if not _issued_by(leaf, intermediate):
            return VerificationError("bad_chain", "the leaf is not issued by the x5c intermediate")
        issuers = [root for root in self.roots if _issued_by(intermediate, root)]
        if not issuers:
            return VerificationError(
                "untrusted_root",
                f"the intermediate {_name(intermediate)!r} is not issued by a trusted root",
            )
        if not any(_valid_at(root, signed_ms) for root in issuers):
            return VerificationError(
                "expired", "the trusted root is not valid at the payload's signedDate"
            )
        return VerificationError("bad_chain", f"the certificate chain is refused: {detail}")
