"""The :class:`Retention` extension object."""

from __future__ import annotations

import inspect
import logging
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, overload

from flask import Flask, current_app, has_app_context

from flask_retention.catalogue.snapshot import CatalogueSnapshot
from flask_retention.catalogue.store import Catalogue
from flask_retention.cli import retention_cli
from flask_retention.core.config import DEFAULT_TUNING, DEFAULTS, Settings, Tuning, read_settings
from flask_retention.core.database import Database, HasEngine
from flask_retention.core.errors import first_line
from flask_retention.insights.decision_log import DecisionLogWriter
from flask_retention.insights.experiments import Experiment
from flask_retention.insights.notifications import (
    NotificationCallback,
    NotificationReceiver,
    check_settings,
    register_notifications,
)
from flask_retention.realtime.endpoint import RealtimeEndpoint
from flask_retention.realtime.view import register_endpoint
from flask_retention.stats import CatalogueStats, DecisionLogStats, RetentionStats

if TYPE_CHECKING:
    import sqlalchemy as sa

    from flask_retention.realtime.choices import Choice, RealtimeRequest

    Selector = Callable[[RealtimeRequest], Choice | None]

logger = logging.getLogger(__name__)

EXTENSION_KEY = "retention"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(eq=False)
class _State:
    """What the extension keeps for one app."""

    settings: Settings
    database: Database
    lookup: CatalogueSnapshot
    notifications: NotificationReceiver
    decision_log: DecisionLogWriter | None = None
    endpoint: RealtimeEndpoint | None = None

    @property
    def engine(self) -> sa.Engine:
        """The catalogue's database engine (resolved on first use)."""
        return self.database.engine

    def close(self) -> None:
        """Stop this app's background threads and close connections we opened."""
        if self.endpoint is not None:
            self.endpoint.close()
        if self.decision_log is not None:
            self.decision_log.close()
        self.lookup.close()
        self.database.dispose()


def _product_ids(product_ids: Iterable[str]) -> list[str]:
    if isinstance(product_ids, str):
        raise TypeError("product_ids must be a list of product IDs, not one string")
    ids = list(product_ids)
    if not ids or not all(isinstance(p, str) and p for p in ids):
        raise ValueError("product_ids must be a non-empty list of product ID strings")
    return ids


class Retention:
    """Serve Apple's Retention Messaging API from a Flask app.

    Create it with the app, or unbound and call :meth:`init_app` later::

        retention = Retention()
        retention.init_app(app)

    ``db`` (a Flask-SQLAlchemy instance) or ``engine`` (a SQLAlchemy engine)
    choose where the catalogue lives; otherwise ``RETENTION_DATABASE_URI``, or
    a SQLite file in the app's instance folder. With an app factory, give them
    to :meth:`init_app` instead, per app.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        db: HasEngine | None = None,
        engine: sa.Engine | None = None,
        cli_group: str | None = "retention",
        tuning: Tuning = DEFAULT_TUNING,
    ) -> None:
        self._db = db
        self._engine = engine
        self.cli_group = cli_group
        #: Internal timings and sizes (see :class:`~flask_retention.core.config.Tuning`).
        self.tuning = tuning
        self._catch_all: Selector | None = None
        self._scoped: dict[str, Selector] = {}
        self._states: weakref.WeakKeyDictionary[Flask, _State] = weakref.WeakKeyDictionary()
        self._notification_callback: NotificationCallback | None = None
        self._experiments: dict[str, Experiment] = {}
        if app is not None:
            self.init_app(app)

    def init_app(
        self, app: Flask, *, db: HasEngine | None = None, engine: sa.Engine | None = None
    ) -> None:
        """Validate the ``RETENTION_*`` config of ``app`` and attach the extension to it.

        ``db`` (a Flask-SQLAlchemy or -Lite instance) or ``engine`` (a SQLAlchemy
        engine) choose this app's catalogue database, in place of those given to
        the constructor; with both, ``engine`` wins, as in the constructor. As in an
        app factory::

            retention = Retention()

            def create_app():
                app = Flask(__name__)
                db.init_app(app)
                retention.init_app(app, db=db)
                return app
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError("flask-retention is already initialised on this app.")
        if db is None and engine is None:
            db, engine = self._db, self._engine
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)
        settings = read_settings(app.config)
        check_settings(settings)  # before anything is attached to the app
        database = Database(app, db=db, engine=engine, uri=settings.database_uri)
        state = _State(
            settings=settings,
            database=database,
            lookup=CatalogueSnapshot(
                lambda: database.engine,
                interval=settings.catalogue_refresh,
                deadline=self.tuning.database_deadline,
            ),
            notifications=NotificationReceiver(
                settings,
                database,
                lambda: self._notification_callback,
                timeout=self.tuning.notifications_timeout,
            ),
        )
        if settings.decision_log:
            state.decision_log = DecisionLogWriter(
                lambda: database.engine,
                max_queue=settings.decision_log_queue,
                batch_size=self.tuning.decision_log_batch,
                interval=self.tuning.decision_log_interval,
                idle=self.tuning.decision_log_idle,
                retry=self.tuning.decision_log_retry,
                deadline=self.tuning.database_deadline,
                subscriber_key=settings.subscriber_key,
            )
        if settings.endpoint is not None:
            state.endpoint = RealtimeEndpoint(
                app,
                settings,
                lookup=state.lookup,
                selector_for=self.selector_for,
                record=None if state.decision_log is None else state.decision_log.record,
            )
            register_endpoint(app, state.endpoint, settings.endpoint)
        if settings.notifications_endpoint is not None:
            register_notifications(app, state.notifications, settings.notifications_endpoint)
        self._states[app] = state
        app.extensions[EXTENSION_KEY] = self
        if self.cli_group is not None:
            app.cli.add_command(retention_cli, name=self.cli_group)

    def _get_state(self, app: Flask | None = None) -> _State:
        """The state of ``app`` (default: the current app), or a ``RuntimeError`` that says
        why there is none."""
        if app is not None:
            state = self._states.get(app)
        else:
            if not has_app_context():
                raise RuntimeError(
                    "Working outside of an application context: give the app, or push its "
                    "context (with app.app_context(): ...)."
                )
            state = next((s for known, s in self._states.items() if current_app == known), None)
        if state is None:
            raise RuntimeError(
                f"The app {(app or current_app).name!r} is not registered with this Retention "
                f"instance ({self!r}): call retention.init_app(app) first."
            )
        return state

    def get_engine(self, app: Flask | None = None) -> sa.Engine:
        """The SQLAlchemy engine of ``app``'s catalogue (default: the current app)."""
        return self._get_state(app).database.engine

    @property
    def catalogue(self) -> Catalogue:
        """The message catalogue of the current app (see :class:`~.catalogue.Catalogue`)."""
        return Catalogue(self.get_engine())

    def stats(self, app: Flask | None = None) -> RetentionStats:
        """Counts of this process for ``app`` (default: the current app): the selector
        pool, the catalogue snapshot, the decision log. Each process has its own."""
        state = self._get_state(app)
        log = state.decision_log
        return RetentionStats(
            pool=None if state.endpoint is None else state.endpoint.pool.stats(),
            catalogue=CatalogueStats(loaded=state.lookup.loaded, version=state.lookup.version),
            decision_log=None if log is None else DecisionLogStats(**log.stats()),
        )

    def warm_up(self, app: Flask | None = None) -> bool:
        """Load (or reload) ``app``'s catalogue snapshot in this process now, and start its
        refresh thread; ``True`` once loaded. A failure is logged, not raised: the
        thread keeps trying, and requests answer names with ``catalogue_unavailable``
        meanwhile.

        Call it where each serving process starts (gunicorn's ``post_worker_init``,
        uWSGI's ``postfork``), so that the first request does not wait for the load,
        and in tests after changing the catalogue.
        """
        lookup = self._get_state(app).lookup
        lookup.start()
        try:
            lookup.refresh()
        except Exception as e:
            logger.warning(
                "flask-retention could not load the catalogue (%s); the refresh thread keeps "
                "trying.",
                first_line(e),
            )
        return lookup.loaded

    def close(self, app: Flask | None = None) -> None:
        """Stop the background threads (selector workers, ...) of ``app``, or of every app
        this extension was initialised on. Safe to repeat; they restart when needed."""
        if app is not None:
            self._get_state(app).close()
            return
        for state in list(self._states.values()):
            state.close()

    # -- selectors ---------------------------------------------------------

    @overload
    def selector(self, fn: F, /) -> F: ...

    @overload
    def selector(self, *, product_ids: Iterable[str] | None = None) -> Callable[[F], F]: ...

    def selector(  # type: ignore[misc]  # mypy misreads the generic decorator overload
        self, fn: Callable[..., Any] | None = None, /, *, product_ids: Iterable[str] | None = None
    ) -> Any:
        """Register the function that chooses a retention message.

        ``@retention.selector`` registers the catch-all;
        ``@retention.selector(product_ids=[...])`` one that wins for those
        products. The function is returned unchanged.
        """
        if fn is not None:
            self.register_selector(fn, product_ids=product_ids)
            return fn
        ids = None if product_ids is None else _product_ids(product_ids)

        def decorator(f: F) -> F:
            self.register_selector(f, product_ids=ids)
            return f

        return decorator

    def register_selector(
        self, fn: Callable[..., Any], product_ids: Iterable[str] | None = None
    ) -> None:
        """The plain-method twin of :meth:`selector`."""
        if not callable(fn):
            raise TypeError(f"a selector must be callable, not {fn!r}")
        if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004
        ):
            raise TypeError(
                f"{getattr(fn, '__qualname__', fn)!r} is a coroutine function; selectors run "
                "synchronously under a time limit. Write a plain function (use your "
                "database's synchronous driver, as the rest of the Flask app does)."
            )
        if product_ids is None:
            if self._catch_all is not None:
                raise ValueError(
                    f"a catch-all selector is already registered "
                    f"({getattr(self._catch_all, '__qualname__', self._catch_all)!r})."
                )
            self._catch_all = fn
            return
        ids = _product_ids(product_ids)
        taken = sorted(p for p in ids if p in self._scoped)
        if taken:
            raise ValueError(f"a selector is already registered for {', '.join(taken)}.")
        for p in ids:
            self._scoped[p] = fn

    def selector_for(self, product_id: str) -> Selector | None:
        """The selector that answers for ``product_id``: its scoped one, else the catch-all."""
        return self._scoped.get(product_id, self._catch_all)

    @property
    def has_selector(self) -> bool:
        """Whether any selector is registered."""
        return self._catch_all is not None or bool(self._scoped)

    # -- outcomes: notifications and experiments -----------------------------

    def on_notification(self, fn: F) -> F:
        """Register ``fn(notification: dict)``, called with every verified App Store Server
        Notification once it is stored (decoded, with ``data.transactionInfo`` and
        ``data.renewalInfo``). The function is returned unchanged."""
        if not callable(fn):
            raise TypeError(f"on_notification needs a callable, not {fn!r}")
        if self._notification_callback is not None:
            raise ValueError(
                "an on_notification callback is already registered "
                f"({getattr(self._notification_callback, '__qualname__', '?')!r})."
            )
        self._notification_callback = fn
        return fn

    def record_notification(self, signed_payload: str) -> dict[str, Any]:
        """Verify, check and store one notification from a host's own handler; return it
        decoded. Raises :class:`~flask_retention.VerificationError` or
        :class:`~flask_retention.insights.notifications.NotificationError` (nothing stored)."""
        return self._get_state().notifications.record(signed_payload).notification

    def experiment(
        self,
        name: str,
        variants: Mapping[str, Choice],
        weights: Mapping[str, float] | None = None,
    ) -> Experiment:
        """A new experiment between ``variants`` (see :class:`~.experiments.Experiment`);
        a name may be used once, so that the report never mixes two experiments."""
        if name in self._experiments:
            raise ValueError(f"an experiment named {name!r} already exists")
        experiment = Experiment(name, variants, weights)
        self._experiments[name] = experiment
        return experiment

    @property
    def experiments(self) -> Mapping[str, Experiment]:
        """The experiments created with :meth:`experiment`, by name."""
        return dict(self._experiments)
