"""The extension object: init_app, per-app state and database, selectors, command group."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_retention import Message, RealtimeRequest, Retention
from flask_retention.core.database import create_engine

from .support import state_of


def test_init_app_stores_state_per_app(app: Flask) -> None:
    retention = Retention()
    retention.init_app(app)
    other = Flask("other")
    retention.init_app(other)
    assert app.extensions["retention"] is other.extensions["retention"] is retention
    assert state_of(other) is not state_of(app)
    assert not hasattr(retention, "app")


def test_init_app_sets_every_default(app: Flask, retention: Retention) -> None:
    assert app.config["RETENTION_ENVIRONMENT"] == "Sandbox"
    assert app.config["RETENTION_ENDPOINT"] == "/retention/realtime"
    assert app.config["RETENTION_MAX_REQUEST_AGE"] == 300
    assert app.config["RETENTION_SELECTOR_TIMEOUT"] == 0.4
    assert app.config["RETENTION_DECISION_LOG"] is True
    assert app.config["RETENTION_OUTCOME_WINDOW"] == 604800
    assert (retention.tuning.sync_lock_timeout, retention.tuning.perf_test_poll_interval) == (
        60,
        5,
    )


def test_init_app_twice_on_one_app_raises(app: Flask, retention: Retention) -> None:
    with pytest.raises(RuntimeError, match="already initialised"):
        retention.init_app(app)


def test_an_app_not_registered_with_this_instance_says_how_to_fix(app: Flask) -> None:
    other = Retention()
    with pytest.raises(RuntimeError, match="not registered with this Retention") as info:
        other.get_engine(app)
    assert "init_app" in str(info.value)


def test_another_instance_never_uses_the_current_apps_state(
    app: Flask, retention: Retention
) -> None:
    other = Retention()
    with app.app_context(), pytest.raises(RuntimeError, match="not registered"):
        _ = other.catalogue
    with app.app_context():
        assert retention.catalogue.engine is retention.get_engine(app)


def test_the_app_holds_the_extension_itself(app: Flask, retention: Retention) -> None:
    assert app.extensions["retention"] is retention


def test_a_second_notification_callback_raises(retention: Retention) -> None:
    retention.on_notification(print)
    with pytest.raises(ValueError, match="already registered"):
        retention.on_notification(print)


def choose(req: RealtimeRequest) -> Message:
    return Message("winback")


def test_selector_decorator_returns_function_unchanged() -> None:
    retention = Retention()
    assert retention.selector(choose) is choose
    assert retention.selector_for("any.product") is choose


def test_scoped_selector_wins_over_catch_all() -> None:
    retention = Retention()

    @retention.selector
    def catch_all(req: RealtimeRequest) -> None:
        return None

    @retention.selector(product_ids=["com.example.yearly"])
    def yearly(req: RealtimeRequest) -> None:
        return None

    assert retention.selector_for("com.example.yearly") is yearly
    assert retention.selector_for("com.example.monthly") is catch_all


def test_plain_method_twin_registers_selector() -> None:
    retention = Retention()
    retention.register_selector(choose, product_ids=["p1"])
    assert retention.selector_for("p1") is choose
    assert retention.selector_for("p2") is None
    assert retention.has_selector


def test_registering_catch_all_twice_raises() -> None:
    retention = Retention()
    retention.selector(choose)
    with pytest.raises(ValueError, match="already registered"):
        retention.selector(choose)


def test_registering_same_product_scope_twice_raises() -> None:
    retention = Retention()
    retention.selector(product_ids=["a", "b"])(choose)
    with pytest.raises(ValueError, match="already registered for b"):
        retention.selector(product_ids=["b", "c"])(choose)
    assert retention.selector_for("c") is None


def test_coroutine_selector_is_refused() -> None:
    retention = Retention()

    async def choose_async(req: RealtimeRequest) -> None:
        return None

    with pytest.raises(TypeError, match="coroutine"):
        retention.selector(choose_async)
    assert not retention.has_selector


def test_product_ids_must_be_a_list_not_a_string() -> None:
    with pytest.raises(TypeError, match="list"):
        Retention().selector(product_ids="com.example.yearly")


def test_command_group_is_registered_under_the_name_given(app: Flask) -> None:
    Retention(app, cli_group="apple-retention")
    result = app.test_cli_runner().invoke(args=["apple-retention", "--help"])
    assert result.exit_code == 0
    assert "retention message catalogue" in result.output


def test_command_group_can_be_turned_off(app: Flask) -> None:
    Retention(app, cli_group=None)
    result = app.test_cli_runner().invoke(args=["retention", "--help"])
    assert result.exit_code != 0


# -- the database, per app, in init_app ------------------------------------------------------


def catalogue_tables(engine: sa.Engine) -> set[str]:
    return {t for t in sa.inspect(engine).get_table_names() if t.startswith("retention_")}


def test_init_app_takes_a_flask_sqlalchemy_db(app: Flask, database_url: str) -> None:
    db = SQLAlchemy()
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url
    db.init_app(app)
    retention = Retention()
    retention.init_app(app, db=db)
    try:
        result = app.test_cli_runner().invoke(args=["retention", "init-db"])
        assert result.exit_code == 0, result.output
        with app.app_context():
            assert retention.get_engine(app) is db.engine
            assert "retention_messages" in catalogue_tables(db.engine)
            retention.catalogue.add_message("winback", "Before you go", "Stay a while.")
            stored = db.session.execute(sa.text("SELECT name FROM retention_messages"))
            assert stored.scalars().all() == ["winback"]
    finally:
        retention.close(app)
        with app.app_context():
            db.engine.dispose()


def test_init_app_takes_an_engine(app: Flask, database_url: str) -> None:
    engine = create_engine(database_url)
    retention = Retention()
    retention.init_app(app, engine=engine)
    try:
        assert retention.get_engine(app) is engine
        assert app.test_cli_runner().invoke(args=["retention", "init-db"]).exit_code == 0
        assert "retention_messages" in catalogue_tables(engine)
    finally:
        retention.close(app)
        engine.dispose()


def test_init_app_choice_overrides_the_constructors_for_that_app_only(
    app: Flask, database_url: str, tmp_path: Path
) -> None:
    shared = create_engine(f"sqlite:///{tmp_path / 'shared.db'}")
    own = create_engine(database_url)
    retention = Retention(engine=shared)
    other = Flask("other", instance_path=str(tmp_path / "other"))
    retention.init_app(app, engine=own)
    retention.init_app(other)
    try:
        assert retention.get_engine(app) is own
        assert retention.get_engine(other) is shared
    finally:
        retention.close()
        shared.dispose()
        own.dispose()


def test_init_app_db_overrides_a_constructor_engine(app: Flask, database_url: str) -> None:
    engine = create_engine(database_url)
    db = SQLAlchemy()
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url
    db.init_app(app)
    retention = Retention(engine=engine)
    retention.init_app(app, db=db)
    try:
        with app.app_context():
            assert retention.get_engine(app) is db.engine
            assert db.engine is not engine
    finally:
        retention.close(app)
        engine.dispose()
        with app.app_context():
            db.engine.dispose()


def test_init_app_with_db_and_engine_uses_the_engine_as_the_constructor_does(
    app: Flask, tmp_path: Path
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    retention = Retention()
    retention.init_app(app, db=SQLAlchemy(), engine=engine)
    try:
        assert retention.get_engine(app) is engine
    finally:
        retention.close(app)
        engine.dispose()


def test_an_app_factory_gives_each_app_its_own_db(database_url: str, tmp_path: Path) -> None:
    db = SQLAlchemy()
    retention = Retention()

    def create_app(name: str) -> Flask:
        app = Flask(name, instance_path=str(tmp_path / name))
        app.config["SQLALCHEMY_DATABASE_URI"] = database_url
        db.init_app(app)
        retention.init_app(app, db=db)
        return app

    first, second = create_app("first"), create_app("second")
    try:
        with first.app_context():
            assert retention.get_engine(first) is db.engine
        with second.app_context():
            assert retention.get_engine(second) is db.engine
        assert retention.get_engine(first) is not retention.get_engine(second)
    finally:
        retention.close()
        for app in (first, second):
            with app.app_context():
                db.engine.dispose()
