"""A host app for tests/test_fake_app_store_command.py, run by ``flask --app`` in a
subprocess and built in the test as well.

Its settings come from the environment through ``app.config.from_prefixed_env()``
(``FLASK_RETENTION_...``), the way the fake App Store's printed config asks for,
and its instance folder from :data:`ENV_INSTANCE_PATH`.
"""

from __future__ import annotations

import os
from typing import Final

from flask import Flask

from flask_retention import Retention, Tuning

ENV_INSTANCE_PATH: Final = "FAKE_APP_STORE_APP_INSTANCE_PATH"

#: Short waits: the CLI paces its calls to the fake 1000 times faster than Apple's rates,
#: and follows a performance test every 50 ms.
TUNING: Final = Tuning(api_pacing=0.001, api_retry_after_cap=5.0, perf_test_poll_interval=0.05)


def create_app() -> Flask:
    """The host app: the real-time endpoint at ``/retention/realtime``, no selector (every
    request gets the fallback, which Apple counts as a success)."""
    app = Flask(__name__, instance_path=os.environ[ENV_INSTANCE_PATH])
    app.config.from_prefixed_env()
    Retention(app, tuning=TUNING)
    return app
