"""Catalogue files: TOML and JSON of the same shape, loaded and checked whole, written back."""

from __future__ import annotations

import json
import tomllib
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from flask_retention.catalogue.entries import (
    BulletPointEntry,
    CatalogueDocument,
    DefaultEntry,
    MessageEntry,
)
from flask_retention.catalogue.files import (
    dump_toml,
    load_catalogue_file,
    toml_string,
    write_catalogue_file,
)
from flask_retention.catalogue.png import encode_png
from flask_retention.catalogue.validation import CatalogueError, check_image

DESIGN_TOML = """\
[[images]]
name = "hero"
file = "images/hero.png"        # relative to the catalogue file
size = "FULL_SIZE"              # or "BULLET_POINT"

[[images]]
name = "tick"
file = "images/tick.png"
size = "BULLET_POINT"

[[messages]]
name = "winback"
header = "Before you go"
body = "Your plan includes offline mode and family sharing."
image = "hero"                  # optional
image_alt_text = "A family reading on a sofa"
header_position = "ABOVE_IMAGE" # optional
bullet_points = [ { text = "Offline mode", image = "tick", alt_text = "tick" } ]

[[defaults]]
product_id = "com.example.monthly"
locale = "en-US"
message = "winback"
"""

DESIGN_JSON = {
    "images": [
        {"name": "hero", "file": "images/hero.png", "size": "FULL_SIZE"},
        {"name": "tick", "file": "images/tick.png", "size": "BULLET_POINT"},
    ],
    "messages": [
        {
            "name": "winback",
            "header": "Before you go",
            "body": "Your plan includes offline mode and family sharing.",
            "image": "hero",
            "image_alt_text": "A family reading on a sofa",
            "header_position": "ABOVE_IMAGE",
            "bullet_points": [{"text": "Offline mode", "image": "tick", "alt_text": "tick"}],
        }
    ],
    "defaults": [{"product_id": "com.example.monthly", "locale": "en-US", "message": "winback"}],
}


@cache
def png(width: int, height: int, *, alpha: bool = False) -> bytes:
    return encode_png(width, height, alpha=alpha)


HERO = png(3840, 600)
TICK = png(1024, 1024)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A catalogue folder with the two images of the design's example."""
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "hero.png").write_bytes(HERO)
    (tmp_path / "images" / "tick.png").write_bytes(TICK)
    return tmp_path


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def load_errors(path: Path) -> list[str]:
    with pytest.raises(CatalogueError) as excinfo:
        load_catalogue_file(path)
    return excinfo.value.errors


EXPECTED = CatalogueDocument(
    images=(
        check_image(HERO, "FULL_SIZE", name="hero", source="images/hero.png"),
        check_image(TICK, "BULLET_POINT", name="tick", source="images/tick.png"),
    ),
    messages=(
        MessageEntry(
            name="winback",
            header="Before you go",
            body="Your plan includes offline mode and family sharing.",
            image="hero",
            image_alt_text="A family reading on a sofa",
            header_position="ABOVE_IMAGE",
            bullet_points=(BulletPointEntry(text="Offline mode", image="tick", alt_text="tick"),),
        ),
    ),
    defaults=(DefaultEntry(product_id="com.example.monthly", locale="en-US", message="winback"),),
)


def test_design_example_loads_from_toml(folder: Path) -> None:
    path = folder / "catalogue.toml"
    path.write_text(DESIGN_TOML, encoding="utf-8")
    assert load_catalogue_file(path) == EXPECTED


def test_json_of_the_same_shape_loads_the_same_document(folder: Path) -> None:
    toml_path = folder / "catalogue.toml"
    toml_path.write_text(DESIGN_TOML, encoding="utf-8")
    json_path = write_json(folder / "catalogue.json", DESIGN_JSON)
    assert load_catalogue_file(json_path) == load_catalogue_file(toml_path) == EXPECTED


def test_extension_is_case_insensitive_and_str_paths_work(folder: Path) -> None:
    path = folder / "CATALOGUE.TOML"
    path.write_text(DESIGN_TOML, encoding="utf-8")
    assert load_catalogue_file(str(path)) == EXPECTED


def test_image_files_are_relative_to_the_catalogue_not_the_cwd(
    folder: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = folder / "catalogue.toml"
    path.write_text(DESIGN_TOML, encoding="utf-8")
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    assert load_catalogue_file(path) == EXPECTED


def test_image_size_is_inferred_when_omitted(folder: Path) -> None:
    data = json.loads(json.dumps(DESIGN_JSON))
    for image in data["images"]:
        del image["size"]
    assert load_catalogue_file(write_json(folder / "c.json", data)) == EXPECTED


def test_sections_are_optional(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("# nothing yet\n", encoding="utf-8")
    assert load_catalogue_file(path) == CatalogueDocument()
    assert load_catalogue_file(write_json(tmp_path / "e.json", {})) == CatalogueDocument()


def test_unknown_locale_is_a_warning_in_the_loaded_document(folder: Path) -> None:
    data = json.loads(json.dumps(DESIGN_JSON))
    data["defaults"][0]["locale"] = "en-ZZ"
    doc = load_catalogue_file(write_json(folder / "c.json", data))
    assert doc.defaults[0].locale == "en-ZZ"
    assert len(doc.warnings) == 1
    assert doc.warnings[0].startswith("defaults[0].locale: locale 'en-ZZ'")


# --------------------------------------------------------------------------- file errors


@pytest.mark.parametrize("name", ["catalogue.yaml", "catalogue", "catalogue.toml.bak"])
def test_unsupported_extensions_say_which_are_supported(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("images = []", encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"unsupported catalogue file type .*\.toml or \.json"):
        load_catalogue_file(path)


def test_missing_catalogue_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(CatalogueError) as excinfo:
        load_catalogue_file(path)
    assert (
        str(excinfo.value) == f"{path}: cannot read the catalogue file: No such file or directory"
    )


def test_toml_syntax_error_says_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[messages]]\nname = "a"\nheader = "unclosed\n', encoding="utf-8")
    with pytest.raises(CatalogueError) as excinfo:
        load_catalogue_file(path)
    message = str(excinfo.value)
    assert message.startswith(f"{path}: not valid TOML: ")
    assert "line 3" in message


def test_toml_duplicate_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[messages]]\nname = "a"\nname = "b"\n', encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"not valid TOML.*line 3"):
        load_catalogue_file(path)


def test_json_syntax_error_says_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "messages": [\n    {"name": "a",}\n  ]\n}\n', encoding="utf-8")
    with pytest.raises(CatalogueError) as excinfo:
        load_catalogue_file(path)
    assert str(excinfo.value).startswith(f"{path}: not valid JSON: ")
    assert "(at line 3, column 18)" in str(excinfo.value)


def test_json_duplicate_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.json"
    path.write_text('{"messages": [{"name": "a", "name": "b"}]}', encoding="utf-8")
    with pytest.raises(CatalogueError, match="the key 'name' appears twice"):
        load_catalogue_file(path)


def test_json_document_must_be_an_object(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match=r"must be an object .* not a list"):
        load_catalogue_file(write_json(tmp_path / "list.json", []))


def test_catalogue_must_be_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[[messages]]\nname = "café"\n'.encode("latin-1"))
    with pytest.raises(CatalogueError, match=r"not UTF-8 text \(line 2, byte 24\)"):
        load_catalogue_file(path)


def test_utf8_byte_order_mark_is_accepted(folder: Path) -> None:
    path = folder / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(DESIGN_JSON).encode())
    assert load_catalogue_file(path) == EXPECTED


def test_unknown_top_level_keys_and_wrong_section_types(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    errors = load_errors(write_json(path, {"image": [], "messages": {"name": "x"}}))
    assert errors == [
        "image: unknown top-level key; "
        "a catalogue has only languages, images, messages and defaults",
        "messages: must be a list of tables ([[messages]] in TOML, an array in JSON), not a table",
    ]


def test_unreadable_image_names_the_entry_and_path(folder: Path) -> None:
    data = json.loads(json.dumps(DESIGN_JSON))
    data["images"][0]["file"] = "art/missing.png"
    errors = load_errors(write_json(folder / "c.json", data))
    assert errors == [
        f"images[0] (hero).file: cannot read {folder / 'art' / 'missing.png'}: "
        "No such file or directory"
    ]


def test_bad_image_names_the_entry_file_and_rule(folder: Path) -> None:
    (folder / "images" / "tick.png").write_bytes(png(1024, 1024, alpha=True))
    errors = load_errors(write_json(folder / "c.json", DESIGN_JSON))
    assert errors == [
        "images[1] (tick).file: images/tick.png: has an alpha channel (PNG colour type 6, "
        "RGBA); Apple refuses transparency: export it without alpha"
    ]


def test_every_problem_is_reported_with_entry_and_field(folder: Path) -> None:
    (folder / "images" / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a png")
    path = folder / "catalogue.toml"
    path.write_text(
        DESIGN_TOML
        + """
[[images]]
name = "photo"
file = "images/photo.jpg"

[[images]]
file = "images/hero.png"

[[messages]]
name = "long"
header = "Ceci n'est pas un en-tête court, il a bien plus de soixante-six caractères"
body = "ok"
header_position = "ABOVE_IMAGE"
bullet_points = [ { text = "t", image = "hero", alt_text = "a" } ]

[[messages]]
name = "uses-photo"
header = "h"
body = "b"
image = "photo"
image_alt_text = "p"

[[defaults]]
product_id = ""
locale = "en_GB"
message = "gone"

[[defaults]]
product_id = "com.example.monthly"
locale = "en-US"
message = "long"
""",
        encoding="utf-8",
    )
    with pytest.raises(CatalogueError) as excinfo:
        load_catalogue_file(path)
    assert excinfo.value.errors == [
        "images[2] (photo).file: images/photo.jpg: not a PNG file: it does not start with the "
        "PNG signature; it looks like a JPEG image; Apple accepts PNG images only",
        "images[3].name: missing (it is required)",
        "messages[1] (long).header: 74 characters, Apple's limit is 66",
        "messages[1] (long).header_position: ABOVE_IMAGE needs an image: give the message an "
        "image or use ABOVE_BODY",
        "defaults[1].product_id: must not be empty",
        "defaults[1].locale: 'en_GB' uses an underscore; App Store locale short codes use "
        "hyphens: write en-GB",
        # "uses-photo" refers to an image that failed above: not reported twice.
        "defaults[2]: a second default for com.example.monthly in en-US (first by defaults[0]); "
        "each product and locale has one default",
    ]
    assert str(excinfo.value).startswith(f"{path}: 7 problems in the catalogue:\n  - images[2]")


def test_cross_references_are_checked_in_files(folder: Path) -> None:
    data = json.loads(json.dumps(DESIGN_JSON))
    data["messages"][0]["bullet_points"][0]["image"] = "hero"
    data["defaults"][0]["message"] = "winbak"
    errors = load_errors(write_json(folder / "c.json", data))
    assert errors == [
        "messages[0] (winback).bullet_points[0].image: 'hero' is a FULL_SIZE image, but a "
        "bullet point's image must be BULLET_POINT (BULLET_POINT is 1024x1024 px)",
        "defaults[0].message: no message named 'winbak'; add it to messages or fix the name",
    ]


# --------------------------------------------------------------------------- writing


TRICKY = [
    'He said "stay"',
    "C:\\Users\\back\\slash \\n not a newline",
    "line one\nline two\r\nline three",
    "tab\there, bell \x07, escape \x1b, delete \x7f, nul \x00",
    "Ünïcödé — 日本語 — עברית — \N{GRINNING FACE}\N{ZERO WIDTH JOINER}\N{FAMILY}",
    "'single' and '''triple''' and \"\"\"triple double\"\"\"",
    "# not a comment",
    "\\u0041 stays literal",
    " leading and trailing spaces ",
]


#: TRICKY as message texts: a message refuses NUL characters (Apple and PostgreSQL do).
MESSAGE_TEXTS = [text.replace(", nul \x00", "") for text in TRICKY]


@pytest.mark.parametrize("text", TRICKY)
def test_toml_string_round_trips_through_tomllib(text: str) -> None:
    assert tomllib.loads(f"value = {toml_string(text)}\n")["value"] == text


def test_toml_string_escapes_every_control_character() -> None:
    text = "".join(chr(c) for c in [*range(0x20), 0x7F])
    rendered = toml_string(text)
    assert all(ord(c) >= 0x20 and ord(c) != 0x7F for c in rendered)
    assert tomllib.loads(f"v = {rendered}")["v"] == text


def test_dump_toml_refuses_values_outside_the_catalogue_shape() -> None:
    with pytest.raises(TypeError, match="strings, tables and lists"):
        dump_toml({"messages": [{"name": 3}]})
    with pytest.raises(ValueError, match="bare TOML key"):
        dump_toml({"messages": [{"bad key": "x"}]})


def tricky_document() -> CatalogueDocument:
    hero = check_image(HERO, name="hero/../../escape")
    tick = check_image(TICK, name="tick")
    tick_upper = check_image(png(1024, 1024), name="Tick")
    messages = tuple(
        MessageEntry(
            name=f"message {i} «{''.join(c for c in text[:10] if c.isprintable())}»",
            header=text[:66].strip() or "h",
            body=(text * 3)[:144].strip() or "b",
            image="hero/../../escape" if i % 2 else None,
            image_alt_text=text[:150] if i % 2 else None,
            header_position="ABOVE_IMAGE" if i % 4 == 1 else None,
            bullet_points=tuple(
                BulletPointEntry(
                    text=f"{j}: {text}"[:66], image=("tick", "Tick")[j % 2], alt_text=text
                )
                for j in range(i % 6)
            ),
        )
        for i, text in enumerate(MESSAGE_TEXTS)
    )
    defaults = (
        DefaultEntry(product_id="com.example.monthly", locale="en-US", message=messages[0].name),
        DefaultEntry(product_id="com.example.yearly", locale="zh-Hant", message=messages[1].name),
    )
    return CatalogueDocument(images=(hero, tick, tick_upper), messages=messages, defaults=defaults)


def written_sources(
    doc: CatalogueDocument, images_dir: str, loaded: CatalogueDocument
) -> CatalogueDocument:
    """``doc`` with each image's ``source`` as the writer names it (the only field that changes)."""
    sources = {image.name: image.source for image in loaded.images}
    assert all(str(source).startswith(f"{images_dir}/") for source in sources.values())
    return replace(doc, images=tuple(replace(i, source=sources[i.name]) for i in doc.images))


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_write_then_load_round_trips(tmp_path: Path, suffix: str) -> None:
    doc = tricky_document()
    path = tmp_path / "out" / f"catalogue{suffix}"
    path.parent.mkdir()
    write_catalogue_file(doc, path)
    loaded = load_catalogue_file(path)
    assert loaded == written_sources(doc, "images", loaded)
    assert [i.data for i in loaded.images] == [HERO, TICK, TICK]


def test_written_image_files_are_safe_and_distinct(tmp_path: Path) -> None:
    write_catalogue_file(tricky_document(), tmp_path / "c.toml")
    files = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert len(files) == 3
    assert "tick.png" in files
    assert len({f.lower() for f in files}) == 3
    assert all("/" not in f and not f.startswith(".") for f in files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml", "images"]


def test_toml_and_json_writes_hold_the_same_document(tmp_path: Path) -> None:
    doc = tricky_document()
    write_catalogue_file(doc, tmp_path / "c.toml", images_dir="art/png")
    write_catalogue_file(doc, tmp_path / "c.json", images_dir="art/png")
    from_toml = load_catalogue_file(tmp_path / "c.toml")
    assert from_toml == load_catalogue_file(tmp_path / "c.json")
    assert tomllib.loads((tmp_path / "c.toml").read_text("utf-8")) == json.loads(
        (tmp_path / "c.json").read_text("utf-8")
    )
    assert from_toml == written_sources(doc, "art/png", from_toml)


def test_writing_a_loaded_document_again_is_a_fixed_point(tmp_path: Path) -> None:
    write_catalogue_file(tricky_document(), tmp_path / "a" / "c.toml")
    first = load_catalogue_file(tmp_path / "a" / "c.toml")
    write_catalogue_file(first, tmp_path / "b" / "c.toml")
    assert load_catalogue_file(tmp_path / "b" / "c.toml") == first
    assert (tmp_path / "a" / "c.toml").read_bytes() == (tmp_path / "b" / "c.toml").read_bytes()


def test_written_toml_reads_like_the_design(folder: Path) -> None:
    path = folder / "catalogue.toml"
    path.write_text(DESIGN_TOML, encoding="utf-8")
    out = folder / "export" / "catalogue.toml"
    write_catalogue_file(load_catalogue_file(path), out)
    assert out.read_text("utf-8").splitlines()[1:] == [
        "",
        "[[images]]",
        'name = "hero"',
        'file = "images/hero.png"',
        'size = "FULL_SIZE"',
        "",
        "[[images]]",
        'name = "tick"',
        'file = "images/tick.png"',
        'size = "BULLET_POINT"',
        "",
        "[[messages]]",
        'name = "winback"',
        'header = "Before you go"',
        'body = "Your plan includes offline mode and family sharing."',
        'image = "hero"',
        'image_alt_text = "A family reading on a sofa"',
        'header_position = "ABOVE_IMAGE"',
        "bullet_points = [",
        '  { text = "Offline mode", image = "tick", alt_text = "tick" },',
        "]",
        "",
        "[[defaults]]",
        'product_id = "com.example.monthly"',
        'locale = "en-US"',
        'message = "winback"',
    ]


def test_writing_an_invalid_document_writes_nothing(tmp_path: Path) -> None:
    doc = replace(
        tricky_document(),
        defaults=(DefaultEntry(product_id="p", locale="en-US", message="missing"),),
    )
    with pytest.raises(CatalogueError, match="no message named 'missing'"):
        write_catalogue_file(doc, tmp_path / "c.toml")
    assert list(tmp_path.iterdir()) == []


def test_writing_keeps_the_old_file_when_the_extension_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match=r"\.toml or \.json"):
        write_catalogue_file(CatalogueDocument(), tmp_path / "c.yaml")
    assert list(tmp_path.iterdir()) == []


def test_writing_replaces_an_existing_catalogue(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text("old", encoding="utf-8")
    write_catalogue_file(CatalogueDocument(), path)
    assert json.loads(path.read_text("utf-8")) == {"images": [], "messages": [], "defaults": []}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "images"]


def test_bullet_points_may_be_written_as_an_array_of_tables(folder: Path) -> None:
    path = folder / "catalogue.toml"
    text = DESIGN_TOML.replace(
        'bullet_points = [ { text = "Offline mode", image = "tick", alt_text = "tick" } ]\n',
        '\n[[messages.bullet_points]]\ntext = """Offline mode"""\nimage = "tick"\n'
        "alt_text = 'tick'\n",
    )
    path.write_text(text, encoding="utf-8")
    assert load_catalogue_file(path) == EXPECTED


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"images": ["hero.png"]}, "images[0]: must be a table (object) of fields, not a string"),
        ({"images": {"name": "hero"}}, "images: must be a list of tables ([[images]] in TOML"),
        ({"messages": [{"name": 7, "header": "h", "body": "b"}]}, "messages[0].name: must be"),
        ({"defaults": [None]}, "defaults[0]: must be a table (object) of fields, not null"),
        (
            {"images": [{"name": "hero", "file": "images/hero.png", "size": "full"}]},
            "images[0] (hero).size: must be FULL_SIZE or BULLET_POINT, not 'full'",
        ),
        (
            {"images": [{"name": "hero", "file": "images"}]},
            "images[0] (hero).file: cannot read ",
        ),
        (
            {"images": [{"name": "hero", "file": ""}]},
            "images[0] (hero).file: must not be empty",
        ),
    ],
)
def test_malformed_entries_name_the_entry(folder: Path, data: Any, error: str) -> None:
    errors = load_errors(write_json(folder / "c.json", data))
    assert len(errors) == 1
    assert errors[0].startswith(error), errors
