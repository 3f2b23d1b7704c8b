"""The fallback chain: which translation answers a subscriber's ``userLocale``, and why."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from flask_retention.catalogue.locales import (
    DEFAULT_CHAIN,
    Chooser,
    Pick,
    chain_overrides,
    check_chain,
    language_of,
    merge_chain,
    pick_translation,
    script_of,
)
from flask_retention.catalogue.validation import KNOWN_LOCALES


def pick(
    requested: str,
    available: dict[str, bool],
    *,
    base_fallback: bool = False,
    chain: Mapping[str, Sequence[str]] | None = None,
) -> Pick:
    return pick_translation(
        requested,
        available,
        chain=DEFAULT_CHAIN if chain is None else chain,
        base_locale="en-US",
        base_fallback=base_fallback,
    )


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("locale", "language", "script"),
    [
        ("en-US", "en", "Latn"),
        ("zh-Hans", "zh", "Hans"),
        ("zh-Hant-HK", "zh", "Hant"),
        ("zh-TW", "zh", "Hant"),
        ("zh", "zh", "Hans"),
        ("es-419", "es", "Latn"),
        ("sr-Latn", "sr", "Latn"),
        ("sr-RS", "sr", "Cyrl"),
        ("xx-YY", "xx", None),
    ],
)
def test_language_and_script_of_a_code(locale: str, language: str, script: str | None) -> None:
    assert (language_of(locale), script_of(locale)) == (language, script)


@pytest.mark.parametrize("locale", ["en_US", "english", "", "en-us"])
def test_malformed_codes_have_no_language_or_script(locale: str) -> None:
    assert (language_of(locale), script_of(locale)) == (None, None)


# --------------------------------------------------------------------------- the order


def test_the_exact_locale_answers_first() -> None:
    assert pick("fr-CA", {"en-US": True, "fr-CA": True, "fr-FR": True}) == Pick("fr-CA", "exact")


def test_the_language_only_code_answers_a_regional_locale() -> None:
    assert pick("it-IT", {"en-US": True, "it": True}) == Pick("it", "language")


def test_a_regional_code_answers_a_language_only_locale_through_the_chain() -> None:
    assert pick("it", {"en-US": True, "it-IT": True}) == Pick("it-IT", "region")


def test_the_same_language_in_another_region_answers_through_the_chain() -> None:
    assert pick("fr-CA", {"en-US": True, "fr-FR": True}) == Pick("fr-FR", "region")


def test_regions_are_tried_in_the_chains_order() -> None:
    available = {"en-US": True, "en-GB": True, "en-CA": True}
    assert pick("en-AU", available).locale == DEFAULT_CHAIN["en-AU"][0] == "en-GB"
    assert pick("en-AU", available, chain={"en-AU": ["en-CA", "en-GB"]}).locale == "en-CA"


def test_the_base_locale_is_a_translation_like_the_others() -> None:
    assert pick("en-GB", {"en-US": True}) == Pick("en-US", "region")


@pytest.mark.parametrize("requested", ["zh-Hant", "zh-Hant-HK", "zh-TW"])
def test_simplified_chinese_never_answers_traditional(requested: str) -> None:
    available = {"en-US": True, "zh-Hans": True, "zh": True}
    assert pick(requested, available) == Pick(None, "none")
    assert pick(requested, available, base_fallback=True) == Pick("en-US", "base")


@pytest.mark.parametrize("requested", ["zh-Hans", "zh-CN"])
def test_traditional_chinese_never_answers_simplified(requested: str) -> None:
    assert pick(requested, {"en-US": True, "zh-Hant": True}) == Pick(None, "none")


@pytest.mark.parametrize("requested", ["zh-Hant-HK", "zh-TW", "zh-HK"])
def test_traditional_chinese_answers_every_traditional_region(requested: str) -> None:
    assert pick(requested, {"en-US": True, "zh-Hant": True}) == Pick("zh-Hant", "language")


def test_a_chain_that_crosses_scripts_is_not_followed() -> None:
    chain = {"zh-Hant": ["zh-Hans"], "sr-Latn": ["sr-RS"]}
    assert pick("zh-Hant", {"en-US": True, "zh-Hans": True}, chain=chain) == Pick(None, "none")
    assert pick("sr-Latn", {"en-US": True, "sr-RS": True}, chain=chain) == Pick(None, "none")


def test_an_empty_chain_entry_means_no_stand_in() -> None:
    chain = merge_chain({"pt-PT": []})
    assert pick("pt-PT", {"en-US": True, "pt-BR": True}, chain=chain) == Pick(None, "none")
    assert pick("pt-BR", {"en-US": True, "pt-PT": True}, chain=chain) == Pick("pt-PT", "region")


def test_a_locale_the_chain_does_not_list_takes_its_language_in_other_regions() -> None:
    assert pick("pt-AO", {"en-US": True, "pt-PT": True}) == Pick("pt-PT", "region")


def test_a_locale_the_chain_does_not_list_takes_known_regions_in_code_order() -> None:
    chooser = Chooser(base_locale="en-US", base_fallback=False)
    assert [code for code, _ in chooser.candidates("fr-BE")] == ["fr-BE", "fr", "fr-CA", "fr-FR"]


# --------------------------------------------------------------------------- pending, base, none


def test_a_pending_translation_is_skipped_and_recorded() -> None:
    available = {"en-US": True, "fr-CA": False, "fr-FR": True}
    assert pick("fr-CA", available) == Pick("fr-FR", "region", (("fr-CA", "pending"),))


def test_every_pending_candidate_is_recorded_in_order() -> None:
    available = {"en-US": True, "it-IT": False, "it": False}
    assert pick("it-IT", available) == Pick(None, "none", (("it-IT", "pending"), ("it", "pending")))


def test_the_base_text_answers_another_language_only_when_the_catalogue_allows_it() -> None:
    available = {"en-US": True, "fr-FR": False}
    skipped = (("fr-FR", "pending"),)
    assert pick("fr-CA", available) == Pick(None, "none", skipped)
    assert pick("fr-CA", available, base_fallback=True) == Pick("en-US", "base", skipped)


def test_a_pending_base_text_answers_nobody() -> None:
    available = {"en-US": False, "fr-FR": True}
    assert pick("de-DE", available, base_fallback=True) == Pick(
        None, "none", (("en-US", "pending"),)
    )


@pytest.mark.parametrize("requested", ["en_US", "english", "", "fr-ca"])
def test_a_malformed_requested_locale_falls_to_the_base_text_or_nothing(requested: str) -> None:
    available = {"en-US": True, "fr-CA": True}
    assert pick(requested, available) == Pick(None, "none")
    assert pick(requested, available, base_fallback=True) == Pick("en-US", "base")


def test_an_unknown_language_falls_to_the_base_text_or_nothing() -> None:
    available = {"en-US": True, "fr-FR": True}
    assert pick("xx-YY", available) == Pick(None, "none")
    assert pick("xx-YY", available, base_fallback=True) == Pick("en-US", "base")


def test_one_chooser_picks_for_many_locales_what_pick_translation_picks() -> None:
    available = {"en-US": True, "fr-FR": False, "it": True, "zh-Hant": True, "pt-PT": True}
    chain = merge_chain({"en-AU": ["en-US"]})
    expected = {
        "fr-CA": Pick("en-US", "base", (("fr-FR", "pending"),)),
        "it-IT": Pick("it", "language"),
        "zh-TW": Pick("zh-Hant", "language"),
        "en-AU": Pick("en-US", "region"),
        "pt-AO": Pick("pt-PT", "region"),
        "xx-YY": Pick("en-US", "base"),
        "en_US": Pick("en-US", "base"),
        "zh": Pick("en-US", "base"),
    }
    chooser = Chooser(chain, base_locale="en-US", base_fallback=True)
    for _ in range(2):  # the same chooser answers every request of a snapshot
        assert {r: chooser.pick(r, available) for r in expected} == expected
    assert {r: pick(r, available, base_fallback=True, chain=chain) for r in expected} == expected


def test_a_malformed_base_locale_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match=r"base_locale: 'en_US' uses an underscore.*write en-US"):
        Chooser(base_locale="en_US", base_fallback=False)


# --------------------------------------------------------------------------- the table


def test_the_shipped_chain_passes_its_own_checks() -> None:
    assert check_chain(DEFAULT_CHAIN) == ([], [])


def test_every_known_locale_reaches_its_known_siblings_and_never_another_script() -> None:
    chooser = Chooser(base_locale="en-US", base_fallback=False)
    unreached: list[tuple[str, str]] = []
    crossing: list[tuple[str, str]] = []
    for code in sorted(KNOWN_LOCALES):
        candidates = [candidate for candidate, _ in chooser.candidates(code)]
        writing = (language_of(code), script_of(code))
        unreached.extend(
            (code, other)
            for other in sorted(KNOWN_LOCALES)
            if (language_of(other), script_of(other)) == writing and other not in candidates
        )
        crossing.extend(
            (code, candidate)
            for candidate in candidates
            if (language_of(candidate), script_of(candidate)) != writing
        )
    assert (unreached, crossing) == ([], [])


@pytest.mark.parametrize(
    ("table", "error"),
    [
        (
            {"en_GB": ["en-US"]},
            "languages.chain.en_GB: 'en_GB' uses an underscore; "
            "App Store locale short codes use hyphens: write en-GB",
        ),
        (
            {"fr-CA": ["fr-fr"]},
            "languages.chain.fr-CA[0]: 'fr-fr' has the wrong case; "
            "locale short codes are case-sensitive: write fr-FR",
        ),
        (
            {"zh-Hant": ["zh-Hans"]},
            "languages.chain.zh-Hant[0]: zh-Hans (script Hans) cannot stand in for zh-Hant "
            "(script Hant): stand-ins never cross scripts; remove it",
        ),
        (
            {"fr-CA": ["fr-CA"]},
            "languages.chain.fr-CA[0]: fr-CA stands in for itself; list only other locales",
        ),
        (
            {"ca-ES": ["es-ES"]},
            "languages.chain.ca-ES[0]: es-ES is another language than ca-ES; the chain lists "
            "the same language in other regions (base_fallback shows the base text instead)",
        ),
        (
            {"fr-CA": "fr-FR"},
            'languages.chain.fr-CA: must be a list of locale codes: write ["fr-FR"], not "fr-FR"',
        ),
        (
            {"fr-CA": [3]},
            "languages.chain.fr-CA[0]: must be a string, not a number",
        ),
    ],
)
def test_chain_table_errors_name_the_entry_and_the_fix(
    table: dict[str, object], error: str
) -> None:
    assert check_chain(table) == ([error], [])


def test_unknown_well_formed_codes_in_the_chain_are_warnings() -> None:
    errors, warnings = check_chain({"fr-BE": ["fr-FR", "fr-CH"]})
    assert errors == []
    assert [w.split(":")[0] for w in warnings] == [
        "languages.chain.fr-BE",
        "languages.chain.fr-BE[1]",
    ]
    assert "'fr-CH' is not one of the App Store locale short codes" in warnings[1]


def test_a_stand_in_listed_twice_is_a_warning() -> None:
    assert check_chain({"fr-CA": ["fr-FR", "fr-FR"]}, where="chain") == (
        [],
        ["chain.fr-CA[1]: fr-FR is listed twice; the second is never used"],
    )


def test_merge_chain_replaces_only_the_locales_it_lists() -> None:
    merged = merge_chain({"fr-CA": [], "en-IN": ["en-GB", "en-US"]})
    assert merged["fr-CA"] == ()
    assert merged["en-IN"] == ("en-GB", "en-US")
    assert merged["fr-FR"] == DEFAULT_CHAIN["fr-FR"]
    assert DEFAULT_CHAIN["fr-CA"] == ("fr-FR",)


def test_chain_overrides_are_what_merge_chain_needs_to_rebuild_a_table() -> None:
    table = merge_chain({"fr-CA": [], "en-IN": ["en-GB"]})
    del table["pt-PT"]
    overrides = chain_overrides(table)
    assert overrides == {"fr-CA": (), "en-IN": ("en-GB",), "pt-PT": ()}
    assert chain_overrides(DEFAULT_CHAIN) == {}
    rebuilt = merge_chain(overrides)
    assert {k: v for k, v in rebuilt.items() if v} == {k: v for k, v in table.items() if v}
