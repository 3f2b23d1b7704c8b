"""The ``flask retention`` command group: thin commands over public Python functions.

``init_app`` adds the group to ``app.cli`` under ``Retention(cli_group=...)``
(``retention`` by default; ``None`` adds none). :mod:`~flask_retention.cli.common`
holds the group, its shared options and its error wrapper; one module per
command family adds its commands to it. This is the top of the library's
layers: it may import every feature package, and the testing kit for
``fake-app-store``.
"""

from __future__ import annotations

from flask_retention.cli import catalogue, coverage, fake, report, simulate, sync
from flask_retention.cli.common import retention_cli

__all__ = ["catalogue", "coverage", "fake", "report", "retention_cli", "simulate", "sync"]
