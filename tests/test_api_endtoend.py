"""The real client against the fake App Store, over real HTTP on loopback.

Waits are short but real: pacing and backoff are scaled down, the fake's
hooks inject 429s, 500s and dropped connections, and assertions look at the
requests the fake recorded.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask, jsonify

from flask_retention.api import (
    APIError,
    APINetworkError,
    AuthenticationError,
    BadRequestError,
    BulletPoint,
    ConflictError,
    DefaultConfigurationRequest,
    ForbiddenError,
    GetImageListResponseItem,
    GetMessageListResponseItem,
    ImageSize,
    ImageState,
    MessageState,
    NotFoundError,
    PerformanceTestRequest,
    PerformanceTestStatus,
    RateBudgetExhausted,
    RateLimitedError,
    RealtimeUrlRequest,
    RetentionAPIClient,
    ServerError,
    UnexpectedResponseError,
    UploadMessageImage,
    UploadMessageRequestBody,
    reset_rate_limits,
)
from flask_retention.appstore.pacing import default_limit
from flask_retention.catalogue.png import encode_png
from flask_retention.testing import AppStoreSigner, FakeAppStore, RecordedRequest, serve

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

FULL = encode_png(3840, 160)
BULLET = encode_png(1024, 1024)
PRODUCT = "com.example.retention.monthly"

#: Short waits for tests: pacing at 1/1000 of Apple's intervals, quick backoff.
FAST: dict[str, Any] = {
    "pacing": 0.001,
    "backoff_base": 0.01,
    "backoff_cap": 0.05,
    "retry_after_cap": 5.0,
    "max_retries": 3,
    "timeout": 10.0,
    "connect_timeout": 5.0,
}


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    reset_rate_limits()
    yield
    reset_rate_limits()


class Identity:
    """What a client needs to be accepted by the fake."""

    def __init__(
        self, key: ec.EllipticCurvePrivateKey, key_id: str, issuer_id: str, bundle_id: str
    ) -> None:
        self.key = key
        self.key_id = key_id
        self.issuer_id = issuer_id
        self.bundle_id = bundle_id

    def store(self, **options: Any) -> FakeAppStore:
        return FakeAppStore(
            public_key=self.key.public_key(),
            key_id=self.key_id,
            issuer_id=self.issuer_id,
            bundle_id=self.bundle_id,
            **{"product_ids": [PRODUCT], **options},
        )

    def client(self, base_url: str, **options: Any) -> RetentionAPIClient:
        settings: dict[str, Any] = {
            "issuer_id": self.issuer_id,
            "key_id": self.key_id,
            "private_key": self.key,
            "bundle_id": self.bundle_id,
            "environment": "Sandbox",
            "base_url": base_url,
            **FAST,
        }
        settings.update(options)
        return RetentionAPIClient(**settings)


@pytest.fixture
def identity(
    app_store_key: ec.EllipticCurvePrivateKey,
    app_store_key_id: str,
    app_store_issuer_id: str,
    app_store_bundle_id: str,
) -> Identity:
    return Identity(app_store_key, app_store_key_id, app_store_issuer_id, app_store_bundle_id)


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


@pytest.fixture
def make_api(
    identity: Identity, fake_app_store_url: str, stack: ExitStack
) -> Callable[..., RetentionAPIClient]:
    """Clients of the Sandbox ``fake_app_store``, closed after the test."""

    def make(**options: Any) -> RetentionAPIClient:
        return stack.enter_context(identity.client(fake_app_store_url, **options))

    return make


@pytest.fixture
def api(make_api: Callable[..., RetentionAPIClient]) -> RetentionAPIClient:
    return make_api()


@pytest.fixture
def served(
    identity: Identity, stack: ExitStack
) -> Callable[..., tuple[FakeAppStore, RetentionAPIClient]]:
    """Another fake (e.g. Production) on its own port, with a client of it."""

    def make(
        environment: str = "Sandbox", client: dict[str, Any] | None = None, **store: Any
    ) -> tuple[FakeAppStore, RetentionAPIClient]:
        fake = identity.store(environment=environment, **store)
        stack.callback(fake.close)
        url = stack.enter_context(serve(fake))
        options = {"environment": environment, **(client or {})}
        return fake, stack.enter_context(identity.client(url, **options))

    return make


def calls(fake: FakeAppStore, endpoint: str) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.endpoint == endpoint]


def statuses(records: Iterable[RecordedRequest]) -> list[int | None]:
    return [r.status for r in records]


def message(
    image: uuid.UUID | None = None, icon: uuid.UUID | None = None
) -> UploadMessageRequestBody:
    return UploadMessageRequestBody(
        "Before you go",
        "Your plan includes offline mode.",
        image=None if image is None else UploadMessageImage(image, "A family reading"),
        bullet_points=[] if icon is None else [BulletPoint("Offline mode", icon, "tick")],
        header_position=None if image is None else "ABOVE_IMAGE",
    )


# -- every endpoint round-trips ------------------------------------------------


def test_upload_image_and_get_image_list(
    api: RetentionAPIClient, fake_app_store: FakeAppStore
) -> None:
    full, icon = uuid.uuid4(), uuid.uuid4()
    api.upload_image(full, FULL)
    api.upload_image(str(icon).upper(), BULLET, ImageSize.BULLET_POINT)

    stored = fake_app_store.images
    assert (stored[str(full)].size, stored[str(full)].data) == ("FULL_SIZE", FULL)
    assert stored[str(icon)].size == "BULLET_POINT"
    uploads = calls(fake_app_store, "upload_image")
    assert [(r.method, r.content_type, r.query) for r in uploads] == [
        ("PUT", "image/png", ""),
        ("PUT", "image/png", "imageSize=BULLET_POINT"),
    ]
    assert uploads[1].path == f"/inApps/v1/messaging/image/{icon}"

    listed = set(api.get_image_list().image_identifiers)
    assert listed == {
        GetImageListResponseItem(full, ImageState.APPROVED, ImageSize.FULL_SIZE),
        GetImageListResponseItem(icon, ImageState.APPROVED, ImageSize.BULLET_POINT),
    }


def test_delete_image(api: RetentionAPIClient, fake_app_store: FakeAppStore) -> None:
    image = uuid.uuid4()
    api.upload_image(image, FULL)
    api.delete_image(str(image))
    assert fake_app_store.images == {}
    assert api.get_image_list().image_identifiers == ()


def test_upload_message_and_get_message_list(
    api: RetentionAPIClient, fake_app_store: FakeAppStore
) -> None:
    image, icon, text = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    api.upload_image(image, FULL)
    api.upload_image(icon, BULLET, "BULLET_POINT")
    body = message(image, icon)
    api.upload_message(text, body)

    assert fake_app_store.messages[str(text)].body == body.to_json()
    (upload,) = calls(fake_app_store, "upload_message")
    assert upload.content_type == "application/json"
    assert api.get_message_list().message_identifiers == (
        GetMessageListResponseItem(text, MessageState.APPROVED),
    )


def test_delete_message(api: RetentionAPIClient, fake_app_store: FakeAppStore) -> None:
    text = uuid.uuid4()
    api.upload_message(text, message())
    api.delete_message(text)
    assert fake_app_store.messages == {}
    assert api.get_message_list().message_identifiers == ()


def test_configure_get_and_delete_default_message(
    api: RetentionAPIClient, fake_app_store: FakeAppStore
) -> None:
    text = uuid.uuid4()
    api.upload_message(text, message())
    api.configure_default_message(PRODUCT, "en-US", DefaultConfigurationRequest(text))
    assert fake_app_store.defaults == {(PRODUCT, "en-US"): str(text)}
    assert api.get_default_message(PRODUCT, "en-US").message_identifier == text

    api.delete_default_message(PRODUCT, "en-US")
    assert fake_app_store.defaults == {}
    api.delete_default_message(PRODUCT, "en-US")  # Apple: idempotent
    with pytest.raises(NotFoundError) as caught:
        api.get_default_message(PRODUCT, "en-US")
    assert caught.value.error_name == "DefaultMessageNotFoundError"


def stored_realtime_url(store: FakeAppStore) -> str | None:
    """The fake's real-time URL, read afresh: mypy would keep an earlier check's narrowing
    of ``store.realtime_url`` across the calls that change it."""
    return store.realtime_url


def test_configure_get_and_delete_realtime_url(
    api: RetentionAPIClient, fake_app_store: FakeAppStore
) -> None:
    url = "https://retention.example.com/retention/realtime"
    api.configure_realtime_url(RealtimeUrlRequest(url))
    assert stored_realtime_url(fake_app_store) == url
    assert api.get_realtime_url().realtime_url == url

    api.delete_realtime_url()
    assert stored_realtime_url(fake_app_store) is None
    with pytest.raises(NotFoundError) as caught:
        api.get_realtime_url()
    assert caught.value.error_name == "RealtimeUrlNotFoundError"


@pytest.fixture
def realtime_target() -> Iterator[str]:
    """A minimal real-time endpoint on loopback that answers ``200 {}`` (no message)."""
    target = Flask("realtime_target")
    target.add_url_rule("/rt", "rt", lambda: jsonify({}), methods=["POST"])
    with serve(target) as url:
        yield f"{url}/rt"


def wait_for_result(api: RetentionAPIClient, request_id: uuid.UUID) -> Any:
    deadline = time.monotonic() + 30
    while True:
        result = api.get_performance_test_results(request_id)
        if result.finished or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def test_initiate_performance_test_and_get_results(
    api: RetentionAPIClient,
    fake_app_store: FakeAppStore,
    realtime_target: str,
    app_store_performance_test_config: dict[str, int],
) -> None:
    # Our client sends only https:// URLs; the fake's hook points it at the loopback target.
    fake_app_store.realtime_url = realtime_target
    started = api.initiate_performance_test(PerformanceTestRequest("2000000123"))
    assert started.config is not None
    assert started.request_id is not None
    assert started.config.total_requests == app_store_performance_test_config["totalRequests"]

    result = wait_for_result(api, started.request_id)
    assert result.result is PerformanceTestStatus.PASS
    assert result.passed
    assert result.target == realtime_target
    assert result.config == started.config
    assert result.success_rate == 100
    assert result.num_pending == 0
    assert result.response_times is not None
    assert dict(result.failures) == {}


# -- Apple's errors through the client -----------------------------------------


def bypass(obj: Any, **fields: Any) -> Any:
    """Change a checked request after the fact, to see what Apple itself answers."""
    for name, value in fields.items():
        object.__setattr__(obj, name, value)
    return obj


def too_long_header(api: RetentionAPIClient, fake: FakeAppStore) -> None:
    api.upload_message(uuid.uuid4(), bypass(message(), header="h" * 67))


def too_long_body(api: RetentionAPIClient, fake: FakeAppStore) -> None:
    api.upload_message(uuid.uuid4(), bypass(message(), body="b" * 145))


def too_long_alt_text(api: RetentionAPIClient, fake: FakeAppStore) -> None:
    image = uuid.uuid4()
    api.upload_image(image, FULL)
    picture = bypass(UploadMessageImage(image, "alt"), alt_text="a" * 151)
    api.upload_message(uuid.uuid4(), UploadMessageRequestBody("h", "b", image=picture))


def too_many_bullets(api: RetentionAPIClient, fake: FakeAppStore) -> None:
    icon = uuid.uuid4()
    api.upload_image(icon, BULLET, "BULLET_POINT")
    point = BulletPoint("text", icon, "alt")
    api.upload_message(uuid.uuid4(), bypass(message(), bullet_points=(point,) * 6))


def too_long_bullet_text(api: RetentionAPIClient, fake: FakeAppStore) -> None:
    icon = uuid.uuid4()
    api.upload_image(icon, BULLET, "BULLET_POINT")
    point = bypass(BulletPoint("text", icon, "alt"), text="t" * 67)
    api.upload_message(uuid.uuid4(), UploadMessageRequestBody("h", "b", bullet_points=[point]))


def above_image_without_image(api: RetentionAPIClient, fake: FakeAppStore) -> None:
    image = uuid.uuid4()
    api.upload_image(image, FULL)
    api.upload_message(uuid.uuid4(), bypass(message(image), image=None))


def transparent_image(api: RetentionAPIClient, fake: FakeAppStore) -> None:
    api.upload_image(uuid.uuid4(), encode_png(3840, 160, alpha=True))


def bullet_image_as_main_image(api: RetentionAPIClient, fake: FakeAppStore) -> None:
    icon = uuid.uuid4()
    api.upload_image(icon, BULLET, "BULLET_POINT")
    api.upload_message(uuid.uuid4(), message(image=icon))


def unknown_locale(api: RetentionAPIClient, fake: FakeAppStore) -> None:
    api.get_default_message(PRODUCT, "xx-XX")


def image_twice(api: RetentionAPIClient, fake: FakeAppStore) -> None:
    image = uuid.uuid4()
    api.upload_image(image, FULL)
    api.upload_image(image, FULL)


def message_twice(api: RetentionAPIClient, fake: FakeAppStore) -> None:
    text = uuid.uuid4()
    api.upload_message(text, message())
    api.upload_message(text, message())


def image_in_use(api: RetentionAPIClient, fake: FakeAppStore) -> None:
    image = uuid.uuid4()
    api.upload_image(image, FULL)
    api.upload_message(uuid.uuid4(), message(image))
    api.delete_image(image)


def unknown_image(api: RetentionAPIClient, fake: FakeAppStore) -> None:
    api.delete_image(uuid.uuid4())


def unknown_message(api: RetentionAPIClient, fake: FakeAppStore) -> None:
    api.delete_message(uuid.uuid4())


def default_of_unknown_message(api: RetentionAPIClient, fake: FakeAppStore) -> None:
    api.configure_default_message(PRODUCT, "en-US", DefaultConfigurationRequest(uuid.uuid4()))


def unknown_default(api: RetentionAPIClient, fake: FakeAppStore) -> None:
    api.get_default_message(PRODUCT, "en-US")


def unknown_realtime_url(api: RetentionAPIClient, fake: FakeAppStore) -> None:
    api.get_realtime_url()


def http_realtime_url(api: RetentionAPIClient, fake: FakeAppStore) -> None:
    api.configure_realtime_url(
        bypass(RealtimeUrlRequest("https://x.example"), realtime_url="http://x.example/rt")
    )


def unknown_performance_test(api: RetentionAPIClient, fake: FakeAppStore) -> None:
    api.get_performance_test_results(uuid.uuid4())


def performance_test_without_url(api: RetentionAPIClient, fake: FakeAppStore) -> None:
    api.initiate_performance_test(PerformanceTestRequest("2000000123"))


def non_numeric_transaction_id(api: RetentionAPIClient, fake: FakeAppStore) -> None:
    request = bypass(PerformanceTestRequest("1"), original_transaction_id="abc")
    api.initiate_performance_test(request)


SANDBOX_ERRORS = [
    (too_long_header, BadRequestError, "HeaderTooLongError", 4000162),
    (too_long_body, BadRequestError, "BodyTooLongError", 4000163),
    (too_long_alt_text, BadRequestError, "AltTextTooLongError", 4000175),
    (too_many_bullets, BadRequestError, "BadRequestTooManyBulletPointsError", 4000218),
    (too_long_bullet_text, BadRequestError, "BadRequestBulletPointTextTooLongError", 4000219),
    (
        above_image_without_image,
        BadRequestError,
        "BadRequestAboveImageRequiresAnImageError",
        4000224,
    ),
    (transparent_image, BadRequestError, "InvalidImageError", 4000161),
    (bullet_image_as_main_image, BadRequestError, "BadRequestImageSizeError", 4000216),
    (unknown_locale, BadRequestError, "InvalidLocaleError", 4000164),
    (http_realtime_url, BadRequestError, "BadRequestRealtimeUrlError", 4000215),
    (performance_test_without_url, BadRequestError, "InvalidPerformanceTestRequestError", 4000211),
    (non_numeric_transaction_id, BadRequestError, "BadRequestTransactionIdError", 4000006),
    (image_twice, ConflictError, "ImageAlreadyExistsError", 4090000),
    (message_twice, ConflictError, "MessageAlreadyExistsError", 4090001),
    (image_in_use, ForbiddenError, "ImageInUseError", 4030019),
    (unknown_image, NotFoundError, "ImageNotFoundError", 4040014),
    (unknown_message, NotFoundError, "MessageNotFoundError", 4040015),
    (default_of_unknown_message, NotFoundError, "MessageNotFoundError", 4040015),
    (unknown_default, NotFoundError, "DefaultMessageNotFoundError", 4040020),
    (unknown_realtime_url, NotFoundError, "RealtimeUrlNotFoundError", 4040021),
    (unknown_performance_test, NotFoundError, "PerformanceTestRunNotFoundError", 4040018),
]


@pytest.mark.parametrize(
    ("provoke", "cls", "name", "code"),
    SANDBOX_ERRORS,
    ids=[case[2] + "-" + case[0].__name__ for case in SANDBOX_ERRORS],
)
def test_apples_errors_map_to_exceptions(
    api: RetentionAPIClient,
    fake_app_store: FakeAppStore,
    provoke: Callable[[RetentionAPIClient, FakeAppStore], None],
    cls: type[APIError],
    name: str,
    code: int,
) -> None:
    with pytest.raises(APIError) as caught:
        provoke(api, fake_app_store)
    error = caught.value
    assert type(error) is cls
    assert (error.error_code, error.error_name) == (code, name)
    assert error.status == fake_app_store.requests[-1].status
    assert error.apple_message
    assert error.hint
    assert f"{name} ({code})" in str(error)


def test_not_approved_message_cannot_be_a_default_until_review_approves_it(
    served: Callable[..., tuple[FakeAppStore, RetentionAPIClient]],
) -> None:
    fake, api = served("Production")
    text = uuid.uuid4()
    api.upload_message(text, message())
    assert api.get_message_list().message_identifiers[0].message_state is MessageState.PENDING
    with pytest.raises(ForbiddenError) as caught:
        api.configure_default_message(PRODUCT, "en-US", DefaultConfigurationRequest(text))
    assert (caught.value.error_code, caught.value.error_name) == (
        4030017,
        "MessageNotApprovedError",
    )
    assert "App Store review" in str(caught.value)

    fake.approve(text)
    api.configure_default_message(PRODUCT, "en-US", DefaultConfigurationRequest(text))
    assert fake.defaults == {(PRODUCT, "en-US"): str(text)}


def test_message_with_unapproved_image_cannot_be_a_default(
    served: Callable[..., tuple[FakeAppStore, RetentionAPIClient]],
) -> None:
    fake, api = served("Production")
    image, text = uuid.uuid4(), uuid.uuid4()
    api.upload_image(image, FULL)
    fake.approve(image)
    api.upload_message(text, message(image))
    fake.approve(text)
    fake.reject(image)
    with pytest.raises(ForbiddenError) as caught:
        api.configure_default_message(PRODUCT, "en-US", DefaultConfigurationRequest(text))
    assert (caught.value.error_code, caught.value.error_name) == (4030018, "ImageNotApprovedError")


def test_production_realtime_url_needs_a_passed_test(
    served: Callable[..., tuple[FakeAppStore, RetentionAPIClient]],
) -> None:
    _fake, api = served("Production")
    with pytest.raises(ForbiddenError) as caught:
        api.configure_realtime_url(RealtimeUrlRequest("https://retention.example.com/rt"))
    assert (caught.value.error_code, caught.value.error_name) == (
        4030026,
        "ForbiddenNoPassingTestError",
    )
    assert "performance test" in str(caught.value)


def test_image_and_message_limits(
    served: Callable[..., tuple[FakeAppStore, RetentionAPIClient]],
) -> None:
    _fake, api = served(max_images=1, max_messages=1)
    api.upload_image(uuid.uuid4(), FULL)
    api.upload_message(uuid.uuid4(), message())
    with pytest.raises(ForbiddenError) as caught:
        api.upload_image(uuid.uuid4(), FULL)
    assert (caught.value.error_code, caught.value.error_name) == (
        4030014,
        "MaximumNumberOfImagesReachedError",
    )
    with pytest.raises(ForbiddenError) as caught:
        api.upload_message(uuid.uuid4(), message())
    assert (caught.value.error_code, caught.value.error_name) == (
        4030016,
        "MaximumNumberOfMessagesReachedError",
    )


def test_unknown_product_is_invalid(
    served: Callable[..., tuple[FakeAppStore, RetentionAPIClient]],
) -> None:
    _fake, api = served(product_ids=[PRODUCT])
    with pytest.raises(BadRequestError) as caught:
        api.delete_default_message("com.example.other", "en-US")
    assert (caught.value.error_code, caught.value.error_name) == (4000023, "InvalidProductIdError")


def test_second_performance_test_while_one_runs_is_refused(
    served: Callable[..., tuple[FakeAppStore, RetentionAPIClient]], realtime_target: str
) -> None:
    slow = {"maxConcurrentRequests": 1, "totalRequests": 50, "totalDuration": 20000}
    fake, api = served(
        signer=AppStoreSigner(), allow_http_targets=True, performance_test_config=slow
    )
    fake.realtime_url = realtime_target
    api.initiate_performance_test(PerformanceTestRequest("2000000123"))
    with pytest.raises(BadRequestError) as caught:
        api.initiate_performance_test(PerformanceTestRequest("2000000123"))
    assert (caught.value.error_code, caught.value.error_name) == (
        4000213,
        "ExistingPerformanceTestRunError",
    )


def test_wrong_key_is_an_authentication_error_with_what_to_check(
    identity: Identity, fake_app_store_url: str, stack: ExitStack
) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    api = stack.enter_context(identity.client(fake_app_store_url, private_key=other))
    with pytest.raises(AuthenticationError) as caught:
        api.get_image_list()
    error = caught.value
    assert (error.status, error.error_code, error.error_name) == (401, None, None)
    assert "In-App Purchase key" in str(error)
    assert "RETENTION_ISSUER_ID" in str(error)


def test_wrong_bundle_id_is_an_authentication_error(
    identity: Identity, fake_app_store_url: str, stack: ExitStack
) -> None:
    api = stack.enter_context(identity.client(fake_app_store_url, bundle_id="com.example.other"))
    with pytest.raises(AuthenticationError):
        api.get_message_list()


def test_account_without_access_gets_a_bare_404_with_a_hint(
    served: Callable[..., tuple[FakeAppStore, RetentionAPIClient]],
) -> None:
    _fake, api = served(has_access=False)
    with pytest.raises(NotFoundError) as caught:
        api.configure_realtime_url(RealtimeUrlRequest("https://retention.example.com/rt"))
    assert (caught.value.status, caught.value.error_code) == (404, None)
    assert "no access to the Retention Messaging API" in str(caught.value)


# -- retries -------------------------------------------------------------------


def test_429_waits_until_retry_after_and_succeeds(
    api: RetentionAPIClient, fake_app_store: FakeAppStore
) -> None:
    fake_app_store.throttle_next(1, retry_after_ms=300)
    assert api.get_image_list().image_identifiers == ()
    first, second = calls(fake_app_store, "get_image_list")
    assert (first.status, first.error_code, second.status) == (429, 4290000, 200)
    # Retry-After is a UNIX time in milliseconds; the retry came no earlier (clock granularity).
    assert second.time - first.time >= 0.3 - 0.02


def test_retry_after_beyond_the_cap_raises_at_once(
    make_api: Callable[..., RetentionAPIClient], fake_app_store: FakeAppStore
) -> None:
    api = make_api(retry_after_cap=0.5)
    fake_app_store.throttle_next(1, retry_after_ms=60_000)
    before = time.time()
    with pytest.raises(RateLimitedError) as caught:
        api.get_message_list()
    error = caught.value
    assert (error.status, error.error_code, error.error_name) == (
        429,
        4290000,
        "RateLimitExceededError",
    )
    assert error.retry_at is not None
    assert before + 59 <= error.retry_at.timestamp() <= time.time() + 61
    assert len(calls(fake_app_store, "get_message_list")) == 1


def test_429_retries_are_bounded(
    make_api: Callable[..., RetentionAPIClient], fake_app_store: FakeAppStore
) -> None:
    api = make_api(max_retries=2)
    fake_app_store.throttle_next(5, retry_after_ms=10)
    with pytest.raises(RateLimitedError):
        api.get_realtime_url()
    assert statuses(calls(fake_app_store, "get_realtime_url")) == [429, 429, 429]


def test_429_on_the_fakes_own_rate_limit_is_waited_out(
    served: Callable[..., tuple[FakeAppStore, RetentionAPIClient]],
) -> None:
    # The fake allows one call per second here; the client, unpaced, meets its 429.
    fake, api = served(rate_limits={"get_message_list": 1.0}, client={"pacing": 0.0})
    api.get_message_list()
    api.get_message_list()
    assert statuses(calls(fake, "get_message_list")) == [200, 429, 200]


def test_500_then_success_is_retried_on_get(
    api: RetentionAPIClient, fake_app_store: FakeAppStore
) -> None:
    fake_app_store.fail_next(2, status=500)
    api.get_message_list()
    assert statuses(calls(fake_app_store, "get_message_list")) == [500, 500, 200]


@pytest.mark.parametrize("status", [502, 503])
def test_other_5xx_are_retried_on_delete(
    api: RetentionAPIClient, fake_app_store: FakeAppStore, status: int
) -> None:
    fake_app_store.fail_next(1, status=status)
    api.delete_default_message(PRODUCT, "en-US")
    assert statuses(calls(fake_app_store, "delete_default_message")) == [status, 200]


def test_5xx_retries_are_bounded_and_raise_server_error(
    make_api: Callable[..., RetentionAPIClient], fake_app_store: FakeAppStore
) -> None:
    api = make_api(max_retries=1)
    fake_app_store.fail_next(3, status=500)
    with pytest.raises(ServerError) as caught:
        api.get_image_list()
    assert (caught.value.error_code, caught.value.error_name) == (5000000, "GeneralInternalError")
    assert len(calls(fake_app_store, "get_image_list")) == 2


def test_4xx_is_never_retried(api: RetentionAPIClient, fake_app_store: FakeAppStore) -> None:
    with pytest.raises(NotFoundError):
        api.delete_image(uuid.uuid4())
    assert len(calls(fake_app_store, "delete_image")) == 1


def test_performance_test_start_is_not_retried_after_a_500(
    api: RetentionAPIClient, fake_app_store: FakeAppStore
) -> None:
    fake_app_store.fail_next(1, status=500)
    with pytest.raises(ServerError):
        api.initiate_performance_test(PerformanceTestRequest("2000000123"))
    assert len(calls(fake_app_store, "initiate_performance_test")) == 1


def test_dropped_connection_on_get_is_retried(
    api: RetentionAPIClient, fake_app_store: FakeAppStore
) -> None:
    fake_app_store.drop_next(1)
    assert api.get_image_list().image_identifiers == ()
    assert statuses(calls(fake_app_store, "get_image_list")) == [None, 200]


def test_network_errors_that_persist_raise_api_network_error(
    make_api: Callable[..., RetentionAPIClient], fake_app_store: FakeAppStore
) -> None:
    api = make_api(max_retries=2)
    fake_app_store.drop_next(3)
    with pytest.raises(APINetworkError) as caught:
        api.get_message_list()
    assert caught.value.status is None
    assert "Get Message List failed" in str(caught.value)
    assert len(calls(fake_app_store, "get_message_list")) == 3


def test_connection_refused_is_a_network_error(identity: Identity, stack: ExitStack) -> None:
    with serve(Flask("closed")) as url:
        pass  # the port is closed again once the server has stopped
    api = stack.enter_context(identity.client(url, max_retries=1))
    with pytest.raises(APINetworkError, match="Get Realtime URL failed: Connect"):
        api.get_realtime_url()


def test_upload_image_dropped_after_processing_is_confirmed_by_the_list(
    api: RetentionAPIClient, fake_app_store: FakeAppStore
) -> None:
    image = uuid.uuid4()
    fake_app_store.drop_next(1, after_processing=True, endpoint="upload_image")
    api.upload_image(image, FULL)
    assert str(image) in fake_app_store.images
    assert [(r.endpoint, r.status) for r in fake_app_store.requests] == [
        ("upload_image", None),
        ("upload_image", 409),
        ("get_image_list", 200),
    ]


def test_upload_message_dropped_after_processing_is_confirmed_by_the_list(
    api: RetentionAPIClient, fake_app_store: FakeAppStore
) -> None:
    text = uuid.uuid4()
    fake_app_store.drop_next(1, after_processing=True, endpoint="upload_message")
    api.upload_message(text, message())
    assert [(r.endpoint, r.status) for r in fake_app_store.requests] == [
        ("upload_message", None),
        ("upload_message", 409),
        ("get_message_list", 200),
    ]


def test_retried_upload_meeting_409_not_in_the_list_raises_conflict(
    api: RetentionAPIClient, fake_app_store: FakeAppStore
) -> None:
    fake_app_store.fail_next(1, status=500, endpoint="upload_image")
    fake_app_store.fail_next(1, status=409, endpoint="upload_image")
    with pytest.raises(ConflictError):
        api.upload_image(uuid.uuid4(), FULL)
    assert [(r.endpoint, r.status) for r in fake_app_store.requests] == [
        ("upload_image", 500),
        ("upload_image", 409),
        ("get_image_list", 200),
    ]


def test_first_upload_meeting_409_raises_without_asking_the_list(
    api: RetentionAPIClient, fake_app_store: FakeAppStore
) -> None:
    image = uuid.uuid4()
    api.upload_image(image, FULL)
    with pytest.raises(ConflictError) as caught:
        api.upload_image(image, FULL)
    assert caught.value.error_name == "ImageAlreadyExistsError"
    assert calls(fake_app_store, "get_image_list") == []


# -- pacing and budgets --------------------------------------------------------


def test_a_burst_of_uploads_is_paced_at_the_configured_rate(
    make_api: Callable[..., RetentionAPIClient], fake_app_store: FakeAppStore
) -> None:
    # Apple's Sandbox Upload Image interval, scaled down to 0.05 s.
    api = make_api(pacing=0.05 / default_limit("upload_image", "Sandbox").interval)
    interval = api.limit("upload_image").interval
    assert interval == pytest.approx(0.05)
    before = time.monotonic()
    for _ in range(10):
        api.upload_image(uuid.uuid4(), FULL)
    arrivals = sorted(r.time for r in calls(fake_app_store, "upload_image"))
    assert len(arrivals) == 10
    # The k-th upload cannot start before `before + k * interval`, so nor can it arrive.
    for k, arrived in enumerate(arrivals):
        assert arrived >= before + k * interval - 1e-3


def test_pacing_is_shared_by_threads_and_clients_of_one_app(
    make_api: Callable[..., RetentionAPIClient], fake_app_store: FakeAppStore
) -> None:
    clients = [make_api(pacing=0.005), make_api(pacing=0.005)]
    interval = clients[0].limit("delete_default_message").interval
    before = time.monotonic()
    errors: list[BaseException] = []

    def work(client: RetentionAPIClient) -> None:
        try:
            for _ in range(4):
                client.delete_default_message(PRODUCT, "en-US")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    arrivals = sorted(r.time for r in calls(fake_app_store, "delete_default_message"))
    assert len(arrivals) == 16
    for k, arrived in enumerate(arrivals):
        assert arrived >= before + k * interval - 1e-3


def test_spent_budget_raises_before_sending(
    make_api: Callable[..., RetentionAPIClient], fake_app_store: FakeAppStore
) -> None:
    api = make_api(budgets={"get_image_list": 3}, budget_window=60.0)
    for _ in range(3):
        api.get_image_list()
    with pytest.raises(RateBudgetExhausted) as caught:
        api.get_image_list()
    assert caught.value.endpoint == "Get Image List"
    assert "budget of 3 calls per 60 s" in str(caught.value)
    assert caught.value.retry_at.timestamp() > time.time() + 50
    assert len(calls(fake_app_store, "get_image_list")) == 3
    api.get_message_list()  # other endpoints keep their own budget


def test_spent_budget_waits_when_allowed(
    make_api: Callable[..., RetentionAPIClient], fake_app_store: FakeAppStore
) -> None:
    api = make_api(budgets={"get_message_list": 2}, budget_window=0.3, budget_wait=2.0)
    before = time.monotonic()
    for _ in range(3):
        api.get_message_list()
    arrivals = sorted(r.time for r in calls(fake_app_store, "get_message_list"))
    assert len(arrivals) == 3
    assert arrivals[2] >= before + 0.3 - 1e-3


def test_budget_is_per_environment(
    identity: Identity, fake_app_store_url: str, stack: ExitStack
) -> None:
    sandbox = stack.enter_context(
        identity.client(fake_app_store_url, budgets={"get_realtime_url": 1})
    )
    production = stack.enter_context(
        identity.client(
            fake_app_store_url, environment="Production", budgets={"get_realtime_url": 1}
        )
    )
    for client in (sandbox, production):
        with pytest.raises(NotFoundError):
            client.get_realtime_url()
    for client in (sandbox, production):
        with pytest.raises(RateBudgetExhausted):
            client.get_realtime_url()


# -- tokens and secrets --------------------------------------------------------


class TokenRecorder:
    """WSGI middleware that keeps each request's bearer token, for the test to check."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self.tokens: list[str] = []

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        self.tokens.append(environ.get("HTTP_AUTHORIZATION", "").removeprefix("Bearer "))
        return self.app(environ, start_response)


def exercise(api: RetentionAPIClient, fake: FakeAppStore) -> list[BaseException]:
    """A bit of everything: uploads, lists, retries after 429/500/drops, and errors."""
    errors: list[BaseException] = []
    image, text = uuid.uuid4(), uuid.uuid4()
    api.upload_image(image, FULL)
    fake.throttle_next(1, retry_after_ms=20)
    api.upload_message(text, message(image))
    fake.fail_next(1)
    api.configure_default_message(PRODUCT, "en-US", DefaultConfigurationRequest(text))
    fake.drop_next(1)
    api.get_default_message(PRODUCT, "en-US")
    api.get_image_list()
    api.configure_realtime_url(RealtimeUrlRequest("https://retention.example.com/rt"))
    for bad in (
        lambda: api.delete_image(image),
        lambda: api.upload_message(text, message()),
        lambda: api.get_performance_test_results(uuid.uuid4()),
    ):
        try:
            bad()
        except APIError as e:
            errors.append(e)
    return errors


def test_every_request_carries_a_fresh_valid_token(
    identity: Identity, fake_app_store: FakeAppStore, stack: ExitStack
) -> None:
    recorder = TokenRecorder(fake_app_store)
    url = stack.enter_context(serve(recorder))
    api = stack.enter_context(identity.client(url))
    before = int(time.time())
    exercise(api, fake_app_store)
    after = int(time.time())

    recorded = fake_app_store.requests
    assert len(recorder.tokens) == len(recorded) >= 12
    assert len(set(recorder.tokens)) == len(recorder.tokens)  # a new token for every request
    # The fake verified every token it looked at (its injected 429/500/drops look at none).
    answered = [r for r in recorded if r.status not in (None, 429, 500)]
    assert len(answered) >= 9
    assert all(r.claims is not None for r in answered)
    for token in recorder.tokens:
        assert jwt.get_unverified_header(token) == {
            "alg": "ES256",
            "kid": identity.key_id,
            "typ": "JWT",
        }
        claims = jwt.decode(
            token,
            identity.key.public_key(),
            algorithms=["ES256"],
            audience="appstoreconnect-v1",
            issuer=identity.issuer_id,
        )
        assert claims["bid"] == identity.bundle_id
        assert before <= claims["iat"] <= after
        assert claims["exp"] == claims["iat"] + 300


def test_no_secret_in_logs_or_errors(
    identity: Identity,
    fake_app_store: FakeAppStore,
    stack: ExitStack,
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = TokenRecorder(fake_app_store)
    url = stack.enter_context(serve(recorder))
    api = stack.enter_context(identity.client(url))
    caplog.set_level(logging.DEBUG)
    errors = exercise(api, fake_app_store)
    wrong = stack.enter_context(
        identity.client(url, private_key=ec.generate_private_key(ec.SECP256R1()))
    )
    try:
        wrong.get_image_list()
    except AuthenticationError as e:
        errors.append(e)

    assert len(errors) == 4
    assert "retry 1 of 3" in caplog.text  # the retries were logged
    pem = identity.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    key_lines = [line for line in pem.splitlines() if "PRIVATE KEY" not in line]
    secret_number = str(identity.key.private_numbers().private_value)
    texts = [caplog.text, *(str(e) for e in errors), *(repr(e) for e in errors), repr(api)]
    for text in texts:
        for token in recorder.tokens:
            assert token not in text
            assert token.split(".")[2] not in text
        assert all(line not in text for line in key_lines)
        assert secret_number not in text
        assert "Bearer" not in text


def test_error_carries_no_request_details_beyond_the_endpoint(
    api: RetentionAPIClient, fake_app_store: FakeAppStore
) -> None:
    fake_app_store.fail_next(5, status=500)
    with pytest.raises(ServerError) as caught:
        api.delete_realtime_url()
    assert caught.value.endpoint == "Delete Realtime URL"
    assert str(caught.value).startswith(
        "Delete Realtime URL failed: HTTP 500 GeneralInternalError (5000000)"
    )


# -- answers the fake does not give --------------------------------------------


@pytest.fixture
def odd_server(identity: Identity, stack: ExitStack) -> tuple[dict[str, Any], RetentionAPIClient]:
    """A server whose answer each test chooses: (status, body, content type)."""
    answer: dict[str, Any] = {"status": 200, "body": "{}", "type": "application/json"}
    server = Flask("odd_server")

    @server.route("/inApps/v1/messaging/<path:rest>", methods=["GET", "PUT", "DELETE", "POST"])
    def anything(rest: str) -> Any:
        return server.response_class(
            answer["body"], status=answer["status"], content_type=answer["type"]
        )

    url = stack.enter_context(serve(server))
    return answer, stack.enter_context(identity.client(url, max_retries=0))


def test_error_body_is_parsed_whatever_its_content_type(
    odd_server: tuple[dict[str, Any], RetentionAPIClient],
) -> None:
    answer, api = odd_server
    answer.update(
        status=403, body='{"errorCode": 4030019, "errorMessage": "In use."}', type="text/plain"
    )
    with pytest.raises(ForbiddenError) as caught:
        api.delete_image(uuid.uuid4())
    assert (caught.value.error_code, caught.value.error_name) == (4030019, "ImageInUseError")
    assert caught.value.apple_message == "In use."


def test_html_error_page_is_tolerated(
    odd_server: tuple[dict[str, Any], RetentionAPIClient],
) -> None:
    answer, api = odd_server
    answer.update(status=502, body="<html><body>Bad Gateway</body></html>", type="text/html")
    with pytest.raises(ServerError) as caught:
        api.get_image_list()
    assert (caught.value.status, caught.value.error_code) == (502, None)
    assert "Bad Gateway" in str(caught.value)


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ("not json", "the body is not JSON"),
        ('["x"]', "GetImageListResponse is a list, not a JSON object"),
        ('"text"', "is a string, not a JSON object"),
    ],
)
def test_malformed_success_body_is_an_unexpected_response(
    odd_server: tuple[dict[str, Any], RetentionAPIClient], body: str, complaint: str
) -> None:
    answer, api = odd_server
    answer.update(body=body)
    with pytest.raises(UnexpectedResponseError, match=complaint) as caught:
        api.get_image_list()
    assert caught.value.status == 200
    assert str(caught.value).startswith("Get Image List failed: HTTP 200")


def test_new_fields_and_states_from_apple_are_accepted(
    odd_server: tuple[dict[str, Any], RetentionAPIClient],
) -> None:
    answer, api = odd_server
    image = uuid.uuid4()
    item = {
        "imageIdentifier": str(image),
        "imageState": "IN_REVIEW",
        "imageSize": "FULL_SIZE",
        "uploadedAt": 1767225600000,
    }
    answer.update(body=json.dumps({"imageIdentifiers": [item], "hasMore": False}))
    (parsed,) = api.get_image_list().image_identifiers
    assert (parsed.image_identifier, parsed.image_state, parsed.image_size) == (
        image,
        "IN_REVIEW",
        ImageSize.FULL_SIZE,
    )
