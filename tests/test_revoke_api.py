"""The revoke side's public helpers: ``track_batch``, ``cancel_workflow``, ``revoke_workflow``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.result import AsyncResult, GroupResult

import pictify_tasks
from pictify_tasks import BatchNotFoundError, InvalidBatchIdError
from pictify_tasks._runtime import runtime_for
from pictify_tasks.revoke.links import BatchLinks, Scope
from pictify_tasks.testing import PictifyEmulator
from tests.fakes import RecordingPublisher, eager_app, memory_app, running
from tests.test_links import A, B, C, sig

TTL = 3600


def links(workflow: set[str], task: set[str] | None = None) -> BatchLinks:
    task = set() if task is None else task
    return BatchLinks(workflow=frozenset(workflow | task), task=frozenset(task))


# -- track_batch ---------------------------------------------------------------------------------


@pytest.fixture
def app() -> Iterator[Celery]:
    app = memory_app("links-test", "proj.a")
    yield app
    pictify_tasks.uninstall(app)
    app.close()


@pytest.fixture
def enqueued(app: Celery) -> list[list[str]]:
    """The batch ids of each publish of cancels by the app's fan-out."""
    publisher = RecordingPublisher()
    runtime_for(app).fanout.publisher = publisher
    return publisher.calls


def test_track_batch_outside_a_task_needs_a_workflow_id(app: Celery) -> None:
    with pytest.raises(RuntimeError, match="workflow_id"):
        pictify_tasks.track_batch("batch-1", app=app)


@pytest.mark.parametrize("bad", ["", "a/b", "a b", "{x}", "x" * 129, 7, None])
def test_track_batch_rejects_bad_batch_ids(app: Celery, bad: Any) -> None:
    with pytest.raises(InvalidBatchIdError):
        pictify_tasks.track_batch(bad, workflow_id="wf-1", app=app)
    assert runtime_for(app).store.revoke_ids(["wf-1"], Scope.WORKFLOW, None).batches == []


def test_track_batch_rejects_a_bad_workflow_id(app: Celery) -> None:
    with pytest.raises(InvalidBatchIdError, match="workflow id"):
        pictify_tasks.track_batch("batch-1", workflow_id="a/b", app=app)


def test_track_batch_with_a_workflow_id_links_under_it(
    app: Celery, enqueued: list[list[str]]
) -> None:
    found = pictify_tasks.track_batch("batch-1", workflow_id="wf-1", app=app)
    assert found == BatchLinks(frozenset({"wf-1"}), frozenset({"wf-1"}), root_id="wf-1")
    store = runtime_for(app).store
    assert store.revoke_ids(["wf-1"], Scope.WORKFLOW, None).batches == ["batch-1"]
    assert store.revoke_ids(["wf-1"], Scope.TASK, None).batches == ["batch-1"]
    assert enqueued == []


def test_track_batch_with_max_runtime_is_cancelled_by_the_sweep_once_it_passes(
    app: Celery, enqueued: list[list[str]]
) -> None:
    before = time.time()
    pictify_tasks.track_batch("batch-1", workflow_id="wf-1", max_runtime=60, app=app)
    store = runtime_for(app).store
    assert store.take_due_deadlines(before + 59, 10, 3600) == []
    [due] = store.take_due_deadlines(time.time() + 60, 10, 3600)
    assert due.batch_id == "batch-1"


def test_track_batch_inside_a_task_links_under_its_request(
    app: Celery, enqueued: list[list[str]]
) -> None:
    task = app.tasks["proj.a"]
    with running(task, id=B, root_id=A, parent_id=A, chain=[sig("proj.c", C)]):
        found = pictify_tasks.track_batch("batch-1")
    assert found.workflow == {A, B, C} and found.task == {A, B}
    store = runtime_for(app).store
    assert store.revoke_ids([C], Scope.WORKFLOW, None).batches == ["batch-1"]
    assert store.revoke_ids([C], Scope.TASK, None).batches == []
    assert store.revoke_ids([A], Scope.TASK, None).batches == ["batch-1"]
    assert enqueued == []


def test_track_batch_inside_a_task_adds_the_workflow_id(app: Celery) -> None:
    with running(app.tasks["proj.a"], id=A, root_id=A):
        found = pictify_tasks.track_batch("batch-1", workflow_id="extra")
    assert found.workflow == {A, "extra"} and found.task == {A, "extra"}


def test_track_batch_inside_an_eager_task_links_under_its_request(
    app: Celery, enqueued: list[list[str]]
) -> None:
    with running(app.tasks["proj.a"], id=A, root_id=A, is_eager=True):
        found = pictify_tasks.track_batch("batch-1")
    assert A in found.task
    assert runtime_for(app).store.revoke_ids([A], Scope.WORKFLOW, None).batches == ["batch-1"]


def test_an_eager_start_batch_returns_its_batch_id() -> None:
    with PictifyEmulator(items_per_second=0) as emulator:
        app = eager_app(emulator)
        try:
            batch_id = app.tasks["pictify.start_batch"].delay("tpl_1", [{"n": 1}]).get()
            assert emulator.batches() == [batch_id]
        finally:
            pictify_tasks.uninstall(app)
            app.close()


def test_track_batch_after_the_workflow_was_revoked_enqueues_a_cancel(
    app: Celery, enqueued: list[list[str]]
) -> None:
    assert pictify_tasks.cancel_workflow("wf-1", app=app) == []
    pictify_tasks.track_batch("batch-1", workflow_id="wf-1", app=app)
    assert enqueued == [["batch-1"]]
    pictify_tasks.track_batch("batch-2", workflow_id="wf-other", app=app)
    assert enqueued == [["batch-1"]]


def test_a_cancel_for_a_batch_linked_after_the_revoke_says_why_and_where(app: Celery) -> None:
    """Like every cancel a revoke causes: ``revoked: <id>``, inside the revoked workflow."""
    publisher = RecordingPublisher()
    runtime_for(app).fanout.publisher = publisher
    runtime_for(app).fanout.cancel_ids([A])
    with running(app.tasks["proj.a"], id=B, root_id=A, parent_id=A):
        pictify_tasks.track_batch("batch-1")
    [wanted] = publisher.wanted
    assert (wanted.batch_id, wanted.reason) == ("batch-1", f"revoked: {A}")
    assert (wanted.root_id, wanted.parent_id) == (A, B)


def test_track_batch_in_a_task_whose_root_was_revoked_enqueues_a_cancel(
    app: Celery, enqueued: list[list[str]]
) -> None:
    runtime_for(app).fanout.cancel_ids([A])
    with running(app.tasks["proj.a"], id=B, root_id=A, parent_id=A):
        pictify_tasks.track_batch("batch-1")
    assert enqueued == [["batch-1"]]


def test_scope_task_does_not_cancel_a_batch_for_a_revoked_chain_successor(
    app: Celery, enqueued: list[list[str]]
) -> None:
    app.conf.pictify_revoke_scope = "task"
    runtime_for(app).reset()
    task = app.tasks["proj.a"]
    fields = {"id": A, "root_id": A, "chain": [sig("proj.c", C), sig("proj.b", B)]}
    with running(task, **fields):
        pictify_tasks.track_batch("batch-before")
    # revoking the successor C in task scope does not cancel A's batch...
    assert runtime_for(app).fanout.cancel_ids([C]) == []
    # ...so neither should it cancel a batch A starts a moment later
    with running(task, **fields):
        pictify_tasks.track_batch("batch-after")
    assert enqueued == []


def test_track_batch_after_a_revoke_cancels_it_through_the_emulator() -> None:
    with PictifyEmulator(items_per_second=0) as emulator:
        app = eager_app(emulator)
        try:
            revoked_batch = emulator.create_batch()
            other_batch = emulator.create_batch()
            assert pictify_tasks.cancel_workflow("wf-1", app=app) == []
            assert emulator.cancel_requests() == []
            pictify_tasks.track_batch(revoked_batch, workflow_id="wf-1", app=app)
            pictify_tasks.track_batch(other_batch, workflow_id="wf-2", app=app)
            assert len(emulator.cancel_requests(revoked_batch)) == 1
            assert emulator.batch(revoked_batch)["status"] == "cancelled"
            assert emulator.cancel_requests(other_batch) == []
        finally:
            pictify_tasks.uninstall(app)
            app.close()


# -- revoke_workflow --------------------------------------------------------------------------


@pytest.fixture
def revokes(app: Celery) -> list[tuple[Any, dict[str, Any]]]:
    calls: list[tuple[Any, dict[str, Any]]] = []
    app.control.revoke = lambda task_id, **options: calls.append((task_id, options))
    return calls


def test_revoke_workflow_revokes_the_tree_at_once_and_cancels_its_batches(
    app: Celery, revokes: list[tuple[Any, dict[str, Any]]], enqueued: list[list[str]]
) -> None:
    store = runtime_for(app).store
    store.link_batch("batch-head", links({"a"}, {"a"}), TTL)
    store.link_batch("batch-member", links({"m1"}, {"m1"}), TTL)
    store.link_batch("batch-done", links({"b"}), TTL)
    store.finish_batch("batch-done", TTL)
    store.link_batch("batch-elsewhere", links({"zzz"}), TTL)
    tail = AsyncResult(
        "c",
        parent=GroupResult("g", [AsyncResult("m1", app=app)], parent=AsyncResult("a", app=app)),
        app=app,
    )
    batches = pictify_tasks.revoke_workflow(tail, terminate=True, signal="SIGKILL", app=app)
    assert sorted(batches) == ["batch-head", "batch-member"]
    assert len(revokes) == 1
    ids, options = revokes[0]
    assert sorted(ids) == ["a", "c", "g", "m1"]
    assert options == {"terminate": True, "signal": "SIGKILL"}
    assert sorted(b for call in enqueued for b in call) == ["batch-head", "batch-member"]
    # and the ids are remembered: a batch linked under one of them later is reported
    assert store.link_batch("batch-late", links({"c"}), TTL) == ["c"]


def test_revoke_workflow_defaults_and_the_results_app(
    app: Celery, revokes: list[tuple[Any, dict[str, Any]]], enqueued: list[list[str]]
) -> None:
    runtime_for(app).store.link_batch("batch-1", links({"b"}), TTL)
    tail = AsyncResult("b", parent=AsyncResult("a", app=app), app=app)
    assert pictify_tasks.revoke_workflow(tail) == ["batch-1"]
    [(ids, options)] = revokes
    assert sorted(ids) == ["a", "b"]
    assert options == {"terminate": False}
    assert enqueued == [["batch-1"]]


def test_revoke_workflow_with_nothing_linked(
    app: Celery, revokes: list[tuple[Any, dict[str, Any]]], enqueued: list[list[str]]
) -> None:
    assert (
        pictify_tasks.revoke_workflow(
            GroupResult("g", [AsyncResult("m", app=app)], app=app), app=app
        )
        == []
    )
    assert [sorted(ids) for ids, _ in revokes] == [["g", "m"]]
    assert enqueued == []


def test_a_batch_that_is_gone_is_finished_and_never_sent_a_cancel() -> None:
    with PictifyEmulator(items_per_second=0) as emulator:
        app = eager_app(emulator)
        try:
            pictify_tasks.track_batch("batch_gone", workflow_id="wf-gone", app=app)
            with pytest.raises(BatchNotFoundError):
                app.tasks["pictify.wait_for_batch"].delay("batch_gone").get()
            assert pictify_tasks.cancel_workflow("wf-gone", app=app) == []
            assert emulator.cancel_requests() == []
        finally:
            pictify_tasks.uninstall(app)
