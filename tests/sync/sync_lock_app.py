"""A host app for tests/sync/test_sync_lock.py, run by ``flask --app tests.sync.sync_lock_app``
in a subprocess so that the test can send the ``sync`` command a real signal.

Its ``app.config`` comes as JSON from :data:`ENV_CONFIG` (with its instance folder
under ``"INSTANCE_PATH"``); its tuning is the sync tests' short waits with the
overrides in :data:`ENV_TUNING` (JSON, ``Tuning`` field -> value).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Final

from flask import Flask

from flask_retention import Retention

from .support import SYNC_TUNING

ENV_CONFIG: Final = "SYNC_LOCK_APP_CONFIG"
ENV_TUNING: Final = "SYNC_LOCK_APP_TUNING"


def create_app() -> Flask:
    """The host app whose management API and database are the test's."""
    config = json.loads(os.environ[ENV_CONFIG])
    app = Flask(__name__, instance_path=config.pop("INSTANCE_PATH"))
    app.config.update(config)
    tuning = dataclasses.replace(SYNC_TUNING, **json.loads(os.environ.get(ENV_TUNING, "{}")))
    Retention(app, tuning=tuning)
    return app
