"""Text every database takes: what the decision log and the notifications endpoint store."""

from __future__ import annotations

import pytest

from flask_retention.insights.rows import REPLACEMENT, clean_text


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("1000000000000001", "1000000000000001"),
        ("1000\x000000001", "10000000001"),
        ("\x00", ""),
        ("en-\ud800US", f"en-{REPLACEMENT}US"),
        ("\udfff\ud800", REPLACEMENT * 2),  # a low then a high half is no pair
        ("Grüße 👋 \x00\ud83d", f"Grüße 👋 {REPLACEMENT}"),
        ("日本語", "日本語"),
    ],
)
def test_nul_characters_are_removed_and_lone_surrogates_replaced(text: str, stored: str) -> None:
    assert clean_text(text) == stored
    clean_text(text).encode("utf-8")  # any driver can send it


def test_clean_text_is_safe_to_repeat() -> None:
    once = clean_text("a\x00b\udc00c")
    assert clean_text(once) == once
