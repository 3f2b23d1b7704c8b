"""The local dev CA: ``flask retention dev-ca``, its files, and RETENTION_TRUST_DEV_CA."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from flask import Flask
from flask.testing import FlaskCliRunner

from flask_retention import ConfigurationError, Retention, VerificationError
from flask_retention.realtime.devca import (
    DEV_CA_FILES,
    DevCAExistsError,
    create_dev_ca,
    dev_ca_folder,
    dev_ca_root,
    load_dev_ca_signer,
)
from flask_retention.realtime.verification import INTERMEDIATE_OID, LEAF_OID, JWSVerifier
from flask_retention.testing import AppStoreSigner

URL = "/retention/realtime"
APP_APPLE_ID = 1234567890


@pytest.fixture
def config() -> dict[str, object]:
    return {"RETENTION_APP_APPLE_ID": APP_APPLE_ID, "RETENTION_TRUST_DEV_CA": True}


@pytest.fixture
def retention(app: Flask) -> Iterator[Retention]:
    retention = Retention(app)
    retention.selector(lambda req: None)
    yield retention
    retention.close()


def body(signer: AppStoreSigner) -> bytes:
    return signer.realtime_body(app_apple_id=APP_APPLE_ID)


def test_create_dev_ca_writes_a_chain_shaped_like_apples(tmp_path: Path) -> None:
    folder = create_dev_ca(tmp_path / "ca")
    assert sorted(p.name for p in folder.iterdir()) == sorted(DEV_CA_FILES.values())
    for part in ("intermediate_key", "leaf_key"):
        assert stat.S_IMODE((folder / DEV_CA_FILES[part]).stat().st_mode) == 0o600
    signer = load_dev_ca_signer(folder)
    assert signer.root_certificate == dev_ca_root(folder)
    assert signer.intermediate_certificate.extensions.get_extension_for_oid(INTERMEDIATE_OID)
    assert signer.leaf_certificate.extensions.get_extension_for_oid(LEAF_OID)
    payload = JWSVerifier(dev_ca_root(folder)).verify(signer.sign_realtime_request())
    assert payload["environment"] == "Sandbox"


def test_create_dev_ca_keeps_an_existing_one_unless_forced(tmp_path: Path) -> None:
    folder = create_dev_ca(tmp_path)
    root = dev_ca_root(folder)
    with pytest.raises(DevCAExistsError, match="--force"):
        create_dev_ca(folder)
    assert dev_ca_root(folder) == root
    create_dev_ca(folder, force=True)
    assert dev_ca_root(folder) != root
    assert load_dev_ca_signer(folder).root_certificate == dev_ca_root(folder)


def test_the_root_key_is_not_written(tmp_path: Path) -> None:
    folder = create_dev_ca(tmp_path)
    keys = [p for p in folder.iterdir() if b"PRIVATE KEY" in p.read_bytes()]
    public = {
        serialization.load_pem_private_key(p.read_bytes(), None)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        for p in keys
    }
    root_public = (
        dev_ca_root(folder)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert len(keys) == 2
    assert root_public not in public


def test_a_missing_dev_ca_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="flask retention dev-ca"):
        load_dev_ca_signer(tmp_path / "nothing")
    with pytest.raises(ConfigurationError, match="flask retention dev-ca"):
        dev_ca_root(tmp_path / "nothing")


def test_a_damaged_dev_ca_says_how_to_replace_it(tmp_path: Path) -> None:
    folder = create_dev_ca(tmp_path)
    (folder / DEV_CA_FILES["root"]).write_bytes(b"not a certificate")
    with pytest.raises(ConfigurationError, match="--force"):
        load_dev_ca_signer(folder)
    with pytest.raises(ConfigurationError, match="--force"):
        dev_ca_root(folder)


def test_dev_ca_command_writes_into_the_instance_folder(app: Flask, runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["retention", "dev-ca"])
    assert result.exit_code == 0, result.output
    folder = dev_ca_folder(app)
    assert folder == Path(app.instance_path) / "retention-dev-ca"
    assert str(folder) in result.output
    assert "flask retention simulate" in result.output
    assert load_dev_ca_signer(folder).root_certificate == dev_ca_root(folder)


def test_dev_ca_command_refuses_to_overwrite_without_force(
    app: Flask, runner: FlaskCliRunner
) -> None:
    assert runner.invoke(args=["retention", "dev-ca"]).exit_code == 0
    root = dev_ca_root(dev_ca_folder(app))
    refused = runner.invoke(args=["retention", "dev-ca"])
    assert refused.exit_code == 1
    assert refused.output.count("\n") == 1
    assert "already exists" in refused.output
    assert "Traceback" not in refused.output
    assert dev_ca_root(dev_ca_folder(app)) == root
    forced = runner.invoke(args=["retention", "dev-ca", "--force"])
    assert forced.exit_code == 0, forced.output
    assert dev_ca_root(dev_ca_folder(app)) != root


def test_endpoint_trusts_the_dev_ca_when_told(app: Flask, retention: Retention) -> None:
    signer = load_dev_ca_signer(create_dev_ca(dev_ca_folder(app)))
    response = app.test_client().post(URL, data=body(signer), content_type="application/json")
    assert (response.status_code, response.get_json()) == (200, {})


def test_endpoint_refuses_the_dev_ca_without_trust_dev_ca(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(RETENTION_APP_APPLE_ID=APP_APPLE_ID)
    retention = Retention(app)
    retention.selector(lambda req: None)
    try:
        signer = load_dev_ca_signer(create_dev_ca(dev_ca_folder(app)))
        response = app.test_client().post(URL, data=body(signer), content_type="application/json")
    finally:
        retention.close()
    assert response.status_code == 401
    assert response.get_json()["error"] == "untrusted_root"


def test_endpoint_trusts_a_dev_ca_made_after_it_started(
    app: Flask, retention: Retention, caplog: pytest.LogCaptureFixture
) -> None:
    client = app.test_client()
    with caplog.at_level(logging.ERROR, logger="flask_retention"):
        before = [
            client.post(URL, data=body(AppStoreSigner()), content_type="application/json")
            for _ in range(2)
        ]
    assert [r.status_code for r in before] == [401, 401]
    logged = [r.getMessage() for r in caplog.records if "RETENTION_TRUST_DEV_CA" in r.getMessage()]
    assert len(logged) == 1
    assert "flask retention dev-ca" in logged[0]
    signer = load_dev_ca_signer(create_dev_ca(dev_ca_folder(app)))
    response = client.post(URL, data=body(signer), content_type="application/json")
    assert response.status_code == 200


def test_dev_ca_stays_beside_the_configured_roots(tmp_path: Path) -> None:
    other = AppStoreSigner()
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        RETENTION_APP_APPLE_ID=APP_APPLE_ID,
        RETENTION_TRUST_DEV_CA=True,
        RETENTION_ROOT_CERTIFICATES=[other.root_pem],
    )
    retention = Retention(app)
    retention.selector(lambda req: None)
    try:
        dev = load_dev_ca_signer(create_dev_ca(dev_ca_folder(app)))
        client = app.test_client()
        statuses = [
            client.post(URL, data=body(s), content_type="application/json").status_code
            for s in (dev, other, AppStoreSigner())
        ]
    finally:
        retention.close()
    assert statuses == [200, 200, 401]


def test_dev_ca_refused_when_production_is_accepted(app: Flask) -> None:
    app.config.update(RETENTION_ENVIRONMENT=["Sandbox", "Production"])
    with pytest.raises(ConfigurationError) as info:
        Retention(app)
    assert str(info.value) == (
        "RETENTION_TRUST_DEV_CA cannot be used while RETENTION_ENVIRONMENT accepts "
        "Production: the local dev CA is for development only."
    )


def test_the_dev_ca_keeps_what_broken_variants_need(tmp_path: Path) -> None:
    folder = create_dev_ca(tmp_path)
    signer = load_dev_ca_signer(folder)
    verifier = JWSVerifier(dev_ca_root(folder))
    with pytest.raises(VerificationError) as info:
        verifier.verify(signer.sign_broken("missing_leaf_oid", signer.realtime_payload()))
    assert info.value.reason == "missing_oid"
