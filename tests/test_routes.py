"""``flask routes`` shows what the endpoints accept."""

from __future__ import annotations

from click.testing import CliRunner
from flask import Flask
from flask.cli import FlaskGroup

from flask_retention import Retention


def test_flask_routes_shows_post_for_both_endpoints(app: Flask) -> None:
    app.config.update(
        RETENTION_NOTIFICATIONS_ENDPOINT="/apple/notifications", RETENTION_BUNDLE_ID="b"
    )
    retention = Retention(app)
    try:
        cli = FlaskGroup(create_app=lambda: app)
        result = CliRunner().invoke(cli, ["routes"])
    finally:
        retention.close()
    assert result.exit_code == 0, result.output
    rows = {tuple(line.split()) for line in result.output.splitlines()}
    assert ("flask_retention.realtime", "POST", "/retention/realtime") in rows
    assert (
        "flask_retention_notifications.notifications",
        "POST",
        "/apple/notifications",
    ) in rows
