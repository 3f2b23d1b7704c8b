"""The public names of DESIGN.md import from the places it names, and the paths earlier
docs taught keep working, with a deprecation warning."""

from __future__ import annotations

import importlib
import sys

import pytest

PUBLIC = {
    "flask_retention": [
        "Retention",
        "RealtimeRequest",
        "Message",
        "SwitchPlan",
        "PromotionalOffer",
        "NoChoice",
        "Decision",
        "retention_decided",
        "VerificationError",
        "ConfigurationError",
        "RetentionError",
        "NotificationError",
    ],
    "flask_retention.verification": ["JWSVerifier", "CacheInfo", "LEAF_OID", "INTERMEDIATE_OID"],
    "flask_retention.api": [
        "RetentionAPIClient",
        "APIError",
        "RateLimitedError",
        "NotFoundError",
        "client_from_app",
        "reset_rate_limits",
    ],
    "flask_retention.testing": ["AppStoreSigner", "FakeAppStore", "PerformanceTestRun", "serve"],
}


@pytest.mark.parametrize(("module", "names"), sorted(PUBLIC.items()))
def test_public_names_import_from_their_design_places(module: str, names: list[str]) -> None:
    imported = importlib.import_module(module)
    missing = [name for name in names if not hasattr(imported, name)]
    assert missing == []


def test_the_api_module_re_exports_the_appstore_client() -> None:
    from flask_retention.api import RetentionAPIClient
    from flask_retention.appstore.client import RetentionAPIClient as Client

    assert RetentionAPIClient is Client


@pytest.mark.parametrize(
    ("module", "name", "new_home"),
    [
        ("flask_retention.db", "upgrade", "flask_retention.catalogue.schema"),
        ("flask_retention.db", "create_engine", "flask_retention.core.database"),
        (
            "flask_retention.migrations",
            "exclude_retention_tables",
            "flask_retention.catalogue.migrations",
        ),
    ],
)
def test_old_paths_still_import_with_a_deprecation_warning(
    module: str, name: str, new_home: str
) -> None:
    sys.modules.pop(module, None)
    with pytest.warns(DeprecationWarning, match=new_home.replace(".", r"\.")):
        old = importlib.import_module(module)
    assert getattr(old, name) is getattr(importlib.import_module(new_home), name)
