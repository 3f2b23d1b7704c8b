"""The package as users get it: ``python -m build`` gives an sdist and a wheel with
the package data and complete metadata, and the wheel, installed into a fresh
virtual environment, runs the example app's first signed request.

Slow (a build and an install from the package index, tens of seconds), and run
in CI like every other test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

#: Flask-retention's runtime dependencies: nothing else may be required at run time.
RUNTIME_DEPENDENCIES = {
    "flask",
    "sqlalchemy",
    "alembic",
    "marshmallow",
    "pyjwt",
    "cryptography",
    "httpx",
}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build`` of the checkout: the sdist, then the wheel built from it."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    return _one(dist, "flask_retention-*-py3-none-any.whl")


@pytest.fixture(scope="module")
def sdist(dist: Path) -> Path:
    return _one(dist, "flask_retention-*.tar.gz")


def test_wheel_holds_the_package_data(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        root_pem = z.read("flask_retention/data/AppleRootCA-G3.pem")
    assert root_pem == (ROOT / "flask_retention/data/AppleRootCA-G3.pem").read_bytes()
    shipped = {
        "flask_retention/py.typed",
        "flask_retention/catalogue/migrations/env.py",
        "flask_retention/catalogue/migrations/script.py.mako",
        "flask_retention/testing/fake_app_store.py",
    }
    shipped |= {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "flask_retention/catalogue/migrations/versions").glob("*.py")
    }
    assert shipped <= names
    assert not [n for n in names if n.startswith(("tests/", "example_app/", "docs/"))]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_wheel_metadata_is_complete(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        (metadata_name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        meta = HeaderParser().parsestr(z.read(metadata_name).decode())
    assert meta["Name"] == "flask-retention"
    assert meta["Summary"]
    assert meta["License-Expression"] == "MIT"
    assert meta["License-File"] == "LICENSE"
    assert meta["Requires-Python"] == ">=3.11"
    assert meta["Description-Content-Type"] == "text/markdown"
    description = meta.get_payload()  # the long description: a single-part body, so a str
    assert isinstance(description, str)
    assert description.strip() == (ROOT / "README.md").read_text().strip()
    classifiers = meta.get_all("Classifier") or []
    assert "Framework :: Flask" in classifiers
    assert "Typing :: Typed" in classifiers
    urls = {u.split(",")[0] for u in meta.get_all("Project-URL") or []}
    assert {"Homepage", "Documentation", "Changes", "Source"} <= urls
    runtime = {
        r.split(">")[0].split("=")[0].split("[")[0].strip().lower()
        for r in meta.get_all("Requires-Dist") or []
        if "extra ==" not in r
    }
    assert runtime == RUNTIME_DEPENDENCIES


def test_sdist_holds_sources_tests_example_and_docs(sdist: Path) -> None:
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    expected = {
        "pyproject.toml",
        "README.md",
        "CHANGES.md",
        "LICENSE",
        "flask_retention/data/AppleRootCA-G3.pem",
        "flask_retention/catalogue/migrations/script.py.mako",
        "flask_retention/py.typed",
        "example_app/catalogue.toml",
        "example_app/make_images.py",
        "example_app/images/hero.png",
        "tests/conftest.py",
    }
    assert expected <= names
    assert not [n for n in names if n.startswith(".venv") or "__pycache__" in n]


def test_installed_wheel_answers_the_example_apps_first_signed_request(
    wheel: Path, tmp_path: Path
) -> None:
    """Install the wheel (and its dependencies from the index) into a fresh virtual
    environment and send the example app a signed request, away from the checkout."""
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr

    work = tmp_path / "work"
    shutil.copytree(
        ROOT / "example_app",
        work / "example_app",
        ignore=shutil.ignore_patterns("__pycache__", "instance"),
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "FLASK_"))}
    # The answer's kind is tested, not speed: a loaded machine must not turn it into the fallback.
    env["FLASK_RETENTION_SELECTOR_TIMEOUT"] = "10"

    def run(*args: str) -> str:
        done = subprocess.run(
            args, cwd=work, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    where = run(
        str(python),
        "-c",
        "import flask_retention, example_app as e; "
        "print(flask_retention.__file__); print(e.__file__)",
    ).split()
    assert Path(where[0]).is_relative_to(venv)
    assert Path(where[1]).is_relative_to(work)

    # The commands the example prints on its first start, in the venv's own `flask`.
    flask = str(venv / "bin" / "flask")
    run(flask, "--app", "example_app.app", "retention", "dev-ca")
    answer = json.loads(
        run(flask, "--app", "example_app.app", "example-request", "1000000000000002")
    )
    assert set(answer) == {"promotionalOffer"}
    assert answer["promotionalOffer"]["promotionalOfferSignatureV2"].count(".") == 2
    assert (work / "instance" / "retention-dev-ca" / "root.pem").is_file()
