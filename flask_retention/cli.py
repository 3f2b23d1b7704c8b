"""The ``flask retention`` command group.

A thin layer over public Python functions: every command here calls code that
Python users can call too. ``init_app`` adds the group to ``app.cli`` under
``RETENTION_CLI_GROUP`` (default ``retention``).
"""

from __future__ import annotations

from flask.cli import AppGroup

retention_cli = AppGroup(
    "retention",
    help="Manage the retention message catalogue and sync it with Apple.",
)

from . import cli_simulate  # noqa: E402,F401
