"""Configuration keys, their defaults, and their validation at ``init_app``."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.engine import URL

from flask_retention.core.apple import ENVIRONMENTS
from flask_retention.core.errors import ConfigurationError

#: The default of ``RETENTION_MAX_IMAGE_BYTES``: an uncompressed 3840x2160 RGB PNG
#: fits (Apple publishes no byte limit for images).
DEFAULT_MAX_IMAGE_BYTES: Final = 25_000_000

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
    "RETENTION_MAX_IMAGE_BYTES": DEFAULT_MAX_IMAGE_BYTES,
    "RETENTION_DATABASE_TIMEOUT": 10.0,
    "RETENTION_SUBSCRIBER_KEY": None,
    "RETENTION_PREVIOUS_SUBSCRIBER_KEYS": (),
}

APPLE_ROOT_CA_G3: Final = "AppleRootCA-G3.pem"

#: The largest ``appAppleId`` Apple sends (an int64).
APP_APPLE_ID_MAX: Final = 2**63 - 1

#: The shortest ``RETENTION_SUBSCRIBER_KEY``, in bytes, that ``flask retention check``
#: accepts without a ``privacy`` problem: as long as the HMAC-SHA256 output.
MIN_SUBSCRIBER_KEY_BYTES: Final = 32


@dataclass(frozen=True)
class Source:
    """A value copied from App Store Connect: what it is and where App Store Connect shows
    it, for error messages; ``str()`` gives both."""

    what: str
    where: str

    def __str__(self) -> str:
        return f"{self.what} ({self.where})"


_IAP_KEYS: Final = "App Store Connect > Users and Access > Integrations > In-App Purchase"

#: Where each value copied from App Store Connect is found, for error messages.
SOURCES: Final[Mapping[str, Source]] = {
    "RETENTION_APP_APPLE_ID": Source(
        "your app's Apple ID", "App Store Connect > your app > App Information > Apple ID"
    ),
    "RETENTION_BUNDLE_ID": Source(
        "your app's bundle ID", "App Store Connect > your app > App Information > Bundle ID"
    ),
    "RETENTION_ISSUER_ID": Source(
        "the Issuer ID of your In-App Purchase keys", f"{_IAP_KEYS}, above the list of keys"
    ),
    "RETENTION_KEY_ID": Source(
        "the Key ID of your In-App Purchase key", f"{_IAP_KEYS}, beside the key"
    ),
    "RETENTION_PRIVATE_KEY": Source(
        "the .p8 file of your In-App Purchase key",
        f"downloaded once, when the key was made, from {_IAP_KEYS}; set RETENTION_PRIVATE_KEY "
        "to its text or RETENTION_PRIVATE_KEY_PATH to its path",
    ),
}


def _shown(value: object) -> str:
    """``repr(value)`` on one line, cut short: enough to recognise a wrong value."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:36]}...{text[-1]}"


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
        raise ConfigurationError(
            f"{key}: {where} is not a PEM or DER X.509 certificate; leave {key} unset for "
            "Apple's root (Apple Root CA - G3), or give CA certificates as PEM or DER."
        ) from None


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


def load_private_key(pem: Any, path: Any) -> ec.EllipticCurvePrivateKey | None:
    """The In-App Purchase key from ``RETENTION_PRIVATE_KEY`` (PEM text) or
    ``RETENTION_PRIVATE_KEY_PATH`` (a path to the ``.p8`` file).

    Error messages never include the key's content.
    """
    if pem is not None and path is not None:
        raise ConfigurationError(
            "Set only one of RETENTION_PRIVATE_KEY (the .p8 content) and "
            "RETENTION_PRIVATE_KEY_PATH (a path to it)."
        )
    where = SOURCES["RETENTION_PRIVATE_KEY"]
    if path is not None:
        if not isinstance(path, str | os.PathLike):
            raise ConfigurationError(
                f"RETENTION_PRIVATE_KEY_PATH must be the path (str or os.PathLike) of {where}, "
                f"not {type(path).__name__}."
            )
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ConfigurationError(
                f"RETENTION_PRIVATE_KEY_PATH: cannot read {os.fspath(path)!r} ({e.strerror}); "
                f"give the path of {where.what} ({_IAP_KEYS})."
            ) from None
        key_name = "RETENTION_PRIVATE_KEY_PATH"
    elif pem is not None:
        if not isinstance(pem, str | bytes):
            raise ConfigurationError(
                f"RETENTION_PRIVATE_KEY must be the text (str or bytes) of {where}, "
                f"not {type(pem).__name__}."
            )
        data = pem.encode() if isinstance(pem, str) else pem
        key_name = "RETENTION_PRIVATE_KEY"
    else:
        return None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigurationError(
            f"{key_name}: not a readable unencrypted PEM private key; use {where.what}, "
            f"as downloaded from {_IAP_KEYS}."
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigurationError(
            f"{key_name}: the key is not an EC P-256 key; App Store Connect's In-App Purchase "
            f"keys (.p8) are EC P-256 ({_IAP_KEYS})."
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
            f"(the first is the CLI's default), not {_shown(value)}."
        )
    return tuple(items)


def _app_apple_id(value: Any) -> int | None:
    """``RETENTION_APP_APPLE_ID``: a positive int64, from an int or a string of ASCII digits."""
    if value is None:
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        number = int(value)
    if number is None or not 1 <= number <= APP_APPLE_ID_MAX:
        source = SOURCES["RETENTION_APP_APPLE_ID"]
        too_big = number is not None and number > APP_APPLE_ID_MAX
        raise ConfigurationError(
            f"RETENTION_APP_APPLE_ID must be {source.what}, a positive whole number "
            f"({source.where}), not {_shown(value)}"
            + (", which is larger than any Apple ID (at most 2**63 - 1)." if too_big else ".")
        )
    return number


def _number(
    config: Mapping[str, Any], key: str, *, unit: str, minimum: float, integer: bool = False
) -> Any:
    value: Any = config[key]
    kinds = int if integer else int | float
    if (
        isinstance(value, bool)
        or not isinstance(value, kinds)
        or not math.isfinite(value)
        or not value >= minimum
    ):
        kind = "a whole number" if integer else "a number"
        raise ConfigurationError(
            f"{key} must be {kind} of {unit}, at least {minimum}, not {_shown(value)}."
        )
    return value


def _flag(config: Mapping[str, Any], key: str) -> bool:
    value = config[key]
    if not isinstance(value, bool):
        hint = (
            f" (a string; an environment variable FLASK_{key}=false is read as JSON by "
            "app.config.from_prefixed_env())"
            if isinstance(value, str)
            else ""
        )
        raise ConfigurationError(f"{key} must be True or False, not {_shown(value)}{hint}.")
    return value


def _app_store_text(config: Mapping[str, Any], key: str) -> str | None:
    """A value copied from App Store Connect: a non-empty string, or ``None`` (unset)."""
    value = config[key]
    if value is not None and (not isinstance(value, str) or not value.strip()):
        source = SOURCES[key]
        raise ConfigurationError(
            f"{key} must be {source.what}, a non-empty string ({source.where}), "
            f"not {_shown(value)}."
        )
    return value


def _rule(config: Mapping[str, Any], key: str, *, example: str, none: str) -> str | None:
    value = config[key]
    if value is not None and (not isinstance(value, str) or not value.startswith("/")):
        raise ConfigurationError(
            f"{key} must be a URL rule starting with '/', such as {example!r}, or None for "
            f"{none}; not {_shown(value)}."
        )
    return value


def _is_http_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
        return (
            parts.scheme in ("http", "https")
            and bool(parts.hostname)
            and not parts.query
            and not parts.fragment
        )
    except ValueError:
        return False


def _api_base_url(value: Any) -> str | Mapping[str, str] | None:
    """``RETENTION_API_BASE_URL``; messages never show the URL (it may hold a password)."""
    key = "RETENTION_API_BASE_URL"
    allowed = (
        f"{key} must be one http(s) URL such as 'https://api.storekit-sandbox.apple.com', "
        "or a mapping {'Sandbox': url, 'Production': url}, or None for Apple's hosts"
    )
    if value is None:
        return None
    if isinstance(value, str):
        if not _is_http_url(value):
            raise ConfigurationError(
                f"{allowed}; the URL given is not an http:// or https:// URL with a host "
                "(and no query)."
            )
        return value
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{allowed}, not {type(value).__name__}.")
    for env, url in value.items():
        if env not in ENVIRONMENTS:
            raise ConfigurationError(f"{allowed}; {_shown(env)} is not an environment.")
        if not _is_http_url(url):
            raise ConfigurationError(
                f"{allowed}; the {env} URL is not an http:// or https:// URL with a host "
                "(and no query)."
            )
    return value


def _database_uri(value: Any) -> str | None:
    """``RETENTION_DATABASE_URI`` as a string; messages never show it (it may hold a password)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, URL):
        return value.render_as_string(hide_password=False)
    raise ConfigurationError(
        "RETENTION_DATABASE_URI must be a SQLAlchemy database URL (a str such as "
        "'postgresql+psycopg://user@host/dbname', or a sqlalchemy.URL), or None for a SQLite "
        f"file in the instance folder; not {type(value).__name__}."
    )


def _secret(value: Any) -> bytes | str:
    """A secret as bytes (a ``str`` is UTF-8 encoded), or what is wrong with it: its type
    or "an empty one", never its value."""
    if isinstance(value, str):
        try:
            value = value.encode()
        except UnicodeEncodeError:
            return "a str that is not valid Unicode (it holds a lone surrogate)"
    if not isinstance(value, bytes):
        return type(value).__name__
    return value or "an empty one"


def _subscriber_key(value: Any) -> bytes | None:
    """``RETENTION_SUBSCRIBER_KEY``: ``None``, or a non-empty secret as bytes."""
    if value is None:
        return None
    secret = _secret(value)
    if isinstance(secret, str):
        raise ConfigurationError(
            "RETENTION_SUBSCRIBER_KEY must be a secret (str or bytes; at least 32 random "
            "bytes, such as secrets.token_hex(32)), or None to store original transaction IDs "
            f"as they are; not {secret}."
        )
    return secret


def _previous_subscriber_keys(value: Any) -> tuple[bytes, ...]:
    """``RETENTION_PREVIOUS_SUBSCRIBER_KEYS``: a list of non-empty secrets (``None``: none)."""
    if value is None:
        return ()
    wrong = type(value).__name__
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        keys: list[bytes] = []
        for number, item in enumerate(value, 1):
            secret = _secret(item)
            if isinstance(secret, str):
                wrong = f"{secret} (item {number})"
                break
            keys.append(secret)
        else:
            return tuple(keys)
    raise ConfigurationError(
        "RETENTION_PREVIOUS_SUBSCRIBER_KEYS must be a list of the secrets "
        "RETENTION_SUBSCRIBER_KEY held before (str or bytes, none empty), or an empty list; "
        f"not {wrong}."
    )


@dataclass(frozen=True)
class Tuning:
    """Internal timings and sizes, with the defaults production runs with.

    Not configuration keys: a deployment has no reason to change them, and
    tests shorten the waits with ``Retention(app, tuning=Tuning(...))``.
    ``api_*`` pace and retry calls to Apple's management API (see
    :class:`~flask_retention.api.RetentionAPIClient`); ``sync_lock_timeout``
    is the seconds without heartbeat after which a sync's lock counts as
    abandoned, ``sync_lock_heartbeat`` the seconds between its heartbeats
    while a sync runs (at most a quarter of the timeout), and
    ``sync_lock_release_timeout`` the bound on each statement on the lock and
    on its release after an error or SIGTERM;
    ``perf_test_poll_interval`` the seconds between polls of a running
    performance test and ``perf_test_max_wait`` how long ``perf-test`` follows
    one before it stops and says how to fetch the result later;
    ``decision_log_batch`` the decision log's rows per insert,
    ``decision_log_interval`` the most seconds a decision waits to be written
    while traffic is steady, ``decision_log_idle`` the quiet seconds after
    which the queue is written at once, ``decision_log_retry`` the seconds
    between attempts while the database is unreachable;
    ``notifications_timeout`` the seconds the notifications endpoint waits to
    store a notification before answering ``503``;
    ``database_deadline`` the seconds that one round of background database
    work (a catalogue refresh, a decision-log batch) may take before its
    connection is abandoned (see :func:`~flask_retention.core.database.bounded`).
    """

    api_max_retries: int = 3
    api_retry_after_cap: float = 60.0
    api_pacing: float = 1.0
    api_budget_wait: float = 0.0
    sync_lock_timeout: float = 60.0
    sync_lock_heartbeat: float = 15.0
    sync_lock_release_timeout: float = 5.0
    perf_test_poll_interval: float = 5.0
    perf_test_max_wait: float = 1800.0
    decision_log_batch: int = 500
    decision_log_interval: float = 0.2
    decision_log_idle: float = 0.05
    decision_log_retry: float = 1.0
    notifications_timeout: float = 2.0
    database_deadline: float = 5.0

    def __post_init__(self) -> None:
        minimums = {
            "decision_log_batch": 1,
            "decision_log_interval": 0.001,
            "decision_log_idle": 0.001,
            "decision_log_retry": 0.001,
            "notifications_timeout": 0.01,
            "sync_lock_heartbeat": 0.001,
            "sync_lock_release_timeout": 0.001,
            "database_deadline": 0.01,
        }
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
    database_uri: str | None = field(repr=False)  # may hold a password
    api_base_url: str | Mapping[str, str] | None
    catalogue_refresh: float
    decision_log: bool
    decision_log_days: int
    trust_dev_ca: bool
    notifications_endpoint: str | None
    outcome_window: float
    api_timeout: float
    decision_log_queue: int
    database_timeout: float
    max_image_bytes: int
    subscriber_key: bytes | None = field(repr=False)
    """``RETENTION_SUBSCRIBER_KEY`` as bytes: the insights tables store
    ``HMAC-SHA256(subscriber_key, originalTransactionId)`` when it is set."""
    previous_subscriber_keys: tuple[bytes, ...] = field(repr=False)
    """``RETENTION_PREVIOUS_SUBSCRIBER_KEYS``: keys of older rows, for ``purge --subscriber``."""

    @property
    def default_environment(self) -> str:
        """The environment the CLI talks to unless told otherwise."""
        return self.environments[0]


def read_settings(config: Mapping[str, Any]) -> Settings:
    """Validate ``app.config`` and return :class:`Settings`.

    Raises :class:`~flask_retention.ConfigurationError` for the first wrong
    value, with a one-line message that names the key and says what it must
    be or where App Store Connect shows it.
    """
    environments = _environments(config["RETENTION_ENVIRONMENT"])
    app_apple_id = _app_apple_id(config["RETENTION_APP_APPLE_ID"])
    if "Production" in environments and app_apple_id is None:
        source = SOURCES["RETENTION_APP_APPLE_ID"]
        raise ConfigurationError(
            "RETENTION_APP_APPLE_ID is required when RETENTION_ENVIRONMENT accepts Production "
            "(Apple requires every production request's appAppleId to be checked): set it to "
            f"{source}."
        )

    trust_dev_ca = _flag(config, "RETENTION_TRUST_DEV_CA")
    if trust_dev_ca and "Production" in environments:
        raise ConfigurationError(
            "RETENTION_TRUST_DEV_CA cannot be used while RETENTION_ENVIRONMENT accepts "
            "Production: the local dev CA is for development only."
        )

    return Settings(
        environments=environments,
        app_apple_id=app_apple_id,
        bundle_id=_app_store_text(config, "RETENTION_BUNDLE_ID"),
        issuer_id=_app_store_text(config, "RETENTION_ISSUER_ID"),
        key_id=_app_store_text(config, "RETENTION_KEY_ID"),
        private_key=load_private_key(
            config["RETENTION_PRIVATE_KEY"], config["RETENTION_PRIVATE_KEY_PATH"]
        ),
        root_certificates=load_root_certificates(config["RETENTION_ROOT_CERTIFICATES"]),
        endpoint=_rule(
            config, "RETENTION_ENDPOINT", example="/retention/realtime", none="no endpoint"
        ),
        max_request_age=_number(config, "RETENTION_MAX_REQUEST_AGE", unit="seconds", minimum=1),
        selector_timeout=_number(
            config, "RETENTION_SELECTOR_TIMEOUT", unit="seconds", minimum=0.001
        ),
        selector_workers=_number(
            config, "RETENTION_SELECTOR_WORKERS", unit="threads", minimum=1, integer=True
        ),
        database_uri=_database_uri(config["RETENTION_DATABASE_URI"]),
        api_base_url=_api_base_url(config["RETENTION_API_BASE_URL"]),
        catalogue_refresh=_number(
            config, "RETENTION_CATALOGUE_REFRESH", unit="seconds", minimum=0.01
        ),
        decision_log=_flag(config, "RETENTION_DECISION_LOG"),
        decision_log_days=_number(
            config, "RETENTION_DECISION_LOG_DAYS", unit="days", minimum=1, integer=True
        ),
        trust_dev_ca=trust_dev_ca,
        notifications_endpoint=_rule(
            config,
            "RETENTION_NOTIFICATIONS_ENDPOINT",
            example="/retention/notifications",
            none="no notifications endpoint",
        ),
        outcome_window=_number(config, "RETENTION_OUTCOME_WINDOW", unit="seconds", minimum=1),
        api_timeout=_number(config, "RETENTION_API_TIMEOUT", unit="seconds", minimum=0.001),
        decision_log_queue=_number(
            config, "RETENTION_DECISION_LOG_QUEUE", unit="decisions", minimum=1, integer=True
        ),
        database_timeout=_number(config, "RETENTION_DATABASE_TIMEOUT", unit="seconds", minimum=0.1),
        max_image_bytes=_number(
            config, "RETENTION_MAX_IMAGE_BYTES", unit="bytes", minimum=1, integer=True
        ),
        subscriber_key=_subscriber_key(config["RETENTION_SUBSCRIBER_KEY"]),
        previous_subscriber_keys=_previous_subscriber_keys(
            config["RETENTION_PREVIOUS_SUBSCRIBER_KEYS"]
        ),
    )
