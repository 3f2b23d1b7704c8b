"""The steps of the real-time endpoint, held per app by :class:`RealtimeEndpoint`.

``view.answer_request`` calls them in order: read the body, verify the JWS, load
the payload, check it, run the selector, resolve its choice. Each step that
refuses a request raises :class:`Rejected` with the status and error code of
DESIGN.md; nothing after verification refuses: problems there take the
fallback, because Apple would show its default anyway.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import marshmallow as ma
from flask import Flask, Request, Response
from marshmallow import fields, validate
from werkzeug.exceptions import RequestEntityTooLarge

from flask_retention.catalogue.lookup import CatalogueLookup
from flask_retention.core.config import Settings
from flask_retention.core.errors import ConfigurationError, VerificationError
from flask_retention.core.per_process import process_lock
from flask_retention.realtime.answers import Answer, OfferSigner, Unsendable, fallback, resolve
from flask_retention.realtime.choices import RealtimeRequest
from flask_retention.realtime.decisions import Decision, FallbackReason, retention_decided
from flask_retention.realtime.replay import ReplayGuard
from flask_retention.realtime.runner import Outcome, SelectorPool
from flask_retention.realtime.verification import JWSVerifier

logger = logging.getLogger(__name__)

#: Fallback reasons of the subscriber's locale, logged at debug level only (see ``answer``).
LOCALE_REASONS: Final = frozenset({"no_translation", "translation_pending"})

#: The largest request body accepted (Apple's are a few kilobytes).
BODY_LIMIT: Final = 64 * 1024

#: Seconds Apple waits for an answer, and the margin kept for the network and our own work.
APPLE_DEADLINE: Final = 0.7
MARGIN: Final = 0.1


def catalogue_wait(selector_timeout: float) -> float:
    """Seconds a request may wait for its process's first catalogue load: what Apple's
    deadline leaves after the selector's time limit and :data:`MARGIN` (at least 0.1 s)."""
    return max(APPLE_DEADLINE - selector_timeout - MARGIN, 0.1)


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


def too_large(limit: int = BODY_LIMIT) -> Rejected:
    """The ``413`` of a body over ``limit`` bytes."""
    return Rejected(413, "too_large", f"The body is over {limit} bytes.")


def read_signed_payload(request: Request) -> str:
    """The ``signedPayload`` of the body: at most :data:`BODY_LIMIT` bytes, JSON whatever
    the Content-Type says.

    The body is read through Werkzeug (``get_data(cache=True)``), so that a
    host hook that read it before, or reads it after, sees the same bytes. The
    request's ``max_content_length`` is the host's when that is smaller, else
    one byte over our limit: Werkzeug refuses a longer declared length, and
    stops a chunked body at the cap, which the length of what was read shows.
    """
    host_limit = request.max_content_length
    if host_limit is None or host_limit > BODY_LIMIT:
        request.max_content_length = BODY_LIMIT + 1
    limit = BODY_LIMIT if host_limit is None else min(host_limit, BODY_LIMIT)
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise too_large(limit) from None
    if len(body) > BODY_LIMIT:
        raise too_large(limit)
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise malformed('The body is not JSON; send {"signedPayload": "<JWS>"}.') from None
    token = document.get("signedPayload") if isinstance(document, dict) else None
    if not isinstance(token, str):
        raise malformed('The body has no "signedPayload" string.')
    return token


class RealtimeEndpoint:
    """Per-app parts of the endpoint: verifier, replay guard, selector pool, offer signer.

    ``lookup`` is the catalogue it resolves choices against, ``selector_for`` gives
    the selector of a product (or ``None``), and ``record`` receives every
    decision (the decision log's queue), when given.
    """

    def __init__(
        self,
        app: Flask,
        settings: Settings,
        *,
        lookup: CatalogueLookup,
        selector_for: Callable[[str], Callable[[RealtimeRequest], Any] | None],
        record: Callable[[Decision], None] | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.lookup = lookup
        self.selector_for = selector_for
        self.record = record
        self.verifier = JWSVerifier(settings.root_certificates)
        self.schema = RealtimeRequestSchema()
        self.replays = ReplayGuard(settings.max_request_age)
        self.pool = SelectorPool(
            app, max_workers=settings.selector_workers, timeout=settings.selector_timeout
        )
        self.catalogue_wait = catalogue_wait(settings.selector_timeout)
        self.offers = OfferSigner.from_settings(settings)
        self._no_selector_logged = False
        self._log_lock = process_lock()
        # RETENTION_TRUST_DEV_CA: its root is added on the first request once it exists,
        # so that `flask retention dev-ca` can run in an app that already trusts it.
        self._dev_ca_pending = settings.trust_dev_ca
        self._dev_ca_logged = False

    def close(self) -> None:
        """Stop the selector workers (they start again if the app serves again)."""
        self.pool.close()

    # -- the steps, in order -------------------------------------------------

    def verify(self, token: str) -> RealtimeRequest:
        """Verify the JWS and load its payload; ``400 malformed`` or ``401 <reason>``."""
        if self._dev_ca_pending:
            self._trust_dev_ca()
        try:
            payload = self.verifier.verify(token)
        except VerificationError as e:
            raise Rejected(400 if e.reason == "malformed" else 401, e.reason, e.message) from None
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
        signed = req.signed_date.timestamp()
        if abs(now - signed) > settings.max_request_age:
            raise Rejected(
                403,
                "stale",
                f"signedDate is {abs(now - signed):.0f} s in the "
                f"{'past' if signed < now else 'future'}; at most {settings.max_request_age} s "
                "either way is accepted (RETENTION_MAX_REQUEST_AGE).",
            )
        if not self.replays.first_time(req.request_identifier, signed, now):
            raise Rejected(
                403, "replayed", f"requestIdentifier {req.request_identifier} was answered before."
            )

    def answer(self, req: RealtimeRequest, decision: Decision) -> Answer:
        """The selector's choice resolved, or the fallback; never raises.

        The selector starts first; while it runs, a process that has not loaded
        its catalogue yet waits for that (at most :attr:`catalogue_wait`), so that
        no answer is resolved against a catalogue that is not there.
        """
        lookup = self.lookup
        try:
            selector = self.selector_for(req.product_id)
            if selector is None:
                self._log_no_selector()
                lookup.ready(self.catalogue_wait)
                return fallback(req, lookup, "no_selector")
            decision.selector = getattr(selector, "__qualname__", None) or repr(selector)
            call = self.pool.start(selector, req)
            lookup.ready(self.catalogue_wait)
            outcome = call if isinstance(call, Outcome) else call.result()
            if outcome.status != "ok":
                return self._no_outcome(req, decision, outcome)
            choice = outcome.value
            if choice is None:
                return fallback(req, lookup, "no_choice")
            decision.note_choice(choice)
            return resolve(choice, req, lookup, self.offers)
        except Unsendable as e:
            # A locale the catalogue does not (yet) serve is a state of the catalogue, not a
            # fault: the decision records it, `coverage` reports it; a warning per request
            # would flood the log of every app with subscribers in untranslated languages.
            logger.log(
                logging.DEBUG if e.reason in LOCALE_REASONS else logging.WARNING,
                "flask-retention: request %s: %s; the fallback answers.",
                req.request_identifier,
                e.detail,
            )
            return fallback(req, lookup, e.reason, e.facts)
        except Exception:
            logger.exception(
                "flask-retention: unexpected error answering request %s; the fallback answers.",
                req.request_identifier,
            )
            return fallback(req, lookup, "internal_error")

    def _no_outcome(self, req: RealtimeRequest, decision: Decision, outcome: Outcome) -> Answer:
        """The fallback for a selector that raised, overran its time limit, or found no
        free worker (the worker logged an exception itself)."""
        reasons: dict[str, FallbackReason] = {
            "error": "selector_error",
            "timeout": "timeout",
            "overloaded": "overloaded",
        }
        reason = reasons[outcome.status]
        if reason != "selector_error":
            logger.warning(
                "flask-retention: selector %s %s for request %s (%s); the fallback answers.",
                decision.selector,
                "overran RETENTION_SELECTOR_TIMEOUT"
                if reason == "timeout"
                else "found no free worker within RETENTION_SELECTOR_TIMEOUT",
                req.request_identifier,
                self.pool.stats(),
            )
        return fallback(req, self.lookup, reason)

    # -- the response and its decision ---------------------------------------

    def respond(self, decision: Decision, status: int, body: dict[str, Any]) -> Response:
        """The JSON response; records ``decision`` and sends :data:`retention_decided`."""
        response = self.app.response_class(
            json.dumps(body, separators=(",", ":")), status, content_type="application/json"
        )
        if status == 405:
            response.headers["Allow"] = "POST"
        decision.status = status
        decision.latency_ms = (time.perf_counter() - decision.started) * 1000
        if self.record is not None:
            self.record(decision)
        if retention_decided.receivers:
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
        decision.answered_locale = answer.answered_locale
        decision.locale_reason = answer.locale_reason
        return self.respond(decision, 200, answer.body)

    # -- helpers -------------------------------------------------------------

    def _trust_dev_ca(self) -> None:
        """Trust the dev CA's root besides ``RETENTION_ROOT_CERTIFICATES``; until it exists,
        log how to make it (once) and verify without it."""
        from flask_retention.realtime.devca import dev_ca_folder, dev_ca_root

        with self._log_lock.get():
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
        with self._log_lock.get():
            first, self._no_selector_logged = not self._no_selector_logged, True
        if first:
            logger.warning(
                "flask-retention: no selector is registered for %s; every request gets the "
                "fallback. Register one with @retention.selector.",
                self.app.name,
            )
