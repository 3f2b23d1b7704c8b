"""Validated catalogue entries: what a catalogue file or a Python call describes.

``validation`` builds these from untrusted input (checking Apple's limits and
the PNG bytes); ``catalogue`` stores them. They are plain frozen values with
no database identity: names, not UUIDs, refer to other entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

ImageSize = Literal["FULL_SIZE", "BULLET_POINT"]
HeaderPosition = Literal["ABOVE_BODY", "ABOVE_IMAGE"]

IMAGE_SIZES: Final = ("FULL_SIZE", "BULLET_POINT")
HEADER_POSITIONS: Final = ("ABOVE_BODY", "ABOVE_IMAGE")


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
class MessageEntry:
    """A text message; ``image`` and bullet images are names of image entries."""

    name: str
    header: str
    body: str
    image: str | None = None
    image_alt_text: str | None = None
    header_position: HeaderPosition | None = None
    bullet_points: tuple[BulletPointEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class DefaultEntry:
    """The default message (by name) for one product and locale."""

    product_id: str
    locale: str
    message: str


@dataclass(frozen=True, slots=True)
class CatalogueDocument:
    """A whole catalogue file, checked; ``warnings`` are for people, not errors."""

    images: tuple[ImageEntry, ...] = ()
    messages: tuple[MessageEntry, ...] = ()
    defaults: tuple[DefaultEntry, ...] = ()
    warnings: tuple[str, ...] = ()
