"""Eager mode (``task_always_eager``), how Django projects test: every task does what it
does on a worker (waits, retries, returns the same result), in a loop, never nested."""

from __future__ import annotations

import typing

import pytest
from celery import chain

import pictify_tasks
from pictify_tasks._runtime import runtime_for
from pictify_tasks.revoke.links import BatchLinks
from pictify_tasks.store import MemoryStore, StateStoreError
from pictify_tasks.store.records import StartMade
from pictify_tasks.testing import PictifyEmulator
from tests.fakes import RecordingPublisher, cancelled_result, eager_app, retrying_app


def test_a_chain_that_polls_many_times_ends_without_recursion(emulator: PictifyEmulator) -> None:
    emulator.items_per_second = 25.0  # 50 items: about 2 s, so ~100 polls of 0.02 s
    app = retrying_app(emulator)
    rows = [{"n": n} for n in range(50)]
    try:
        flow = chain(
            app.tasks["pictify.start_batch"].s("tpl_eager", rows),
            app.tasks["pictify.wait_for_batch"].s(poll_interval=0.02),
        ).apply_async()
        result = flow.get()
    finally:
        pictify_tasks.uninstall(app)
    assert result["status"] == "completed" and result["completed_items"] == 50
    polls = emulator.requests_matching("GET", "/results")
    assert len(polls) >= 3  # rounds, each in the same frame, not one nested in another
    # The waits aim at the batch's end: far fewer polls than one per poll_interval.
    assert len(polls) < 2.0 / 0.02 / 4


def test_a_503_is_retried_not_surfaced_as_retry_with_eager_propagates(
    emulator: PictifyEmulator,
) -> None:
    app = retrying_app(emulator)
    batch_id = emulator.create_batch()
    emulator.inject(status=503, times=3, path_contains=f"/{batch_id}/cancel")
    try:
        result = app.tasks["pictify.cancel_batch"].delay(batch_id).get()
    finally:
        pictify_tasks.uninstall(app)
    assert (result["outcome"], result["attempts"]) == ("cancelled", 4)
    assert [r.status for r in emulator.cancel_requests(batch_id)] == [503, 503, 503, 200]


def test_an_eager_cancel_returns_what_a_worker_returns(emulator: PictifyEmulator) -> None:
    app = retrying_app(emulator)
    batch_id = emulator.create_batch()
    try:
        first = app.tasks["pictify.cancel_batch"].delay(batch_id).get()
        again = app.tasks["pictify.cancel_batch"].delay(batch_id).get()
    finally:
        pictify_tasks.uninstall(app)
    assert first == cancelled_result(batch_id)
    assert set(first) == set(typing.get_type_hints(pictify_tasks.CancelBatchResult))
    assert again == cancelled_result(batch_id, replayed=True)  # from the ledger, nothing sent
    assert len(emulator.cancel_requests(batch_id)) == 1


def test_an_eager_wait_for_a_cancelled_batch_stops_the_chain(emulator: PictifyEmulator) -> None:
    app = retrying_app(emulator)
    batch_id = emulator.create_batch(status="cancelled")
    try:
        with pytest.raises(pictify_tasks.BatchCancelledError):
            app.tasks["pictify.wait_for_batch"].delay(batch_id, poll_interval=0.02).get()
        opted_out = app.tasks["pictify.wait_for_batch"].delay(batch_id, raise_on=()).get()
    finally:
        pictify_tasks.uninstall(app)
    assert opted_out["status"] == "cancelled"


class RevokedMeanwhile(MemoryStore):
    """The workflow is revoked while the start's POST is on the wire."""

    def finish_start(self, made: StartMade, links: BatchLinks, ttl: int) -> list[str]:
        super().finish_start(made, links, ttl)
        return [links.root_id or ""]


def test_a_batch_started_after_its_workflow_was_revoked_is_cancelled_inside_it(
    emulator: PictifyEmulator,
) -> None:
    """Its cancel says why and belongs to the workflow, like every revoke's cancel."""
    app = eager_app(emulator)
    runtime = runtime_for(app)
    runtime._store = RevokedMeanwhile()
    publisher = RecordingPublisher()
    runtime.fanout.publisher = publisher
    start = app.tasks["pictify.start_batch"]
    try:
        batch_id = start.apply(("tpl_a", [{"name": "Ada"}]), task_id="start-1").get()
    finally:
        pictify_tasks.uninstall(app)
    [wanted] = publisher.wanted
    assert (wanted.batch_id, wanted.reason) == (batch_id, "revoked: start-1")
    assert (wanted.root_id, wanted.parent_id) == ("start-1", "start-1")  # its own root, eagerly


class CannotFinish(MemoryStore):
    def finish_batch(self, batch_id: str, ttl: int) -> None:
        raise StateStoreError("the state store did not answer")


def test_a_wait_for_a_missing_batch_says_so_when_the_store_is_down(
    emulator: PictifyEmulator,
) -> None:
    app = eager_app(emulator)
    runtime_for(app)._store = CannotFinish()
    try:
        with pytest.raises(pictify_tasks.BatchNotFoundError):
            app.tasks["pictify.wait_for_batch"].apply(("batch_gone",)).get()
    finally:
        pictify_tasks.uninstall(app)
