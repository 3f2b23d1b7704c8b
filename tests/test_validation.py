"""Apple's rules, checked before anything reaches Apple: images, messages, defaults, documents."""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import replace
from functools import cache
from typing import Any

import pytest

from flask_retention import RetentionError
from flask_retention.catalogue.entries import (
    BulletPointEntry,
    CatalogueDocument,
    DefaultEntry,
    ImageEntry,
    MessageEntry,
)
from flask_retention.catalogue.png import encode_png
from flask_retention.catalogue.validation import (
    ALT_TEXT_MAX_LENGTH,
    BODY_MAX_LENGTH,
    BULLET_TEXT_MAX_LENGTH,
    HEADER_MAX_LENGTH,
    KNOWN_LOCALES,
    MAX_BULLET_POINTS,
    MAX_IMAGES,
    MAX_MESSAGES,
    CatalogueError,
    check_document,
    check_image,
    locale_warning,
    validate_default,
    validate_message,
)


@cache
def png(width: int, height: int, *, alpha: bool = False, trns: bool = False) -> bytes:
    return encode_png(width, height, alpha=alpha, trns=trns)


def errors_of(excinfo: pytest.ExceptionInfo[CatalogueError]) -> list[str]:
    return excinfo.value.errors


# --------------------------------------------------------------------------- constants


def test_apple_limits() -> None:
    assert (HEADER_MAX_LENGTH, BODY_MAX_LENGTH, ALT_TEXT_MAX_LENGTH) == (66, 144, 150)
    assert (BULLET_TEXT_MAX_LENGTH, MAX_BULLET_POINTS) == (66, 5)
    assert (MAX_IMAGES, MAX_MESSAGES) == (2000, 2000)


def test_known_locales_hold_the_common_store_codes() -> None:
    assert {"en-US", "en-GB", "de-DE", "fr-FR", "ja-JP", "zh-Hans", "zh-Hant", "pt-BR"} <= (
        KNOWN_LOCALES
    )
    assert all(" " not in code and "_" not in code for code in KNOWN_LOCALES)


# --------------------------------------------------------------------------- errors


def test_catalogue_error_is_a_value_error_listing_every_problem() -> None:
    err = CatalogueError(["messages[0] (a).header: too long", "defaults[1].locale: bad"])
    assert isinstance(err, ValueError)
    assert isinstance(err, RetentionError)
    assert err.errors == ["messages[0] (a).header: too long", "defaults[1].locale: bad"]
    assert str(err) == (
        "2 problems in the catalogue:\n"
        "  - messages[0] (a).header: too long\n"
        "  - defaults[1].locale: bad"
    )


def test_catalogue_error_with_one_problem_and_a_source() -> None:
    err = CatalogueError("images[0] (hero).file: missing", source="catalogue.toml")
    assert err.errors == ["images[0] (hero).file: missing"]
    assert str(err) == "catalogue.toml: images[0] (hero).file: missing"


def test_catalogue_error_survives_pickling() -> None:
    err = pickle.loads(pickle.dumps(CatalogueError(["a: x", "b: y"], source="c.toml")))  # noqa: S301 (our own bytes)
    assert isinstance(err, CatalogueError)
    assert (err.errors, err.source) == (["a: x", "b: y"], "c.toml")
    assert str(err).startswith("c.toml: 2 problems")


# --------------------------------------------------------------------------- images


@pytest.mark.parametrize(
    ("width", "height", "size"),
    [
        (3840, 160, "FULL_SIZE"),
        (3840, 2160, "FULL_SIZE"),
        (3840, 1000, "FULL_SIZE"),
        (1024, 1024, "BULLET_POINT"),
    ],
)
def test_check_image_accepts_apple_sizes_given_or_inferred(
    width: int, height: int, size: Any
) -> None:
    data = png(width, height)
    for given in (size, None):
        entry = check_image(data, given, name="hero", source="images/hero.png")
        assert entry == ImageEntry(
            name="hero",
            size=size,
            data=data,
            width=width,
            height=height,
            sha256=hashlib.sha256(data).hexdigest(),
            source="images/hero.png",
        )


IMAGE_RULES = [
    (png(3840, 400, alpha=True), "FULL_SIZE", "has an alpha channel (PNG colour type 6, RGBA)"),
    (png(1024, 1024, alpha=True), None, "has an alpha channel"),
    (png(3840, 400, trns=True), "FULL_SIZE", "has a tRNS chunk"),
    (png(1024, 1024, trns=True), "BULLET_POINT", "has a tRNS chunk"),
    (png(3839, 400), "FULL_SIZE", "3839x400 px: a FULL_SIZE image must be exactly 3840 px wide"),
    (png(3840, 159), "FULL_SIZE", "3840x159 px: a FULL_SIZE image must be 160–2160 px high"),
    (png(3840, 2161), "FULL_SIZE", "3840x2161 px: a FULL_SIZE image must be 160–2160 px high"),
    (png(1024, 1023), "BULLET_POINT", "1024x1023 px: a BULLET_POINT image must be 1024x1024 px"),
    (png(1024, 1024), "FULL_SIZE", "1024x1024 px: a FULL_SIZE image must be exactly 3840 px"),
    (png(3840, 400), "BULLET_POINT", "3840x400 px: a BULLET_POINT image must be 1024x1024"),
    (png(3839, 400), None, "3839x400 px fits neither of Apple's image sizes: FULL_SIZE is 3840"),
    (png(1024, 1023), None, "fits neither of Apple's image sizes"),
    (png(3840, 2161), None, "BULLET_POINT is 1024x1024 px"),
    (b"\xff\xd8\xff\xe0 a jpeg", None, "not a PNG file"),
    (b"", "FULL_SIZE", "not a PNG file: it is empty; Apple accepts PNG images only"),
    (png(1024, 1024)[:100], None, "truncated PNG file"),
    (png(1024, 1024)[:-1] + b"\x00", None, "CRC mismatch"),
    (png(1024, 1024), "HUGE", "size must be FULL_SIZE or BULLET_POINT, not 'HUGE'"),
]


@pytest.mark.parametrize(("data", "size", "message"), IMAGE_RULES, ids=[r[2] for r in IMAGE_RULES])
def test_check_image_refuses_each_rule_naming_the_file(
    data: bytes, size: Any, message: str
) -> None:
    with pytest.raises(CatalogueError) as excinfo:
        check_image(data, size, name="hero", source="art/hero.png")
    assert any(e.startswith("art/hero.png: ") and message in e for e in errors_of(excinfo)), (
        errors_of(excinfo)
    )


def test_check_image_reports_transparency_and_size_together() -> None:
    with pytest.raises(CatalogueError) as excinfo:
        check_image(png(1024, 1023, alpha=True), "BULLET_POINT", name="tick")
    assert errors_of(excinfo) == [
        "tick: has an alpha channel (PNG colour type 6, RGBA); "
        "Apple refuses transparency: export it without alpha",
        "tick: 1024x1023 px: a BULLET_POINT image must be 1024x1024 px",
    ]


def test_check_image_names_the_image_without_a_source() -> None:
    with pytest.raises(CatalogueError, match=r"^hero: .*alpha"):
        check_image(png(3840, 400, alpha=True), name="hero")


@pytest.mark.parametrize("name", ["", "   ", " hero", "a\nb"])
def test_check_image_refuses_bad_names(name: str) -> None:
    with pytest.raises(CatalogueError, match="name"):
        check_image(png(1024, 1024), name=name)


# --------------------------------------------------------------------------- messages


def full_message(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "winback",
        "header": "Before you go",
        "body": "Your plan includes offline mode and family sharing.",
        "image": "hero",
        "image_alt_text": "A family reading on a sofa",
        "header_position": "ABOVE_IMAGE",
        "bullet_points": [{"text": "Offline mode", "image": "tick", "alt_text": "tick"}],
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not ...}


def test_validate_message_builds_the_entry() -> None:
    assert validate_message(full_message()) == MessageEntry(
        name="winback",
        header="Before you go",
        body="Your plan includes offline mode and family sharing.",
        image="hero",
        image_alt_text="A family reading on a sofa",
        header_position="ABOVE_IMAGE",
        bullet_points=(BulletPointEntry(text="Offline mode", image="tick", alt_text="tick"),),
    )


def test_validate_message_with_only_the_required_fields() -> None:
    assert validate_message({"name": "m", "header": "h", "body": "b"}) == MessageEntry(
        name="m", header="h", body="b"
    )


def test_validate_message_accepts_nulls_for_optional_fields() -> None:
    entry = validate_message(
        {"name": "m", "header": "h", "body": "b", "image": None, "bullet_points": None}
    )
    assert entry == MessageEntry(name="m", header="h", body="b")


def bullets(count: int, **changes: str) -> list[dict[str, str]]:
    bullet = {"text": "Offline mode", "image": "tick", "alt_text": "tick"} | changes
    return [dict(bullet) for _ in range(count)]


def test_validate_message_accepts_everything_at_apple_limits() -> None:
    entry = validate_message(
        full_message(
            header="h" * 66,
            body="b" * 144,
            image_alt_text="a" * 150,
            bullet_points=bullets(5, text="t" * 66, alt_text="a" * 150),
        )
    )
    assert len(entry.bullet_points) == MAX_BULLET_POINTS


def test_lengths_count_code_points_not_bytes_or_utf16_units() -> None:
    emoji = "\N{GRINNING FACE}"  # 4 bytes in UTF-8, 2 units in UTF-16
    validate_message(full_message(header=emoji * 66, body="é" * 144))
    with pytest.raises(CatalogueError, match="67 characters, Apple's limit is 66"):
        validate_message(full_message(header=emoji * 67))


MESSAGE_RULES = [
    ({"header": "h" * 70}, "header: 70 characters, Apple's limit is 66"),
    ({"body": "b" * 145}, "body: 145 characters, Apple's limit is 144"),
    ({"image_alt_text": "a" * 151}, "image_alt_text: 151 characters, Apple's limit is 150"),
    (
        {"bullet_points": bullets(1, text="t" * 67)},
        "bullet_points[0].text: 67 characters, Apple's limit is 66",
    ),
    (
        {"bullet_points": bullets(2, alt_text="a" * 151)},
        "bullet_points[1].alt_text: 151 characters, Apple's limit is 150",
    ),
    ({"bullet_points": bullets(6)}, "bullet_points: 6 bullet points, Apple's limit is 5"),
    ({"image": ..., "image_alt_text": ...}, "header_position: ABOVE_IMAGE needs an image"),
    ({"image_alt_text": ...}, "image_alt_text: missing: Apple requires alt text"),
    ({"image": ..., "header_position": ...}, "image_alt_text: given without an image"),
    ({"header_position": "BELOW"}, "header_position: must be ABOVE_BODY or ABOVE_IMAGE"),
    ({"name": ""}, "name: must not be empty"),
    ({"name": "  "}, "name: must not be empty"),
    ({"header": ""}, "header: must not be empty"),
    ({"body": " \n "}, "body: must not be empty"),
    ({"image": ""}, "image: must not be empty"),
    ({"header": ...}, "header: missing (it is required)"),
    ({"name": ...}, "name: missing (it is required)"),
    ({"header": 12}, "header: must be a string"),
    ({"body": None}, "body: must not be null"),
    ({"bullet_points": "tick"}, "bullet_points: must be a list of bullet points"),
    ({"bullet_points": ["tick"]}, "bullet_points[0]: must be a table (object)"),
    ({"bullet_points": [{"text": "t", "image": "tick"}]}, "bullet_points[0].alt_text: missing"),
    (
        {"bullet_points": bullets(1, colour="red")},
        "bullet_points[0].colour: unknown field; the fields are: text, image, alt_text",
    ),
    ({"colour": "red"}, "colour: unknown field; the fields are: name, header, body, image"),
    ({"body": "\ud800"}, "body: contains '\\ud800', which is not valid UTF-8"),
]


@pytest.mark.parametrize(("changes", "message"), MESSAGE_RULES, ids=[r[1] for r in MESSAGE_RULES])
def test_validate_message_refuses_each_rule(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(CatalogueError) as excinfo:
        validate_message(full_message(**changes), where="messages[2] (winback)")
    expected = f"messages[2] (winback).{message}"
    assert any(e.startswith(expected) for e in errors_of(excinfo)), errors_of(excinfo)


def test_validate_message_error_reads_like_the_documentation() -> None:
    with pytest.raises(CatalogueError) as excinfo:
        validate_message(full_message(header="h" * 70), where="messages[2] (winback)")
    assert errors_of(excinfo) == [
        "messages[2] (winback).header: 70 characters, Apple's limit is 66"
    ]


def test_validate_message_collects_every_problem_once() -> None:
    data = full_message(
        header="h" * 70,
        body="",
        image_alt_text="a" * 151,
        bullet_points=bullets(6, text="t" * 67),
        colour="red",
    )
    with pytest.raises(CatalogueError) as excinfo:
        validate_message(data)
    errors = errors_of(excinfo)
    assert sorted(errors) == sorted(
        [
            "message.header: 70 characters, Apple's limit is 66",
            "message.body: must not be empty",
            "message.image_alt_text: 151 characters, Apple's limit is 150",
            *(
                f"message.bullet_points[{i}].text: 67 characters, Apple's limit is 66"
                for i in range(6)
            ),
            "message.bullet_points: 6 bullet points, Apple's limit is 5",
            "message.colour: unknown field; the fields are: name, header, body, image, "
            "image_alt_text, header_position, bullet_points, translations",
        ]
    )


def test_validate_message_refuses_a_non_mapping() -> None:
    with pytest.raises(
        CatalogueError, match=r"^m: must be a table \(object\) of fields, not a list"
    ):
        validate_message(["winback"], where="m")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- defaults


def default(**changes: Any) -> dict[str, Any]:
    return {"product_id": "com.example.monthly", "locale": "en-US", "message": "winback"} | changes


@pytest.mark.parametrize("locale", ["en-US", "zh-Hans", "zh-Hant", "es-419", "no", "zh-Hant-HK"])
def test_validate_default_accepts_well_formed_locales(locale: str) -> None:
    assert validate_default(default(locale=locale)) == DefaultEntry(
        product_id="com.example.monthly", locale=locale, message="winback"
    )


DEFAULT_RULES = [
    ({"product_id": ""}, "product_id: must not be empty"),
    ({"product_id": "com.example monthly"}, "product_id: 'com.example monthly' is not a product"),
    ({"product_id": "com/example"}, "product_id: 'com/example' is not a product ID"),
    ({"locale": ""}, "locale: must not be empty; use an App Store locale short code such as en-US"),
    (
        {"locale": "en_US"},
        "locale: 'en_US' uses an underscore; App Store locale short codes use hyphens: write en-US",
    ),
    ({"locale": "en US"}, "locale: 'en US' contains spaces"),
    ({"locale": " en-US"}, "locale: ' en-US' contains spaces"),
    (
        {"locale": "en-us"},
        "locale: 'en-us' has the wrong case; locale short codes are case-sensitive: write en-US",
    ),
    (
        {"locale": "zh-hans"},
        "locale: 'zh-hans' has the wrong case; locale short codes are case-sensitive: "
        "write zh-Hans",
    ),
    ({"locale": "english"}, "locale: 'english' is not a locale short code; they look like en-US"),
    ({"locale": "en-"}, "locale: 'en-' is not a locale short code"),
    ({"locale": 7}, "locale: must be a string"),
    ({"message": ""}, "message: must not be empty"),
    ({"message": ...}, "message: missing (it is required)"),
    (
        {"environment": "Sandbox"},
        "environment: unknown field; the fields are: product_id, locale, message",
    ),
]


@pytest.mark.parametrize(("changes", "message"), DEFAULT_RULES, ids=[r[1] for r in DEFAULT_RULES])
def test_validate_default_refuses_each_rule(changes: dict[str, Any], message: str) -> None:
    data = {k: v for k, v in default(**changes).items() if v is not ...}
    with pytest.raises(CatalogueError) as excinfo:
        validate_default(data, where="defaults[3]")
    expected = f"defaults[3].{message}"
    assert any(e.startswith(expected) for e in errors_of(excinfo)), errors_of(excinfo)


@pytest.mark.parametrize("locale", ["en-US", "zh-Hans", "pt-BR", "ja"])
def test_known_locales_have_no_warning(locale: str) -> None:
    assert locale_warning(locale) is None


@pytest.mark.parametrize("locale", ["en-ZZ", "es-419", "tlh"])
def test_unknown_well_formed_locale_is_a_warning_not_an_error(locale: str) -> None:
    assert validate_default(default(locale=locale)).locale == locale
    warning = locale_warning(locale)
    assert warning is not None
    assert repr(locale) in warning
    assert "InvalidLocaleError" in warning


@pytest.mark.parametrize("locale", ["en_US", "", "en us"])
def test_malformed_locale_is_an_error_not_a_warning(locale: str) -> None:
    assert locale_warning(locale) is None
    with pytest.raises(CatalogueError):
        validate_default(default(locale=locale))


# --------------------------------------------------------------------------- documents


@cache
def image(name: str, size: Any = "FULL_SIZE") -> ImageEntry:
    data = png(3840, 400) if size == "FULL_SIZE" else png(1024, 1024)
    return check_image(data, size, name=name)


def document(**changes: Any) -> CatalogueDocument:
    doc = CatalogueDocument(
        images=(image("hero"), image("tick", "BULLET_POINT")),
        messages=(validate_message(full_message()),),
        defaults=(validate_default(default()),),
    )
    return replace(doc, **changes)


def test_check_document_accepts_a_consistent_catalogue() -> None:
    doc = document()
    assert check_document(doc) == doc


def test_check_document_fills_locale_warnings() -> None:
    doc = document(
        defaults=(
            validate_default(default(locale="en-ZZ")),
            validate_default(default(locale="fr-FR")),
        )
    )
    checked = check_document(doc)
    assert checked.defaults == doc.defaults
    assert len(checked.warnings) == 1
    assert checked.warnings[0].startswith("defaults[0].locale: locale 'en-ZZ' is not one of")


def test_check_document_replaces_stale_warnings() -> None:
    assert check_document(document(warnings=("old",))).warnings == ()


def test_documents_refer_to_known_entries_outside_the_document() -> None:
    doc = document(images=())
    known = {"hero": "FULL_SIZE", "tick": "BULLET_POINT"}
    assert check_document(doc, known_images=known) == doc  # type: ignore[arg-type]
    doc = document(messages=(), images=())
    assert check_document(doc, known_messages={"winback"}) == doc


def test_an_image_in_the_document_overrides_a_known_one() -> None:
    known = {"hero": "BULLET_POINT"}
    assert check_document(document(), known_images=known) == document()  # type: ignore[arg-type]


DOCUMENT_RULES = [
    (
        {"images": (image("tick", "BULLET_POINT"),)},
        "messages[0] (winback).image: no image named 'hero'; add it to images or fix the name",
    ),
    (
        {"images": (image("hero"),)},
        "messages[0] (winback).bullet_points[0].image: no image named 'tick'",
    ),
    (
        {"images": (image("hero", "BULLET_POINT"), image("tick", "BULLET_POINT"))},
        "messages[0] (winback).image: 'hero' is a BULLET_POINT image, but the main image must "
        "be FULL_SIZE (FULL_SIZE is 3840 px wide and 160–2160 px high)",
    ),
    (
        {"images": (image("hero"), image("tick"))},
        "messages[0] (winback).bullet_points[0].image: 'tick' is a FULL_SIZE image, but a bullet "
        "point's image must be BULLET_POINT (BULLET_POINT is 1024x1024 px)",
    ),
    (
        {"messages": ()},
        "defaults[0].message: no message named 'winback'; add it to messages or fix the name",
    ),
    (
        {"images": (image("hero"), image("tick", "BULLET_POINT"), image("hero"))},
        "images[2] (hero): the name 'hero' is used again (first by images[0] (hero))",
    ),
    (
        {"messages": (validate_message(full_message()), validate_message(full_message()))},
        "messages[1] (winback): the name 'winback' is used again (first by messages[0] (winback))",
    ),
    (
        {"defaults": (validate_default(default()), validate_default(default(message="other")))},
        "defaults[1]: a second default for com.example.monthly in en-US (first by defaults[0])",
    ),
    (
        {"messages": (MessageEntry(name="winback", header="h" * 67, body="b"),)},
        "messages[0] (winback).header: 67 characters, Apple's limit is 66",
    ),
    (
        {"defaults": (DefaultEntry(product_id="p", locale="en_US", message="winback"),)},
        "defaults[0].locale: 'en_US' uses an underscore",
    ),
    (
        {"images": (replace(image("hero"), height=100), image("tick", "BULLET_POINT"))},
        "images[0] (hero): 3840x100 px, but FULL_SIZE is 3840 px wide",
    ),
    (
        {"images": (image("hero"), replace(image("tick", "BULLET_POINT"), width=1000))},
        "images[1] (tick): 1000x1024 px, but BULLET_POINT is 1024x1024 px",
    ),
    (
        # A size Apple does not have, deliberately: checks that it is refused.
        {
            "images": (
                image("hero"),
                replace(image("tick", "BULLET_POINT"), size="SMALL"),  # type: ignore[arg-type]
            )
        },
        "images[1] (tick).size: must be FULL_SIZE or BULLET_POINT, not 'SMALL'",
    ),
    (
        {"images": (replace(image("hero"), name=""), image("tick", "BULLET_POINT"))},
        "images[0].name: must not be empty",
    ),
]


@pytest.mark.parametrize(("changes", "message"), DOCUMENT_RULES, ids=[r[1] for r in DOCUMENT_RULES])
def test_check_document_refuses_each_rule(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(CatalogueError) as excinfo:
        check_document(document(**changes))
    assert any(e.startswith(message) for e in errors_of(excinfo)), errors_of(excinfo)


BUDGET_WARNING = (
    "messages: 2000 messages, close to Apple's limit of 2000 per app; an edit needs room "
    "for its new version while the old one is still at Apple"
)


def test_check_document_limits_images_and_messages() -> None:
    hero = image("hero")
    images = tuple(replace(hero, name=f"img{i}") for i in range(MAX_IMAGES))
    messages = tuple(MessageEntry(name=f"m{i}", header="h", body="b") for i in range(MAX_MESSAGES))
    doc = CatalogueDocument(images=images, messages=messages)
    assert check_document(doc) == replace(doc, warnings=(BUDGET_WARNING,))
    with pytest.raises(CatalogueError) as excinfo:
        check_document(
            CatalogueDocument(
                images=(*images, replace(hero, name="one-more")),
                messages=(*messages, MessageEntry(name="one-more", header="h", body="b")),
            )
        )
    assert errors_of(excinfo) == [
        "images: 2001 images, Apple's limit is 2000 per app",
        "messages: 2001 messages, Apple's limit is 2000 per app",
    ]


def test_limits_count_known_entries_together_with_the_document() -> None:
    doc = CatalogueDocument(images=(image("hero"),), messages=(MessageEntry("m", "h", "b"),))
    known_images: dict[str, Any] = {f"old{i}": "FULL_SIZE" for i in range(MAX_IMAGES - 1)}
    known_messages = {f"old{i}" for i in range(MAX_MESSAGES - 1)}
    checked = check_document(doc, known_images=known_images, known_messages=known_messages)
    assert checked == replace(doc, warnings=(BUDGET_WARNING,))
    known_images["hero"] = "FULL_SIZE"  # the same name is one image, not two
    check_document(doc, known_images=known_images)
    known_images["old-extra"] = "FULL_SIZE"
    known_messages.add("old-extra")
    with pytest.raises(CatalogueError) as excinfo:
        check_document(doc, known_images=known_images, known_messages=known_messages)
    assert len(errors_of(excinfo)) == 2


def test_check_document_reports_every_problem() -> None:
    doc = document(
        images=(),
        defaults=(
            validate_default(default(message="nope")),
            validate_default(default(message="x")),
        ),
    )
    with pytest.raises(CatalogueError) as excinfo:
        check_document(doc)
    assert errors_of(excinfo) == [
        "messages[0] (winback).image: no image named 'hero'; add it to images or fix the name",
        "messages[0] (winback).bullet_points[0].image: no image named 'tick'; add it to images "
        "or fix the name",
        "defaults[0].message: no message named 'nope'; add it to messages or fix the name",
        "defaults[1]: a second default for com.example.monthly in en-US (first by defaults[0]); "
        "each product and locale has one default",
        "defaults[1].message: no message named 'x'; add it to messages or fix the name",
    ]
