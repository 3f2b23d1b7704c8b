"""Errors of the management API client, mapped from what Apple answers.

Every failure of a call to Apple's Retention Messaging management API raises
an :class:`APIError` (or a subclass chosen by HTTP status) that carries the
status, Apple's numeric ``errorCode``, its name from Apple's error table, the
``errorMessage`` Apple sent, and, for the errors people usually meet, a hint
on what to do. ``str(error)`` is one readable line. Keys and tokens are never
part of an error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from flask_retention.core.errors import RetentionError

#: Apple's error codes for the Retention Messaging API (spec section 5), code -> name.
#: 4000023, 4000185 and 4000187 are inferred from the App Store Server API's
#: equivalents (Apple's Retention Messaging pages give no number for them).
ERROR_NAMES: Final[Mapping[int, str]] = {
    4000000: "GeneralBadRequestError",
    4000006: "BadRequestTransactionIdError",
    4000023: "InvalidProductIdError",
    4000048: "BadRequestAppTransactionIdForUnsupportedEndpointError",
    4000161: "InvalidImageError",
    4000162: "HeaderTooLongError",
    4000163: "BodyTooLongError",
    4000164: "InvalidLocaleError",
    4000175: "AltTextTooLongError",
    4000185: "BadRequestTransactionIdNotSupportedForFamilySharingError",
    4000187: "BadRequestTransactionIdNotOtidError",
    4000211: "InvalidPerformanceTestRequestError",
    4000212: "InvalidRequestIdError",
    4000213: "ExistingPerformanceTestRunError",
    4000215: "BadRequestRealtimeUrlError",
    4000216: "BadRequestImageSizeError",
    4000218: "BadRequestTooManyBulletPointsError",
    4000219: "BadRequestBulletPointTextTooLongError",
    4000224: "BadRequestAboveImageRequiresAnImageError",
    4030014: "MaximumNumberOfImagesReachedError",
    4030016: "MaximumNumberOfMessagesReachedError",
    4030017: "MessageNotApprovedError",
    4030018: "ImageNotApprovedError",
    4030019: "ImageInUseError",
    4030026: "ForbiddenNoPassingTestError",
    4040014: "ImageNotFoundError",
    4040015: "MessageNotFoundError",
    4040018: "PerformanceTestRunNotFoundError",
    4040020: "DefaultMessageNotFoundError",
    4040021: "RealtimeUrlNotFoundError",
    4090000: "ImageAlreadyExistsError",
    4090001: "MessageAlreadyExistsError",
    4290000: "RateLimitExceededError",
    5000000: "GeneralInternalError",
    5000001: "GeneralInternalRetryableError",
}

#: Error name -> Apple's code (the inverse of :data:`ERROR_NAMES`).
ERROR_CODES: Final[Mapping[str, int]] = {name: code for code, name in ERROR_NAMES.items()}

NO_ACCESS_HINT: Final = (
    "Apple answers 404 without an error object when the developer account has no access to "
    "the Retention Messaging API (a pre-release): request access at "
    "https://developer.apple.com/contact/request/retention-messaging-api/ and check the "
    "base URL (RETENTION_API_BASE_URL)."
)

AUTH_HINT: Final = (
    "Apple refused the token: check RETENTION_ISSUER_ID, RETENTION_KEY_ID and "
    "RETENTION_BUNDLE_ID, that the key is an In-App Purchase key (App Store Connect > Users "
    "and Access > Integrations > In-App Purchase) and not revoked, and that this machine's "
    "clock is right."
)

_HINTS: Final[Mapping[str, str]] = {
    "GeneralBadRequestError": "Apple found the request invalid; check its fields.",
    "BadRequestTransactionIdError": (
        "give the original transaction ID of an active auto-renewable subscription "
        "purchased in the sandbox."
    ),
    "InvalidProductIdError": (
        "use the product ID of an auto-renewable subscription exactly as in App Store Connect."
    ),
    "BadRequestAppTransactionIdForUnsupportedEndpointError": (
        "give a subscription's original transaction ID, not an app transaction ID."
    ),
    "InvalidImageError": (
        "upload a PNG without transparency: 3840 px wide and 160-2160 px high (FULL_SIZE), "
        "or 1024 x 1024 px (BULLET_POINT)."
    ),
    "HeaderTooLongError": "shorten the header to at most 66 characters.",
    "BodyTooLongError": "shorten the body to at most 144 characters.",
    "InvalidLocaleError": "use an App Store locale short code such as en-US (case-sensitive).",
    "AltTextTooLongError": "shorten the alt text to at most 150 characters.",
    "BadRequestTransactionIdNotSupportedForFamilySharingError": (
        "use a transaction of the subscription's purchaser, not a Family Sharing one."
    ),
    "BadRequestTransactionIdNotOtidError": (
        "give the subscription's original transaction ID, not a later transaction's ID."
    ),
    "InvalidPerformanceTestRequestError": (
        "check that the sandbox real-time URL is configured and the request's fields."
    ),
    "InvalidRequestIdError": "use the requestId that Initiate Performance Test returned.",
    "ExistingPerformanceTestRunError": (
        "a performance test is already running; wait for its result before starting another."
    ),
    "BadRequestRealtimeUrlError": "give an https:// URL of at most 256 characters.",
    "BadRequestImageSizeError": (
        "use a FULL_SIZE image as the message image and BULLET_POINT images for bullet points."
    ),
    "BadRequestTooManyBulletPointsError": "use fewer bullet points.",
    "BadRequestBulletPointTextTooLongError": (
        "shorten each bullet point's text to at most 66 characters."
    ),
    "BadRequestAboveImageRequiresAnImageError": (
        "headerPosition ABOVE_IMAGE needs an image; add one or use ABOVE_BODY."
    ),
    "MaximumNumberOfImagesReachedError": (
        "the app has Apple's maximum of 2000 images; delete images no message uses."
    ),
    "MaximumNumberOfMessagesReachedError": (
        "the app has Apple's maximum of 2000 messages; delete messages no longer used."
    ),
    "MessageNotApprovedError": (
        "the message is not APPROVED yet; wait for App Store review (Get Message List shows "
        "its state) before making it a default."
    ),
    "ImageNotApprovedError": (
        "the message's image is not APPROVED yet; wait for App Store review (Get Image List "
        "shows its state)."
    ),
    "ImageInUseError": "a message uses this image; delete that message first.",
    "ForbiddenNoPassingTestError": (
        "pass a performance test in the sandbox first (flask retention perf-test), then "
        "configure the production URL."
    ),
    "ImageNotFoundError": "Apple has no image with this identifier in this environment.",
    "MessageNotFoundError": "Apple has no message with this identifier in this environment.",
    "PerformanceTestRunNotFoundError": "Apple has no performance test with this requestId.",
    "DefaultMessageNotFoundError": (
        "no default message is configured for this product and locale."
    ),
    "RealtimeUrlNotFoundError": "no real-time URL is configured in this environment.",
    "ImageAlreadyExistsError": (
        "an image with this identifier already exists; identifiers cannot be reused, so "
        "upload under a new UUID (or treat the image as uploaded)."
    ),
    "MessageAlreadyExistsError": (
        "a message with this identifier already exists; messages cannot be changed, so "
        "upload the new text under a new UUID (or treat the message as uploaded)."
    ),
    "RateLimitExceededError": (
        "Apple's rate limit for this endpoint is spent; retry later (see Retry-After)."
    ),
    "GeneralInternalError": "Apple's server failed; retry later.",
    "GeneralInternalRetryableError": "Apple's server failed; retry later.",
}

_STATUS_HINTS: Final[Mapping[int, str]] = {
    400: "Apple found the request invalid; check its fields.",
    401: AUTH_HINT,
    403: "Apple refused the operation.",
    404: NO_ACCESS_HINT,
    409: "the identifier already exists; use a new UUID.",
    429: "Apple's rate limit for this endpoint is spent; retry later.",
}

_MAX_TEXT: Final = 200


class APIError(RetentionError):
    """A call to Apple's management API failed.

    ``status`` is the HTTP status (``None`` when no answer came), ``error_code``
    Apple's numeric ``errorCode`` (``None`` without one; unknown codes are kept),
    ``error_name`` its name in Apple's table (``None`` for codes not in it),
    ``apple_message`` Apple's ``errorMessage`` (or the start of a body that was
    not JSON), ``hint`` what to do, and ``endpoint`` Apple's name of the call.
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        error_code: int | None = None,
        apple_message: str | None = None,
        hint: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        self.status = status
        self.error_code = error_code
        self.error_name: str | None = None if error_code is None else ERROR_NAMES.get(error_code)
        self.apple_message = apple_message
        if hint is None:
            hint = _default_hint(status, self.error_name, error_code, apple_message)
        self.hint = hint
        self.endpoint = endpoint
        self.detail = message
        super().__init__(self._line())

    def _line(self) -> str:
        parts = [f"{self.endpoint} failed" if self.endpoint else "Apple API call failed"]
        if self.status is not None:
            parts.append(f": HTTP {self.status}")
        if self.error_code is not None:
            name = self.error_name or "unknown error code"
            parts.append(f" {name} ({self.error_code})")
        if self.apple_message:
            parts.append(f": {self.apple_message}")
        if self.detail:
            parts.append(f": {self.detail}" if self.status is None else f" ({self.detail})")
        line = "".join(parts)
        if self.hint:
            line += f" - {self.hint}"
        return line

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), str(self), dict(self.__dict__)))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, error_code={self.error_code!r}, "
            f"error_name={self.error_name!r}, endpoint={self.endpoint!r})"
        )


def _rebuild(cls: type[APIError], line: str, state: dict[str, Any]) -> APIError:
    """Unpickle an :class:`APIError` (its ``__init__`` takes keywords, which pickle cannot)."""
    error = cls.__new__(cls)
    Exception.__init__(error, line)
    error.__dict__.update(state)
    return error


class BadRequestError(APIError):
    """HTTP 400: Apple found the request invalid (text too long, bad locale, ...)."""


class AuthenticationError(APIError):
    """HTTP 401: Apple refused the JWT (wrong issuer, key or bundle ID, or clock)."""


class ForbiddenError(APIError):
    """HTTP 403: not allowed now (not approved, image in use, limits, no passing test)."""


class NotFoundError(APIError):
    """HTTP 404: unknown identifier, nothing configured, or no access to the API at all."""


class ConflictError(APIError):
    """HTTP 409: an image or message with this identifier already exists."""


class RateLimitedError(APIError):
    """HTTP 429: Apple's rate limit is spent; ``retry_at`` is when Apple allows a retry."""

    def __init__(
        self, message: str | None = None, *, retry_at: datetime | None = None, **kwargs: Any
    ) -> None:
        self.retry_at = retry_at
        super().__init__(message, **kwargs)


class ServerError(APIError):
    """HTTP 5xx: Apple's server failed."""


class UnexpectedResponseError(APIError):
    """Apple answered with a status or body this client does not understand."""


class APINetworkError(APIError):
    """No usable answer came: connection refused or dropped, DNS, TLS or a time-out."""


class RateBudgetExhausted(APIError):
    """This process has spent the hourly request budget of an endpoint; nothing was sent.

    ``retry_at`` is when the budget allows the next call.
    """

    def __init__(self, message: str, *, retry_at: datetime, endpoint: str) -> None:
        self.retry_at = retry_at
        super().__init__(
            message,
            endpoint=endpoint,
            hint=("wait, or allow waiting for the budget (the client's budget_wait=)."),
        )


class SandboxOnlyError(RetentionError, ValueError):
    """A sandbox-only endpoint (the performance test) was called on a production client."""


_STATUS_CLASSES: Final[Mapping[int, type[APIError]]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitedError,
}


def _default_hint(
    status: int | None, name: str | None, code: int | None, apple_message: str | None
) -> str | None:
    if name is not None:
        return _HINTS.get(name)
    if status == 404 and code is None and not apple_message:
        return NO_ACCESS_HINT
    if status == 404:
        return "Apple does not know this identifier in this environment."
    if status is not None and status >= 500:
        return "Apple's server failed; retry later."
    return _STATUS_HINTS.get(status) if status is not None else None


def _squeezed(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def parse_error_body(body: bytes) -> tuple[int | None, str | None]:
    """Apple's ``errorCode`` and ``errorMessage`` from a body, whatever its content type.

    A body that is not Apple's error object gives ``(None, its start)``, or
    ``(None, None)`` when empty.
    """
    if not body.strip():
        return None, None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, _squeezed(body.decode("utf-8", "replace"))
    if not isinstance(data, dict):
        return None, _squeezed(body.decode("utf-8", "replace"))
    raw_code = data.get("errorCode")
    code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
    raw_message = data.get("errorMessage")
    message = _squeezed(raw_message) if isinstance(raw_message, str) else None
    return code, message


def error_from_response(
    status: int,
    body: bytes,
    *,
    endpoint: str | None = None,
    retry_at: datetime | None = None,
) -> APIError:
    """The exception for one failed HTTP answer of Apple's management API."""
    code, message = parse_error_body(body)
    if status >= 500:
        return ServerError(status=status, error_code=code, apple_message=message, endpoint=endpoint)
    if status == 429:
        return RateLimitedError(
            None if retry_at is None else f"retry after {retry_at.isoformat()}",
            retry_at=retry_at,
            status=status,
            error_code=code,
            apple_message=message,
            endpoint=endpoint,
        )
    cls = _STATUS_CLASSES.get(status, UnexpectedResponseError)
    return cls(status=status, error_code=code, apple_message=message, endpoint=endpoint)


def retry_at_from_header(value: str | None) -> datetime | None:
    """Apple's ``Retry-After``: a UNIX time in milliseconds, as an aware UTC datetime."""
    if value is None:
        return None
    try:
        millis = int(value.strip())
    except ValueError:
        return None
    if millis <= 0:
        return None
    try:
        return datetime.fromtimestamp(millis / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
