"""``flask retention validate``: every problem of a catalogue file, one line each; nothing
written, no database needed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner

from flask_retention import Retention
from flask_retention.catalogue.files import check_catalogue_file
from flask_retention.catalogue.png import encode_png
from flask_retention.catalogue.store import Catalogue

from .catalogue_support import bullet_png, full_png, migrated_engine

EXAMPLE_CATALOGUE = Path(__file__).resolve().parent.parent / "example_app" / "catalogue.toml"

GOOD = """\
[[images]]
name = "hero"
file = "images/hero.png"

[[images]]
name = "tick"
file = "images/tick.png"

[[messages]]
name = "winback"
header = "Before you go"
body = "Your plan includes offline mode."
image = "hero"
image_alt_text = "A family on a sofa"
bullet_points = [{ text = "Offline mode", image = "tick", alt_text = "A tick" }]

[[defaults]]
product_id = "com.example.monthly"
locale = "en-US"
message = "winback"
"""

BAD = """\
colour = "blue"

[[images]]
name = "see-through"
file = "images/alpha.png"

[[images]]
name = "tick"
file = "images/tick.png"

[[messages]]
name = "winback"
header = "Before you go"
body = "Short body."
image = "tick"
image_alt_text = "A tick"

[[messages]]
name = "winback"
header = "Twice"
body = "The same name again."

[[messages]]
name = "too-long"
header = "An unusually long header that goes on and on, well past what Apple allows"
body = "Short body."

[[defaults]]
product_id = "com.example.monthly"
locale = "en_US"
message = "winback"

[[defaults]]
product_id = "com.example.yearly"
locale = "en-GB"
message = "nowhere"
"""

#: Each problem of BAD, as the entry and field it names (in the order they are listed).
BAD_PROBLEMS = [
    "colour: unknown top-level key",
    "images[0] (see-through).file: images/alpha.png:",
    "messages[2] (too-long).header: 73 characters",
    "defaults[0].locale: 'en_US' uses an underscore",
    "messages[0] (winback).image: 'tick' is a BULLET_POINT image",
    "messages[1] (winback): the name 'winback' is used again",
    "defaults[1].message: no message named 'nowhere'",
]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder with the images GOOD and BAD use, and both files."""
    folder = tmp_path / "catalogue"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "hero.png").write_bytes(full_png())
    (folder / "images" / "tick.png").write_bytes(bullet_png())
    (folder / "images" / "alpha.png").write_bytes(encode_png(3840, 600, alpha=True))
    (folder / "good.toml").write_text(GOOD, encoding="utf-8")
    (folder / "bad.toml").write_text(BAD, encoding="utf-8")
    return folder


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """Where the app's catalogue database would be: it must never appear."""
    return tmp_path / "never.db"


@pytest.fixture
def validate_app(app: Flask, database: Path) -> Iterator[Flask]:
    app.config["RETENTION_DATABASE_URI"] = f"sqlite:///{database}"
    retention = Retention(app)
    yield app
    retention.close(app)


@pytest.fixture
def cli(validate_app: Flask) -> FlaskCliRunner:
    return validate_app.test_cli_runner()


def test_a_good_file_says_what_it_holds(cli: FlaskCliRunner, folder: Path) -> None:
    file = folder / "good.toml"
    result = cli.invoke(args=["retention", "validate", str(file)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{file}: 2 images, 1 message, 1 default; no problems.\n"
    assert result.stderr == ""


def test_a_bad_file_lists_every_problem_on_a_line_of_its_own(
    cli: FlaskCliRunner, folder: Path
) -> None:
    file = folder / "bad.toml"
    result = cli.invoke(args=["retention", "validate", str(file)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == len(BAD_PROBLEMS)
    for line, problem in zip(lines, BAD_PROBLEMS, strict=True):
        assert line.startswith(f"{file}: {problem}")
    assert result.stderr == f"Error: {file}: 7 problems, listed above.\n"
    assert "Traceback" not in result.output


def test_validate_finds_what_import_refuses(
    cli: FlaskCliRunner, folder: Path, database: Path
) -> None:
    file = folder / "bad.toml"
    found = cli.invoke(args=["retention", "validate", str(file)]).stdout.splitlines()
    problems = [line.removeprefix(f"{file}: ") for line in found]
    assert len(problems) == len(BAD_PROBLEMS)
    assert problems == list(check_catalogue_file(file).problems)
    assert cli.invoke(args=["retention", "init-db"]).exit_code == 0
    refused = cli.invoke(args=["retention", "import", str(file)])
    assert refused.exit_code == 1
    assert all(problem in refused.stderr for problem in problems)


def test_json_for_pipelines(cli: FlaskCliRunner, folder: Path) -> None:
    good = cli.invoke(args=["retention", "validate", "--json", str(folder / "good.toml")])
    assert good.exit_code == 0
    assert json.loads(good.stdout) == {
        "file": str(folder / "good.toml"),
        "ok": True,
        "problems": [],
        "warnings": [],
        "images": 2,
        "messages": 1,
        "defaults": 1,
        "translations": 0,
    }
    bad = cli.invoke(args=["retention", "validate", "--json", str(folder / "bad.toml")])
    assert bad.exit_code == 1
    report = json.loads(bad.stdout)
    assert report["ok"] is False
    assert (report["images"], report["messages"], report["defaults"]) == (2, 3, 2)
    assert len(report["problems"]) == len(BAD_PROBLEMS)
    for found, problem in zip(report["problems"], BAD_PROBLEMS, strict=True):
        assert found.startswith(problem)


def test_a_file_that_does_not_parse_is_one_problem_with_its_line(
    cli: FlaskCliRunner, tmp_path: Path
) -> None:
    file = tmp_path / "broken.toml"
    file.write_text('[[messages]]\nname = "x"\nheader = \n', encoding="utf-8")
    result = cli.invoke(args=["retention", "validate", str(file)])
    assert result.exit_code == 1
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"{file}: not valid TOML:")
    assert "line 3" in line
    assert result.stderr == f"Error: {file}: 1 problem, listed above.\n"

    result = cli.invoke(args=["retention", "validate", "--json", str(file)])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert (report["images"], report["messages"], report["defaults"]) == (None, None, None)


def test_warnings_go_to_stderr_and_pass(cli: FlaskCliRunner, folder: Path) -> None:
    file = folder / "unknown-locale.toml"
    file.write_text(GOOD.replace('"en-US"', '"xx-XX"'), encoding="utf-8")
    result = cli.invoke(args=["retention", "validate", str(file)])
    assert result.exit_code == 0
    assert result.stdout.endswith("; no problems.\n")
    assert result.stderr.startswith(f"Warning: {file}: defaults[0].locale: locale 'xx-XX'")


def test_validate_creates_no_database(
    cli: FlaskCliRunner, validate_app: Flask, folder: Path, database: Path
) -> None:
    codes = [
        cli.invoke(args=["retention", "validate", str(folder / name)]).exit_code
        for name in ("good.toml", "bad.toml")
    ]
    assert codes == [0, 1]
    assert not database.exists()
    assert not Path(validate_app.instance_path).exists()


def test_validate_leaves_an_existing_catalogue_unchanged(
    app: Flask, database_url: str, folder: Path
) -> None:
    engine = migrated_engine(database_url)
    catalogue = Catalogue(engine)
    catalogue.add_message("other", "Stay", "A message the file does not list.")
    version = catalogue.version
    retention = Retention(app, engine=engine)
    try:
        runner = app.test_cli_runner()
        codes = [
            runner.invoke(args=["retention", "validate", str(folder / name)]).exit_code
            for name in ("good.toml", "bad.toml")
        ]
        assert codes == [0, 1]
        assert catalogue.version == version
        assert [m.name for m in catalogue.list_messages()] == ["other"]
        assert catalogue.list_images() == []
    finally:
        retention.close(app)
        engine.dispose()


def test_the_example_apps_catalogue_validates(cli: FlaskCliRunner) -> None:
    result = cli.invoke(args=["retention", "validate", str(EXAMPLE_CATALOGUE)])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{EXAMPLE_CATALOGUE}: 3 images, 6 messages, 2 translations, 8 defaults; no problems.\n"
    )
