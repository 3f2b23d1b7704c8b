"""The endpoint answering in the subscriber's language: a catalogue with three languages
imported, synced to the fake App Store over loopback HTTP, and signed requests answered
with the translation the fallback chain picks for their ``userLocale``, the decision
recording which locale answered and why."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskCliRunner

from flask_retention import (
    Message,
    PromotionalOffer,
    RealtimeRequest,
    Retention,
    SwitchPlan,
    retention_decided,
)
from flask_retention.api import reset_rate_limits
from flask_retention.catalogue.models import metadata
from flask_retention.insights.decision_log import DecisionLogWriter
from flask_retention.realtime.decisions import Decision
from flask_retention.testing import AppStoreSigner, FakeAppStore

from .support import state_of
from .sync.support import PRODUCT, invoke, ok, sync_app

URL = "/retention/realtime"
DECISIONS = metadata.tables["retention_decisions"]
GENEROUS = 10.0

LANGUAGES = """
[languages]
base_locale = "en-US"
base_fallback = {base_fallback}
"""

CATALOGUE = """
[[messages]]
name = "winback"
header = "Before you go"
body = "Your plan includes offline mode."

[messages.translations.fr-FR]
header = "Avant de partir"
body = "Votre abonnement inclut le mode hors ligne."

[messages.translations.de-DE]
header = "Bevor Sie gehen"
body = "Ihr Abo enthält den Offline-Modus."

[[defaults]]
product_id = "{product}"
locales = ["en-US", "fr-FR", "fr-CA", "de-DE", "it-IT"]
message = "winback"
"""

#: A catalogue written before translations: one base text per language, by hand.
OLD_STYLE = """
[[messages]]
name = "winback-en"
header = "Before you go"
body = "Your plan includes offline mode."

[[messages]]
name = "winback-fr"
header = "Avant de partir"
body = "Votre abonnement inclut le mode hors ligne."

[[defaults]]
product_id = "{product}"
locale = "fr-FR"
message = "winback-fr"
"""


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    reset_rate_limits()
    yield
    reset_rate_limits()


@pytest.fixture
def app(
    tmp_path: Path,
    database_url: str,
    fake_app_store_url: str,
    app_store_key: ec.EllipticCurvePrivateKey,
    app_store_key_id: str,
    app_store_issuer_id: str,
    app_store_bundle_id: str,
    app_store_signer: AppStoreSigner,
) -> Iterator[Flask]:
    with sync_app(
        tmp_path,
        database_url,
        store_url=fake_app_store_url,
        key=app_store_key,
        key_id=app_store_key_id,
        issuer_id=app_store_issuer_id,
        bundle_id=app_store_bundle_id,
        signer=app_store_signer,
    ) as app:
        yield app


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


class Endpoint:
    """The test app's endpoint: a selector whose choice a test sets, signed requests, and
    the decisions they made (as sent, and as stored by the decision log)."""

    def __init__(self, app: Flask, signer: AppStoreSigner) -> None:
        self.app = app
        self.signer = signer
        self.client = app.test_client()
        self.choice: object = None
        self.decisions: list[Decision] = []
        retention: Retention = app.extensions["retention"]
        retention.register_selector(self.choose, product_ids=[PRODUCT])
        retention_decided.connect(self._decided, sender=app)

    def choose(self, req: RealtimeRequest) -> object:
        return self.choice

    def _decided(self, sender: Flask, decision: Decision) -> None:
        self.decisions.append(decision)

    def close(self) -> None:
        retention_decided.disconnect(self._decided, sender=self.app)

    def refresh(self) -> None:
        """Load the catalogue as it is now into the snapshot (the background thread would)."""
        state_of(self.app).lookup.refresh()

    def ask(self, locale: str, choice: object = None) -> Any:
        """The ``200`` body answered to a request from ``locale`` when the selector
        returns ``choice``."""
        self.choice = choice
        response = self.client.post(
            URL,
            data=self.signer.realtime_body(
                locale=locale, product_id=PRODUCT, app_apple_id=1234567890
            ),
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    def last(self) -> tuple[str | None, str | None, str | None]:
        """``(answered_locale, locale_reason, fallback_reason)`` of the last decision."""
        d = self.decisions[-1]
        return d.answered_locale, d.locale_reason, d.fallback_reason

    def stored(self) -> list[tuple[str | None, str | None, str | None, str | None]]:
        """``(locale, answered_locale, locale_reason, fallback_reason)`` of every stored
        decision row, in order."""
        writer = state_of(self.app).decision_log
        assert isinstance(writer, DecisionLogWriter)
        assert writer.flush(GENEROUS)
        engine = self.app.extensions["retention"].get_engine(self.app)
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(
                    DECISIONS.c.locale,
                    DECISIONS.c.answered_locale,
                    DECISIONS.c.locale_reason,
                    DECISIONS.c.fallback_reason,
                ).order_by(DECISIONS.c.id)
            )
            return [tuple(row) for row in rows]


@pytest.fixture
def endpoint(app: Flask, app_store_signer: AppStoreSigner) -> Iterator[Endpoint]:
    endpoint = Endpoint(app, app_store_signer)
    yield endpoint
    endpoint.close()


def import_catalogue(
    runner: FlaskCliRunner, tmp_path: Path, text: str, *, base_fallback: bool | None = False
) -> None:
    languages = (
        ""
        if base_fallback is None
        else LANGUAGES.format(base_fallback="true" if base_fallback else "false")
    )
    path = tmp_path / "catalogue.toml"
    path.write_text(languages + text.format(product=PRODUCT), encoding="utf-8")
    ok(invoke(runner, "import", str(path)))


def text_uuids(runner: FlaskCliRunner) -> dict[tuple[str, str], str]:
    """The UUID of each text's current version, by (name, locale)."""
    listed = json.loads(ok(invoke(runner, "message", "list", "--json")).output)
    return {(m["name"], m["locale"]): m["uuid"] for m in listed}


def says(uuid: str) -> dict[str, Any]:
    return {"message": {"messageIdentifier": uuid}}


def test_each_translation_is_uploaded_and_answers_its_language(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore, endpoint: Endpoint
) -> None:
    import_catalogue(runner, tmp_path, CATALOGUE)
    ok(invoke(runner, "sync"))
    endpoint.refresh()
    uuids = text_uuids(runner)
    base, french, german = (uuids[("winback", loc)] for loc in ("en-US", "fr-FR", "de-DE"))
    assert set(fake_app_store.messages) == {base, french, german}

    winback = Message("winback")
    assert endpoint.ask("fr-FR", winback) == says(french)
    assert endpoint.last() == ("fr-FR", "exact", None)
    assert endpoint.ask("fr-CA", winback) == says(french)
    assert endpoint.last() == ("fr-FR", "region", None)
    assert endpoint.ask("de-DE", winback) == says(german)
    assert endpoint.last() == ("de-DE", "exact", None)
    assert endpoint.ask("en-GB", winback) == says(base)
    assert endpoint.last() == ("en-US", "region", None)
    # No Italian, no base fallback: the fallback, whose it-IT slot sync left empty too.
    assert (PRODUCT, "it-IT") not in fake_app_store.defaults
    assert endpoint.ask("it-IT", winback) == {}
    assert endpoint.last() == (None, "none", "no_translation")

    assert endpoint.stored() == [
        ("fr-FR", "fr-FR", "exact", None),
        ("fr-CA", "fr-FR", "region", None),
        ("de-DE", "de-DE", "exact", None),
        ("en-GB", "en-US", "region", None),
        ("it-IT", None, "none", "no_translation"),
    ]


def test_base_fallback_answers_a_missing_language_with_the_base_text(
    runner: FlaskCliRunner, tmp_path: Path, endpoint: Endpoint
) -> None:
    import_catalogue(runner, tmp_path, CATALOGUE, base_fallback=True)
    ok(invoke(runner, "sync"))
    endpoint.refresh()
    uuids = text_uuids(runner)
    assert endpoint.ask("it-IT", Message("winback")) == says(uuids[("winback", "en-US")])
    assert endpoint.last() == ("en-US", "base", None)
    assert endpoint.ask("fr-CA", Message("winback")) == says(uuids[("winback", "fr-FR")])
    assert endpoint.stored()[0] == ("it-IT", "en-US", "base", None)


def test_the_fallback_answers_what_sync_configured_at_apple_for_each_locale(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore, endpoint: Endpoint
) -> None:
    import_catalogue(runner, tmp_path, CATALOGUE)
    ok(invoke(runner, "sync"))
    endpoint.refresh()
    french = text_uuids(runner)[("winback", "fr-FR")]
    assert str(fake_app_store.defaults[(PRODUCT, "fr-CA")]) == french
    assert endpoint.ask("fr-CA") == says(french)
    assert endpoint.last() == ("fr-FR", "region", "no_choice")
    for locale in ("en-US", "fr-FR", "fr-CA", "de-DE", "it-IT", "es-ES"):
        configured = fake_app_store.defaults.get((PRODUCT, locale))
        expected = {} if configured is None else says(str(configured))
        assert endpoint.ask(locale) == expected, locale
    assert endpoint.last() == (None, None, "no_choice")  # es-ES: no default rule at all


def test_switch_plan_and_offer_name_the_message_and_get_the_translation(
    runner: FlaskCliRunner, tmp_path: Path, endpoint: Endpoint
) -> None:
    import_catalogue(runner, tmp_path, CATALOGUE)
    ok(invoke(runner, "sync"))
    endpoint.refresh()
    french = text_uuids(runner)[("winback", "fr-FR")]
    switch = endpoint.ask("fr-CA", SwitchPlan("winback", "com.example.yearly"))
    assert switch["alternateProduct"]["messageIdentifier"] == french
    assert endpoint.last() == ("fr-FR", "region", None)
    offer = endpoint.ask("fr-FR", PromotionalOffer("winback", offer_id="winback-50"))
    assert offer["promotionalOffer"]["messageIdentifier"] == french
    assert endpoint.last() == ("fr-FR", "exact", None)


def test_a_pending_translation_answers_through_the_chain_with_the_reason_recorded(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore, endpoint: Endpoint
) -> None:
    fake_app_store.auto_approve = False
    import_catalogue(runner, tmp_path, CATALOGUE, base_fallback=True)
    ok(invoke(runner, "sync"))
    uuids = text_uuids(runner)
    base, french = uuids[("winback", "en-US")], uuids[("winback", "fr-FR")]
    fake_app_store.approve(base)
    ok(invoke(runner, "sync"))
    endpoint.refresh()

    # fr-FR in review: the chain goes on to the base text, and says what it passed over.
    assert endpoint.ask("fr-FR", Message("winback")) == says(base)
    assert endpoint.last() == ("en-US", "base; fr-FR pending", None)
    assert endpoint.ask("fr-CA", Message("winback")) == says(base)
    assert endpoint.last() == ("en-US", "base; fr-FR pending", None)

    fake_app_store.approve(french)
    ok(invoke(runner, "sync"))
    endpoint.refresh()
    assert endpoint.ask("fr-CA", Message("winback")) == says(french)
    assert endpoint.last() == ("fr-FR", "region", None)

    assert endpoint.stored() == [
        ("fr-FR", "en-US", "base; fr-FR pending", None),
        ("fr-CA", "en-US", "base; fr-FR pending", None),
        ("fr-CA", "fr-FR", "region", None),
    ]


def test_a_pending_translation_never_hides_behind_an_empty_answer(
    runner: FlaskCliRunner, tmp_path: Path, fake_app_store: FakeAppStore, endpoint: Endpoint
) -> None:
    fake_app_store.auto_approve = False
    import_catalogue(runner, tmp_path, CATALOGUE)
    ok(invoke(runner, "sync"))
    uuids = text_uuids(runner)
    fake_app_store.approve(uuids[("winback", "en-US")])
    fake_app_store.approve(uuids[("winback", "de-DE")])
    ok(invoke(runner, "sync"))
    endpoint.refresh()

    # No text of French is approved and the base text may not stand in: nothing answers,
    # and the decision says why, for the selector's choice and for the default alike.
    assert endpoint.ask("fr-CA", Message("winback")) == {}
    assert endpoint.last() == (None, "none; fr-FR pending", "translation_pending")
    assert endpoint.ask("fr-FR") == {}
    assert endpoint.last() == (None, "none; fr-FR pending", "no_choice")
    assert endpoint.ask("de-DE") == says(uuids[("winback", "de-DE")])
    assert endpoint.last() == ("de-DE", "exact", "no_choice")

    assert endpoint.stored() == [
        ("fr-CA", None, "none; fr-FR pending", "translation_pending"),
        ("fr-FR", None, "none; fr-FR pending", "no_choice"),
        ("de-DE", "de-DE", "exact", "no_choice"),
    ]


def test_an_untranslated_message_answers_every_locale_as_before(
    runner: FlaskCliRunner, tmp_path: Path, endpoint: Endpoint
) -> None:
    import_catalogue(runner, tmp_path, OLD_STYLE, base_fallback=None)
    ok(invoke(runner, "sync"))
    endpoint.refresh()
    uuids = text_uuids(runner)
    english, french = uuids[("winback-en", "en-US")], uuids[("winback-fr", "en-US")]
    for locale in ("en-US", "fr-FR", "fr-CA", "it-IT", "zh-Hant"):
        assert endpoint.ask(locale, Message("winback-fr")) == says(french), locale
    assert endpoint.ask("en-US", Message("winback-en")) == says(english)
    assert endpoint.last() == ("en-US", "exact", None)
    assert endpoint.ask("fr-FR") == says(french)  # the default, as configured
    assert endpoint.last() == ("en-US", "base", "no_choice")
