"""Alembic environment of flask-retention, run by :func:`~flask_retention.catalogue.schema.upgrade`.

It runs on the connection given in ``config.attributes["connection"]`` (or a
URL in ``sqlalchemy.url``), records the revision in
``retention_alembic_version`` and uses batch mode so that later revisions can
alter tables on SQLite.
"""

from __future__ import annotations

from typing import Any, Literal

import sqlalchemy as sa
from alembic import context

from flask_retention.catalogue.migrations import include_retention_tables
from flask_retention.catalogue.models import VERSION_TABLE, UTCDateTime, metadata


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Render our own column types as plain SQLAlchemy types in new revisions."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        include_name=include_retention_tables,  # type: ignore[arg-type]
        render_as_batch=True,
        render_item=render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError(
            "flask-retention's migrations need a connection: run `flask retention init-db` "
            "or flask_retention.catalogue.schema.upgrade(engine)."
        )
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            run_migrations(conn)
    finally:
        engine.dispose()


run()
