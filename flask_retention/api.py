"""The App Store Server API's retention messaging endpoints: the client, its types and
errors (DESIGN.md's public place; they live in :mod:`flask_retention.appstore`)."""

from __future__ import annotations

from flask import Flask, current_app

from flask_retention.appstore import client as _client
from flask_retention.appstore.client import *  # noqa: F403 - this module re-exports the client's
from flask_retention.appstore.client import RetentionAPIClient, client_from_settings
from flask_retention.extension import EXTENSION_KEY

__all__ = [*_client.__all__, "client_from_app"]


def client_from_app(app: Flask | None = None, environment: str | None = None) -> RetentionAPIClient:
    """A :class:`RetentionAPIClient` built from the app's ``RETENTION_*`` configuration.

    ``app`` defaults to the current app; ``environment`` to the first of
    ``RETENTION_ENVIRONMENT``. A missing setting raises ``ConfigurationError``
    naming the key and where App Store Connect shows it.
    """
    retention = (app or current_app).extensions[EXTENSION_KEY]
    settings = retention._get_state(app).settings
    return client_from_settings(settings, environment, tuning=retention.tuning)
