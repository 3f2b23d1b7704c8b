"""The :class:`Retention` extension object."""

from __future__ import annotations

import inspect
import logging
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, overload

from flask import Flask, current_app

from flask_retention.catalogue.lookup import CatalogueLookup, EmptyLookup
from flask_retention.catalogue.snapshot import CatalogueSnapshot
from flask_retention.core.config import DEFAULTS, Settings, read_settings
from flask_retention.core.database import Database
from flask_retention.realtime.view import register_endpoint
from flask_retention.stats import CatalogueStats, DecisionLogStats, RetentionStats

if TYPE_CHECKING:
    import sqlalchemy as sa

    from flask_retention.catalogue.store import Catalogue
    from flask_retention.insights.experiments import Experiment
    from flask_retention.insights.notifications import NotificationCallback, NotificationReceiver
    from flask_retention.realtime.choices import Choice, RealtimeRequest
    from flask_retention.realtime.endpoint import RealtimeEndpoint

    Selector = Callable[[RealtimeRequest], Choice | None]

logger = logging.getLogger("flask_retention")

EXTENSION_KEY = "retention"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class RetentionState:
    """Per-app state, kept in ``app.extensions["retention"]``."""

    retention: Retention
    settings: Settings
    lookup: CatalogueLookup = field(default_factory=EmptyLookup)
    endpoint: RealtimeEndpoint | None = None
    notifications: NotificationReceiver | None = None
    database: Database = field(init=False, repr=False)

    @property
    def engine(self) -> sa.Engine:
        """The catalogue's database engine (resolved on first use)."""
        return self.database.engine

    def close(self) -> None:
        """Stop this app's background threads and close connections we opened."""
        if self.endpoint is not None:
            self.endpoint.close()
        close = getattr(self.lookup, "close", None)
        if close is not None:
            close()
        self.database.dispose()


def get_state(app: Flask | None = None) -> RetentionState:
    """The state of ``app`` (default: the current app), or a ``RuntimeError`` that says why."""
    try:
        state = (current_app if app is None else app).extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError(
            "flask-retention is not initialised on this app: call Retention(app) or "
            "retention.init_app(app) first."
        ) from None
    assert isinstance(state, RetentionState)
    return state


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
    a SQLite file in the app's instance folder.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        db: Any = None,
        engine: Any = None,
    ) -> None:
        self.db = db
        self.engine = engine
        self._catch_all: Selector | None = None
        self._scoped: dict[str, Selector] = {}
        self._states: list[weakref.ref[RetentionState]] = []
        self._notification_callback: NotificationCallback | None = None
        self._experiments: dict[str, Experiment] = {}
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Validate the ``RETENTION_*`` config of ``app`` and attach the extension to it."""
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError("flask-retention is already initialised on this app.")
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)
        settings = read_settings(app.config)
        from flask_retention.insights.notifications import check_settings, register_notifications

        check_settings(settings)  # before anything is attached to the app
        state = RetentionState(retention=self, settings=settings)
        state.database = Database(app, db=self.db, engine=self.engine, uri=settings.database_uri)
        state.lookup = CatalogueSnapshot(
            lambda: state.database.engine, interval=settings.catalogue_refresh
        )
        app.extensions[EXTENSION_KEY] = state
        self._states.append(weakref.ref(state))
        register_endpoint(app, state)
        register_notifications(app, state)
        if settings.cli_group is not None:
            from flask_retention.cli import retention_cli

            app.cli.add_command(retention_cli, name=settings.cli_group)

    @property
    def catalogue(self) -> Catalogue:
        """The message catalogue of the current app (see :class:`~.catalogue.Catalogue`)."""
        from flask_retention.catalogue.store import Catalogue

        return Catalogue(get_state().engine)

    def stats(self, app: Flask | None = None) -> RetentionStats:
        """Counts of this process for ``app`` (default: the current app): the selector
        pool, the catalogue snapshot, the decision log. Each process has its own."""
        state = get_state(app)
        endpoint = state.endpoint
        lookup = state.lookup
        log = endpoint.decision_log if endpoint is not None else None
        return RetentionStats(
            pool=endpoint.pool.stats() if endpoint is not None else None,
            catalogue=CatalogueStats(
                loaded=lookup.loaded, version=getattr(lookup, "version", None)
            ),
            decision_log=DecisionLogStats(**log.stats()) if log is not None else None,
        )

    def warm_up(self, app: Flask | None = None, timeout: float = 10.0) -> bool:
        """Load the catalogue snapshot of this process now (waiting at most ``timeout``
        seconds), instead of on the first real-time request; ``True`` once loaded.

        Call it where each serving process starts: gunicorn's ``post_worker_init``,
        uWSGI's ``postfork``. Requests wait for the load anyway; warming up only
        moves that wait out of the first request.
        """
        return get_state(app).lookup.ready(timeout)

    def close(self, app: Flask | None = None) -> None:
        """Stop the background threads (selector workers, ...) of ``app``, or of every app
        this extension was initialised on. Safe to repeat; they restart when needed."""
        if app is not None:
            get_state(app).close()
            return
        for ref in self._states:
            state = ref()
            if state is not None:
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
        self._notification_callback = fn
        return fn

    def record_notification(self, signed_payload: str) -> dict[str, Any]:
        """Verify, check and store one notification from a host's own handler; return it
        decoded. Raises :class:`~flask_retention.VerificationError` or
        :class:`~flask_retention.insights.notifications.NotificationError` (nothing stored)."""
        receiver = get_state().notifications
        assert receiver is not None
        return receiver.record(signed_payload).notification

    def experiment(
        self,
        name: str,
        variants: Mapping[str, Choice],
        weights: Mapping[str, float] | None = None,
    ) -> Experiment:
        """A new experiment between ``variants`` (see :class:`~.experiments.Experiment`);
        a name may be used once, so that the report never mixes two experiments."""
        from flask_retention.insights.experiments import Experiment

        if name in self._experiments:
            raise ValueError(f"an experiment named {name!r} already exists")
        experiment = Experiment(name, variants, weights)
        self._experiments[name] = experiment
        return experiment

    @property
    def experiments(self) -> Mapping[str, Experiment]:
        """The experiments created with :meth:`experiment`, by name."""
        return dict(self._experiments)
