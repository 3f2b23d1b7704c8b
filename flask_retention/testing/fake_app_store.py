"""A fake of Apple's Retention Messaging management API, for tests.

:class:`FakeAppStore` is a WSGI app that answers the 14 management endpoints
the way Apple documents them: JWT checked against the public key of the
In-App Purchase key, uploads that are not idempotent, Apple's error codes and
statuses, sandbox auto-approval and production review, rate limits with
``429`` and a ``Retry-After`` in UNIX milliseconds, and a performance test that
really sends signed real-time requests to the configured URL. :func:`serve`
runs any WSGI app on a loopback port in a thread, so the real client talks to
the fake over real HTTP.

One instance is one environment of one app: build one per environment, or
both of one app with :class:`~flask_retention.testing.FakeAppStorePair`.
"""

from __future__ import annotations

import json
import logging
import math
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from flask_retention.appstore.performance import (
    DEFAULT_PERFORMANCE_TEST_CONFIG as DEFAULT_PERFORMANCE_TEST_CONFIG,
)
from flask_retention.appstore.performance import PerformanceTestRun, RealtimeRequestSigner
from flask_retention.appstore.performance import (
    performance_test_config as checked_performance_test_config,
)
from flask_retention.catalogue.png import read_png_info
from flask_retention.catalogue.validation import (
    BULLET_POINT_SIDE,
    FULL_SIZE_MAX_HEIGHT,
    FULL_SIZE_MIN_HEIGHT,
    FULL_SIZE_WIDTH,
    KNOWN_LOCALES,
)
from flask_retention.testing.serving import serve as serve

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

logger = logging.getLogger(__name__)

BASE_PATH: Final = "/inApps/v1/messaging"
AUDIENCE: Final = "appstoreconnect-v1"
MAX_TOKEN_LIFETIME: Final = 3600

ENDPOINTS: Final[tuple[str, ...]] = (
    "upload_image",
    "delete_image",
    "get_image_list",
    "upload_message",
    "delete_message",
    "get_message_list",
    "configure_default_message",
    "get_default_message",
    "delete_default_message",
    "configure_realtime_url",
    "get_realtime_url",
    "delete_realtime_url",
    "initiate_performance_test",
    "get_performance_test_results",
)
"""Endpoint names, as Apple's libraries name the methods; the keys of ``rate_limits``."""

APPLE_PRODUCTION_RATE_LIMITS: Final[Mapping[str, float]] = {
    name: (10.0 if name == "configure_default_message" else 1.0) for name in ENDPOINTS
}
"""Apple's published production rates (requests per second); sandbox gets 10 % of them."""


def apple_rate_limits(environment: str = "Production", *, speedup: float = 1.0) -> dict[str, float]:
    """Apple's per-endpoint rates for ``environment``, as ``FakeAppStore(rate_limits=...)``.

    Sandbox gets 10 % of production. ``speedup`` multiplies every rate, so a
    test can keep Apple's proportions without Apple's waits.
    """
    if environment not in ("Sandbox", "Production"):
        raise ValueError(f"environment must be 'Sandbox' or 'Production', got {environment!r}")
    if not speedup > 0:
        raise ValueError(f"speedup must be a positive number, got {speedup!r}")
    share = 0.1 if environment == "Sandbox" else 1.0
    return {name: rate * share * speedup for name, rate in APPLE_PRODUCTION_RATE_LIMITS.items()}


# Apple's error catalogue: name -> (HTTP status, errorCode, errorMessage).
ERRORS: Final[Mapping[str, tuple[int, int, str]]] = {
    "GeneralBadRequestError": (400, 4000000, "Invalid request."),
    "BadRequestTransactionIdError": (400, 4000006, "Invalid transaction id."),
    "InvalidProductIdError": (400, 4000023, "Invalid request. The product id is invalid."),
    "InvalidImageError": (400, 4000161, "Invalid request. The image is invalid."),
    "HeaderTooLongError": (400, 4000162, "Invalid request. The header is too long."),
    "BodyTooLongError": (400, 4000163, "Invalid request. The body is too long."),
    "InvalidLocaleError": (400, 4000164, "Invalid request. Locale is invalid."),
    "AltTextTooLongError": (400, 4000175, "Invalid request. The alt text is too long."),
    "InvalidPerformanceTestRequestError": (
        400,
        4000211,
        "Invalid request. The performance test request is invalid.",
    ),
    "InvalidRequestIdError": (400, 4000212, "Invalid request. The request id is invalid."),
    "ExistingPerformanceTestRunError": (
        400,
        4000213,
        "Invalid request. A performance test is already being processed.",
    ),
    "BadRequestRealtimeUrlError": (400, 4000215, "Invalid request. The url is invalid."),
    "BadRequestImageSizeError": (400, 4000216, "Invalid request. The image's size is invalid."),
    "BadRequestTooManyBulletPointsError": (
        400,
        4000218,
        "Invalid request. The number of bullet points is too many.",
    ),
    "BadRequestBulletPointTextTooLongError": (
        400,
        4000219,
        "Invalid request. The bullet point text is too long.",
    ),
    "BadRequestAboveImageRequiresAnImageError": (
        400,
        4000224,
        "Invalid request. The header position ABOVE_IMAGE requires an image.",
    ),
    "MaximumNumberOfImagesReachedError": (
        403,
        4030014,
        "The maximum number of images has been reached.",
    ),
    "MaximumNumberOfMessagesReachedError": (
        403,
        4030016,
        "The maximum number of messages has been reached.",
    ),
    "MessageNotApprovedError": (403, 4030017, "The message is not approved."),
    "ImageNotApprovedError": (403, 4030018, "The message's image is not approved."),
    "ImageInUseError": (403, 4030019, "The image is in use by a message."),
    "ForbiddenNoPassingTestError": (
        403,
        4030026,
        "A passing performance test is required to configure a production url.",
    ),
    "ImageNotFoundError": (404, 4040014, "The image was not found."),
    "MessageNotFoundError": (404, 4040015, "The message was not found."),
    "PerformanceTestRunNotFoundError": (404, 4040018, "The performance test run was not found."),
    "DefaultMessageNotFoundError": (404, 4040020, "The default message was not found."),
    "RealtimeUrlNotFoundError": (404, 4040021, "The realtime url was not found."),
    "ImageAlreadyExistsError": (409, 4090000, "The image already exists."),
    "MessageAlreadyExistsError": (409, 4090001, "The message already exists."),
    "RateLimitExceededError": (429, 4290000, "Rate limit exceeded."),
    "GeneralInternalError": (500, 5000000, "An unknown error occurred."),
}

HEADER_MAX: Final = 66
BODY_MAX: Final = 144
ALT_TEXT_MAX: Final = 150
BULLET_TEXT_MAX: Final = 66
BULLET_POINTS_MAX: Final = 5
REALTIME_URL_MAX: Final = 256
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "::1", "localhost"})
"""Hosts an ``http://`` real-time URL may name when ``allow_http_targets`` is on."""
#: An original transaction ID as Apple makes them: ASCII digits, no leading zero, 8 digits
#: (Apple's own example, "99371282") to 19 (the largest 64-bit integer has 19).
TRANSACTION_ID_PATTERN: Final = re.compile(r"[1-9][0-9]{7,18}")
INT64_MAX: Final = 2**63 - 1

IMAGE_SIZES: Final = ("FULL_SIZE", "BULLET_POINT")


@dataclass(frozen=True, slots=True)
class FakeImage:
    """An uploaded image: ``size`` is ``FULL_SIZE`` or ``BULLET_POINT``; ``data`` the PNG."""

    identifier: str
    size: str
    state: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class FakeMessage:
    """An uploaded message: ``body`` is the ``UploadMessageRequestBody`` JSON as received."""

    identifier: str
    body: dict[str, Any]
    state: str


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the fake received.

    ``status`` is ``None`` when the connection was dropped on purpose;
    ``claims`` are the verified JWT claims (``None`` when the token was
    missing or invalid); the raw token is never kept. ``error_code`` is the
    ``errorCode`` of the answer, if any.
    """

    method: str
    path: str
    status: int | None
    time: float
    claims: dict[str, Any] | None
    endpoint: str | None = None
    query: str = ""
    content_type: str | None = None
    error_code: int | None = None


@dataclass(frozen=True, slots=True)
class _Injection:
    """A pending hook: ``kind`` fail/drop/throttle, its status/flag/delay, and endpoint filter."""

    kind: str
    value: int
    endpoint: str | None


class _ApiError(Exception):
    """Internal: answer with one of Apple's typed errors."""

    def __init__(
        self, name: str, message: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(name)
        self.name = name
        self.message = message
        self.headers = dict(headers or {})


class _Untyped(Exception):
    """Internal: answer with a bare status and no error object (401, "no access" 404, ...)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _error_response(name: str, message: str | None = None) -> Response:
    status, code, default_message = ERRORS[name]
    body = {"errorCode": code, "errorMessage": message or default_message}
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _json_response(body: Mapping[str, Any]) -> Response:
    return Response(json.dumps(body), status=200, mimetype="application/json")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _normalise_uuid(value: str | uuid.UUID) -> str | None:
    """The lowercase canonical form of a UUID, or ``None`` when ``value`` is not one."""
    if isinstance(value, uuid.UUID):
        return str(value)
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


class _SlidingWindow:
    """At most ``rate`` requests per second, counted over a sliding window."""

    def __init__(self, rate: float) -> None:
        if not rate > 0:
            raise ValueError(f"rate limits must be positive numbers, got {rate!r}")
        self.window = max(1.0, 1.0 / rate)
        self.capacity = max(1, math.floor(rate * self.window))
        self.hits: deque[float] = deque()

    def admit(self, now: float) -> float | None:
        """Count a request at ``now``; ``None`` when admitted, else seconds until it would be."""
        while self.hits and self.hits[0] <= now - self.window:
            self.hits.popleft()
        if len(self.hits) < self.capacity:
            self.hits.append(now)
            return None
        return self.hits[0] + self.window - now


class FakeAppStore:
    """Apple's Retention Messaging management API as a WSGI app, for tests.

    ``public_key``, ``key_id``, ``issuer_id`` and ``bundle_id`` are what a
    request's JWT must match. ``product_ids`` (required) are the products the
    app sells, as App Store Connect knows them: a collection of product IDs,
    or a function of no arguments returning one, called at each request (for
    products that change while the fake runs); default-message calls for any
    other product get Apple's ``InvalidProductIdError``. ``locales`` are the
    accepted locale codes (default: the catalogue's
    :data:`~flask_retention.catalogue.validation.KNOWN_LOCALES`).

    ``auto_approve`` defaults to ``True`` in ``Sandbox`` and ``False`` in
    ``Production``, where uploads stay ``PENDING`` until :meth:`approve` or
    :meth:`reject`. ``rate_limits`` maps endpoint names (:data:`ENDPOINTS`)
    to requests per second; unnamed endpoints are not limited.
    ``has_access=False`` answers every authenticated call with Apple's bare
    ``404`` for an account without access to the API (an attribute too).

    Configure Realtime URL takes ``https://`` URLs only, as Apple does;
    ``allow_http_targets`` also takes ``http://`` on loopback (``127.0.0.1``,
    ``::1``, ``localhost``), and a test can set :attr:`realtime_url`
    directly. The performance test (Sandbox only) needs an original
    transaction ID of ASCII digits as long as real ones (8 to 19, no leading
    zero, at most the largest 64-bit integer), else
    ``BadRequestTransactionIdError``; ``signer`` (the testing kit's
    ``AppStoreSigner``) signs its real-time requests, and
    ``performance_test_config`` overrides keys of
    :data:`DEFAULT_PERFORMANCE_TEST_CONFIG` (tests use small numbers).
    Production accepts a real-time URL only once ``passed_performance_test``
    is true, or, when ``sandbox`` is the Sandbox fake of the same app (see
    :class:`~flask_retention.testing.FakeAppStorePair`), once a performance
    test passed there.

    Inspect state through the snapshot properties (:attr:`images`,
    :attr:`messages`, :attr:`defaults`, :attr:`realtime_url`,
    :attr:`requests`) and steer it with the hooks (:meth:`approve`,
    :meth:`reject`, :meth:`fail_next`, :meth:`drop_next`,
    :meth:`throttle_next`). Call :meth:`close` to stop a running performance
    test.
    """

    def __init__(
        self,
        *,
        public_key: ec.EllipticCurvePublicKey,
        key_id: str,
        issuer_id: str,
        bundle_id: str,
        environment: str = "Sandbox",
        auto_approve: bool | None = None,
        rate_limits: Mapping[str, float] | None = None,
        max_images: int = 2000,
        max_messages: int = 2000,
        allow_http_targets: bool = False,
        signer: RealtimeRequestSigner | None = None,
        app_apple_id: int = 1234567890,
        performance_test_config: Mapping[str, int] | None = None,
        passed_performance_test: bool = False,
        product_ids: Collection[str] | Callable[[], Collection[str]],
        locales: Collection[str] = KNOWN_LOCALES,
        performance_test_product_id: str | None = None,
        has_access: bool = True,
        sandbox: FakeAppStore | None = None,
    ) -> None:
        if environment not in ("Sandbox", "Production"):
            raise ValueError(f"environment must be 'Sandbox' or 'Production', got {environment!r}")
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
            public_key.curve, ec.SECP256R1
        ):
            raise ValueError(
                "public_key must be the EC P-256 public key of the In-App Purchase key"
            )
        unknown = set(rate_limits or ()) - set(ENDPOINTS)
        if unknown:
            raise ValueError(
                f"unknown endpoint names in rate_limits: {sorted(unknown)}; "
                f"use names from {', '.join(ENDPOINTS)}"
            )
        config = checked_performance_test_config(performance_test_config)
        if isinstance(product_ids, str | bytes) or not (
            callable(product_ids) or isinstance(product_ids, Collection)
        ):
            raise ValueError(
                "product_ids must be a collection of product IDs, e.g. "
                "['com.example.monthly'], or a function returning one, "
                f"not {product_ids!r}"
            )
        if sandbox is not None and (
            environment != "Production"
            or not isinstance(sandbox, FakeAppStore)
            or sandbox.environment != "Sandbox"
        ):
            raise ValueError(
                "sandbox links a Production fake to the Sandbox FakeAppStore of the same app; "
                "build both with FakeAppStorePair"
            )

        self.public_key = public_key
        self.key_id = key_id
        self.issuer_id = issuer_id
        self.bundle_id = bundle_id
        self.environment: str = environment
        self.auto_approve = environment == "Sandbox" if auto_approve is None else auto_approve
        self.max_images = max_images
        self.max_messages = max_messages
        self.allow_http_targets = allow_http_targets
        self.signer = signer
        self.app_apple_id = app_apple_id
        self.performance_test_config: Mapping[str, int] = config
        self.passed_performance_test = passed_performance_test
        self.product_ids: Collection[str] | Callable[[], Collection[str]] = (
            product_ids if callable(product_ids) else frozenset(product_ids)
        )
        self.sandbox = sandbox
        self.locales = frozenset(locales)
        self.performance_test_product_id = performance_test_product_id
        self.has_access = has_access

        self._lock = threading.RLock()
        self._images: dict[str, FakeImage] = {}
        self._messages: dict[str, FakeMessage] = {}
        self._defaults: dict[tuple[str, str], str] = {}
        self._realtime_url: str | None = None
        self._requests: list[RecordedRequest] = []
        self._limiters = {name: _SlidingWindow(rate) for name, rate in (rate_limits or {}).items()}
        self._injected: list[_Injection] = []
        self._runs: dict[str, PerformanceTestRun] = {}
        self._running: PerformanceTestRun | None = None
        self._closed = False

        route = BASE_PATH
        self._url_map = Map(
            [
                Rule(f"{route}/image/list", methods=["GET"], endpoint="get_image_list"),
                Rule(f"{route}/image/<identifier>", methods=["PUT"], endpoint="upload_image"),
                Rule(f"{route}/image/<identifier>", methods=["DELETE"], endpoint="delete_image"),
                Rule(f"{route}/message/list", methods=["GET"], endpoint="get_message_list"),
                Rule(f"{route}/message/<identifier>", methods=["PUT"], endpoint="upload_message"),
                Rule(
                    f"{route}/message/<identifier>", methods=["DELETE"], endpoint="delete_message"
                ),
                Rule(
                    f"{route}/default/<product_id>/<locale>",
                    methods=["PUT"],
                    endpoint="configure_default_message",
                ),
                Rule(
                    f"{route}/default/<product_id>/<locale>",
                    methods=["GET"],
                    endpoint="get_default_message",
                ),
                Rule(
                    f"{route}/default/<product_id>/<locale>",
                    methods=["DELETE"],
                    endpoint="delete_default_message",
                ),
                Rule(f"{route}/realtime/url", methods=["PUT"], endpoint="configure_realtime_url"),
                Rule(f"{route}/realtime/url", methods=["GET"], endpoint="get_realtime_url"),
                Rule(f"{route}/realtime/url", methods=["DELETE"], endpoint="delete_realtime_url"),
                Rule(
                    f"{route}/performanceTest",
                    methods=["POST"],
                    endpoint="initiate_performance_test",
                ),
                Rule(
                    f"{route}/performanceTest/result/<request_id>",
                    methods=["GET"],
                    endpoint="get_performance_test_results",
                ),
            ],
            strict_slashes=False,
            merge_slashes=False,
        )
        self._handlers: dict[str, Callable[..., Response]] = {
            "upload_image": self._upload_image,
            "delete_image": self._delete_image,
            "get_image_list": self._get_image_list,
            "upload_message": self._upload_message,
            "delete_message": self._delete_message,
            "get_message_list": self._get_message_list,
            "configure_default_message": self._configure_default_message,
            "get_default_message": self._get_default_message,
            "delete_default_message": self._delete_default_message,
            "configure_realtime_url": self._configure_realtime_url,
            "get_realtime_url": self._get_realtime_url,
            "delete_realtime_url": self._delete_realtime_url,
            "initiate_performance_test": self._initiate_performance_test,
            "get_performance_test_results": self._get_performance_test_results,
        }

    # ------------------------------------------------------------------ inspection

    @property
    def images(self) -> dict[str, FakeImage]:
        """A snapshot: image identifier (lowercase UUID) -> :class:`FakeImage`."""
        with self._lock:
            return dict(self._images)

    @property
    def messages(self) -> dict[str, FakeMessage]:
        """A snapshot: message identifier (lowercase UUID) -> :class:`FakeMessage`."""
        with self._lock:
            return dict(self._messages)

    @property
    def defaults(self) -> dict[tuple[str, str], str]:
        """A snapshot: ``(product_id, locale)`` -> default message identifier."""
        with self._lock:
            return dict(self._defaults)

    @property
    def realtime_url(self) -> str | None:
        """The configured real-time URL, or ``None``.

        Setting it is a test hook that skips Apple's URL rules, e.g. to point
        the performance test at ``http://127.0.0.1`` when the client under
        test (rightly) insists on ``https://``.
        """
        with self._lock:
            return self._realtime_url

    @realtime_url.setter
    def realtime_url(self, url: str | None) -> None:
        with self._lock:
            self._realtime_url = url

    def current_product_ids(self) -> frozenset[str]:
        """The products the app sells now: ``product_ids``, or what its function returns."""
        products = self.product_ids
        return frozenset(products() if callable(products) else products)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    # ------------------------------------------------------------------ hooks

    def approve(self, identifier: str | uuid.UUID) -> None:
        """Finish the review of an image or message with ``APPROVED``."""
        self._set_state(identifier, "APPROVED")

    def reject(self, identifier: str | uuid.UUID) -> None:
        """Finish the review of an image or message with ``REJECTED``."""
        self._set_state(identifier, "REJECTED")

    def _set_state(self, identifier: str | uuid.UUID, state: str) -> None:
        key = _normalise_uuid(identifier)
        with self._lock:
            if key in self._images:
                self._images[key] = replace(self._images[key], state=state)
            elif key in self._messages:
                self._messages[key] = replace(self._messages[key], state=state)
            else:
                raise KeyError(f"no image or message {identifier!s} was uploaded to this fake")

    def fail_next(self, count: int = 1, status: int = 500, *, endpoint: str | None = None) -> None:
        """Answer the next ``count`` requests with ``status`` (500 carries GeneralInternalError).

        Like every hook, it applies to any request, or with ``endpoint`` (a
        name from :data:`ENDPOINTS`) only to calls of that endpoint.
        """
        if not 400 <= status <= 599:
            raise ValueError(f"status must be a 4xx or 5xx code, got {status}")
        self._inject("fail", count, status, endpoint)

    def drop_next(
        self, count: int = 1, *, after_processing: bool = False, endpoint: str | None = None
    ) -> None:
        """Close the connection of the next ``count`` requests without any response.

        By default the request is dropped unread, as by a failing network;
        with ``after_processing=True`` the fake acts on it first (an upload is
        stored) and then drops the response, the case where a client must not
        trust a retry's ``409`` blindly.
        """
        self._inject("drop", count, 1 if after_processing else 0, endpoint)

    def throttle_next(
        self, count: int = 1, retry_after_ms: int | None = None, *, endpoint: str | None = None
    ) -> None:
        """Answer the next ``count`` requests with ``429`` RateLimitExceededError.

        ``Retry-After`` is set to now + ``retry_after_ms`` milliseconds
        (default 1000), as a UNIX time in milliseconds like Apple's.
        """
        if retry_after_ms is not None and retry_after_ms < 0:
            raise ValueError("retry_after_ms must be >= 0")
        delay = 1000 if retry_after_ms is None else retry_after_ms
        self._inject("throttle", count, delay, endpoint)

    def _inject(self, kind: str, count: int, value: int, endpoint: str | None) -> None:
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        if endpoint is not None and endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; use one of {', '.join(ENDPOINTS)}")
        with self._lock:
            self._injected.extend([_Injection(kind, value, endpoint)] * count)

    def _take_injection(self, environ: WSGIEnvironment) -> tuple[_Injection | None, str | None]:
        """The first pending injection that applies to this request (removed from the queue),
        and the request's endpoint name."""
        try:
            matched, _args = self._url_map.bind_to_environ(environ).match()
            endpoint: str | None = str(matched)
        except HTTPException:
            endpoint = None
        with self._lock:
            for index, injection in enumerate(self._injected):
                if injection.endpoint is None or injection.endpoint == endpoint:
                    return self._injected.pop(index), endpoint
        return None, endpoint

    def close(self) -> None:
        """Stop a running performance test and wait for its threads."""
        with self._lock:
            self._closed = True
            runs = list(self._runs.values())
        for run in runs:
            run.cancel()

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Answer one request as Apple would (or as the hooks asked)."""
        request = Request(environ)
        started = time.monotonic()
        injected, endpoint = self._take_injection(environ)
        if injected is not None and injected.kind == "drop" and not injected.value:
            self._record(request, started, None, None, endpoint, None)
            return self._drop_connection(environ, start_response)
        if injected is not None and injected.kind != "drop":
            response = self._injected_response(injected.kind, injected.value)
            claims = None
        else:
            response, claims, endpoint = self._answer(request, environ)
        if injected is not None and injected.kind == "drop":
            self._record(request, started, None, claims, endpoint, None)
            return self._drop_connection(environ, start_response)
        error_code = None
        if response.mimetype == "application/json" and response.status_code >= 400:
            error_code = json.loads(response.get_data()).get("errorCode")
        self._record(request, started, response.status_code, claims, endpoint, error_code)
        return response(environ, start_response)

    def _answer(
        self, request: Request, environ: WSGIEnvironment
    ) -> tuple[Response, dict[str, Any] | None, str | None]:
        """The response, the verified claims and the endpoint name of one request."""
        claims: dict[str, Any] | None = None
        endpoint: str | None = None
        try:
            claims = self._authenticate(request)
            if not self.has_access:
                raise _Untyped(404)
            adapter = self._url_map.bind_to_environ(environ)
            try:
                matched, args = adapter.match()
            except HTTPException as exc:
                raise _Untyped(exc.code or 404) from None
            endpoint = str(matched)
            self._rate_limit(endpoint)
            response = self._handlers[endpoint](request, **args)
        except _ApiError as exc:
            response = _error_response(exc.name, exc.message)
            response.headers.extend(exc.headers)
        except _Untyped as exc:
            response = Response(b"", status=exc.status)
        return response, claims, endpoint

    def _record(
        self,
        request: Request,
        started: float,
        status: int | None,
        claims: dict[str, Any] | None,
        endpoint: str | None,
        error_code: int | None,
    ) -> None:
        entry = RecordedRequest(
            method=request.method,
            path=request.path,
            status=status,
            time=started,
            claims=claims,
            endpoint=endpoint,
            query=request.query_string.decode("latin-1"),
            content_type=request.content_type or None,
            error_code=error_code,
        )
        with self._lock:
            self._requests.append(entry)

    def _injected_response(self, kind: str, value: int) -> Response:
        if kind == "throttle":
            response = _error_response("RateLimitExceededError")
            response.headers["Retry-After"] = str(_now_ms() + value)
            return response
        if value == 500:
            return _error_response("GeneralInternalError")
        return Response(b"", status=value)

    @staticmethod
    def _drop_connection(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        """Shut the request's socket down, so the client sees no response at all."""
        sock = environ.get("werkzeug.socket")
        if not isinstance(sock, socket.socket):
            raise RuntimeError(
                "drop_next() needs a server that exposes the request socket as "
                "environ['werkzeug.socket']; run the fake with flask_retention.testing.serve()"
            )
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            logger.debug("socket already closed while dropping a connection")
        # The server's attempt to write this fails on the closed socket and is dropped quietly.
        start_response("500 Internal Server Error", [("Content-Length", "0")])
        return []

    def _authenticate(self, request: Request) -> dict[str, Any]:
        """The verified claims of the request's JWT; 401 unless it is one Apple would accept."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _Untyped(401)
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != "ES256" or header.get("kid") != self.key_id:
                raise _Untyped(401)
            claims: dict[str, Any] = jwt.decode(
                token,
                self.public_key,
                algorithms=["ES256"],
                audience=AUDIENCE,
                issuer=self.issuer_id,
                options={"require": ["exp", "iss", "aud", "bid"]},
            )
        except jwt.PyJWTError:
            raise _Untyped(401) from None
        if claims.get("bid") != self.bundle_id:
            raise _Untyped(401)
        issued = claims.get("iat", time.time())
        if not isinstance(issued, int | float) or claims["exp"] - issued > MAX_TOKEN_LIFETIME:
            raise _Untyped(401)
        return claims

    def _rate_limit(self, endpoint: str) -> None:
        limiter = self._limiters.get(endpoint)
        if limiter is None:
            return
        with self._lock:
            wait = limiter.admit(time.monotonic())
        if wait is not None:
            retry_at = _now_ms() + math.ceil(wait * 1000)
            raise _ApiError("RateLimitExceededError", headers={"Retry-After": str(retry_at)})

    # ------------------------------------------------------------------ images

    def _upload_image(self, request: Request, identifier: str) -> Response:
        key = self._path_uuid(identifier)
        size = request.args.get("imageSize", "FULL_SIZE")
        if size not in IMAGE_SIZES:
            raise _ApiError("BadRequestImageSizeError")
        data = request.get_data()
        if request.mimetype != "image/png":
            raise _ApiError("InvalidImageError", "Invalid request. Send the PNG as image/png.")
        try:
            info = read_png_info(data)
        except ValueError:
            raise _ApiError("InvalidImageError") from None
        if info.has_transparency:
            raise _ApiError("InvalidImageError")
        if size == "FULL_SIZE":
            fits = (
                info.width == FULL_SIZE_WIDTH
                and FULL_SIZE_MIN_HEIGHT <= info.height <= FULL_SIZE_MAX_HEIGHT
            )
        else:
            fits = info.width == info.height == BULLET_POINT_SIDE
        if not fits:
            raise _ApiError("InvalidImageError")
        with self._lock:
            if key in self._images:
                raise _ApiError("ImageAlreadyExistsError")
            if len(self._images) >= self.max_images:
                raise _ApiError("MaximumNumberOfImagesReachedError")
            self._images[key] = FakeImage(key, size, self._initial_state(), data)
        return Response(b"", status=200)

    def _delete_image(self, request: Request, identifier: str) -> Response:
        key = self._path_uuid(identifier)
        with self._lock:
            if key not in self._images:
                raise _ApiError("ImageNotFoundError")
            if any(key in _message_images(m.body) for m in self._messages.values()):
                raise _ApiError("ImageInUseError")
            del self._images[key]
        return Response(b"", status=200)

    def _get_image_list(self, request: Request) -> Response:
        with self._lock:
            items = [
                {"imageIdentifier": i.identifier, "imageState": i.state, "imageSize": i.size}
                for i in self._images.values()
            ]
        return _json_response({"imageIdentifiers": items})

    # ------------------------------------------------------------------ messages

    def _upload_message(self, request: Request, identifier: str) -> Response:
        key = self._path_uuid(identifier)
        body = _json_body(request)
        if body is None:
            raise _ApiError("GeneralBadRequestError")
        with self._lock:
            self._check_message(body)
            if key in self._messages:
                raise _ApiError("MessageAlreadyExistsError")
            if len(self._messages) >= self.max_messages:
                raise _ApiError("MaximumNumberOfMessagesReachedError")
            self._messages[key] = FakeMessage(key, body, self._initial_state())
        return Response(b"", status=200)

    def _check_message(self, body: dict[str, Any]) -> None:
        """Apple's ``UploadMessageRequestBody`` rules; raises the error Apple answers with."""
        header, text = body.get("header"), body.get("body")
        if not isinstance(header, str) or not isinstance(text, str):
            raise _ApiError(
                "GeneralBadRequestError", "Invalid request. header and body are required."
            )
        if len(header) > HEADER_MAX:
            raise _ApiError("HeaderTooLongError")
        if len(text) > BODY_MAX:
            raise _ApiError("BodyTooLongError")
        image = body.get("image")
        position = body.get("headerPosition", "ABOVE_BODY")
        if position not in ("ABOVE_BODY", "ABOVE_IMAGE"):
            raise _ApiError("GeneralBadRequestError", "Invalid request. headerPosition is invalid.")
        if image is not None:
            self._check_image_ref(image, "FULL_SIZE")
        if position == "ABOVE_IMAGE" and image is None:
            raise _ApiError("BadRequestAboveImageRequiresAnImageError")
        bullets = body.get("bulletPoints")
        if bullets is None:
            return
        if not isinstance(bullets, list):
            raise _ApiError("GeneralBadRequestError", "Invalid request. bulletPoints is invalid.")
        if len(bullets) > BULLET_POINTS_MAX:
            raise _ApiError("BadRequestTooManyBulletPointsError")
        for bullet in bullets:
            if not isinstance(bullet, dict) or not isinstance(bullet.get("text"), str):
                raise _ApiError("GeneralBadRequestError", "Invalid request. A bullet is invalid.")
            if len(bullet["text"]) > BULLET_TEXT_MAX:
                raise _ApiError("BadRequestBulletPointTextTooLongError")
            self._check_image_ref(bullet, "BULLET_POINT")

    def _check_image_ref(self, ref: object, size: str) -> None:
        if not isinstance(ref, dict) or not isinstance(ref.get("altText"), str):
            raise _ApiError("GeneralBadRequestError", "Invalid request. An image is invalid.")
        if len(ref["altText"]) > ALT_TEXT_MAX:
            raise _ApiError("AltTextTooLongError")
        raw = ref.get("imageIdentifier")
        if not isinstance(raw, str):
            raise _ApiError(
                "GeneralBadRequestError", "Invalid request. imageIdentifier is required."
            )
        key = _normalise_uuid(raw)
        image = self._images.get(key) if key else None
        if image is None:
            raise _ApiError("InvalidImageError", f"Invalid request. Image {raw} was not uploaded.")
        if image.size != size:
            raise _ApiError("BadRequestImageSizeError")

    def _delete_message(self, request: Request, identifier: str) -> Response:
        key = self._path_uuid(identifier)
        with self._lock:
            if key not in self._messages:
                raise _ApiError("MessageNotFoundError")
            del self._messages[key]
            for slot in [s for s, m in self._defaults.items() if m == key]:
                del self._defaults[slot]
        return Response(b"", status=200)

    def _get_message_list(self, request: Request) -> Response:
        with self._lock:
            items = [
                {"messageIdentifier": m.identifier, "messageState": m.state}
                for m in self._messages.values()
            ]
        return _json_response({"messageIdentifiers": items})

    # ------------------------------------------------------------------ defaults

    def _check_slot(self, product_id: str, locale: str) -> None:
        if not product_id.strip() or product_id not in self.current_product_ids():
            raise _ApiError("InvalidProductIdError")
        if locale not in self.locales:
            raise _ApiError("InvalidLocaleError")

    def _configure_default_message(
        self, request: Request, product_id: str, locale: str
    ) -> Response:
        self._check_slot(product_id, locale)
        body = _json_body(request)
        raw = body.get("messageIdentifier") if body is not None else None
        key = _normalise_uuid(raw) if isinstance(raw, str) else None
        if key is None:
            raise _ApiError(
                "GeneralBadRequestError", "Invalid request. messageIdentifier is invalid."
            )
        with self._lock:
            message = self._messages.get(key)
            if message is None:
                raise _ApiError("MessageNotFoundError")
            if message.state != "APPROVED":
                raise _ApiError("MessageNotApprovedError")
            for image_key in _message_images(message.body):
                image = self._images.get(image_key)
                if image is None or image.state != "APPROVED":
                    raise _ApiError("ImageNotApprovedError")
            self._defaults[(product_id, locale)] = key
        return Response(b"", status=200)

    def _get_default_message(self, request: Request, product_id: str, locale: str) -> Response:
        self._check_slot(product_id, locale)
        with self._lock:
            key = self._defaults.get((product_id, locale))
        if key is None:
            raise _ApiError("DefaultMessageNotFoundError")
        return _json_response({"messageIdentifier": key})

    def _delete_default_message(self, request: Request, product_id: str, locale: str) -> Response:
        self._check_slot(product_id, locale)
        with self._lock:
            self._defaults.pop((product_id, locale), None)
        return Response(b"", status=200)

    # ------------------------------------------------------------------ realtime URL

    def _configure_realtime_url(self, request: Request) -> Response:
        body = _json_body(request)
        url = body.get("realtimeURL") if body is not None else None
        if not isinstance(url, str) or not self._acceptable_url(url):
            raise _ApiError("BadRequestRealtimeUrlError")
        passed = self.passed_performance_test or (
            self.sandbox is not None and self.sandbox.passed_performance_test
        )
        with self._lock:
            if self.environment == "Production" and not passed:
                raise _ApiError("ForbiddenNoPassingTestError")
            self._realtime_url = url
        return Response(b"", status=200)

    def _acceptable_url(self, url: str) -> bool:
        if len(url) > REALTIME_URL_MAX:
            return False
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            return False
        if not parts.hostname:
            return False
        if url.startswith("https://"):
            return True
        return (
            self.allow_http_targets
            and url.startswith("http://")
            and parts.hostname in LOOPBACK_HOSTS
        )

    def _get_realtime_url(self, request: Request) -> Response:
        with self._lock:
            url = self._realtime_url
        if url is None:
            raise _ApiError("RealtimeUrlNotFoundError")
        return _json_response({"realtimeURL": url})

    def _delete_realtime_url(self, request: Request) -> Response:
        with self._lock:
            self._realtime_url = None
        return Response(b"", status=200)

    # ------------------------------------------------------------------ performance test

    def _initiate_performance_test(self, request: Request) -> Response:
        if self.environment != "Sandbox":
            raise _Untyped(404)
        body = _json_body(request)
        if body is None or "originalTransactionId" not in body:
            raise _ApiError("InvalidPerformanceTestRequestError")
        otid = body["originalTransactionId"]
        if (
            not isinstance(otid, str)
            or TRANSACTION_ID_PATTERN.fullmatch(otid) is None
            or int(otid) > INT64_MAX
        ):
            raise _ApiError("BadRequestTransactionIdError")
        sold = min(self.current_product_ids(), default=f"{self.bundle_id}.monthly")
        with self._lock:
            if self._running is not None and not self._running.done:
                raise _ApiError("ExistingPerformanceTestRunError")
            if self._realtime_url is None:
                raise _ApiError(
                    "InvalidPerformanceTestRequestError",
                    "Invalid request. Configure the sandbox realtime url first.",
                )
            if self.signer is None:
                raise _ApiError(
                    "InvalidPerformanceTestRequestError",
                    "This FakeAppStore has no signer: pass signer=AppStoreSigner(...) "
                    "to run performance tests.",
                )
            if self._closed:
                raise _Untyped(503)
            product_id = self.performance_test_product_id or next(
                (product for product, _locale in self._defaults),
                sold,
            )
            run = PerformanceTestRun(
                request_id=str(uuid.uuid4()),
                config=dict(self.performance_test_config),
                target=self._realtime_url,
                signer=self.signer,
                original_transaction_id=otid,
                app_apple_id=self.app_apple_id,
                product_id=product_id,
                on_done=self._performance_test_done,
            )
            self._runs[run.request_id] = run
            self._running = run
        run.start()
        return _json_response({"config": dict(run.config), "requestId": run.request_id})

    def _performance_test_done(self, run: PerformanceTestRun) -> None:
        if run.result()["result"] == "PASS":
            with self._lock:
                self.passed_performance_test = True

    def _get_performance_test_results(self, request: Request, request_id: str) -> Response:
        if self.environment != "Sandbox":
            raise _Untyped(404)
        key = _normalise_uuid(request_id)
        if key is None:
            raise _ApiError("InvalidRequestIdError")
        with self._lock:
            run = self._runs.get(key)
        if run is None:
            raise _ApiError("PerformanceTestRunNotFoundError")
        return _json_response(run.result())

    # ------------------------------------------------------------------ helpers

    def _initial_state(self) -> str:
        return "APPROVED" if self.auto_approve else "PENDING"

    @staticmethod
    def _path_uuid(identifier: str) -> str:
        key = _normalise_uuid(identifier)
        if key is None:
            raise _Untyped(400)
        return key


def _json_body(request: Request) -> dict[str, Any] | None:
    """The request body as a JSON object, whatever the content type says; ``None`` if not one."""
    try:
        body = json.loads(request.get_data())
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _message_images(body: Mapping[str, Any]) -> set[str]:
    """Identifiers (lowercase) of every image a message body references."""
    refs: list[object] = [body.get("image")]
    bullets = body.get("bulletPoints")
    if isinstance(bullets, list):
        refs.extend(bullets)
    found = set()
    for ref in refs:
        if isinstance(ref, dict) and isinstance(ref.get("imageIdentifier"), str):
            key = _normalise_uuid(ref["imageIdentifier"])
            if key is not None:
                found.add(key)
    return found
