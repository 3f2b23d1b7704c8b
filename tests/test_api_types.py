"""Request types check Apple's limits; response types parse Apple's fixtures leniently."""

from __future__ import annotations

import json
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
    HeaderPosition,
    ImageSize,
    ImageState,
    MessageState,
    PerformanceTestConfig,
    PerformanceTestRequest,
    PerformanceTestResponse,
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


# -- lenient parsing -----------------------------------------------------------


def test_unknown_fields_are_ignored() -> None:
    data = fixture("getImageListResponse.json")
    data["nextPage"] = "abc"
    data["imageIdentifiers"][0]["uploadedBy"] = "someone"
    response = GetImageListResponse.from_json(data)
    assert len(response.image_identifiers) == 1


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
    assert dict(result.failures) == {"DNS_ISSUE": 3}


def test_absent_lists_are_empty() -> None:
    assert GetImageListResponse.from_json({}).image_identifiers == ()
    assert GetMessageListResponse.from_json({"messageIdentifiers": None}).message_identifiers == ()


def test_absent_image_size_means_full_size() -> None:
    item = GetImageListResponseItem.from_json(
        {"imageIdentifier": str(IMAGE), "imageState": "PENDING"}
    )
    assert item.image_size is ImageSize.FULL_SIZE


def test_pending_performance_result_without_optional_fields_parses() -> None:
    result = PerformanceTestResultResponse.from_json({"result": "PENDING", "numPending": 40})
    assert not result.finished
    assert not result.passed
    assert result.num_pending == 40
    assert result.response_times is None
    assert dict(result.failures) == {}


@pytest.mark.parametrize(
    ("parse", "data", "complaint"),
    [
        (GetImageListResponse.from_json, [], "not a JSON object"),
        (GetImageListResponse.from_json, {"imageIdentifiers": {}}, "not a list"),
        (
            GetImageListResponse.from_json,
            {"imageIdentifiers": [{"imageState": "APPROVED"}]},
            "lacks",
        ),
        (DefaultConfigurationResponse.from_json, {"messageIdentifier": "nope"}, "not a UUID"),
        (RealtimeUrlResponse.from_json, {"realtimeURL": 5}, "not a string"),
        (PerformanceTestResponse.from_json, {"requestId": str(IMAGE)}, "lacks 'config'"),
        (PerformanceTestResultResponse.from_json, {"successRate": "98"}, "not a number"),
    ],
)
def test_malformed_responses_raise_a_format_error(parse: Any, data: Any, complaint: str) -> None:
    with pytest.raises(ResponseFormatError, match=complaint):
        parse(data)


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
