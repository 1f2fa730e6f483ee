"""``python manage.py pictify_example``: the whole project against the emulator, one command.

Starts the Pictify API emulator and a real ``celery worker`` of the
project, starts a render through the view, cancels it through the view,
and checks that the API saw exactly one cancel of its batch. Needs the
Redis at ``CELERY_BROKER_URL`` (default ``redis://127.0.0.1:6379/0``).
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand
from django.test import Client
from mysite.celery import app

from pictify_tasks.testing import (
    PictifyEmulator,
    assert_cancelled_once,
    emulator_env,
    use_emulator,
)
from pictify_tasks.testing.worker import run_worker


class Command(BaseCommand):
    help = "Start a render and cancel it, against the Pictify emulator and a real worker."

    def handle(self, *args: Any, **options: Any) -> None:
        state_url = app.conf.broker_url  # the web process and the worker share one ledger
        with PictifyEmulator(items_per_second=0) as emulator:  # batches run until cancelled
            use_emulator(app, emulator, state_url=state_url)
            self.stdout.write(f"Pictify emulator at {emulator.base_url}; starting a worker ...")
            with run_worker(app, env=emulator_env(emulator, state_url=state_url), concurrency=2):
                web = Client()
                started = web.post("/renders/", {"rows": [{"name": "Ada"}]}, "application/json")
                workflow_id = started.json()["workflow_id"]
                batch_id = _first_batch(emulator, timeout=30)
                self.stdout.write(f"render {workflow_id} started batch {batch_id}")
                cancelled = web.post(f"/renders/{workflow_id}/cancel/").json()
                self.stdout.write(f"cancel view answered {cancelled}")
                assert_cancelled_once(emulator, batch_id, timeout=30)
                self.stdout.write(f"batch {batch_id}: {emulator.batch(batch_id)['status']}")
        self.stdout.write("ok")


def _first_batch(emulator: PictifyEmulator, timeout: float) -> str:
    """The first batch the emulator made, waiting for it with a deadline."""
    deadline = time.monotonic() + timeout
    while not emulator.batches():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no batch was started within {timeout:g} s")
        time.sleep(0.01)
    return emulator.batches()[0]
