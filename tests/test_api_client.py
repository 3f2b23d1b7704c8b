"""The client's tokens, settings and checks that need no server."""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

from flask_retention import ConfigurationError, Retention, Tuning
from flask_retention.api import (
    PRODUCTION_URL,
    SANDBOX_URL,
    PerformanceTestRequest,
    RetentionAPIClient,
    SandboxOnlyError,
    client_from_app,
)
from flask_retention.appstore.pacing import default_limit

from .support import vector

ISSUER = "57246542-96fe-1a63-e053-0824d011072a"
KEY_ID = "ABCDEFGHIJ"
BUNDLE = "com.example.testbundleid"
KEY_PATH = vector("apple-test-pki/testSigningKey.p8")


def signing_key() -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(KEY_PATH.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def make_client(**overrides: Any) -> RetentionAPIClient:
    options: dict[str, Any] = {
        "issuer_id": ISSUER,
        "key_id": KEY_ID,
        "private_key": KEY_PATH.read_text(),
        "bundle_id": BUNDLE,
        "environment": "Sandbox",
    }
    options.update(overrides)
    return RetentionAPIClient(**options)


def test_token_is_es256_with_apples_header_and_claims() -> None:
    with make_client() as client:
        before = int(time.time())
        token = client.make_token()
        after = int(time.time())
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "ES256", "kid": KEY_ID, "typ": "JWT"}
    claims = jwt.decode(
        token,
        signing_key().public_key(),
        algorithms=["ES256"],
        audience="appstoreconnect-v1",
        issuer=ISSUER,
        options={"require": ["iss", "iat", "exp", "aud", "bid"]},
    )
    assert claims["bid"] == BUNDLE
    assert before <= claims["iat"] <= after
    assert claims["exp"] - claims["iat"] == 300


def test_token_does_not_verify_with_another_key() -> None:
    with make_client() as client:
        token = client.make_token()
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other, algorithms=["ES256"], audience="appstoreconnect-v1")


def test_every_token_is_freshly_signed() -> None:
    with make_client() as client:
        tokens = {client.make_token() for _ in range(5)}
    assert len(tokens) == 5


def test_key_object_and_pem_bytes_are_accepted() -> None:
    for key in (signing_key(), KEY_PATH.read_bytes()):
        with make_client(private_key=key) as client:
            token = client.make_token()
        jwt.decode(
            token, signing_key().public_key(), algorithms=["ES256"], audience="appstoreconnect-v1"
        )


@pytest.mark.parametrize("lifetime", [0, 3601, 1.5, True])
def test_token_lifetime_is_at_most_an_hour(lifetime: Any) -> None:
    with pytest.raises(ValueError, match="token_lifetime"):
        make_client(token_lifetime=lifetime)


def test_token_lifetime_of_an_hour_is_accepted() -> None:
    with make_client(token_lifetime=3600) as client:
        claims = jwt.decode(client.make_token(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600


@pytest.mark.parametrize(
    ("key", "complaint"),
    [
        ("not a key", "not a readable unencrypted PEM private key"),
        (ec.generate_private_key(ec.SECP384R1()), "EC P-256"),
        (42, "EC P-256"),
    ],
)
def test_unusable_private_key_is_refused_without_echoing_it(key: Any, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint) as caught:
        make_client(private_key=key)
    assert "not a key" not in str(caught.value)


def test_repr_shows_no_secret() -> None:
    pem = KEY_PATH.read_text()
    with make_client() as client:
        text = repr(client)
        token = client.make_token()
    assert "Sandbox" in text
    assert BUNDLE in text
    body = "".join(pem.splitlines()[1:-1])
    assert body[:20] not in text
    assert token not in text


def test_closed_client_says_so() -> None:
    client = make_client(base_url="http://127.0.0.1:9")
    with client:
        pass
    with pytest.raises(RuntimeError, match="is closed; build a new client to call Get Image List"):
        client.get_image_list()


def test_hosts_follow_the_environment_and_base_url_overrides() -> None:
    assert SANDBOX_URL == "https://api.storekit-sandbox.apple.com"
    assert PRODUCTION_URL == "https://api.storekit.apple.com"
    with make_client() as client:
        assert client.base_url == SANDBOX_URL
    with make_client(environment="Production") as client:
        assert client.base_url == PRODUCTION_URL
    with make_client(base_url="http://127.0.0.1:9/prefix/") as client:
        assert client.base_url == "http://127.0.0.1:9/prefix"


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"environment": "sandbox"}, "environment must be 'Sandbox' or 'Production'"),
        ({"issuer_id": ""}, "issuer_id must be a non-empty string"),
        ({"bundle_id": None}, "bundle_id must be a non-empty string"),
        ({"base_url": "api.storekit.apple.com"}, "base_url must be an http"),
        ({"base_url": "https://x.example/?a=1"}, "base_url must be an http"),
        ({"pacing": -1}, "pacing must be a number >= 0"),
        ({"max_retries": -1}, "max_retries must be an integer >= 0"),
        ({"budgets": {"upload_images": 3}}, "unknown endpoint"),
        ({"budgets": {"upload_image": -3}}, "must be an integer >= 0"),
        ({"timeout": 0}, "timeout must be a number"),
    ],
)
def test_bad_options_are_refused(overrides: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        make_client(**overrides)


def test_budget_overrides_and_window_apply_per_endpoint() -> None:
    with make_client(pacing=0.01, budgets={"upload_image": 3}, budget_window=2.0) as client:
        upload = client.limit("upload_image")
        assert (upload.budget, upload.window) == (3, 2.0)
        apple = default_limit("upload_image", "Sandbox")
        assert upload.interval == pytest.approx(apple.interval * 0.01)
        assert client.limit("get_image_list") == dataclasses.replace(
            default_limit("get_image_list", "Sandbox", pacing=0.01), window=2.0
        )


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.initiate_performance_test(PerformanceTestRequest("2000000123")),
        lambda c: c.get_performance_test_results(uuid.uuid4()),
    ],
)
def test_performance_test_on_production_fails_before_any_request(call: Any) -> None:
    # The base URL is a closed port: a request would end in a network error instead.
    with make_client(environment="Production", base_url="http://127.0.0.1:9") as client:
        with pytest.raises(SandboxOnlyError, match="only in Apple's sandbox"):
            call(client)
        assert client.budget_used("initiate_performance_test") == 0
        assert client.budget_used("get_performance_test_results") == 0


@pytest.mark.parametrize(
    ("call", "complaint"),
    [
        (lambda c: c.delete_image("nope"), "image_identifier must be a UUID"),
        (lambda c: c.upload_image(uuid.uuid4(), b"GIF89a"), "not a PNG"),
        (lambda c: c.upload_image(uuid.uuid4(), "x.png"), "PNG file's bytes"),
        (
            lambda c: c.upload_image(uuid.uuid4(), b"\x89PNG\r\n\x1a\n", "HUGE"),
            "FULL_SIZE or BULLET_POINT",
        ),
        (lambda c: c.upload_message(uuid.uuid4(), {"header": "h"}), "UploadMessageRequestBody"),
        (lambda c: c.get_default_message("", "en-US"), "product_id must be a non-empty"),
        (lambda c: c.delete_default_message("com.example", None), "locale must be a non-empty"),
        (lambda c: c.configure_realtime_url("https://x.example"), "RealtimeUrlRequest"),
        (lambda c: c.get_performance_test_results("12"), "request_id must be a UUID"),
    ],
)
def test_bad_arguments_fail_before_any_request(call: Any, complaint: str) -> None:
    with (
        make_client(base_url="http://127.0.0.1:9") as client,
        pytest.raises(ValueError, match=complaint),
    ):
        call(client)


# -- client_from_app -----------------------------------------------------------

#: ``app.config`` values, as ``init`` takes them (Any: so ``**`` never stands for ``tuning``).
API_CONFIG: dict[str, Any] = {
    "RETENTION_ISSUER_ID": ISSUER,
    "RETENTION_KEY_ID": KEY_ID,
    "RETENTION_PRIVATE_KEY_PATH": str(KEY_PATH),
    "RETENTION_BUNDLE_ID": BUNDLE,
}


def init(app: Flask, tuning: Tuning | None = None, **config: Any) -> Flask:
    app.config.update(config)
    Retention(app) if tuning is None else Retention(app, tuning=tuning)
    return app


def test_client_from_app_uses_the_config(app: Flask) -> None:
    init(
        app,
        **API_CONFIG,
        RETENTION_API_TIMEOUT=5,
        tuning=Tuning(api_max_retries=1, api_retry_after_cap=2, api_pacing=0.5, api_budget_wait=7),
    )
    with client_from_app(app) as client:
        assert (client.issuer_id, client.key_id, client.bundle_id) == (ISSUER, KEY_ID, BUNDLE)
        assert client.environment == "Sandbox"
        assert client.base_url == SANDBOX_URL
        assert (client.max_retries, client.retry_after_cap, client.budget_wait) == (1, 2, 7)
        apple = default_limit("upload_image", "Sandbox")
        assert client.limit("upload_image").interval == pytest.approx(apple.interval * 0.5)
        token = client.make_token()
    jwt.decode(
        token, signing_key().public_key(), algorithms=["ES256"], audience="appstoreconnect-v1"
    )


def test_client_from_app_defaults_to_the_current_app_and_first_environment(app: Flask) -> None:
    init(
        app,
        **API_CONFIG,
        RETENTION_ENVIRONMENT=["Production", "Sandbox"],
        RETENTION_APP_APPLE_ID=1234,
    )
    with app.app_context(), client_from_app() as client:
        assert client.environment == "Production"
        assert client.base_url == PRODUCTION_URL


def test_base_url_mapping_picks_the_environment(app: Flask) -> None:
    init(
        app,
        **API_CONFIG,
        RETENTION_API_BASE_URL={"Sandbox": "http://127.0.0.1:8001"},
    )
    with client_from_app(app, "Sandbox") as client:
        assert client.base_url == "http://127.0.0.1:8001"
    with client_from_app(app, "Production") as client:
        assert client.base_url == PRODUCTION_URL


def test_single_base_url_serves_every_environment(app: Flask) -> None:
    init(app, **API_CONFIG, RETENTION_API_BASE_URL="http://127.0.0.1:8002")
    with client_from_app(app, "Production") as client:
        assert client.base_url == "http://127.0.0.1:8002"


@pytest.mark.parametrize(
    ("missing", "where"),
    [
        ("RETENTION_ISSUER_ID", "Issuer ID"),
        ("RETENTION_KEY_ID", "Key ID"),
        ("RETENTION_PRIVATE_KEY_PATH", ".p8 file"),
        ("RETENTION_BUNDLE_ID", "Bundle ID"),
    ],
)
def test_missing_setting_names_the_key_and_where_to_find_it(
    app: Flask, missing: str, where: str
) -> None:
    config = {k: v for k, v in API_CONFIG.items() if k != missing}
    init(app, **config)
    key = "RETENTION_PRIVATE_KEY" if missing.endswith("_PATH") else missing
    with pytest.raises(ConfigurationError, match=key) as caught:
        client_from_app(app)
    assert where in str(caught.value)
    assert "App Store Connect" in str(caught.value)


def test_unknown_environment_is_refused(app: Flask) -> None:
    init(app, **API_CONFIG)
    with pytest.raises(ConfigurationError, match="environment must be"):
        client_from_app(app, "Xcode")


def test_the_client_timeout_is_validated(app: Flask) -> None:
    with pytest.raises(ConfigurationError, match="RETENTION_API_TIMEOUT"):
        init(app, RETENTION_API_TIMEOUT=0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("api_max_retries", 1.5),
        ("api_retry_after_cap", -1),
        ("api_pacing", "fast"),
        ("api_budget_wait", None),
        ("sync_lock_timeout", -1),
        ("perf_test_poll_interval", "often"),
        ("decision_log_batch", 0),
        ("decision_log_interval", 0),
    ],
)
def test_tuning_values_are_validated(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"Tuning.{field} must be"):
        Tuning(**{field: value})


def test_key_text_in_config_works_too(app: Flask) -> None:
    config = {k: v for k, v in API_CONFIG.items() if k != "RETENTION_PRIVATE_KEY_PATH"}
    init(app, **config, RETENTION_PRIVATE_KEY=KEY_PATH.read_text())
    with client_from_app(app) as client:
        assert client.make_token()


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    with make_client(backoff_base=1.0, backoff_cap=4.0) as client:
        for attempt, ceiling in enumerate([1.0, 2.0, 4.0, 4.0, 4.0]):
            delays = [client._backoff(attempt) for _ in range(50)]
            assert all(ceiling / 2 <= d <= ceiling for d in delays)
            assert len(set(delays)) > 1  # jittered
