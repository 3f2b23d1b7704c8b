"""Which translation of a message answers a subscriber's ``userLocale``: the fallback chain.

Apple's messages are not localised: every translation of a catalogue message
is its own Apple message. A real-time request names the subscriber's locale
(``userLocale``, an App Store locale short code such as ``fr-CA``, spec
section 2.4) and the selector names a message; this module picks the
translation, in memory and without the database, so that the endpoint and
sync (which configures each (product, locale) default with the same pick)
agree on every host.

The order, for a requested locale *R* (see :class:`Chooser`):

1. **exact**: the translation keyed *R*;
2. **language**: the less specific codes of *R* in the same script:
   ``it`` for ``it-IT``, ``zh-Hant`` for ``zh-Hant-HK`` or ``zh-TW``;
3. **region**: the same language in other regions, in the order *R*'s entry
   of the chain lists them (``fr-CA`` -> ``fr-FR``). A locale the chain does
   not list (Apple adds codes) takes every other code of its language and
   script that flask-retention knows (:data:`KNOWN_LOCALES`, the chain's
   codes, the base locale), in code order; a locale the chain lists takes
   exactly its list, so an empty list means "no stand-in";
4. **base**: the base text, when the catalogue allows it (``base_fallback``);
5. **none**: nothing, and the endpoint's usual fallback answers.

Stand-ins never cross scripts: ``zh-Hans`` and ``zh-Hant`` never stand in
for each other, whatever the chain says (:func:`check_chain` refuses such a
table, and :class:`Chooser` leaves such entries out). The script of a code
without one is the language's usual script, or the region's for Chinese
(``zh-TW``, ``zh-HK`` and ``zh-MO`` are Traditional; ``zh`` alone is
Simplified, as in CLDR's likely subtags).

The shipped table, :data:`DEFAULT_CHAIN`, covers the App Store's codes that
have a same-language sibling (:data:`~flask_retention.catalogue.validation.KNOWN_LOCALES`):

- English follows spelling: ``en-GB``, ``en-AU`` and ``en-CA`` write
  *colour* and *favourite* (CLDR groups them under ``en-001``) and stand in
  for each other before ``en-US``; ``en-US`` takes ``en-CA`` first (the
  nearest vocabulary), then ``en-GB`` and ``en-AU``.
- French, Portuguese and Spanish have one sibling each in the App Store
  (``fr-CA``/``fr-FR``, ``pt-BR``/``pt-PT``, ``es-MX``/``es-ES``) and take
  it: a Canadian reading French from France beats reading English.
- A bare language code (``it``, ``ja``, ``sv``, ...: App Store Connect's
  codes for languages sold in one region) takes its region's code
  (``it-IT``); the other way round needs no entry (step 2).
- Chinese has no entry: ``zh-Hans`` and ``zh-Hant`` are different scripts,
  and step 2 already serves ``zh-Hant-HK`` and ``zh-TW`` from ``zh-Hant``.

A catalogue file's ``[languages.chain]`` replaces the shipped entries of the
locales it lists (:func:`merge_chain`); :func:`check_chain` checks it like
every locale code of the catalogue.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, NamedTuple

from flask_retention.catalogue.validation import (
    KNOWN_LOCALES,
    key_label,
    locale_problem,
    locale_warning,
)

__all__ = [
    "DEFAULT_CHAIN",
    "Chooser",
    "LocaleParts",
    "Pick",
    "PickReason",
    "chain_overrides",
    "check_chain",
    "language_of",
    "merge_chain",
    "parse_locale",
    "pick_translation",
    "script_of",
]

#: Why a translation answered: the step of the chain that found it.
PickReason = Literal["exact", "language", "region", "base", "none"]

#: The shipped fallback chain: for each App Store locale, the same-language
#: locales of other regions that stand in for it, best first.
DEFAULT_CHAIN: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "en-AU": ("en-GB", "en-CA", "en-US"),
        "en-CA": ("en-GB", "en-AU", "en-US"),
        "en-GB": ("en-AU", "en-CA", "en-US"),
        "en-US": ("en-CA", "en-GB", "en-AU"),
        "es-ES": ("es-MX",),
        "es-MX": ("es-ES",),
        "fr-CA": ("fr-FR",),
        "fr-FR": ("fr-CA",),
        "pt-BR": ("pt-PT",),
        "pt-PT": ("pt-BR",),
        "ca": ("ca-ES",),
        "cs": ("cs-CZ",),
        "da": ("da-DK",),
        "el": ("el-GR",),
        "fi": ("fi-FI",),
        "he": ("he-IL",),
        "hi": ("hi-IN",),
        "hr": ("hr-HR",),
        "hu": ("hu-HU",),
        "id": ("id-ID",),
        "it": ("it-IT",),
        "ja": ("ja-JP",),
        "ko": ("ko-KR",),
        "ms": ("ms-MY",),
        "no": ("no-NO",),
        "pl": ("pl-PL",),
        "ro": ("ro-RO",),
        "ru": ("ru-RU",),
        "sk": ("sk-SK",),
        "sv": ("sv-SE",),
        "th": ("th-TH",),
        "tr": ("tr-TR",),
        "uk": ("uk-UA",),
        "vi": ("vi-VN",),
    }
)

#: The usual script of each language (ISO 15924), after CLDR's likely subtags.
_LANGUAGE_SCRIPTS: Final[Mapping[str, str]] = {
    "ar": "Arab",
    "az": "Latn",
    "bn": "Beng",
    "bs": "Latn",
    "ca": "Latn",
    "cs": "Latn",
    "da": "Latn",
    "de": "Latn",
    "el": "Grek",
    "en": "Latn",
    "es": "Latn",
    "fa": "Arab",
    "fi": "Latn",
    "fr": "Latn",
    "gu": "Gujr",
    "he": "Hebr",
    "hi": "Deva",
    "hr": "Latn",
    "hu": "Latn",
    "id": "Latn",
    "it": "Latn",
    "ja": "Jpan",
    "kk": "Cyrl",
    "kn": "Knda",
    "ko": "Kore",
    "ml": "Mlym",
    "mr": "Deva",
    "ms": "Latn",
    "nl": "Latn",
    "no": "Latn",
    "or": "Orya",
    "pa": "Guru",
    "pl": "Latn",
    "pt": "Latn",
    "ro": "Latn",
    "ru": "Cyrl",
    "sk": "Latn",
    "sl": "Latn",
    "sr": "Cyrl",
    "sv": "Latn",
    "ta": "Taml",
    "te": "Telu",
    "th": "Thai",
    "tr": "Latn",
    "uk": "Cyrl",
    "ur": "Arab",
    "uz": "Latn",
    "vi": "Latn",
    "zh": "Hans",
}

#: Regions whose script differs from their language's usual one.
_REGION_SCRIPTS: Final[Mapping[tuple[str, str], str]] = {
    ("zh", "TW"): "Hant",
    ("zh", "HK"): "Hant",
    ("zh", "MO"): "Hant",
    ("pa", "PK"): "Arab",
}

#: Languages written in more than one script, whose codes name it (``zh-Hans``).
_MULTI_SCRIPT_LANGUAGES: Final = frozenset({"az", "bs", "pa", "sr", "uz", "zh"})


class LocaleParts(NamedTuple):
    """A locale short code's parts: ``zh-Hant-HK`` is ``("zh", "Hant", "HK")``.

    ``script`` is the code's script, or the one its language writes in that
    region (``zh-TW`` is ``Hant``), or ``None`` for a language we know no
    script of. ``explicit_script`` says whether the code names it.
    """

    language: str
    script: str | None
    region: str | None
    explicit_script: bool


def parse_locale(locale: str) -> LocaleParts | None:
    """The parts of an App Store locale short code (``language[-Script][-REGION]``).

    ``None`` when the code is malformed (see
    :func:`~flask_retention.catalogue.validation.locale_problem`).
    """
    if locale_problem(locale) is not None:
        return None
    parts = locale.split("-")
    language = parts[0]
    rest = parts[1:]
    script: str | None = None
    explicit = bool(rest) and len(rest[0]) == 4
    if explicit:
        script = rest.pop(0)
    region = rest[0] if rest else None
    if script is None and region is not None:
        script = _REGION_SCRIPTS.get((language, region))
    if script is None:
        script = _LANGUAGE_SCRIPTS.get(language)
    return LocaleParts(language, script, region, explicit)


def language_of(locale: str) -> str | None:
    """The language of ``locale`` (``pt`` for ``pt-BR``), or ``None`` when malformed."""
    parts = parse_locale(locale)
    return parts.language if parts is not None else None


def script_of(locale: str) -> str | None:
    """The script ``locale`` is written in (``Hant`` for ``zh-TW``), or ``None``.

    ``None`` when the code is malformed, or names no script and its language
    is not one we know the usual script of.
    """
    parts = parse_locale(locale)
    return parts.script if parts is not None else None


def _same_writing(a: LocaleParts | None, b: LocaleParts) -> bool:
    return a is not None and a.language == b.language and a.script == b.script


def _less_specific(parts: LocaleParts) -> list[str]:
    """The shorter codes of the same language and script, most specific first.

    ``zh-Hant-HK`` and ``zh-TW`` give ``zh-Hant``; ``zh-CN`` gives ``zh-Hans``
    and ``zh``; ``it-IT`` gives ``it``.
    """
    codes: list[str] = []
    named = parts.explicit_script or parts.language in _MULTI_SCRIPT_LANGUAGES
    if parts.script is not None and parts.region is not None and named:
        codes.append(f"{parts.language}-{parts.script}")
    if parts.region is not None or parts.explicit_script:
        codes.append(parts.language)
    return [code for code in codes if _same_writing(parse_locale(code), parts)]


@dataclass(frozen=True, slots=True)
class Pick:
    """The translation that answers a request, and why.

    ``locale`` is the translation's key (the base locale for the base text),
    or ``None`` when no translation may answer. ``reason`` is the step that
    found it: ``"exact"``, ``"language"``, ``"region"``, ``"base"`` or
    ``"none"``. ``skipped`` lists the better candidates passed over, in
    order, each with why: ``"pending"`` for a translation the message has
    but that is not usable in the environment (in review, rejected, not
    uploaded yet), so a French subscriber answered in English is on record
    as such rather than hidden behind ``{}``.
    """

    locale: str | None
    reason: PickReason
    skipped: tuple[tuple[str, str], ...] = ()


class Chooser:
    """Picks translations with one chain and base-text setting; build one per catalogue snapshot.

    The candidates of every locale flask-retention knows are computed here,
    once, so that :meth:`pick` is a dictionary lookup and a walk over a few
    codes. A requested locale outside them (or malformed) still works: its
    candidates are computed on the spot (malformed ones have none but the
    base text).
    """

    __slots__ = ("_by_writing", "_candidates", "base_fallback", "base_locale", "chain")

    def __init__(
        self,
        chain: Mapping[str, Sequence[str]] = DEFAULT_CHAIN,
        *,
        base_locale: str,
        base_fallback: bool,
    ) -> None:
        problem = locale_problem(base_locale)
        if problem is not None:
            raise ValueError(f"base_locale: {problem}")
        self.chain: Mapping[str, tuple[str, ...]] = MappingProxyType(
            {locale: tuple(stand_ins) for locale, stand_ins in chain.items()}
        )
        self.base_locale = base_locale
        self.base_fallback = base_fallback
        codes = {*KNOWN_LOCALES, *self.chain, base_locale}
        for stand_ins in self.chain.values():
            codes.update(stand_ins)
        known = [(code, parts) for code in sorted(codes) if (parts := parse_locale(code))]
        by_writing: dict[tuple[str, str | None], list[str]] = {}
        for code, parts in known:
            by_writing.setdefault((parts.language, parts.script), []).append(code)
        self._by_writing = {key: tuple(group) for key, group in by_writing.items()}
        self._candidates: dict[str, tuple[tuple[str, PickReason], ...]] = {
            code: self._compute(code) for code, _ in known
        }

    def candidates(self, requested: str) -> tuple[tuple[str, PickReason], ...]:
        """The locales that may answer ``requested``, best first, with the step of each.

        The base text's own step (``"base"``) is not among them.
        """
        found = self._candidates.get(requested)
        return found if found is not None else self._compute(requested)

    def _compute(self, requested: str) -> tuple[tuple[str, PickReason], ...]:
        out: list[tuple[str, PickReason]] = [(requested, "exact")]
        parts = parse_locale(requested)
        if parts is None:
            return tuple(out)
        seen = {requested}

        def add(code: str, reason: PickReason) -> None:
            if code not in seen:
                seen.add(code)
                out.append((code, reason))

        for code in _less_specific(parts):
            add(code, "language")
        listed = self.chain.get(requested)
        if listed is not None:
            for code in listed:
                if _same_writing(parse_locale(code), parts):
                    add(code, "region")
        else:
            for code in self._by_writing.get((parts.language, parts.script), ()):
                add(code, "region")
        return tuple(out)

    def pick(self, requested: str, available: Mapping[str, bool]) -> Pick:
        """The translation of one message that answers ``requested``.

        ``available`` maps each translation's locale (the base text's under
        the base locale) to whether it is usable: approved in the
        environment, its images too.
        """
        skipped: list[tuple[str, str]] = []
        for code, reason in self.candidates(requested):
            usable = available.get(code)
            if usable is None:
                continue
            if usable:
                return Pick(code, reason, tuple(skipped))
            skipped.append((code, "pending"))
        if self.base_fallback:
            usable = available.get(self.base_locale)
            if usable:
                return Pick(self.base_locale, "base", tuple(skipped))
            if usable is not None and (self.base_locale, "pending") not in skipped:
                skipped.append((self.base_locale, "pending"))
        return Pick(None, "none", tuple(skipped))


def pick_translation(
    requested: str,
    available: Mapping[str, bool],
    *,
    chain: Mapping[str, Sequence[str]] = DEFAULT_CHAIN,
    base_locale: str,
    base_fallback: bool,
) -> Pick:
    """The translation that answers a request from ``requested`` (a ``userLocale``).

    ``available`` maps each translation's locale (the base text's under
    ``base_locale``) to whether it is usable (approved in the environment,
    images included). Each call builds a :class:`Chooser` (a fraction of a
    millisecond); for many picks, build one once and call its
    :meth:`~Chooser.pick`: the answer is the same.
    """
    chooser = Chooser(chain, base_locale=base_locale, base_fallback=base_fallback)
    return chooser.pick(requested, available)


def merge_chain(
    overrides: Mapping[str, Sequence[str]],
    base: Mapping[str, Sequence[str]] = DEFAULT_CHAIN,
) -> dict[str, tuple[str, ...]]:
    """``base`` with the entries of the locales ``overrides`` lists replaced by its own.

    A catalogue file's ``[languages.chain]`` is such an override: it replaces
    the shipped entry of each locale it names (an empty list removes every
    stand-in) and keeps the others.
    """
    merged = {locale: tuple(stand_ins) for locale, stand_ins in base.items()}
    merged.update((locale, tuple(stand_ins)) for locale, stand_ins in overrides.items())
    return merged


def chain_overrides(
    chain: Mapping[str, Sequence[str]],
    base: Mapping[str, Sequence[str]] = DEFAULT_CHAIN,
) -> dict[str, tuple[str, ...]]:
    """The entries of ``chain`` that differ from ``base``: what a catalogue file must say.

    :func:`merge_chain` of the result gives ``chain`` back; a locale of
    ``base`` that ``chain`` lacks comes back as an empty entry.
    """
    out = {
        locale: tuple(stand_ins)
        for locale, stand_ins in chain.items()
        if tuple(base.get(locale, ())) != tuple(stand_ins) or locale not in base
    }
    out.update((locale, ()) for locale in base if locale not in chain and base[locale])
    return out


def check_chain(
    table: Mapping[str, object], *, where: str = "languages.chain"
) -> tuple[list[str], list[str]]:
    """The errors and warnings of a fallback chain table, each naming the entry.

    Errors: a malformed code (with the fix, ``en_US`` -> ``en-US``), an entry
    that is not a list of codes, a locale standing in for itself, a stand-in
    in another language or another script. Warnings: a well-formed code that
    is not one of the App Store's we know, a stand-in listed twice.
    """
    errors: list[str] = []
    warnings: list[str] = []
    for locale, stand_ins in table.items():
        label = f"{where}.{key_label(locale)}"
        problem = locale_problem(locale)
        if problem is not None:
            errors.append(f"{label}: {problem}")
        else:
            warning = locale_warning(locale)
            if warning is not None:
                warnings.append(f"{label}: {warning}")
        if isinstance(stand_ins, str):
            errors.append(
                f'{label}: must be a list of locale codes: write ["{stand_ins}"], not "{stand_ins}"'
            )
            continue
        if not isinstance(stand_ins, Sequence):
            errors.append(f'{label}: must be a list of locale codes, such as ["fr-FR"]')
            continue
        parts = parse_locale(locale) if problem is None else None
        errors_of, warnings_of = _stand_in_problems(label, locale, parts, stand_ins)
        errors.extend(errors_of)
        warnings.extend(warnings_of)
    return errors, warnings


def _stand_in_problems(
    label: str, locale: str, parts: LocaleParts | None, stand_ins: Iterable[object]
) -> tuple[list[str], list[str]]:
    errors: list[str] = []
    warnings: list[str] = []
    seen: set[str] = set()
    for i, stand_in in enumerate(stand_ins):
        where = f"{label}[{i}]"
        problem = locale_problem(stand_in)
        if problem is not None or not isinstance(stand_in, str):
            errors.append(f"{where}: {problem}")
            continue
        if stand_in == locale:
            errors.append(f"{where}: {locale} stands in for itself; list only other locales")
            continue
        if stand_in in seen:
            warnings.append(f"{where}: {stand_in} is listed twice; the second is never used")
            continue
        seen.add(stand_in)
        warning = locale_warning(stand_in)
        if warning is not None:
            warnings.append(f"{where}: {warning}")
        stand_in_parts = parse_locale(stand_in)
        if parts is None or stand_in_parts is None:
            continue
        if stand_in_parts.language != parts.language:
            errors.append(
                f"{where}: {stand_in} is another language than {locale}; the chain lists the "
                "same language in other regions (base_fallback shows the base text instead)"
            )
        elif stand_in_parts.script != parts.script:
            errors.append(
                f"{where}: {stand_in} ({_script_name(stand_in_parts)}) cannot stand in for "
                f"{locale} ({_script_name(parts)}): stand-ins never cross scripts; remove it"
            )
    return errors, warnings


def _script_name(parts: LocaleParts) -> str:
    return f"script {parts.script}" if parts.script is not None else "no known script"
