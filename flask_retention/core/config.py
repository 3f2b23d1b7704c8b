"""Configuration keys, their defaults, and their validation at ``init_app``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flask_retention.core.apple import ENVIRONMENTS
from flask_retention.core.errors import ConfigurationError

#: Every configuration key with its default; ``init_app`` sets the missing ones.
DEFAULTS: Final[Mapping[str, Any]] = {
    "RETENTION_ENVIRONMENT": "Sandbox",
    "RETENTION_APP_APPLE_ID": None,
    "RETENTION_BUNDLE_ID": None,
    "RETENTION_ISSUER_ID": None,
    "RETENTION_KEY_ID": None,
    "RETENTION_PRIVATE_KEY": None,
    "RETENTION_PRIVATE_KEY_PATH": None,
    "RETENTION_ROOT_CERTIFICATES": None,
    "RETENTION_ENDPOINT": "/retention/realtime",
    "RETENTION_MAX_REQUEST_AGE": 300,
    "RETENTION_SELECTOR_TIMEOUT": 0.4,
    "RETENTION_SELECTOR_WORKERS": 16,
    "RETENTION_DATABASE_URI": None,
    "RETENTION_API_BASE_URL": None,
    "RETENTION_CATALOGUE_REFRESH": 5,
    "RETENTION_DECISION_LOG": True,
    "RETENTION_DECISION_LOG_DAYS": 90,
    "RETENTION_TRUST_DEV_CA": False,
    "RETENTION_NOTIFICATIONS_ENDPOINT": None,
    "RETENTION_OUTCOME_WINDOW": 604800,
    "RETENTION_API_TIMEOUT": 30.0,
    "RETENTION_DECISION_LOG_QUEUE": 10000,
}

APPLE_ROOT_CA_G3: Final = "AppleRootCA-G3.pem"


def bundled_root_pem() -> bytes:
    """The PEM bytes of Apple Root CA - G3 shipped inside the package."""
    return resources.files("flask_retention").joinpath("data", APPLE_ROOT_CA_G3).read_bytes()


def load_certificate(value: bytes | str | os.PathLike[str], *, key: str) -> x509.Certificate:
    """One certificate from PEM or DER ``bytes``, or from a file path."""
    if isinstance(value, bytes):
        data, where = value, "the bytes given"
    elif isinstance(value, str | os.PathLike):
        try:
            with open(value, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ConfigurationError(
                f"{key}: cannot read certificate file {os.fspath(value)!r} ({e.strerror}); "
                "give a readable PEM or DER file, or the certificate's bytes."
            ) from None
        where = repr(os.fspath(value))
    else:
        raise ConfigurationError(
            f"{key}: each certificate must be bytes (PEM or DER content) or a file path, "
            f"not {type(value).__name__}."
        )
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise ConfigurationError(f"{key}: {where} is not a PEM or DER X.509 certificate.") from None


def load_root_certificates(
    value: Any, *, key: str = "RETENTION_ROOT_CERTIFICATES"
) -> tuple[x509.Certificate, ...]:
    """Trusted roots from the config value; ``None`` means the bundled Apple root."""
    if value is None:
        return (x509.load_pem_x509_certificate(bundled_root_pem()),)
    if isinstance(value, bytes | str | os.PathLike):
        value = [value]
    if not isinstance(value, Sequence) or not value:
        raise ConfigurationError(
            f"{key} must be a non-empty list of certificates (bytes or file paths), or None "
            "for the bundled Apple Root CA - G3."
        )
    roots = []
    for item in value:
        cert = load_certificate(item, key=key)
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise ConfigurationError(
                f"{key}: {cert.subject.rfc4514_string()!r} is not a CA certificate "
                "(no basicConstraints CA:TRUE); give the root CA, not a leaf."
            )
        roots.append(cert)
    return tuple(roots)


def load_private_key(
    pem: str | bytes | None, path: str | os.PathLike[str] | None
) -> ec.EllipticCurvePrivateKey | None:
    """The In-App Purchase key from ``RETENTION_PRIVATE_KEY`` or ``..._PATH``.

    Error messages never include the key's content.
    """
    if pem is not None and path is not None:
        raise ConfigurationError(
            "Set only one of RETENTION_PRIVATE_KEY (the .p8 content) and "
            "RETENTION_PRIVATE_KEY_PATH (a path to it)."
        )
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ConfigurationError(
                f"RETENTION_PRIVATE_KEY_PATH: cannot read {os.fspath(path)!r} ({e.strerror})."
            ) from None
        key_name = "RETENTION_PRIVATE_KEY_PATH"
    elif pem is not None:
        data = pem.encode() if isinstance(pem, str) else pem
        key_name = "RETENTION_PRIVATE_KEY"
    else:
        return None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigurationError(
            f"{key_name}: not a readable unencrypted PEM private key; use the .p8 file "
            "downloaded from App Store Connect (In-App Purchase key)."
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigurationError(
            f"{key_name}: the key is not an EC P-256 key; App Store Connect's In-App Purchase "
            "keys (.p8) are EC P-256."
        )
    return key


def _environments(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if (
        not isinstance(items, Sequence)
        or not items
        or any(item not in ENVIRONMENTS for item in items)
        or len(set(items)) != len(items)
    ):
        raise ConfigurationError(
            f"RETENTION_ENVIRONMENT must be 'Sandbox', 'Production', or a list of both "
            f"(the first is the CLI's default), not {value!r}."
        )
    return tuple(items)


def _number(
    config: Mapping[str, Any], key: str, *, minimum: float = 0, integer: bool = False
) -> Any:
    value: Any = config[key]
    wrong_kind = not isinstance(value, int) if integer else not isinstance(value, int | float)
    if isinstance(value, bool) or wrong_kind or value < minimum:
        kind = "an integer" if integer else "a number"
        raise ConfigurationError(f"{key} must be {kind} >= {minimum}, not {value!r}.")
    return value


def _optional_str(config: Mapping[str, Any], key: str) -> str | None:
    value = config[key]
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigurationError(f"{key} must be a non-empty string or None, not {value!r}.")
    return value


def _rule(config: Mapping[str, Any], key: str) -> str | None:
    value = _optional_str(config, key)
    if value is not None and not value.startswith("/"):
        raise ConfigurationError(f"{key} must be a URL rule starting with '/', or None for none.")
    return value


@dataclass(frozen=True)
class Tuning:
    """Internal timings and sizes, with the defaults production runs with.

    Not configuration keys: a deployment has no reason to change them, and
    tests shorten the waits with ``Retention(app, tuning=Tuning(...))``.
    ``api_*`` pace and retry calls to Apple's management API (see
    :class:`~flask_retention.api.RetentionAPIClient`); ``sync_lock_timeout``
    is the age after which a sync's lock counts as abandoned;
    ``perf_test_poll_interval`` the seconds between polls of a running
    performance test; ``decision_log_batch`` and ``decision_log_interval``
    the decision log's rows per insert and seconds between writes.
    """

    api_max_retries: int = 3
    api_retry_after_cap: float = 60.0
    api_pacing: float = 1.0
    api_budget_wait: float = 0.0
    sync_lock_timeout: float = 900.0
    perf_test_poll_interval: float = 5.0
    decision_log_batch: int = 500
    decision_log_interval: float = 1.0

    def __post_init__(self) -> None:
        minimums = {"decision_log_batch": 1, "decision_log_interval": 0.001}
        for name, value in vars(self).items():
            integer = name in ("api_max_retries", "decision_log_batch")
            kind = int if integer else int | float
            if (
                isinstance(value, bool)
                or not isinstance(value, kind)
                or value < minimums.get(name, 0)
            ):
                raise ValueError(
                    f"Tuning.{name} must be {'an integer' if integer else 'a number'} >= "
                    f"{minimums.get(name, 0)}, not {value!r}"
                )


#: The tuning production runs with.
DEFAULT_TUNING: Final = Tuning()


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one app, read once at ``init_app``."""

    environments: tuple[str, ...]
    app_apple_id: int | None
    bundle_id: str | None
    issuer_id: str | None
    key_id: str | None
    private_key: ec.EllipticCurvePrivateKey | None = field(repr=False)
    root_certificates: tuple[x509.Certificate, ...] = field(repr=False)
    endpoint: str | None
    max_request_age: float
    selector_timeout: float
    selector_workers: int
    database_uri: str | None
    api_base_url: str | Mapping[str, str] | None
    catalogue_refresh: float
    decision_log: bool
    decision_log_days: int
    trust_dev_ca: bool
    notifications_endpoint: str | None
    outcome_window: float
    api_timeout: float
    decision_log_queue: int

    @property
    def default_environment(self) -> str:
        """The environment the CLI talks to unless told otherwise."""
        return self.environments[0]


def read_settings(config: Mapping[str, Any]) -> Settings:
    """Validate ``app.config`` and return :class:`Settings`; raise ``ConfigurationError``."""
    environments = _environments(config["RETENTION_ENVIRONMENT"])

    app_apple_id = config["RETENTION_APP_APPLE_ID"]
    if app_apple_id is not None:
        if isinstance(app_apple_id, str) and app_apple_id.isdigit():
            app_apple_id = int(app_apple_id)
        if isinstance(app_apple_id, bool) or not isinstance(app_apple_id, int):
            raise ConfigurationError(
                f"RETENTION_APP_APPLE_ID must be the app's numeric Apple ID, not {app_apple_id!r}."
            )
    if "Production" in environments and app_apple_id is None:
        raise ConfigurationError(
            "RETENTION_APP_APPLE_ID is required when RETENTION_ENVIRONMENT accepts Production: "
            "Apple requires every production request's appAppleId to be checked. Find it in "
            "App Store Connect under App Information (Apple ID)."
        )

    trust_dev_ca = bool(config["RETENTION_TRUST_DEV_CA"])
    if trust_dev_ca and "Production" in environments:
        raise ConfigurationError(
            "RETENTION_TRUST_DEV_CA cannot be used while RETENTION_ENVIRONMENT accepts "
            "Production: the local dev CA is for development only."
        )

    base_url = config["RETENTION_API_BASE_URL"]
    if (
        base_url is not None
        and not isinstance(base_url, str)
        and (
            not isinstance(base_url, Mapping)
            or any(env not in ENVIRONMENTS or not isinstance(u, str) for env, u in base_url.items())
        )
    ):
        raise ConfigurationError(
            "RETENTION_API_BASE_URL must be one URL, or a mapping "
            "{'Sandbox': url, 'Production': url}."
        )

    database_uri = config["RETENTION_DATABASE_URI"]
    if database_uri is not None and not isinstance(database_uri, str):
        database_uri = str(database_uri)

    return Settings(
        environments=environments,
        app_apple_id=app_apple_id,
        bundle_id=_optional_str(config, "RETENTION_BUNDLE_ID"),
        issuer_id=_optional_str(config, "RETENTION_ISSUER_ID"),
        key_id=_optional_str(config, "RETENTION_KEY_ID"),
        private_key=load_private_key(
            config["RETENTION_PRIVATE_KEY"], config["RETENTION_PRIVATE_KEY_PATH"]
        ),
        root_certificates=load_root_certificates(config["RETENTION_ROOT_CERTIFICATES"]),
        endpoint=_rule(config, "RETENTION_ENDPOINT"),
        max_request_age=_number(config, "RETENTION_MAX_REQUEST_AGE", minimum=1),
        selector_timeout=_number(config, "RETENTION_SELECTOR_TIMEOUT", minimum=0.001),
        selector_workers=_number(config, "RETENTION_SELECTOR_WORKERS", minimum=1, integer=True),
        database_uri=database_uri,
        api_base_url=base_url,
        catalogue_refresh=_number(config, "RETENTION_CATALOGUE_REFRESH", minimum=0.01),
        decision_log=bool(config["RETENTION_DECISION_LOG"]),
        decision_log_days=_number(config, "RETENTION_DECISION_LOG_DAYS", minimum=1, integer=True),
        trust_dev_ca=trust_dev_ca,
        notifications_endpoint=_rule(config, "RETENTION_NOTIFICATIONS_ENDPOINT"),
        outcome_window=_number(config, "RETENTION_OUTCOME_WINDOW", minimum=1),
        api_timeout=_number(config, "RETENTION_API_TIMEOUT", minimum=0.001),
        decision_log_queue=_number(config, "RETENTION_DECISION_LOG_QUEUE", minimum=1, integer=True),
    )
