"""A real webhook receiver for the worker tests: ``wsgi_app`` served over HTTP on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from celery import Celery

from pictify_tasks.testing.receiver import serve_receiver
from tests.workers import Setup, client_app


@dataclass
class Receiver:
    """Where the emulator sends deliveries, and the app the receiver publishes with."""

    url: str
    app: Celery


@contextmanager
def serving_receiver(setup: Setup) -> Iterator[Receiver]:
    """The receiver as a user mounts it, configured like the worker: broker, state, secret."""
    state_url = setup.env["PICTIFY_STATE_URL"]
    app = client_app(setup.broker_url, setup.result_url, setup.queue, state_url)
    app.conf.pictify_state_prefix = setup.env["PICTIFY_STATE_PREFIX"]
    app.conf.pictify_webhook_secret = setup.emulator.webhook_secret
    try:
        with serve_receiver(app) as url:
            yield Receiver(url, app)
    finally:
        app.close()
