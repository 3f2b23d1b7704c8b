"""The real-time endpoint: a blueprint with one view that answers Apple's
``Get Retention Message`` call.

Every answer of this blueprint is JSON: its error handlers take precedence
over the host app's for requests to it, and it never raises into the app.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from flask import Blueprint, Flask, Request, Response, request
from werkzeug.exceptions import HTTPException, default_exceptions

from flask_retention.realtime.decisions import Decision
from flask_retention.realtime.endpoint import RealtimeEndpoint, Rejected, read_signed_payload

logger = logging.getLogger(__name__)

BLUEPRINT_NAME: Final = "flask_retention"


def not_post() -> Rejected:
    """The ``405`` of a request that is not a ``POST``."""
    return Rejected(405, "method_not_allowed", "The real-time endpoint accepts POST only.")


def answer_request(endpoint: RealtimeEndpoint, req: Request) -> Response:
    """Answer one ``Get Retention Message`` request (DESIGN.md, "Endpoint") for
    ``endpoint``."""
    decision = Decision(received_at=datetime.now(UTC))
    try:
        if req.method != "POST":
            raise not_post()
        token = read_signed_payload(req)  # 413, 400
        realtime_request = endpoint.verify(token)  # 401 <reason>, 400 malformed
        decision.note_request(realtime_request)
        endpoint.check(realtime_request, time.time())  # 403 wrong_app, wrong_environment, ...
    except Rejected as e:
        return endpoint.reject(decision, e)
    # The selector and the resolution of its choice: the fallback on any problem.
    return endpoint.respond_answer(decision, endpoint.answer(realtime_request, decision))


def http_error_rejection(e: HTTPException) -> Rejected:
    """An HTTP error raised around a view (host ``MAX_CONTENT_LENGTH``, ``abort`` in a
    host's ``before_request``), as our rejection."""
    code = {400: "malformed", 405: "method_not_allowed", 413: "too_large"}.get(
        e.code or 500, (e.name or "error").lower().replace(" ", "_")
    )
    return Rejected(e.code or 500, code, e.description or e.name)


def register_json_blueprint(
    app: Flask,
    name: str,
    rule: str,
    view: Callable[[], Response],
    *,
    not_allowed: Callable[[], Response],
    http_error: Callable[[HTTPException], Response],
    unexpected: Callable[[Exception], Response],
) -> None:
    """Register blueprint ``name`` with ``view`` for ``POST`` at ``rule`` and ``not_allowed``
    for any other method, whose errors are answered by ``http_error`` (HTTP errors) and
    ``unexpected`` (anything else).

    For a method that no rule lists, Werkzeug's routing raises its 405 before a
    blueprint is known, where only the host's handlers see it. So a second rule
    at the same path lists no methods, which matches them all (``GET``,
    ``PROPFIND``, any token), and answers with our JSON ``405``; it costs
    nothing on the host's other requests. ``flask routes`` shows ``POST`` for
    the view.
    """
    blueprint = Blueprint(name, __name__)
    for code in default_exceptions:
        blueprint.register_error_handler(code, http_error)
    blueprint.register_error_handler(Exception, unexpected)
    blueprint.add_url_rule(rule, view_func=view, methods=["POST"], provide_automatic_options=False)
    app.register_blueprint(blueprint)
    endpoint = f"{name}.{not_allowed.__name__}"
    app.url_map.add(app.url_rule_class(rule, endpoint=endpoint, methods=None))
    app.view_functions[endpoint] = not_allowed


def register_endpoint(app: Flask, endpoint: RealtimeEndpoint, rule: str) -> None:
    """Add the endpoint's blueprint to ``app`` at ``rule``."""

    def realtime() -> Response:
        """The view: :func:`answer_request` with this app's endpoint at hand."""
        return answer_request(endpoint, request)

    def not_allowed() -> Response:
        return endpoint.reject(Decision(received_at=datetime.now(UTC)), not_post())

    def http_error(e: HTTPException) -> Response:
        return endpoint.reject(Decision(received_at=datetime.now(UTC)), http_error_rejection(e))

    def unexpected(e: Exception) -> Response:
        """A bug (the steps after verification never raise): logged, and a JSON 500
        without a traceback."""
        if isinstance(e, HTTPException):
            return http_error(e)
        logger.error("flask-retention: unexpected error in the real-time endpoint.", exc_info=e)
        rejected = Rejected(500, "internal_error", "The server failed to handle the request.")
        return endpoint.reject(Decision(received_at=datetime.now(UTC)), rejected)

    register_json_blueprint(
        app,
        BLUEPRINT_NAME,
        rule,
        realtime,
        not_allowed=not_allowed,
        http_error=http_error,
        unexpected=unexpected,
    )
