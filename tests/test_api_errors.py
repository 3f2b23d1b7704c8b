"""Apple's error answers become exceptions that carry the status, code, name and a hint."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest

from flask_retention import RetentionError
from flask_retention.api import (
    ERROR_CODES,
    ERROR_NAMES,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    RateBudgetExhausted,
    RateLimitedError,
    ServerError,
    UnexpectedResponseError,
)
from flask_retention.appstore.errors import (
    error_from_response,
    parse_error_body,
    retry_at_from_header,
)

from .support import vector

#: Every code of the spec's table (section 5) with its name and documented status.
SPEC_TABLE = [
    (4000006, "BadRequestTransactionIdError", 400),
    (4000023, "InvalidProductIdError", 400),
    (4000048, "BadRequestAppTransactionIdForUnsupportedEndpointError", 400),
    (4000161, "InvalidImageError", 400),
    (4000162, "HeaderTooLongError", 400),
    (4000163, "BodyTooLongError", 400),
    (4000164, "InvalidLocaleError", 400),
    (4000175, "AltTextTooLongError", 400),
    (4000185, "BadRequestTransactionIdNotSupportedForFamilySharingError", 400),
    (4000187, "BadRequestTransactionIdNotOtidError", 400),
    (4000211, "InvalidPerformanceTestRequestError", 400),
    (4000212, "InvalidRequestIdError", 400),
    (4000213, "ExistingPerformanceTestRunError", 400),
    (4000215, "BadRequestRealtimeUrlError", 400),
    (4000216, "BadRequestImageSizeError", 400),
    (4000218, "BadRequestTooManyBulletPointsError", 400),
    (4000219, "BadRequestBulletPointTextTooLongError", 400),
    (4000224, "BadRequestAboveImageRequiresAnImageError", 400),
    (4030014, "MaximumNumberOfImagesReachedError", 403),
    (4030016, "MaximumNumberOfMessagesReachedError", 403),
    (4030017, "MessageNotApprovedError", 403),
    (4030018, "ImageNotApprovedError", 403),
    (4030019, "ImageInUseError", 403),
    (4030026, "ForbiddenNoPassingTestError", 403),
    (4040014, "ImageNotFoundError", 404),
    (4040015, "MessageNotFoundError", 404),
    (4040018, "PerformanceTestRunNotFoundError", 404),
    (4040020, "DefaultMessageNotFoundError", 404),
    (4040021, "RealtimeUrlNotFoundError", 404),
    (4090000, "ImageAlreadyExistsError", 409),
    (4090001, "MessageAlreadyExistsError", 409),
    (4290000, "RateLimitExceededError", 429),
    (5000000, "GeneralInternalError", 500),
]

CLASSES = {
    400: BadRequestError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitedError,
    500: ServerError,
}


def body(code: int, message: str = "Apple says no.") -> bytes:
    return f'{{"errorCode": {code}, "errorMessage": "{message}"}}'.encode()


@pytest.mark.parametrize(("code", "name", "status"), SPEC_TABLE)
def test_every_documented_code_maps_to_its_name_class_and_hint(
    code: int, name: str, status: int
) -> None:
    error = error_from_response(status, body(code), endpoint="Upload Message")
    assert type(error) is CLASSES[status]
    assert isinstance(error, APIError)
    assert isinstance(error, RetentionError)
    assert (error.status, error.error_code, error.error_name) == (status, code, name)
    assert error.apple_message == "Apple says no."
    assert error.hint
    line = str(error)
    assert "\n" not in line
    assert line.startswith(f"Upload Message failed: HTTP {status} {name} ({code}): Apple says no.")
    assert error.hint in line
    assert ERROR_CODES[name] == code
    assert ERROR_NAMES[code] == name


def test_apples_rate_limit_fixture_maps_to_rate_limited() -> None:
    error = error_from_response(
        429, vector("apple-fixtures/apiTooManyRequestsException.json").read_bytes()
    )
    assert isinstance(error, RateLimitedError)
    assert (error.error_code, error.error_name, error.apple_message) == (
        4290000,
        "RateLimitExceededError",
        "Rate limit exceeded.",
    )


def test_apples_internal_error_fixture_maps_to_server_error() -> None:
    error = error_from_response(500, vector("apple-fixtures/apiException.json").read_bytes())
    assert isinstance(error, ServerError)
    assert (error.error_code, error.error_name) == (5000000, "GeneralInternalError")
    assert error.apple_message == "An unknown error occurred."


def test_unknown_code_is_kept_without_a_name() -> None:
    error = error_from_response(400, vector("apple-fixtures/apiUnknownError.json").read_bytes())
    assert isinstance(error, BadRequestError)
    assert (error.error_code, error.error_name, error.apple_message) == (
        9990000,
        None,
        "Testing error.",
    )
    assert "unknown error code (9990000): Testing error." in str(error)


def test_unauthorized_without_body_tells_what_to_check() -> None:
    error = error_from_response(401, b"", endpoint="Get Image List")
    assert isinstance(error, AuthenticationError)
    assert error.error_code is None
    for thing in (
        "RETENTION_ISSUER_ID",
        "RETENTION_KEY_ID",
        "RETENTION_BUNDLE_ID",
        "In-App Purchase",
    ):
        assert thing in str(error)


def test_not_found_without_body_means_no_access_to_the_api() -> None:
    error = error_from_response(404, b"", endpoint="Configure Realtime URL")
    assert isinstance(error, NotFoundError)
    assert error.error_name is None
    assert "no access to the Retention Messaging API" in str(error)


def test_not_found_with_a_code_does_not_claim_no_access() -> None:
    error = error_from_response(404, body(4040020))
    assert error.error_name == "DefaultMessageNotFoundError"
    assert "no access" not in str(error)


def test_error_body_is_parsed_whatever_the_content_type() -> None:
    # The bytes are all we look at: a JSON body sent as text/plain still maps.
    code, message = parse_error_body(b'  {"errorCode": 4030017, "errorMessage": "x"}\n')
    assert (code, message) == (4030017, "x")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", (None, None)),
        (
            b"<html>\n<body>Bad   Gateway</body></html>",
            (None, "<html> <body>Bad Gateway</body></html>"),
        ),
        (b"[1, 2]", (None, "[1, 2]")),
        (b'{"errorCode": "4000162"}', (None, None)),
        (b'{"errorCode": true, "errorMessage": 5}', (None, None)),
        (b"\xff\xfe garbage", (None, "\ufffd\ufffd garbage")),
    ],
)
def test_bodies_that_are_not_apples_error_object_are_tolerated(
    raw: bytes, expected: tuple[int | None, str | None]
) -> None:
    assert parse_error_body(raw) == expected


def test_long_non_json_body_is_cut_to_one_short_line() -> None:
    error = error_from_response(502, b"oops\n" * 200)
    assert isinstance(error, ServerError)
    assert error.apple_message is not None
    assert len(error.apple_message) <= 200
    assert "\n" not in str(error)


def test_unexpected_status_maps_to_unexpected_response() -> None:
    error = error_from_response(302, b"")
    assert type(error) is UnexpectedResponseError
    assert error.status == 302


def test_retry_after_is_a_unix_time_in_milliseconds() -> None:
    assert retry_at_from_header("1767225600000") == datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_at_from_header(None) is None
    assert retry_at_from_header("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert retry_at_from_header("-5") is None


def test_rate_limited_error_carries_retry_at() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    error = error_from_response(429, body(4290000), retry_at=at)
    assert isinstance(error, RateLimitedError)
    assert error.retry_at == at
    assert "retry after 2026-01-01T00:00:00+00:00" in str(error)


def test_repr_is_short_and_structured() -> None:
    error = error_from_response(409, body(4090000), endpoint="Upload Image")
    assert repr(error) == (
        "ConflictError(status=409, error_code=4090000, error_name='ImageAlreadyExistsError', "
        "endpoint='Upload Image')"
    )


def test_errors_survive_pickling() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for error in (
        error_from_response(403, body(4030017), endpoint="Configure Default Message"),
        error_from_response(429, body(4290000), retry_at=at),
        RateBudgetExhausted("budget spent", retry_at=at, endpoint="Upload Image"),
    ):
        copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
        assert type(copy) is type(error)
        assert str(copy) == str(error)
        assert copy.__dict__ == error.__dict__
