"""Cancels that used to be lost to a killed start or a lost message, and a revoke that
reached too far: on a real worker, on Redis and on RabbitMQ."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery import chain
from celery.result import AsyncResult

import pictify_tasks
from pictify_tasks.revoke.links import BatchLinks
from tests.workers import Setup
from tests.workflows import TEMPLATE, cancel_of, eventually, settled, start

pytestmark = pytest.mark.worker

SWEEP_INTERVAL = 1.0


WORKER_ENV = {"PICTIFY_SWEEP_INTERVAL": str(SWEEP_INTERVAL)}


@pytest.fixture(autouse=True)
def _clean_faults(setup: Setup) -> Iterator[None]:
    setup.emulator.clear_faults()
    yield
    setup.emulator.clear_faults()


def new_batch(setup: Setup, before: set[str], timeout: float = 20.0) -> str:
    """The one batch the emulator made since ``before`` (waiting for it with a deadline)."""
    made: list[str] = []
    assert eventually(
        lambda: bool(made.extend(set(setup.emulator.batches()) - before) or made), timeout
    )
    [batch_id] = set(made)
    return batch_id


def test_a_start_killed_inside_its_post_is_found_and_cancelled(setup: Setup) -> None:
    """revoke_workflow(terminate=True) while start_batch waits for the API's answer."""
    before = set(setup.emulator.batches())
    setup.emulator.inject(delay=2.0, times=1, method="POST", path_contains="/batch-render")
    result = chain(start(setup)).apply_async()
    setup.emulator.wait_for_requests(1, method="POST", path_contains="/batch-render", timeout=20)
    pictify_tasks.revoke_workflow(result, terminate=True, app=setup.app)
    batch_id = new_batch(setup, before)
    cancel_of(setup, batch_id, timeout=30)
    assert eventually(lambda: setup.emulator.batch(batch_id)["status"] == "cancelled", 30)
    # one batch only: the replay got the first request's batch back
    assert set(setup.emulator.batches()) - before == {batch_id}


def test_a_start_whose_workflow_was_revoked_first_sends_nothing(setup: Setup) -> None:
    before = set(setup.emulator.batches())
    head = start(setup).set(countdown=2.0)
    result = chain(head, setup.app.signature("tests.after")).apply_async()
    setup.app.control.revoke(result.id)  # the tail: the head is not revoked, its workflow is
    probe = BatchLinks(frozenset({result.id}), frozenset())
    assert eventually(lambda: setup.store.link_batch(f"probe-{result.id}", probe, 60) != [], 10)
    outcome = AsyncResult(result.parent.id, app=setup.app)
    assert eventually(lambda: outcome.state == "REVOKED", 20)
    assert set(setup.emulator.batches()) - before == set(), "a batch was started"


def test_a_cancel_whose_message_is_lost_is_sent_again_by_the_sweep(setup: Setup) -> None:
    app, worker = setup.app, [setup.worker.name]
    batch_id = setup.emulator.create_batch()
    app.control.cancel_consumer(setup.queue, destination=worker, reply=True)
    try:
        setup.cancel(batch_id)
        with app.connection_for_write() as connection:
            assert connection.default_channel.queue_purge(setup.queue) >= 1
    finally:
        app.control.add_consumer(setup.queue, destination=worker, reply=True)
    cancel_of(setup, batch_id, timeout=10 * SWEEP_INTERVAL + 10)
    assert eventually(lambda: setup.emulator.batch(batch_id)["status"] == "cancelled", 20)
    assert any(
        "re-sending" in line and batch_id in line for line in setup.worker.log().splitlines()
    )


def test_an_expired_or_revoked_workflow_never_reaches_its_siblings(setup: Setup) -> None:
    """A dispatcher launches two workflows and a task that expires, all under one root."""
    dispatcher = setup.app.signature("tests.dispatch", args=(TEMPLATE,)).delay()
    first_id, second_id, expired_id = dispatcher.get(timeout=30)
    first = AsyncResult(first_id, app=setup.app).get(timeout=30)
    second = AsyncResult(second_id, app=setup.app).get(timeout=30)
    assert AsyncResult(expired_id, app=setup.app).state == "REVOKED"  # it expired
    # Revoking one of the workflows cancels its batch only...
    setup.app.control.revoke(first_id)
    cancel_of(setup, first)
    settled(setup)
    assert setup.emulator.cancel_requests(second) == []  # neither the expiry nor the revoke
    assert setup.emulator.batch(second)["status"] == "pending"  # still rendering
    # ...and revoking the dispatcher cancels everything it launched.
    setup.app.control.revoke(dispatcher.id)
    cancel_of(setup, second)
