"""Helpers for tests that talk to :class:`~flask_retention.testing.FakeAppStore` over HTTP."""

from __future__ import annotations

import struct
import time
import uuid
import zlib
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec

BASE = "/inApps/v1/messaging"
KEY_ID = "ABCDEFGHIJ"
ISSUER = "57246542-96fe-1a63-e053-0824d011072a"
BUNDLE = "com.example.app"


def png(width: int, height: int, colour_type: int = 2, *, transparency: bool = False) -> bytes:
    """A real PNG of one flat colour (RGB by default; 6 = RGBA)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    row = b"\x00" + b"\x20" * (width * channels)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    chunks = [chunk(b"IHDR", ihdr)]
    if transparency:
        chunks.append(chunk(b"tRNS", b"\x00\x20\x00\x20\x00\x20"))
    chunks.append(chunk(b"IDAT", zlib.compress(row * height, 1)))
    chunks.append(chunk(b"IEND", b""))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


FULL = png(3840, 160)
BULLET = png(1024, 1024)


def make_token(key: ec.EllipticCurvePrivateKey, **overrides: Any) -> str:
    """An App Store Server API token; ``overrides`` replace claims (``None`` drops one; a
    callable gets the token's ``iat`` and returns the claim, so times stay relative)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "iat": now,
        "exp": now + 300,
        "aud": "appstoreconnect-v1",
        "bid": BUNDLE,
    }
    headers = {"kid": overrides.pop("kid", KEY_ID), "typ": "JWT"}
    if headers["kid"] is None:
        del headers["kid"]
    claims.update({k: v(now) if callable(v) else v for k, v in overrides.items()})
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode(claims, key, algorithm="ES256", headers=headers)


class Api:
    """An httpx client that signs each request with a fresh token, as Apple advises."""

    def __init__(self, url: str, key: ec.EllipticCurvePrivateKey, **token: Any) -> None:
        self.http = httpx.Client(base_url=url + BASE, timeout=5)
        self.key = key
        self.token = token

    def __call__(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {make_token(self.key, **self.token)}"}
        headers.update(kwargs.pop("headers", {}))
        return self.http.request(method, path, headers=headers, **kwargs)

    def upload_image(self, size: str = "FULL_SIZE", data: bytes | None = None) -> str:
        identifier = str(uuid.uuid4())
        body = data if data is not None else (BULLET if size == "BULLET_POINT" else FULL)
        response = self(
            "PUT",
            f"/image/{identifier}",
            params={"imageSize": size},
            content=body,
            headers={"Content-Type": "image/png"},
        )
        assert response.status_code == 200, response.text
        return identifier

    def upload_message(self, **body: Any) -> str:
        identifier = str(uuid.uuid4())
        response = self("PUT", f"/message/{identifier}", json={"header": "H", "body": "B", **body})
        assert response.status_code == 200, response.text
        return identifier


def error_code(response: httpx.Response) -> int:
    assert response.headers["Content-Type"] == "application/json"
    code: int = response.json()["errorCode"]
    return code
