"""PNG reading and writing: chunk parsing, CRCs, transparency, and real encoded images."""

from __future__ import annotations

import struct
import zlib

import pytest

from flask_retention.catalogue.png import PNG_SIGNATURE, PNGInfo, encode_png, read_png_info


def chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body)
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def ihdr(width: int = 4, height: int = 4, bit_depth: int = 8, color_type: int = 2) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))


IDAT = chunk(b"IDAT", zlib.compress(bytes(4 * (1 + 4 * 3))))
IEND = chunk(b"IEND", b"")


def decode_rgb(data: bytes) -> tuple[int, int, list[list[tuple[int, ...]]]]:
    """A small independent decoder for 8-bit RGB/RGBA PNGs (all five filter types)."""
    pos = 8
    idat = b""
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, _depth, color_type = struct.unpack(">IIBB", body[:10])
            channels = 4 if color_type == 6 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind_byte = raw[start]
        row = bytearray(raw[start + 1 : start + 1 + stride])
        for x in range(stride):
            left = row[x - channels] if x >= channels else 0
            up = previous[x]
            up_left = previous[x - channels] if x >= channels else 0
            if kind_byte == 1:
                row[x] = (row[x] + left) & 0xFF
            elif kind_byte == 2:
                row[x] = (row[x] + up) & 0xFF
            elif kind_byte == 3:
                row[x] = (row[x] + (left + up) // 2) & 0xFF
            elif kind_byte == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else up_left
                row[x] = (row[x] + pred) & 0xFF
        rows.append(row)
        previous = row
    pixels = [[tuple(row[x * channels : (x + 1) * channels]) for x in range(width)] for row in rows]
    return width, height, pixels


def test_encoded_png_decodes_to_the_solid_colour() -> None:
    data = encode_png(7, 5, color=(10, 200, 33))
    width, height, pixels = decode_rgb(data)
    assert (width, height) == (7, 5)
    assert {pixel for row in pixels for pixel in row} == {(10, 200, 33)}


def test_encoded_rgba_png_is_opaque_with_an_alpha_channel() -> None:
    data = encode_png(3, 2, color=(1, 2, 3), alpha=True)
    _, _, pixels = decode_rgb(data)
    assert {pixel for row in pixels for pixel in row} == {(1, 2, 3, 255)}
    assert read_png_info(data).has_alpha_channel


@pytest.mark.parametrize(
    ("width", "height", "alpha", "trns", "expected"),
    [
        (3840, 160, False, False, PNGInfo(3840, 160, 8, 2, False, False)),
        (3840, 2160, False, False, PNGInfo(3840, 2160, 8, 2, False, False)),
        (1024, 1024, False, False, PNGInfo(1024, 1024, 8, 2, False, False)),
        (1024, 1024, True, False, PNGInfo(1024, 1024, 8, 6, True, False)),
        (1024, 1024, False, True, PNGInfo(1024, 1024, 8, 2, False, True)),
    ],
)
def test_read_png_info_of_encoded_images(
    width: int, height: int, alpha: bool, trns: bool, expected: PNGInfo
) -> None:
    assert read_png_info(encode_png(width, height, alpha=alpha, trns=trns)) == expected


def test_full_size_solid_png_is_small() -> None:
    assert len(encode_png(3840, 2160)) < 100_000


def test_encoded_png_is_byte_for_byte_repeatable() -> None:
    assert encode_png(64, 32, color=(5, 6, 7)) == encode_png(64, 32, color=(5, 6, 7))
    assert encode_png(64, 32, color=(5, 6, 7)) != encode_png(64, 32, color=(5, 6, 8))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 0, "height": 4}, "positive"),
        ({"width": 4, "height": -1}, "positive"),
        ({"width": 4, "height": 4, "color": (0, 0, 256)}, "0-255"),
        ({"width": 4, "height": 4, "color": (0, 0)}, "0-255"),
        ({"width": 4, "height": 4, "alpha": True, "trns": True}, "tRNS"),
    ],
)
def test_encode_png_refuses_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_png(**kwargs)  # type: ignore[arg-type]


def test_trns_chunk_is_detected_wherever_it_is() -> None:
    png = PNG_SIGNATURE + ihdr() + chunk(b"tRNS", b"\x00\x00\x00\x00\x00\x00") + IDAT + IEND
    assert read_png_info(png).has_trns
    assert not read_png_info(PNG_SIGNATURE + ihdr() + IDAT + IEND).has_trns


def test_palette_image_with_trns_is_transparent() -> None:
    plte = chunk(b"PLTE", b"\x00\x00\x00\xff\xff\xff")
    png = PNG_SIGNATURE + ihdr(color_type=3) + plte + chunk(b"tRNS", b"\x00") + IDAT + IEND
    info = read_png_info(png)
    assert info.color_type == 3
    assert info.has_transparency
    assert not info.has_alpha_channel


def test_greyscale_with_alpha_has_an_alpha_channel() -> None:
    info = read_png_info(PNG_SIGNATURE + ihdr(color_type=4) + IDAT + IEND)
    assert info.has_alpha_channel
    assert info.color_type_name == "greyscale with alpha"


def test_bytes_after_iend_are_ignored() -> None:
    assert read_png_info(encode_png(4, 4) + b"trailing garbage").width == 4


def flip_byte(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :]


GOOD = encode_png(16, 16)


BAD_PNGS = [
    (b"", "not a PNG file: it is empty"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "not a PNG file.*JPEG"),
    (b"GIF89a" + bytes(20), "not a PNG file.*GIF"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not a PNG file.*SVG"),
    (b"hello world, not an image", "not a PNG file: it does not start"),
    (PNG_SIGNATURE[:5], "truncated PNG file: only 5 bytes"),
    (PNG_SIGNATURE, "truncated PNG file: it ends after 8 bytes"),
    (GOOD[:50], "truncated PNG file: the IDAT chunk"),
    (GOOD[: len(GOOD) - 12], "truncated PNG file.*before the IEND chunk"),
    (flip_byte(GOOD, 20), "CRC mismatch in the IHDR chunk"),
    (flip_byte(GOOD, 45), "CRC mismatch in the IDAT chunk"),
    (flip_byte(GOOD, len(GOOD) - 1), "CRC mismatch in the IEND chunk"),
    (PNG_SIGNATURE + IDAT + IEND, "the first chunk is IDAT, not IHDR"),
    (PNG_SIGNATURE + ihdr() + ihdr() + IDAT + IEND, "more than one IHDR"),
    (PNG_SIGNATURE + ihdr() + IEND, "no image data"),
    (PNG_SIGNATURE + ihdr(width=0) + IDAT + IEND, "invalid dimensions 0x4"),
    (PNG_SIGNATURE + ihdr(color_type=5) + IDAT + IEND, "unknown colour type 5"),
    (PNG_SIGNATURE + ihdr(bit_depth=4, color_type=2) + IDAT + IEND, "bit depth 4"),
    (PNG_SIGNATURE + ihdr(color_type=3) + IDAT + IEND, "without a PLTE chunk"),
    (PNG_SIGNATURE + chunk(b"IHDR", b"\x00" * 12) + IDAT + IEND, "IHDR has 12 bytes"),
    (PNG_SIGNATURE + ihdr() + chunk(b"I\x00AT", b"") + IEND, "invalid chunk type"),
]


@pytest.mark.parametrize(("data", "message"), BAD_PNGS, ids=[m for _, m in BAD_PNGS])
def test_read_png_info_refuses_bad_data(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_png_info(data)


def test_read_png_info_accepts_bytearray_and_memoryview() -> None:
    assert read_png_info(bytearray(GOOD)) == read_png_info(GOOD)
    assert read_png_info(memoryview(GOOD)) == read_png_info(GOOD)


def test_read_png_info_refuses_text() -> None:
    with pytest.raises(TypeError, match="bytes, not str"):
        read_png_info("\x89PNG")  # type: ignore[arg-type]
