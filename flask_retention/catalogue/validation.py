"""Check catalogue entries against Apple's rules before anything reaches Apple.

Apple refuses a message whose header is too long, an image with transparency,
a default for a malformed locale... but only at sync time, one entry at a
time. These checks run first, on the whole input, and report every problem
at once, each naming the entry and the field, so that a bad catalogue file or
API call is fixed in one go and changes nothing meanwhile.

Lengths are counted in Unicode code points (as Apple's own libraries do; see
the spec, section 4.6).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any, Final, cast

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from flask_retention.catalogue.entries import (
    DEFAULT_BASE_LOCALE,
    HEADER_POSITIONS,
    IMAGE_SIZES,
    BulletPointEntry,
    CatalogueDocument,
    DefaultEntry,
    HeaderPosition,
    ImageEntry,
    ImageSize,
    MessageEntry,
    TranslationEntry,
    TranslationsDefaultEntry,
)
from flask_retention.catalogue.png import PNGInfo, read_png_info
from flask_retention.core.config import DEFAULT_MAX_IMAGE_BYTES
from flask_retention.core.errors import RetentionError

__all__ = [
    "ALT_TEXT_MAX_LENGTH",
    "BODY_MAX_LENGTH",
    "BULLET_POINT_SIDE",
    "BULLET_TEXT_MAX_LENGTH",
    "DEFAULT_MAX_IMAGE_BYTES",
    "FULL_SIZE_MAX_HEIGHT",
    "FULL_SIZE_MIN_HEIGHT",
    "FULL_SIZE_WIDTH",
    "HEADER_MAX_LENGTH",
    "KNOWN_LOCALES",
    "MAX_BULLET_POINTS",
    "MAX_CATALOGUE_FILE_BYTES",
    "MAX_DOTTED_KEY_PARTS",
    "MAX_IMAGES",
    "MAX_MESSAGES",
    "MAX_NESTING",
    "MAX_NUMBER_DIGITS",
    "MESSAGE_BUDGET_WARNING",
    "NAME_MAX_LENGTH",
    "SUPPORTED_SUFFIXES",
    "BulletPointSchema",
    "CatalogueError",
    "DefaultSchema",
    "ImageFileSchema",
    "MessageSchema",
    "TranslationSchema",
    "check_document",
    "check_image",
    "locale_problem",
    "locale_warning",
    "validate_default",
    "validate_default_rule",
    "validate_message",
    "validate_translation",
]

HEADER_MAX_LENGTH: Final = 66
BODY_MAX_LENGTH: Final = 144
ALT_TEXT_MAX_LENGTH: Final = 150
BULLET_TEXT_MAX_LENGTH: Final = 66
#: Apple's value is not documented; Apple's own libraries use 5.
MAX_BULLET_POINTS: Final = 5
MAX_IMAGES: Final = 2000
MAX_MESSAGES: Final = 2000
#: Past this many Apple messages (base texts and translations) a check warns: an
#: edit needs room for its new version while the old one is still at Apple.
MESSAGE_BUDGET_WARNING: Final = 1800
FULL_SIZE_WIDTH: Final = 3840
FULL_SIZE_MIN_HEIGHT: Final = 160
FULL_SIZE_MAX_HEIGHT: Final = 2160
BULLET_POINT_SIDE: Final = 1024
#: Names of images and messages are ours, not Apple's; the limit keeps them usable as keys.
NAME_MAX_LENGTH: Final = 200

# Limits of catalogue files, which are untrusted input (see ``files``):
#: The largest catalogue file read, in bytes: Apple's 2,000 images and 2,000
#: messages with five bullet points each fit in a few megabytes.
MAX_CATALOGUE_FILE_BYTES: Final = 16_000_000
#: The deepest arrays and tables may nest in a catalogue file (a catalogue needs 5).
MAX_NESTING: Final = 32
#: The most parts of one dotted TOML key (a catalogue needs none).
MAX_DOTTED_KEY_PARTS: Final = 32
#: The most digits of one number (a catalogue holds no numbers: its values are text).
MAX_NUMBER_DIGITS: Final = 100

#: The App Store's locale short codes as far as we know them: both the
#: region-qualified codes that devices send as ``userLocale`` and App Store
#: Connect's language codes. Apple's list changes, so a code missing here is
#: only a warning (:func:`locale_warning`); Apple answers ``InvalidLocaleError``
#: at sync for codes it does not know.
KNOWN_LOCALES: Final[frozenset[str]] = frozenset(
    {
        "ar-SA",
        "bn-BD",
        "ca",
        "ca-ES",
        "cs",
        "cs-CZ",
        "da",
        "da-DK",
        "de-DE",
        "el",
        "el-GR",
        "en-AU",
        "en-CA",
        "en-GB",
        "en-US",
        "es-ES",
        "es-MX",
        "fi",
        "fi-FI",
        "fr-CA",
        "fr-FR",
        "gu-IN",
        "he",
        "he-IL",
        "hi",
        "hi-IN",
        "hr",
        "hr-HR",
        "hu",
        "hu-HU",
        "id",
        "id-ID",
        "it",
        "it-IT",
        "ja",
        "ja-JP",
        "kn-IN",
        "ko",
        "ko-KR",
        "ml-IN",
        "mr-IN",
        "ms",
        "ms-MY",
        "nl-NL",
        "no",
        "no-NO",
        "or-IN",
        "pa-IN",
        "pl",
        "pl-PL",
        "pt-BR",
        "pt-PT",
        "ro",
        "ro-RO",
        "ru",
        "ru-RU",
        "sk",
        "sk-SK",
        "sl-SI",
        "sv",
        "sv-SE",
        "ta-IN",
        "te-IN",
        "th",
        "th-TH",
        "tr",
        "tr-TR",
        "uk",
        "uk-UA",
        "ur-PK",
        "vi",
        "vi-VN",
        "zh-Hans",
        "zh-Hant",
    }
)

#: language, optional script, optional region (two letters or three digits): en-US, zh-Hans, es-419.
_LOCALE_RE: Final = re.compile(r"[a-z]{2,3}(?:-[A-Z][a-z]{3})?(?:-(?:[A-Z]{2}|[0-9]{3}))?")
_LOCALE_LOOSE_RE: Final = re.compile(
    r"[A-Za-z]{2,3}(?:[-_][A-Za-z]{4})?(?:[-_](?:[A-Za-z]{2}|[0-9]{3}))?"
)
_FULL_SIZE_RULE: Final = (
    f"FULL_SIZE is {FULL_SIZE_WIDTH} px wide and "
    f"{FULL_SIZE_MIN_HEIGHT}–{FULL_SIZE_MAX_HEIGHT} px high"
)
_BULLET_RULE: Final = f"BULLET_POINT is {BULLET_POINT_SIDE}x{BULLET_POINT_SIDE} px"
SUPPORTED_SUFFIXES: Final = (".toml", ".json")


class CatalogueError(RetentionError, ValueError):
    """Catalogue input breaks Apple's rules or ours; ``errors`` lists every problem.

    Each error names the entry and the field, e.g.
    ``messages[2] (winback).header: 70 characters, Apple's limit is 66``.
    """

    def __init__(self, errors: Iterable[str] | str, *, source: str | None = None) -> None:
        self.errors: list[str] = [errors] if isinstance(errors, str) else list(errors)
        self.source = source
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = f"{self.source}: " if self.source else ""
        if len(self.errors) == 1:
            return f"{where}{self.errors[0]}"
        lines = "\n".join(f"  - {error}" for error in self.errors)
        return f"{where}{len(self.errors)} problems in the catalogue:\n{lines}"

    def __str__(self) -> str:
        return self._describe()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_catalogue_error, (self.errors, self.source))


def _rebuild_catalogue_error(errors: list[str], source: str | None) -> CatalogueError:
    return CatalogueError(errors, source=source)


# --------------------------------------------------------------------------- images


def _image_problems(
    data: bytes, size: object
) -> tuple[list[str], ImageSize | None, PNGInfo | None]:
    """Problems of PNG ``data`` as an Apple image of ``size`` (inferred when None).

    Returns the problems, the size and the PNG facts (the last two when known).
    """
    if size is not None and size not in IMAGE_SIZES:
        return [f"size must be FULL_SIZE or BULLET_POINT, not {size!r}"], None, None
    try:
        info = read_png_info(data)
    except (ValueError, TypeError) as exc:
        return [f"{exc}; Apple accepts PNG images only"], None, None
    problems: list[str] = []
    if info.has_alpha_channel:
        problems.append(
            f"has an alpha channel (PNG colour type {info.color_type}, {info.color_type_name}); "
            "Apple refuses transparency: export it without alpha"
        )
    if info.has_trns:
        problems.append(
            "has a tRNS chunk (transparent colour or palette entries); "
            "Apple refuses transparency: export it without transparency"
        )
    w, h = info.width, info.height
    kind: ImageSize | None = size
    if kind is None:
        if w == FULL_SIZE_WIDTH and FULL_SIZE_MIN_HEIGHT <= h <= FULL_SIZE_MAX_HEIGHT:
            kind = "FULL_SIZE"
        elif w == h == BULLET_POINT_SIDE:
            kind = "BULLET_POINT"
        else:
            problems.append(
                f"{w}x{h} px fits neither of Apple's image sizes: {_FULL_SIZE_RULE}; {_BULLET_RULE}"
            )
    elif kind == "FULL_SIZE":
        if w != FULL_SIZE_WIDTH:
            problems.append(
                f"{w}x{h} px: a FULL_SIZE image must be exactly {FULL_SIZE_WIDTH} px wide"
            )
        if not FULL_SIZE_MIN_HEIGHT <= h <= FULL_SIZE_MAX_HEIGHT:
            problems.append(
                f"{w}x{h} px: a FULL_SIZE image must be "
                f"{FULL_SIZE_MIN_HEIGHT}–{FULL_SIZE_MAX_HEIGHT} px high"
            )
    elif (w, h) != (BULLET_POINT_SIDE, BULLET_POINT_SIDE):
        problems.append(
            f"{w}x{h} px: a BULLET_POINT image must be {BULLET_POINT_SIDE}x{BULLET_POINT_SIDE} px"
        )
    return problems, kind, info


def image_entry(data: bytes, size: object, name: str, source: str | None) -> ImageEntry | list[str]:
    """The checked image entry, or the problems of the PNG bytes."""
    problems, kind, info = _image_problems(data, size)
    if problems or kind is None or info is None:
        return problems
    return ImageEntry(
        name=name,
        size=kind,
        data=bytes(data),
        width=info.width,
        height=info.height,
        sha256=hashlib.sha256(data).hexdigest(),
        source=source,
    )


def _name_problem(name: object) -> str | None:
    if not isinstance(name, str):
        return f"must be a string, not {type_name(name)}"
    if not name.strip():
        return "must not be empty"
    if name != name.strip():
        return f"{name!r} has spaces at its start or end"
    if len(name) > NAME_MAX_LENGTH:
        return f"{len(name)} characters, the limit for names is {NAME_MAX_LENGTH}"
    nul = _nul_problem(name)
    if nul is not None:
        return nul
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return f"{name!r} contains control characters"
    return _utf8_problem(name)


def _utf8_problem(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains {text[exc.start]!r}, which is not valid UTF-8 (a lone surrogate)"
    return None


def _nul_problem(text: str) -> str | None:
    position = text.find("\x00")
    if position < 0:
        return None
    return (
        f"contains a NUL character (character {position + 1}), "
        "which Apple and PostgreSQL refuse: remove it"
    )


def check_image(
    data: bytes, size: ImageSize | None = None, *, name: str, source: str | None = None
) -> ImageEntry:
    """Check PNG bytes against Apple's image rules and return the image entry.

    ``size`` is inferred from the dimensions when ``None``. Raises
    :class:`CatalogueError` naming the file (``source``, else ``name``) and
    every rule broken: not a PNG, transparency, wrong dimensions, empty name.
    """
    label = source or (name if isinstance(name, str) and name else "image")
    errors: list[str] = []
    name_problem = _name_problem(name)
    if name_problem is not None:
        errors.append(f"{label}: name {name_problem}")
    entry = image_entry(data, size, name, source)
    if isinstance(entry, list):
        errors.extend(f"{label}: {problem}" for problem in entry)
    if errors or isinstance(entry, list):
        raise CatalogueError(errors)
    return entry


# --------------------------------------------------------------------------- schemas


class _Text(validate.Validator):
    """A string that is not blank, is valid UTF-8 without NUL characters and has at most
    ``limit`` code points."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit

    def __call__(self, value: str) -> str:
        if not value.strip():
            raise ValidationError("must not be empty")
        problem = _nul_problem(value) or _utf8_problem(value)
        if problem is not None:
            raise ValidationError(problem)
        if self.limit is not None and len(value) > self.limit:
            raise ValidationError(f"{len(value)} characters, Apple's limit is {self.limit}")
        return value


class _FilePath(validate.Validator):
    """A file path: not blank, valid UTF-8, without NUL or other control characters."""

    def __call__(self, value: str) -> str:
        if not value.strip():
            raise ValidationError("must not be empty")
        if "\x00" in value:
            raise ValidationError(
                f"{value!r} contains a NUL character, which no file path can: fix the path"
            )
        problem = _utf8_problem(value)
        if problem is not None:
            raise ValidationError(problem)
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValidationError(f"{value!r} contains control characters: fix the path")
        return value


class _Name(validate.Validator):
    def __call__(self, value: str) -> str:
        problem = _name_problem(value)
        if problem is not None:
            raise ValidationError(problem)
        return value


class _ProductId(validate.Validator):
    def __call__(self, value: str) -> str:
        if not value.strip():
            raise ValidationError("must not be empty")
        if any(c.isspace() or ord(c) < 32 or ord(c) == 127 or c == "/" for c in value):
            raise ValidationError(
                f"{value!r} is not a product ID: App Store product IDs contain letters, "
                "digits, periods and underscores, without spaces or slashes"
            )
        problem = _utf8_problem(value)
        if problem is not None:
            raise ValidationError(problem)
        return value


class _Locale(validate.Validator):
    def __call__(self, value: str) -> str:
        problem = locale_problem(value)
        if problem is not None:
            raise ValidationError(problem)
        return value


def _string(
    *validators: Callable[[Any], Any], required: bool = True, **kwargs: Any
) -> fields.String:
    """A string field with messages that read well after ``entry.field:``."""
    return fields.String(
        required=required,
        allow_none=not required,
        validate=list(validators),
        error_messages={
            "required": "missing (it is required)",
            "null": "must not be null",
            "invalid": "must be a string",
        },
        **kwargs,
    )


def _unknown_message(schema_fields: Iterable[str]) -> str:
    return f"unknown field; the fields are: {', '.join(schema_fields)}"


class _StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class BulletPointSchema(_StrictSchema):
    """One bullet point: ``text``, ``image`` (a BULLET_POINT image's name), ``alt_text``."""

    text = _string(_Text(BULLET_TEXT_MAX_LENGTH))
    image = _string(_Name())
    alt_text = _string(_Text(ALT_TEXT_MAX_LENGTH))

    error_messages = {  # noqa: RUF012 (marshmallow's own class attribute)
        "unknown": _unknown_message(("text", "image", "alt_text")),
        "type": "must be a table (object) with text, image and alt_text",
    }


_MESSAGE_FIELDS: Final = (
    "name",
    "header",
    "body",
    "image",
    "image_alt_text",
    "header_position",
    "bullet_points",
    "translations",
)
_TRANSLATION_FIELDS: Final = (
    "header",
    "body",
    "image",
    "image_alt_text",
    "header_position",
    "bullet_points",
)


class MessageSchema(_StrictSchema):
    """A text message as a catalogue file or the Python API describes it."""

    name = _string(_Name())
    header = _string(_Text(HEADER_MAX_LENGTH))
    body = _string(_Text(BODY_MAX_LENGTH))
    image = _string(_Name(), required=False)
    image_alt_text = _string(_Text(ALT_TEXT_MAX_LENGTH), required=False)
    header_position = _string(
        validate.OneOf(HEADER_POSITIONS, error="must be ABOVE_BODY or ABOVE_IMAGE, not {input!r}"),
        required=False,
    )
    bullet_points = fields.List(
        fields.Nested(BulletPointSchema),
        required=False,
        allow_none=True,
        error_messages={"invalid": "must be a list of bullet points"},
    )

    error_messages = {  # noqa: RUF012 (marshmallow's own class attribute)
        "unknown": _unknown_message(_MESSAGE_FIELDS),
    }

    @validates_schema(skip_on_field_errors=False, pass_original=True)
    def _check_rules(self, data: dict[str, Any], original: Any, **kwargs: Any) -> None:
        # ``data`` lacks the fields that failed their own checks; ``original``
        # says what was given, so that one mistake is not reported twice.
        given = original if isinstance(original, Mapping) else {}
        errors: dict[str, list[str]] = {}
        has_image = given.get("image") is not None
        has_alt_text = given.get("image_alt_text") is not None
        if data.get("header_position") == "ABOVE_IMAGE" and not has_image:
            errors.setdefault("header_position", []).append(
                "ABOVE_IMAGE needs an image: give the message an image or use ABOVE_BODY"
            )
        if has_image and not has_alt_text:
            errors.setdefault("image_alt_text", []).append(
                "missing: Apple requires alt text with the image (describe it for VoiceOver)"
            )
        if has_alt_text and not has_image:
            errors.setdefault("image_alt_text", []).append(
                "given without an image: add the image or remove the alt text"
            )
        bullets = given.get("bullet_points")
        if isinstance(bullets, list) and len(bullets) > MAX_BULLET_POINTS:
            errors.setdefault("bullet_points", []).append(
                f"{len(bullets)} bullet points, Apple's limit is {MAX_BULLET_POINTS}"
            )
        if errors:
            raise ValidationError(cast("dict[str, Any]", errors))


class DefaultSchema(_StrictSchema):
    """The default message for a product and locale."""

    product_id = _string(_ProductId())
    locale = _string(_Locale())
    message = _string(_Name())

    error_messages = {  # noqa: RUF012 (marshmallow's own class attribute)
        "unknown": _unknown_message(("product_id", "locale", "message")),
    }


class TranslatedBulletPointSchema(_StrictSchema):
    """A bullet point of a translation: ``text``, ``alt_text``, and ``image`` unless it
    shares the base text's bullet image at the same position."""

    text = _string(_Text(BULLET_TEXT_MAX_LENGTH))
    image = _string(_Name(), required=False)
    alt_text = _string(_Text(ALT_TEXT_MAX_LENGTH))

    error_messages = {  # noqa: RUF012 (marshmallow's own class attribute)
        "unknown": _unknown_message(("text", "image", "alt_text")),
        "type": "must be a table (object) with text, alt_text and optionally image",
    }


class TranslationSchema(_StrictSchema):
    """A translation of a message: its own texts; image names shared unless given."""

    header = _string(_Text(HEADER_MAX_LENGTH))
    body = _string(_Text(BODY_MAX_LENGTH))
    image = _string(_Name(), required=False)
    image_alt_text = _string(_Text(ALT_TEXT_MAX_LENGTH), required=False)
    header_position = _string(
        validate.OneOf(HEADER_POSITIONS, error="must be ABOVE_BODY or ABOVE_IMAGE, not {input!r}"),
        required=False,
    )
    bullet_points = fields.List(
        fields.Nested(TranslatedBulletPointSchema),
        required=False,
        allow_none=True,
        error_messages={"invalid": "must be a list of bullet points"},
    )

    error_messages = {  # noqa: RUF012 (marshmallow's own class attribute)
        "unknown": _unknown_message(_TRANSLATION_FIELDS),
    }


class ImageFileSchema(_StrictSchema):
    """An image entry of a catalogue file: ``name``, ``file``, optional ``size``."""

    name = _string(_Name())
    file = _string(_FilePath())
    size = _string(
        validate.OneOf(IMAGE_SIZES, error="must be FULL_SIZE or BULLET_POINT, not {input!r}"),
        required=False,
    )

    error_messages = {  # noqa: RUF012 (marshmallow's own class attribute)
        "unknown": _unknown_message(("name", "file", "size")),
    }


@cache
def _schema(kind: type[Schema]) -> Schema:
    return kind()


def _flatten(messages: Any, path: str = "") -> list[str]:
    """Marshmallow's nested error dict as ``path: message`` lines."""
    if isinstance(messages, dict):
        out: list[str] = []
        for key, value in messages.items():
            if key == "_schema":
                out.extend(_flatten(value, path))
            elif isinstance(key, int):
                out.extend(_flatten(value, f"{path}[{key}]"))
            else:
                out.extend(_flatten(value, f"{path}.{key_label(key)}"))
        return out
    if isinstance(messages, list | tuple):
        return [line for item in messages for line in _flatten(item, path)]
    return [f"{path}: {messages}" if path else str(messages)]


def load_entry(kind: type[Schema], data: object, where: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise CatalogueError(
            [f"{where}: must be a table (object) of fields, not {type_name(data)}"]
        )
    try:
        return cast("dict[str, Any]", _schema(kind).load(dict(data)))
    except ValidationError as exc:
        raise CatalogueError(
            [
                f"{where}{line}" if line.startswith((".", "[")) else f"{where}: {line}"
                for line in _flatten(exc.messages)
            ]
        ) from None


def key_label(key: object) -> str:
    """A key as error messages show it: as written when printable, else quoted with escapes."""
    text = str(key)
    return text if text.isprintable() else repr(text)


def type_name(value: object) -> str:
    if value is None:
        return "null"
    return {
        dict: "a table",
        list: "a list",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "a boolean",
    }.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------- entries


def validate_message(data: Mapping[str, Any], *, where: str = "message") -> MessageEntry:
    """Check a message's fields against Apple's rules and return the entry.

    Refuses unknown fields, wrong types, texts over Apple's limits, more than
    :data:`MAX_BULLET_POINTS` bullets, ``ABOVE_IMAGE`` without an image and an
    image without alt text. ``translations`` maps locale codes to
    translations, each checked the same way (:func:`validate_translation`).
    Raises :class:`CatalogueError` listing every problem as
    ``{where}.{field}: ...``. Image names are checked by :func:`check_document`.
    """
    translations: object = None
    if isinstance(data, Mapping) and "translations" in data:
        translations = data["translations"]
        data = {k: v for k, v in data.items() if k != "translations"}
    errors: list[str] = []
    try:
        loaded = load_entry(MessageSchema, data, where)
    except CatalogueError as exc:
        errors.extend(exc.errors)
        loaded = None
    base = (
        None
        if loaded is None
        else MessageEntry(
            name=loaded["name"],
            header=loaded["header"],
            body=loaded["body"],
            image=loaded.get("image"),
            image_alt_text=loaded.get("image_alt_text"),
            header_position=cast("HeaderPosition | None", loaded.get("header_position")),
            bullet_points=tuple(
                BulletPointEntry(text=b["text"], image=b["image"], alt_text=b["alt_text"])
                for b in loaded.get("bullet_points") or ()
            ),
        )
    )
    found: list[TranslationEntry] = []
    if translations is not None:
        if not isinstance(translations, Mapping):
            errors.append(
                f"{where}.translations: must be a table of translations by locale "
                f"([messages.translations.fr-FR] in TOML), not {type_name(translations)}"
            )
        else:
            for locale, item in translations.items():
                label = f"{where}.translations.{key_label(locale)}"
                problem = locale_problem(locale)
                if problem is not None:
                    errors.append(f"{label}: {problem}")
                    continue
                try:
                    found.append(validate_translation(item, locale, base, where=label))
                except CatalogueError as exc:
                    errors.extend(exc.errors)
    if errors or base is None:
        raise CatalogueError(errors)
    return replace(base, translations=tuple(sorted(found, key=lambda t: t.locale)))


def validate_translation(
    data: object, locale: str, base: MessageEntry | None, *, where: str = "translation"
) -> TranslationEntry:
    """Check one translation of ``base`` and return it with image names resolved.

    A translation has its own ``header``, ``body``, alt texts and bullet
    texts, within Apple's limits. ``image`` and ``header_position`` are the
    base text's unless given, and so is each bullet point's ``image`` (by
    position). Alt text is required with the image, shared or not (it
    describes the image in the translation's language), and bullet points
    are required when the base text has some (``bullet_points = []`` for
    none). ``base`` is ``None`` when the base text failed its own checks:
    only the translation's own fields are checked then.
    """
    loaded = load_entry(TranslationSchema, data, where)
    given = cast("Mapping[str, Any]", data)
    errors: list[str] = []
    image = loaded.get("image")
    if image is None and base is not None:
        image = base.image
    position = loaded.get("header_position")
    if position is None and base is not None:
        position = base.header_position
    alt_text = loaded.get("image_alt_text")
    if image is not None and alt_text is None and base is not None:
        shared = "" if "image" in given else f" (it shares the base text's image {image!r})"
        errors.append(
            f"{where}.image_alt_text: missing: Apple requires alt text with the image{shared}; "
            f"describe it in {locale}"
        )
    if image is None and alt_text is not None and base is not None:
        errors.append(
            f"{where}.image_alt_text: given without an image: add the image or remove the alt text"
        )
    if position == "ABOVE_IMAGE" and image is None and base is not None:
        errors.append(
            f"{where}.header_position: ABOVE_IMAGE needs an image: "
            "give the translation an image or use ABOVE_BODY"
        )
    base_bullets = base.bullet_points if base is not None else ()
    raw_bullets = loaded.get("bullet_points")
    bullets: list[BulletPointEntry] = []
    if raw_bullets is None:
        if base_bullets:
            errors.append(
                f"{where}.bullet_points: missing: the base text has {len(base_bullets)} bullet "
                f"point(s); give their texts in {locale}, or bullet_points = [] for none"
            )
    elif len(raw_bullets) > MAX_BULLET_POINTS:
        errors.append(
            f"{where}.bullet_points: {len(raw_bullets)} bullet points, "
            f"Apple's limit is {MAX_BULLET_POINTS}"
        )
    else:
        for i, bullet in enumerate(raw_bullets):
            bullet_image = bullet.get("image")
            if bullet_image is None:
                if i < len(base_bullets):
                    bullet_image = base_bullets[i].image
                elif base is not None:
                    errors.append(
                        f"{where}.bullet_points[{i}].image: missing: the base text has no "
                        f"bullet point {i} to share an image with; name a BULLET_POINT image"
                    )
                    continue
                else:
                    continue
            bullets.append(
                BulletPointEntry(
                    text=bullet["text"], image=bullet_image, alt_text=bullet["alt_text"]
                )
            )
    if errors:
        raise CatalogueError(errors)
    return TranslationEntry(
        locale=locale,
        header=loaded["header"],
        body=loaded["body"],
        image=image,
        image_alt_text=alt_text,
        header_position=cast("HeaderPosition | None", position),
        bullet_points=tuple(bullets),
    )


def validate_default(data: Mapping[str, Any], *, where: str = "default") -> DefaultEntry:
    """Check a default's product ID, locale and message name and return the entry.

    The locale must be well-formed (``en-US``, ``zh-Hans``, ``es-419``); a
    well-formed code that is not in :data:`KNOWN_LOCALES` is accepted (see
    :func:`locale_warning`).
    """
    loaded = load_entry(DefaultSchema, data, where)
    return DefaultEntry(
        product_id=loaded["product_id"], locale=loaded["locale"], message=loaded["message"]
    )


def validate_default_rule(
    data: Mapping[str, Any], *, where: str = "default"
) -> tuple[DefaultEntry, ...] | TranslationsDefaultEntry:
    """Check a default of a catalogue file: ``locale = "en-US"`` (one locale),
    ``locales = ["en-US", "fr-FR"]`` (several: one default each) or
    ``locales = "all"`` (every translation the message has, and the base text's
    locale: a :class:`TranslationsDefaultEntry`)."""
    if not isinstance(data, Mapping):
        raise CatalogueError(
            [f"{where}: must be a table (object) of fields, not {type_name(data)}"]
        )
    if "locales" not in data:
        return (validate_default(data, where=where),)
    locales = data["locales"]
    rest = {k: v for k, v in data.items() if k != "locales"}
    errors: list[str] = []
    if "locale" in data:
        errors.append(f"{where}: give locale or locales, not both")
    if locales == "all":
        try:
            loaded = load_entry(DefaultSchema, {**rest, "locale": "en-US"}, where)
        except CatalogueError as exc:
            errors.extend(exc.errors)
        if errors:
            raise CatalogueError(errors)
        return TranslationsDefaultEntry(product_id=loaded["product_id"], message=loaded["message"])
    if isinstance(locales, str) or not isinstance(locales, list):
        hint = f'["{locales}"]' if isinstance(locales, str) else '["en-US", "fr-FR"]'
        raise CatalogueError(
            [*errors, f'{where}.locales: must be a list of locale codes such as {hint}, or "all"']
        )
    if not locales:
        raise CatalogueError([*errors, f"{where}.locales: must not be empty"])
    entries: list[DefaultEntry] = []
    for i, locale in enumerate(locales):
        try:
            entries.append(validate_default({**rest, "locale": locale}, where=where))
        except CatalogueError as exc:
            errors.extend(
                e.replace(f"{where}.locale:", f"{where}.locales[{i}]:", 1) for e in exc.errors
            )
    if errors:
        raise CatalogueError(list(dict.fromkeys(errors)))
    return tuple(entries)


def locale_problem(locale: object) -> str | None:
    """Why ``locale`` is not a well-formed App Store locale short code, or ``None``."""
    if not isinstance(locale, str):
        return f"must be a string, not {type_name(locale)}"
    if not locale.strip():
        return "must not be empty; use an App Store locale short code such as en-US"
    if _LOCALE_RE.fullmatch(locale):
        return None
    if any(c.isspace() for c in locale):
        return f"{locale!r} contains spaces; locale short codes look like en-US"
    suggestion = _locale_suggestion(locale)
    if "_" in locale:
        hint = f"write {suggestion}" if suggestion else "use hyphens, as in en-US"
        return f"{locale!r} uses an underscore; App Store locale short codes use hyphens: {hint}"
    if suggestion:
        return (
            f"{locale!r} has the wrong case; locale short codes are case-sensitive: "
            f"write {suggestion}"
        )
    return f"{locale!r} is not a locale short code; they look like en-US, zh-Hans or es-419"


def _locale_suggestion(locale: str) -> str | None:
    if not _LOCALE_LOOSE_RE.fullmatch(locale):
        return None
    parts = locale.replace("_", "-").split("-")
    fixed = [parts[0].lower()]
    for part in parts[1:]:
        fixed.append(part.title() if len(part) == 4 else part.upper())
    candidate = "-".join(fixed)
    return candidate if _LOCALE_RE.fullmatch(candidate) else None


def locale_warning(locale: str) -> str | None:
    """A warning for a well-formed locale code missing from :data:`KNOWN_LOCALES`.

    Not an error: Apple's list changes. Apple refuses codes it does not know
    with ``InvalidLocaleError`` when sync configures the default.
    """
    if locale_problem(locale) is not None or locale in KNOWN_LOCALES:
        return None
    return (
        f"locale {locale!r} is not one of the App Store locale short codes flask-retention "
        "knows; check it (Apple refuses unknown codes with InvalidLocaleError at sync)"
    )


# --------------------------------------------------------------------------- documents


def entry_label(kind: str, index: int, name: object) -> str:
    if isinstance(name, str) and name:
        return f"{kind}[{index}] ({name if name.isprintable() else repr(name)})"
    return f"{kind}[{index}]"


@dataclass
class Labeled:
    """Entries of a document with the label that names each in error messages."""

    images: list[tuple[str, ImageEntry]]
    messages: list[tuple[str, MessageEntry]]
    defaults: list[tuple[str, DefaultEntry]]
    translation_defaults: list[tuple[str, TranslationsDefaultEntry]] = field(default_factory=list)


def _bullets_as_data(
    bullets: Iterable[BulletPointEntry], shared: Sequence[BulletPointEntry] = ()
) -> list[dict[str, str]]:
    out = []
    for i, b in enumerate(bullets):
        item = {"text": b.text, "image": b.image, "alt_text": b.alt_text}
        if i < len(shared) and shared[i].image == b.image:
            del item["image"]
        out.append(item)
    return out


def translation_as_data(translation: TranslationEntry, base: MessageEntry) -> dict[str, Any]:
    """A translation as a catalogue file writes it: image names left out where they
    are the base text's (so that they follow it), everything else given."""
    data: dict[str, Any] = {"header": translation.header, "body": translation.body}
    if translation.image is not None and translation.image != base.image:
        data["image"] = translation.image
    if translation.image_alt_text is not None:
        data["image_alt_text"] = translation.image_alt_text
    if (
        translation.header_position is not None
        and translation.header_position != base.header_position
    ):
        data["header_position"] = translation.header_position
    if translation.bullet_points or base.bullet_points:
        data["bullet_points"] = _bullets_as_data(translation.bullet_points, base.bullet_points)
    return data


def message_as_data(message: MessageEntry) -> dict[str, Any]:
    data: dict[str, Any] = {"name": message.name, "header": message.header, "body": message.body}
    for key in ("image", "image_alt_text", "header_position"):
        value = getattr(message, key)
        if value is not None:
            data[key] = value
    if message.bullet_points:
        data["bullet_points"] = _bullets_as_data(message.bullet_points)
    if message.translations:
        data["translations"] = {
            t.locale: translation_as_data(t, message)
            for t in sorted(message.translations, key=lambda t: t.locale)
        }
    return data


def text_count(messages: Iterable[MessageEntry]) -> int:
    """How many Apple messages ``messages`` make: each base text and each translation."""
    return sum(1 + len(m.translations) for m in messages)


def cross_check(
    labeled: Labeled,
    known_images: Mapping[str, ImageSize],
    known_messages: Collection[str],
    unchecked_images: Collection[str] = (),
    unchecked_messages: Collection[str] = (),
    *,
    base_locale: str = DEFAULT_BASE_LOCALE,
    known_texts: int | None = None,
) -> tuple[list[str], list[str]]:
    """Errors and warnings across entries: names, references, counts, defaults.

    References to ``unchecked_*`` names (entries that failed their own checks,
    already reported) are not reported again. ``known_texts`` counts the Apple
    messages (base texts and translations) of ``known_messages``, one each
    when not given; with the document's they must stay within Apple's limit,
    and past :data:`MESSAGE_BUDGET_WARNING` a warning says so.
    """
    errors: list[str] = []
    warnings: list[str] = []

    images: dict[str, ImageSize] = dict(known_images)
    first: dict[str, str] = {}
    for label, image in labeled.images:
        if image.name in first:
            errors.append(
                f"{label}: the name {image.name!r} is used again (first by {first[image.name]})"
            )
        else:
            first[image.name] = label
        images[image.name] = image.size

    first = {}
    message_names = set(known_messages)
    for label, message in labeled.messages:
        if message.name in first:
            errors.append(
                f"{label}: the name {message.name!r} is used again (first by {first[message.name]})"
            )
        else:
            first[message.name] = label
        message_names.add(message.name)
        seen_locales: set[str] = set()
        for where, text in [(label, message.text())] + [
            (f"{label}.translations.{t.locale}", t) for t in message.translations
        ]:
            if text.locale:
                if text.locale in seen_locales:
                    errors.append(f"{where}: a second translation for {text.locale}")
                seen_locales.add(text.locale)
                if text.locale == base_locale:
                    errors.append(
                        f"{where}: {base_locale} is the base text's locale (languages.base_locale);"
                        " edit the base text, or state another base_locale"
                    )
                warning = locale_warning(text.locale)
                if warning is not None:
                    warnings.append(f"{where}: {warning}")
            if text.image is not None:
                errors.extend(
                    _reference(f"{where}.image", text.image, "FULL_SIZE", images, unchecked_images)
                )
            for i, bullet in enumerate(text.bullet_points):
                errors.extend(
                    _reference(
                        f"{where}.bullet_points[{i}].image",
                        bullet.image,
                        "BULLET_POINT",
                        images,
                        unchecked_images,
                    )
                )

    bound: dict[tuple[str, str], str] = {}
    for label, default in labeled.defaults:
        key = (default.product_id, default.locale)
        if key in bound:
            errors.append(
                f"{label}: a second default for {default.product_id} in {default.locale} "
                f"(first by {bound[key]}); each product and locale has one default"
            )
        else:
            bound[key] = label
        if default.message not in message_names and default.message not in unchecked_messages:
            errors.append(
                f"{label}.message: no message named {default.message!r}; "
                "add it to messages or fix the name"
            )
        warning = locale_warning(default.locale)
        if warning is not None:
            warnings.append(f"{label}.locale: {warning}")
    every: dict[str, str] = {}
    for label, rule in labeled.translation_defaults:
        if rule.product_id in every:
            errors.append(
                f'{label}: a second locales = "all" default for {rule.product_id} '
                f"(first by {every[rule.product_id]}); each product has one"
            )
        else:
            every[rule.product_id] = label
        if rule.message not in message_names and rule.message not in unchecked_messages:
            errors.append(
                f"{label}.message: no message named {rule.message!r}; "
                "add it to messages or fix the name"
            )

    image_count = len(set(known_images) | {image.name for _, image in labeled.images})
    if image_count > MAX_IMAGES:
        errors.append(f"images: {image_count} images, Apple's limit is {MAX_IMAGES} per app")
    listed = {m.name for _, m in labeled.messages}
    others = [name for name in known_messages if name not in listed]
    texts = (len(others) if known_texts is None else known_texts) + text_count(
        {m.name: m for _, m in labeled.messages}.values()
    )
    names = len(set(others) | listed)
    counted = "messages" if texts == names else "Apple messages (base texts and translations)"
    if texts > MAX_MESSAGES:
        errors.append(f"messages: {texts} {counted}, Apple's limit is {MAX_MESSAGES} per app")
    elif texts > MESSAGE_BUDGET_WARNING:
        warnings.append(
            f"messages: {texts} {counted}, close to Apple's limit of {MAX_MESSAGES} per app; "
            "an edit needs room for its new version while the old one is still at Apple"
        )
    return errors, warnings


def _reference(
    where: str,
    name: str,
    size: ImageSize,
    images: Mapping[str, ImageSize],
    unchecked: Collection[str],
) -> list[str]:
    if name in unchecked:
        return []
    actual = images.get(name)
    if actual is None:
        return [f"{where}: no image named {name!r}; add it to images or fix the name"]
    if actual != size:
        use = "the main image" if size == "FULL_SIZE" else "a bullet point's image"
        rule = _FULL_SIZE_RULE if size == "FULL_SIZE" else _BULLET_RULE
        return [f"{where}: {name!r} is a {actual} image, but {use} must be {size} ({rule})"]
    return []


def _entry_problems(labeled: Labeled) -> list[str]:
    """Re-check entries built in Python rather than by this module's functions."""
    errors: list[str] = []
    for label, image in labeled.images:
        name_problem = _name_problem(image.name)
        if name_problem is not None:
            errors.append(f"{label}.name: {name_problem}")
        if image.size not in IMAGE_SIZES:
            errors.append(f"{label}.size: must be FULL_SIZE or BULLET_POINT, not {image.size!r}")
        elif image.size == "FULL_SIZE" and not (
            image.width == FULL_SIZE_WIDTH
            and FULL_SIZE_MIN_HEIGHT <= image.height <= FULL_SIZE_MAX_HEIGHT
        ):
            errors.append(f"{label}: {image.width}x{image.height} px, but {_FULL_SIZE_RULE}")
        elif image.size == "BULLET_POINT" and (image.width, image.height) != (
            BULLET_POINT_SIDE,
            BULLET_POINT_SIDE,
        ):
            errors.append(f"{label}: {image.width}x{image.height} px, but {_BULLET_RULE}")
    for label, message in labeled.messages:
        try:
            validate_message(message_as_data(message), where=label)
        except CatalogueError as exc:
            errors.extend(exc.errors)
    for label, default in labeled.defaults:
        try:
            validate_default(
                {
                    "product_id": default.product_id,
                    "locale": default.locale,
                    "message": default.message,
                },
                where=label,
            )
        except CatalogueError as exc:
            errors.extend(exc.errors)
    for label, rule in labeled.translation_defaults:
        try:
            validate_default_rule(
                {"product_id": rule.product_id, "locales": "all", "message": rule.message},
                where=label,
            )
        except CatalogueError as exc:
            errors.extend(exc.errors)
    return errors


def check_document(
    doc: CatalogueDocument,
    *,
    known_images: Mapping[str, ImageSize] | None = None,
    known_messages: Collection[str] | None = None,
    known_texts: int | None = None,
    base_locale: str | None = None,
) -> CatalogueDocument:
    """Check a whole catalogue across entries and return it with ``warnings`` filled.

    Every message's image must exist (in ``doc`` or ``known_images``, e.g. the
    database) and be ``FULL_SIZE``, every bullet image ``BULLET_POINT``; every
    default must name a message of ``doc`` or ``known_messages``. Names are
    unique within the document, each (product, locale) has one default, and
    the images and messages (the document's together with the known ones;
    ``known_texts`` counts the known messages' texts, translations included)
    stay within Apple's limits. No translation may be keyed by the base
    locale (``base_locale``, else the document's, else ``en-US``). Unknown
    locales become warnings. Raises :class:`CatalogueError` listing every
    problem. (The ``languages`` settings are checked by
    :func:`flask_retention.catalogue.languages.check_languages`.)
    """
    labeled = Labeled(
        images=[(entry_label("images", i, e.name), e) for i, e in enumerate(doc.images)],
        messages=[(entry_label("messages", i, e.name), e) for i, e in enumerate(doc.messages)],
        defaults=[(f"defaults[{i}]", e) for i, e in enumerate(doc.defaults)],
        translation_defaults=[
            (f"translation_defaults[{i}]", e) for i, e in enumerate(doc.translation_defaults)
        ],
    )
    if base_locale is None:
        base_locale = (
            doc.languages.base_locale if doc.languages is not None else DEFAULT_BASE_LOCALE
        )
    errors = _entry_problems(labeled)
    cross_errors, warnings = cross_check(
        labeled,
        known_images or {},
        known_messages or (),
        base_locale=base_locale,
        known_texts=known_texts,
    )
    errors.extend(cross_errors)
    if errors:
        raise CatalogueError(errors)
    return replace(doc, warnings=tuple(warnings))
