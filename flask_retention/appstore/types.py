"""Request and response types of Apple's Retention Messaging management API.

Named after Apple's types (and the classes of Apple's official Python
library), with Python field names. Requests check Apple's documented limits
when they are built, so a bad message fails here with a clear ``ValueError``
instead of at Apple. Responses are parsed leniently, as Apple adds to the
API over time: unknown fields are ignored, unknown enum values are kept as
plain strings, and absent optional lists are empty.
"""

from __future__ import annotations

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


def check_realtime_url(url: object) -> str:
    """``url`` if Apple would accept it as the real-time URL (https, <= 256), else ValueError."""
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
    if parts is None or not url.startswith("https://") or not host or any(c.isspace() for c in url):
        raise ValueError(
            f"the real-time URL must be an absolute https:// URL with a host, not {url!r}"
        )
    return url


@dataclass(frozen=True, slots=True)
class RealtimeUrlRequest:
    """The URL Apple calls for real-time retention messages (``https://``, <= 256 chars)."""

    realtime_url: str

    def __init__(self, realtime_url: str) -> None:
        object.__setattr__(self, "realtime_url", check_realtime_url(realtime_url))

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
    """A response body lacks a field Apple documents or has one of the wrong type."""


def _object(data: object, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ResponseFormatError(f"{what} is not a JSON object")
    return data


def _field(data: Mapping[str, Any], key: str, what: str) -> Any:
    if key not in data or data[key] is None:
        raise ResponseFormatError(f"{what} lacks {key!r}")
    return data[key]


def _uuid_field(data: Mapping[str, Any], key: str, what: str) -> uuid.UUID:
    value = _field(data, key, what)
    if not isinstance(value, str):
        raise ResponseFormatError(f"{what}.{key} is not a string")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ResponseFormatError(f"{what}.{key} is not a UUID: {value[:60]!r}") from None


def _str_field(data: Mapping[str, Any], key: str, what: str) -> str:
    value = _field(data, key, what)
    if not isinstance(value, str):
        raise ResponseFormatError(f"{what}.{key} is not a string")
    return value


def _int_value(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ResponseFormatError(f"{where} is not a number")
    if isinstance(value, float):
        if not value.is_integer():
            raise ResponseFormatError(f"{where} is not a whole number")
        return int(value)
    return value


def _int_field(data: Mapping[str, Any], key: str, what: str) -> int:
    return _int_value(_field(data, key, what), f"{what}.{key}")


def _number_field(data: Mapping[str, Any], key: str, what: str) -> float:
    value = _field(data, key, what)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ResponseFormatError(f"{what}.{key} is not a number")
    return value


def _optional(data: Mapping[str, Any], key: str) -> bool:
    return data.get(key) is not None


def _enum(enum: type[E], value: object, where: str) -> E | str:
    if not isinstance(value, str):
        raise ResponseFormatError(f"{where} is not a string")
    try:
        return enum(value)
    except ValueError:
        return value


def _list(data: Mapping[str, Any], key: str, what: str) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ResponseFormatError(f"{what}.{key} is not a list")
    return value


@dataclass(frozen=True, slots=True)
class GetImageListResponseItem:
    """One uploaded image: its identifier, review state and size."""

    image_identifier: uuid.UUID
    image_state: ImageState | str
    image_size: ImageSize | str = ImageSize.FULL_SIZE

    @classmethod
    def from_json(cls, data: object) -> GetImageListResponseItem:
        """Parse Apple's JSON object."""
        what = "GetImageListResponseItem"
        obj = _object(data, what)
        size = obj.get("imageSize")
        return cls(
            image_identifier=_uuid_field(obj, "imageIdentifier", what),
            image_state=_enum(ImageState, _field(obj, "imageState", what), f"{what}.imageState"),
            image_size=(
                ImageSize.FULL_SIZE if size is None else _enum(ImageSize, size, f"{what}.imageSize")
            ),
        )


@dataclass(frozen=True, slots=True)
class GetImageListResponse:
    """Every image uploaded in this environment."""

    image_identifiers: tuple[GetImageListResponseItem, ...] = ()

    @classmethod
    def from_json(cls, data: object) -> GetImageListResponse:
        """Parse Apple's JSON object."""
        obj = _object(data, "GetImageListResponse")
        items = _list(obj, "imageIdentifiers", "GetImageListResponse")
        return cls(image_identifiers=tuple(GetImageListResponseItem.from_json(i) for i in items))


@dataclass(frozen=True, slots=True)
class GetMessageListResponseItem:
    """One uploaded message: its identifier and review state."""

    message_identifier: uuid.UUID
    message_state: MessageState | str

    @classmethod
    def from_json(cls, data: object) -> GetMessageListResponseItem:
        """Parse Apple's JSON object."""
        what = "GetMessageListResponseItem"
        obj = _object(data, what)
        return cls(
            message_identifier=_uuid_field(obj, "messageIdentifier", what),
            message_state=_enum(
                MessageState, _field(obj, "messageState", what), f"{what}.messageState"
            ),
        )


@dataclass(frozen=True, slots=True)
class GetMessageListResponse:
    """Every message uploaded in this environment."""

    message_identifiers: tuple[GetMessageListResponseItem, ...] = ()

    @classmethod
    def from_json(cls, data: object) -> GetMessageListResponse:
        """Parse Apple's JSON object."""
        obj = _object(data, "GetMessageListResponse")
        items = _list(obj, "messageIdentifiers", "GetMessageListResponse")
        return cls(
            message_identifiers=tuple(GetMessageListResponseItem.from_json(i) for i in items)
        )


@dataclass(frozen=True, slots=True)
class DefaultConfigurationResponse:
    """The default message configured for a product and locale."""

    message_identifier: uuid.UUID

    @classmethod
    def from_json(cls, data: object) -> DefaultConfigurationResponse:
        """Parse Apple's JSON object."""
        what = "DefaultConfigurationResponse"
        return cls(message_identifier=_uuid_field(_object(data, what), "messageIdentifier", what))


@dataclass(frozen=True, slots=True)
class RealtimeUrlResponse:
    """The real-time URL configured in this environment."""

    realtime_url: str

    @classmethod
    def from_json(cls, data: object) -> RealtimeUrlResponse:
        """Parse Apple's JSON object."""
        what = "RealtimeUrlResponse"
        return cls(realtime_url=_str_field(_object(data, what), "realtimeURL", what))


@dataclass(frozen=True, slots=True)
class PerformanceTestConfig:
    """How Apple runs a performance test (durations and thresholds in milliseconds)."""

    max_concurrent_requests: int
    response_time_threshold: int
    success_rate_threshold: int
    total_duration: int
    total_requests: int

    @classmethod
    def from_json(cls, data: object) -> PerformanceTestConfig:
        """Parse Apple's JSON object."""
        what = "PerformanceTestConfig"
        obj = _object(data, what)
        return cls(
            max_concurrent_requests=_int_field(obj, "maxConcurrentRequests", what),
            response_time_threshold=_int_field(obj, "responseTimeThreshold", what),
            success_rate_threshold=_int_field(obj, "successRateThreshold", what),
            total_duration=_int_field(obj, "totalDuration", what),
            total_requests=_int_field(obj, "totalRequests", what),
        )


@dataclass(frozen=True, slots=True)
class PerformanceTestResponse:
    """A started performance test: its configuration and the ``request_id`` to poll."""

    config: PerformanceTestConfig
    request_id: uuid.UUID

    @classmethod
    def from_json(cls, data: object) -> PerformanceTestResponse:
        """Parse Apple's JSON object."""
        what = "PerformanceTestResponse"
        obj = _object(data, what)
        return cls(
            config=PerformanceTestConfig.from_json(_field(obj, "config", what)),
            request_id=_uuid_field(obj, "requestId", what),
        )


@dataclass(frozen=True, slots=True)
class PerformanceTestResponseTimes:
    """Latency statistics of a performance test, in milliseconds."""

    average: float
    p50: float
    p90: float
    p95: float
    p99: float

    @classmethod
    def from_json(cls, data: object) -> PerformanceTestResponseTimes:
        """Parse Apple's JSON object."""
        what = "PerformanceTestResponseTimes"
        obj = _object(data, what)
        return cls(
            average=_number_field(obj, "average", what),
            p50=_number_field(obj, "p50", what),
            p90=_number_field(obj, "p90", what),
            p95=_number_field(obj, "p95", what),
            p99=_number_field(obj, "p99", what),
        )


@dataclass(frozen=True, slots=True)
class PerformanceTestResultResponse:
    """The state or outcome of a performance test.

    Apple marks every field required, but a test still running may lack some,
    so they are optional here; ``failures`` maps a :class:`SendAttemptResult`
    (or a newer reason, as a string) to its count and is empty when absent.
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
        raw_failures = obj.get("failures")
        if raw_failures is not None:
            for key, count in _object(raw_failures, f"{what}.failures").items():
                reason = _enum(SendAttemptResult, key, f"{what}.failures key")
                failures[reason] = _int_value(count, f"{what}.failures[{key!r}]")
        target = obj.get("target")
        if target is not None and not isinstance(target, str):
            raise ResponseFormatError(f"{what}.target is not a string")
        return cls(
            config=(
                PerformanceTestConfig.from_json(obj["config"]) if _optional(obj, "config") else None
            ),
            target=target,
            result=(
                _enum(PerformanceTestStatus, obj["result"], f"{what}.result")
                if _optional(obj, "result")
                else None
            ),
            success_rate=(
                _int_field(obj, "successRate", what) if _optional(obj, "successRate") else None
            ),
            num_pending=(
                _int_field(obj, "numPending", what) if _optional(obj, "numPending") else None
            ),
            response_times=(
                PerformanceTestResponseTimes.from_json(obj["responseTimes"])
                if _optional(obj, "responseTimes")
                else None
            ),
            failures=MappingProxyType(failures),
        )
