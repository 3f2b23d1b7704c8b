"""Catalogue files: read a TOML or JSON catalogue file, checking all of it with
:mod:`~flask_retention.catalogue.validation`, and write one back (the same shape in both
formats, its images beside it)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from flask_retention.catalogue.entries import (
    CatalogueDocument,
    DefaultEntry,
    ImageEntry,
    MessageEntry,
)
from flask_retention.catalogue.validation import (
    SUPPORTED_SUFFIXES,
    CatalogueError,
    ImageFileSchema,
    Labeled,
    check_document,
    cross_check,
    entry_label,
    image_entry,
    load_entry,
    message_as_data,
    type_name,
    validate_default,
    validate_message,
)

__all__ = [
    "FileCheck",
    "check_catalogue_file",
    "dump_toml",
    "load_catalogue_file",
    "toml_string",
    "write_catalogue_file",
]

# --------------------------------------------------------------------------- files

_SECTIONS: Final = ("images", "messages", "defaults")


@dataclass(frozen=True)
class FileCheck:
    """What :func:`check_catalogue_file` found in one catalogue file.

    ``problems`` lists every problem, each naming the entry and the field
    (empty when the file can be imported); ``warnings`` are worth reading but
    do not stop an import. ``images``, ``messages`` and ``defaults`` count the
    entries the file lists, or are ``None`` when it could not be read or parsed.
    """

    path: str
    problems: tuple[str, ...]
    warnings: tuple[str, ...]
    images: int | None
    messages: int | None
    defaults: int | None

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
        }


def check_catalogue_file(path: str | os.PathLike[str]) -> FileCheck:
    """Every problem of a TOML or JSON catalogue file, found by the checks that
    :func:`load_catalogue_file` (and so ``flask retention import``) makes.

    Reads the file and its images, writes nothing, and needs no database: the
    file is checked as a whole catalogue. (An import without ``--prune`` also
    counts the database's other entries against Apple's limits.)
    """
    return _check_file(path)[1]


def load_catalogue_file(path: str | os.PathLike[str]) -> CatalogueDocument:
    """Read a TOML or JSON catalogue file (by extension) and check all of it.

    Both formats have the same shape: top-level ``images``, ``messages`` and
    ``defaults`` arrays. Image ``file`` paths are relative to the catalogue
    file's folder. Raises :class:`CatalogueError` listing every problem (syntax
    errors with their line, unreadable images with the entry and path, every
    rule broken); returns the checked document with its warnings otherwise.
    """
    document, check = _check_file(path)
    if document is None:
        raise CatalogueError(check.problems, source=check.path)
    return document


def _check_file(path: str | os.PathLike[str]) -> tuple[CatalogueDocument | None, FileCheck]:
    """The checked document (``None`` when there are problems) and what was found."""
    file = Path(path)
    source = os.fspath(path)
    try:
        raw = _read_document(file, source)
    except CatalogueError as exc:
        return None, FileCheck(source, tuple(exc.errors), (), None, None, None)
    errors: list[str] = []
    for key in raw:
        if key not in _SECTIONS:
            errors.append(
                f"{key}: unknown top-level key; a catalogue has only images, messages and defaults"
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

    failed_images: set[str] = set()
    images: list[tuple[str, ImageEntry]] = []
    for i, item in enumerate(sections["images"]):
        name = item.get("name") if isinstance(item, Mapping) else None
        label = entry_label("images", i, name)
        image = _load_image(item, label, file.parent, errors)
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
    for i, item in enumerate(sections["defaults"]):
        label = f"defaults[{i}]"
        try:
            defaults.append((label, validate_default(item, where=label)))
        except CatalogueError as exc:
            errors.extend(exc.errors)

    labeled = Labeled(images=images, messages=messages, defaults=defaults)
    cross_errors, warnings = cross_check(labeled, {}, (), failed_images, failed_messages)
    errors.extend(cross_errors)
    check = FileCheck(
        source,
        tuple(errors),
        tuple(warnings),
        len(sections["images"]),
        len(sections["messages"]),
        len(sections["defaults"]),
    )
    if errors:
        return None, check
    document = CatalogueDocument(
        images=tuple(entry for _, entry in images),
        messages=tuple(entry for _, entry in messages),
        defaults=tuple(entry for _, entry in defaults),
        warnings=tuple(warnings),
    )
    return document, check


def _load_image(item: object, label: str, folder: Path, errors: list[str]) -> ImageEntry | None:
    try:
        loaded = load_entry(ImageFileSchema, item, label)
    except CatalogueError as exc:
        errors.extend(exc.errors)
        return None
    relative: str = loaded["file"]
    image_path = folder / relative
    try:
        data = image_path.read_bytes()
    except OSError as exc:
        errors.append(f"{label}.file: cannot read {image_path}: {exc.strerror or exc}")
        return None
    entry = image_entry(data, loaded.get("size"), loaded["name"], relative)
    if isinstance(entry, list):
        errors.extend(f"{label}.file: {relative}: {problem}" for problem in entry)
        return None
    return entry


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
        raw = file.read_bytes()
    except OSError as exc:
        raise CatalogueError(
            f"cannot read the catalogue file: {exc.strerror or exc}", source=source
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CatalogueError(
            f"not UTF-8 text (line {line}, byte {exc.start}); save the file as UTF-8",
            source=source,
        ) from None
    if suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise CatalogueError(f"not valid TOML: {exc}", source=source) from None
    try:
        document = json.loads(text, object_pairs_hook=_refuse_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise CatalogueError(
            f"not valid JSON: {exc.msg} (at line {exc.lineno}, column {exc.colno})",
            source=source,
        ) from None
    except _DuplicateKeyError as exc:
        raise CatalogueError(f"not valid JSON: {exc}", source=source) from None
    if not isinstance(document, dict):
        raise CatalogueError(
            "the JSON document must be an object with images, messages and defaults, "
            f"not {type_name(document)}",
            source=source,
        )
    return document


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
    data: dict[str, list[dict[str, Any]]] = {
        "images": image_rows,
        "messages": [message_as_data(message) for message in doc.messages],
        "defaults": [
            {"product_id": d.product_id, "locale": d.locale, "message": d.message}
            for d in doc.defaults
        ],
    }
    if suffix == ".toml":
        text = dump_toml(data)
    else:
        text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    _write_atomically(file, text.encode("utf-8"))


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
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, Mapping):
        inner = ", ".join(f"{key} = {_toml_value(item)}" for key, item in value.items())
        return f"{{ {inner} }}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        rows = "".join(f"  {_toml_value(item)},\n" for item in value)
        return f"[\n{rows}]"
    raise TypeError(f"the catalogue TOML writer handles strings, tables and lists, not {value!r}")


def dump_toml(data: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """A catalogue document as TOML: each top-level list as an array of tables.

    Values are strings, lists, or inline tables of strings, which is all a
    catalogue holds. Keys are written bare, so they must be bare-key names.
    """
    lines = ["# flask-retention catalogue: images, messages, and defaults per product and locale."]
    for section, rows in data.items():
        for row in rows:
            lines.append("")
            lines.append(f"[[{_bare_key(section)}]]")
            lines.extend(f"{_bare_key(key)} = {_toml_value(value)}" for key, value in row.items())
    return "\n".join(lines) + "\n"


_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")


def _bare_key(key: str) -> str:
    if not _BARE_KEY.fullmatch(key):
        raise ValueError(f"{key!r} is not a bare TOML key")
    return key
