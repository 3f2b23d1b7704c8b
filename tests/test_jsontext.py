"""The request path's JSON reading gives what json.loads gives, value or error."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flask_retention.jsontext import loads_body, loads_text

NESTED = b'{"a":' * 100_000 + b"1" + b"}" * 100_000

BODIES = [
    b"",
    b" ",
    b"{}",
    b" {}",
    b"{} ",
    b"{}x",
    b"{}{}",
    b"[]",
    b"1",
    b'"x"',
    b"null",
    b'{"signedPayload":"a.b.c"}',
    b'{"a":NaN,"b":-Infinity,"c":1e400,"d":1.5,"e":123456789012345678901234567890}',
    b'{"a":1,"a":2}',
    b'{"a":"\\ud800"}',
    b'{"a":"\xed\xa0\x80"}',  # a surrogate, encoded: json.loads lets it through
    b'{"a":"\x01"}',
    b'{"\xc3\xa9":"\xe2\x82\xac"}',
    b'{"a":\xff}',
    b'{"a":1,}',
    b"{'a':1}",
    b'\xef\xbb\xbf{"a":1}',
    '{"a":"é"}'.encode("utf-16-le"),
    '{"a":"é"}'.encode("utf-16"),
    '{"a":"é"}'.encode("utf-32-le"),
    NESTED,
]


def outcome(read: Any, data: Any) -> str:
    try:
        return repr(read(data))
    except (ValueError, RecursionError) as e:
        return type(e).__name__ if isinstance(e, RecursionError) else "ValueError"


@pytest.mark.parametrize("body", BODIES, ids=lambda b: f"{b[:20]!r}")
def test_a_body_is_read_as_json_loads_reads_it(body: bytes) -> None:
    assert outcome(loads_body, body) == outcome(json.loads, body)


def utf8_texts() -> list[str]:
    texts = []
    for body in BODIES:
        try:
            texts.append(body.decode("utf-8"))
        except UnicodeDecodeError:
            continue
    return texts


@pytest.mark.parametrize("text", utf8_texts(), ids=lambda t: f"{t[:20]!r}")
def test_a_text_is_read_as_json_loads_reads_it(text: str) -> None:
    assert outcome(loads_text, text) == outcome(json.loads, text)
