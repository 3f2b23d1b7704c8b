"""Configuration is validated at init_app with messages that say how to fix it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask

from flask_retention import ConfigurationError, Retention
from flask_retention.core.config import bundled_root_pem

from .support import state_of, vector

APPLE_ROOT_SHA256 = (
    "63:34:3A:BF:B8:9A:6A:03:EB:B5:7E:9B:3F:5F:A7:BE:"
    "7C:4F:5C:75:6F:30:17:B3:A8:C4:88:C3:65:3E:91:79"
)


def init(app: Flask, **config: object) -> Flask:
    app.config.update(config)
    Retention(app)
    return app


def test_bundled_apple_root_has_apples_fingerprint() -> None:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(bundled_root_pem())
    der = cert.public_bytes(serialization.Encoding.DER)
    assert hashlib.sha256(der).hexdigest().upper() == APPLE_ROOT_SHA256.replace(":", "")
    assert "Apple Root CA - G3" in cert.subject.rfc4514_string()


def test_default_roots_are_the_bundled_apple_root(app: Flask) -> None:
    init(app)
    (root,) = state_of(app).settings.root_certificates
    assert "Apple Root CA - G3" in root.subject.rfc4514_string()


def test_production_without_app_apple_id_is_refused(app: Flask) -> None:
    with pytest.raises(ConfigurationError, match="RETENTION_APP_APPLE_ID is required"):
        init(app, RETENTION_ENVIRONMENT=["Sandbox", "Production"])


def test_production_with_app_apple_id_is_accepted(app: Flask) -> None:
    init(app, RETENTION_ENVIRONMENT="Production", RETENTION_APP_APPLE_ID=1234)
    settings = state_of(app).settings
    assert settings.environments == ("Production",)
    assert settings.default_environment == "Production"


@pytest.mark.parametrize("value", ["sandbox", "Xcode", [], ["Sandbox", "Sandbox"], None])
def test_unknown_environment_is_refused(app: Flask, value: object) -> None:
    with pytest.raises(ConfigurationError, match="RETENTION_ENVIRONMENT must be"):
        init(app, RETENTION_ENVIRONMENT=value)


def test_unreadable_root_certificate_is_refused(app: Flask, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read certificate file"):
        init(app, RETENTION_ROOT_CERTIFICATES=[str(tmp_path / "missing.pem")])


def test_root_that_is_not_a_certificate_is_refused(app: Flask) -> None:
    with pytest.raises(ConfigurationError, match=r"not a PEM or DER X\.509 certificate"):
        init(app, RETENTION_ROOT_CERTIFICATES=[b"hello"])


def test_root_that_is_not_a_ca_is_refused(app: Flask) -> None:
    leaf = vector("apple-test-pki/testLeaf.pem")
    with pytest.raises(ConfigurationError, match="not a CA certificate"):
        init(app, RETENTION_ROOT_CERTIFICATES=[leaf])


def test_roots_load_from_der_bytes_and_pem_paths(app: Flask) -> None:
    der = vector("apple-test-pki/testCA.der").read_bytes()
    pem_path = vector("apple-test-pki/testCA.pem")
    init(app, RETENTION_ROOT_CERTIFICATES=[der, pem_path])
    a, b = state_of(app).settings.root_certificates
    assert a == b


def test_private_key_must_be_ec_p256(app: Flask) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with pytest.raises(ConfigurationError, match="not an EC P-256 key") as info:
        init(app, RETENTION_PRIVATE_KEY=pem)
    assert "PRIVATE KEY" not in str(info.value)


def test_private_key_on_another_curve_is_refused(app: Flask) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ConfigurationError, match="not an EC P-256 key"):
        init(app, RETENTION_PRIVATE_KEY=pem)


def test_garbage_private_key_is_refused_without_echoing_it(app: Flask) -> None:
    with pytest.raises(ConfigurationError, match="not a readable") as info:
        init(app, RETENTION_PRIVATE_KEY="-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n")
    assert "c2VjcmV0" not in str(info.value)


def test_private_key_loads_from_path(app: Flask) -> None:
    init(app, RETENTION_PRIVATE_KEY_PATH=vector("apple-test-pki/testSigningKey.p8"))
    key = state_of(app).settings.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert "PRIVATE" not in repr(state_of(app).settings)


def test_both_key_settings_at_once_are_refused(app: Flask) -> None:
    p8 = vector("apple-test-pki/testSigningKey.p8")
    with pytest.raises(ConfigurationError, match="only one"):
        init(app, RETENTION_PRIVATE_KEY=p8.read_text(), RETENTION_PRIVATE_KEY_PATH=p8)


def test_dev_ca_refused_when_production_is_accepted(app: Flask) -> None:
    with pytest.raises(ConfigurationError, match="RETENTION_TRUST_DEV_CA"):
        init(
            app,
            RETENTION_ENVIRONMENT=["Sandbox", "Production"],
            RETENTION_APP_APPLE_ID=1,
            RETENTION_TRUST_DEV_CA=True,
        )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("RETENTION_MAX_REQUEST_AGE", 0),
        ("RETENTION_SELECTOR_TIMEOUT", "fast"),
        ("RETENTION_DECISION_LOG_DAYS", 1.5),
        ("RETENTION_ENDPOINT", "retention"),
        ("RETENTION_API_BASE_URL", {"Staging": "http://x"}),
        ("RETENTION_APP_APPLE_ID", "my-app"),
    ],
)
def test_wrong_values_name_their_key(app: Flask, key: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=key):
        init(app, **{key: value})
