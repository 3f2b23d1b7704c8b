"""The endpoint answering from the real catalogue: names and defaults through the snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest

from flask_retention import Message
from flask_retention.catalogue.snapshot import CatalogueSnapshot
from flask_retention.testing import AppStoreSigner

from .catalogue_support import migrated_engine, retention_app
from .support import state_of

URL = "/retention/realtime"


@pytest.fixture(scope="module")
def signer() -> AppStoreSigner:
    return AppStoreSigner()


def test_endpoint_serves_the_approved_version_of_a_name_and_default(
    database_url: str, tmp_path: Path, signer: AppStoreSigner
) -> None:
    migrated_engine(database_url).dispose()
    with retention_app(
        tmp_path,
        database_url,
        mode="uri",
        RETENTION_ROOT_CERTIFICATES=[signer.root_pem],
        RETENTION_APP_APPLE_ID=1234567890,
    ) as (app, retention):
        with app.app_context():
            catalogue = retention.catalogue
            old = catalogue.add_message("winback", "Stay", "Body")
            catalogue.record_apple_state("message", old.uuid, "Sandbox", "APPROVED")
            new = catalogue.add_message("winback", "Stay", "Edited, in review")
            catalogue.set_default("com.example.monthly", "en-US", "winback")
        snapshot = state_of(app).lookup
        assert isinstance(snapshot, CatalogueSnapshot)
        snapshot.refresh()
        choices: list[Message | None] = [Message("winback")]
        retention.selector(lambda req: choices[0])
        client = app.test_client()

        def answer() -> object:
            return client.post(URL, data=signer.realtime_body()).get_json()

        assert answer() == {"message": {"messageIdentifier": str(old.uuid)}}
        choices[0] = None
        assert answer() == {"message": {"messageIdentifier": str(old.uuid)}}

        with app.app_context():
            catalogue.record_apple_state("message", new.uuid, "Sandbox", "APPROVED")
        snapshot.refresh()
        assert answer() == {"message": {"messageIdentifier": str(new.uuid)}}
        choices[0] = Message("winback")
        assert answer() == {"message": {"messageIdentifier": str(new.uuid)}}
