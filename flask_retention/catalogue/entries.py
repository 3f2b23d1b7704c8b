"""Validated catalogue entries: what a catalogue file or a Python call describes.

``validation`` builds these from untrusted input (checking Apple's limits and
the PNG bytes); ``catalogue`` stores them. They are plain frozen values with
no database identity: names, not UUIDs, refer to other entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

ImageSize = Literal["FULL_SIZE", "BULLET_POINT"]
HeaderPosition = Literal["ABOVE_BODY", "ABOVE_IMAGE"]

IMAGE_SIZES: Final = ("FULL_SIZE", "BULLET_POINT")
HEADER_POSITIONS: Final = ("ABOVE_BODY", "ABOVE_IMAGE")

#: The base text's locale of a catalogue that never stated one.
DEFAULT_BASE_LOCALE: Final = "en-US"


@dataclass(frozen=True, slots=True)
class ImageEntry:
    """A checked PNG image: no transparency, at one of Apple's sizes."""

    name: str
    size: ImageSize
    data: bytes = field(repr=False)
    width: int
    height: int
    sha256: str
    source: str | None = None


@dataclass(frozen=True, slots=True)
class BulletPointEntry:
    """One bullet point of a message: text beside a ``BULLET_POINT`` image."""

    text: str
    image: str
    alt_text: str


@dataclass(frozen=True, slots=True)
class TranslationEntry:
    """One translation of a message, as Apple will see it: its own texts, and image
    names resolved (a catalogue file may leave them out to share the base text's)."""

    locale: str
    header: str
    body: str
    image: str | None = None
    image_alt_text: str | None = None
    header_position: HeaderPosition | None = None
    bullet_points: tuple[BulletPointEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class MessageEntry:
    """A text message (its base text) and its translations by locale.

    ``image`` and bullet images are names of image entries; each translation
    is its own Apple message.
    """

    name: str
    header: str
    body: str
    image: str | None = None
    image_alt_text: str | None = None
    header_position: HeaderPosition | None = None
    bullet_points: tuple[BulletPointEntry, ...] = ()
    translations: tuple[TranslationEntry, ...] = ()

    def text(self, locale: str = "") -> TranslationEntry:
        """The base text (``locale=''``) or a translation, in one shape."""
        if locale:
            for translation in self.translations:
                if translation.locale == locale:
                    return translation
            raise KeyError(f"message {self.name!r} has no translation {locale!r}")
        return TranslationEntry(
            locale="",
            header=self.header,
            body=self.body,
            image=self.image,
            image_alt_text=self.image_alt_text,
            header_position=self.header_position,
            bullet_points=self.bullet_points,
        )


@dataclass(frozen=True, slots=True)
class DefaultEntry:
    """The default message (by name) for one product and locale."""

    product_id: str
    locale: str
    message: str


@dataclass(frozen=True, slots=True)
class TranslationsDefaultEntry:
    """The default (by name) for one product in every locale the message has a text in:
    each translation's locale and the base text's. An exact :class:`DefaultEntry`
    of the product wins for its locale."""

    product_id: str
    message: str


@dataclass(frozen=True, slots=True)
class LanguageSettings:
    """The catalogue's languages: the base texts' locale, whether the base text stands
    in for a language without a translation, and the catalogue's entries of the
    fallback chain (locale -> stand-in locales in order; they replace the shipped
    table's entries for those locales)."""

    base_locale: str = DEFAULT_BASE_LOCALE
    base_fallback: bool = False
    chain: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CatalogueDocument:
    """A whole catalogue file, checked; ``warnings`` are for people, not errors.

    ``languages`` is ``None`` when the document does not state them (an import
    then keeps the stored ones).
    """

    images: tuple[ImageEntry, ...] = ()
    messages: tuple[MessageEntry, ...] = ()
    defaults: tuple[DefaultEntry, ...] = ()
    warnings: tuple[str, ...] = ()
    translation_defaults: tuple[TranslationsDefaultEntry, ...] = ()
    languages: LanguageSettings | None = None
