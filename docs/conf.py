"""Sphinx configuration: MyST Markdown pages, furo, API and CLI references from the code.

Builds offline (no intersphinx, no remote images) with warnings as errors:
``sphinx-build -W --keep-going -b html docs docs/_build/html``.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

from flask_retention.catalogue import validation

_meta = metadata.metadata("flask-retention")

project = "flask-retention"
author = _meta["Author"] or "flask-retention developers"
release = metadata.version("flask-retention")
version = ".".join(release.split(".")[:2])
copyright = f"{datetime.now(UTC).year}, flask-retention developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "retention_cli",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist", "substitution"]
#: Apple's limits as the code enforces them, so the catalogue reference can't drift.
myst_substitutions = {
    name: str(getattr(validation, name))
    for name in validation.__all__
    if name.isupper() and isinstance(getattr(validation, name), int)
}
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True}
autodoc_preserve_defaults = True

html_theme = "furo"
html_title = f"flask-retention {release}"
html_static_path: list[str] = []
