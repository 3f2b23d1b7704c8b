"""The example app: first start, and its first signed requests answered by its selector.

Requests are signed by an :class:`AppStoreSigner` whose root the app trusts
and go through the real endpoint (test client), so each rule of the
example's selector is checked as the JSON Apple would receive.
"""

from __future__ import annotations

import json
import stat
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

from example_app import app as example
from example_app import make_images, models
from flask_retention.catalogue.files import load_catalogue_file
from flask_retention.catalogue.png import read_png_info
from flask_retention.catalogue.store import Catalogue
from flask_retention.catalogue.validation import CatalogueError
from flask_retention.testing import AppStoreSigner, serve

from .support import state_of

EXAMPLE_DIR = Path(example.__file__).parent


@pytest.fixture(scope="module")
def signer() -> AppStoreSigner:
    return AppStoreSigner()


@pytest.fixture
def instance(tmp_path: Path) -> Path:
    return tmp_path / "instance"


@pytest.fixture
def make_app(
    instance: Path, signer: AppStoreSigner, database_url: str
) -> Iterator[Callable[..., Flask]]:
    """Build the example app on ``instance`` (our tables on SQLite or PostgreSQL)."""
    apps: list[Flask] = []

    def make(**config: Any) -> Flask:
        settings = {
            "TESTING": True,
            "RETENTION_DATABASE_URI": database_url,
            "RETENTION_ROOT_CERTIFICATES": [signer.root_pem],
            "RETENTION_TRUST_DEV_CA": False,
            # A generous limit: a shared, loaded test machine must not flake the rules.
            "RETENTION_SELECTOR_TIMEOUT": 10,
            **config,
        }
        app = example.create_app(settings, instance_path=str(instance))
        apps.append(app)
        return app

    yield make
    for app in apps:
        example.retention.close(app)
        app.extensions[example.EXAMPLE_KEY].dispose()


def ask(app: Flask, signer: AppStoreSigner, otid: str, **fields: Any) -> Any:
    status, answer = example.send_example_request(app, signer, otid, **fields)
    assert status == 200, answer
    return answer


def message_uuid(app: Flask, name: str) -> str:
    with app.app_context():
        stored = example.retention.catalogue.get_message(name)
    assert stored is not None
    return str(stored.uuid)


def test_first_start_prepares_the_database_and_catalogue(
    make_app: Callable[..., Flask], instance: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = make_app()
    assert "example-request 1000000000000002" in capsys.readouterr().err
    with sa.orm.Session(app.extensions[example.EXAMPLE_KEY]) as session:
        otids = set(session.scalars(sa.select(models.Subscription.original_transaction_id)))
    assert otids == {s.original_transaction_id for s in models.SAMPLES}
    catalogue = Catalogue(app.extensions["retention"].get_engine(app))
    messages = catalogue.list_messages()
    assert {m.name for m in messages} == {
        "winback",
        "switch-to-yearly",
        "come-back",
        "default-en",
        "default-fr",
        "default-de",
    }
    assert {(m.name, m.locale) for m in messages if m.locale} == {
        ("winback", "fr-FR"),
        ("winback", "de-DE"),
    }
    assert catalogue.language_settings().base_locale == "en-US"
    assert {m.state("Sandbox") for m in messages} == {"APPROVED"}
    assert {m.state("Production") for m in messages} == {None}
    assert {i.state("Sandbox") for i in catalogue.list_images()} == {"APPROVED"}
    assert len(catalogue.list_defaults()) == 8


def test_second_start_changes_nothing(
    make_app: Callable[..., Flask], instance: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = make_app()
    key = (instance / example.OFFER_KEY_FILE).read_bytes()
    version = Catalogue(first.extensions["retention"].get_engine(first)).version
    capsys.readouterr()

    second = make_app()
    assert capsys.readouterr().err == ""
    assert (instance / example.OFFER_KEY_FILE).read_bytes() == key
    assert Catalogue(second.extensions["retention"].get_engine(second)).version == version
    with sa.orm.Session(second.extensions[example.EXAMPLE_KEY]) as session:
        count = session.scalar(sa.select(sa.func.count()).select_from(models.Subscription))
    assert count == len(models.SAMPLES)


def test_offer_key_is_a_labelled_private_stand_in(
    make_app: Callable[..., Flask], instance: Path
) -> None:
    make_app()
    path = instance / example.OFFER_KEY_FILE
    data = path.read_bytes()
    assert data.startswith(b"LOCAL STAND-IN")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(data, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"


def test_long_tenure_monthly_subscriber_is_offered_the_yearly_plan(
    make_app: Callable[..., Flask], signer: AppStoreSigner
) -> None:
    app = make_app()
    assert ask(app, signer, "1000000000000001") == {
        "alternateProduct": {
            "messageIdentifier": message_uuid(app, "switch-to-yearly"),
            "productId": "com.example.yearly",
        }
    }


def test_lapsed_subscriber_gets_a_signed_promotional_offer(
    make_app: Callable[..., Flask], signer: AppStoreSigner, instance: Path
) -> None:
    app = make_app()
    answer = ask(app, signer, "1000000000000002", product_id="com.example.monthly")
    offer = answer["promotionalOffer"]
    assert set(answer) == {"promotionalOffer"}
    assert offer["messageIdentifier"] == message_uuid(app, "come-back")

    key = serialization.load_pem_private_key(
        (instance / example.OFFER_KEY_FILE).read_bytes(), password=None
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    token = offer["promotionalOfferSignatureV2"]
    claims = jwt.decode(token, key.public_key(), algorithms=["ES256"], audience="promotional-offer")
    assert jwt.get_unverified_header(token)["kid"] == "LOCALSTANDIN"
    assert claims["offerIdentifier"] == example.COME_BACK_OFFER_ID
    assert claims["productId"] == "com.example.monthly"
    assert claims["transactionId"] == "1000000000000002"
    assert claims["bid"] == "com.example.app"


def test_offer_signature_does_not_verify_with_another_key(
    make_app: Callable[..., Flask], signer: AppStoreSigner
) -> None:
    app = make_app()
    token = ask(app, signer, "1000000000000002")["promotionalOffer"]["promotionalOfferSignatureV2"]
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other, algorithms=["ES256"], audience="promotional-offer")


@pytest.mark.parametrize("otid", ["1000000000000003", "1000000000000004"])
def test_other_subscribers_get_the_winback_message(
    make_app: Callable[..., Flask], signer: AppStoreSigner, otid: str
) -> None:
    app = make_app()
    assert ask(app, signer, otid) == {
        "message": {"messageIdentifier": message_uuid(app, "winback")}
    }


@pytest.mark.parametrize(
    ("locale", "translation"),
    [("en-GB", ""), ("fr-FR", "fr-FR"), ("fr-CA", "fr-FR"), ("de-DE", "de-DE")],
)
def test_the_winback_message_answers_in_the_subscribers_language(
    make_app: Callable[..., Flask], signer: AppStoreSigner, locale: str, translation: str
) -> None:
    app = make_app()
    with app.app_context():
        stored = example.retention.catalogue.get_message("winback", translation)
    assert stored is not None
    assert ask(app, signer, "1000000000000003", locale=locale) == {
        "message": {"messageIdentifier": str(stored.uuid)}
    }


def test_a_language_without_a_translation_gets_no_winback_answer(
    make_app: Callable[..., Flask], signer: AppStoreSigner
) -> None:
    """base_fallback is off: a Japanese subscriber is not shown English; Apple shows its
    default for the product and locale (none here)."""
    app = make_app()
    assert ask(app, signer, "1000000000000003", locale="ja-JP") == {}


@pytest.mark.parametrize(
    ("product_id", "locale", "default"),
    [
        ("com.example.monthly", "en-US", "default-en"),
        ("com.example.monthly", "fr-FR", "default-fr"),
        ("com.example.yearly", "de-DE", "default-de"),
        ("com.example.yearly", "en-GB", "default-en"),
    ],
)
def test_unknown_subscriber_gets_the_default_for_product_and_locale(
    make_app: Callable[..., Flask],
    signer: AppStoreSigner,
    product_id: str,
    locale: str,
    default: str,
) -> None:
    app = make_app()
    answer = ask(app, signer, "999999999", product_id=product_id, locale=locale)
    assert answer == {"message": {"messageIdentifier": message_uuid(app, default)}}


def test_unknown_subscriber_without_a_default_gets_an_empty_answer(
    make_app: Callable[..., Flask], signer: AppStoreSigner
) -> None:
    app = make_app()
    assert ask(app, signer, "999999999", locale="ja-JP") == {}


def test_lapsed_is_measured_from_today(
    make_app: Callable[..., Flask], signer: AppStoreSigner
) -> None:
    """Ben (4 months, monthly) gets the message once he has used the app again."""
    app = make_app()
    engine = app.extensions[example.EXAMPLE_KEY]
    with sa.orm.Session(engine) as session, session.begin():
        session.execute(
            sa.update(models.Subscription)
            .where(models.Subscription.original_transaction_id == "1000000000000002")
            .values(last_active_on=sa.func.current_date())
        )
    assert ask(app, signer, "1000000000000002") == {
        "message": {"messageIdentifier": message_uuid(app, "winback")}
    }
    page = app.test_client().get("/").json
    assert page is not None
    assert [s["selector_gives"] for s in page["subscribers"]][1] == "Message"


def test_requests_signed_by_an_untrusted_chain_are_refused(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    status, answer = example.send_example_request(app, AppStoreSigner(), "1000000000000001")
    assert (status, answer["error"]) == (401, "untrusted_root")


def test_index_lists_subscribers_and_the_commands_to_try(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    page = app.test_client().get("/").json
    assert page is not None
    assert page["retention_endpoint"] == "/retention/realtime"
    assert page["environment"] == "Sandbox"
    assert [s["selector_gives"] for s in page["subscribers"]] == [
        sample.expect for sample in models.SAMPLES
    ]
    assert [s["selector_gives"] for s in page["subscribers"]] == [
        "SwitchPlan",
        "PromotionalOffer",
        "Message",
        "Message",
    ]
    assert "flask --app example_app.app retention dev-ca" in page["try"]


def test_catalogue_file_passes_validation_with_images_at_apples_sizes() -> None:
    doc = load_catalogue_file(EXAMPLE_DIR / "catalogue.toml")
    assert doc.warnings == ()
    sizes = {i.name: i.size for i in doc.images}
    assert sizes == {"hero": "FULL_SIZE", "tick": "BULLET_POINT", "star": "BULLET_POINT"}
    bare = {m.name for m in doc.messages if m.image is None and not m.bullet_points}
    assert {"switch-to-yearly", "come-back"} <= bare


def _pixels(data: bytes) -> bytes:
    """The decompressed image data of a PNG (its IDAT chunks)."""
    idat, pos = b"", 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return zlib.decompress(idat)


def test_committed_images_are_what_make_images_makes(tmp_path: Path) -> None:
    written = make_images.make_images(tmp_path)
    assert {p.name for p in written} == set(make_images.IMAGES)
    for path in written:
        committed = (EXAMPLE_DIR / "images" / path.name).read_bytes()
        made = path.read_bytes()
        assert read_png_info(committed) == read_png_info(made)
        assert _pixels(committed) == _pixels(made)


def test_make_images_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert make_images.main(["--out", str(tmp_path / "out")]) == 0
    assert "hero.png" in capsys.readouterr().out
    info = read_png_info((tmp_path / "out" / "hero.png").read_bytes())
    assert (info.width, info.has_transparency) == (3840, False)


def test_bad_catalogue_stops_the_start_with_the_reason(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"messages": [{"name": "x", "header": "h" * 67, "body": "b"}]}))
    with pytest.raises(CatalogueError, match="66"):
        make_app(EXAMPLE_CATALOGUE=str(bad))


# -- the commands the example prints (dev CA, simulate, example-request) ---------


@pytest.fixture
def dev_app(make_app: Callable[..., Flask]) -> Flask:
    """The example as a newcomer runs it: trusting the dev CA (Apple's root otherwise)."""
    return make_app(RETENTION_TRUST_DEV_CA=True, RETENTION_ROOT_CERTIFICATES=None)


def test_example_request_prints_the_answer_signed_by_the_dev_ca(dev_app: Flask) -> None:
    runner = dev_app.test_cli_runner()
    assert runner.invoke(args=["retention", "dev-ca"]).exit_code == 0
    result = runner.invoke(args=["example-request", "1000000000000002"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["promotionalOffer"]["messageIdentifier"] == message_uuid(dev_app, "come-back")
    assert "HTTP 200" in result.stderr


def test_example_request_without_a_dev_ca_says_how_to_make_one(dev_app: Flask) -> None:
    result = dev_app.test_cli_runner().invoke(args=["example-request"])
    assert result.exit_code == 1
    assert "flask retention dev-ca" in result.output
    assert "Traceback" not in result.output


def test_printed_commands_work_against_the_running_server(dev_app: Flask) -> None:
    """dev-ca, then simulate and example-request --url against the app served on loopback."""
    runner = dev_app.test_cli_runner()
    assert runner.invoke(args=["retention", "dev-ca"]).exit_code == 0
    with serve(dev_app) as base_url:
        url = base_url + dev_app.config["RETENTION_ENDPOINT"]
        simulated = runner.invoke(
            args=[
                "retention",
                "simulate",
                "--requests",
                "20",
                "--url",
                url,
                "--json",
                # the verdict is tested here, not speed: a loaded machine must not flake it
                "--threshold-ms",
                "10000",
            ]
        )
        one = runner.invoke(args=["example-request", "1000000000000001", "--url", url])
    assert simulated.exit_code == 0, simulated.output
    result = json.loads(simulated.stdout)
    assert result["result"] == "PASS"
    assert one.exit_code == 0, one.output
    assert json.loads(one.stdout)["alternateProduct"]["productId"] == "com.example.yearly"


def test_example_request_to_an_unreachable_url_fails_with_one_line(dev_app: Flask) -> None:
    runner = dev_app.test_cli_runner()
    assert runner.invoke(args=["retention", "dev-ca"]).exit_code == 0
    with serve(dev_app) as base_url:
        pass  # a port that was just free, now closed
    result = runner.invoke(args=["example-request", "--url", base_url + "/retention/realtime"])
    assert result.exit_code == 1
    assert "cannot reach" in result.output
    assert "Traceback" not in result.output


def test_configuration_from_flask_environment_variables(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLASK_RETENTION_MAX_REQUEST_AGE", "60")
    app = make_app()
    assert app.config["RETENTION_MAX_REQUEST_AGE"] == 60
    assert state_of(app).settings.max_request_age == 60


def test_report_shows_what_example_requests_were_answered(dev_app: Flask) -> None:
    runner = dev_app.test_cli_runner()
    assert runner.invoke(args=["retention", "dev-ca"]).exit_code == 0
    for otid in ("1000000000000001", "1000000000000002", "1000000000000003", "42"):
        assert runner.invoke(args=["example-request", otid]).exit_code == 0
    example.retention.close(dev_app)  # flushes the decision log
    result = runner.invoke(args=["retention", "report", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["totals"]["requests"] == 4
    assert report["totals"]["answered"] == 4
    assert report["fallbacks"] == {"no_choice": 1}
