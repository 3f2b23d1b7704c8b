"""Hostile catalogue files: each is refused in one line by ``import`` and ``validate``, with
no traceback, no hang and nothing written; images are read only when they are regular files
under the size cap, and an image outside the catalogue's folder is a warning."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import Result
from flask import Flask

from flask_retention import ConfigurationError, Retention
from flask_retention.catalogue.files import read_image_file
from flask_retention.catalogue.store import Catalogue
from flask_retention.catalogue.validation import MAX_CATALOGUE_FILE_BYTES, CatalogueError

from .catalogue_support import full_png, retention_app

pytestmark = pytest.mark.skipif(
    not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(),
    reason="FIFOs and /dev/zero are POSIX",
)

#: Seconds a command may run before the test calls it hung (a hang guard, not a timing check).
HANG_GUARD = 60.0

HERO = full_png()
#: The image cap the tests set: HERO's size, so HERO is accepted and one byte more is not.
CAP = len(HERO)

KEEP = """
[[messages]]
name = "keep"
header = "Before you go"
body = "A message that must not be written when the file is refused."
"""

NUL = "contains a NUL character"


@dataclass(frozen=True)
class Hostile:
    """A hostile catalogue file: ``make`` writes it (and what it names) into a folder and
    returns its path; ``says`` is its one problem, ``{folder}`` standing for that folder."""

    id: str
    make: Callable[[Path], Path]
    says: str


def toml(text: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "catalogue.toml"
        path.write_text(text + KEEP, encoding="utf-8")
        return path

    return make


def raw_json(text: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "catalogue.json"
        path.write_text(text, encoding="utf-8")
        return path

    return make


def image_file(
    file: str, prepare: Callable[[Path], object] = lambda folder: None
) -> Callable[[Path], Path]:
    """A catalogue whose one image is ``file``, after ``prepare(folder)`` made it."""

    def make(folder: Path) -> Path:
        prepare(folder)
        return toml(f'[[images]]\nname = "hero"\nfile = {json.dumps(file)}\n')(folder)

    return make


def fifo_catalogue(folder: Path) -> Path:
    path = folder / "catalogue.toml"
    os.mkfifo(path)
    return path


def huge_catalogue(folder: Path) -> Path:
    path = folder / "catalogue.json"
    with path.open("wb") as stream:
        stream.truncate(MAX_CATALOGUE_FILE_BYTES + 1)  # sparse: no disk space used
    return path


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


DEEPLY_NESTED = "arrays and tables nested more than 32 deep; a catalogue nests them 5 deep at most"
LONG_NUMBER = "a number of more than 100 digits; catalogue values are text: put them in quotes"
A_FIFO = "it is a FIFO (named pipe), not a regular file"

HOSTILE = [
    Hostile(
        "json-nested-100000-deep",
        raw_json('{"messages": ' + deep(100_000) + "}"),
        f"not a catalogue: line 1: {DEEPLY_NESTED}",
    ),
    Hostile(
        "toml-arrays-nested-100000-deep",
        toml("images = []\nx = " + deep(100_000)),
        f"not a catalogue: line 2: {DEEPLY_NESTED}",
    ),
    Hostile(
        "toml-tables-nested-100000-deep",
        toml("x = " + "{a = " * 100_000 + "1" + "}" * 100_000),
        f"not a catalogue: line 1: {DEEPLY_NESTED}",
    ),
    Hostile(
        "toml-dotted-key-of-100000-parts",
        toml("a" + ".a" * 100_000 + ' = "x"'),
        "not a catalogue: line 1: a dotted key of more than 32 parts; "
        "a catalogue's keys are plain names",
    ),
    Hostile(
        "json-5000-digit-integer",
        raw_json('{"messages": [{"name": ' + "7" * 5000 + "}]}"),
        f"not a catalogue: line 1: {LONG_NUMBER}",
    ),
    Hostile(
        "toml-5000-digit-integer",
        toml("[[defaults]]\nproduct_id = " + "7" * 5000),
        f"not a catalogue: line 2: {LONG_NUMBER}",
    ),
    Hostile(
        "nul-in-a-header",
        toml('[[messages]]\nname = "winback"\nheader = "Stay\\u0000"\nbody = "Please."\n'),
        f"messages[0] (winback).header: {NUL} (character 5), "
        "which Apple and PostgreSQL refuse: remove it",
    ),
    Hostile(
        "lone-surrogate-in-a-body",
        raw_json('{"messages": [{"name": "winback", "header": "Stay", "body": "Please \\ud800"}]}'),
        "messages[0] (winback).body: contains '\\ud800', which is not valid UTF-8 "
        "(a lone surrogate)",
    ),
    Hostile(
        "nul-in-a-field-name",
        raw_json(
            '{"messages": [{"name": "winback", "header": "Stay", "body": "b", "x\\u0000": 1}]}'
        ),
        "messages[0] (winback).'x\\x00': unknown field; the fields are: name, header, body, "
        "image, image_alt_text, header_position, bullet_points, translations",
    ),
    Hostile(
        "nul-in-an-image-path",
        image_file("hero\x00.png"),
        f"images[0] (hero).file: 'hero\\x00.png' {NUL}, which no file path can: fix the path",
    ),
    Hostile(
        "image-is-dev-zero",
        image_file("/dev/zero"),
        "images[0] (hero).file: cannot read /dev/zero: "
        "it is a character device, not a regular file",
    ),
    Hostile(
        "image-is-a-directory",
        image_file("art", lambda folder: (folder / "art").mkdir()),
        "images[0] (hero).file: cannot read {folder}/art: it is a directory, not a regular file",
    ),
    Hostile(
        "image-is-a-fifo",
        image_file("hero.png", lambda folder: os.mkfifo(folder / "hero.png")),
        f"images[0] (hero).file: cannot read {{folder}}/hero.png: {A_FIFO}",
    ),
    Hostile(
        "image-one-byte-over-the-cap",
        # A valid PNG still: readers ignore bytes after IEND, so only the size refuses it.
        image_file("hero.png", lambda folder: (folder / "hero.png").write_bytes(HERO + b"\x00")),
        f"images[0] (hero).file: hero.png is {CAP + 1:,} bytes, over the limit of {CAP:,} "
        "bytes; make the PNG smaller, or raise RETENTION_MAX_IMAGE_BYTES",
    ),
    Hostile(
        "catalogue-file-is-a-fifo",
        fifo_catalogue,
        f"cannot read the catalogue file: {A_FIFO}",
    ),
    Hostile(
        "catalogue-file-one-byte-over-its-limit",
        huge_catalogue,
        f"the catalogue file is {MAX_CATALOGUE_FILE_BYTES + 1:,} bytes, over the limit of "
        f"{MAX_CATALOGUE_FILE_BYTES:,} bytes; a catalogue within Apple's limits is far smaller",
    ),
]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "catalogue"
    folder.mkdir()
    return folder


@pytest.fixture
def capped_app(tmp_path: Path, database_url: str) -> Iterator[tuple[Flask, Catalogue]]:
    """An app on a migrated database holding one message, its image cap set to ``CAP``."""
    with retention_app(tmp_path, database_url, RETENTION_MAX_IMAGE_BYTES=CAP) as (app, retention):
        catalogue = Catalogue(retention.get_engine(app))
        assert invoke(app, "init-db").exit_code == 0
        catalogue.add_message("already-there", "Hello", "A message the database holds.")
        yield app, catalogue


def invoke(app: Flask, *args: str, fifos: Path | None = None) -> Result:
    """``flask retention ARGS``, failing the test (not hanging it) past ``HANG_GUARD``.

    Should the command be stuck opening a FIFO under ``fifos``, a writer opens
    and closes each so that the command's thread ends with the test.
    """
    runner = app.test_cli_runner()
    results: list[Result] = []
    thread = threading.Thread(
        target=lambda: results.append(runner.invoke(args=["retention", *args])), daemon=True
    )
    thread.start()
    thread.join(HANG_GUARD)
    if thread.is_alive():
        for fifo in (p for p in (fifos.rglob("*") if fifos else ()) if p.is_fifo()):
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(HANG_GUARD)
        pytest.fail(f"`flask retention {' '.join(args)}` hung for {HANG_GUARD} s")
    return results[0]


def one_error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    return line


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.id for h in HOSTILE])
def test_import_refuses_it_in_one_line_and_writes_nothing(
    capped_app: tuple[Flask, Catalogue], folder: Path, hostile: Hostile
) -> None:
    app, catalogue = capped_app
    before = (catalogue.version, catalogue.export_document())
    file = hostile.make(folder)
    result = invoke(app, "import", str(file), fifos=folder)
    assert one_error_line(result) == f"Error: {file}: {hostile.says.format(folder=folder)}"
    assert (catalogue.version, catalogue.export_document()) == before


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.id for h in HOSTILE])
def test_validate_refuses_it_in_one_line(tmp_path: Path, folder: Path, hostile: Hostile) -> None:
    file = hostile.make(folder)
    app = Flask("hostile", instance_path=str(tmp_path / "instance"))
    app.config["RETENTION_MAX_IMAGE_BYTES"] = CAP
    retention = Retention(app)
    try:
        result = invoke(app, "validate", str(file), fifos=folder)
    finally:
        retention.close(app)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stdout == f"{file}: {hostile.says.format(folder=folder)}\n"
    assert result.stderr == f"Error: {file}: 1 problem, listed above.\n"


def test_an_image_exactly_at_the_cap_is_imported(
    capped_app: tuple[Flask, Catalogue], folder: Path
) -> None:
    app, catalogue = capped_app
    (folder / "hero.png").write_bytes(HERO)
    file = image_file("hero.png")(folder)
    result = invoke(app, "import", str(file))
    assert result.exit_code == 0, result.output
    (image,) = catalogue.list_images()
    assert (image.name, image.width, image.height) == ("hero", 3840, 400)


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda folder: os.mkfifo(folder / "hero.png"), f"cannot read {{path}}: {A_FIFO}"),
        (
            lambda folder: (folder / "hero.png").write_bytes(HERO + b"\x00"),
            f"{{path}} is {CAP + 1:,} bytes, over the limit of {CAP:,} bytes; "
            "make the PNG smaller, or raise RETENTION_MAX_IMAGE_BYTES",
        ),
    ],
    ids=["fifo", "one-byte-over-the-cap"],
)
def test_image_add_refuses_what_import_refuses(
    capped_app: tuple[Flask, Catalogue],
    folder: Path,
    make: Callable[[Path], object],
    says: str,
) -> None:
    app, catalogue = capped_app
    make(folder)
    path = folder / "hero.png"
    result = invoke(app, "image", "add", str(path), "--name", "hero", fifos=folder)
    assert one_error_line(result) == f"Error: image 'hero': {says.format(path=path)}"
    assert catalogue.list_images() == []


def test_python_callers_read_images_with_the_same_checks(folder: Path) -> None:
    os.mkfifo(folder / "fifo.png")
    with pytest.raises(CatalogueError) as info:
        read_image_file(folder / "fifo.png")
    assert str(info.value) == f"cannot read {folder}/fifo.png: {A_FIFO}"
    (folder / "hero.png").write_bytes(HERO)
    assert read_image_file(folder / "hero.png", max_bytes=CAP) == HERO
    with pytest.raises(CatalogueError) as info:
        read_image_file(folder / "hero.png", max_bytes=CAP - 1)
    assert str(info.value).startswith(
        f"{folder}/hero.png is {CAP:,} bytes, over the limit of {CAP - 1:,} bytes"
    )


def test_image_add_refuses_dev_zero(capped_app: tuple[Flask, Catalogue]) -> None:
    app, catalogue = capped_app
    result = invoke(app, "image", "add", "/dev/zero", "--name", "hero")
    assert one_error_line(result) == (
        "Error: image 'hero': cannot read /dev/zero: it is a character device, not a regular file"
    )
    assert catalogue.list_images() == []


def test_image_add_takes_an_image_exactly_at_the_cap(
    capped_app: tuple[Flask, Catalogue], folder: Path
) -> None:
    app, catalogue = capped_app
    (folder / "hero.png").write_bytes(HERO)
    result = invoke(app, "image", "add", str(folder / "hero.png"), "--name", "hero")
    assert result.exit_code == 0, result.output
    assert [image.name for image in catalogue.list_images()] == ["hero"]


def test_the_default_cap_is_25_mb(tmp_path: Path, folder: Path) -> None:
    app = Flask("hostile", instance_path=str(tmp_path / "instance"))
    retention = Retention(app)
    at_cap = folder / "at-cap.png"
    over_cap = folder / "over-cap.png"
    for path, size in ((at_cap, 25_000_000), (over_cap, 25_000_001)):
        with path.open("wb") as stream:
            stream.truncate(size)  # sparse: no disk space used
    file = folder / "catalogue.json"
    file.write_text(
        json.dumps(
            {
                "images": [
                    {"name": "at-cap", "file": "at-cap.png"},
                    {"name": "over-cap", "file": "over-cap.png"},
                ]
            }
        ),
        encoding="utf-8",
    )
    try:
        result = invoke(app, "validate", str(file))
    finally:
        retention.close(app)
    assert app.config["RETENTION_MAX_IMAGE_BYTES"] == 25_000_000
    assert result.stdout.splitlines() == [
        # Read whole (it is not a PNG), then refused unread:
        f"{file}: images[0] (at-cap).file: at-cap.png: not a PNG file: it does not start "
        "with the PNG signature; Apple accepts PNG images only",
        f"{file}: images[1] (over-cap).file: over-cap.png is 25,000,001 bytes, over the limit "
        "of 25,000,000 bytes; make the PNG smaller, or raise RETENTION_MAX_IMAGE_BYTES",
    ]


@pytest.mark.parametrize("value", [0, -1, "25MB", 2.5, True])
def test_a_bad_cap_is_a_configuration_error(app: Flask, value: object) -> None:
    app.config["RETENTION_MAX_IMAGE_BYTES"] = value
    with pytest.raises(ConfigurationError) as info:
        Retention(app)
    assert str(info.value) == (
        f"RETENTION_MAX_IMAGE_BYTES must be a whole number of bytes, at least 1, not {value!r}."
    )


def outside_warning(file: Path, relative: str) -> str:
    return (
        f"Warning: {file}: images[0] (hero).file: {relative} is outside the catalogue file's "
        "folder (allowed: check that it is the image you mean)\n"
    )


@pytest.mark.parametrize("how", ["dot-dot", "absolute", "symbolic-link"])
def test_validate_warns_of_an_image_outside_the_catalogues_folder(
    tmp_path: Path, folder: Path, how: str
) -> None:
    elsewhere = tmp_path / "elsewhere.png"
    elsewhere.write_bytes(HERO)
    relative = {
        "dot-dot": "../elsewhere.png",
        "absolute": str(elsewhere),
        "symbolic-link": "link.png",
    }[how]
    (folder / "link.png").symlink_to(elsewhere)
    file = image_file(relative)(folder)
    app = Flask("hostile", instance_path=str(tmp_path / "instance"))
    retention = Retention(app)
    try:
        result = invoke(app, "validate", str(file))
    finally:
        retention.close(app)
    assert result.exit_code == 0, result.output
    assert result.stderr == outside_warning(file, relative)
    assert result.stdout == f"{file}: 1 image, 1 message, 0 defaults; no problems.\n"


def test_an_image_inside_the_folder_by_any_path_is_no_warning(tmp_path: Path, folder: Path) -> None:
    (folder / "art").mkdir()
    (folder / "art" / "hero.png").write_bytes(HERO)
    file = image_file(str(folder / "art" / ".." / "art" / "hero.png"))(folder)
    app = Flask("hostile", instance_path=str(tmp_path / "instance"))
    retention = Retention(app)
    try:
        result = invoke(app, "validate", str(file))
    finally:
        retention.close(app)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


def test_import_warns_of_an_image_outside_the_folder_and_imports_it(
    capped_app: tuple[Flask, Catalogue], tmp_path: Path, folder: Path
) -> None:
    app, catalogue = capped_app
    (tmp_path / "elsewhere.png").write_bytes(HERO)
    file = image_file("../elsewhere.png")(folder)
    result = invoke(app, "import", str(file))
    assert result.exit_code == 0, result.output
    assert result.stderr == outside_warning(file, "../elsewhere.png")
    assert [image.name for image in catalogue.list_images()] == ["hero"]


def test_brackets_digits_and_dots_inside_strings_and_comments_are_only_text(
    tmp_path: Path, folder: Path
) -> None:
    header = "[" * 40 + "{" * 10
    body = "7" * 140
    file = folder / "catalogue.toml"
    file.write_text(
        f"# {deep(50)} {'9' * 200} {'a.' * 50}\n"
        "[[messages]]\n"
        f'name = "{"a." * 40}x"\n'
        f"header = '{header}'\n"
        f'body = """\n{body}"""\n'
        f"'quoted.key' = '{deep(50)}'\n",
        encoding="utf-8",
    )
    app = Flask("hostile", instance_path=str(tmp_path / "instance"))
    retention = Retention(app)
    try:
        result = invoke(app, "validate", str(file))
    finally:
        retention.close(app)
    # Only the unknown field: its quoted name, the long texts and the comment are text.
    assert result.stdout == (
        f"{file}: messages[0] ({'a.' * 40}x).quoted.key: unknown field; the fields are: "
        "name, header, body, image, image_alt_text, header_position, bullet_points, "
        "translations\n"
    )


def test_nesting_up_to_the_limit_reaches_the_field_checks(tmp_path: Path, folder: Path) -> None:
    file = folder / "catalogue.json"
    # The object, the list and the message are 3 levels; the header adds 29 more: 32 in all.
    file.write_text(
        '{"messages": [{"name": "winback", "header": ' + deep(29) + ', "body": "b"}]}',
        encoding="utf-8",
    )
    app = Flask("hostile", instance_path=str(tmp_path / "instance"))
    retention = Retention(app)
    try:
        result = invoke(app, "validate", str(file))
        assert result.stdout == f"{file}: messages[0] (winback).header: must be a string\n"
        file.write_text(file.read_text().replace(deep(29), deep(30)), encoding="utf-8")
        result = invoke(app, "validate", str(file))
        assert result.stdout == f"{file}: not a catalogue: line 1: {DEEPLY_NESTED}\n"
    finally:
        retention.close(app)
