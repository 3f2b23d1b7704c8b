"""The fake App Store answers like Apple's management API, over real HTTP on loopback."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from flask_retention.testing import FakeAppStore, FakeAppStorePair, apple_rate_limits, serve
from flask_retention.testing.fake_app_store import ENDPOINTS

from .fake_store_support import (
    BASE,
    BULLET,
    BUNDLE,
    FULL,
    ISSUER,
    KEY_ID,
    Api,
    error_code,
    make_token,
    png,
)

#: The products the app of these tests sells.
PRODUCTS = ["com.example.monthly", "com.example.yearly"]


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def options() -> dict[str, Any]:
    """Extra ``FakeAppStore`` arguments; tests override it with ``parametrize`` or a marker."""
    return {}


@pytest.fixture
def store(key: ec.EllipticCurvePrivateKey, options: dict[str, Any]) -> Iterator[FakeAppStore]:
    fake = FakeAppStore(
        public_key=key.public_key(),
        key_id=KEY_ID,
        issuer_id=ISSUER,
        bundle_id=BUNDLE,
        **{"product_ids": PRODUCTS, **options},
    )
    yield fake
    fake.close()


@pytest.fixture
def api(store: FakeAppStore, key: ec.EllipticCurvePrivateKey) -> Iterator[Api]:
    with serve(store) as url:
        client = Api(url, key)
        yield client
        client.http.close()


production = pytest.mark.parametrize("options", [{"environment": "Production"}])


# ---------------------------------------------------------------- authentication


def test_valid_token_is_accepted_and_its_claims_recorded(api: Api, store: FakeAppStore) -> None:
    response = api("GET", "/image/list")
    assert response.status_code == 200
    [recorded] = store.requests
    assert (recorded.method, recorded.path, recorded.status) == ("GET", f"{BASE}/image/list", 200)
    assert recorded.endpoint == "get_image_list"
    assert recorded.claims is not None
    assert recorded.claims["bid"] == BUNDLE
    assert "Bearer" not in repr(recorded)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"exp": lambda iat: iat - 10}, id="expired"),
        pytest.param({"aud": "appstoreconnect-v2"}, id="wrong-aud"),
        pytest.param({"kid": None}, id="missing-kid"),
        pytest.param({"kid": "OTHERKEYID"}, id="wrong-kid"),
        pytest.param({"iss": str(uuid.uuid4())}, id="wrong-issuer"),
        pytest.param({"bid": "com.example.other"}, id="wrong-bundle"),
        pytest.param({"bid": None}, id="missing-bundle"),
        pytest.param({"exp": None}, id="missing-exp"),
        pytest.param({"exp": lambda iat: iat + 3700}, id="longer-than-an-hour"),
    ],
)
def test_bad_token_is_refused_with_an_untyped_401(
    api: Api, store: FakeAppStore, key: ec.EllipticCurvePrivateKey, overrides: dict[str, Any]
) -> None:
    token = make_token(key, **overrides)
    response = api.http.get("/image/list", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.content == b""
    assert store.requests[-1].claims is None


def test_token_signed_by_another_key_is_refused(api: Api) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    token = make_token(other)
    response = api.http.get("/image/list", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_token_with_another_algorithm_is_refused(api: Api) -> None:
    now = int(time.time())
    claims = {"iss": ISSUER, "iat": now, "exp": now + 60, "aud": "appstoreconnect-v1"}
    token = jwt.encode(
        {**claims, "bid": BUNDLE}, "a shared secret of 32 bytes length!", headers={"kid": KEY_ID}
    )
    response = api.http.get("/image/list", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_request_without_a_token_is_refused(api: Api) -> None:
    assert api.http.get("/message/list").status_code == 401


def test_token_without_iat_is_accepted_like_apple(
    api: Api, key: ec.EllipticCurvePrivateKey
) -> None:
    token = make_token(key, iat=None)
    response = api.http.get("/image/list", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_account_without_access_gets_bare_404s(api: Api, store: FakeAppStore) -> None:
    store.has_access = False
    response = api("GET", "/realtime/url")
    assert (response.status_code, response.content) == (404, b"")
    assert api.http.get("/realtime/url").status_code == 401


def test_unknown_path_and_method_get_bare_statuses(api: Api) -> None:
    assert api("GET", "/nothing/here").status_code == 404
    assert api("POST", "/image/list").status_code == 405


# ---------------------------------------------------------------- images


def test_uploaded_images_are_listed_with_size_and_state(api: Api, store: FakeAppStore) -> None:
    full = api.upload_image()
    bullet = api.upload_image("BULLET_POINT")
    response = api("GET", "/image/list")
    assert response.json() == {
        "imageIdentifiers": [
            {"imageIdentifier": full, "imageState": "APPROVED", "imageSize": "FULL_SIZE"},
            {"imageIdentifier": bullet, "imageState": "APPROVED", "imageSize": "BULLET_POINT"},
        ]
    }
    assert store.images[full].data == FULL
    assert store.images[bullet].size == "BULLET_POINT"


def test_image_identifiers_are_stored_in_lowercase(api: Api, store: FakeAppStore) -> None:
    identifier = uuid.uuid4()
    response = api(
        "PUT",
        f"/image/{str(identifier).upper()}",
        content=FULL,
        headers={"Content-Type": "image/png"},
    )
    assert response.status_code == 200
    assert list(store.images) == [str(identifier)]


def test_image_upload_without_size_is_full_size(api: Api, store: FakeAppStore) -> None:
    identifier = str(uuid.uuid4())
    response = api(
        "PUT",
        f"/image/{identifier}",
        content=png(3840, 2160),
        headers={"Content-Type": "image/png"},
    )
    assert response.status_code == 200
    assert store.images[identifier].size == "FULL_SIZE"


def test_reused_image_identifier_is_a_conflict(api: Api) -> None:
    identifier = api.upload_image()
    response = api(
        "PUT", f"/image/{identifier}", content=FULL, headers={"Content-Type": "image/png"}
    )
    assert response.status_code == 409
    assert error_code(response) == 4090000


@pytest.mark.parametrize(
    ("size", "data"),
    [
        pytest.param("FULL_SIZE", b"GIF89a not a png", id="not-png"),
        pytest.param("FULL_SIZE", FULL[:20], id="truncated"),
        pytest.param("FULL_SIZE", png(3840, 159), id="too-short"),
        pytest.param("FULL_SIZE", png(3840, 2161), id="too-tall"),
        pytest.param("FULL_SIZE", png(3839, 160), id="too-narrow"),
        pytest.param("FULL_SIZE", png(3840, 160, 6), id="alpha-channel"),
        pytest.param("FULL_SIZE", png(3840, 160, transparency=True), id="trns-chunk"),
        pytest.param("BULLET_POINT", png(1024, 1023), id="bullet-not-square"),
        pytest.param("BULLET_POINT", FULL, id="full-size-as-bullet"),
        pytest.param("FULL_SIZE", BULLET, id="bullet-as-full-size"),
    ],
)
def test_invalid_image_is_refused(api: Api, store: FakeAppStore, size: str, data: bytes) -> None:
    response = api(
        "PUT",
        f"/image/{uuid.uuid4()}",
        params={"imageSize": size},
        content=data,
        headers={"Content-Type": "image/png"},
    )
    assert response.status_code == 400
    assert error_code(response) == 4000161
    assert store.images == {}


def test_image_sent_as_another_content_type_is_refused(api: Api) -> None:
    response = api(
        "PUT",
        f"/image/{uuid.uuid4()}",
        content=FULL,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert error_code(response) == 4000161


def test_unknown_image_size_is_refused(api: Api) -> None:
    response = api(
        "PUT",
        f"/image/{uuid.uuid4()}",
        params={"imageSize": "HUGE"},
        content=FULL,
        headers={"Content-Type": "image/png"},
    )
    assert (response.status_code, error_code(response)) == (400, 4000216)


@pytest.mark.parametrize("options", [{"max_images": 1}])
def test_image_limit_is_forbidden(api: Api) -> None:
    api.upload_image()
    response = api(
        "PUT", f"/image/{uuid.uuid4()}", content=FULL, headers={"Content-Type": "image/png"}
    )
    assert (response.status_code, error_code(response)) == (403, 4030014)


def test_deleted_image_is_gone(api: Api, store: FakeAppStore) -> None:
    identifier = api.upload_image()
    assert api("DELETE", f"/image/{identifier}").status_code == 200
    assert api("GET", "/image/list").json() == {"imageIdentifiers": []}
    assert store.images == {}


def test_deleting_an_unknown_image_is_not_found(api: Api) -> None:
    response = api("DELETE", f"/image/{uuid.uuid4()}")
    assert (response.status_code, error_code(response)) == (404, 4040014)


def test_malformed_identifier_is_a_bad_request(api: Api) -> None:
    assert api("DELETE", "/image/not-a-uuid").status_code == 400
    assert api("DELETE", "/message/not-a-uuid").status_code == 400


@pytest.mark.parametrize("where", ["image", "bullet"])
def test_image_used_by_a_message_cannot_be_deleted(api: Api, where: str) -> None:
    if where == "image":
        image = api.upload_image()
        message = api.upload_message(image={"imageIdentifier": image, "altText": "A"})
    else:
        image = api.upload_image("BULLET_POINT")
        bullet = {"text": "T", "imageIdentifier": image, "altText": "A"}
        message = api.upload_message(bulletPoints=[bullet])
    response = api("DELETE", f"/image/{image}")
    assert (response.status_code, error_code(response)) == (403, 4030019)
    assert api("DELETE", f"/message/{message}").status_code == 200
    assert api("DELETE", f"/image/{image}").status_code == 200


# ---------------------------------------------------------------- messages


def test_uploaded_messages_are_listed_with_state(api: Api, store: FakeAppStore) -> None:
    image = api.upload_image()
    bullet_image = api.upload_image("BULLET_POINT")
    body = {
        "header": "h" * 66,
        "body": "b" * 144,
        "image": {"imageIdentifier": image, "altText": "a" * 150},
        "headerPosition": "ABOVE_IMAGE",
        "bulletPoints": [{"text": "t" * 66, "imageIdentifier": bullet_image, "altText": "alt"}] * 5,
    }
    identifier = str(uuid.uuid4())
    assert api("PUT", f"/message/{identifier}", json=body).status_code == 200
    assert api("GET", "/message/list").json() == {
        "messageIdentifiers": [{"messageIdentifier": identifier, "messageState": "APPROVED"}]
    }
    assert store.messages[identifier].body == body


def test_reused_message_identifier_is_a_conflict(api: Api) -> None:
    identifier = api.upload_message()
    response = api("PUT", f"/message/{identifier}", json={"header": "H", "body": "B"})
    assert (response.status_code, error_code(response)) == (409, 4090001)


@pytest.mark.parametrize("options", [{"max_messages": 2}])
def test_message_limit_is_forbidden(api: Api) -> None:
    api.upload_message()
    api.upload_message()
    response = api("PUT", f"/message/{uuid.uuid4()}", json={"header": "H", "body": "B"})
    assert (response.status_code, error_code(response)) == (403, 4030016)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        pytest.param({"header": "h" * 67}, 4000162, id="header"),
        pytest.param({"body": "b" * 145}, 4000163, id="body"),
        pytest.param({"image": {"altText": "a" * 151}}, 4000175, id="image-alt-text"),
        pytest.param({"bullet": {"altText": "a" * 151}}, 4000175, id="bullet-alt-text"),
        pytest.param({"bullet": {"text": "t" * 67}}, 4000219, id="bullet-text"),
        pytest.param({"bullets": 6}, 4000218, id="too-many-bullets"),
        pytest.param({"headerPosition": "ABOVE_IMAGE", "image": None}, 4000224, id="above-image"),
        pytest.param({"image": {"imageIdentifier": "bullet"}}, 4000216, id="bullet-as-image"),
        pytest.param({"bullet": {"imageIdentifier": "full"}}, 4000216, id="full-as-bullet"),
        pytest.param({"image": {"imageIdentifier": "unknown"}}, 4000161, id="unknown-image"),
        pytest.param({"header": None}, 4000000, id="missing-header"),
        pytest.param({"bullet": {"imageIdentifier": None}}, 4000000, id="bullet-without-image"),
        pytest.param({"headerPosition": "BELOW"}, 4000000, id="bad-header-position"),
    ],
)
def test_invalid_message_is_refused(
    api: Api, store: FakeAppStore, change: dict[str, Any], code: int
) -> None:
    images = {
        "full": api.upload_image(),
        "bullet": api.upload_image("BULLET_POINT"),
        "unknown": str(uuid.uuid4()),
    }
    image: dict[str, Any] | None = {"imageIdentifier": images["full"], "altText": "A"}
    bullet = {"text": "T", "imageIdentifier": images["bullet"], "altText": "A"}
    body: dict[str, Any] = {"header": "H", "body": "B"}
    for name, value in change.items():
        if name == "image" and value is not None:
            assert image is not None
            image.update(value)
        elif name == "image":
            image = None
        elif name == "bullet":
            bullet.update(value)
        elif name != "bullets":
            body[name] = value
    if image is not None:
        image["imageIdentifier"] = images.get(image["imageIdentifier"], image["imageIdentifier"])
        body["image"] = image
    bullet["imageIdentifier"] = images.get(bullet["imageIdentifier"], bullet["imageIdentifier"])
    body["bulletPoints"] = [bullet] * change.get("bullets", 1)
    body = {name: value for name, value in body.items() if value is not None}
    response = api("PUT", f"/message/{uuid.uuid4()}", json=body)
    assert (response.status_code, error_code(response)) == (400, code)
    assert store.messages == {}


def test_message_body_that_is_not_json_is_a_bad_request(api: Api) -> None:
    response = api("PUT", f"/message/{uuid.uuid4()}", content=b"header=H")
    assert (response.status_code, error_code(response)) == (400, 4000000)


def test_deleted_message_is_gone_with_its_defaults(api: Api, store: FakeAppStore) -> None:
    identifier = api.upload_message()
    api("PUT", "/default/com.example.monthly/en-US", json={"messageIdentifier": identifier})
    assert api("DELETE", f"/message/{identifier}").status_code == 200
    assert api("GET", "/message/list").json() == {"messageIdentifiers": []}
    assert store.defaults == {}


def test_deleting_an_unknown_message_is_not_found(api: Api) -> None:
    response = api("DELETE", f"/message/{uuid.uuid4()}")
    assert (response.status_code, error_code(response)) == (404, 4040015)


# ---------------------------------------------------------------- review


def test_sandbox_approves_uploads_at_once(api: Api, store: FakeAppStore) -> None:
    image = api.upload_image()
    message = api.upload_message()
    assert store.images[image].state == "APPROVED"
    assert store.messages[message].state == "APPROVED"


@production
def test_production_reviews_until_approved_or_rejected(api: Api, store: FakeAppStore) -> None:
    image = api.upload_image()
    message = api.upload_message(image={"imageIdentifier": image, "altText": "A"})
    other = api.upload_message()
    assert api("GET", "/message/list").json()["messageIdentifiers"][0]["messageState"] == "PENDING"
    assert api("GET", "/image/list").json()["imageIdentifiers"][0]["imageState"] == "PENDING"
    store.approve(uuid.UUID(message))
    store.reject(other)
    states = {
        m["messageIdentifier"]: m["messageState"]
        for m in api("GET", "/message/list").json()["messageIdentifiers"]
    }
    assert states == {message: "APPROVED", other: "REJECTED"}
    assert store.images[image].state == "PENDING"


@pytest.mark.parametrize("options", [{"auto_approve": False}])
def test_sandbox_review_can_be_turned_on(api: Api, store: FakeAppStore) -> None:
    message = api.upload_message()
    assert store.messages[message].state == "PENDING"


def test_approving_an_unknown_identifier_says_so(store: FakeAppStore) -> None:
    with pytest.raises(KeyError, match="no image or message"):
        store.approve(uuid.uuid4())


# ---------------------------------------------------------------- default messages


def test_default_message_round_trip(api: Api, store: FakeAppStore) -> None:
    image = api.upload_image()
    message = api.upload_message(image={"imageIdentifier": image, "altText": "A"})
    path = "/default/com.example.monthly/de-DE"
    assert api("PUT", path, json={"messageIdentifier": message}).status_code == 200
    assert api("GET", path).json() == {"messageIdentifier": message}
    assert store.defaults == {("com.example.monthly", "de-DE"): message}
    assert api("DELETE", path).status_code == 200
    response = api("GET", path)
    assert (response.status_code, error_code(response)) == (404, 4040020)
    assert api("DELETE", path).status_code == 200


def test_configuring_a_default_again_replaces_it(api: Api) -> None:
    first, second = api.upload_message(), api.upload_message()
    path = "/default/com.example.monthly/en-US"
    api("PUT", path, json={"messageIdentifier": first})
    assert api("PUT", path, json={"messageIdentifier": second}).status_code == 200
    assert api("GET", path).json() == {"messageIdentifier": second}


def test_default_of_an_unknown_message_is_not_found(api: Api) -> None:
    response = api(
        "PUT", "/default/com.example.monthly/en-US", json={"messageIdentifier": str(uuid.uuid4())}
    )
    assert (response.status_code, error_code(response)) == (404, 4040015)


@pytest.mark.parametrize("method", ["PUT", "GET", "DELETE"])
def test_default_with_an_invalid_locale_is_refused(api: Api, method: str) -> None:
    message = api.upload_message()
    response = api(
        method, "/default/com.example.monthly/en-us", json={"messageIdentifier": message}
    )
    assert (response.status_code, error_code(response)) == (400, 4000164)


@pytest.mark.parametrize("options", [{"product_ids": ["com.example.monthly"]}])
def test_default_for_an_unknown_product_is_refused(api: Api) -> None:
    message = api.upload_message()
    response = api("PUT", "/default/com.example.yearly/en-US", json={"messageIdentifier": message})
    assert (response.status_code, error_code(response)) == (400, 4000023)


@pytest.mark.parametrize("method", ["PUT", "GET", "DELETE"])
def test_default_for_a_product_the_app_does_not_sell_is_refused(api: Api, method: str) -> None:
    message = api.upload_message()
    path = "/default/com.example.lifetime/en-US"
    response = api(method, path, json={"messageIdentifier": message})
    assert (response.status_code, error_code(response)) == (400, 4000023)


def test_product_ids_function_is_read_at_each_request(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    sold: set[str] = set()
    fake = FakeAppStore(
        public_key=key.public_key(),
        key_id=KEY_ID,
        issuer_id=ISSUER,
        bundle_id=BUNDLE,
        product_ids=lambda: sold,
    )
    with serve(fake) as url:
        api = Api(url, key)
        message = api.upload_message()
        path = "/default/com.example.monthly/en-US"
        before = api("PUT", path, json={"messageIdentifier": message})
        sold.add("com.example.monthly")
        after = api("PUT", path, json={"messageIdentifier": message})
        api.http.close()
    assert (before.status_code, error_code(before)) == (400, 4000023)
    assert after.status_code == 200
    assert fake.current_product_ids() == {"com.example.monthly"}


def test_product_ids_are_required(key: ec.EllipticCurvePrivateKey) -> None:
    options: dict[str, Any] = {}  # what a host's older construction passed
    with pytest.raises(TypeError, match="product_ids"):
        FakeAppStore(
            public_key=key.public_key(),
            key_id=KEY_ID,
            issuer_id=ISSUER,
            bundle_id=BUNDLE,
            **options,
        )


@pytest.mark.parametrize("products", ["com.example.monthly", 42, None])
def test_product_ids_must_be_a_collection_or_a_function(
    key: ec.EllipticCurvePrivateKey, products: Any
) -> None:
    with pytest.raises(ValueError, match="product_ids must be a collection of product IDs"):
        FakeAppStore(
            public_key=key.public_key(),
            key_id=KEY_ID,
            issuer_id=ISSUER,
            bundle_id=BUNDLE,
            product_ids=products,
        )


def test_fixture_store_knows_the_fixture_products(
    fake_app_store: FakeAppStore, app_store_product_ids: list[str]
) -> None:
    assert fake_app_store.current_product_ids() == set(app_store_product_ids)
    assert "com.example.retention.monthly" in app_store_product_ids


def test_default_without_a_message_identifier_is_a_bad_request(api: Api) -> None:
    response = api("PUT", "/default/com.example.monthly/en-US", json={})
    assert (response.status_code, error_code(response)) == (400, 4000000)


@production
def test_default_needs_an_approved_message_and_image(api: Api, store: FakeAppStore) -> None:
    image = api.upload_image()
    bullet = api.upload_image("BULLET_POINT")
    message = api.upload_message(
        image={"imageIdentifier": image, "altText": "A"},
        bulletPoints=[{"text": "T", "imageIdentifier": bullet, "altText": "A"}],
    )
    path = "/default/com.example.monthly/en-US"
    body = {"messageIdentifier": message}
    response = api("PUT", path, json=body)
    assert (response.status_code, error_code(response)) == (403, 4030017)
    store.approve(message)
    response = api("PUT", path, json=body)
    assert (response.status_code, error_code(response)) == (403, 4030018)
    store.approve(image)
    response = api("PUT", path, json=body)
    assert (response.status_code, error_code(response)) == (403, 4030018)
    store.approve(bullet)
    assert api("PUT", path, json=body).status_code == 200


# ---------------------------------------------------------------- realtime URL


def test_realtime_url_round_trip(api: Api, store: FakeAppStore) -> None:
    response = api("GET", "/realtime/url")
    assert (response.status_code, error_code(response)) == (404, 4040021)
    url = "https://example.com/" + "x" * (256 - len("https://example.com/"))
    assert api("PUT", "/realtime/url", json={"realtimeURL": url}).status_code == 200
    assert api("GET", "/realtime/url").json() == {"realtimeURL": url}
    assert store.realtime_url == url
    assert api("DELETE", "/realtime/url").status_code == 200
    assert api("GET", "/realtime/url").status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/retention",
        "http://127.0.0.1:8000/retention",
        "https://example.com/" + "x" * 237,
        "https://",
        "ftp://example.com",
        "https://example.com:port/",
    ],
)
def test_invalid_realtime_url_is_refused(api: Api, store: FakeAppStore, url: str) -> None:
    response = api("PUT", "/realtime/url", json={"realtimeURL": url})
    assert (response.status_code, error_code(response)) == (400, 4000215)
    assert store.realtime_url is None


@pytest.mark.parametrize("options", [{"allow_http_targets": True}])
@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:5000/rt", "http://localhost:5000/rt", "http://[::1]:5000/rt"]
)
def test_loopback_http_url_is_allowed_when_asked(api: Api, store: FakeAppStore, url: str) -> None:
    assert api("PUT", "/realtime/url", json={"realtimeURL": url}).is_success
    assert store.realtime_url == url
    for other in ("http://example.com/rt", "http://127.0.0.2/rt", "http://localhost.example/rt"):
        response = api("PUT", "/realtime/url", json={"realtimeURL": other})
        assert (response.status_code, error_code(response)) == (400, 4000215)


@production
def test_production_url_needs_a_passing_performance_test(api: Api, store: FakeAppStore) -> None:
    body = {"realtimeURL": "https://example.com/retention"}
    response = api("PUT", "/realtime/url", json=body)
    assert (response.status_code, error_code(response)) == (403, 4030026)
    store.passed_performance_test = True
    assert api("PUT", "/realtime/url", json=body).status_code == 200


# ---------------------------------------------------------------- rate limits and failures


@pytest.mark.parametrize("options", [{"rate_limits": {"get_image_list": 4}}])
def test_rate_limit_answers_429_with_retry_after_in_milliseconds(api: Api) -> None:
    before_ms = time.time() * 1000
    statuses = [api("GET", "/image/list") for _ in range(5)]
    after_ms = time.time() * 1000
    assert [r.status_code for r in statuses[:4]] == [200] * 4
    limited = statuses[4]
    assert (limited.status_code, error_code(limited)) == (429, 4290000)
    retry_at = int(limited.headers["Retry-After"])
    assert before_ms + 990 <= retry_at <= after_ms + 1010
    assert api("GET", "/message/list").status_code == 200
    time.sleep(max(0.0, retry_at / 1000 - time.time()) + 0.01)
    assert api("GET", "/image/list").status_code == 200


def test_rate_limits_name_real_endpoints(key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(ValueError, match="get_image_list"):
        FakeAppStore(
            public_key=key.public_key(),
            key_id=KEY_ID,
            issuer_id=ISSUER,
            bundle_id=BUNDLE,
            product_ids=PRODUCTS,
            rate_limits={"Get Image List": 1},
        )


def test_throttle_next_answers_429_then_recovers(api: Api, store: FakeAppStore) -> None:
    store.throttle_next(2, retry_after_ms=1500)
    for _ in range(2):
        before = int(time.time() * 1000)
        response = api("PUT", "/realtime/url", json={"realtimeURL": "https://example.com/rt"})
        assert (response.status_code, error_code(response)) == (429, 4290000)
        assert before + 1500 <= int(response.headers["Retry-After"]) <= time.time() * 1000 + 1500
    assert store.realtime_url is None
    assert api("GET", "/image/list").status_code == 200


def test_fail_next_injects_apple_internal_errors(api: Api, store: FakeAppStore) -> None:
    store.fail_next(2)
    store.fail_next(status=503)
    for _ in range(2):
        response = api("GET", "/image/list")
        assert (response.status_code, error_code(response)) == (500, 5000000)
    assert api("GET", "/image/list").status_code == 503
    assert api("GET", "/image/list").status_code == 200


def test_hooks_can_target_one_endpoint(api: Api, store: FakeAppStore) -> None:
    store.fail_next(endpoint="upload_message")
    store.throttle_next(endpoint="get_message_list", retry_after_ms=0)
    store.drop_next(endpoint="delete_image")
    assert api("GET", "/image/list").status_code == 200
    image = api.upload_image()
    response = api("PUT", f"/message/{uuid.uuid4()}", json={"header": "H", "body": "B"})
    assert (response.status_code, error_code(response)) == (500, 5000000)
    assert api("GET", "/message/list").status_code == 429
    with pytest.raises(httpx.TransportError):
        api("DELETE", f"/image/{image}")
    assert api("DELETE", f"/image/{image}").status_code == 200
    assert [(r.endpoint, r.status) for r in store.requests[2:]] == [
        ("upload_message", 500),
        ("get_message_list", 429),
        ("delete_image", None),
        ("delete_image", 200),
    ]


def test_hooks_name_real_endpoints(store: FakeAppStore) -> None:
    with pytest.raises(ValueError, match="unknown endpoint 'Upload Image'"):
        store.fail_next(endpoint="Upload Image")


def test_drop_next_closes_the_connection_without_a_response(api: Api, store: FakeAppStore) -> None:
    store.drop_next()
    with pytest.raises(httpx.TransportError):
        api("GET", "/image/list")
    assert api("GET", "/image/list").status_code == 200
    assert [r.status for r in store.requests] == [None, 200]


def test_dropped_upload_is_not_stored(api: Api, store: FakeAppStore) -> None:
    store.drop_next()
    with pytest.raises(httpx.TransportError):
        api("PUT", f"/image/{uuid.uuid4()}", content=FULL, headers={"Content-Type": "image/png"})
    assert store.images == {}


def test_drop_after_processing_keeps_the_upload(api: Api, store: FakeAppStore) -> None:
    store.drop_next(after_processing=True)
    identifier = str(uuid.uuid4())
    with pytest.raises(httpx.TransportError):
        api("PUT", f"/message/{identifier}", json={"header": "H", "body": "B"})
    assert identifier in store.messages
    response = api("PUT", f"/message/{identifier}", json={"header": "H", "body": "B"})
    assert (response.status_code, error_code(response)) == (409, 4090001)
    assert store.requests[0].status is None
    assert store.requests[0].endpoint == "upload_message"


# ---------------------------------------------------------------- fixtures


def test_fixtures_serve_a_fake_that_trusts_the_fixture_key(
    fake_app_store: FakeAppStore,
    fake_app_store_url: str,
    app_store_key: ec.EllipticCurvePrivateKey,
    app_store_key_id: str,
    app_store_issuer_id: str,
    app_store_bundle_id: str,
) -> None:
    token = make_token(
        app_store_key, kid=app_store_key_id, iss=app_store_issuer_id, bid=app_store_bundle_id
    )
    response = httpx.get(
        f"{fake_app_store_url}{BASE}/message/list", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.json() == {"messageIdentifiers": []}
    assert fake_app_store.environment == "Sandbox"
    assert fake_app_store.requests[0].claims is not None


def test_serve_shuts_the_server_down_on_exit(store: FakeAppStore) -> None:
    with serve(store) as url:
        assert httpx.get(f"{url}{BASE}/image/list").status_code == 401
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}{BASE}/image/list")


# ---------------------------------------------------------------- construction


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"environment": "sandbox"}, "'Sandbox' or 'Production'"),
        ({"performance_test_config": {"totalRequest": 5}}, "unknown performance_test_config"),
        ({"performance_test_config": {"totalRequests": 0}}, "at least 1"),
        ({"performance_test_config": {"totalDuration": -1}}, "int >= 0"),
        ({"rate_limits": {"get_image_list": 0}}, "positive"),
    ],
)
def test_bad_options_are_refused_with_a_hint(
    key: ec.EllipticCurvePrivateKey, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        FakeAppStore(
            public_key=key.public_key(),
            key_id=KEY_ID,
            issuer_id=ISSUER,
            bundle_id=BUNDLE,
            product_ids=PRODUCTS,
            **options,
        )


def test_public_key_must_be_p256() -> None:
    other_curve = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(ValueError, match="P-256"):
        FakeAppStore(
            public_key=other_curve,
            key_id=KEY_ID,
            issuer_id=ISSUER,
            bundle_id=BUNDLE,
            product_ids=PRODUCTS,
        )


def test_apple_rate_limits_follow_apples_table() -> None:
    production = apple_rate_limits()
    assert set(production) == set(ENDPOINTS)
    assert production["configure_default_message"] == 10
    assert production["upload_image"] == 1
    sandbox = apple_rate_limits("Sandbox", speedup=20)
    assert sandbox["upload_image"] == pytest.approx(2)
    assert sandbox["configure_default_message"] == pytest.approx(20)


@pytest.mark.parametrize("options", [{"rate_limits": {"upload_message": 0.5}}])
def test_slow_rate_counts_over_a_longer_window(api: Api) -> None:
    before_ms = time.time() * 1000
    api.upload_message()
    response = api("PUT", f"/message/{uuid.uuid4()}", json={"header": "H", "body": "B"})
    assert response.status_code == 429
    after_ms = time.time() * 1000
    assert before_ms + 1990 <= int(response.headers["Retry-After"]) <= after_ms + 2010


def test_tokens_never_reach_logs_or_records(
    api: Api, store: FakeAppStore, key: ec.EllipticCurvePrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good, bad = make_token(key), make_token(key, aud="elsewhere")
    for token in (good, bad):
        api.http.get("/image/list", headers={"Authorization": f"Bearer {token}"})
    assert "GET /inApps/v1/messaging/image/list" in caplog.text
    for token in (good, bad):
        assert token not in caplog.text
        assert token.split(".")[2] not in repr(store.requests)


# ---------------------------------------------------------------- both environments


@pytest.fixture
def pair(key: ec.EllipticCurvePrivateKey) -> Iterator[FakeAppStorePair]:
    fakes = FakeAppStorePair(
        public_key=key.public_key(),
        key_id=KEY_ID,
        issuer_id=ISSUER,
        bundle_id=BUNDLE,
        product_ids=PRODUCTS,
        production={"auto_approve": True},
    )
    yield fakes
    fakes.close()


def test_pair_serves_each_environment_under_its_prefix(
    pair: FakeAppStorePair, key: ec.EllipticCurvePrivateKey
) -> None:
    with serve(pair) as url:
        urls = pair.base_urls(url)
        assert urls == {"Sandbox": f"{url}/sandbox", "Production": f"{url}/production"}
        sandbox, production = Api(urls["Sandbox"], key), Api(urls["Production"], key)
        in_sandbox = sandbox.upload_message()
        assert sandbox("GET", "/message/list").json()["messageIdentifiers"] == [
            {"messageIdentifier": in_sandbox, "messageState": "APPROVED"}
        ]
        assert production("GET", "/message/list").json() == {"messageIdentifiers": []}
        outside = Api(url, key)("GET", "/message/list")
        for client in (sandbox, production):
            client.http.close()
    assert outside.status_code == 404
    assert [r.path for r in pair.sandbox.requests] == [
        f"{BASE}/message/{in_sandbox}",
        f"{BASE}/message/list",
    ]
    assert (pair.store("Sandbox"), pair.store("Production")) == (pair.sandbox, pair.production)
    assert pair.production.environment == "Production"
    assert pair.production.auto_approve  # the production= keywords reach only Production
    assert not pair.sandbox.allow_http_targets


@pytest.mark.parametrize(
    "options",
    [
        {"environment": "Sandbox"},
        {"production": {"sandbox": None}},
        {"sandbox": {"environment": "Production"}},
    ],
)
def test_pair_sets_the_environments_itself(
    key: ec.EllipticCurvePrivateKey, options: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="sets environment and sandbox itself"):
        FakeAppStorePair(
            public_key=key.public_key(),
            key_id=KEY_ID,
            issuer_id=ISSUER,
            bundle_id=BUNDLE,
            product_ids=PRODUCTS,
            **options,
        )


def test_only_a_production_fake_links_to_a_sandbox_fake(
    key: ec.EllipticCurvePrivateKey, store: FakeAppStore
) -> None:
    identity: dict[str, Any] = {
        "public_key": key.public_key(),
        "key_id": KEY_ID,
        "issuer_id": ISSUER,
        "bundle_id": BUNDLE,
        "product_ids": PRODUCTS,
    }
    with pytest.raises(ValueError, match="FakeAppStorePair"):
        FakeAppStore(environment="Sandbox", sandbox=store, **identity)
    production = FakeAppStore(environment="Production", **identity)
    with pytest.raises(ValueError, match="FakeAppStorePair"):
        FakeAppStore(environment="Production", sandbox=production, **identity)
