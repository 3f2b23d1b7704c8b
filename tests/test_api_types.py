"""Request types check Apple's limits; response types read whatever JSON object Apple sends."""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from typing import Any

import pytest

from flask_retention.api import (
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
    SendAttemptResult,
    UploadMessageImage,
    UploadMessageRequestBody,
)
from flask_retention.appstore.types import ResponseFormatError

from .support import vector

IMAGE = uuid.UUID("b2c3d4e5-f6a7-8901-b2c3-d4e5f6a78901")
ICON = uuid.UUID("c3d4e5f6-a7b8-9012-c3d4-e5f6a7b89012")


def fixture(name: str) -> Any:
    return json.loads(vector(f"apple-fixtures/{name}").read_text())


# -- Apple's fixtures ----------------------------------------------------------


def test_apple_image_list_fixture_parses() -> None:
    response = GetImageListResponse.from_json(fixture("getImageListResponse.json"))
    (item,) = response.image_identifiers
    assert item.image_identifier == uuid.UUID("a1b2c3d4-e5f6-7890-a1b2-c3d4e5f67890")
    assert item.image_state is ImageState.APPROVED
    assert item.image_size is ImageSize.FULL_SIZE


def test_apple_message_list_fixture_parses() -> None:
    response = GetMessageListResponse.from_json(fixture("getMessageListResponse.json"))
    (item,) = response.message_identifiers
    assert item.message_identifier == uuid.UUID("a1b2c3d4-e5f6-7890-a1b2-c3d4e5f67890")
    assert item.message_state is MessageState.APPROVED


def test_apple_default_message_fixture_parses() -> None:
    response = DefaultConfigurationResponse.from_json(fixture("getDefaultMessageResponse.json"))
    assert response.message_identifier == uuid.UUID("a1b2c3d4-e5f6-7890-a1b2-c3d4e5f67890")


def test_apple_realtime_url_fixture_parses() -> None:
    response = RealtimeUrlResponse.from_json(fixture("getRealtimeUrlResponse.json"))
    assert response.realtime_url == "https://example.com/realtime"


def test_apple_performance_test_fixture_parses() -> None:
    response = PerformanceTestResponse.from_json(fixture("performanceTestResponse.json"))
    assert response.request_id == uuid.UUID("c4b87a1d-2e3f-4a5b-9c6d-7e8f9a0b1c2d")
    assert response.config == PerformanceTestConfig(
        max_concurrent_requests=10,
        response_time_threshold=500,
        success_rate_threshold=95,
        total_duration=60000,
        total_requests=100,
    )


def test_apple_performance_test_result_fixture_parses() -> None:
    result = PerformanceTestResultResponse.from_json(fixture("performanceTestResultResponse.json"))
    assert result.config is not None
    assert result.config.total_requests == 100
    assert result.target == "https://example.com/retention"
    assert result.result is PerformanceTestStatus.PASS
    assert result.passed
    assert result.finished
    assert result.success_rate == 98
    assert result.num_pending == 0
    assert result.response_times is not None
    assert (result.response_times.average, result.response_times.p99) == (120, 400)
    assert dict(result.failures) == {
        SendAttemptResult.TIMED_OUT: 1,
        SendAttemptResult.NO_RESPONSE: 1,
    }


# -- tolerant parsing ----------------------------------------------------------

URL = "https://example.com/retention"
CONFIG = {
    "maxConcurrentRequests": 10,
    "responseTimeThreshold": 500,
    "successRateThreshold": 95,
    "totalDuration": 60000,
    "totalRequests": 100,
}
PARSED_CONFIG = PerformanceTestConfig(10, 500, 95, 60000, 100)
TIMES = {"average": 120, "p50": 100, "p90": 200, "p95": 300, "p99": 400}
PARSED_TIMES = PerformanceTestResponseTimes(120, 100, 200, 300, 400)

#: (type, JSON key, attribute, a good value, what it parses to, read as absent, a wrong type).
#: The wrong values look like secrets so the tests can check warnings never repeat them.
FIELDS: list[tuple[Any, str, str, Any, Any, Any, Any]] = [
    (GetImageListResponseItem, "imageIdentifier", "image_identifier", str(IMAGE), IMAGE, None, 42),
    (
        GetImageListResponseItem,
        "imageState",
        "image_state",
        "APPROVED",
        ImageState.APPROVED,
        None,
        ["s3cret"],
    ),
    (
        GetImageListResponseItem,
        "imageSize",
        "image_size",
        "BULLET_POINT",
        ImageSize.BULLET_POINT,
        ImageSize.FULL_SIZE,
        7,
    ),
    (
        GetImageListResponse,
        "imageIdentifiers",
        "image_identifiers",
        [{"imageIdentifier": str(IMAGE), "imageState": "PENDING"}],
        (GetImageListResponseItem(IMAGE, ImageState.PENDING),),
        (),
        {"s3cret": 1},
    ),
    (
        GetMessageListResponseItem,
        "messageIdentifier",
        "message_identifier",
        str(IMAGE),
        IMAGE,
        None,
        "s3cret-not-a-uuid",
    ),
    (
        GetMessageListResponseItem,
        "messageState",
        "message_state",
        "REJECTED",
        MessageState.REJECTED,
        None,
        {"s3cret": True},
    ),
    (
        GetMessageListResponse,
        "messageIdentifiers",
        "message_identifiers",
        [{"messageIdentifier": str(ICON), "messageState": "APPROVED"}],
        (GetMessageListResponseItem(ICON, MessageState.APPROVED),),
        (),
        "s3cret",
    ),
    (
        DefaultConfigurationResponse,
        "messageIdentifier",
        "message_identifier",
        str(ICON),
        ICON,
        None,
        1234567,
    ),
    (RealtimeUrlResponse, "realtimeURL", "realtime_url", URL, URL, None, 98765),
    *[
        (PerformanceTestConfig, key, attr, CONFIG[key], CONFIG[key], None, "s3cret")
        for key, attr in [
            ("maxConcurrentRequests", "max_concurrent_requests"),
            ("responseTimeThreshold", "response_time_threshold"),
            ("successRateThreshold", "success_rate_threshold"),
            ("totalDuration", "total_duration"),
            ("totalRequests", "total_requests"),
        ]
    ],
    (PerformanceTestResponse, "config", "config", CONFIG, PARSED_CONFIG, None, "s3cret"),
    (PerformanceTestResponse, "requestId", "request_id", str(ICON), ICON, None, 5),
    *[
        (PerformanceTestResponseTimes, key, key, TIMES[key], TIMES[key], None, "s3cret")
        for key in TIMES
    ],
    (PerformanceTestResultResponse, "config", "config", CONFIG, PARSED_CONFIG, None, [1]),
    (PerformanceTestResultResponse, "target", "target", URL, URL, None, 31337),
    (
        PerformanceTestResultResponse,
        "result",
        "result",
        "PASS",
        PerformanceTestStatus.PASS,
        None,
        True,
    ),
    (PerformanceTestResultResponse, "successRate", "success_rate", 98, 98, None, "s3cret"),
    (PerformanceTestResultResponse, "numPending", "num_pending", 0, 0, None, "s3cret"),
    (
        PerformanceTestResultResponse,
        "responseTimes",
        "response_times",
        TIMES,
        PARSED_TIMES,
        None,
        "s3cret",
    ),
    (
        PerformanceTestResultResponse,
        "failures",
        "failures",
        {"TIMED_OUT": 2},
        {SendAttemptResult.TIMED_OUT: 2},
        {},
        ["s3cret"],
    ),
]

RESPONSE_TYPES = sorted({case[0] for case in FIELDS}, key=lambda t: t.__name__)


def full_body(kind: Any) -> dict[str, Any]:
    """Every field of ``kind`` with a good value."""
    return {key: good for t, key, _, good, _, _, _ in FIELDS if t is kind}


def field_id(case: tuple[Any, ...]) -> str:
    return f"{case[0].__name__}.{case[1]}"


def read(parsed: Any, attr: str) -> Any:
    value = getattr(parsed, attr)
    return dict(value) if attr == "failures" else value


def test_every_response_type_is_covered() -> None:
    assert [t.__name__ for t in RESPONSE_TYPES] == [
        "DefaultConfigurationResponse",
        "GetImageListResponse",
        "GetImageListResponseItem",
        "GetMessageListResponse",
        "GetMessageListResponseItem",
        "PerformanceTestConfig",
        "PerformanceTestResponse",
        "PerformanceTestResponseTimes",
        "PerformanceTestResultResponse",
        "RealtimeUrlResponse",
    ]
    for kind in RESPONSE_TYPES:
        covered = {attr for t, _, attr, *_ in FIELDS if t is kind}
        declared = {f.name for f in dataclasses.fields(kind)} - {"raw"}
        assert covered == declared, kind.__name__


@pytest.mark.parametrize("case", FIELDS, ids=field_id)
def test_a_missing_field_reads_as_absent_and_the_rest_is_read(
    case: tuple[Any, ...], caplog: pytest.LogCaptureFixture
) -> None:
    kind, key, attr, _, parsed, absent, _ = case
    assert read(kind.from_json(full_body(kind)), attr) == parsed
    body = full_body(kind)
    del body[key]
    result = kind.from_json(body)
    assert read(result, attr) == absent
    for other_key in body:
        (other,) = [c for c in FIELDS if c[0] is kind and c[1] == other_key]
        assert read(result, other[2]) == other[4], other_key
    assert caplog.records == []


@pytest.mark.parametrize("case", FIELDS, ids=field_id)
def test_a_null_field_reads_as_absent(
    case: tuple[Any, ...], caplog: pytest.LogCaptureFixture
) -> None:
    kind, key, attr, _, _, absent, _ = case
    result = kind.from_json({**full_body(kind), key: None})
    assert read(result, attr) == absent
    assert caplog.records == []


@pytest.mark.parametrize("case", FIELDS, ids=field_id)
def test_a_wrong_typed_field_reads_as_absent_with_a_warning_that_hides_the_value(
    case: tuple[Any, ...], caplog: pytest.LogCaptureFixture
) -> None:
    kind, key, attr, _, _, absent, wrong = case
    caplog.set_level(logging.WARNING, logger="flask_retention.appstore.types")
    result = kind.from_json({**full_body(kind), key: wrong})
    assert read(result, attr) == absent
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert f"{kind.__name__}.{key}" in record.getMessage()
    assert "s3cret" not in record.getMessage()
    assert str(wrong) not in record.getMessage()


@pytest.mark.parametrize("kind", RESPONSE_TYPES, ids=lambda t: t.__name__)
def test_extra_fields_are_kept_in_raw(kind: Any) -> None:
    body = {**full_body(kind), "addedByApple": {"nested": [1, "two"]}}
    result = kind.from_json(body)
    assert result.raw == body
    assert result.raw["addedByApple"] == {"nested": [1, "two"]}
    assert result == kind.from_json(full_body(kind))
    assert "addedByApple" not in repr(result)
    assert "raw" not in repr(result)


@pytest.mark.parametrize("kind", RESPONSE_TYPES, ids=lambda t: t.__name__)
def test_raw_is_a_read_only_copy(kind: Any) -> None:
    body = full_body(kind)
    result = kind.from_json(body)
    body["later"] = 1
    assert "later" not in result.raw
    raw: Any = result.raw
    with pytest.raises(TypeError):
        raw["later"] = 1


def test_nested_responses_keep_their_own_raw() -> None:
    result = PerformanceTestResultResponse.from_json(
        {"config": {**CONFIG, "rampUp": 5}, "responseTimes": {"p50": 10, "p999": 900}}
    )
    assert result.config is not None
    assert result.config.raw["rampUp"] == 5
    assert result.response_times is not None
    assert result.response_times.raw == {"p50": 10, "p999": 900}


@pytest.mark.parametrize("kind", RESPONSE_TYPES, ids=lambda t: t.__name__)
def test_an_empty_object_parses_to_an_empty_response(
    kind: Any, caplog: pytest.LogCaptureFixture
) -> None:
    result = kind.from_json({})
    assert result == kind()
    assert caplog.records == []


@pytest.mark.parametrize("kind", RESPONSE_TYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("body", [[], "text", 5, None], ids=repr)
def test_a_body_that_is_not_an_object_raises_a_format_error(kind: Any, body: Any) -> None:
    with pytest.raises(ResponseFormatError, match="not a JSON object"):
        kind.from_json(body)


def test_times_without_average_keep_the_percentiles() -> None:
    times = PerformanceTestResponseTimes.from_json({"p50": 40, "p90": 80.5, "p99": 120})
    assert (times.average, times.p50, times.p90, times.p95, times.p99) == (
        None,
        40,
        80.5,
        None,
        120,
    )


def test_list_entries_that_are_not_objects_are_skipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = {"imageIdentifier": str(IMAGE), "imageState": "APPROVED"}
    response = GetImageListResponse.from_json({"imageIdentifiers": ["s3cret", good, None]})
    assert response.image_identifiers == (GetImageListResponseItem(IMAGE, ImageState.APPROVED),)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "GetImageListResponse.imageIdentifiers[0] is a string" in messages[0]
    assert "GetImageListResponse.imageIdentifiers[2] is null" in messages[1]


def test_list_items_without_identifier_or_state_are_kept() -> None:
    response = GetMessageListResponse.from_json(
        {"messageIdentifiers": [{"messageState": "PENDING"}, {"messageIdentifier": str(ICON)}]}
    )
    assert response.message_identifiers == (
        GetMessageListResponseItem(None, MessageState.PENDING),
        GetMessageListResponseItem(ICON, None),
    )


@pytest.mark.parametrize(
    ("value", "parsed"),
    [(95, 95), (95.0, 95), (97.5, None), (True, None), ("95", None)],
    ids=repr,
)
def test_whole_numbers_accept_integral_floats_only(value: object, parsed: int | None) -> None:
    assert PerformanceTestConfig.from_json({"successRateThreshold": value}) == (
        PerformanceTestConfig(success_rate_threshold=parsed)
    )


def test_times_refuse_true_false_as_a_number(caplog: pytest.LogCaptureFixture) -> None:
    assert PerformanceTestResponseTimes.from_json({"p50": True}).p50 is None
    assert "PerformanceTestResponseTimes.p50 is true/false, not a number" in caplog.text


def test_failure_counts_of_the_wrong_type_are_dropped_and_new_reasons_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    result = PerformanceTestResultResponse.from_json(
        {
            "failures": {
                "TIMED_OUT": 2,
                "DNS_ISSUE": 1,
                "OTHER": "s3cret",
                "NO_RESPONSE": None,
                "TLS_ISSUE": 3.0,
            }
        }
    )
    assert dict(result.failures) == {
        SendAttemptResult.TIMED_OUT: 2,
        "DNS_ISSUE": 1,
        SendAttemptResult.TLS_ISSUE: 3,
    }
    (record,) = caplog.records
    assert "PerformanceTestResultResponse.failures['OTHER'] is a string" in record.getMessage()
    assert "s3cret" not in record.getMessage()


def test_unknown_enum_values_are_kept_as_strings() -> None:
    item = GetImageListResponseItem.from_json(
        {"imageIdentifier": str(IMAGE), "imageState": "IN_REVIEW", "imageSize": "HUGE"}
    )
    assert item.image_state == "IN_REVIEW"
    assert not isinstance(item.image_state, ImageState)
    assert item.image_size == "HUGE"

    result = PerformanceTestResultResponse.from_json(
        {"result": "ABORTED", "failures": {"DNS_ISSUE": 3}}
    )
    assert result.result == "ABORTED"
    assert result.finished
    assert not result.passed
    assert dict(result.failures) == {"DNS_ISSUE": 3}


def test_pending_performance_result_without_optional_fields_parses() -> None:
    result = PerformanceTestResultResponse.from_json({"result": "PENDING", "numPending": 40})
    assert not result.finished
    assert not result.passed
    assert result.num_pending == 40
    assert result.response_times is None
    assert dict(result.failures) == {}


def test_a_result_without_a_result_is_not_finished() -> None:
    result = PerformanceTestResultResponse.from_json({"successRate": 100, "numPending": 0})
    assert not result.finished
    assert not result.passed


# -- requests ------------------------------------------------------------------


def full_message(**overrides: Any) -> UploadMessageRequestBody:
    fields: dict[str, Any] = {
        "header": "Header text",
        "body": "Body text",
        "image": UploadMessageImage(IMAGE, "Alt text"),
        "header_position": "ABOVE_IMAGE",
        "bullet_points": [BulletPoint("Bullet 1", str(ICON), "Bullet alt")],
    }
    fields.update(overrides)
    return UploadMessageRequestBody(**fields)


def test_upload_message_body_serialises_like_apples_example() -> None:
    assert full_message().to_json() == {
        "header": "Header text",
        "body": "Body text",
        "image": {"imageIdentifier": str(IMAGE), "altText": "Alt text"},
        "headerPosition": "ABOVE_IMAGE",
        "bulletPoints": [
            {"text": "Bullet 1", "imageIdentifier": str(ICON), "altText": "Bullet alt"}
        ],
    }


def test_plain_message_sends_only_header_and_body() -> None:
    assert UploadMessageRequestBody("Hi", "There").to_json() == {"header": "Hi", "body": "There"}


def test_limits_count_code_points_and_accept_the_maximum() -> None:
    body = UploadMessageRequestBody("é" * 66, "😀" * 144)
    assert len(body.header) == 66
    assert body.bullet_points == ()


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"header": "h" * 67}, "header is 67 characters long; Apple allows at most 66"),
        ({"body": "b" * 145}, "body is 145 characters long; Apple allows at most 144"),
        ({"header": "  "}, "header must not be empty"),
        ({"body": 5}, "body must be a string"),
        ({"image": None}, "ABOVE_IMAGE needs an image"),
        ({"header_position": "BELOW"}, "header_position must be one of ABOVE_BODY, ABOVE_IMAGE"),
        (
            {"bullet_points": [BulletPoint("b", ICON, "a")] * 6},
            "6 bullet points; Apple allows at most 5",
        ),
        ({"bullet_points": ["text"]}, "list of BulletPoint"),
        ({"image": {"imageIdentifier": str(IMAGE)}}, "must be an UploadMessageImage"),
    ],
)
def test_invalid_messages_are_refused_before_sending(
    overrides: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        full_message(**overrides)


@pytest.mark.parametrize(
    ("build", "complaint"),
    [
        (lambda: UploadMessageImage(IMAGE, "a" * 151), "image alt text is 151 characters"),
        (lambda: UploadMessageImage("not-a-uuid", "alt"), "image identifier must be a UUID"),
        (lambda: BulletPoint("t" * 67, ICON, "alt"), "bullet point text is 67 characters"),
        (lambda: BulletPoint("text", ICON, "a" * 151), "bullet point alt text is 151"),
        # An int where a UUID belongs, deliberately: checks that it is refused.
        (
            lambda: BulletPoint("text", 42, "alt"),  # type: ignore[arg-type]
            "bullet point image identifier must be a UUID",
        ),
        (lambda: DefaultConfigurationRequest("x"), "message identifier must be a UUID"),
        (lambda: PerformanceTestRequest("abc"), "numeric original transaction ID"),
        (lambda: PerformanceTestRequest(""), "numeric original transaction ID"),
    ],
)
def test_invalid_request_parts_are_refused(build: Any, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        build()


def test_header_position_accepts_the_enum_and_its_string() -> None:
    assert full_message(header_position=HeaderPosition.ABOVE_IMAGE) == full_message()
    plain = UploadMessageRequestBody("h", "b", header_position="ABOVE_BODY")
    assert plain.to_json()["headerPosition"] == "ABOVE_BODY"


def test_identifiers_accept_str_and_uuid_and_serialise_lowercase() -> None:
    upper = str(IMAGE).upper()
    assert DefaultConfigurationRequest(upper) == DefaultConfigurationRequest(IMAGE)
    assert DefaultConfigurationRequest(upper).to_json() == {"messageIdentifier": str(IMAGE)}


def test_performance_test_request_takes_a_numeric_id() -> None:
    assert PerformanceTestRequest(2000000123).to_json() == {"originalTransactionId": "2000000123"}


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/retention",
        "https://",
        "example.com/retention",
        "https://exa mple.com/",
        "https://example.com/" + "a" * 237,
        "ftp://example.com",
    ],
)
def test_realtime_url_must_be_https_and_short(url: str) -> None:
    with pytest.raises(ValueError, match="real-time URL"):
        RealtimeUrlRequest(url)


def test_realtime_url_of_256_characters_is_accepted() -> None:
    url = "https://example.com/" + "a" * 236
    assert len(url) == 256
    assert RealtimeUrlRequest(url).to_json() == {"realtimeURL": url}
