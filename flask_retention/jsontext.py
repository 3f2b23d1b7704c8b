"""JSON for the request path: ``json.loads`` through the decoder's C scanner without the
wrapping, and one compact encoder for every answer.

``json.loads`` detects the encoding of bytes, decodes them, and matches
whitespace before and after the value with regular expressions; for the
usual text, exactly one JSON value with nothing around it, that is a third
of its time on a real-time request's body. These functions give the same
value, and raise where it raises, by reading such text with the scanner
alone and handing everything else to ``json.loads`` itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

_Scanner = Callable[[str, int], tuple[Any, int]]
#: The default decoder's scanner (typeshed does not declare ``scan_once``).
_scan: Final[_Scanner] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


_encode: Final = json.JSONEncoder(separators=(",", ":")).encode


def dumps_compact(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON (no spaces), as the endpoints answer."""
    return _encode(value).encode()


def loads_text(text: str) -> Any:
    """``json.loads(text)``: the same value, or the same kind of error (``ValueError``,
    ``RecursionError``)."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:  # no value starts here (nothing, whitespace, a BOM): json.loads says
        return json.loads(text)
    if end != len(text):  # something follows the value
        return json.loads(text)
    return value


def loads_body(body: bytes) -> Any:
    """``json.loads(body)`` for a request body: UTF-8 that starts with ``{`` goes through
    :func:`loads_text`; anything else, and anything it refuses, through ``json.loads``
    (which detects UTF-16 and UTF-32, and raises its own error)."""
    if body[:1] == b"{":
        try:
            return loads_text(body.decode("utf-8"))
        except ValueError:
            pass
    return json.loads(body)
