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
from typing import TYPE_CHECKING, Final

from flask import Blueprint, Flask, Request, Response, current_app, request
from werkzeug.exceptions import HTTPException, default_exceptions

from flask_retention.realtime.decisions import Decision
from flask_retention.realtime.endpoint import RealtimeEndpoint, Rejected, read_signed_payload

if TYPE_CHECKING:
    from flask_retention.extension import RetentionState

logger = logging.getLogger("flask_retention")

BLUEPRINT_NAME: Final = "flask_retention"


def current_endpoint() -> RealtimeEndpoint:
    """The endpoint of the current app."""
    endpoint = current_app.extensions["retention"].endpoint
    assert endpoint is not None
    return endpoint  # type: ignore[no-any-return]


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


def _http_error(e: HTTPException) -> Response:
    """An HTTP error raised around the view (host ``MAX_CONTENT_LENGTH``, ``abort`` in a
    host's ``before_request``), as our JSON."""
    code = {400: "malformed", 405: "method_not_allowed", 413: "too_large"}.get(
        e.code or 500, (e.name or "error").lower().replace(" ", "_")
    )
    rejected = Rejected(e.code or 500, code, e.description or e.name)
    return current_endpoint().reject(Decision(received_at=datetime.now(UTC)), rejected)


def _unexpected(e: Exception) -> Response:
    """A bug (the steps after verification never raise): logged, and a JSON 500 without
    a traceback."""
    if isinstance(e, HTTPException):
        return _http_error(e)
    logger.error("flask-retention: unexpected error in the real-time endpoint.", exc_info=e)
    rejected = Rejected(500, "internal_error", "The server failed to handle the request.")
    return current_endpoint().reject(Decision(received_at=datetime.now(UTC)), rejected)


def register_json_blueprint(
    app: Flask,
    name: str,
    rule: str,
    view: Callable[[], Response],
    *,
    http_error: Callable[[HTTPException], Response],
    unexpected: Callable[[Exception], Response],
) -> None:
    """Register blueprint ``name`` with one view at ``rule`` for every method, whose errors
    are answered by ``http_error`` (HTTP errors) and ``unexpected`` (anything else).

    Flask's ``add_url_rule`` lists the methods a rule accepts, and for any other
    method Werkzeug's routing raises its 405 before a blueprint is known, where
    only the host's handlers see it. The rule is a Werkzeug rule without
    methods instead, which matches them all, so that the view answers a wrong
    one (``GET``, ``PROPFIND``, any other token) with its own JSON ``405``; it
    costs nothing on the host's other requests (an app-wide ``before_request``
    hook would run on each of them). The rule's endpoint is ``name``, a dot and
    the view's name, so that the blueprint's error handlers apply.
    """
    blueprint = Blueprint(name, __name__)
    for code in default_exceptions:
        blueprint.register_error_handler(code, http_error)
    blueprint.register_error_handler(Exception, unexpected)
    app.register_blueprint(blueprint)
    endpoint = f"{name}.{view.__name__}"
    app.url_map.add(app.url_rule_class(rule, endpoint=endpoint, methods=None))
    app.view_functions[endpoint] = view


def register_endpoint(app: Flask, state: RetentionState) -> None:
    """Add the endpoint's blueprint to ``app`` at ``RETENTION_ENDPOINT`` (unless ``None``)."""
    rule = state.settings.endpoint
    if rule is None:
        return
    endpoint = state.endpoint = RealtimeEndpoint(app, state)

    def realtime() -> Response:
        """The view: :func:`answer_request` with this app's endpoint at hand."""
        return answer_request(endpoint, request)

    register_json_blueprint(
        app, BLUEPRINT_NAME, rule, realtime, http_error=_http_error, unexpected=_unexpected
    )
