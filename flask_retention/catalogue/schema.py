"""The catalogue's tables on a database: Alembic migrations shipped in the package.

``flask retention init-db`` and :func:`upgrade` run them; they keep their
revision in ``retention_alembic_version``, apart from the host's.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from alembic.config import Config


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An Alembic ``Config`` for the migrations shipped in the package.

    With ``connection``, ``env.py`` runs the migrations on it.
    """
    from alembic.config import Config

    config = Config()
    location = resources.files("flask_retention.catalogue").joinpath("migrations")
    config.set_main_option("script_location", str(location))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(engine: sa.Engine, revision: str = "heads") -> None:
    """Create or upgrade flask-retention's tables on ``engine``; safe to repeat."""
    from alembic import command

    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)


def current_revision(engine: sa.Engine) -> str | None:
    """The migration revision of our tables on ``engine``; ``None`` before :func:`upgrade`."""
    from alembic.runtime.migration import MigrationContext

    from flask_retention.catalogue.models import VERSION_TABLE

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def head_revision() -> str | None:
    """The newest migration revision shipped with this version of flask-retention."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
