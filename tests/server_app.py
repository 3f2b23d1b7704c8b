"""A small host app using flask-retention, served by real WSGI servers in test_servers.py.

:func:`create_app` reads its settings from the environment (the ``SERVER_APP_*``
variables below), so that each server process builds the same app.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Final

from flask import Flask, g, request

from flask_retention import Message, RealtimeRequest, Retention, Tuning

#: The selector's answer when it sees a fresh ``flask.g``.
FRESH: Final = uuid.UUID("8a3c0a4e-4f0e-4d7b-9c55-0f1e2d3c4b5a")
#: Its answer when it sees the ``flask.g`` of the host's request.
LEAKED: Final = uuid.UUID("d1e2f3a4-b5c6-4d7e-8f90-a1b2c3d4e5f6")
#: The product whose selector sleeps past the time limit.
SLOW_PRODUCT: Final = "com.example.slow"
#: How long the slow selector sleeps, in seconds.
SLOW_SECONDS: Final = 5.0
HOST_PAGE: Final = "host page"

ENV_INSTANCE_PATH: Final = "SERVER_APP_INSTANCE_PATH"
ENV_ROOT_PEM: Final = "SERVER_APP_ROOT_PEM"
ENV_DATABASE_URI: Final = "SERVER_APP_DATABASE_URI"
ENV_SELECTOR_TIMEOUT: Final = "SERVER_APP_SELECTOR_TIMEOUT"
#: Optional: seconds of the background database deadline (``Tuning.database_deadline``),
#: which also shortens the decision log's retry and the catalogue refresh, for tests of
#: database outages.
ENV_DATABASE_DEADLINE: Final = "SERVER_APP_DATABASE_DEADLINE"
#: Optional: ``RETENTION_DATABASE_TIMEOUT``, the commands' bound on a silent database.
ENV_DATABASE_TIMEOUT: Final = "SERVER_APP_DATABASE_TIMEOUT"


def create_app() -> Flask:
    """The host app: a page at ``/``, a body-reading ``before_request`` hook, a catch-all
    selector, and the real-time endpoint at its default ``/retention/realtime``."""
    app = Flask(__name__, instance_path=os.environ[ENV_INSTANCE_PATH])
    with open(os.environ[ENV_ROOT_PEM], "rb") as f:
        root_pem = f.read()
    app.config.update(
        RETENTION_APP_APPLE_ID=1234567890,
        RETENTION_ROOT_CERTIFICATES=[root_pem],
        RETENTION_DATABASE_URI=os.environ[ENV_DATABASE_URI],
        RETENTION_SELECTOR_TIMEOUT=float(os.environ[ENV_SELECTOR_TIMEOUT]),
        RETENTION_ENVIRONMENT="Sandbox",
    )
    tuning = Tuning()
    if ENV_DATABASE_DEADLINE in os.environ:
        tuning = Tuning(
            database_deadline=float(os.environ[ENV_DATABASE_DEADLINE]), decision_log_retry=0.1
        )
        app.config["RETENTION_CATALOGUE_REFRESH"] = 0.2
    if ENV_DATABASE_TIMEOUT in os.environ:
        app.config["RETENTION_DATABASE_TIMEOUT"] = float(os.environ[ENV_DATABASE_TIMEOUT])
    retention = Retention(app, tuning=tuning)

    @app.before_request
    def log_request() -> None:
        """Read the body, as request-logging middleware does, and leave a value in ``g``."""
        request.get_data()
        g.host_value = "from-host"

    @app.get("/")
    def host_page() -> str:
        return HOST_PAGE

    @retention.selector
    def choose(req: RealtimeRequest) -> Message:
        """FRESH, or LEAKED when the host request's ``g`` is visible; the slow product
        sleeps past the time limit first."""
        if req.product_id == SLOW_PRODUCT:
            time.sleep(SLOW_SECONDS)
            return Message(FRESH)
        return Message(LEAKED if "host_value" in g else FRESH)

    return app
