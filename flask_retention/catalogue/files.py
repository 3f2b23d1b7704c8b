"""Catalogue files: read a TOML or JSON catalogue file, checking all of it with
:mod:`~flask_retention.catalogue.validation`, and write one back (the same shape in both
formats, its images beside it).

Files are untrusted input: the catalogue file and its images must be regular
files under a size cap (checked with ``os.stat`` before they are opened), and
the text is checked for nesting, numbers and dotted keys that would make the
parsers recurse, fail or use memory without bound before it is parsed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import sys
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from flask_retention.catalogue.entries import (
    DEFAULT_BASE_LOCALE,
    CatalogueDocument,
    DefaultEntry,
    ImageEntry,
    LanguageSettings,
    MessageEntry,
    TranslationsDefaultEntry,
)
from flask_retention.catalogue.languages import languages_as_data, validate_languages
from flask_retention.catalogue.validation import (
    DEFAULT_MAX_IMAGE_BYTES,
    MAX_CATALOGUE_FILE_BYTES,
    MAX_DOTTED_KEY_PARTS,
    MAX_NESTING,
    MAX_NUMBER_DIGITS,
    SUPPORTED_SUFFIXES,
    CatalogueError,
    ImageFileSchema,
    Labeled,
    check_document,
    cross_check,
    entry_label,
    image_entry,
    key_label,
    load_entry,
    message_as_data,
    type_name,
    validate_default_rule,
    validate_message,
)

__all__ = [
    "FileCheck",
    "check_catalogue_file",
    "dump_toml",
    "load_catalogue_file",
    "read_image_file",
    "toml_string",
    "write_catalogue_file",
]

# --------------------------------------------------------------------------- files

_SECTIONS: Final = ("images", "messages", "defaults")
_TOP_LEVEL: Final = ("languages", *_SECTIONS)


@dataclass(frozen=True)
class FileCheck:
    """What :func:`check_catalogue_file` found in one catalogue file.

    ``problems`` lists every problem, each naming the entry and the field
    (empty when the file can be imported); ``warnings`` are worth reading but
    do not stop an import. ``images``, ``messages`` and ``defaults`` count the
    entries the file lists, or are ``None`` when it could not be read or parsed;
    ``translations`` the messages' translations (each one Apple message more).
    """

    path: str
    problems: tuple[str, ...]
    warnings: tuple[str, ...]
    images: int | None
    messages: int | None
    defaults: int | None
    translations: int | None = None

    @property
    def ok(self) -> bool:
        """Whether the file has no problems."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """The check as JSON-ready data (``ok`` included)."""
        return {
            "file": self.path,
            "ok": self.ok,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
            "images": self.images,
            "messages": self.messages,
            "defaults": self.defaults,
            "translations": self.translations,
        }


def check_catalogue_file(
    path: str | os.PathLike[str], *, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
) -> FileCheck:
    """Every problem of a TOML or JSON catalogue file, found by the checks that
    :func:`load_catalogue_file` (and so ``flask retention import``) makes.

    Reads the file and its images, writes nothing, and needs no database: the
    file is checked as a whole catalogue. (An import without ``--prune`` also
    counts the database's other entries against Apple's limits.) Images larger
    than ``max_image_bytes`` are problems, as in :func:`read_image_file`.
    """
    return _check_file(path, max_image_bytes)[1]


def load_catalogue_file(
    path: str | os.PathLike[str], *, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
) -> CatalogueDocument:
    """Read a TOML or JSON catalogue file (by extension) and check all of it.

    Both formats have the same shape: an optional ``languages`` table and
    top-level ``images``, ``messages`` and ``defaults`` arrays; a message may
    have ``translations`` by locale, a default ``locales`` (a list, or
    ``"all"``) instead of one ``locale``. Image ``file`` paths are relative to the catalogue
    file's folder; each is read as :func:`read_image_file` reads it, at most
    ``max_image_bytes``, and one outside that folder is a warning. Raises
    :class:`CatalogueError` listing every problem (syntax errors with their
    line, unreadable images with the entry and path, every rule broken);
    returns the checked document with its warnings otherwise.
    """
    document, check = _check_file(path, max_image_bytes)
    if document is None:
        raise CatalogueError(check.problems, source=check.path)
    return document


def read_image_file(
    path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES
) -> bytes:
    """The bytes of the image file at ``path``, if it is a regular file of at most ``max_bytes``.

    The file is checked with ``os.stat`` before it is opened, so a FIFO, a
    device or a directory is refused without being opened for reading, and a
    file too large without being read; then at most ``max_bytes + 1`` bytes
    are read, so a file that grew meanwhile is refused too. Raises
    :class:`CatalogueError` with one line that names the path and says why.
    """
    source = os.fspath(path)
    try:
        return _read_file(Path(path), max_bytes, _IMAGE_LIMIT_HINT)
    except _Unreadable as exc:
        raise CatalogueError(exc.reason(_shown_path(source))) from None


_IMAGE_LIMIT_HINT: Final = "make the PNG smaller, or raise RETENTION_MAX_IMAGE_BYTES"
_CATALOGUE_LIMIT_HINT: Final = "a catalogue within Apple's limits is far smaller"


class _Unreadable(Exception):
    """Why a file was not read; :meth:`reason` words it for a path."""

    def __init__(self, why: str, *, too_large: bool = False) -> None:
        super().__init__(why)
        self.why = why
        self.too_large = too_large

    def reason(self, shown: str) -> str:
        if self.too_large:
            return f"{shown} is {self.why}"
        return f"cannot read {shown}: {self.why}"


_FILE_KINDS: Final = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _file_kind(mode: int) -> str:
    for test, kind in _FILE_KINDS:
        if test(mode):
            return kind
    return "not a regular file"


def _read_file(path: Path, max_bytes: int, hint: str) -> bytes:
    """The bytes of the regular file ``path`` (at most ``max_bytes``), or :class:`_Unreadable`."""
    try:
        info = os.stat(path)
    except ValueError:
        raise _Unreadable("the path contains a NUL character") from None
    except OSError as exc:
        raise _Unreadable(exc.strerror or str(exc)) from None
    if not stat.S_ISREG(info.st_mode):
        raise _Unreadable(f"it is {_file_kind(info.st_mode)}, not a regular file")
    if info.st_size > max_bytes:
        raise _Unreadable(_too_large(info.st_size, max_bytes, hint), too_large=True)
    # O_NONBLOCK: should the path have become a FIFO since the stat, opening it
    # must not wait for a writer; the fstat below then refuses it.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as exc:
        raise _Unreadable(exc.strerror or str(exc)) from None
    with os.fdopen(descriptor, "rb") as stream:
        mode = os.fstat(stream.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise _Unreadable(f"it is {_file_kind(mode)}, not a regular file")
        try:
            data = stream.read(max_bytes + 1)
        except OSError as exc:
            raise _Unreadable(exc.strerror or str(exc)) from None
    if len(data) > max_bytes:
        raise _Unreadable(_too_large(None, max_bytes, hint), too_large=True)
    return data


def _too_large(size: int | None, max_bytes: int, hint: str) -> str:
    amount = f"{size:,} bytes, " if size is not None else ""
    return f"{amount}over the limit of {max_bytes:,} bytes; {hint}"


def _shown_path(path: str) -> str:
    return path if path.isprintable() else repr(path)


def _check_file(
    path: str | os.PathLike[str], max_image_bytes: int
) -> tuple[CatalogueDocument | None, FileCheck]:
    """The checked document (``None`` when there are problems) and what was found."""
    file = Path(path)
    source = os.fspath(path)
    try:
        raw = _read_document(file, source)
    except CatalogueError as exc:
        return None, FileCheck(source, tuple(exc.errors), (), None, None, None)
    errors: list[str] = []
    for key in raw:
        if key not in _TOP_LEVEL:
            errors.append(
                f"{key_label(key)}: unknown top-level key; "
                "a catalogue has only languages, images, messages and defaults"
            )
    sections: dict[str, list[Any]] = {}
    for key in _SECTIONS:
        value = raw.get(key, [])
        if not isinstance(value, list):
            errors.append(
                f"{key}: must be a list of tables ([[{key}]] in TOML, an array in JSON), "
                f"not {type_name(value)}"
            )
            value = []
        sections[key] = value

    warnings: list[str] = []
    languages: LanguageSettings | None = None
    if "languages" in raw:
        try:
            languages, language_warnings = validate_languages(raw["languages"])
            warnings.extend(language_warnings)
        except CatalogueError as exc:
            errors.extend(exc.errors)
    failed_images: set[str] = set()
    images: list[tuple[str, ImageEntry]] = []
    for i, item in enumerate(sections["images"]):
        name = item.get("name") if isinstance(item, Mapping) else None
        label = entry_label("images", i, name)
        image = _load_image(item, label, file.parent, max_image_bytes, errors, warnings)
        if image is None:
            if isinstance(name, str):
                failed_images.add(name)
        else:
            images.append((label, image))

    failed_messages: set[str] = set()
    messages: list[tuple[str, MessageEntry]] = []
    for i, item in enumerate(sections["messages"]):
        name = item.get("name") if isinstance(item, Mapping) else None
        label = entry_label("messages", i, name)
        try:
            messages.append((label, validate_message(item, where=label)))
        except CatalogueError as exc:
            errors.extend(exc.errors)
            if isinstance(name, str):
                failed_messages.add(name)

    defaults: list[tuple[str, DefaultEntry]] = []
    translation_defaults: list[tuple[str, TranslationsDefaultEntry]] = []
    for i, item in enumerate(sections["defaults"]):
        label = f"defaults[{i}]"
        try:
            rule = validate_default_rule(item, where=label)
        except CatalogueError as exc:
            errors.extend(exc.errors)
            continue
        if isinstance(rule, TranslationsDefaultEntry):
            translation_defaults.append((label, rule))
        else:
            defaults.extend((label, entry) for entry in rule)

    labeled = Labeled(
        images=images,
        messages=messages,
        defaults=defaults,
        translation_defaults=translation_defaults,
    )
    cross_errors, cross_warnings = cross_check(
        labeled,
        {},
        (),
        failed_images,
        failed_messages,
        base_locale=languages.base_locale if languages is not None else DEFAULT_BASE_LOCALE,
    )
    errors.extend(cross_errors)
    warnings.extend(cross_warnings)
    check = FileCheck(
        source,
        tuple(errors),
        tuple(warnings),
        len(sections["images"]),
        len(sections["messages"]),
        len(sections["defaults"]),
        sum(len(entry.translations) for _, entry in messages),
    )
    if errors:
        return None, check
    document = CatalogueDocument(
        images=tuple(entry for _, entry in images),
        messages=tuple(entry for _, entry in messages),
        defaults=tuple(entry for _, entry in defaults),
        warnings=tuple(warnings),
        translation_defaults=tuple(entry for _, entry in translation_defaults),
        languages=languages,
    )
    return document, check


def _load_image(
    item: object,
    label: str,
    folder: Path,
    max_bytes: int,
    errors: list[str],
    warnings: list[str],
) -> ImageEntry | None:
    try:
        loaded = load_entry(ImageFileSchema, item, label)
    except CatalogueError as exc:
        errors.extend(exc.errors)
        return None
    relative: str = loaded["file"]
    image_path = folder / relative
    try:
        data = _read_file(image_path, max_bytes, _IMAGE_LIMIT_HINT)
    except _Unreadable as exc:
        shown = relative if exc.too_large else os.fspath(image_path)
        errors.append(f"{label}.file: {exc.reason(_shown_path(shown))}")
        return None
    if not _is_inside(image_path, folder):
        warnings.append(
            f"{label}.file: {_shown_path(relative)} is outside the catalogue file's folder "
            "(allowed: check that it is the image you mean)"
        )
    entry = image_entry(data, loaded.get("size"), loaded["name"], relative)
    if isinstance(entry, list):
        errors.extend(f"{label}.file: {_shown_path(relative)}: {problem}" for problem in entry)
        return None
    return entry


def _is_inside(path: Path, folder: Path) -> bool:
    """Whether ``path``, symbolic links followed, is inside ``folder``."""
    real = Path(os.path.realpath(path))
    return real.is_relative_to(os.path.realpath(folder))


def _suffix(file: Path, source: str) -> str:
    suffix = file.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        shown = repr(file.suffix) if file.suffix else "no extension"
        raise CatalogueError(
            f"unsupported catalogue file type ({shown}); use a .toml or .json file",
            source=source,
        )
    return suffix


def _read_document(file: Path, source: str) -> dict[str, Any]:
    suffix = _suffix(file, source)
    try:
        raw = _read_file(file, MAX_CATALOGUE_FILE_BYTES, _CATALOGUE_LIMIT_HINT)
    except _Unreadable as exc:
        raise CatalogueError(exc.reason("the catalogue file"), source=source) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CatalogueError(
            f"not UTF-8 text (line {line}, byte {exc.start}); save the file as UTF-8",
            source=source,
        ) from None
    toml = suffix == ".toml"
    kind = "TOML" if toml else "JSON"
    problem = _shape_problem(text, toml=toml)
    if problem is not None:
        raise CatalogueError(f"not a catalogue: {problem}", source=source)
    try:
        if toml:
            return tomllib.loads(text)
        document = json.loads(text, object_pairs_hook=_refuse_duplicate_keys)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"not valid TOML: {exc}", source=source) from None
    except json.JSONDecodeError as exc:
        raise CatalogueError(
            f"not valid JSON: {exc.msg} (at line {exc.lineno}, column {exc.colno})",
            source=source,
        ) from None
    except _DuplicateKeyError as exc:
        raise CatalogueError(f"not valid JSON: {exc}", source=source) from None
    except RecursionError:
        raise CatalogueError(
            f"not a catalogue: arrays and tables nested too deeply for the {kind} reader; "
            "a catalogue nests them 5 deep at most",
            source=source,
        ) from None
    except ValueError:
        # Past the checks above, the readers raise a plain ValueError only for an
        # integer longer than Python converts (sys.get_int_max_str_digits()).
        raise CatalogueError(
            f"not a catalogue: a number longer than {sys.get_int_max_str_digits()} digits; "
            "catalogue values are text: put them in quotes",
            source=source,
        ) from None
    if not isinstance(document, dict):
        raise CatalogueError(
            "the JSON document must be an object with images, messages and defaults, "
            f"not {type_name(document)}",
            source=source,
        )
    return document


_STRING: Final = r"""
    (?P<string>
        \"\"\" (?:\\.|[^\\])*? \"\"\" \"{0,2}     # TOML multi-line basic string
      | ''' .*? ''' '{0,2}                        # TOML multi-line literal string
      | " (?:\\.|[^"\\\n])* "?                    # basic string (TOML and JSON)
      | ' [^'\n]* '?                              # TOML literal string
    )"""
_TOKENS: Final = (
    r"""
  | (?P<comment> \#[^\n]* )
  | (?P<open> [\[{] )
  | (?P<close> [\]}] )
  | (?P<newline> \n )
  | (?P<dot> \. )
  | (?P<other> [^A-Za-z0-9_\-\s] )
  | (?P<digits> [0-9_]{"""
    + str(MAX_NUMBER_DIGITS + 1)
    + ",} )"
)
_TOML_TOKENS: Final = re.compile(_STRING + _TOKENS, re.VERBOSE | re.DOTALL)
_JSON_TOKENS: Final = re.compile(
    r"""(?P<string> " (?:\\.|[^"\\\n])* "? )""" + _TOKENS, re.VERBOSE | re.DOTALL
)


def _shape_problem(text: str, *, toml: bool) -> str | None:
    """Why ``text`` must not reach the TOML or JSON reader, with its line; ``None`` if it may.

    Both readers recurse once per nested array or table, Python converts
    integers of at most 4,300 digits, and ``tomllib`` needs memory that grows
    with the square of a dotted key's length: so nesting, digits and dotted
    keys are bounded here first, outside strings (and TOML comments).
    """
    line = 1
    depth = 0
    dots = 0
    for token in (_TOML_TOKENS if toml else _JSON_TOKENS).finditer(text):
        kind = token.lastgroup
        if kind == "string":
            line += token.group().count("\n")
            continue
        if kind == "dot" and toml:
            dots += 1
            if dots >= MAX_DOTTED_KEY_PARTS:
                return (
                    f"line {line}: a dotted key of more than {MAX_DOTTED_KEY_PARTS} parts; "
                    "a catalogue's keys are plain names"
                )
            continue
        if kind == "digits":
            return (
                f"line {line}: a number of more than {MAX_NUMBER_DIGITS} digits; "
                "catalogue values are text: put them in quotes"
            )
        dots = 0
        if kind == "newline":
            line += 1
        elif kind == "open":
            depth += 1
            if depth > MAX_NESTING:
                return (
                    f"line {line}: arrays and tables nested more than {MAX_NESTING} deep; "
                    "a catalogue nests them 5 deep at most"
                )
        elif kind == "close":
            depth = max(depth - 1, 0)
    return None


class _DuplicateKeyError(ValueError):
    pass


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(f"the key {key!r} appears twice in one object")
        result[key] = value
    return result


def write_catalogue_file(
    doc: CatalogueDocument, path: str | os.PathLike[str], *, images_dir: str = "images"
) -> None:
    """Write ``doc`` as a TOML or JSON catalogue file (by extension), images beside it.

    Each image is written to ``images_dir/<name>.png`` relative to the file
    (names that are not safe file names get a safe one). The document is
    checked first (an invalid one writes nothing), images are written before
    the catalogue, and each file is replaced atomically, so a failure never
    leaves a half-written file. :func:`load_catalogue_file` reads back an equal
    document (each image's ``source`` becomes the path written).
    """
    file = Path(path)
    source = os.fspath(path)
    suffix = _suffix(file, source)
    doc = check_document(doc)
    folder = file.parent
    image_files = _image_file_names(doc.images)
    images_folder = folder / images_dir
    images_folder.mkdir(parents=True, exist_ok=True)
    prefix = Path(images_dir).as_posix().rstrip("/")
    image_rows: list[dict[str, str]] = []
    for image in doc.images:
        filename = image_files[image.name]
        _write_atomically(images_folder / filename, image.data)
        image_rows.append({"name": image.name, "file": f"{prefix}/{filename}", "size": image.size})
    data: dict[str, Any] = {}
    if doc.languages is not None:
        data["languages"] = languages_as_data(doc.languages)
    data["images"] = image_rows
    data["messages"] = [message_as_data(message) for message in doc.messages]
    data["defaults"] = _defaults_as_data(doc)
    if suffix == ".toml":
        text = dump_toml(data)
    else:
        text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    _write_atomically(file, text.encode("utf-8"))


def _defaults_as_data(doc: CatalogueDocument) -> list[dict[str, Any]]:
    """The document's defaults as a file lists them: one entry per product and message,
    with ``locale`` for one locale, ``locales`` for several, ``locales = "all"``
    for every translation."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for d in doc.defaults:
        grouped.setdefault((d.product_id, d.message), []).append(d.locale)
    rows: list[dict[str, Any]] = []
    for (product_id, message), locales in grouped.items():
        row: dict[str, Any] = {"product_id": product_id}
        if len(locales) == 1:
            row["locale"] = locales[0]
        else:
            row["locales"] = locales
        row["message"] = message
        rows.append(row)
    rows.extend(
        {"product_id": rule.product_id, "locales": "all", "message": rule.message}
        for rule in doc.translation_defaults
    )
    return rows


_SAFE_FILE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _image_file_names(images: Sequence[ImageEntry]) -> dict[str, str]:
    """A distinct, portable ``.png`` file name for each image name.

    Safe names are kept; others (slashes, spaces, non-ASCII, names differing
    only in case on case-insensitive file systems) get a slug and a short hash.
    """
    names: dict[str, str] = {}
    used: set[str] = set()
    for image in images:
        stem = image.name
        if not _SAFE_FILE_NAME.fullmatch(stem) or stem.lower() in used:
            slug = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-")[:60] or "image"
            digest = hashlib.sha256(stem.encode("utf-8")).hexdigest()[:10]
            stem = f"{slug}-{digest}"
        used.add(stem.lower())
        names[image.name] = f"{stem}.png"
    return names


def _write_atomically(target: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- TOML


def toml_string(value: str) -> str:
    """``value`` as a TOML basic string, with every character that needs it escaped."""
    out = ['"']
    for char in value:
        code = ord(char)
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


_TOML_ESCAPES: Final = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, Mapping):
        inner = ", ".join(f"{key} = {_toml_value(item)}" for key, item in value.items())
        return f"{{ {inner} }}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        if all(isinstance(item, str) for item in value):
            return f"[{', '.join(toml_string(item) for item in value)}]"
        rows = "".join(f"  {_toml_value(item)},\n" for item in value)
        return f"[\n{rows}]"
    raise TypeError(f"the catalogue TOML writer handles strings, tables and lists, not {value!r}")


def dump_toml(data: Mapping[str, Sequence[Mapping[str, Any]] | Mapping[str, Any]]) -> str:
    """A catalogue document as TOML: each top-level list as an array of tables, a
    top-level table (``languages``) as a table.

    Values are strings, booleans, lists, or inline tables of strings, which is
    all a catalogue holds; a value that is a table of tables (a message's
    ``translations``, the ``chain``) is written as sub-tables after the row's
    other keys (``[messages.translations.fr-FR]``). Keys are written bare, so
    they must be bare-key names.
    """
    lines = ["# flask-retention catalogue: images, messages, and defaults per product and locale."]
    for section, rows in data.items():
        if isinstance(rows, Mapping):
            lines.append("")
            lines.append(f"[{_bare_key(section)}]")
            lines.extend(_toml_table(_bare_key(section), rows))
            continue
        for row in rows:
            lines.append("")
            lines.append(f"[[{_bare_key(section)}]]")
            lines.extend(_toml_table(_bare_key(section), row))
    return "\n".join(lines) + "\n"


def _toml_table(path: str, row: Mapping[str, Any]) -> list[str]:
    """The keys of one table, then its tables of tables as ``[path.key.sub]`` sub-tables."""
    lines = [
        f"{_bare_key(key)} = {_toml_value(value)}"
        for key, value in row.items()
        if not _is_sub_table(value)
    ]
    for key, value in row.items():
        if not _is_sub_table(value):
            continue
        if all(isinstance(item, Mapping) for item in value.values()):
            for sub, table in value.items():
                lines.append(f"[{path}.{_bare_key(key)}.{_bare_key(sub)}]")
                lines.extend(_toml_table(f"{path}.{key}.{sub}", table))
        else:
            lines.append(f"[{path}.{_bare_key(key)}]")
            lines.extend(_toml_table(f"{path}.{key}", value))
    return lines


def _is_sub_table(value: object) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(item, Mapping | list | tuple) for item in value.values()
    )


_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")


def _bare_key(key: str) -> str:
    if not _BARE_KEY.fullmatch(key):
        raise ValueError(f"{key!r} is not a bare TOML key")
    return key
