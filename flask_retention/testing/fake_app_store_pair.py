"""Both environments of one app's fake App Store, served by one WSGI app."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from werkzeug.exceptions import NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from flask_retention.testing.fake_app_store import FakeAppStore

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

#: The path prefix of each environment on a served pair.
PREFIXES: Final[Mapping[str, str]] = {"Sandbox": "/sandbox", "Production": "/production"}


class FakeAppStorePair:
    """A Sandbox and a Production :class:`FakeAppStore` of one app, linked as at Apple.

    ``options`` are :class:`FakeAppStore` keywords given to both (the
    identity, ``product_ids``, ...); ``sandbox`` and ``production`` add or
    replace keywords of one of them. The Production fake accepts a real-time
    URL once a performance test passed in the Sandbox fake (its ``sandbox``
    keyword). The pair is a WSGI app that serves the Sandbox fake under
    ``/sandbox`` and the Production fake under ``/production``;
    :meth:`base_urls` gives the ``RETENTION_API_BASE_URL`` mapping for the
    URL it is served at.
    """

    def __init__(
        self,
        *,
        sandbox: Mapping[str, Any] | None = None,
        production: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        for given in (options, sandbox or {}, production or {}):
            if "environment" in given or "sandbox" in given:
                raise ValueError(
                    "FakeAppStorePair sets environment and sandbox itself; give the other "
                    "FakeAppStore keywords"
                )
        self.sandbox = FakeAppStore(**{**options, **(sandbox or {}), "environment": "Sandbox"})
        self.production = FakeAppStore(
            **{**options, **(production or {})},
            environment="Production",
            sandbox=self.sandbox,
        )
        self._dispatcher = DispatcherMiddleware(
            NotFound(),
            {
                PREFIXES["Sandbox"]: self.sandbox,
                PREFIXES["Production"]: self.production,
            },
        )

    def store(self, environment: str) -> FakeAppStore:
        """The fake of ``environment`` (``"Sandbox"`` or ``"Production"``)."""
        if environment == "Sandbox":
            return self.sandbox
        if environment == "Production":
            return self.production
        raise ValueError(f"environment must be 'Sandbox' or 'Production', got {environment!r}")

    def base_urls(self, url: str) -> dict[str, str]:
        """``{"Sandbox": ..., "Production": ...}`` for the pair served at ``url``."""
        root = url.rstrip("/")
        return {env: root + prefix for env, prefix in PREFIXES.items()}

    def close(self) -> None:
        """Stop a running performance test (see :meth:`FakeAppStore.close`)."""
        self.sandbox.close()
        self.production.close()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Answer a request under ``/sandbox`` or ``/production``; ``404`` elsewhere."""
        return self._dispatcher(environ, start_response)
