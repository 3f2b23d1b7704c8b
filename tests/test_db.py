"""Where the catalogue lives: engine resolution, SQLite settings, our own sessions, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_retention import ConfigurationError, Retention
from flask_retention.catalogue.schema import current_revision, head_revision
from flask_retention.core.database import create_engine

from .catalogue_support import bullet_png, full_png, migrated_engine, retention_app


def test_engine_wins_over_db_and_uri(app: Flask, tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'given.db'}")
    db = SQLAlchemy()
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'host.db'}"
    app.config["RETENTION_DATABASE_URI"] = f"sqlite:///{tmp_path / 'uri.db'}"
    db.init_app(app)
    retention = Retention(app, db=db, engine=engine)
    assert app.extensions["retention"].get_engine(app) is engine
    retention.close(app)
    engine.dispose()


def test_db_is_resolved_lazily_in_an_app_context(app: Flask, tmp_path: Path) -> None:
    db = SQLAlchemy()
    retention = Retention(app, db=db)  # before db.init_app: nothing is resolved yet
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'host.db'}"
    app.config["RETENTION_DATABASE_URI"] = f"sqlite:///{tmp_path / 'ignored.db'}"
    db.init_app(app)
    with app.app_context():
        assert app.extensions["retention"].get_engine(app) is db.engine
    assert (
        app.extensions["retention"].get_engine(app) is not None
    )  # also outside an app context, once resolved
    retention.close(app)


def test_db_is_resolved_outside_an_app_context_too(app: Flask, tmp_path: Path) -> None:
    db = SQLAlchemy()
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'host.db'}"
    db.init_app(app)
    retention = Retention(app, db=db)
    engine = app.extensions["retention"].get_engine(app)
    with app.app_context():
        assert engine is db.engine
    retention.close(app)


def test_uri_is_used_when_no_engine_or_db(app: Flask, database_url: str) -> None:
    app.config["RETENTION_DATABASE_URI"] = database_url
    retention = Retention(app)
    engine = app.extensions["retention"].get_engine(app)
    assert engine.url.render_as_string(hide_password=False) == database_url
    retention.close(app)


def test_default_is_a_sqlite_file_in_the_instance_folder_created_lazily(app: Flask) -> None:
    retention = Retention(app)
    instance = Path(app.instance_path)
    assert not instance.exists()
    engine = app.extensions["retention"].get_engine(app)
    assert instance.is_dir()
    assert engine.url.database == str(instance / "retention.db")
    retention.close(app)


def test_init_app_creates_no_tables(app: Flask, tmp_path: Path) -> None:
    path = tmp_path / "lazy.db"
    app.config["RETENTION_DATABASE_URI"] = f"sqlite:///{path}"
    retention = Retention(app)
    assert not path.exists()
    assert sa.inspect(app.extensions["retention"].get_engine(app)).get_table_names() == []
    retention.close(app)


def test_bad_uri_says_which_setting(app: Flask) -> None:
    app.config["RETENTION_DATABASE_URI"] = "nosuchdialect://x"
    retention = Retention(app)
    with pytest.raises(ConfigurationError, match="RETENTION_DATABASE_URI"):
        app.extensions["retention"].get_engine(app)
    retention.close(app)


def test_sqlite_is_opened_with_wal_and_a_busy_timeout(app: Flask) -> None:
    retention = Retention(app)
    with app.extensions["retention"].get_engine(app).connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    retention.close(app)


def test_catalogue_writes_never_commit_the_hosts_pending_work(
    database_url: str, tmp_path: Path
) -> None:
    migrated_engine(database_url).dispose()
    with retention_app(tmp_path, database_url, mode="flask-sqlalchemy") as (app, retention):
        db = app.extensions["sqlalchemy"]

        class Note(db.Model):  # type: ignore[name-defined,misc]
            __tablename__ = "host_notes"
            id = sa.Column(sa.Integer, primary_key=True)
            text = sa.Column(sa.String(50))

        with app.app_context():
            db.create_all()
            db.session.add(Note(text="pending"))  # pending in the host's session
            if db.engine.dialect.name != "sqlite":  # SQLite: a flushed write locks the file
                db.session.flush()
            retention.catalogue.add_message("plain", "Stay", "Body")
            db.session.rollback()
            assert db.session.scalar(sa.select(sa.func.count()).select_from(Note)) == 0
            assert retention.catalogue.get_message("plain") is not None
            db.session.close()
            db.drop_all()


# -- commands -------------------------------------------------------------------------


def test_init_db_command_is_safe_to_repeat(app: Flask, database_url: str) -> None:
    app.config["RETENTION_DATABASE_URI"] = database_url
    retention = Retention(app)
    runner = app.test_cli_runner()
    for _ in range(2):
        result = runner.invoke(args=["retention", "init-db"])
        assert result.exit_code == 0, result.output
        assert str(head_revision()) in result.output
    assert current_revision(app.extensions["retention"].get_engine(app)) == head_revision()
    retention.close(app)


def test_the_migrations_have_one_head() -> None:
    from alembic.script import ScriptDirectory

    from flask_retention.catalogue.schema import alembic_config

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert heads == [head_revision()]


def write_catalogue(folder: Path, header: str = "Before you go") -> Path:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "images" / "hero.png").write_bytes(full_png())
    (folder / "images" / "tick.png").write_bytes(bullet_png())
    path = folder / "catalogue.json"
    path.write_text(
        json.dumps(
            {
                "images": [
                    {"name": "hero", "file": "images/hero.png", "size": "FULL_SIZE"},
                    {"name": "tick", "file": "images/tick.png"},
                ],
                "messages": [
                    {
                        "name": "winback",
                        "header": header,
                        "body": "Your plan includes offline mode.",
                        "image": "hero",
                        "image_alt_text": "A family reading",
                        "bullet_points": [{"text": "Offline", "image": "tick", "alt_text": "t"}],
                    }
                ],
                "defaults": [
                    {"product_id": "com.example.monthly", "locale": "en-US", "message": "winback"}
                ],
            }
        )
    )
    return path


def test_import_and_export_commands(database_url: str, tmp_path: Path) -> None:
    migrated_engine(database_url).dispose()
    path = write_catalogue(tmp_path / "in")
    with retention_app(tmp_path, database_url, mode="uri") as (app, retention):
        runner = app.test_cli_runner()
        result = runner.invoke(args=["retention", "import", str(path)])
        assert result.exit_code == 0, result.output
        assert "2 images added, 1 message added, 1 default set" in result.output
        again = runner.invoke(args=["retention", "import", str(path)])
        assert again.exit_code == 0
        assert "no changes" in again.output

        out = tmp_path / "out" / "catalogue.toml"
        out.parent.mkdir()
        result = runner.invoke(args=["retention", "export", str(out)])
        assert result.exit_code == 0, result.output
        assert "winback" in out.read_text()
        with app.app_context():
            assert retention.catalogue.import_file(out).changes == 0


def test_import_command_prunes_only_when_asked(database_url: str, tmp_path: Path) -> None:
    migrated_engine(database_url).dispose()
    path = write_catalogue(tmp_path / "in")
    with retention_app(tmp_path, database_url, mode="uri") as (app, retention):
        runner = app.test_cli_runner()
        assert runner.invoke(args=["retention", "import", str(path)]).exit_code == 0
        with app.app_context():
            retention.catalogue.add_message("extra", "Extra", "Body")
        assert runner.invoke(args=["retention", "import", str(path)]).exit_code == 0
        with app.app_context():
            assert retention.catalogue.get_message("extra") is not None
        result = runner.invoke(args=["retention", "import", "--prune", str(path)])
        assert result.exit_code == 0, result.output
        assert "1 message retired" in result.output
        with app.app_context():
            assert retention.catalogue.get_message("extra") is None


def test_bad_file_is_one_line_without_traceback_and_changes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    migrated_engine(database_url).dispose()
    good = write_catalogue(tmp_path / "good")
    bad = write_catalogue(tmp_path / "bad", header="x" * 70)
    with retention_app(tmp_path, database_url, mode="uri") as (app, retention):
        runner = app.test_cli_runner()
        assert runner.invoke(args=["retention", "import", str(good)]).exit_code == 0
        with app.app_context():
            before = retention.catalogue.export_document()
        result = runner.invoke(args=["retention", "import", str(bad)])
        assert result.exit_code == 1
        lines = result.output.strip().splitlines()
        assert len(lines) == 1
        assert "winback" in lines[0]
        assert "header" in lines[0]
        assert "Traceback" not in result.output
        with app.app_context():
            assert retention.catalogue.export_document() == before


def test_missing_tables_are_one_line_pointing_at_init_db(app: Flask, tmp_path: Path) -> None:
    app.config["RETENTION_DATABASE_URI"] = f"sqlite:///{tmp_path / 'empty.db'}"
    retention = Retention(app)
    path = write_catalogue(tmp_path / "in")
    result = app.test_cli_runner().invoke(args=["retention", "import", str(path)])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert "init-db" in result.output
    retention.close(app)


def test_missing_file_is_one_line(app: Flask, tmp_path: Path) -> None:
    app.config["RETENTION_DATABASE_URI"] = f"sqlite:///{tmp_path / 'x.db'}"
    retention = Retention(app)
    result = app.test_cli_runner().invoke(args=["retention", "import", str(tmp_path / "no.toml")])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert "no.toml" in result.output
    retention.close(app)
