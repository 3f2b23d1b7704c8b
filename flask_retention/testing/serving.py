"""Serve a WSGI app on a loopback port in a thread, for tests that need real HTTP."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from werkzeug.serving import WSGIRequestHandler, make_server

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

logger = logging.getLogger(__name__)


class _QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler with access logs at DEBUG on our logger, not on stderr."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.debug("%s %s -> %s", self.command, self.path.split("?", 1)[0], code)


@contextmanager
def serve(
    wsgi_app: WSGIApplication,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> Iterator[str]:
    """Serve ``wsgi_app`` over HTTP in a daemon thread; yields the base URL.

    ``port=0`` picks a free port; a port in use raises ``OSError``. The
    server is threaded (one thread per request) and is shut down, and its
    thread joined, when the block exits. With a server-side ``ssl_context`` it
    speaks HTTPS (the URL says so).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Bound here, so that a port in use raises OSError instead of Werkzeug's exit.
    with socket.create_server((host, port), family=family) as listening:
        server = make_server(
            host,
            port,
            wsgi_app,
            threaded=True,
            request_handler=_QuietRequestHandler,
            ssl_context=ssl_context,
            fd=listening.fileno(),
        )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.name = f"serve-{host}:{server.port}"
    thread.start()
    try:
        display = f"[{host}]" if ":" in host else host
        scheme = "https" if ssl_context is not None else "http"
        yield f"{scheme}://{display}:{server.port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
