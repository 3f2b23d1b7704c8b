"""Apple's performance test, run for real: signed requests to a real-time URL, measured.

:class:`PerformanceTestRun` sends ``totalRequests`` signed real-time requests
to a URL, at most ``maxConcurrentRequests`` at a time, spread over
``totalDuration`` milliseconds, and reports Apple's
``PerformanceTestResultResponse``: a request succeeds when it answers ``200``
with a JSON object naming at most one choice within ``responseTimeThreshold``
milliseconds; every other outcome counts under Apple's ``sendAttemptResult``
name. :class:`~flask_retention.testing.FakeAppStore` runs one per
``Initiate Performance Test``; ``flask retention simulate``
(:func:`flask_retention.appstore.simulate.simulate`) runs one against any URL.
"""

from __future__ import annotations

import codecs
import json
import logging
import math
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, Protocol

import httpx

logger = logging.getLogger(__name__)

DEFAULT_PERFORMANCE_TEST_CONFIG: Final[Mapping[str, int]] = {
    "maxConcurrentRequests": 10,
    "totalRequests": 100,
    "totalDuration": 60000,
    "responseTimeThreshold": 700,
    "successRateThreshold": 95,
}
"""Apple-like numbers; Apple's real ones come back from Initiate Performance Test."""

RESPONSE_KEYS: Final = ("message", "alternateProduct", "promotionalOffer", "advancedCommerceInfo")


class RealtimeRequestSigner(Protocol):
    """What the performance test needs of the testing kit's ``AppStoreSigner``."""

    def sign_realtime_request(
        self,
        *,
        original_transaction_id: str,
        app_apple_id: int,
        environment: str,
        product_id: str,
        locale: str,
    ) -> str:
        """A signed ``DecodedRealtimeRequestBody`` JWS, as the App Store sends it."""
        ...


def performance_test_config(overrides: Mapping[str, int] | None = None) -> dict[str, int]:
    """:data:`DEFAULT_PERFORMANCE_TEST_CONFIG` with ``overrides``, checked."""
    config = dict(DEFAULT_PERFORMANCE_TEST_CONFIG)
    for key, value in (overrides or {}).items():
        if key not in config:
            raise ValueError(
                f"unknown performance_test_config key {key!r}; "
                f"use {', '.join(DEFAULT_PERFORMANCE_TEST_CONFIG)}"
            )
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"performance_test_config[{key!r}] must be an int >= 0")
        config[key] = value
    if config["maxConcurrentRequests"] < 1 or config["totalRequests"] < 1:
        raise ValueError("maxConcurrentRequests and totalRequests must be at least 1")
    return config


class PerformanceTestRun:
    """One performance test: real signed requests to ``target``, measured like Apple's.

    ``config`` is a ``PerformanceTestConfig`` (missing keys take
    :data:`DEFAULT_PERFORMANCE_TEST_CONFIG`); every request carries a fresh
    ``signer.sign_realtime_request(...)`` for ``environment`` (Apple's test:
    the ``Sandbox``). Request *i* takes the *i*-th of ``products`` (pairs of
    product ID and locale; default ``product_id`` and ``locale``) and of
    ``original_transaction_ids`` (default ``original_transaction_id``), in
    turn. Call :meth:`start`, then poll :meth:`result` or :meth:`wait`;
    :meth:`cancel` stops it. ``on_attempt`` is called with each request's
    outcome as it ends, ``on_done`` when the run ends (both in the run's
    threads).
    """

    def __init__(
        self,
        *,
        target: str,
        signer: RealtimeRequestSigner,
        config: Mapping[str, int] | None = None,
        original_transaction_id: str = "1000000000000001",
        app_apple_id: int = 1234567890,
        product_id: str = "com.example.monthly",
        request_id: str | None = None,
        on_done: Callable[[PerformanceTestRun], None] | None = None,
        environment: str = "Sandbox",
        locale: str = "en-US",
        products: Sequence[tuple[str, str]] | None = None,
        original_transaction_ids: Sequence[str] | None = None,
        on_attempt: Callable[[str], None] | None = None,
    ) -> None:
        self.request_id = request_id or str(uuid.uuid4())
        self.config = performance_test_config(config)
        self.target = target
        self.signer = signer
        self.original_transaction_id = original_transaction_id
        self.app_apple_id = app_apple_id
        self.product_id = product_id
        self.on_done = on_done
        self.environment = environment
        self.products: tuple[tuple[str, str], ...] = tuple(products or ((product_id, locale),))
        self.original_transaction_ids: tuple[str, ...] = tuple(
            original_transaction_ids or (original_transaction_id,)
        )
        if not self.products or not self.original_transaction_ids:
            raise ValueError("products and original_transaction_ids must not be empty")
        self.on_attempt = on_attempt
        self._lock = threading.Lock()
        self._http_errors: Counter[str] = Counter()
        self._outcomes: list[str] = []
        self._times: list[float] = []
        self._done = False
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def done(self) -> bool:
        """Whether every request has been answered (or the run was cancelled)."""
        with self._lock:
            return self._done

    def start(self) -> None:
        """Start sending, in a daemon thread; once only."""
        if self._thread is not None:
            raise RuntimeError("this performance test was already started")
        self._thread = threading.Thread(
            target=self._run, name=f"performance-test-{self.request_id[:8]}", daemon=True
        )
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the run is done or ``timeout`` seconds pass; whether it is done."""
        if self._thread is None:
            raise RuntimeError("start() the performance test before waiting for it")
        self._thread.join(timeout)
        return self.done

    def cancel(self) -> None:
        """Send no more requests and wait for those in flight."""
        self._cancel.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        total = self.config["totalRequests"]
        concurrency = self.config["maxConcurrentRequests"]
        threshold = self.config["responseTimeThreshold"] / 1000
        spacing = self.config["totalDuration"] / 1000 / total
        timeout = httpx.Timeout(max(threshold, 0.001), pool=None)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        try:
            with (
                # Like Apple, ignore the test machine's proxy settings.
                httpx.Client(
                    timeout=timeout, limits=limits, follow_redirects=True, trust_env=False
                ) as client,
                ThreadPoolExecutor(concurrency, thread_name_prefix="performance-test") as pool,
            ):
                start = time.monotonic()
                for index in range(total):
                    delay = start + index * spacing - time.monotonic()
                    if self._cancel.wait(delay if delay > 0 else 0):
                        pool.shutdown(cancel_futures=True)
                        break
                    pool.submit(self._attempt, client, threshold, index)
        except Exception:
            logger.exception("performance test %s stopped early", self.request_id)
        finally:
            with self._lock:
                self._done = True
            if self.on_done is not None:
                self.on_done(self)

    def _attempt(self, client: httpx.Client, threshold: float, index: int) -> None:
        if self._cancel.is_set():
            return
        started = time.monotonic()
        product_id, locale = self.products[index % len(self.products)]
        try:
            token = self.signer.sign_realtime_request(
                original_transaction_id=self.original_transaction_ids[
                    index % len(self.original_transaction_ids)
                ],
                app_apple_id=self.app_apple_id,
                environment=self.environment,
                product_id=product_id,
                locale=locale,
            )
            started = time.monotonic()
            response = client.post(self.target, json={"signedPayload": token})
            outcome = _classify_response(response)
            if outcome == "UNSUCCESSFUL_HTTP_RESPONSE_CODE":
                self._note_http_error(response)
            elapsed = time.monotonic() - started
            if outcome == "SUCCESS" and elapsed > threshold:
                outcome = "TIMED_OUT"
        except httpx.TimeoutException:
            outcome = "TIMED_OUT"
        except httpx.TooManyRedirects:
            outcome = "CIRCULAR_REDIRECT"
        except httpx.ConnectError as exc:
            outcome = "TLS_ISSUE" if _caused_by_tls(exc) else "SOCKET_ISSUE"
        except httpx.RemoteProtocolError as exc:
            outcome = "NO_RESPONSE" if "without sending" in str(exc) else "PREMATURE_CLOSE"
        except httpx.NetworkError:
            outcome = "SOCKET_ISSUE"
        except httpx.DecodingError:
            outcome = "INVALID_RESPONSE"
        except Exception:
            logger.exception("performance test request %s failed unexpectedly", self.request_id)
            outcome = "OTHER"
        elapsed = time.monotonic() - started
        with self._lock:
            self._outcomes.append(outcome)
            self._times.append(elapsed * 1000)
        if self.on_attempt is not None:
            self.on_attempt(outcome)

    def _note_http_error(self, response: httpx.Response) -> None:
        code = ""
        try:
            body = response.json()
            if isinstance(body, dict) and isinstance(body.get("error"), str):
                code = " " + body["error"][:60]
        except ValueError:
            pass
        with self._lock:
            self._http_errors[f"{response.status_code}{code}"] += 1

    @property
    def attempted(self) -> int:
        """How many requests have ended so far, whatever their outcome."""
        with self._lock:
            return len(self._outcomes)

    def http_errors(self) -> dict[str, int]:
        """The ``UNSUCCESSFUL_HTTP_RESPONSE_CODE`` answers by status and JSON ``error`` code
        (``"401 untrusted_root"``): what Apple's result does not say, and a developer needs."""
        with self._lock:
            return dict(self._http_errors.most_common())

    def result(self) -> dict[str, Any]:
        """Apple's ``PerformanceTestResultResponse`` for this run, so far."""
        with self._lock:
            outcomes = list(self._outcomes)
            times = sorted(self._times)
            done = self._done
        total = self.config["totalRequests"]
        successes = outcomes.count("SUCCESS")
        failures: dict[str, int] = {}
        for outcome in outcomes:
            if outcome != "SUCCESS":
                failures[outcome] = failures.get(outcome, 0) + 1
        if done:
            rate = successes * 100 // total
            status = "PASS" if rate >= self.config["successRateThreshold"] else "FAIL"
        else:
            rate = successes * 100 // len(outcomes) if outcomes else 0
            status = "PENDING"
        return {
            "config": dict(self.config),
            "target": self.target,
            "result": status,
            "successRate": rate,
            "numPending": 0 if done else total - len(outcomes),
            "responseTimes": {
                "average": round(sum(times) / len(times)) if times else 0,
                "p50": _percentile(times, 50),
                "p90": _percentile(times, 90),
                "p95": _percentile(times, 95),
                "p99": _percentile(times, 99),
            },
            "failures": failures,
        }


def _percentile(ordered: list[float], percent: int) -> int:
    """Nearest-rank percentile of sorted values, rounded to whole milliseconds."""
    if not ordered:
        return 0
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return round(ordered[rank - 1])


def _caused_by_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _classify_response(response: httpx.Response) -> str:
    """Apple's ``sendAttemptResult`` for an answer that arrived (before the time check)."""
    if response.status_code != 200:
        return "UNSUCCESSFUL_HTTP_RESPONSE_CODE"
    charset = response.charset_encoding
    if charset is not None:
        try:
            if codecs.lookup(charset).name not in ("utf-8", "ascii"):
                return "UNSUPPORTED_CHARSET"
        except LookupError:
            return "UNSUPPORTED_CHARSET"
    try:
        body = json.loads(response.content)
    except ValueError:
        return "INVALID_RESPONSE"
    if not isinstance(body, dict):
        return "INVALID_RESPONSE"
    chosen = [key for key in RESPONSE_KEYS if key in body]
    if len(chosen) > 1 or any(not isinstance(body[key], dict) for key in chosen):
        return "INVALID_RESPONSE"
    return "SUCCESS"
