"""The fake's performance test really calls a real-time URL with signed requests."""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Flask, Response, jsonify, redirect, request

from flask_retention.realtime.verification import JWSVerifier
from flask_retention.testing import (
    AppStoreSigner,
    FakeAppStore,
    FakeAppStorePair,
    PerformanceTestRun,
    serve,
)

from .fake_store_support import BUNDLE, ISSUER, KEY_ID, Api, error_code
from .support import vector

#: The products the app of these tests sells.
PRODUCTS = ["com.example.monthly"]

FAST = {
    "maxConcurrentRequests": 3,
    "totalRequests": 12,
    "totalDuration": 0,
    "responseTimeThreshold": 5000,
    "successRateThreshold": 95,
}


class Target:
    """A tiny real-time endpoint on loopback whose behaviour a test chooses."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.delay = 0.0
        self.payloads: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.app = Flask("realtime_target")
        self.app.add_url_rule("/rt", view_func=self.answer, methods=["POST"])

    def answer(self) -> Any:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.payloads.append(request.get_json()["signedPayload"])
        try:
            if self.delay:
                time.sleep(self.delay)
            if self.mode == "error":
                return "boom", 500
            if self.mode == "text":
                return "not json", 200
            if self.mode == "list":
                return jsonify([])
            if self.mode == "two-choices":
                chosen = {"messageIdentifier": str(uuid.uuid4())}
                return jsonify(message=chosen, promotionalOffer=chosen)
            if self.mode == "latin-1":
                return Response("{}", content_type="application/json; charset=latin-1")
            if self.mode == "loop":
                return redirect("/rt", code=307)
            if self.mode == "drop":
                request.environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)
            return jsonify({})
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.fixture
def target() -> Iterator[tuple[Target, str]]:
    endpoint = Target()
    with serve(endpoint.app) as url:
        yield endpoint, f"{url}/rt"


@pytest.fixture
def signer() -> AppStoreSigner:
    return AppStoreSigner()


@pytest.fixture
def perf_config() -> dict[str, int]:
    return dict(FAST)


@pytest.fixture
def store(
    key: ec.EllipticCurvePrivateKey, signer: AppStoreSigner, perf_config: dict[str, int]
) -> Iterator[FakeAppStore]:
    fake = FakeAppStore(
        public_key=key.public_key(),
        key_id=KEY_ID,
        issuer_id=ISSUER,
        bundle_id=BUNDLE,
        product_ids=PRODUCTS,
        signer=signer,
        allow_http_targets=True,
        app_apple_id=531412,
        performance_test_config=perf_config,
    )
    yield fake
    fake.close()


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def api(store: FakeAppStore, key: ec.EllipticCurvePrivateKey) -> Iterator[Api]:
    with serve(store) as url:
        client = Api(url, key)
        yield client
        client.http.close()


def run_test(api: Api, url: str | None) -> tuple[str, dict[str, Any]]:
    """Point the fake at ``url`` (``None``: keep the URL it has), start a performance test
    and poll it to its end."""
    if url is not None:
        assert api("PUT", "/realtime/url", json={"realtimeURL": url}).status_code == 200
    started = api("POST", "/performanceTest", json={"originalTransactionId": "99371282"})
    assert started.status_code == 200, started.text
    request_id: str = started.json()["requestId"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        result: dict[str, Any] = api("GET", f"/performanceTest/result/{request_id}").json()
        if result["result"] != "PENDING":
            return request_id, result
        time.sleep(0.05)
    raise AssertionError("the performance test did not finish")


def test_fast_endpoint_passes(
    api: Api, store: FakeAppStore, target: tuple[Target, str], signer: AppStoreSigner
) -> None:
    endpoint, url = target
    started = api("POST", "/performanceTest", json={"originalTransactionId": "99371282"})
    assert (started.status_code, error_code(started)) == (400, 4000211)
    _, result = run_test(api, url)
    assert result["config"] == FAST
    assert result["target"] == url
    assert (result["result"], result["successRate"], result["numPending"]) == ("PASS", 100, 0)
    assert result["failures"] == {}
    times = result["responseTimes"]
    assert set(times) == {"average", "p50", "p90", "p95", "p99"}
    assert times["p50"] <= times["p90"] <= times["p95"] <= times["p99"]
    assert len(endpoint.payloads) == 12
    assert endpoint.max_in_flight <= 3
    claims = jwt.decode(endpoint.payloads[0], signer.leaf_public_key, algorithms=["ES256"])
    assert claims["originalTransactionId"] == "99371282"
    assert (claims["appAppleId"], claims["environment"]) == (531412, "Sandbox")
    assert len({jwt.decode(p, options={"verify_signature": False})["requestIdentifier"]
                for p in endpoint.payloads}) == 12  # fmt: skip
    assert store.passed_performance_test


def test_result_shape_matches_apples_fixture(api: Api, target: tuple[Target, str]) -> None:
    apple = json.loads(vector("apple-fixtures/performanceTestResultResponse.json").read_text())
    _, result = run_test(api, target[1])
    assert set(result) == set(apple)
    assert set(result["config"]) == set(apple["config"])
    assert set(result["responseTimes"]) == set(apple["responseTimes"])


@pytest.mark.parametrize("perf_config", [{**FAST, "responseTimeThreshold": 50, "totalRequests": 4}])
def test_slow_endpoint_fails_with_timeouts(
    api: Api, store: FakeAppStore, target: tuple[Target, str]
) -> None:
    endpoint, url = target
    endpoint.delay = 0.3
    _, result = run_test(api, url)
    assert (result["result"], result["successRate"]) == ("FAIL", 0)
    assert result["failures"] == {"TIMED_OUT": 4}
    assert not store.passed_performance_test


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("error", "UNSUCCESSFUL_HTTP_RESPONSE_CODE"),
        ("text", "INVALID_RESPONSE"),
        ("list", "INVALID_RESPONSE"),
        ("two-choices", "INVALID_RESPONSE"),
        ("latin-1", "UNSUPPORTED_CHARSET"),
        ("loop", "CIRCULAR_REDIRECT"),
        ("drop", "NO_RESPONSE"),
    ],
)
def test_bad_answers_fail_by_reason(
    api: Api, target: tuple[Target, str], mode: str, reason: str
) -> None:
    endpoint, url = target
    endpoint.mode = mode
    _, result = run_test(api, url)
    assert (result["result"], result["successRate"]) == ("FAIL", 0)
    assert result["failures"] == {reason: 12}


def self_signed_context(directory: Path) -> ssl.SSLContext:
    """A server TLS context with a self-signed certificate for 127.0.0.1 (no client trusts it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


@pytest.mark.parametrize("perf_config", [{**FAST, "totalRequests": 2}])
def test_untrusted_certificate_fails_with_tls_issues(api: Api, tmp_path: Path) -> None:
    endpoint = Target()
    with serve(endpoint.app, ssl_context=self_signed_context(tmp_path)) as url:
        assert url.startswith("https://127.0.0.1:")
        _, result = run_test(api, f"{url}/rt")
    assert result["result"] == "FAIL"
    assert result["failures"] == {"TLS_ISSUE": 2}
    assert endpoint.payloads == []


@pytest.mark.parametrize("perf_config", [{**FAST, "totalRequests": 2}])
def test_closed_port_fails_with_socket_issues(api: Api) -> None:
    with serve(Flask("gone")) as url:
        pass
    _, result = run_test(api, f"{url}/rt")
    assert result["result"] == "FAIL"
    assert result["failures"] == {"SOCKET_ISSUE": 2}


@pytest.mark.parametrize("perf_config", [{**FAST, "totalRequests": 3, "totalDuration": 60000}])
def test_only_one_test_runs_at_a_time(
    api: Api, store: FakeAppStore, target: tuple[Target, str]
) -> None:
    api("PUT", "/realtime/url", json={"realtimeURL": target[1]})
    started = api("POST", "/performanceTest", json={"originalTransactionId": "99371282"})
    request_id = started.json()["requestId"]
    again = api("POST", "/performanceTest", json={"originalTransactionId": "99371282"})
    assert (again.status_code, error_code(again)) == (400, 4000213)
    result = api("GET", f"/performanceTest/result/{request_id}").json()
    assert result["result"] == "PENDING"
    assert result["numPending"] >= 1
    store.close()
    result = api("GET", f"/performanceTest/result/{request_id}").json()
    assert (result["result"], result["numPending"]) == ("FAIL", 0)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, 4000211),
        ({"originalTransactionId": "not-a-number"}, 4000006),
        ({"originalTransactionId": 99371282}, 4000006),
    ],
)
def test_invalid_performance_test_request_is_refused(
    api: Api, target: tuple[Target, str], body: dict[str, Any], code: int
) -> None:
    api("PUT", "/realtime/url", json={"realtimeURL": target[1]})
    response = api("POST", "/performanceTest", json=body)
    assert (response.status_code, error_code(response)) == (400, code)


@pytest.mark.parametrize(
    "transaction_id",
    [
        pytest.param("1", id="one-digit"),
        pytest.param("1234567", id="seven-digits"),
        pytest.param("\uff19\uff19\uff13\uff17\uff11\uff12\uff18\uff12", id="full-width"),
        pytest.param("\u0669\u0669\u0663\u0667\u0661\u0662\u0668\u0662", id="arabic-indic"),
        pytest.param("09937128", id="leading-zero"),
        pytest.param("12345678901234567890", id="twenty-digits"),
        pytest.param("9223372036854775808", id="over-int64"),
        pytest.param("-99371282", id="negative"),
        pytest.param(" 99371282", id="space"),
        pytest.param("", id="empty"),
    ],
)
def test_unrealistic_original_transaction_id_is_refused(
    api: Api, store: FakeAppStore, target: tuple[Target, str], transaction_id: str
) -> None:
    store.realtime_url = target[1]
    response = api("POST", "/performanceTest", json={"originalTransactionId": transaction_id})
    assert (response.status_code, error_code(response)) == (400, 4000006)
    assert target[0].payloads == []


@pytest.mark.parametrize(
    "transaction_id",
    [
        pytest.param("99371282", id="apples-example"),
        pytest.param("2000000123456789", id="sandbox-like"),
        pytest.param("9223372036854775807", id="int64-max"),
    ],
)
def test_realistic_original_transaction_id_starts_a_test(
    api: Api, store: FakeAppStore, target: tuple[Target, str], transaction_id: str
) -> None:
    store.realtime_url = target[1]
    started = api("POST", "/performanceTest", json={"originalTransactionId": transaction_id})
    assert started.status_code == 200, started.text


def test_unknown_and_malformed_request_ids(api: Api) -> None:
    unknown = api("GET", f"/performanceTest/result/{uuid.uuid4()}")
    assert (unknown.status_code, error_code(unknown)) == (404, 4040018)
    malformed = api("GET", "/performanceTest/result/12345")
    assert (malformed.status_code, error_code(malformed)) == (400, 4000212)


def test_performance_test_without_a_signer_says_how_to_fix_it(
    key: ec.EllipticCurvePrivateKey, target: tuple[Target, str]
) -> None:
    fake = FakeAppStore(
        public_key=key.public_key(),
        key_id=KEY_ID,
        issuer_id=ISSUER,
        bundle_id=BUNDLE,
        product_ids=PRODUCTS,
        allow_http_targets=True,
    )
    with serve(fake) as url:
        api = Api(url, key)
        api("PUT", "/realtime/url", json={"realtimeURL": target[1]})
        response = api("POST", "/performanceTest", json={"originalTransactionId": "99371282"})
        api.http.close()
    assert (response.status_code, error_code(response)) == (400, 4000211)
    assert "signer=AppStoreSigner" in response.json()["errorMessage"]


def test_performance_test_is_sandbox_only(
    key: ec.EllipticCurvePrivateKey, signer: AppStoreSigner
) -> None:
    fake = FakeAppStore(
        public_key=key.public_key(),
        key_id=KEY_ID,
        issuer_id=ISSUER,
        bundle_id=BUNDLE,
        product_ids=PRODUCTS,
        environment="Production",
        signer=signer,
    )
    with serve(fake) as url:
        api = Api(url, key)
        started = api("POST", "/performanceTest", json={"originalTransactionId": "99371282"})
        result = api("GET", f"/performanceTest/result/{uuid.uuid4()}")
        api.http.close()
    assert (started.status_code, started.content) == (404, b"")
    assert result.status_code == 404


def test_realtime_url_can_be_set_directly_for_tests(
    api: Api, store: FakeAppStore, target: tuple[Target, str]
) -> None:
    store.realtime_url = target[1]
    assert api("GET", "/realtime/url").json() == {"realtimeURL": target[1]}
    started = api("POST", "/performanceTest", json={"originalTransactionId": "99371282"})
    assert started.json()["config"] == FAST


def test_fixture_store_takes_only_https_urls_like_apple(
    fake_app_store: FakeAppStore,
    fake_app_store_url: str,
    app_store_key: ec.EllipticCurvePrivateKey,
    app_store_key_id: str,
    app_store_issuer_id: str,
    app_store_bundle_id: str,
) -> None:
    api = Api(
        fake_app_store_url,
        app_store_key,
        kid=app_store_key_id,
        iss=app_store_issuer_id,
        bid=app_store_bundle_id,
    )
    refused = api("PUT", "/realtime/url", json={"realtimeURL": "http://127.0.0.1:5000/rt"})
    accepted = api("PUT", "/realtime/url", json={"realtimeURL": "https://example.com/rt"})
    api.http.close()
    assert (refused.status_code, error_code(refused)) == (400, 4000215)
    assert accepted.status_code == 200
    assert fake_app_store.realtime_url == "https://example.com/rt"


def test_fixture_store_runs_a_test_the_app_verifies(
    fake_app_store: FakeAppStore,
    fake_app_store_url: str,
    app_store_key: ec.EllipticCurvePrivateKey,
    app_store_key_id: str,
    app_store_issuer_id: str,
    app_store_bundle_id: str,
    app_store_signer: AppStoreSigner,
) -> None:
    verifier = JWSVerifier([app_store_signer.root_pem])
    verified: list[dict[str, Any]] = []
    app = Flask("verifying_target")

    @app.post("/rt")
    def realtime() -> Response:
        verified.append(verifier.verify(request.get_json()["signedPayload"]))
        return jsonify({})

    api = Api(
        fake_app_store_url,
        app_store_key,
        kid=app_store_key_id,
        iss=app_store_issuer_id,
        bid=app_store_bundle_id,
    )
    with serve(app) as target:
        fake_app_store.realtime_url = f"{target}/rt"  # Apple's https:// rule, skipped
        _, result = run_test(api, None)
    api.http.close()
    assert (result["result"], result["successRate"]) == ("PASS", 100)
    assert len(verified) == result["config"]["totalRequests"] == 20
    assert {payload["environment"] for payload in verified} == {"Sandbox"}
    assert fake_app_store.passed_performance_test


def test_performance_test_run_works_on_its_own(
    target: tuple[Target, str], signer: AppStoreSigner
) -> None:
    endpoint, url = target
    finished: list[str] = []
    run = PerformanceTestRun(
        target=url,
        signer=signer,
        config={"totalRequests": 5, "totalDuration": 0, "responseTimeThreshold": 5000},
        on_done=lambda done: finished.append(done.request_id),
    )
    with pytest.raises(RuntimeError, match="start"):
        run.wait()
    run.start()
    assert run.wait(30)
    result = run.result()
    assert (result["result"], result["successRate"]) == ("PASS", 100)
    assert result["config"]["successRateThreshold"] == 95
    assert finished == [run.request_id]
    assert len(endpoint.payloads) == 5
    with pytest.raises(RuntimeError, match="already started"):
        run.start()


@pytest.fixture
def pair(key: ec.EllipticCurvePrivateKey, signer: AppStoreSigner) -> Iterator[FakeAppStorePair]:
    """Both environments of one app, with a short performance test; closed afterwards."""
    both = FakeAppStorePair(
        public_key=key.public_key(),
        key_id=KEY_ID,
        issuer_id=ISSUER,
        bundle_id=BUNDLE,
        product_ids=PRODUCTS,
        signer=signer,
        performance_test_config=FAST,
    )
    try:
        yield both
    finally:
        both.close()


def test_pair_production_takes_a_url_once_the_sandbox_passed_a_test(
    key: ec.EllipticCurvePrivateKey, pair: FakeAppStorePair, target: tuple[Target, str]
) -> None:
    body = {"realtimeURL": "https://example.com/rt"}
    with serve(pair) as url:
        urls = pair.base_urls(url)
        sandbox, production = Api(urls["Sandbox"], key), Api(urls["Production"], key)
        refused = production("PUT", "/realtime/url", json=body)
        pair.sandbox.realtime_url = target[1]
        _, result = run_test(sandbox, None)
        accepted = production("PUT", "/realtime/url", json=body)
        sandbox.http.close()
        production.http.close()
    assert (refused.status_code, error_code(refused)) == (403, 4030026)
    assert result["result"] == "PASS"
    assert accepted.status_code == 200
    assert pair.production.realtime_url == "https://example.com/rt"
    assert not pair.production.passed_performance_test  # its own flag: the link is read


def test_pair_production_stays_closed_after_a_failed_sandbox_test(
    key: ec.EllipticCurvePrivateKey, pair: FakeAppStorePair, target: tuple[Target, str]
) -> None:
    endpoint, target_url = target
    endpoint.mode = "error"
    with serve(pair) as url:
        urls = pair.base_urls(url)
        sandbox, production = Api(urls["Sandbox"], key), Api(urls["Production"], key)
        pair.sandbox.realtime_url = target_url
        _, result = run_test(sandbox, None)
        refused = production("PUT", "/realtime/url", json={"realtimeURL": "https://example.com/"})
        sandbox.http.close()
        production.http.close()
    assert result["result"] == "FAIL"
    assert (refused.status_code, error_code(refused)) == (403, 4030026)
