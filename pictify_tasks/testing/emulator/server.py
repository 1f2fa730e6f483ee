"""HTTP plumbing: bytes on a socket in, a :class:`Request` to the app, bytes back out.

No API behaviour lives here; the server only knows how to read a request,
how to send (or drop, or trickle) a response, and how to stop quickly.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import math
import socket
import socketserver
import sys
import threading
import time
from typing import Any

from pictify_tasks.testing.emulator.messages import Request, Response, problem
from pictify_tasks.testing.emulator.middleware import Handler

MAX_BODY = 10 * 1024 * 1024
#: A trickled answer goes out in steps at most this far apart (unless it is
#: so short that there are fewer bytes than steps), so that no single read of
#: a client waits long even though the whole answer takes the trickle's time.
TRICKLE_STEP = 0.01


class Server(http.server.ThreadingHTTPServer):
    """Threaded server that can close its open keep-alive connections on stop."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False  # stop() closes connections itself instead of joining threads

    def __init__(self, address: tuple[str, int], app: Handler, stopping: threading.Event) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.app = app
        self.stopping = stopping
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a DNS lookup that can stall.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Shut every open connection, so kept-alive clients see the server go."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or go away are part of the game, not errors to print.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Turns HTTP into calls on the app; all API behaviour lives there."""

    server: Server
    protocol_version = "HTTP/1.1"
    server_version = "PictifyEmulator/1.0"
    timeout = 120  # idle keep-alive connections do not live for ever
    # Headers and body go out in two writes; with Nagle's algorithm on, a
    # keep-alive client would wait ~40 ms for the body (delayed ACK). The real
    # API does not make clients wait like that, so neither may its stand-in.
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log; the app's logs replace it."""

    def _dispatch(self) -> None:
        length_header = self.headers.get("Content-Length")
        try:
            length = int(length_header) if length_header else 0
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            status = 413 if length > MAX_BODY else 400
            self._write(problem(status, "Unusable Content-Length", self.path.split("?")[0]))
            return
        body = self.rfile.read(length) if length else b""
        headers = {str(name): str(value) for name, value in self.headers.items()}
        response = self.server.app(Request(self.command, self.path, headers, body))
        if response.drop:
            self.close_connection = True
            return
        self._write(response)

    def _write(self, response: Response) -> None:
        body = b"" if self.command == "HEAD" else response.body
        if response.trickle > 0:
            self._trickle(self._head(response) + body, response.trickle)
            return
        self._send_head(response)
        self.wfile.write(body)

    def _send_head(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()

    def _head(self, response: Response) -> bytes:
        """The status line and headers as bytes, written to a buffer instead of the wire."""
        buffer = io.BytesIO()
        wire, self.wfile = self.wfile, buffer
        try:
            self._send_head(response)
        finally:
            self.wfile = wire
        return buffer.getvalue()

    def _trickle(self, data: bytes, seconds: float) -> None:
        """Send ``data`` in small pieces spread evenly over ``seconds``.

        Head and body both trickle, so even a two-byte body keeps each pause
        short. Stopping the emulator ends it at once (the connection closes).
        """
        steps = max(1, min(len(data), math.ceil(seconds / TRICKLE_STEP)))
        started = time.monotonic()
        for step in range(steps):
            due = started + seconds * (step + 1) / steps
            if self.server.stopping.wait(max(0.0, due - time.monotonic())):
                self.close_connection = True
                return
            self.wfile.write(data[len(data) * step // steps : len(data) * (step + 1) // steps])

    do_GET = _dispatch
    do_POST = _dispatch
    do_PUT = _dispatch
    do_PATCH = _dispatch
    do_DELETE = _dispatch
    do_HEAD = _dispatch
    do_OPTIONS = _dispatch
