"""The catalogue's languages: its ``[languages]`` settings checked, and the pick of a
message's text for a locale that sync, ``coverage`` and the request path share.

A message has a base text (in the catalogue's ``base_locale``) and
translations keyed by locale. :func:`pick_text` picks among them with the
fallback chain of :mod:`flask_retention.catalogue.locales`, with one rule
of its own: a message *without* translations is one text for every locale
(as before translations existed), so catalogues that never translated keep
working unchanged; once a message has a translation, the chain decides, and
the base text stands in for another language only with ``base_fallback``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flask_retention.catalogue.entries import DEFAULT_BASE_LOCALE, LanguageSettings
from flask_retention.catalogue.locales import Chooser, Pick, check_chain, merge_chain
from flask_retention.catalogue.validation import (
    CatalogueError,
    key_label,
    locale_problem,
    locale_warning,
    type_name,
)

__all__ = [
    "LANGUAGE_FIELDS",
    "check_languages",
    "chooser_for",
    "languages_as_data",
    "pick_text",
    "validate_languages",
]

#: The keys of a catalogue file's ``[languages]`` table.
LANGUAGE_FIELDS: tuple[str, ...] = ("base_locale", "base_fallback", "chain")


def validate_languages(
    data: object, *, where: str = "languages"
) -> tuple[LanguageSettings, tuple[str, ...]]:
    """Check a ``[languages]`` table and return the settings and their warnings.

    ``base_locale`` (default ``en-US``) and every code of ``chain`` are
    checked like every locale code of the catalogue (malformed: an error with
    the fix; well-formed but unknown: a warning); ``base_fallback`` is a
    boolean (default false); ``chain`` maps a locale to a list of stand-ins
    of the same language and script. Raises :class:`CatalogueError` listing
    every problem.
    """
    if not isinstance(data, Mapping):
        raise CatalogueError(
            f"{where}: must be a table (object) of settings, not {type_name(data)}"
        )
    errors: list[str] = []
    for key in data:
        if key not in LANGUAGE_FIELDS:
            errors.append(
                f"{where}.{key_label(key)}: unknown field; the fields are: "
                f"{', '.join(LANGUAGE_FIELDS)}"
            )
    base_locale = data.get("base_locale", DEFAULT_BASE_LOCALE)
    base_fallback = data.get("base_fallback", False)
    if not isinstance(base_fallback, bool):
        errors.append(
            f"{where}.base_fallback: must be true or false, not {type_name(base_fallback)}"
        )
    chain = data.get("chain", {})
    if not isinstance(chain, Mapping):
        errors.append(
            f'{where}.chain: must be a table of locale = [stand-ins], such as "fr-CA" = '
            f'["fr-FR"], not {type_name(chain)}'
        )
        chain = {}
    settings = LanguageSettings(
        base_locale=base_locale if isinstance(base_locale, str) else DEFAULT_BASE_LOCALE,
        base_fallback=base_fallback is True,
        chain={
            str(k): tuple(v)
            for k, v in chain.items()
            if isinstance(v, Sequence) and not isinstance(v, str)
        },
    )
    check_errors, warnings = _problems(base_locale, chain, where)
    errors.extend(check_errors)
    if errors:
        raise CatalogueError(errors)
    return settings, tuple(warnings)


def check_languages(
    settings: LanguageSettings, *, where: str = "languages"
) -> tuple[list[str], list[str]]:
    """The errors and warnings of settings built in Python (see :func:`validate_languages`)."""
    return _problems(settings.base_locale, settings.chain, where)


def _problems(
    base_locale: object, chain: Mapping[str, Any], where: str
) -> tuple[list[str], list[str]]:
    errors: list[str] = []
    warnings: list[str] = []
    problem = locale_problem(base_locale)
    if problem is not None:
        errors.append(f"{where}.base_locale: {problem}")
    elif isinstance(base_locale, str):
        warning = locale_warning(base_locale)
        if warning is not None:
            warnings.append(f"{where}.base_locale: {warning}")
    chain_errors, chain_warnings = check_chain(chain, where=f"{where}.chain")
    errors.extend(chain_errors)
    warnings.extend(chain_warnings)
    return errors, warnings


def languages_as_data(settings: LanguageSettings) -> dict[str, Any]:
    """The settings as a ``[languages]`` table (the chain only when it has entries)."""
    data: dict[str, Any] = {
        "base_locale": settings.base_locale,
        "base_fallback": settings.base_fallback,
    }
    if settings.chain:
        data["chain"] = {locale: list(stand_ins) for locale, stand_ins in settings.chain.items()}
    return data


def chooser_for(settings: LanguageSettings) -> Chooser:
    """The chooser of ``settings``: the shipped chain with the catalogue's entries over it."""
    return Chooser(
        merge_chain(settings.chain),
        base_locale=settings.base_locale,
        base_fallback=settings.base_fallback,
    )


def pick_text(
    chooser: Chooser, requested: str, available: Mapping[str, bool], *, translated: bool
) -> Pick:
    """The text of one message that answers ``requested``: see the module doc.

    ``available`` maps each text's locale (the base text's under the base
    locale) to whether it is usable (approved, images included);
    ``translated`` says whether the message has any translation. Without one,
    the base text answers every locale (reason ``"exact"`` for its own locale,
    ``"base"`` for the others) when usable.
    """
    if translated:
        return chooser.pick(requested, available)
    base = chooser.base_locale
    usable = available.get(base)
    if usable:
        return Pick(base, "exact" if requested == base else "base")
    return Pick(None, "none", ((base, "pending"),) if usable is not None else ())
