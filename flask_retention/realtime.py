"""The steps of the real-time endpoint, held per app by :class:`RealtimeEndpoint`.

``views.answer_request`` calls them in order: read the body, verify the JWS, load
the payload, check it, run the selector, resolve its choice. Each step that
refuses a request raises :class:`Rejected` with the status and error code of
DESIGN.md; nothing after verification refuses: problems there take the
fallback, because Apple would show its default anyway.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import marshmallow as ma
from flask import Flask, Response
from marshmallow import fields, validate
from werkzeug.wrappers import Request

from .choices import RealtimeRequest, lazy_request
from .decision_log import DecisionLogWriter
from .decisions import Decision, FallbackReason, retention_decided
from .errors import ConfigurationError, VerificationError
from .jsontext import dumps_compact, loads_body
from .replay import ReplayGuard
from .responses import Answer, OfferSigner, Unsendable, fallback, resolve
from .selection import AlarmRunner, SelectorPool
from .verification import YEAR_9999_MS, JWSVerifier

if TYPE_CHECKING:
    from .extension import RetentionState

logger = logging.getLogger("flask_retention")

#: The largest request body accepted (Apple's are a few kilobytes).
BODY_LIMIT: Final = 64 * 1024


class Rejected(Exception):
    """A request the endpoint does not answer: ``status`` with ``{"error": code, ...}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def malformed(message: str) -> Rejected:
    """A ``400 malformed`` rejection."""
    return Rejected(400, "malformed", message)


class TimestampMs(fields.Field[datetime]):
    """A JSON integer of milliseconds since the epoch, loaded as an aware UTC ``datetime``."""

    default_error_messages = {"invalid": "Not an integer timestamp in milliseconds."}  # noqa: RUF012

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        try:
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise self.make_error("invalid") from None


_text = validate.Length(min=1)


class RealtimeRequestSchema(ma.Schema):
    """Apple's ``DecodedRealtimeRequestBody``; fields Apple may add later are ignored."""

    class Meta:
        unknown = ma.EXCLUDE

    original_transaction_id = fields.String(
        required=True, data_key="originalTransactionId", validate=_text
    )
    app_apple_id = fields.Integer(required=True, strict=True, data_key="appAppleId")
    product_id = fields.String(required=True, data_key="productId", validate=_text)
    locale = fields.String(required=True, data_key="userLocale", validate=_text)
    request_identifier = fields.UUID(required=True, data_key="requestIdentifier")
    environment = fields.String(required=True, data_key="environment")
    signed_date = TimestampMs(required=True, data_key="signedDate")


#: A UUID in its usual text form (any case): what Apple sends, and all that
#: :func:`plain_request` takes; ``uuid.UUID`` parses it to the same value as the schema.
_UUID_TEXT: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
).fullmatch


def plain_request(payload: Any) -> RealtimeRequest | None:
    """The request of a payload in its plain form (every field present, of its exact JSON
    type, well-formed), or ``None``.

    The hot path's shortcut past :class:`RealtimeRequestSchema` (about 20 µs, a
    fifth of the ES256 verification): it accepts only payloads the schema
    accepts, with the same result (a test holds it to that), and everything
    else goes through the schema, which refuses it or loads it and says why.
    The request is a :func:`~flask_retention.choices.lazy_request`: its UUID
    and date are checked here and parsed when first read.
    """
    try:
        otid = payload["originalTransactionId"]
        app_apple_id = payload["appAppleId"]
        product_id = payload["productId"]
        locale = payload["userLocale"]
        request_identifier = payload["requestIdentifier"]
        environment = payload["environment"]
        signed_ms = payload["signedDate"]
    except (KeyError, TypeError):
        return None
    if (
        type(otid) is str
        and otid
        and type(app_apple_id) is int
        and type(product_id) is str
        and product_id
        and type(locale) is str
        and locale
        and type(request_identifier) is str
        and _UUID_TEXT(request_identifier)
        and type(environment) is str
        and type(signed_ms) is int
        and 0 <= signed_ms < YEAR_9999_MS  # the verifier's bound, within datetime's
    ):
        return lazy_request(payload, otid, app_apple_id, product_id, locale, environment)
    return None


def read_signed_payload(request: Request, max_content_length: int | None) -> str:
    """The ``signedPayload`` of the body: at most :data:`BODY_LIMIT` bytes, JSON whatever
    the Content-Type says.

    A body with a ``Content-Length`` within both limits (:data:`BODY_LIMIT` and the
    host's ``MAX_CONTENT_LENGTH``, given as ``max_content_length``) is read straight
    from ``wsgi.input``; anything else goes through Werkzeug's stream, which
    refuses what the host's limit refuses.
    """
    environ = request.environ
    try:
        length = int(environ["CONTENT_LENGTH"])
    except (KeyError, ValueError, TypeError):
        length = -1
    if 0 <= length <= BODY_LIMIT and (max_content_length is None or length <= max_content_length):
        body = _read(environ["wsgi.input"], length)
    else:
        body = _read_stream(request)
    try:
        document = loads_body(body)
    except (ValueError, RecursionError):
        raise malformed('The body is not JSON; send {"signedPayload": "<JWS>"}.') from None
    token = document.get("signedPayload") if isinstance(document, dict) else None
    if not isinstance(token, str):
        raise malformed('The body has no "signedPayload" string.')
    return token


def _read(stream: Any, wanted: int) -> bytes:
    """Up to ``wanted`` bytes of ``stream`` (fewer only when it ends first)."""
    body = stream.read(wanted)
    while len(body) < wanted:
        chunk = stream.read(wanted - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


def _read_stream(request: Request) -> bytes:
    length = request.content_length
    if length is not None and length > BODY_LIMIT:
        raise Rejected(413, "too_large", f"The body is over {BODY_LIMIT} bytes.")
    # Without a Content-Length (a chunked body), read one byte past the limit to see it.
    body = _read(request.stream, BODY_LIMIT + 1 if length is None else length)
    if len(body) > BODY_LIMIT:
        raise Rejected(413, "too_large", f"The body is over {BODY_LIMIT} bytes.")
    return body


class RealtimeEndpoint:
    """Per-app parts of the endpoint: verifier, replay guard, selector pool, offer signer."""

    def __init__(self, app: Flask, state: RetentionState) -> None:
        settings = state.settings
        self.app = app
        self.state = state
        self.settings = settings
        self.verifier = JWSVerifier(settings.root_certificates)
        self.schema = RealtimeRequestSchema()
        self.replays = ReplayGuard(settings.max_request_age)
        self.pool = SelectorPool(
            app, size=settings.selector_workers, timeout=settings.selector_timeout
        )
        #: Runs the selector in the request thread when it is the main thread, else ``None``.
        self.alarm: AlarmRunner | None = (
            AlarmRunner(app, timeout=settings.selector_timeout)
            if settings.selector_runner == "auto"
            else None
        )
        self.offers = OfferSigner.from_settings(settings)
        self._no_selector_logged = False
        self._log_lock = threading.Lock()
        # RETENTION_TRUST_DEV_CA: its root is added on the first request once it exists,
        # so that `flask retention dev-ca` can run in an app that already trusts it.
        self._dev_ca_pending = settings.trust_dev_ca
        self._dev_ca_logged = False
        self.decision_log: DecisionLogWriter | None = None
        if settings.decision_log:
            self.decision_log = DecisionLogWriter(
                lambda: state.database.engine,
                max_queue=settings.decision_log_queue,
                batch_size=settings.decision_log_batch,
                interval=settings.decision_log_interval,
            )

    def close(self) -> None:
        """Stop the selector workers and write the decision log's queue (threads start
        again if the app serves again)."""
        self.pool.close()
        if self.decision_log is not None:
            self.decision_log.close()

    # -- the steps, in order -------------------------------------------------

    def verify(self, token: str) -> RealtimeRequest:
        """Verify the JWS and load its payload; ``400 malformed`` or ``401 <reason>``."""
        if self._dev_ca_pending:
            self._trust_dev_ca()
        try:
            payload = self.verifier.verify(token)
        except VerificationError as e:
            raise Rejected(400 if e.reason == "malformed" else 401, e.reason, e.message) from None
        req = plain_request(payload)
        if req is not None:
            return req
        try:
            loaded = self.schema.load(payload)
        except ma.ValidationError as e:
            raise malformed(f"The payload is not a real-time request: {e.messages}.") from None
        return RealtimeRequest(**loaded, raw=payload)

    def check(self, req: RealtimeRequest, now: float) -> None:
        """Refuse what is verified but not for us, not fresh, or already answered (``403``)."""
        settings = self.settings
        if settings.app_apple_id is not None and req.app_apple_id != settings.app_apple_id:
            raise Rejected(403, "wrong_app", f"appAppleId {req.app_apple_id} is not this app's.")
        if req.environment not in settings.environments:
            raise Rejected(
                403,
                "wrong_environment",
                f"environment {req.environment!r} is not accepted here "
                f"(RETENTION_ENVIRONMENT: {', '.join(settings.environments)}).",
            )
        # From the payload as signed (the schema has checked both): no date or UUID to parse.
        raw = req.raw
        signed = raw["signedDate"] / 1000
        if abs(now - signed) > settings.max_request_age:
            raise Rejected(
                403,
                "stale",
                f"signedDate is {abs(now - signed):.0f} s in the "
                f"{'past' if signed < now else 'future'}; at most {settings.max_request_age} s "
                "either way is accepted (RETENTION_MAX_REQUEST_AGE).",
            )
        if not self.replays.first_time(raw["requestIdentifier"], signed, now):
            raise Rejected(
                403, "replayed", f"requestIdentifier {req.request_identifier} was answered before."
            )

    def answer(self, req: RealtimeRequest, decision: Decision) -> Answer:
        """The selector's choice resolved, or the fallback; never raises."""
        lookup = self.state.lookup
        try:
            selector = self.state.retention.selector_for(req.product_id)
            if selector is None:
                self._log_no_selector()
                return fallback(req, lookup, "no_selector")
            decision.selector = getattr(selector, "__qualname__", None) or repr(selector)
            alarm = self.alarm
            outcome = None if alarm is None else alarm.run(selector, req)
            if outcome is None:
                outcome = self.pool.run(selector, req)
            if outcome.status != "ok":
                reason: FallbackReason = (
                    "selector_error" if outcome.status == "error" else outcome.status
                )
                if reason != "selector_error":  # the worker logged the exception itself
                    logger.warning(
                        "flask-retention: selector %s %s for request %s (%s); the fallback "
                        "answers.",
                        decision.selector,
                        "overran RETENTION_SELECTOR_TIMEOUT"
                        if reason == "timeout"
                        else "had no free worker",
                        req.request_identifier,
                        self.pool.stats(),
                    )
                return fallback(req, lookup, reason)
            choice = outcome.value
            if choice is None:
                return fallback(req, lookup, "no_choice")
            decision.note_choice(choice)
            return resolve(choice, req, lookup, self.offers)
        except Unsendable as e:
            logger.warning(
                "flask-retention: request %s: %s; the fallback answers.",
                req.request_identifier,
                e.detail,
            )
            return fallback(req, lookup, e.reason)
        except Exception:
            logger.exception(
                "flask-retention: unexpected error answering request %s; the fallback answers.",
                req.request_identifier,
            )
            return fallback(req, lookup, "internal_error")

    # -- the response and its decision ---------------------------------------

    def respond(self, decision: Decision, status: int, body: dict[str, Any] | bytes) -> Response:
        """The JSON response (``body`` a dict, or already encoded); completes ``decision``
        and sends :data:`retention_decided`."""
        if not isinstance(body, bytes):
            body = dumps_compact(body)
        response = self.app.response_class(body, status, content_type="application/json")
        if status == 405:
            response.headers["Allow"] = "POST"
        decision.status = status
        decision.latency_ms = (time.perf_counter() - decision.started) * 1000
        receivers = bool(retention_decided.receivers)
        if receivers:
            decision.complete()  # else the log's writer completes it, off the request path
        if self.decision_log is not None:
            self.decision_log.record(decision)
        if receivers:
            try:
                retention_decided.send(self.app, decision=decision)
            except Exception:
                logger.exception("flask-retention: a retention_decided receiver raised.")
        return response

    def reject(self, decision: Decision, rejected: Rejected) -> Response:
        """An error response ``{"error": code, "message": text}``."""
        decision.error = rejected.code
        return self.respond(
            decision, rejected.status, {"error": rejected.code, "message": rejected.message}
        )

    def respond_answer(self, decision: Decision, answer: Answer) -> Response:
        """The ``200`` response for ``answer``."""
        decision.kind = answer.kind
        decision.message_id = answer.message_id
        decision.fallback_reason = answer.fallback_reason
        return self.respond(decision, 200, answer.json())

    # -- helpers -------------------------------------------------------------

    def _trust_dev_ca(self) -> None:
        """Trust the dev CA's root besides ``RETENTION_ROOT_CERTIFICATES``; until it exists,
        log how to make it (once) and verify without it."""
        from .devca import dev_ca_folder, dev_ca_root

        with self._log_lock:
            if not self._dev_ca_pending:
                return
            try:
                root = dev_ca_root(dev_ca_folder(self.app))
            except ConfigurationError as e:
                if not self._dev_ca_logged:
                    self._dev_ca_logged = True
                    logger.error("flask-retention: RETENTION_TRUST_DEV_CA is true, but %s", e)
                return
            self.verifier = JWSVerifier((*self.settings.root_certificates, root))
            self._dev_ca_pending = False

    def _log_no_selector(self) -> None:
        with self._log_lock:
            first, self._no_selector_logged = not self._no_selector_logged, True
        if first:
            logger.warning(
                "flask-retention: no selector is registered for %s; every request gets the "
                "fallback. Register one with @retention.selector.",
                self.app.name,
            )
