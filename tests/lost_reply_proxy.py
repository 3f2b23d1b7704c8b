"""A loopback TCP forwarder in front of PostgreSQL that can lose the answer to a COMMIT.

:meth:`LostReplyProxy.lose_next_commit_reply` makes the next ``COMMIT`` a
client sends (after a given statement, on the same connection) reach the
server, which commits, while its answer never comes back: the proxy reads it
and drops that connection, as a network that breaks at the worst moment does.
The client sees a lost connection and cannot know that its transaction was
committed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class LostReplyProxy:
    """Forward ``127.0.0.1:<port>`` to ``(host, port)``, one thread pair per connection."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._armed: bytes | None = None
        self._open: set[socket.socket] = set()
        #: Replies to a ``COMMIT`` dropped so far.
        self.lost = 0
        threading.Thread(target=self._accept, name="lost-reply-proxy", daemon=True).start()

    def __enter__(self) -> LostReplyProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def lose_next_commit_reply(self, after: bytes) -> None:
        """Let the next ``COMMIT`` sent on a connection that sent ``after`` (the start of a
        statement) through, and drop its answer and the connection."""
        with self._lock:
            self._armed = after

    def close(self) -> None:
        """Stop listening and drop every connection."""
        _close(self._listener)
        with self._lock:
            sockets, self._open = self._open, set()
        for s in sockets:
            _close(s)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open.update((client, upstream))
            committing = threading.Event()
            threading.Thread(
                target=self._to_server,
                args=(client, upstream, committing),
                name="lost-reply-proxy-up",
                daemon=True,
            ).start()
            threading.Thread(
                target=self._to_client,
                args=(upstream, client, committing),
                name="lost-reply-proxy-down",
                daemon=True,
            ).start()

    def _to_server(
        self, client: socket.socket, upstream: socket.socket, committing: threading.Event
    ) -> None:
        seen = False
        try:
            while data := client.recv(65536):
                with self._lock:
                    armed = self._armed
                    if armed is not None:
                        seen = seen or armed in data
                        if seen and b"COMMIT" in data:
                            self._armed = None
                            committing.set()
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _close(client)
            _close(upstream)

    def _to_client(
        self, upstream: socket.socket, client: socket.socket, committing: threading.Event
    ) -> None:
        try:
            while data := upstream.recv(65536):
                if committing.is_set():
                    with self._lock:
                        self.lost += 1
                    return  # the server committed; its answer goes nowhere
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client)
            _close(upstream)


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    s.close()
