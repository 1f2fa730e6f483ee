"""The webhook receiver served over HTTP on loopback, for tests and benchmarks.

``serve_receiver(celery_app)`` runs :func:`pictify_tasks.webhooks.wsgi_app`
in a ``wsgiref`` server on a thread of this process: point a batch's
``webhook_url`` (or the emulator's deliveries) at the URL it yields. The app
must be configured like the workers: broker, state store, prefix, secret.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from pictify_tasks.webhooks import wsgi_app

__all__ = ["PATH", "serve_receiver"]

PATH = "/pictify/webhook"


class _Server(WSGIServer):
    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up (socket.getfqdn), which can stall.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """The receiver logs what matters itself."""


@contextmanager
def serve_receiver(celery_app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve the receiver of ``celery_app`` until the block ends; yields its URL."""
    server = make_server(host, 0, wsgi_app(celery_app), server_class=_Server, handler_class=_Quiet)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="pictify-webhook-receiver",
        daemon=True,
    )
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}{PATH}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
