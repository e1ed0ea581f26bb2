"""A loopback TCP proxy in front of the real PostgreSQL whose link a test can stop, hang or cut.

``PgFaultProxy`` forwards bytes between clients and the server in threads of its own, so what it
does never runs on the event loop under test. Its modes:

- ``resume()``: forward (the normal state).
- ``stop()``: the server is down: the port refuses connections and open ones are reset.
- ``hang()``: the server stops answering: connections open, but no byte moves either way.
- ``cut()``: a network blip or a server restart: open connections are reset, new ones work.

The ``pg_fault_proxy`` fixture (conftest.py) starts a proxy in front of the test server and
closes it after the test; ``proxied_pool`` is the bot's pool through it, ``direct_pool`` one
straight to the server.
"""

from __future__ import annotations

import contextlib
import enum
import selectors
import socket
import struct
import threading

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from support.gcs import LOOPBACK
from support.index import pg_dsn

POLL_S = 0.02
"""How often proxy threads look at the mode; a mode change takes effect within this."""

CHUNK = 65536

POOL_TIMEOUT_S = 0.3
"""How long the proxied pool waits for a connection: a stopped server fails a write fast."""


class LinkMode(enum.Enum):
    """What the proxy does with the link."""

    FORWARD = "forward"
    HANG = "hang"
    REFUSE = "refuse"


class _Link:
    """One client connection and its server connection, pumped by one thread."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.reset = threading.Event()
        self.thread: threading.Thread | None = None


class PgFaultProxy:
    """A TCP proxy on 127.0.0.1 whose link to the server the test controls."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        """Bind a free loopback port; :meth:`start` begins serving."""
        self._upstream = upstream
        self._mode = LinkMode.FORWARD
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._links: list[_Link] = []
        self._listener: socket.socket | None = self._listen(0)
        self._port = int(self._listener.getsockname()[1])
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self.connections = 0
        """Connections accepted so far."""

    @property
    def port(self) -> int:
        """The proxy's port on 127.0.0.1."""
        return self._port

    @property
    def mode(self) -> LinkMode:
        """The current mode."""
        return self._mode

    def dsn(self, dsn: str) -> str:
        """Return ``dsn`` (URI or key/value) pointed at the proxy instead of the server."""
        return make_conninfo(dsn, host=LOOPBACK, hostaddr=LOOPBACK, port=str(self._port))

    def start(self) -> PgFaultProxy:
        """Start serving in background threads."""
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Refuse new connections and reset the open ones: the server looks down."""
        self._set(LinkMode.REFUSE)
        self._reset_links()

    def hang(self) -> None:
        """Stop moving bytes on every connection, open or new: the server looks frozen."""
        self._set(LinkMode.HANG)

    def cut(self) -> None:
        """Reset every open connection; new ones are forwarded as before."""
        self._reset_links()

    def resume(self) -> None:
        """Forward again (listening again on the same port after :meth:`stop`)."""
        self._set(LinkMode.FORWARD)

    def close(self) -> None:
        """Stop serving and reset every connection."""
        self._closing.set()
        self._acceptor.join(timeout=5)
        self._reset_links()

    def _set(self, mode: LinkMode) -> None:
        with self._lock:
            self._mode = mode

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, port))
        listener.listen(64)
        listener.settimeout(POLL_S)
        return listener

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            refusing = self._mode is LinkMode.REFUSE
            if refusing and self._listener is not None:
                # A closed port refuses connections, as a stopped server's does.
                self._listener.close()
                self._listener = None
            elif not refusing and self._listener is None:
                self._listener = self._listen(self._port)
            if self._listener is None:
                self._closing.wait(POLL_S)
                continue
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._open_link(client)
        if self._listener is not None:
            self._listener.close()

    def _open_link(self, client: socket.socket) -> None:
        if self._mode is LinkMode.REFUSE:
            # Accepted in the instant before stop() took the port down.
            _reset(client)
            return
        try:
            server = socket.create_connection(self._upstream, timeout=5)
        except OSError:
            _reset(client)
            return
        link = _Link(client, server)
        link.thread = threading.Thread(target=self._pump, args=(link,), daemon=True)
        with self._lock:
            self._links.append(link)
            self.connections += 1
        link.thread.start()

    def _pump(self, link: _Link) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(link.client, selectors.EVENT_READ, link.server)
            selector.register(link.server, selectors.EVENT_READ, link.client)
            try:
                while not (link.reset.is_set() or self._closing.is_set()):
                    if self._mode is LinkMode.HANG:
                        # Bytes wait in the kernel's buffers, unread, as with a frozen server.
                        link.reset.wait(POLL_S)
                        continue
                    for key, _ in selector.select(POLL_S):
                        data = key.fileobj.recv(CHUNK)  # type: ignore[union-attr]
                        if not data:
                            return
                        key.data.sendall(data)
            except OSError:
                return
            finally:
                _reset(link.client)
                _reset(link.server)
                with self._lock:
                    self._links.remove(link)

    def _reset_links(self) -> None:
        with self._lock:
            links = list(self._links)
        for link in links:
            link.reset.set()
        for link in links:
            if link.thread is not None:
                link.thread.join(timeout=5)


def _reset(sock: socket.socket) -> None:
    """Close with an RST rather than a FIN, as a crashed peer or a dropped route would."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def pg_upstream() -> tuple[str, int]:
    """Return the test server's host and port."""
    params = conninfo_to_dict(pg_dsn())
    host = str(params.get("hostaddr") or params.get("host") or LOOPBACK)
    return host, int(params.get("port") or 5432)
