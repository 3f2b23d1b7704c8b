"""Client for Apple's Retention Messaging management API.

:class:`RetentionAPIClient` has one method per Apple endpoint, named and
ordered as in Apple's official Python library. Each call is signed with a
fresh ES256 token, paced under Apple's per-endpoint rate and hourly budget
(shared by every client and thread of the process), retried when that is
safe, and turned into an :class:`APIError` that says what Apple said when
it fails. :func:`client_from_settings` builds one from an app's settings
(``flask_retention.api.client_from_app`` from the app itself).

Nothing here opens a connection until the first call; call :meth:`close`
(or use the client as a context manager) when done.
"""

from __future__ import annotations

import logging
import math
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, Final, TypeVar
from urllib.parse import quote, urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flask_retention.appstore.errors import (
    ERROR_CODES,
    ERROR_NAMES,
    APIError,
    APINetworkError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    RateBudgetExhausted,
    RateLimitedError,
    SandboxOnlyError,
    ServerError,
    UnexpectedResponseError,
    error_from_response,
    retry_at_from_header,
)
from flask_retention.appstore.pacing import (
    HOUR,
    PRODUCTION_RATES,
    BudgetSpent,
    EndpointLimit,
    RateLimiter,
    default_limit,
)
from flask_retention.appstore.types import (
    BulletPoint,
    DefaultConfigurationRequest,
    DefaultConfigurationResponse,
    GetImageListResponse,
    GetImageListResponseItem,
    GetMessageListResponse,
    GetMessageListResponseItem,
    HeaderPosition,
    ImageSize,
    ImageState,
    MessageState,
    PerformanceTestConfig,
    PerformanceTestRequest,
    PerformanceTestResponse,
    PerformanceTestResponseTimes,
    PerformanceTestResultResponse,
    PerformanceTestStatus,
    RealtimeUrlRequest,
    RealtimeUrlResponse,
    ResponseFormatError,
    SendAttemptResult,
    UploadMessageImage,
    UploadMessageRequestBody,
    to_uuid,
)
from flask_retention.core.apple import ENVIRONMENTS
from flask_retention.core.config import DEFAULT_TUNING, Settings, Tuning
from flask_retention.core.errors import ConfigurationError
from flask_retention.core.per_process import PerProcess

__all__ = [
    "ERROR_CODES",
    "ERROR_NAMES",
    "PRODUCTION_URL",
    "SANDBOX_URL",
    "APIError",
    "APINetworkError",
    "AuthenticationError",
    "BadRequestError",
    "BulletPoint",
    "ConflictError",
    "DefaultConfigurationRequest",
    "DefaultConfigurationResponse",
    "EndpointLimit",
    "ForbiddenError",
    "GetImageListResponse",
    "GetImageListResponseItem",
    "GetMessageListResponse",
    "GetMessageListResponseItem",
    "HeaderPosition",
    "ImageSize",
    "ImageState",
    "MessageState",
    "NotFoundError",
    "PerformanceTestConfig",
    "PerformanceTestRequest",
    "PerformanceTestResponse",
    "PerformanceTestResponseTimes",
    "PerformanceTestResultResponse",
    "PerformanceTestStatus",
    "RateBudgetExhausted",
    "RateLimitedError",
    "RealtimeUrlRequest",
    "RealtimeUrlResponse",
    "RetentionAPIClient",
    "SandboxOnlyError",
    "SendAttemptResult",
    "ServerError",
    "UnexpectedResponseError",
    "UploadMessageImage",
    "UploadMessageRequestBody",
    "client_from_settings",
    "reset_rate_limits",
]

logger = logging.getLogger(__name__)

#: Apple's hosts (spec section 1.2, recommended since the 2026-05-05 server update).
PRODUCTION_URL: Final = "https://api.storekit.apple.com"
SANDBOX_URL: Final = "https://api.storekit-sandbox.apple.com"
BASE_URLS: Final[Mapping[str, str]] = {"Production": PRODUCTION_URL, "Sandbox": SANDBOX_URL}

AUDIENCE: Final = "appstoreconnect-v1"
MAX_TOKEN_LIFETIME: Final = 3600
PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_PREFIX: Final = "/inApps/v1/messaging"

#: Apple's documented endpoint names, for messages and logs.
ENDPOINT_NAMES: Final[Mapping[str, str]] = {
    "upload_image": "Upload Image",
    "delete_image": "Delete Image",
    "get_image_list": "Get Image List",
    "upload_message": "Upload Message",
    "delete_message": "Delete Message",
    "get_message_list": "Get Message List",
    "configure_default_message": "Configure Default Message",
    "get_default_message": "Get Default Message",
    "delete_default_message": "Delete Default Message",
    "configure_realtime_url": "Configure Realtime URL",
    "get_realtime_url": "Get Realtime URL",
    "delete_realtime_url": "Delete Realtime URL",
    "initiate_performance_test": "Initiate Performance Test",
    "get_performance_test_results": "Get Performance Test Results",
}

#: One limiter per process (made on first use), so that every client and thread shares
#: Apple's budget.
_RATE_LIMITER: Final = PerProcess(lambda: RateLimiter(time.monotonic))

#: Transport failures that happen before the request leaves: safe to retry for any call.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

_jitter = random.Random()  # noqa: S311 - backoff jitter, not cryptography

T = TypeVar("T")


def reset_rate_limits() -> None:
    """Forget every pacing and budget reservation of this process (for tests)."""
    _RATE_LIMITER.get().reset()


def _load_private_key(value: object) -> ec.EllipticCurvePrivateKey:
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        try:
            value = serialization.load_pem_private_key(value, password=None)
        except (ValueError, TypeError):
            raise ValueError(
                "private_key is not a readable unencrypted PEM private key; give the .p8 file "
                "of an App Store Connect In-App Purchase key"
            ) from None
    if not isinstance(value, ec.EllipticCurvePrivateKey) or not isinstance(
        value.curve, ec.SECP256R1
    ):
        raise ValueError(
            "private_key must be an EC P-256 private key (an App Store Connect In-App Purchase "
            ".p8 key), as a key object or PEM text"
        )
    return value


def _check_base_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok or parts.query or parts.fragment:
        raise ValueError(f"base_url must be an http(s) URL such as {SANDBOX_URL!r}, not {value!r}")
    return value.rstrip("/")


def _positive(value: float, name: str, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= minimum:
        raise ValueError(f"{name} must be a number >= {minimum}, not {value!r}")
    return float(value)


def _segment(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, not {value!r}")
    return quote(value, safe="")


@dataclass(frozen=True, slots=True)
class _Call:
    endpoint: str
    method: str
    path: str
    safe: bool
    json: Any = None
    content: bytes | None = None
    content_type: str | None = None
    params: Mapping[str, str] | None = None
    confirm: Callable[[], bool] | None = None


class RetentionAPIClient:
    """Apple's Retention Messaging management API, one method per endpoint.

    ``private_key`` is the In-App Purchase key (an EC P-256 key object, or
    its ``.p8`` PEM text); ``environment`` is ``"Sandbox"`` or
    ``"Production"`` and chooses Apple's host unless ``base_url`` is given.

    Knobs (defaults follow Apple): ``timeout``/``connect_timeout`` in seconds;
    ``pacing`` scales Apple's interval between calls of one endpoint (``0``
    turns pacing off); ``budgets`` overrides the per-endpoint budget of
    calls per ``budget_window`` seconds (Apple: rate x 3600 per hour);
    ``budget_wait`` is how long a call may wait for a spent budget before
    raising :class:`RateBudgetExhausted`; ``max_retries`` bounds the retries
    of a call (after ``429``, ``5xx`` and network errors), ``retry_after_cap``
    the wait Apple's ``Retry-After`` may impose, and ``backoff_base`` /
    ``backoff_cap`` the exponential backoff (with jitter) between retries;
    ``token_lifetime`` is each JWT's validity in seconds (at most 3600).
    """

    def __init__(
        self,
        *,
        issuer_id: str,
        key_id: str,
        private_key: ec.EllipticCurvePrivateKey | str | bytes,
        bundle_id: str,
        environment: str,
        base_url: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        pacing: float = 1.0,
        budgets: Mapping[str, int] | None = None,
        budget_window: float = HOUR,
        budget_wait: float = 0.0,
        max_retries: int = 3,
        retry_after_cap: float = 60.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        token_lifetime: int = 300,
    ) -> None:
        for name, value in (("issuer_id", issuer_id), ("key_id", key_id), ("bundle_id", bundle_id)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty string, not {value!r}")
        if environment not in ENVIRONMENTS:
            raise ValueError(f"environment must be 'Sandbox' or 'Production', not {environment!r}")
        if (
            isinstance(token_lifetime, bool)
            or not isinstance(token_lifetime, int)
            or not 1 <= token_lifetime <= MAX_TOKEN_LIFETIME
        ):
            raise ValueError(
                f"token_lifetime must be whole seconds from 1 to {MAX_TOKEN_LIFETIME} (Apple "
                f"refuses tokens valid longer than an hour), not {token_lifetime!r}"
            )
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, not {max_retries!r}")
        self.issuer_id = issuer_id
        self.key_id = key_id
        self._private_key = _load_private_key(private_key)
        self.bundle_id = bundle_id
        self.environment = environment
        self.base_url = _check_base_url(BASE_URLS[environment] if base_url is None else base_url)
        self.pacing = _positive(pacing, "pacing")
        self.budget_window = _positive(budget_window, "budget_window", minimum=0.001)
        self.budget_wait = _positive(budget_wait, "budget_wait")
        self.max_retries = max_retries
        self.retry_after_cap = _positive(retry_after_cap, "retry_after_cap")
        self.backoff_base = _positive(backoff_base, "backoff_base")
        self.backoff_cap = _positive(backoff_cap, "backoff_cap")
        self.token_lifetime = token_lifetime
        self._limits: dict[str, EndpointLimit] = {}
        budgets = dict(budgets or {})
        unknown = sorted(set(budgets) - set(PRODUCTION_RATES))
        if unknown:
            raise ValueError(
                f"budgets: unknown endpoint(s) {', '.join(unknown)}; use the method names, "
                f"e.g. 'upload_image'"
            )
        for endpoint in PRODUCTION_RATES:
            limit = default_limit(endpoint, environment, pacing=self.pacing)
            budget = budgets.get(endpoint, limit.budget)
            if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
                raise ValueError(f"budgets[{endpoint!r}] must be an integer >= 0, not {budget!r}")
            self._limits[endpoint] = EndpointLimit(
                interval=limit.interval, budget=budget, window=self.budget_window
            )
        try:
            version = metadata.version("flask-retention")
        except metadata.PackageNotFoundError:
            version = "unknown"
        self._http = httpx.Client(
            timeout=httpx.Timeout(
                _positive(timeout, "timeout", minimum=0.001),
                connect=_positive(connect_timeout, "connect_timeout", minimum=0.001),
            ),
            headers={"User-Agent": f"flask-retention/{version}", "Accept": "application/json"},
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return (
            f"<RetentionAPIClient {self.environment} {self.base_url} "
            f"bundle_id={self.bundle_id!r} key_id={self.key_id!r}>"
        )

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def __enter__(self) -> RetentionAPIClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- limits and tokens -----------------------------------------------------

    def limit(self, endpoint: str) -> EndpointLimit:
        """The pacing interval and budget this client keeps for ``endpoint`` (a method name)."""
        return self._limits[endpoint]

    def budget_used(self, endpoint: str) -> int:
        """Calls of ``endpoint`` this process made (or reserved) within the budget window."""
        return _RATE_LIMITER.get().used(self._key(endpoint), self.budget_window)

    def _key(self, endpoint: str) -> tuple[str, str, str, str]:
        return (self.base_url, self.bundle_id, self.environment, endpoint)

    def make_token(self) -> str:
        """A fresh ES256 JWT for one request (``exp`` = now + ``token_lifetime``)."""
        now = int(time.time())
        claims = {
            "iss": self.issuer_id,
            "iat": now,
            "exp": now + self.token_lifetime,
            "aud": AUDIENCE,
            "bid": self.bundle_id,
        }
        return jwt.encode(
            claims, self._private_key, algorithm="ES256", headers={"kid": self.key_id, "typ": "JWT"}
        )

    def _wait_for_slot(self, endpoint: str) -> None:
        try:
            start = _RATE_LIMITER.get().reserve(
                self._key(endpoint), self._limits[endpoint], max_budget_wait=self.budget_wait
            )
        except BudgetSpent as e:
            limit = self._limits[endpoint]
            wait = e.free_at - _RATE_LIMITER.get().clock()
            retry_at = datetime.fromtimestamp(
                time.time() + (wait if math.isfinite(wait) else 10 * 365 * 86400), tz=UTC
            )
            raise RateBudgetExhausted(
                f"this process has used its budget of {limit.budget} calls per "
                f"{limit.window:g} s for this endpoint; next call possible at "
                f"{retry_at.isoformat(timespec='seconds')}",
                retry_at=retry_at,
                endpoint=ENDPOINT_NAMES[endpoint],
            ) from None
        delay = start - _RATE_LIMITER.get().clock()
        if delay > 0:
            logger.debug("%s: pacing, waiting %.3f s", ENDPOINT_NAMES[endpoint], delay)
            time.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff_cap, self.backoff_base * 2.0**attempt) * _jitter.uniform(0.5, 1.0)

    # -- the request loop ------------------------------------------------------

    def _send(self, call: _Call) -> httpx.Response:
        name = ENDPOINT_NAMES[call.endpoint]
        if self._http.is_closed:
            raise RuntimeError(f"{self!r} is closed; build a new client to call {name}.")
        url = self.base_url + call.path
        attempt = 0
        maybe_applied = False
        while True:
            self._wait_for_slot(call.endpoint)
            headers = {"Authorization": f"Bearer {self.make_token()}"}
            if call.content_type is not None:
                headers["Content-Type"] = call.content_type
            started = time.monotonic()
            try:
                response = self._http.request(
                    call.method,
                    url,
                    headers=headers,
                    json=call.json,
                    content=call.content,
                    params=call.params,
                )
            except httpx.TransportError as e:
                sent = not isinstance(e, _NOT_SENT)
                retryable = call.safe or call.confirm is not None or not sent
                text = str(e).strip().rstrip(".")
                problem = f"{type(e).__name__}: {text}" if text else type(e).__name__
                if retryable and attempt < self.max_retries:
                    delay = self._backoff(attempt)
                    attempt += 1
                    maybe_applied = maybe_applied or sent
                    logger.warning(
                        "%s: %s; retry %d of %d in %.2f s",
                        name,
                        problem,
                        attempt,
                        self.max_retries,
                        delay,
                    )
                    time.sleep(delay)
                    continue
                raise APINetworkError(
                    problem,
                    endpoint=name,
                    hint=(
                        "check the network and the base URL; the call may be repeated"
                        if retryable
                        else "check the network; Apple may or may not have received the call"
                    ),
                ) from e
            status = response.status_code
            logger.debug(
                "%s: %s %s -> %d in %.0f ms",
                name,
                call.method,
                call.path,
                status,
                (time.monotonic() - started) * 1000,
            )
            if 200 <= status < 300:
                return response
            body = response.content
            if status == 429:
                retry_at = retry_at_from_header(response.headers.get("Retry-After"))
                if attempt < self.max_retries:
                    delay = (
                        self._backoff(attempt)
                        if retry_at is None
                        else max(0.0, retry_at.timestamp() - time.time())
                    )
                    if delay <= self.retry_after_cap:
                        attempt += 1
                        logger.warning(
                            "%s: HTTP 429 (Apple's rate limit); retry %d of %d in %.2f s",
                            name,
                            attempt,
                            self.max_retries,
                            delay,
                        )
                        _RATE_LIMITER.get().defer(
                            self._key(call.endpoint), time.monotonic() + delay
                        )
                        continue
                raise error_from_response(status, body, endpoint=name, retry_at=retry_at)
            retryable = call.safe or call.confirm is not None
            if status >= 500 and retryable and attempt < self.max_retries:
                delay = self._backoff(attempt)
                attempt += 1
                maybe_applied = True
                logger.warning(
                    "%s: HTTP %d; retry %d of %d in %.2f s",
                    name,
                    status,
                    attempt,
                    self.max_retries,
                    delay,
                )
                time.sleep(delay)
                continue
            error = error_from_response(status, body, endpoint=name)
            if status == 409 and call.confirm is not None and maybe_applied:
                if call.confirm():
                    logger.info(
                        "%s: HTTP 409 after a retry; the list confirms the earlier attempt "
                        "succeeded",
                        name,
                    )
                    return response
                raise error
            raise error

    def _json(self, call: _Call, parse: Callable[[object], T]) -> T:
        """The parsed answer; a 2xx body that is not a JSON object is the one failure left.

        The response types read anything else (fields missing, null or of the
        wrong type) as absent, but with no object there is nothing to read.
        """
        response = self._send(call)
        name = ENDPOINT_NAMES[call.endpoint]
        hint = "Apple accepted the call, but its answer cannot be read; retry later."
        try:
            data = response.json()
        except ValueError:
            raise UnexpectedResponseError(
                "the body is not JSON", status=response.status_code, endpoint=name, hint=hint
            ) from None
        try:
            return parse(data)
        except ResponseFormatError as e:
            raise UnexpectedResponseError(
                str(e), status=response.status_code, endpoint=name, hint=hint
            ) from None

    def _sandbox_only(self, endpoint: str) -> None:
        if self.environment != "Sandbox":
            raise SandboxOnlyError(
                f"{ENDPOINT_NAMES[endpoint]} exists only in Apple's sandbox, and this client "
                f"talks to {self.environment}; use a client with environment='Sandbox'."
            )

    # -- images ----------------------------------------------------------------

    def upload_image(
        self,
        image_identifier: str | uuid.UUID,
        image: bytes,
        image_size: ImageSize | str | None = None,
    ) -> None:
        """Upload a PNG under a new identifier (Apple: Upload Image).

        ``image_size`` is ``FULL_SIZE`` (Apple's default) or ``BULLET_POINT``.
        A retry that meets ``409`` succeeds only if the image list shows the
        identifier.
        """
        ident = to_uuid(image_identifier, "image_identifier")
        if not isinstance(image, bytes | bytearray | memoryview):
            raise ValueError(f"image must be the PNG file's bytes, not {type(image).__name__}")
        data = bytes(image)
        if not data.startswith(PNG_SIGNATURE):
            raise ValueError("image is not a PNG file (Apple accepts PNG images only)")
        params: dict[str, str] | None = None
        if image_size is not None:
            try:
                params = {"imageSize": ImageSize(image_size).value}
            except ValueError:
                raise ValueError(
                    f"image_size must be FULL_SIZE or BULLET_POINT, not {image_size!r}"
                ) from None

        def confirm() -> bool:
            listed = self.get_image_list().image_identifiers
            return any(item.image_identifier == ident for item in listed)

        self._send(
            _Call(
                "upload_image",
                "PUT",
                f"{_PREFIX}/image/{ident}",
                safe=False,
                content=data,
                content_type="image/png",
                params=params,
                confirm=confirm,
            )
        )

    def delete_image(self, image_identifier: str | uuid.UUID) -> None:
        """Delete an image no message uses (Apple: Delete Image)."""
        ident = to_uuid(image_identifier, "image_identifier")
        self._send(_Call("delete_image", "DELETE", f"{_PREFIX}/image/{ident}", safe=True))

    def get_image_list(self) -> GetImageListResponse:
        """Every image of this environment with its review state (Apple: Get Image List)."""
        return self._json(
            _Call("get_image_list", "GET", f"{_PREFIX}/image/list", safe=True),
            GetImageListResponse.from_json,
        )

    # -- messages --------------------------------------------------------------

    def upload_message(
        self,
        message_identifier: str | uuid.UUID,
        upload_message_request_body: UploadMessageRequestBody,
    ) -> None:
        """Upload a message under a new identifier (Apple: Upload Message).

        A retry that meets ``409`` succeeds only if the message list shows
        the identifier.
        """
        ident = to_uuid(message_identifier, "message_identifier")
        if not isinstance(upload_message_request_body, UploadMessageRequestBody):
            raise ValueError(
                "upload_message_request_body must be an UploadMessageRequestBody, not "
                f"{type(upload_message_request_body).__name__}"
            )

        def confirm() -> bool:
            listed = self.get_message_list().message_identifiers
            return any(item.message_identifier == ident for item in listed)

        self._send(
            _Call(
                "upload_message",
                "PUT",
                f"{_PREFIX}/message/{ident}",
                safe=False,
                json=upload_message_request_body.to_json(),
                confirm=confirm,
            )
        )

    def delete_message(self, message_identifier: str | uuid.UUID) -> None:
        """Delete a message (Apple: Delete Message)."""
        ident = to_uuid(message_identifier, "message_identifier")
        self._send(_Call("delete_message", "DELETE", f"{_PREFIX}/message/{ident}", safe=True))

    def get_message_list(self) -> GetMessageListResponse:
        """Every message of this environment with its review state (Apple: Get Message List)."""
        return self._json(
            _Call("get_message_list", "GET", f"{_PREFIX}/message/list", safe=True),
            GetMessageListResponse.from_json,
        )

    # -- default messages ------------------------------------------------------

    def _default_path(self, product_id: str, locale: str) -> str:
        return (
            f"{_PREFIX}/default/{_segment(product_id, 'product_id')}/{_segment(locale, 'locale')}"
        )

    def configure_default_message(
        self,
        product_id: str,
        locale: str,
        default_configuration_request: DefaultConfigurationRequest,
    ) -> None:
        """Make an approved message the default for a product and locale (Apple: idempotent)."""
        if not isinstance(default_configuration_request, DefaultConfigurationRequest):
            raise ValueError(
                "default_configuration_request must be a DefaultConfigurationRequest, not "
                f"{type(default_configuration_request).__name__}"
            )
        self._send(
            _Call(
                "configure_default_message",
                "PUT",
                self._default_path(product_id, locale),
                safe=True,
                json=default_configuration_request.to_json(),
            )
        )

    def get_default_message(self, product_id: str, locale: str) -> DefaultConfigurationResponse:
        """The default message of a product and locale (Apple: Get Default Message)."""
        return self._json(
            _Call("get_default_message", "GET", self._default_path(product_id, locale), safe=True),
            DefaultConfigurationResponse.from_json,
        )

    def delete_default_message(self, product_id: str, locale: str) -> None:
        """Remove the default message of a product and locale (Apple: idempotent)."""
        self._send(
            _Call(
                "delete_default_message",
                "DELETE",
                self._default_path(product_id, locale),
                safe=True,
            )
        )

    # -- real-time URL ---------------------------------------------------------

    def configure_realtime_url(self, realtime_url_request: RealtimeUrlRequest) -> None:
        """Set the URL Apple calls for real-time messages in this environment."""
        if not isinstance(realtime_url_request, RealtimeUrlRequest):
            raise ValueError(
                "realtime_url_request must be a RealtimeUrlRequest, not "
                f"{type(realtime_url_request).__name__}"
            )
        self._send(
            _Call(
                "configure_realtime_url",
                "PUT",
                f"{_PREFIX}/realtime/url",
                safe=True,
                json=realtime_url_request.to_json(),
            )
        )

    def get_realtime_url(self) -> RealtimeUrlResponse:
        """The real-time URL configured in this environment (Apple: Get Realtime URL)."""
        return self._json(
            _Call("get_realtime_url", "GET", f"{_PREFIX}/realtime/url", safe=True),
            RealtimeUrlResponse.from_json,
        )

    def delete_realtime_url(self) -> None:
        """Stop real-time requests in this environment (Apple: Delete Realtime URL)."""
        self._send(_Call("delete_realtime_url", "DELETE", f"{_PREFIX}/realtime/url", safe=True))

    # -- performance test (sandbox only) ---------------------------------------

    def initiate_performance_test(
        self, performance_test_request: PerformanceTestRequest
    ) -> PerformanceTestResponse:
        """Start Apple's performance test of the sandbox real-time URL.

        Not retried after a possible delivery (a second start would meet
        ``ExistingPerformanceTestRunError``).
        """
        self._sandbox_only("initiate_performance_test")
        if not isinstance(performance_test_request, PerformanceTestRequest):
            raise ValueError(
                "performance_test_request must be a PerformanceTestRequest, not "
                f"{type(performance_test_request).__name__}"
            )
        return self._json(
            _Call(
                "initiate_performance_test",
                "POST",
                f"{_PREFIX}/performanceTest",
                safe=False,
                json=performance_test_request.to_json(),
            ),
            PerformanceTestResponse.from_json,
        )

    def get_performance_test_results(
        self, request_id: str | uuid.UUID
    ) -> PerformanceTestResultResponse:
        """The state or result of a performance test (poll until ``finished``)."""
        self._sandbox_only("get_performance_test_results")
        ident = to_uuid(request_id, "request_id")
        return self._json(
            _Call(
                "get_performance_test_results",
                "GET",
                f"{_PREFIX}/performanceTest/result/{ident}",
                safe=True,
            ),
            PerformanceTestResultResponse.from_json,
        )


_WHERE: Final[Mapping[str, str]] = {
    "RETENTION_ISSUER_ID": (
        "the Issuer ID shown above the key list in App Store Connect > Users and Access > "
        "Integrations > In-App Purchase"
    ),
    "RETENTION_KEY_ID": (
        "the Key ID of your In-App Purchase key in App Store Connect > Users and Access > "
        "Integrations > In-App Purchase"
    ),
    "RETENTION_PRIVATE_KEY": (
        "the .p8 file downloaded when the In-App Purchase key was created in App Store "
        "Connect > Users and Access > Integrations > In-App Purchase (set "
        "RETENTION_PRIVATE_KEY to its text or RETENTION_PRIVATE_KEY_PATH to its path)"
    ),
    "RETENTION_BUNDLE_ID": "the app's Bundle ID in App Store Connect > your app > App Information",
}


def _required(value: T | None, key: str) -> T:
    if value is None:
        raise ConfigurationError(f"{key} is not set; the management API needs {_WHERE[key]}.")
    return value


def client_from_settings(
    settings: Settings, environment: str | None = None, *, tuning: Tuning = DEFAULT_TUNING
) -> RetentionAPIClient:
    """A :class:`RetentionAPIClient` built from an app's ``RETENTION_*`` settings.

    ``environment`` defaults to the first of ``RETENTION_ENVIRONMENT``. A
    missing setting raises ``ConfigurationError`` naming the key and where App
    Store Connect shows it.
    """
    env = settings.default_environment if environment is None else environment
    if env not in ENVIRONMENTS:
        raise ConfigurationError(f"environment must be 'Sandbox' or 'Production', not {env!r}.")
    issuer_id = _required(settings.issuer_id, "RETENTION_ISSUER_ID")
    key_id = _required(settings.key_id, "RETENTION_KEY_ID")
    private_key = _required(settings.private_key, "RETENTION_PRIVATE_KEY")
    bundle_id = _required(settings.bundle_id, "RETENTION_BUNDLE_ID")
    base = settings.api_base_url
    base_url = base.get(env) if isinstance(base, Mapping) else base
    return RetentionAPIClient(
        issuer_id=issuer_id,
        key_id=key_id,
        private_key=private_key,
        bundle_id=bundle_id,
        environment=env,
        base_url=base_url,
        timeout=settings.api_timeout,
        connect_timeout=min(10.0, settings.api_timeout),
        pacing=tuning.api_pacing,
        budget_wait=tuning.api_budget_wait,
        max_retries=tuning.api_max_retries,
        retry_after_cap=tuning.api_retry_after_cap,
    )
