"""The documentation: every Python sample runs, the config reference is complete, Sphinx builds.

Samples are the fenced ``python`` blocks of ``docs/**/*.md`` and ``README.md``.
Each file's blocks run in order, in one namespace, in a temporary directory;
afterwards every ``Retention`` the page initialised is closed.
An HTML comment on the line before a block tells this test what to do with it:

- ``<!-- docs-test: skip REASON -->``: do not run this Python block (a
  fragment that cannot run alone); the reason is required;
- ``<!-- docs-test: file NAME -->``: write this block (any language) to
  ``NAME`` in the temporary directory before running the next blocks, so that
  a page can show a catalogue file and then load exactly that file;
- ``<!-- docs-test: requires MODULE ... -->``: the page's samples use these
  third-party modules (from the ``docs`` extra); without them the page is
  skipped, saying which is missing.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from flask import Flask

from flask_retention import Retention
from flask_retention.core.config import DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_MARKER = re.compile(r"^<!--\s*docs-test:\s*(?P<action>\S+)\s*(?P<argument>.*?)\s*-->$")


@dataclass(frozen=True)
class Block:
    """A fenced code block of a Markdown file, with its docs-test marker if any."""

    path: Path
    line: int  # line number of the block's first line of code (1-based)
    language: str
    code: str
    action: str | None = None
    argument: str = ""

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def markdown_files() -> list[Path]:
    files = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)
    return [*files, ROOT / "README.md"]


def code_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of ``path``, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        fence = match["fence"]
        language = match["info"].strip().split(" ")[0] if match["info"].strip() else ""
        previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = _MARKER.match(previous)
        start = i + 1
        end = start
        while end < len(lines):
            closing = lines[end].strip()
            if closing.startswith(fence[0] * len(fence)) and not closing.strip(fence[0]):
                break
            end += 1
        else:
            raise AssertionError(f"{path}:{i + 1}: code fence never closed")
        indent = len(match["indent"])  # a fence indented in a list item: so is its code
        code = "\n".join(
            line[indent:] if not line[:indent].strip() else line for line in lines[start:end]
        )
        blocks.append(
            Block(
                path=path,
                line=start + 1,
                language=language,
                code=code + "\n",
                action=marker["action"] if marker else None,
                argument=marker["argument"] if marker else "",
            )
        )
        i = end + 1
    return blocks


def files_with_samples() -> list[Path]:
    return [
        p
        for p in markdown_files()
        if any(b.language == "python" and b.action != "skip" for b in code_blocks(p))
    ]


def test_markers_are_known_and_justified() -> None:
    skipped = []
    for path in markdown_files():
        for block in code_blocks(path):
            if block.action is None:
                continue
            assert block.action in ("skip", "file", "requires"), (
                f"{block.where}: unknown docs-test action {block.action!r}"
            )
            assert block.argument, f"{block.where}: docs-test {block.action} needs an argument"
            if block.action == "skip":
                assert block.language == "python", f"{block.where}: only Python blocks run"
                skipped.append(block.where)
    # Skips are for fragments only: a page that needs more is a page to rewrite.
    assert len(skipped) <= 4, skipped


def test_every_page_with_code_has_samples_to_run() -> None:
    names = {p.name for p in files_with_samples()}
    assert {"README.md", "quickstart.md", "selectors.md", "catalogue.md"} <= names


@pytest.mark.parametrize("path", files_with_samples(), ids=lambda p: str(p.relative_to(ROOT)))
def test_samples_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = code_blocks(path)
    for block in blocks:
        if block.action == "requires":
            missing = [m for m in block.argument.split() if importlib.util.find_spec(m) is None]
            if missing:
                pytest.skip(f'{", ".join(missing)} not installed (pip install -e ".[docs]")')
    monkeypatch.chdir(tmp_path)
    # Every Retention a page initialises is closed afterwards (pages don't show this chore).
    made: list[Retention] = []
    init_app = Retention.init_app

    def recording_init_app(self: Retention, app: Flask, **database: Any) -> None:
        made.append(self)
        init_app(self, app, **database)

    monkeypatch.setattr(Retention, "init_app", recording_init_app)
    saved_environ = dict(os.environ)
    namespace: dict[str, object] = {"__name__": f"docs_sample_{path.stem}"}
    ran = 0
    try:
        for block in blocks:
            if block.action == "file":
                target = tmp_path / block.argument
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.code, encoding="utf-8")
            elif block.language == "python" and block.action != "skip":
                # Pad so that a traceback's line number is the line in the Markdown file.
                source = "\n" * (block.line - 1) + block.code
                exec(compile(source, str(block.path), "exec"), namespace)  # noqa: S102
                ran += 1
    finally:
        os.environ.clear()
        os.environ.update(saved_environ)
        for retention in made:
            retention.close()
    assert ran


def test_configuration_page_documents_every_key() -> None:
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^### `(RETENTION_[A-Z0-9_]+)`$", page, re.MULTILINE))
    table = set(re.findall(r"^\| `(RETENTION_[A-Z0-9_]+)` \|", page, re.MULTILINE))
    missing = sorted(set(DEFAULTS) - headings)
    assert not missing, f"configuration.md has no section for {missing}"
    assert not sorted(set(DEFAULTS) - table), "configuration.md's summary table misses keys"
    known = set(DEFAULTS) | config_keys_in_code()
    assert headings <= known, f"configuration.md documents keys nothing reads: {headings - known}"
    assert table <= known


def config_keys_in_code() -> set[str]:
    """Every ``RETENTION_*`` key the package names as a whole string literal (``"RETENTION_X"``)."""
    keys = set()
    for path in (ROOT / "flask_retention").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and re.fullmatch(r"RETENTION_[A-Z0-9_]+", node.value)
            ):
                keys.add(node.value)
    return keys


def test_configuration_page_documents_every_key_the_code_reads() -> None:
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^### `(RETENTION_[A-Z0-9_]+)`$", page, re.MULTILINE))
    code_keys = config_keys_in_code()
    assert set(DEFAULTS) <= code_keys  # the scan sees DEFAULTS itself
    missing = sorted(code_keys - headings)
    assert not missing, f"configuration.md has no section for {missing}"


def test_configuration_page_states_each_default() -> None:
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    for key, default in DEFAULTS.items():
        row = re.search(rf"^\| `{key}` \| (?P<default>[^|]+) \|", page, re.MULTILINE)
        assert row is not None, key
        assert f"`{default!r}`".replace("'", '"') in row["default"], (key, row["default"])


_COMMAND = re.compile(r"flask (?:--app \S+ )?retention((?: [a-z][a-z-]*)+)")


def test_every_command_the_docs_name_exists() -> None:
    """``flask retention X [Y]`` in the docs and README names a real command."""
    from flask_retention.cli import retention_cli

    named = []
    for path in markdown_files():
        text = path.read_text(encoding="utf-8")
        for match in _COMMAND.finditer(text):
            command: click.Command = retention_cli
            words = match[1].split()
            for word in words:
                if not isinstance(command, click.Group):
                    break  # the rest are arguments
                sub = command.commands.get(word)
                assert sub is not None, f"{path.name}: no command {match[0]!r}"
                command = sub
            named.append(match[0])
    assert named


def _have_sphinx() -> bool:
    return all(importlib.util.find_spec(m) for m in ("sphinx", "myst_parser", "furo"))


needs_sphinx = pytest.mark.skipif(
    not _have_sphinx(),
    reason='the docs extra is not installed (pip install -e ".[docs]"); CI installs it',
)


def sphinx_build(source: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-d",
            str(out / "doctrees"),
            str(source),
            str(out / "html"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
        check=False,
    )


@needs_sphinx
def test_docs_build_without_warnings(tmp_path: Path) -> None:
    result = sphinx_build(DOCS, tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    html = tmp_path / "html"
    for page in ("index", "quickstart", "selectors", "configuration", "catalogue", "cli", "api"):
        assert (html / f"{page}.html").is_file(), page
    # The substitutions of Apple's limits are filled in from the code.
    catalogue = (html / "catalogue.html").read_text(encoding="utf-8")
    assert "{{" not in catalogue
    assert "at most 66 characters" in catalogue


CLI_SAMPLE = """
import click

@click.group(help="Sample group.")
def group():
    pass

@group.command(help="Add an image.\\n\\nThe size is inferred when omitted.")
@click.argument("path")
@click.option("--name", required=True, help="The name of the image.")
@click.option("--size", type=click.Choice(["FULL_SIZE", "BULLET_POINT"]), help="Apple's size.")
def add(path, name, size):
    pass

@group.group(help="Defaults.")
def default():
    pass

@default.command("set", help="Choose the default message.")
@click.argument("product_id")
@click.argument("locale")
def set_(product_id, locale):
    pass

@group.command(hidden=True)
def secret():
    pass
"""


@needs_sphinx
def test_cli_reference_is_generated_from_the_commands(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (tmp_path / "sample_cli.py").write_text(CLI_SAMPLE, encoding="utf-8")
    (source / "conf.py").write_text(
        "import sys\n"
        f"sys.path[:0] = [{str(DOCS / '_ext')!r}, {str(tmp_path)!r}]\n"
        "extensions = ['myst_parser', 'retention_cli']\n",
        encoding="utf-8",
    )
    (source / "index.md").write_text(
        "# CLI\n\n```{retention-cli} sample_cli:group\n:prog: flask sample\n```\n",
        encoding="utf-8",
    )
    result = sphinx_build(source, tmp_path / "out")
    assert result.returncode == 0, result.stderr + result.stdout
    html = (tmp_path / "out" / "html" / "index.html").read_text(encoding="utf-8")
    for text in (
        "Sample group.",
        "flask sample add",
        "Add an image.",
        "The size is inferred when omitted.",
        "flask sample add [OPTIONS] PATH",
        "--name",
        "The name of the image.",
        "FULL_SIZE|BULLET_POINT",
        "[required]",
        "flask sample default set",
        "flask sample default set [OPTIONS] PRODUCT_ID LOCALE",
        "Choose the default message.",
    ):
        assert text in html, text
    assert "secret" not in html
    assert "Show this message and exit" not in html  # --help is on every command: left out


@needs_sphinx
def test_cli_reference_reports_a_wrong_group(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(DOCS / '_ext')!r})\n"
        "extensions = ['myst_parser', 'retention_cli']\n",
        encoding="utf-8",
    )
    (source / "index.md").write_text(
        "# CLI\n\n```{retention-cli} flask_retention.cli:no_such_group\n```\n", encoding="utf-8"
    )
    result = sphinx_build(source, tmp_path / "out")
    assert result.returncode != 0
    assert "cannot load 'flask_retention.cli:no_such_group'" in result.stderr
