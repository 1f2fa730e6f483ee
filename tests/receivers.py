"""A real webhook receiver for the worker tests: ``wsgi_app`` served over HTTP on loopback."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from celery import Celery

from pictify_tasks.webhooks import wsgi_app
from tests.workers import Setup, client_app

PATH = "/pictify/webhook"


class _Server(WSGIServer):
    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up (socket.getfqdn), which can stall.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])
        self.setup_environ()


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """The receiver logs what matters itself."""


@dataclass
class Receiver:
    """Where the emulator sends deliveries, and the app the receiver publishes with."""

    url: str
    app: Celery


@contextmanager
def serving_receiver(setup: Setup) -> Iterator[Receiver]:
    """The receiver as a user mounts it, configured like the worker: broker, state, secret."""
    app = client_app(
        setup.broker_url, setup.result_url, setup.queue, setup.env["PICTIFY_STATE_URL"]
    )
    app.conf.pictify_state_prefix = setup.env["PICTIFY_STATE_PREFIX"]
    app.conf.pictify_webhook_secret = setup.emulator.webhook_secret
    server = make_server("127.0.0.1", 0, wsgi_app(app), server_class=_Server, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Receiver(f"http://127.0.0.1:{server.server_port}{PATH}", app)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        app.close()
