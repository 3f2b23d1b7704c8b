"""Read and write just enough PNG to check and make Apple's retention images.

Apple accepts PNG files without transparency at two sizes. :func:`read_png_info`
walks the chunk structure (signature, ``IHDR`` first, every CRC, through
``IEND``) without decoding pixels, which is all the checks need.
:func:`encode_png` makes real, solid-colour PNG files with the standard
library, for tests, examples and apps that need placeholder images.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Final

PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"

#: Allowed bit depths for each PNG colour type (PNG specification, section 11.2.2).
_BIT_DEPTHS: Final[dict[int, tuple[int, ...]]] = {
    0: (1, 2, 4, 8, 16),  # greyscale
    2: (8, 16),  # RGB
    3: (1, 2, 4, 8),  # palette
    4: (8, 16),  # greyscale + alpha
    6: (8, 16),  # RGBA
}
_COLOR_TYPE_NAMES: Final[dict[int, str]] = {
    0: "greyscale",
    2: "RGB",
    3: "palette",
    4: "greyscale with alpha",
    6: "RGBA",
}
_MAX_DIMENSION: Final = 2**31 - 1


@dataclass(frozen=True, slots=True)
class PNGInfo:
    """What the ``IHDR`` and ancillary chunks say about a PNG image."""

    width: int
    height: int
    bit_depth: int
    color_type: int
    has_alpha_channel: bool
    has_trns: bool

    @property
    def has_transparency(self) -> bool:
        """Whether the image can be transparent anywhere (alpha channel or ``tRNS``)."""
        return self.has_alpha_channel or self.has_trns

    @property
    def color_type_name(self) -> str:
        """The colour type in words, e.g. ``"RGBA"``."""
        return _COLOR_TYPE_NAMES.get(self.color_type, f"type {self.color_type}")


def read_png_info(data: bytes | bytearray | memoryview) -> PNGInfo:
    """Parse a PNG file's chunks and return its size, colour type and transparency.

    Every chunk's CRC is checked and the file must end with ``IEND`` (bytes after
    it are ignored, as decoders do). Raises :class:`ValueError` saying what is
    wrong for data that is not a PNG, is truncated or is corrupt.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"PNG data must be bytes, not {type(data).__name__}")
    view = memoryview(data)
    if len(view) == 0:
        raise ValueError("not a PNG file: it is empty")
    if bytes(view[:8]) != PNG_SIGNATURE:
        if PNG_SIGNATURE.startswith(bytes(view[:8])):
            raise ValueError(f"truncated PNG file: only {len(view)} bytes")
        raise ValueError(f"not a PNG file: it does not start with the PNG signature{_sniff(view)}")

    offset = 8
    header: tuple[int, int, int, int] | None = None
    has_trns = False
    has_plte = False
    has_idat = False
    index = 0
    while True:
        if offset + 8 > len(view):
            raise ValueError(
                f"truncated PNG file: it ends after {len(view)} bytes, before the IEND chunk"
            )
        length, chunk_type = struct.unpack(">I4s", view[offset : offset + 8])
        if length > _MAX_DIMENSION:
            raise ValueError(f"corrupt PNG file: chunk {index} declares a length of {length} bytes")
        end = offset + 12 + length
        if end > len(view):
            raise ValueError(
                f"truncated PNG file: the {_name(chunk_type)} chunk at byte {offset} needs "
                f"{length} bytes of data but the file ends after {len(view)} bytes"
            )
        if not all(65 <= c <= 90 or 97 <= c <= 122 for c in chunk_type):
            raise ValueError(
                f"corrupt PNG file: invalid chunk type {chunk_type!r} at byte {offset}"
            )
        body = view[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", view[end - 4 : end])
        if zlib.crc32(body, zlib.crc32(chunk_type)) != crc:
            raise ValueError(
                f"corrupt PNG file: CRC mismatch in the {_name(chunk_type)} chunk at byte {offset}"
            )
        if index == 0:
            if chunk_type != b"IHDR":
                raise ValueError(
                    f"corrupt PNG file: the first chunk is {_name(chunk_type)}, not IHDR"
                )
            header = _parse_ihdr(body)
        elif chunk_type == b"IHDR":
            raise ValueError("corrupt PNG file: more than one IHDR chunk")
        elif chunk_type == b"tRNS":
            has_trns = True
        elif chunk_type == b"PLTE":
            has_plte = True
        elif chunk_type == b"IDAT":
            has_idat = True
        elif chunk_type == b"IEND":
            break
        offset = end
        index += 1

    assert header is not None
    width, height, bit_depth, color_type = header
    if not has_idat:
        raise ValueError("corrupt PNG file: it has no image data (no IDAT chunk)")
    if color_type == 3 and not has_plte:
        raise ValueError("corrupt PNG file: a palette image without a PLTE chunk")
    return PNGInfo(
        width=width,
        height=height,
        bit_depth=bit_depth,
        color_type=color_type,
        has_alpha_channel=color_type in (4, 6),
        has_trns=has_trns,
    )


def _parse_ihdr(body: memoryview) -> tuple[int, int, int, int]:
    if len(body) != 13:
        raise ValueError(f"corrupt PNG file: IHDR has {len(body)} bytes instead of 13")
    width, height, bit_depth, color_type, compression, filter_method, interlace = struct.unpack(
        ">IIBBBBB", body
    )
    if not (0 < width <= _MAX_DIMENSION and 0 < height <= _MAX_DIMENSION):
        raise ValueError(f"corrupt PNG file: invalid dimensions {width}x{height}")
    if color_type not in _BIT_DEPTHS:
        raise ValueError(f"corrupt PNG file: unknown colour type {color_type}")
    if bit_depth not in _BIT_DEPTHS[color_type]:
        raise ValueError(
            f"corrupt PNG file: bit depth {bit_depth} is not allowed with colour type "
            f"{color_type} ({_COLOR_TYPE_NAMES[color_type]})"
        )
    if compression != 0 or filter_method != 0 or interlace not in (0, 1):
        raise ValueError("corrupt PNG file: unknown compression, filter or interlace method")
    return width, height, bit_depth, color_type


def _name(chunk_type: bytes) -> str:
    return chunk_type.decode("latin-1")


def _sniff(view: memoryview) -> str:
    start = bytes(view[:16])
    for magic, kind in (
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"GIF8", "a GIF image"),
        (b"RIFF", "a RIFF file (WebP?)"),
        (b"%PDF", "a PDF document"),
        (b"BM", "a BMP image"),
        (b"II*\x00", "a TIFF image"),
        (b"MM\x00*", "a TIFF image"),
        (b"<", "text (HTML, XML or SVG?)"),
    ):
        if start.startswith(magic):
            return f"; it looks like {kind}"
    if start[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1"):
        return "; it looks like a HEIC image"
    return ""


def _chunk(chunk_type: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(body, zlib.crc32(chunk_type))
    return struct.pack(">I", len(body)) + chunk_type + body + struct.pack(">I", crc)


def encode_png(
    width: int,
    height: int,
    *,
    color: tuple[int, int, int] = (0, 122, 255),
    alpha: bool = False,
    trns: bool = False,
) -> bytes:
    """Return a valid 8-bit PNG file of one solid colour.

    ``alpha`` makes it RGBA (fully opaque, but with an alpha channel, which
    Apple refuses); ``trns`` adds a ``tRNS`` colour key to an RGB image (also
    refused). Solid colour compresses to a few kilobytes even at 3840 px.
    """
    if isinstance(width, bool) or isinstance(height, bool) or width < 1 or height < 1:
        raise ValueError(f"PNG dimensions must be positive integers, not {width}x{height}")
    if width > _MAX_DIMENSION or height > _MAX_DIMENSION:
        raise ValueError(f"PNG dimensions must be below 2**31, not {width}x{height}")
    if len(color) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in color):
        raise ValueError(f"color must be three integers 0-255, not {color!r}")
    if alpha and trns:
        raise ValueError("a PNG with an alpha channel cannot have a tRNS chunk")
    color_type = 6 if alpha else 2
    pixel = bytes(color) + (b"\xff" if alpha else b"")
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    # Filter "Sub" (1) makes every row after its first pixel zeros, and "Up" (2)
    # makes every later row all zeros: a solid image deflates to almost nothing.
    first_row = b"\x01" + pixel + bytes(len(pixel) * (width - 1))
    other_row = b"\x02" + bytes(len(pixel) * width)
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(first_row)]
    parts.extend(compressor.compress(other_row) for _ in range(height - 1))
    parts.append(compressor.flush())
    chunks = [PNG_SIGNATURE, _chunk(b"IHDR", header)]
    if trns:
        chunks.append(_chunk(b"tRNS", struct.pack(">HHH", *color)))
    chunks.append(_chunk(b"IDAT", b"".join(parts)))
    chunks.append(_chunk(b"IEND", b""))
    return b"".join(chunks)
