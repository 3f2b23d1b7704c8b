"""Request and response types of Apple's Retention Messaging management API.

Named after Apple's types (and the classes of Apple's official Python
library), with Python field names. Requests check Apple's documented limits
when they are built, so a bad message fails here with a clear ``ValueError``
instead of at Apple.

Responses are read as tolerantly as Apple's own libraries read them, since
Apple adds to the API over time and a call that succeeded at Apple must not
fail here: every field is optional, and one that is absent, ``null`` or of
the wrong type reads as ``None`` (a list or mapping as empty; a wrong type is
logged as a warning that names the field, never its value). Unknown enum
values are kept as plain strings, and each response keeps the whole JSON
object it was read from in ``raw``, unknown fields included. Only a body that
is not a JSON object raises (:class:`ResponseFormatError`).
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

#: Apple's limits on message text (UTF-8 strings, counted in code points).
MAX_HEADER_LENGTH: Final = 66
MAX_BODY_LENGTH: Final = 144
MAX_ALT_TEXT_LENGTH: Final = 150
MAX_BULLET_POINT_TEXT_LENGTH: Final = 66
#: Apple documents ``BadRequestTooManyBulletPointsError`` without a number;
#: Apple's Python library (and the Rust one) allow 5.
MAX_BULLET_POINTS: Final = 5
MAX_REALTIME_URL_LENGTH: Final = 256

logger = logging.getLogger(__name__)


class ImageState(StrEnum):
    """Review state of an uploaded image."""

    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


class MessageState(StrEnum):
    """Review state of an uploaded message."""

    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


class ImageSize(StrEnum):
    """What an image is for: the message image or a bullet-point icon."""

    FULL_SIZE = "FULL_SIZE"
    BULLET_POINT = "BULLET_POINT"


class HeaderPosition(StrEnum):
    """Where the header goes: above the body (default) or above the image."""

    ABOVE_BODY = "ABOVE_BODY"
    ABOVE_IMAGE = "ABOVE_IMAGE"


class PerformanceTestStatus(StrEnum):
    """Overall state of a performance test."""

    PENDING = "PENDING"
    PASS = "PASS"  # noqa: S105 - a test outcome, not a password
    FAIL = "FAIL"


class SendAttemptResult(StrEnum):
    """Outcome of one request of a performance test (the keys of ``failures``)."""

    SUCCESS = "SUCCESS"
    CIRCULAR_REDIRECT = "CIRCULAR_REDIRECT"
    INVALID_RESPONSE = "INVALID_RESPONSE"
    NO_RESPONSE = "NO_RESPONSE"
    OTHER = "OTHER"
    PREMATURE_CLOSE = "PREMATURE_CLOSE"
    SOCKET_ISSUE = "SOCKET_ISSUE"
    TIMED_OUT = "TIMED_OUT"
    TLS_ISSUE = "TLS_ISSUE"
    UNSUCCESSFUL_HTTP_RESPONSE_CODE = "UNSUCCESSFUL_HTTP_RESPONSE_CODE"
    UNSUPPORTED_CHARSET = "UNSUPPORTED_CHARSET"


E = TypeVar("E", bound=StrEnum)


def to_uuid(value: str | uuid.UUID, what: str) -> uuid.UUID:
    """``value`` as a UUID, or a ``ValueError`` that names ``what``."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise ValueError(f"{what} must be a UUID (str or uuid.UUID), not {value!r}")


def _text(value: object, what: str, maximum: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{what} must not be empty")
    if len(value) > maximum:
        raise ValueError(f"{what} is {len(value)} characters long; Apple allows at most {maximum}")
    return value


def _request_enum(enum: type[E], value: object, what: str) -> E:
    allowed = ", ".join(e.value for e in enum)
    if not isinstance(value, str):
        raise ValueError(f"{what} must be one of {allowed}, not {value!r}")
    try:
        return enum(value)
    except ValueError:
        raise ValueError(f"{what} must be one of {allowed}, not {value!r}") from None


# -- requests ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UploadMessageImage:
    """The image of a message: a ``FULL_SIZE`` image already uploaded, with its alt text."""

    image_identifier: uuid.UUID
    alt_text: str

    def __init__(self, image_identifier: str | uuid.UUID, alt_text: str) -> None:
        object.__setattr__(self, "image_identifier", to_uuid(image_identifier, "image identifier"))
        object.__setattr__(self, "alt_text", _text(alt_text, "image alt text", MAX_ALT_TEXT_LENGTH))

    def to_json(self) -> dict[str, Any]:
        """The JSON object Apple expects."""
        return {"imageIdentifier": str(self.image_identifier), "altText": self.alt_text}


@dataclass(frozen=True, slots=True)
class BulletPoint:
    """One bullet point: text beside a ``BULLET_POINT`` image."""

    text: str
    image_identifier: uuid.UUID
    alt_text: str

    def __init__(self, text: str, image_identifier: str | uuid.UUID, alt_text: str) -> None:
        object.__setattr__(
            self, "text", _text(text, "bullet point text", MAX_BULLET_POINT_TEXT_LENGTH)
        )
        object.__setattr__(
            self, "image_identifier", to_uuid(image_identifier, "bullet point image identifier")
        )
        object.__setattr__(
            self, "alt_text", _text(alt_text, "bullet point alt text", MAX_ALT_TEXT_LENGTH)
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object Apple expects."""
        return {
            "text": self.text,
            "imageIdentifier": str(self.image_identifier),
            "altText": self.alt_text,
        }


@dataclass(frozen=True, slots=True)
class UploadMessageRequestBody:
    """A message to upload: header, body, optional image, bullet points and header position."""

    header: str
    body: str
    image: UploadMessageImage | None
    bullet_points: tuple[BulletPoint, ...]
    header_position: HeaderPosition | None

    def __init__(
        self,
        header: str,
        body: str,
        image: UploadMessageImage | None = None,
        bullet_points: Iterable[BulletPoint] = (),
        header_position: HeaderPosition | str | None = None,
    ) -> None:
        object.__setattr__(self, "header", _text(header, "header", MAX_HEADER_LENGTH))
        object.__setattr__(self, "body", _text(body, "body", MAX_BODY_LENGTH))
        if image is not None and not isinstance(image, UploadMessageImage):
            raise ValueError(f"image must be an UploadMessageImage, not {type(image).__name__}")
        object.__setattr__(self, "image", image)
        if isinstance(bullet_points, BulletPoint | str | bytes):
            raise ValueError("bullet_points must be a list of BulletPoint")
        points = tuple(bullet_points)
        if any(not isinstance(p, BulletPoint) for p in points):
            raise ValueError("bullet_points must be a list of BulletPoint")
        if len(points) > MAX_BULLET_POINTS:
            raise ValueError(
                f"a message has {len(points)} bullet points; Apple allows at most "
                f"{MAX_BULLET_POINTS}"
            )
        object.__setattr__(self, "bullet_points", points)
        position = (
            None
            if header_position is None
            else _request_enum(HeaderPosition, header_position, "header_position")
        )
        if position is HeaderPosition.ABOVE_IMAGE and image is None:
            raise ValueError(
                "header_position ABOVE_IMAGE needs an image; add one or use ABOVE_BODY"
            )
        object.__setattr__(self, "header_position", position)

    def to_json(self) -> dict[str, Any]:
        """The JSON object Apple expects (optional fields only when set)."""
        data: dict[str, Any] = {"header": self.header, "body": self.body}
        if self.image is not None:
            data["image"] = self.image.to_json()
        if self.bullet_points:
            data["bulletPoints"] = [p.to_json() for p in self.bullet_points]
        if self.header_position is not None:
            data["headerPosition"] = self.header_position.value
        return data


@dataclass(frozen=True, slots=True)
class DefaultConfigurationRequest:
    """Which message is the default for a product and locale."""

    message_identifier: uuid.UUID

    def __init__(self, message_identifier: str | uuid.UUID) -> None:
        object.__setattr__(
            self, "message_identifier", to_uuid(message_identifier, "message identifier")
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object Apple expects."""
        return {"messageIdentifier": str(self.message_identifier)}


def check_realtime_url(url: object, *, allow_loopback_http: bool = False) -> str:
    """``url`` if Apple would accept it as the real-time URL (https, <= 256), else ValueError.

    ``allow_loopback_http`` also accepts an ``http://`` URL on loopback
    (``127.0.0.1``, ``::1`` or ``localhost``), for a fake App Store on the same
    machine; Apple refuses those, and any other ``http://`` URL is still refused.
    """
    if not isinstance(url, str):
        raise ValueError(f"the real-time URL must be a string, not {type(url).__name__}")
    if len(url) > MAX_REALTIME_URL_LENGTH:
        raise ValueError(
            f"the real-time URL is {len(url)} characters long; Apple allows at most "
            f"{MAX_REALTIME_URL_LENGTH}"
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host = None
        parts = None
    plain_http = url.startswith("http://")
    loopback = host in ("127.0.0.1", "::1", "localhost")
    allowed = url.startswith("https://") or (allow_loopback_http and plain_http and loopback)
    if parts is None or not allowed or not host or any(c.isspace() for c in url):
        if allow_loopback_http and plain_http and host and not loopback:
            raise ValueError(
                "an http:// real-time URL must be on loopback (127.0.0.1, ::1 or localhost), "
                f"not {url!r}; anywhere else, use https://"
            )
        hint = "; a fake App Store on loopback takes it with --allow-http (allow_loopback_http)"
        raise ValueError(
            f"the real-time URL must be an absolute https:// URL with a host, not {url!r}"
            + (hint if plain_http and loopback else "")
        )
    return url


@dataclass(frozen=True, slots=True)
class RealtimeUrlRequest:
    """The URL Apple calls for real-time retention messages (``https://``, <= 256 chars).

    ``allow_loopback_http=True`` also accepts ``http://`` on loopback, for a fake
    App Store only (see :func:`check_realtime_url`).
    """

    realtime_url: str

    def __init__(self, realtime_url: str, *, allow_loopback_http: bool = False) -> None:
        object.__setattr__(
            self,
            "realtime_url",
            check_realtime_url(realtime_url, allow_loopback_http=allow_loopback_http),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object Apple expects (note Apple's capital ``URL``)."""
        return {"realtimeURL": self.realtime_url}


@dataclass(frozen=True, slots=True)
class PerformanceTestRequest:
    """Start a performance test with a sandbox subscription's original transaction ID."""

    original_transaction_id: str

    def __init__(self, original_transaction_id: str | int) -> None:
        value = original_transaction_id
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.isascii() or not value.isdigit():
            raise ValueError(
                "original_transaction_id must be the numeric original transaction ID of an "
                f"active sandbox subscription, not {original_transaction_id!r}"
            )
        object.__setattr__(self, "original_transaction_id", value)

    def to_json(self) -> dict[str, Any]:
        """The JSON object Apple expects."""
        return {"originalTransactionId": self.original_transaction_id}


# -- responses -----------------------------------------------------------------


class ResponseFormatError(ValueError):
    """A response body is not a JSON object, so there is nothing in it to read."""


def _object(data: object, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ResponseFormatError(f"{what} is {_kind(data)}, not a JSON object")
    return data


def _raw(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only copy of the JSON object a response was parsed from."""
    return MappingProxyType(copy.deepcopy(dict(obj)))


def _no_raw() -> Mapping[str, Any]:
    return MappingProxyType({})


def _kind(value: object) -> str:
    """What ``value`` is in JSON's words (messages name the kind, never the value)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _ignored(where: str, value: object, expected: str) -> None:
    logger.warning(
        "Apple's %s is %s, not %s; read as absent (the answer is kept in raw)",
        where,
        _kind(value),
        expected,
    )


def _str(obj: Mapping[str, Any], key: str, what: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    _ignored(f"{what}.{key}", value, "a string")
    return None


def _uuid(obj: Mapping[str, Any], key: str, what: str) -> uuid.UUID | None:
    value = obj.get(key)
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    elif value is None:
        return None
    _ignored(f"{what}.{key}", value, "a UUID")
    return None


def _whole(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    return value


def _int(obj: Mapping[str, Any], key: str, what: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    number = _whole(value)
    if number is None:
        _ignored(f"{what}.{key}", value, "a whole number")
    return number


def _number(obj: Mapping[str, Any], key: str, what: str) -> float | None:
    value = obj.get(key)
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    _ignored(f"{what}.{key}", value, "a number")
    return None


def _known(enum: type[E], value: str) -> E | str:
    try:
        return enum(value)
    except ValueError:
        return value


def _enum(enum: type[E], obj: Mapping[str, Any], key: str, what: str) -> E | str | None:
    value = _str(obj, key, what)
    return None if value is None else _known(enum, value)


def _nested(obj: Mapping[str, Any], key: str, what: str) -> Mapping[str, Any] | None:
    value = obj.get(key)
    if value is None or isinstance(value, Mapping):
        return value
    _ignored(f"{what}.{key}", value, "an object")
    return None


def _items(obj: Mapping[str, Any], key: str, what: str) -> list[Mapping[str, Any]]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        _ignored(f"{what}.{key}", value, "a list")
        return []
    items = []
    for index, item in enumerate(value):
        if isinstance(item, Mapping):
            items.append(item)
        else:
            _ignored(f"{what}.{key}[{index}]", item, "an object")
    return items


@dataclass(frozen=True, slots=True)
class GetImageListResponseItem:
    """One uploaded image: its identifier, review state and size.

    ``image_size`` is Apple's documented default, ``FULL_SIZE``, when Apple
    gives none (images uploaded before sizes existed).
    """

    image_identifier: uuid.UUID | None = None
    image_state: ImageState | str | None = None
    image_size: ImageSize | str = ImageSize.FULL_SIZE
    raw: Mapping[str, Any] = field(default_factory=_no_raw, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object) -> GetImageListResponseItem:
        """Parse Apple's JSON object."""
        what = "GetImageListResponseItem"
        obj = _object(data, what)
        size = _enum(ImageSize, obj, "imageSize", what)
        return cls(
            image_identifier=_uuid(obj, "imageIdentifier", what),
            image_state=_enum(ImageState, obj, "imageState", what),
            image_size=ImageSize.FULL_SIZE if size is None else size,
            raw=_raw(obj),
        )


@dataclass(frozen=True, slots=True)
class GetImageListResponse:
    """Every image uploaded in this environment."""

    image_identifiers: tuple[GetImageListResponseItem, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=_no_raw, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object) -> GetImageListResponse:
        """Parse Apple's JSON object."""
        what = "GetImageListResponse"
        obj = _object(data, what)
        items = _items(obj, "imageIdentifiers", what)
        return cls(
            image_identifiers=tuple(GetImageListResponseItem.from_json(i) for i in items),
            raw=_raw(obj),
        )


@dataclass(frozen=True, slots=True)
class GetMessageListResponseItem:
    """One uploaded message: its identifier and review state."""

    message_identifier: uuid.UUID | None = None
    message_state: MessageState | str | None = None
    raw: Mapping[str, Any] = field(default_factory=_no_raw, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object) -> GetMessageListResponseItem:
        """Parse Apple's JSON object."""
        what = "GetMessageListResponseItem"
        obj = _object(data, what)
        return cls(
            message_identifier=_uuid(obj, "messageIdentifier", what),
            message_state=_enum(MessageState, obj, "messageState", what),
            raw=_raw(obj),
        )


@dataclass(frozen=True, slots=True)
class GetMessageListResponse:
    """Every message uploaded in this environment."""

    message_identifiers: tuple[GetMessageListResponseItem, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=_no_raw, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object) -> GetMessageListResponse:
        """Parse Apple's JSON object."""
        what = "GetMessageListResponse"
        obj = _object(data, what)
        items = _items(obj, "messageIdentifiers", what)
        return cls(
            message_identifiers=tuple(GetMessageListResponseItem.from_json(i) for i in items),
            raw=_raw(obj),
        )


@dataclass(frozen=True, slots=True)
class DefaultConfigurationResponse:
    """The default message configured for a product and locale."""

    message_identifier: uuid.UUID | None = None
    raw: Mapping[str, Any] = field(default_factory=_no_raw, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object) -> DefaultConfigurationResponse:
        """Parse Apple's JSON object."""
        what = "DefaultConfigurationResponse"
        obj = _object(data, what)
        return cls(message_identifier=_uuid(obj, "messageIdentifier", what), raw=_raw(obj))


@dataclass(frozen=True, slots=True)
class RealtimeUrlResponse:
    """The real-time URL configured in this environment."""

    realtime_url: str | None = None
    raw: Mapping[str, Any] = field(default_factory=_no_raw, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object) -> RealtimeUrlResponse:
        """Parse Apple's JSON object."""
        what = "RealtimeUrlResponse"
        obj = _object(data, what)
        return cls(realtime_url=_str(obj, "realtimeURL", what), raw=_raw(obj))


@dataclass(frozen=True, slots=True)
class PerformanceTestConfig:
    """How Apple runs a performance test (durations and thresholds in milliseconds)."""

    max_concurrent_requests: int | None = None
    response_time_threshold: int | None = None
    success_rate_threshold: int | None = None
    total_duration: int | None = None
    total_requests: int | None = None
    raw: Mapping[str, Any] = field(default_factory=_no_raw, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object) -> PerformanceTestConfig:
        """Parse Apple's JSON object."""
        what = "PerformanceTestConfig"
        obj = _object(data, what)
        return cls(
            max_concurrent_requests=_int(obj, "maxConcurrentRequests", what),
            response_time_threshold=_int(obj, "responseTimeThreshold", what),
            success_rate_threshold=_int(obj, "successRateThreshold", what),
            total_duration=_int(obj, "totalDuration", what),
            total_requests=_int(obj, "totalRequests", what),
            raw=_raw(obj),
        )


def _config(obj: Mapping[str, Any], what: str) -> PerformanceTestConfig | None:
    config = _nested(obj, "config", what)
    return None if config is None else PerformanceTestConfig.from_json(config)


@dataclass(frozen=True, slots=True)
class PerformanceTestResponse:
    """A started performance test: its configuration and the ``request_id`` to poll."""

    config: PerformanceTestConfig | None = None
    request_id: uuid.UUID | None = None
    raw: Mapping[str, Any] = field(default_factory=_no_raw, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object) -> PerformanceTestResponse:
        """Parse Apple's JSON object."""
        what = "PerformanceTestResponse"
        obj = _object(data, what)
        return cls(
            config=_config(obj, what),
            request_id=_uuid(obj, "requestId", what),
            raw=_raw(obj),
        )


@dataclass(frozen=True, slots=True)
class PerformanceTestResponseTimes:
    """Latency statistics of a performance test, in milliseconds."""

    average: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    raw: Mapping[str, Any] = field(default_factory=_no_raw, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object) -> PerformanceTestResponseTimes:
        """Parse Apple's JSON object."""
        what = "PerformanceTestResponseTimes"
        obj = _object(data, what)
        return cls(
            average=_number(obj, "average", what),
            p50=_number(obj, "p50", what),
            p90=_number(obj, "p90", what),
            p95=_number(obj, "p95", what),
            p99=_number(obj, "p99", what),
            raw=_raw(obj),
        )


@dataclass(frozen=True, slots=True)
class PerformanceTestResultResponse:
    """The state or outcome of a performance test.

    ``failures`` maps a :class:`SendAttemptResult` (or a newer reason, as a
    string) to its count and is empty when absent.
    """

    config: PerformanceTestConfig | None = None
    target: str | None = None
    result: PerformanceTestStatus | str | None = None
    success_rate: int | None = None
    num_pending: int | None = None
    response_times: PerformanceTestResponseTimes | None = None
    failures: Mapping[SendAttemptResult | str, int] = field(
        default_factory=lambda: MappingProxyType({})
    )
    raw: Mapping[str, Any] = field(default_factory=_no_raw, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        """Whether Apple has a final result (``PASS`` or ``FAIL``)."""
        return self.result is not None and self.result != PerformanceTestStatus.PENDING

    @property
    def passed(self) -> bool:
        """Whether the test passed."""
        return self.result == PerformanceTestStatus.PASS

    @classmethod
    def from_json(cls, data: object) -> PerformanceTestResultResponse:
        """Parse Apple's JSON object."""
        what = "PerformanceTestResultResponse"
        obj = _object(data, what)
        failures: dict[SendAttemptResult | str, int] = {}
        for key, count in (_nested(obj, "failures", what) or {}).items():
            number = _whole(count)
            if number is None:
                if count is not None:
                    _ignored(f"{what}.failures[{str(key)[:60]!r}]", count, "a whole number")
                continue
            failures[_known(SendAttemptResult, str(key))] = number
        times = _nested(obj, "responseTimes", what)
        return cls(
            config=_config(obj, what),
            target=_str(obj, "target", what),
            result=_enum(PerformanceTestStatus, obj, "result", what),
            success_rate=_int(obj, "successRate", what),
            num_pending=_int(obj, "numPending", what),
            response_times=None if times is None else PerformanceTestResponseTimes.from_json(times),
            failures=MappingProxyType(failures),
            raw=_raw(obj),
        )
