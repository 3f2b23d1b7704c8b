"""Tables and migrations: the migrations build exactly the models, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.orm import Session

from flask_retention.catalogue.migrations import exclude_retention_tables, include_retention_tables
from flask_retention.catalogue.models import (
    VERSION_TABLE,
    AppleState,
    Decision,
    PerformanceTest,
    metadata,
)
from flask_retention.catalogue.schema import current_revision, head_revision, upgrade
from flask_retention.core.database import create_engine


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def test_migrations_build_exactly_the_models(engine: sa.Engine) -> None:
    upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "include_name": include_retention_tables,
                "version_table": VERSION_TABLE,
            },
        )
        assert compare_metadata(context, metadata) == []


def test_upgrade_is_safe_to_repeat_and_uses_its_own_version_table(engine: sa.Engine) -> None:
    assert current_revision(engine) is None
    upgrade(engine)
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    tables = set(sa.inspect(engine).get_table_names())
    assert VERSION_TABLE in tables
    assert "alembic_version" not in tables
    assert set(metadata.tables) <= tables


def test_hosts_autogenerate_ignores_our_tables_with_the_filter(engine: sa.Engine) -> None:
    upgrade(engine)
    host = sa.MetaData()
    sa.Table("users", host, sa.Column("id", sa.Integer, primary_key=True))
    host.create_all(engine)

    def diff(include_name: object) -> list[object]:
        with engine.connect() as connection:
            opts = {"include_name": include_name} if include_name else {}
            context = MigrationContext.configure(connection, opts=opts)
            return list(compare_metadata(context, host))

    unfiltered = diff(None)
    assert any(d[0] == "remove_table" and d[1].name == "retention_messages" for d in unfiltered)  # type: ignore[index]
    assert diff(exclude_retention_tables) == []


def test_the_catalogue_version_row_exists_after_migration(engine: sa.Engine) -> None:
    upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT id, version FROM retention_catalogue_version"))
        assert rows.all() == [(1, 0)]


# -- models that the catalogue API does not cover -----------------------------------------


@pytest.fixture
def session(engine: sa.Engine) -> Iterator[Session]:
    upgrade(engine)
    with Session(engine) as session:
        yield session


def decision(**values: object) -> Decision:
    fields: dict[str, object] = {"status": 200, "environment": "Sandbox", "kind": "message"}
    fields.update(values)
    return Decision(**fields)


def test_decisions_claim_a_request_identifier_once(session: Session) -> None:
    key = uuid.uuid4()
    session.add(decision(request_identifier=key, latency_ms=3.5, message_uuid=uuid.uuid4()))
    session.commit()
    session.add(decision(request_identifier=key))
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()
    session.rollback()


def test_rejected_decisions_keep_the_identifier_aside(session: Session) -> None:
    for claimed in ("not-a-uuid", str(uuid.uuid4())):
        session.add(decision(status=401, error="bad_signature", claimed_request_identifier=claimed))
    session.commit()
    rows = session.scalars(sa.select(Decision).where(Decision.request_identifier.is_(None)))
    assert sorted(r.claimed_request_identifier or "" for r in rows)[1] == "not-a-uuid"


def test_decisions_keep_experiment_and_variant(session: Session) -> None:
    session.add(decision(request_identifier=uuid.uuid4(), experiment="copy", variant="b"))
    session.commit()
    row = session.scalars(sa.select(Decision)).one()
    assert (row.experiment, row.variant) == ("copy", "b")


def test_times_come_back_aware_in_utc(session: Session) -> None:
    paris = timezone(timedelta(hours=1))
    when = datetime(2026, 11, 22, 13, 0, tzinfo=paris)
    session.add(decision(request_identifier=uuid.uuid4(), created_at=when))
    session.commit()
    session.expire_all()
    row = session.scalars(sa.select(Decision)).one()
    assert row.created_at == when
    assert row.created_at.tzinfo is not None
    assert row.created_at.utcoffset() == timedelta(0)


def test_naive_times_are_refused(session: Session) -> None:
    session.add(decision(request_identifier=uuid.uuid4(), created_at=datetime(2026, 1, 1)))
    with pytest.raises(sa.exc.StatementError, match="naive"):
        session.commit()
    session.rollback()


def test_performance_tests_keep_config_and_results_as_json(session: Session) -> None:
    request_id = uuid.uuid4()
    config = {"maxConcurrentRequests": 10, "totalRequests": 100, "responseTimeThreshold": 500}
    session.add(
        PerformanceTest(
            request_id=request_id,
            environment="Sandbox",
            original_transaction_id="2000000000000001",
            config=config,
            status="PENDING",
        )
    )
    session.commit()
    row = session.scalars(sa.select(PerformanceTest)).one()
    row.status = "PASS"
    row.results = {"successRate": 98, "failures": {"TIMED_OUT": 1}}
    row.updated_at = datetime.now(UTC)
    session.commit()
    session.expire_all()
    row = session.scalars(sa.select(PerformanceTest)).one()
    assert (row.request_id, row.config, row.status) == (request_id, config, "PASS")
    assert row.results == {"successRate": 98, "failures": {"TIMED_OUT": 1}}


def test_apple_state_refuses_an_unknown_state(session: Session) -> None:
    session.add(AppleState(kind="message", uuid=uuid.uuid4(), environment="Sandbox", state="LIVE"))
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()
    session.rollback()
