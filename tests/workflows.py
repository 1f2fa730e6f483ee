"""Building and watching workflows in the worker tests."""

from __future__ import annotations

import time
from typing import Any

import redis
from celery import chain

from pictify_tasks.testing import RecordedRequest
from tests.workers import Setup

TEMPLATE = "tpl_revoke_test"
ROWS = [{"name": "Ada"}, {"name": "Grace"}]


def start(setup: Setup) -> Any:
    return setup.app.tasks["pictify.start_batch"].s(TEMPLATE, ROWS)


def wait(setup: Setup, poll_interval: float = 0.2) -> Any:
    return setup.app.tasks["pictify.wait_for_batch"].s(poll_interval=poll_interval)


def after(setup: Setup) -> Any:
    return setup.app.signature("tests.after")


def waiting_chain(setup: Setup) -> tuple[Any, str]:
    """``start -> wait -> after``, once ``wait`` is polling: (the tail's result, the batch id)."""
    result = chain(start(setup), wait(setup), after(setup)).apply_async()
    batch_id = result.parent.parent.get(timeout=30)
    polling(setup, batch_id)
    return result, batch_id


def cancel_of(setup: Setup, batch_id: str, timeout: float = 20.0) -> RecordedRequest:
    """Block until the emulator receives the cancel of ``batch_id``."""
    [request] = setup.emulator.wait_for_requests(
        1, method="POST", path_contains=f"/{batch_id}/cancel", timeout=timeout
    )
    return request


def polling(setup: Setup, batch_id: str) -> None:
    """Block until ``wait_for_batch`` has polled the batch at least once."""
    setup.emulator.wait_for_requests(
        1, method="GET", path_contains=f"/{batch_id}/results", timeout=20
    )


def settled(setup: Setup) -> None:
    """Return once every revoke broadcast before this call has been handled.

    The listener handles broadcasts in order, so once a later revoke's cancel
    arrives, any cancel an earlier one caused has been enqueued too; then the
    queue is drained by running a cancel task through it.
    """
    result = chain(start(setup)).apply_async()
    batch_id = result.get(timeout=30)
    setup.app.control.revoke(result.id)
    cancel_of(setup, batch_id)
    setup.cancel(batch_id).get(timeout=30)


def timed_revoke(
    setup: Setup, timings: dict[str, list[float]], path: str, batch_id: str, revoke: Any
) -> RecordedRequest:
    began = time.monotonic()
    revoke()
    request = cancel_of(setup, batch_id)
    timings.setdefault(f"{path} [{setup.broker}]", []).append(request.monotonic - began)
    return request


def published(state: redis.Redis, release: str, timeout: float = 30.0) -> str:
    """The batch id the holding task wrote once it had started and tracked its batch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = state.get(f"{release}:batch")
        if value:
            return value.decode()
        time.sleep(0.02)
    raise TimeoutError("the holding task did not start its batch")


def eventually(check: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())
