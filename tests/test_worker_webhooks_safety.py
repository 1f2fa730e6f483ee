"""When deliveries go wrong the safety poll ends the wait; a bad delivery changes nothing.

The worker's safety poll here is 2 s apart, and the chains ask for a
``poll_interval`` of an hour: with webhooks on it is not used, so a chain
that ends within the tests' deadline was ended by the safety poll (or by a
delivery, where one arrives).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
import redis
from celery import chain

from tests.receivers import Receiver, serving_receiver
from tests.workers import Setup
from tests.workflows import ROWS, TEMPLATE, eventually, polling

pytestmark = pytest.mark.worker

SAFETY_POLL = 2
WORKER_ENV = {"PICTIFY_WEBHOOK_POLL_INTERVAL": str(SAFETY_POLL)}


@pytest.fixture(scope="module")
def setup(redis_setup: Setup) -> Setup:
    return redis_setup


@pytest.fixture(scope="module")
def receiver(setup: Setup) -> Any:
    with serving_receiver(setup) as receiver:
        yield receiver


def waiting(setup: Setup, receiver: Receiver, key: str) -> tuple[Any, str]:
    """``start(webhook_url) -> wait(poll_interval=3600) -> record``, waiting: (tail, batch id)."""
    tasks = setup.app.tasks
    result = chain(
        tasks["pictify.start_batch"].s(TEMPLATE, ROWS, webhook_url=receiver.url),
        tasks["pictify.wait_for_batch"].s(poll_interval=3600),
        setup.app.signature("tests.record", kwargs={"key": key}),
    ).apply_async()
    batch_id = result.parent.parent.get(timeout=30)
    polling(setup, batch_id)
    return result, batch_id


def runs(setup: Setup, key: str) -> int:
    return int(redis.Redis.from_url(setup.env["PICTIFY_STATE_URL"]).llen(key))


def polls(setup: Setup, batch_id: str) -> int:
    return len(setup.emulator.requests_matching("GET", f"/{batch_id}/results"))


def test_a_lost_delivery_is_caught_by_the_safety_poll(setup: Setup, receiver: Receiver) -> None:
    key = f"runs-{uuid.uuid4().hex}"
    result, batch_id = waiting(setup, receiver, key)
    setup.emulator.inject_webhook(lost=True, batch_id=batch_id)
    setup.emulator.set_batch_status(batch_id, "completed")
    assert result.get(timeout=20)["status"] == "completed"
    assert setup.emulator.webhook_deliveries(batch_id) == []  # never sent
    assert polls(setup, batch_id) >= 2  # the safety poll saw the end
    assert runs(setup, key) == 1


@pytest.mark.parametrize(
    ("fault", "refusal"),
    [
        ({"bad_signature": True}, "signature does not match"),
        ({"stale": 600}, "timestamp outside the 5-minute window"),
    ],
    ids=["forged", "stale"],
)
def test_a_forged_or_stale_delivery_changes_nothing(
    setup: Setup,
    receiver: Receiver,
    fault: dict[str, Any],
    refusal: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pictify_tasks.webhooks")
    key = f"runs-{uuid.uuid4().hex}"
    result, batch_id = waiting(setup, receiver, key)
    setup.emulator.inject_webhook(batch_id=batch_id, **fault)
    setup.emulator.set_batch_status(batch_id, "completed")
    [delivery] = setup.emulator.wait_for_webhook_deliveries(1, batch_id)
    assert delivery.status == 401
    assert refusal in caplog.text  # the receiver, in this process, says why
    assert setup.store.cancel_state(batch_id).outcome is None  # nothing recorded
    # The wait goes on as if nothing came: its safety poll ends it.
    assert result.get(timeout=20)["status"] == "completed"
    assert polls(setup, batch_id) >= 2
    assert runs(setup, key) == 1


def test_a_woken_wait_and_its_safety_poll_go_on_once(setup: Setup, receiver: Receiver) -> None:
    key = f"runs-{uuid.uuid4().hex}"
    result, batch_id = waiting(setup, receiver, key)
    wait_id = result.parent.id
    waits = f"Task pictify.wait_for_batch[{wait_id}] ignored"
    assert eventually(lambda: waits in setup.worker.log(), 20)  # its safety poll is scheduled
    setup.emulator.set_batch_status(batch_id, "completed")
    assert result.get(timeout=20)["status"] == "completed"  # woken by the delivery
    # The safety poll scheduled before the delivery still runs, finds the wait
    # completed by the woken run, and ends quietly: the chain went on once.
    quiet = f"pictify.wait_for_batch[{wait_id}]: another run completed the wait"
    assert eventually(lambda: quiet in setup.worker.log(), 20)
    assert runs(setup, key) == 1
    assert polls(setup, batch_id) == 1
