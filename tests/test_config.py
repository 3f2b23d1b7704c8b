"""Configuration is validated at init_app with messages that say how to fix it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask

from flask_retention import ConfigurationError, Retention
from flask_retention.core.config import DEFAULTS, bundled_root_pem

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


def rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


APPLE_ID_PAGE = "App Store Connect > your app > App Information > Apple ID"
IAP_KEYS_PAGE = "App Store Connect > Users and Access > Integrations > In-App Purchase"
PRODUCTION = ["Sandbox", "Production"]

#: Every ConfigurationError init_app can raise: (the key named, the config, what the
#: message must say: where App Store Connect shows the value, or what is allowed).
BAD_SETTINGS = [
    ("RETENTION_MAX_IMAGE_BYTES", {"RETENTION_MAX_IMAGE_BYTES": 0}, "whole number of bytes"),
    ("RETENTION_ENVIRONMENT", {"RETENTION_ENVIRONMENT": "sandbox"}, "a list of both"),
    ("RETENTION_ENVIRONMENT", {"RETENTION_ENVIRONMENT": []}, "a list of both"),
    ("RETENTION_ENVIRONMENT", {"RETENTION_ENVIRONMENT": ["Sandbox"] * 2}, "a list of both"),
    ("RETENTION_ENVIRONMENT", {"RETENTION_ENVIRONMENT": None}, "a list of both"),
    *[
        ("RETENTION_APP_APPLE_ID", {"RETENTION_APP_APPLE_ID": value}, APPLE_ID_PAGE)
        for value in (
            "12ab", 0, -5, "0", "-5", 12345678901234567890123, 2**63, True, False, 1.5,
            "", " 12", "12 ", "\u0661\u0662", b"12", [12],
        )
    ],
    ("RETENTION_APP_APPLE_ID", {"RETENTION_ENVIRONMENT": PRODUCTION}, APPLE_ID_PAGE),
    ("RETENTION_BUNDLE_ID", {"RETENTION_BUNDLE_ID": ""}, "App Information > Bundle ID"),
    ("RETENTION_BUNDLE_ID", {"RETENTION_BUNDLE_ID": 5}, "App Information > Bundle ID"),
    (
        "RETENTION_BUNDLE_ID",
        {"RETENTION_NOTIFICATIONS_ENDPOINT": "/retention/notifications"},
        "App Store Connect",
    ),
    ("RETENTION_ISSUER_ID", {"RETENTION_ISSUER_ID": "  "}, IAP_KEYS_PAGE),
    ("RETENTION_KEY_ID", {"RETENTION_KEY_ID": b"ABC"}, IAP_KEYS_PAGE),
    ("RETENTION_PRIVATE_KEY", {"RETENTION_PRIVATE_KEY": "-----BEGIN x"}, IAP_KEYS_PAGE),
    ("RETENTION_PRIVATE_KEY", {"RETENTION_PRIVATE_KEY": 42}, IAP_KEYS_PAGE),
    ("RETENTION_PRIVATE_KEY", {"RETENTION_PRIVATE_KEY": rsa_pem()}, IAP_KEYS_PAGE),
    (
        "RETENTION_PRIVATE_KEY",
        {
            "RETENTION_PRIVATE_KEY": vector("apple-test-pki/testSigningKey.p8").read_text(),
            "RETENTION_PRIVATE_KEY_PATH": vector("apple-test-pki/testSigningKey.p8"),
        },
        "Set only one of",
    ),
    ("RETENTION_PRIVATE_KEY_PATH", {"RETENTION_PRIVATE_KEY_PATH": "/nowhere/k.p8"}, IAP_KEYS_PAGE),
    ("RETENTION_PRIVATE_KEY_PATH", {"RETENTION_PRIVATE_KEY_PATH": 3}, IAP_KEYS_PAGE),
    (
        "RETENTION_PRIVATE_KEY_PATH",
        {"RETENTION_PRIVATE_KEY_PATH": vector("apple-test-pki/testCA.pem")},
        IAP_KEYS_PAGE,
    ),
    ("RETENTION_ROOT_CERTIFICATES", {"RETENTION_ROOT_CERTIFICATES": []}, "list of certificates"),
    ("RETENTION_ROOT_CERTIFICATES", {"RETENTION_ROOT_CERTIFICATES": {"a": 1}}, "list of"),
    ("RETENTION_ROOT_CERTIFICATES", {"RETENTION_ROOT_CERTIFICATES": [42]}, "or a file path"),
    ("RETENTION_ROOT_CERTIFICATES", {"RETENTION_ROOT_CERTIFICATES": [b"hello"]}, "PEM or DER"),
    ("RETENTION_ROOT_CERTIFICATES", {"RETENTION_ROOT_CERTIFICATES": "/nowhere.pem"}, "readable"),
    (
        "RETENTION_ROOT_CERTIFICATES",
        {"RETENTION_ROOT_CERTIFICATES": [vector("apple-test-pki/testLeaf.pem")]},
        "give the root CA",
    ),
    ("RETENTION_ENDPOINT", {"RETENTION_ENDPOINT": "retention"}, "starting with '/'"),
    ("RETENTION_ENDPOINT", {"RETENTION_ENDPOINT": 5}, "starting with '/'"),
    *[
        ("RETENTION_MAX_REQUEST_AGE", {"RETENTION_MAX_REQUEST_AGE": value}, "seconds, at least 1")
        for value in (0, -1, "300", True, float("nan"), float("inf"), None)
    ],
    ("RETENTION_SELECTOR_TIMEOUT", {"RETENTION_SELECTOR_TIMEOUT": "fast"}, "at least 0.001"),
    ("RETENTION_SELECTOR_TIMEOUT", {"RETENTION_SELECTOR_TIMEOUT": 0}, "at least 0.001"),
    ("RETENTION_SELECTOR_WORKERS", {"RETENTION_SELECTOR_WORKERS": 0}, "whole number of threads"),
    ("RETENTION_SELECTOR_WORKERS", {"RETENTION_SELECTOR_WORKERS": 2.0}, "whole number"),
    ("RETENTION_DATABASE_URI", {"RETENTION_DATABASE_URI": 42}, "SQLAlchemy database URL"),
    *[
        ("RETENTION_API_BASE_URL", {"RETENTION_API_BASE_URL": value}, "http(s) URL")
        for value in (
            "ftp://x.example",
            "api.example.com",
            "http://x.example/?q=1",
            {"Staging": "http://x.example"},
            {"Sandbox": 5},
            ["http://x.example"],
        )
    ],
    ("RETENTION_CATALOGUE_REFRESH", {"RETENTION_CATALOGUE_REFRESH": 0}, "at least 0.01"),
    *[
        ("RETENTION_DECISION_LOG", {"RETENTION_DECISION_LOG": value}, "True or False")
        for value in ("false", 0, None)
    ],
    ("RETENTION_DECISION_LOG_DAYS", {"RETENTION_DECISION_LOG_DAYS": 1.5}, "whole number of days"),
    ("RETENTION_DECISION_LOG_DAYS", {"RETENTION_DECISION_LOG_DAYS": 0}, "at least 1"),
    ("RETENTION_TRUST_DEV_CA", {"RETENTION_TRUST_DEV_CA": "no"}, "True or False"),
    (
        "RETENTION_TRUST_DEV_CA",
        {
            "RETENTION_ENVIRONMENT": PRODUCTION,
            "RETENTION_APP_APPLE_ID": 1,
            "RETENTION_TRUST_DEV_CA": True,
        },
        "development only",
    ),
    (
        "RETENTION_NOTIFICATIONS_ENDPOINT",
        {"RETENTION_NOTIFICATIONS_ENDPOINT": "notifications", "RETENTION_BUNDLE_ID": "b"},
        "starting with '/'",
    ),
    (
        "RETENTION_NOTIFICATIONS_ENDPOINT",
        {"RETENTION_NOTIFICATIONS_ENDPOINT": "/retention/realtime", "RETENTION_BUNDLE_ID": "b"},
        "must differ from RETENTION_ENDPOINT",
    ),
    ("RETENTION_OUTCOME_WINDOW", {"RETENTION_OUTCOME_WINDOW": 0}, "seconds, at least 1"),
    ("RETENTION_API_TIMEOUT", {"RETENTION_API_TIMEOUT": -1}, "seconds, at least 0.001"),
    ("RETENTION_DECISION_LOG_QUEUE", {"RETENTION_DECISION_LOG_QUEUE": 0}, "whole number"),
    ("RETENTION_DATABASE_TIMEOUT", {"RETENTION_DATABASE_TIMEOUT": 0}, "seconds, at least 0.1"),
    ("RETENTION_SUBSCRIBER_KEY", {"RETENTION_SUBSCRIBER_KEY": ""}, "not an empty one"),
    ("RETENTION_SUBSCRIBER_KEY", {"RETENTION_SUBSCRIBER_KEY": b""}, "not an empty one"),
    ("RETENTION_SUBSCRIBER_KEY", {"RETENTION_SUBSCRIBER_KEY": 1234}, "str or bytes"),
    ("RETENTION_SUBSCRIBER_KEY", {"RETENTION_SUBSCRIBER_KEY": "\ud800"}, "not valid Unicode"),
    (
        "RETENTION_PREVIOUS_SUBSCRIBER_KEYS",
        {"RETENTION_PREVIOUS_SUBSCRIBER_KEYS": "an-old-secret"},
        "must be a list",
    ),
    (
        "RETENTION_PREVIOUS_SUBSCRIBER_KEYS",
        {"RETENTION_PREVIOUS_SUBSCRIBER_KEYS": ["an-old-secret", b""]},
        "not an empty one (item 2)",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("key", "config", "says"),
    BAD_SETTINGS,
    ids=[f"{key}-{i}" for i, (key, _, _) in enumerate(BAD_SETTINGS)],
)
def test_every_configuration_error_is_one_line_naming_the_key(
    app: Flask, key: str, config: dict[str, object], says: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        init(app, **config)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert key in message
    assert says in message
    assert message.endswith(".")
    assert "retention" not in app.extensions  # nothing half-attached


def test_every_key_has_a_bad_value_in_the_list_above() -> None:
    assert {key for key, _, _ in BAD_SETTINGS} == set(DEFAULTS)


def test_the_message_of_a_bad_app_apple_id_reads_well_at_the_end_of_a_traceback(
    app: Flask,
) -> None:
    with pytest.raises(ConfigurationError) as info:
        init(app, RETENTION_APP_APPLE_ID="12ab")
    assert str(info.value) == (
        "RETENTION_APP_APPLE_ID must be your app's Apple ID, a positive whole number "
        "(App Store Connect > your app > App Information > Apple ID), not '12ab'."
    )


def test_an_app_apple_id_too_large_for_apple_says_so(app: Flask) -> None:
    with pytest.raises(ConfigurationError, match=r"larger than any Apple ID \(at most 2\*\*63"):
        init(app, RETENTION_APP_APPLE_ID="12345678901234567890123")


@pytest.mark.parametrize(
    ("value", "read"),
    [(1, 1), ("1234567890", 1234567890), (2**63 - 1, 2**63 - 1), ("0042", 42)],
)
def test_app_apple_id_takes_an_int_or_ascii_digits_within_int64(
    app: Flask, value: object, read: int
) -> None:
    init(app, RETENTION_APP_APPLE_ID=value)
    assert state_of(app).settings.app_apple_id == read


def test_flags_take_booleans_from_the_environment(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLASK_RETENTION_DECISION_LOG", "false")
    app.config.from_prefixed_env()
    init(app)
    assert state_of(app).settings.decision_log is False


def test_a_database_url_object_keeps_its_password(app: Flask) -> None:
    url = sa.URL.create("postgresql+psycopg", "user", "s3cret", "db.example", database="app")
    init(app, RETENTION_DATABASE_URI=url)
    assert state_of(app).settings.database_uri == (
        "postgresql+psycopg://user:s3cret@db.example/app"
    )


def test_a_bad_base_url_is_not_echoed(app: Flask) -> None:
    with pytest.raises(ConfigurationError) as info:
        init(app, RETENTION_API_BASE_URL="proxy.example:s3cret@8080")
    assert "s3cret" not in str(info.value)


BAD_FACTORY = """
from flask import Flask

from flask_retention import Retention


def create_app():
    app = Flask(__name__)
    app.config["RETENTION_APP_APPLE_ID"] = "12ab"
    Retention(app)
    return app
"""


@pytest.mark.parametrize("command", [["retention", "init-db"], ["routes"]])
def test_flask_loading_a_factory_with_a_bad_key_ends_with_the_one_line_message(
    tmp_path: Path, command: list[str]
) -> None:
    (tmp_path / "badfactory.py").write_text(BAD_FACTORY, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "badfactory", *command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    last = done.stderr.rstrip().splitlines()[-1]
    assert last == (
        "flask_retention.core.errors.ConfigurationError: RETENTION_APP_APPLE_ID must be your "
        "app's Apple ID, a positive whole number (App Store Connect > your app > App "
        "Information > Apple ID), not '12ab'."
    )
    assert not (tmp_path / "instance").exists()


def test_the_settings_repr_shows_no_database_password() -> None:
    from flask_retention.core.config import DEFAULTS, read_settings

    config = {**DEFAULTS, "RETENTION_DATABASE_URI": "postgresql+psycopg://app:s3cr3t-pw@db/x"}
    settings = read_settings(config)
    assert settings.database_uri == "postgresql+psycopg://app:s3cr3t-pw@db/x"
    assert "s3cr3t-pw" not in repr(settings)
