"""A loopback TCP forwarder that tests can cut, stall and restore.

Put it in front of a shared server (PostgreSQL) to make the server look
unreachable or silent to one client without touching the server:

- :meth:`TCPProxy.cut` drops every forwarded connection and closes new ones
  at once (a server that is down, or refuses);
- :meth:`TCPProxy.stall` forwards nothing more, in either direction, and
  accepts new connections without ever answering them (a host that vanished
  without resetting its connections, a stopped server, a stalled network);
- :meth:`TCPProxy.restore` forwards new connections again. After a stall the
  connections from before it are forgotten, as by a host that came back: they
  stay silent, and whatever a client sends on one is answered with a reset.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from dataclasses import dataclass
from types import TracebackType


@dataclass(eq=False)
class _Link:
    """One client connection, its upstream (once made) and the stall generation it began in."""

    client: socket.socket
    generation: int
    upstream: socket.socket | None = None


class TCPProxy:
    """Forward ``127.0.0.1:<port>`` to ``(host, port)``, one thread pair per connection."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._cond = threading.Condition()
        self._links: set[_Link] = set()
        self._cut = False
        self._stalled = False
        self._generation = 0
        self._closed = False
        self._accepter = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._accepter.start()

    def __enter__(self) -> TCPProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def cut(self) -> None:
        """Drop every forwarded connection; refuse new ones until :meth:`restore`."""
        with self._cond:
            self._cut = True
            links, self._links = self._links, set()
            self._cond.notify_all()
        for link in links:
            for s in (link.client, link.upstream):
                if s is not None:
                    _close(s)

    def stall(self) -> None:
        """Forward nothing more and answer no new connection, until :meth:`restore`."""
        with self._cond:
            self._stalled = True

    def restore(self) -> None:
        """Forward new connections again; those of a stall stay silent (see the module)."""
        with self._cond:
            self._cut = False
            if self._stalled:
                self._stalled = False
                self._generation += 1
                forgotten = [link for link in self._links if link.generation < self._generation]
            else:
                forgotten = []
            self._cond.notify_all()
        for link in forgotten:
            if link.upstream is not None:
                _close(link.upstream)  # the server's side of it is gone

    def close(self) -> None:
        """Stop listening and drop every connection."""
        with self._cond:
            self._closed = True
        self.cut()
        _close(self._listener)
        self._accepter.join(5)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._cond:
                if self._cut or self._closed:
                    refuse = True
                else:
                    refuse = False
                    link = _Link(client, self._generation)
                    self._links.add(link)
            if refuse:
                _close(client)
                continue
            threading.Thread(
                target=self._connect, args=(link,), name="tcp-proxy-link", daemon=True
            ).start()

    def _flowing(self, link: _Link) -> bool:
        """Wait out a stall; ``False`` when ``link`` was forgotten (or cut) meanwhile."""
        with self._cond:
            while self._stalled and link.generation == self._generation and link in self._links:
                self._cond.wait()
            return link.generation == self._generation and link in self._links

    def _connect(self, link: _Link) -> None:
        if not self._flowing(link):
            self._silent(link)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
        except OSError:
            self._drop(link)
            return
        link.upstream = upstream
        threading.Thread(
            target=self._pump,
            args=(link, upstream, link.client),
            name="tcp-proxy-pump",
            daemon=True,
        ).start()
        self._pump(link, link.client, upstream)

    def _pump(self, link: _Link, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self._flowing(link):
                    if source is link.client:
                        _reset(link.client)
                    return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            if self._forgotten(link):
                if source is link.client:
                    self._drop(link)
            else:
                self._drop(link)

    def _silent(self, link: _Link) -> None:
        """A forgotten connection that never reached the server: reset it once it speaks."""
        try:
            if link.client.recv(65536):
                _reset(link.client)
                return
        except OSError:
            pass
        self._drop(link)

    def _forgotten(self, link: _Link) -> bool:
        with self._cond:
            return link.generation < self._generation and link in self._links

    def _drop(self, link: _Link) -> None:
        with self._cond:
            self._links.discard(link)
        for s in (link.client, link.upstream):
            if s is not None:
                _close(s)


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    s.close()


def _reset(s: socket.socket) -> None:
    """Close ``s`` with a TCP reset, as a host does for a connection it does not know."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
