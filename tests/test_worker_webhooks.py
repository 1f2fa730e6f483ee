"""A batch's end is heard, not polled for: the emulator's webhook, a real receiver on
loopback and a real worker, on Redis and on RabbitMQ.

The worker's safety poll is 300 s apart (the default), so a chain that goes
on within the tests' deadline (20 s) went on because the delivery woke it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import chain

from pictify_tasks.revoke.links import Scope
from tests.receivers import Receiver, serving_receiver
from tests.workers import Setup
from tests.workflows import ROWS, TEMPLATE, eventually, polling, settled

pytestmark = pytest.mark.worker

WORKER_ENV = {"PICTIFY_WEBHOOK_POLL_INTERVAL": "300"}


@pytest.fixture(scope="module")
def receiver(setup: Setup) -> Iterator[Receiver]:
    with serving_receiver(setup) as receiver:
        yield receiver


def heard_chain(setup: Setup, receiver: Receiver, key: str) -> tuple[Any, str]:
    """``start(webhook_url) -> wait -> record``, once ``wait`` waits: (tail, batch id).

    The wait has polled once, registered as a waiter and scheduled its next
    poll (its run then ends "ignored"): from here on only a delivery, or
    the safety poll, moves it.
    """
    tasks = setup.app.tasks
    result = chain(
        tasks["pictify.start_batch"].s(TEMPLATE, ROWS, webhook_url=receiver.url),
        tasks["pictify.wait_for_batch"].s(),
        setup.app.signature("tests.record", kwargs={"key": key}),
    ).apply_async()
    batch_id = result.parent.parent.get(timeout=30)
    polling(setup, batch_id)
    waits = f"Task pictify.wait_for_batch[{result.parent.id}] ignored"
    assert eventually(lambda: waits in setup.worker.log(), 20)
    return result, batch_id


def runs(setup: Setup, key: str) -> int:
    return int(redis.Redis.from_url(setup.env["PICTIFY_STATE_URL"]).llen(key))


def polls(setup: Setup, batch_id: str) -> int:
    return len(setup.emulator.requests_matching("GET", f"/{batch_id}/results"))


def test_the_chain_goes_on_when_the_end_is_heard_not_at_the_next_poll(
    setup: Setup, receiver: Receiver
) -> None:
    key = f"runs-{uuid.uuid4().hex}"
    result, batch_id = heard_chain(setup, receiver, key)
    setup.emulator.set_batch_status(batch_id, "completed")
    [delivery] = setup.emulator.wait_for_webhook_deliveries(1, batch_id)
    assert delivery.status == 202
    # Within the deadline, far below the 300 s safety poll: the delivery woke the wait.
    assert result.get(timeout=20)["status"] == "completed"
    assert polls(setup, batch_id) <= 1  # the one look before the end, none after it
    assert runs(setup, key) == 1


def test_a_repeated_delivery_moves_the_chain_on_once(setup: Setup, receiver: Receiver) -> None:
    key = f"runs-{uuid.uuid4().hex}"
    result, batch_id = heard_chain(setup, receiver, key)
    setup.emulator.inject_webhook(copies=3, batch_id=batch_id)
    setup.emulator.set_batch_status(batch_id, "partial")
    deliveries = setup.emulator.wait_for_webhook_deliveries(3, batch_id)
    assert [d.status for d in deliveries] == [202, 200, 200]  # the repeats: nothing to do
    assert result.get(timeout=20)["status"] == "partial"
    assert polls(setup, batch_id) <= 1
    assert runs(setup, key) == 1


def test_a_revoke_after_the_delivery_sends_no_cancel(setup: Setup, receiver: Receiver) -> None:
    start = setup.app.tasks["pictify.start_batch"]
    started = chain(
        start.s(TEMPLATE, ROWS, webhook_url=receiver.url), setup.app.signature("tests.after")
    ).apply_async()
    batch_id = started.get(timeout=30)  # started and linked; nothing waits for it
    setup.emulator.set_batch_status(batch_id, "completed")
    [delivery] = setup.emulator.wait_for_webhook_deliveries(1, batch_id)
    assert delivery.status == 202
    setup.app.control.revoke(started.parent.id)  # the workflow is revoked after its batch ended
    settled(setup)  # every revoke so far has been handled
    # A cancel asked now is answered from the ledger the delivery filled: no request.
    asked = setup.cancel(batch_id).get(timeout=30)
    assert (asked["outcome"], asked["status"], asked["replayed"]) == (
        "already_finished",
        "completed",
        True,
    )
    assert setup.emulator.cancel_requests(batch_id) == []


def test_a_woken_wait_of_a_revoked_workflow_goes_no_further(
    setup: Setup, receiver: Receiver
) -> None:
    """The revoke is only in the state store, as for a worker started after its broadcast.

    Such a worker runs the woken message (Celery's own memory of revoked ids
    is per worker); the wait reads the store's and ends the chain there.
    """
    key = f"runs-{uuid.uuid4().hex}"
    result, batch_id = heard_chain(setup, receiver, key)
    wait, start = result.parent, result.parent.parent
    setup.store.revoke_ids([start.id], Scope.WORKFLOW, 3600)  # what a worker that heard it keeps
    setup.emulator.set_batch_status(batch_id, "completed")
    [delivery] = setup.emulator.wait_for_webhook_deliveries(1, batch_id)
    assert delivery.status == 202
    assert eventually(lambda: wait.state == "REVOKED", 20)
    assert f"batch {batch_id} ended, but {start.id} was revoked" in setup.worker.log()
    assert result.state == "PENDING" and runs(setup, key) == 0  # the next step never ran
