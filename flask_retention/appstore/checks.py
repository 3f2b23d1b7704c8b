"""``flask retention check``: everything that must hold before Apple calls the endpoint.

:func:`run_checks` returns every problem it finds (never only the first), each
one line that says how to fix it, so that a deploy script can fail early.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec

from flask_retention.core.config import Settings
from flask_retention.core.errors import ConfigurationError

__all__ = ["run_checks"]

_API_KEYS = (
    ("issuer_id", "RETENTION_ISSUER_ID"),
    ("key_id", "RETENTION_KEY_ID"),
    ("private_key", "RETENTION_PRIVATE_KEY"),
    ("bundle_id", "RETENTION_BUNDLE_ID"),
)


def run_checks(
    settings: Settings,
    engine: sa.Engine,
    *,
    config: Mapping[str, Any],
    has_selector: bool,
    environment: str | None = None,
) -> list[str]:
    """Every problem of an app in ``environment``; empty when fine. ``settings``, ``engine``
    and ``config`` are the app's, ``has_selector`` whether it registered a selector.

    Checks: the management API settings when the catalogue has anything to
    sync; the In-App Purchase key is EC P-256; the root certificates load;
    the database is reachable and migrated to the newest revision; a
    selector is registered; every default's message has a version Apple
    approved and Apple holds that default; every (product, locale) the
    decision log saw has a default (else Apple shows nothing there).
    """
    from flask_retention.catalogue.models import Decision
    from flask_retention.catalogue.schema import current_revision, head_revision
    from flask_retention.catalogue.store import Catalogue
    from flask_retention.core.config import load_root_certificates

    env = environment or settings.default_environment
    problems: list[str] = []

    try:
        load_root_certificates(config.get("RETENTION_ROOT_CERTIFICATES"))
    except ConfigurationError as e:
        problems.append(str(e))
    key = settings.private_key
    if key is not None and not isinstance(key.curve, ec.SECP256R1):
        problems.append(
            f"RETENTION_PRIVATE_KEY is an EC key on {key.curve.name}, but Apple's In-App "
            "Purchase keys are P-256: use the .p8 file from App Store Connect."
        )
    if not has_selector:
        problems.append(
            "no selector is registered: decorate a function with @retention.selector, or every "
            "request gets the fallback."
        )

    try:
        revision = current_revision(engine)
    except sa.exc.SQLAlchemyError as e:
        reason = str(getattr(e, "orig", None) or e).splitlines()[0]
        problems.append(f"the catalogue database is not reachable ({reason}).")
        return problems
    head = head_revision()
    if revision != head:
        problems.append(
            f"the catalogue database is at revision {revision or 'none'}, not {head}: run "
            "`flask retention init-db`."
        )
        return problems

    catalogue = Catalogue(engine)
    images = catalogue.image_versions()
    messages = catalogue.message_versions()
    defaults = catalogue.list_defaults()
    if images or messages or defaults:
        for attribute, config_key in _API_KEYS:
            if getattr(settings, attribute) is None:
                problems.append(
                    f"{config_key} is not set; sync needs the App Store Connect In-App "
                    "Purchase key (issuer ID, key ID, .p8 key) and the bundle ID."
                )

    approved = {m.name for m in messages if m.state(env) == "APPROVED"}
    by_uuid = {m.uuid: m for m in messages}
    apple_defaults = catalogue.apple_defaults(env)
    for default in defaults:
        slot = f"{default.product_id} / {default.locale}"
        if default.message not in approved:
            problems.append(
                f"default {slot}: message {default.message!r} has no version APPROVED in {env}; "
                f"run `flask retention sync --environment {env}` and wait for Apple's review."
            )
            continue
        held = apple_defaults.get((default.product_id, default.locale))
        if held is None or held not in by_uuid or by_uuid[held].name != default.message:
            problems.append(
                f"default {slot}: Apple holds no default with message {default.message!r} in "
                f"{env}; run `flask retention sync --environment {env}`."
            )

    with engine.connect() as connection:
        used = connection.execute(
            sa.select(Decision.product_id, Decision.locale)
            .where(
                Decision.environment == env,
                Decision.product_id.is_not(None),
                Decision.locale.is_not(None),
            )
            .distinct()
        ).all()
    slots = {(d.product_id, d.locale) for d in defaults}
    for product_id, locale in sorted((p, loc) for p, loc in used if (p, loc) not in slots):
        problems.append(
            f"{product_id} / {locale} gets real-time requests in {env} but has no default "
            f"message: Apple shows nothing there when the endpoint does not answer; run "
            f"`flask retention default set {product_id} {locale} MESSAGE`."
        )
    return problems
