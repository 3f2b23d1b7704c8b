"""App Store Server Notifications V2: verify, check, store what matters for outcomes.

Apple tells the server what a subscriber did next with signed notifications
(``{"signedPayload": "<JWS>"}``). :class:`NotificationReceiver` verifies the
payload and its nested ``signedTransactionInfo`` / ``signedRenewalInfo`` with
the endpoint's :class:`~flask_retention.realtime.verification.JWSVerifier`, checks that
it is for this app (bundle ID, environment, app Apple ID when the payload
carries it), stores the events that say whether a retention message worked
(:data:`RETENTION_EVENTS`) once per ``notificationUUID``, and hands the
decoded notification to the host's ``@retention.on_notification`` callback.

The optional endpoint at ``RETENTION_NOTIFICATIONS_ENDPOINT`` is a blueprint
that answers ``200`` once the event is stored, ``503`` when storing failed or
the database did not answer within ``Tuning.notifications_timeout`` seconds
(so Apple delivers it again) and the same JSON errors as the real-time
endpoint for anything else. Hosts with their own handler call
``retention.record_notification(signed_payload)``. Stored text is cleaned as
the decision log's is (:func:`~flask_retention.insights.rows.clean_text`), and
the original transaction ID is pseudonymised with the same key
(``RETENTION_SUBSCRIBER_KEY``, :mod:`~flask_retention.insights.privacy`).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import sqlalchemy as sa
from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from flask_retention.catalogue.models import Notification, metadata
from flask_retention.core.config import Settings
from flask_retention.core.database import Database, DatabaseTimeout, bounded, failure_reason
from flask_retention.core.errors import ConfigurationError, RetentionError, VerificationError
from flask_retention.insights.privacy import stored_id
from flask_retention.insights.rows import clean_row, insert_new, text_lengths
from flask_retention.realtime.endpoint import Rejected, read_signed_payload
from flask_retention.realtime.verification import JWSVerifier
from flask_retention.realtime.view import http_error_rejection, register_json_blueprint

logger = logging.getLogger(__name__)

BLUEPRINT_NAME: Final = "flask_retention_notifications"

#: Notification types stored for outcomes; the others are verified, checked and passed
#: to the callback, but not stored.
RETENTION_EVENTS: Final[frozenset[str]] = frozenset(
    ("DID_CHANGE_RENEWAL_STATUS", "OFFER_REDEEMED", "DID_CHANGE_RENEWAL_PREF", "EXPIRED")
)

NotificationCallback = Callable[[dict[str, Any]], object]

NotificationErrorCode = Literal["malformed", "wrong_bundle", "wrong_app", "wrong_environment"]

_TABLE: Final = metadata.tables["retention_notifications"]
_LENGTHS: Final = text_lengths(_TABLE)

#: Column widths of :class:`~flask_retention.catalogue.models.Notification`; longer values are
#: refused as malformed rather than failing to store (which Apple would retry for days).
_WIDTHS: Final = {"type": 64, "id": 64, "name": 200}


class NotificationError(RetentionError):
    """A verified notification that is malformed or not for this app.

    ``code`` is ``malformed`` (``status`` 400) or ``wrong_bundle``,
    ``wrong_app``, ``wrong_environment`` (``status`` 403).
    """

    def __init__(self, code: NotificationErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: NotificationErrorCode = code
        self.message = message

    @property
    def status(self) -> int:
        """The HTTP status the notifications endpoint answers with."""
        return 400 if self.code == "malformed" else 403


def _malformed(message: str) -> NotificationError:
    return NotificationError("malformed", message)


def _text(obj: dict[str, Any], key: str, where: str, *, width: int, required: bool = False) -> Any:
    value = obj.get(key)
    if value is None:
        if required:
            raise _malformed(f"{where} has no {key!r}.")
        return None
    if not isinstance(value, str) or not value or len(value) > width:
        raise _malformed(f"{where}.{key} is not a string of 1 to {width} characters.")
    return value


def _integer(obj: dict[str, Any], key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _malformed(f"{where}.{key} is not an integer.")
    return value


@dataclass(frozen=True, slots=True)
class NotificationEvent:
    """What is stored of one notification (a row of ``retention_notifications``)."""

    notification_uuid: uuid.UUID
    notification_type: str
    subtype: str | None
    original_transaction_id: str | None
    product_id: str | None
    auto_renew_product_id: str | None
    offer_identifier: str | None
    offer_type: int | None
    environment: str
    signed_date: datetime

    def values(self, subscriber_key: bytes | None = None) -> dict[str, Any]:
        """The event's column values, text cleaned (no NUL characters or lone surrogates);
        with a ``subscriber_key`` (``RETENTION_SUBSCRIBER_KEY``), the original transaction
        ID's :func:`~flask_retention.insights.privacy.pseudonym` in place of the ID."""
        return clean_row(
            {
                "notification_uuid": self.notification_uuid,
                "notification_type": self.notification_type,
                "subtype": self.subtype,
                "original_transaction_id": stored_id(self.original_transaction_id, subscriber_key),
                "product_id": self.product_id,
                "auto_renew_product_id": self.auto_renew_product_id,
                "offer_identifier": self.offer_identifier,
                "offer_type": self.offer_type,
                "environment": self.environment,
                "signed_date": self.signed_date,
            },
            _LENGTHS,
        )

    def row(self, subscriber_key: bytes | None = None) -> Notification:
        """A new model row of the event (its :meth:`values`)."""
        return Notification(**self.values(subscriber_key))


@dataclass(frozen=True, slots=True)
class Received:
    """A verified notification: the decoded dict, its event (``None`` when the type is not
    stored) and whether this delivery stored it (``False`` for a repeated delivery)."""

    notification: dict[str, Any]
    event: NotificationEvent | None
    stored: bool

    @property
    def result(self) -> str:
        """``stored``, ``duplicate`` or ``not_stored`` (a type outcomes do not use)."""
        if self.event is None:
            return "not_stored"
        return "stored" if self.stored else "duplicate"


class NotificationReceiver:
    """Verifies, checks and stores notifications for one app; a store gives up after
    ``timeout`` seconds."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        callback: Callable[[], NotificationCallback | None] = lambda: None,
        *,
        timeout: float = 2.0,
    ) -> None:
        self.settings = settings
        self.database = database
        self.callback = callback
        self.timeout = timeout
        self.verifier = JWSVerifier(settings.root_certificates)

    # -- decoding ------------------------------------------------------------

    def decode(self, token: str) -> tuple[dict[str, Any], NotificationEvent | None]:
        """The decoded notification and its event to store (``None`` for other types).

        Raises :class:`~flask_retention.VerificationError` when the payload or a
        nested JWS fails verification, :class:`NotificationError` when it is
        malformed or not for this app.
        """
        bundle_id = self.settings.bundle_id
        if bundle_id is None:
            raise ConfigurationError(
                "RETENTION_BUNDLE_ID is not set: notifications are checked against the app's "
                "bundle ID (any app's notifications are signed by Apple). Set it to the "
                "bundle ID in App Store Connect."
            )
        payload = self.verifier.verify(token)
        kind = _text(payload, "notificationType", "the payload", width=_WIDTHS["type"])
        if kind is None:
            raise _malformed("the payload has no 'notificationType'.")
        subtype = _text(payload, "subtype", "the payload", width=_WIDTHS["type"])
        raw_uuid = payload.get("notificationUUID")
        try:
            notification_uuid = uuid.UUID(raw_uuid) if isinstance(raw_uuid, str) else None
        except ValueError:
            notification_uuid = None
        if notification_uuid is None:
            raise _malformed("the payload's notificationUUID is missing or not a UUID.")
        signed_date = datetime.fromtimestamp(int(payload["signedDate"]) / 1000, UTC)

        sections = [k for k in ("data", "summary", "externalPurchaseToken") if k in payload]
        if len(sections) != 1 or not isinstance(payload[sections[0]], dict):
            raise _malformed(
                "the payload must hold exactly one of 'data', 'summary' or "
                "'externalPurchaseToken', as a JSON object."
            )
        where = sections[0]
        section: dict[str, Any] = dict(payload[where])
        self._check_app(section, where, bundle_id)
        environment = self._environment(section, where)

        transaction = renewal = None
        if where == "data":
            transaction = self._nested(section, "signedTransactionInfo", bundle_id, environment)
            renewal = self._nested(section, "signedRenewalInfo", bundle_id, environment)
            if transaction is not None:
                section["transactionInfo"] = transaction
            if renewal is not None:
                section["renewalInfo"] = renewal
        notification = {**payload, where: section}

        if kind not in RETENTION_EVENTS or where != "data":
            return notification, None
        return notification, self._event(
            notification_uuid, kind, subtype, environment, signed_date, transaction, renewal
        )

    def _check_app(self, section: dict[str, Any], where: str, bundle_id: str) -> None:
        found = _text(section, "bundleId", where, width=1024, required=True)
        if found != bundle_id:
            raise NotificationError(
                "wrong_bundle", f"bundleId {found!r} is not this app's (RETENTION_BUNDLE_ID)."
            )
        app_apple_id = _integer(section, "appAppleId", where)
        expected = self.settings.app_apple_id
        if app_apple_id is not None and expected is not None and app_apple_id != expected:
            raise NotificationError(
                "wrong_app",
                f"appAppleId {app_apple_id} is not this app's (RETENTION_APP_APPLE_ID).",
            )

    def _environment(self, section: dict[str, Any], where: str) -> str:
        if where == "externalPurchaseToken":
            # It has no environment field; Apple starts sandbox token IDs with "SANDBOX".
            purchase_id = section.get("externalPurchaseId")
            sandbox = isinstance(purchase_id, str) and purchase_id.startswith("SANDBOX")
            environment = "Sandbox" if sandbox else "Production"
        else:
            environment = _text(section, "environment", where, width=32, required=True)
        if environment not in self.settings.environments:
            raise NotificationError(
                "wrong_environment",
                f"environment {environment!r} is not accepted here "
                f"(RETENTION_ENVIRONMENT: {', '.join(self.settings.environments)}).",
            )
        return str(environment)

    def _nested(
        self, section: dict[str, Any], key: str, bundle_id: str, environment: str
    ) -> dict[str, Any] | None:
        token = section.get(key)
        if token is None:
            return None
        if not isinstance(token, str):
            raise _malformed(f"data.{key} is not a JWS string.")
        try:
            decoded = self.verifier.verify(token)
        except VerificationError as e:
            raise VerificationError(e.reason, f"data.{key}: {e.message}") from None
        found_bundle = decoded.get("bundleId")
        if found_bundle is not None and found_bundle != bundle_id:
            raise NotificationError(
                "wrong_bundle", f"data.{key} is for bundleId {found_bundle!r}, not this app's."
            )
        found_env = decoded.get("environment")
        if found_env is not None and found_env != environment:
            raise NotificationError(
                "wrong_environment",
                f"data.{key} is for environment {found_env!r}, the notification for "
                f"{environment!r}.",
            )
        return decoded

    @staticmethod
    def _event(
        notification_uuid: uuid.UUID,
        kind: str,
        subtype: str | None,
        environment: str,
        signed_date: datetime,
        transaction: dict[str, Any] | None,
        renewal: dict[str, Any] | None,
    ) -> NotificationEvent:
        tx = transaction or {}
        rn = renewal or {}
        id_width, name_width = _WIDTHS["id"], _WIDTHS["name"]
        tx_otid = _text(tx, "originalTransactionId", "transactionInfo", width=id_width)
        rn_otid = _text(rn, "originalTransactionId", "renewalInfo", width=id_width)
        if tx_otid is not None and rn_otid is not None and tx_otid != rn_otid:
            raise _malformed(
                "transactionInfo and renewalInfo name different original transaction IDs."
            )
        tx_offer = _text(tx, "offerIdentifier", "transactionInfo", width=name_width)
        rn_offer = _text(rn, "offerIdentifier", "renewalInfo", width=name_width)
        tx_offer_type = _integer(tx, "offerType", "transactionInfo")
        rn_offer_type = _integer(rn, "offerType", "renewalInfo")
        from_renewal = rn_offer is not None or rn_offer_type is not None
        return NotificationEvent(
            notification_uuid=notification_uuid,
            notification_type=kind,
            subtype=subtype,
            original_transaction_id=rn_otid or tx_otid,
            product_id=(
                _text(tx, "productId", "transactionInfo", width=name_width)
                or _text(rn, "productId", "renewalInfo", width=name_width)
            ),
            auto_renew_product_id=_text(rn, "autoRenewProductId", "renewalInfo", width=name_width),
            offer_identifier=rn_offer if from_renewal else tx_offer,
            offer_type=rn_offer_type if from_renewal else tx_offer_type,
            environment=environment,
            signed_date=signed_date,
        )

    # -- storing -------------------------------------------------------------

    def store(self, event: NotificationEvent) -> bool:
        """Insert the event; ``False`` when its ``notificationUUID`` is already stored.

        Raises :class:`~flask_retention.core.database.DatabaseTimeout` when the
        database has not answered within :attr:`timeout` seconds: the attempt
        runs in a thread of its own, left to finish (or fail) on its own, so
        that not even a connection attempt to a silent server holds the caller.
        """
        outcome: list[bool | BaseException] = []

        def attempt() -> None:
            try:
                outcome.append(self._insert(event))
            except BaseException as e:
                outcome.append(e)

        thread = threading.Thread(target=attempt, name="flask-retention-notification", daemon=True)
        thread.start()
        thread.join(self.timeout)
        if not outcome:
            raise DatabaseTimeout(self.timeout)
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    def _insert(self, event: NotificationEvent) -> bool:
        engine = self.database.engine
        insert = insert_new(_TABLE, engine.dialect, "notification_uuid")
        values = event.values(self.settings.subscriber_key)
        try:
            with bounded(engine, self.timeout) as connection:
                if not engine.dialect.insert_returning:
                    return connection.execute(insert, values).rowcount == 1
                inserted = connection.execute(insert.returning(_TABLE.c.id), values)
                return inserted.first() is not None
        except sa.exc.IntegrityError:  # databases without ON CONFLICT DO NOTHING
            with bounded(engine, self.timeout) as connection:
                known = connection.scalar(
                    sa.select(_TABLE.c.id).where(
                        _TABLE.c.notification_uuid == event.notification_uuid
                    )
                )
            if known is None:
                raise
            return False

    def record(self, token: str) -> Received:
        """Verify, check and store one notification, then run the host's callback.

        The callback runs once per stored event (not again for Apple's repeated
        deliveries), and on every delivery of a type that is not stored. Its
        exceptions are logged: the event is stored, so a retry would change nothing.
        """
        notification, event = self.decode(token)
        stored = self.store(event) if event is not None else False
        callback = self.callback()
        if callback is not None and (event is None or stored):
            try:
                callback(notification)
            except Exception:
                logger.exception(
                    "flask-retention: the on_notification callback raised for notification %s "
                    "(%s); the notification is recorded.",
                    notification.get("notificationUUID"),
                    notification.get("notificationType"),
                )
        return Received(notification, event, stored)


def purge_notifications(engine: sa.Engine, cutoff: datetime, *, batch_size: int = 5000) -> int:
    """Delete stored notifications signed before ``cutoff`` (aware), ``batch_size`` rows per
    transaction; returns how many were deleted. ``flask retention purge`` calls it beside
    the decisions' purge, so outcomes never outlive their decisions' log."""
    if cutoff.tzinfo is None:
        raise ValueError("cutoff must be a timezone-aware datetime")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    deleted = 0
    while True:
        with engine.begin() as connection:
            ids = (
                connection.execute(
                    sa.select(Notification.id)
                    .where(Notification.signed_date < cutoff)
                    .order_by(Notification.id)
                    .limit(batch_size)
                )
                .scalars()
                .all()
            )
            if ids:
                connection.execute(sa.delete(Notification).where(Notification.id.in_(ids)))
        deleted += len(ids)
        if len(ids) < batch_size:
            return deleted


# -- the endpoint ------------------------------------------------------------------


def _json(status: int, body: dict[str, Any]) -> Response:
    response = current_app.response_class(
        current_app.json.dumps(body), status, content_type="application/json"
    )
    if status == 405:
        response.headers["Allow"] = "POST"
    return response


def _error(rejected: Rejected) -> Response:
    return _json(rejected.status, {"error": rejected.code, "message": rejected.message})


def _not_post() -> Rejected:
    return Rejected(405, "method_not_allowed", "The notifications endpoint accepts POST.")


def answer_notification(receiver: NotificationReceiver) -> Response:
    """Receive one App Store Server Notification V2 (``200`` once it is stored)."""
    try:
        if request.method != "POST":
            raise _not_post()
        token = read_signed_payload(request)
        try:
            received = receiver.record(token)
        except VerificationError as e:
            raise Rejected(400 if e.reason == "malformed" else 401, e.reason, e.message) from None
        except NotificationError as e:
            raise Rejected(e.status, e.code, e.message) from None
        except (sa.exc.SQLAlchemyError, OSError) as e:
            logger.error(
                "flask-retention: storing a notification failed: %s; answering 503 so that "
                "Apple delivers it again.",
                failure_reason(e),
            )
            raise Rejected(
                503, "storage_unavailable", "The notification could not be stored; retry later."
            ) from None
    except Rejected as e:
        return _error(e)
    return _json(
        200,
        {
            "result": received.result,
            "notificationUUID": received.notification.get("notificationUUID"),
        },
    )


def check_settings(settings: Settings) -> None:
    """Refuse a notifications endpoint without a bundle ID, or on the real-time rule."""
    rule = settings.notifications_endpoint
    if rule is None:
        return
    if settings.bundle_id is None:
        raise ConfigurationError(
            "RETENTION_BUNDLE_ID is required when RETENTION_NOTIFICATIONS_ENDPOINT is set: "
            "every notification's bundleId is checked against it. Set it to the app's bundle "
            "ID from App Store Connect."
        )
    if rule == settings.endpoint:
        raise ConfigurationError(
            "RETENTION_NOTIFICATIONS_ENDPOINT must differ from RETENTION_ENDPOINT: Apple calls "
            "them for different things."
        )


def register_notifications(app: Flask, receiver: NotificationReceiver, rule: str) -> None:
    """Add the notifications endpoint's blueprint to ``app`` at ``rule``."""

    def notifications() -> Response:
        return answer_notification(receiver)

    def not_allowed() -> Response:
        return _error(_not_post())

    def http_error(e: HTTPException) -> Response:
        return _error(http_error_rejection(e))

    def unexpected(e: Exception) -> Response:
        if isinstance(e, HTTPException):
            return http_error(e)
        logger.error("flask-retention: unexpected error in the notifications endpoint.", exc_info=e)
        return _error(
            Rejected(500, "internal_error", "The server failed to handle the notification.")
        )

    register_json_blueprint(
        app,
        BLUEPRINT_NAME,
        rule,
        notifications,
        not_allowed=not_allowed,
        http_error=http_error,
        unexpected=unexpected,
    )
