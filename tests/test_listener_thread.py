"""The listener thread: catch-up from the worker's own revoked ids and stamps, and failures
kept in."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Callable, NamedTuple

import pytest
from celery import Celery
from celery.worker import state

from pictify_tasks.revoke.backlog import Backlog
from pictify_tasks.revoke.links import BatchLinks, Scope, stamp_link_id
from pictify_tasks.revoke.listener import _ListenerThread
from pictify_tasks.store import MemoryStore, StateStoreError
from pictify_tasks.store.base import RevokedWork
from tests.fakes import RecordingPublisher, memory_fanout


class Heard(NamedTuple):
    ids: list[str]
    scope: Scope | None
    remember: bool
    reason: str | None


def listener(
    on_ids: Callable[[list[str]], object], calls: list[Heard] | None = None
) -> _ListenerThread:
    """A listener thread (not started) whose handler records the ids and says "handled"."""

    def handled(
        ids: list[str], scope: Scope | None = None, remember: bool = True, reason: str | None = None
    ) -> bool:
        on_ids(ids)
        if calls is not None:
            calls.append(Heard(ids, scope, remember, reason))
        return True

    return _ListenerThread(Celery("catch-up", set_as_current=False), "node", handled)


@pytest.fixture
def revoked_stamps() -> Iterator[dict[str, object]]:
    """The worker's revoked stamps, emptied again after the test."""
    saved = dict(state.revoked_stamps)
    state.revoked_stamps.clear()
    yield state.revoked_stamps
    state.revoked_stamps.clear()
    state.revoked_stamps.update(saved)


def revoke_message(*task_ids: str) -> dict[str, object]:
    return {"method": "revoke", "arguments": {"task_id": list(task_ids)}}


def test_catch_up_handles_the_workers_revoked_ids_once() -> None:
    missed = [f"missed-{uuid.uuid4().hex}" for _ in range(3)]
    heard: list[list[str]] = []
    thread = listener(heard.append)
    for task_id in missed:
        state.revoked.add(task_id)
    try:
        thread._catch_up()
        assert [i for ids in heard for i in ids if i in missed] == missed
        count = len(heard)
        thread._catch_up()  # nothing new: nothing handled twice
        assert len(heard) == count
    finally:
        for task_id in missed:
            state.revoked.discard(task_id)


def test_catch_up_handles_an_id_in_task_scope_without_remembering_it() -> None:
    """The worker's state does not say how an id was revoked (an expiry is there too)."""
    task_id = f"missed-{uuid.uuid4().hex}"
    calls: list[Heard] = []
    thread = listener(lambda ids: None, calls)
    state.revoked.add(task_id)
    try:
        thread._catch_up()
    finally:
        state.revoked.discard(task_id)
    assert Heard([task_id], Scope.TASK, False, f"catch-up: {task_id}") in calls


def test_catch_up_with_a_real_fanout_cancels_only_the_tasks_own_batches_and_forgets_it() -> None:
    store, publisher = MemoryStore(), RecordingPublisher()
    task_id = f"missed-{uuid.uuid4().hex}"
    # "own" was started by the task; "child" only belongs to its workflow
    store.link_batch("own", BatchLinks(frozenset({task_id}), frozenset({task_id})), 3600)
    store.link_batch("child", BatchLinks(frozenset({task_id}), frozenset()), 3600)
    thread = _ListenerThread(
        Celery("catch-up", set_as_current=False),
        "node",
        memory_fanout(store, publisher).handle_revoke,
    )
    state.revoked.add(task_id)
    try:
        thread._catch_up()
    finally:
        state.revoked.discard(task_id)
    assert publisher.calls == [["own"]]
    assert publisher.wanted[0].reason == f"catch-up: {task_id}"
    later = BatchLinks(frozenset({task_id}), frozenset({task_id}))
    assert store.link_batch("later", later, 3600) == []  # not remembered as revoked


def test_catch_up_handles_the_workers_revoked_stamps(revoked_stamps: dict[str, object]) -> None:
    revoked_stamps.update({"k": ["v1", "v2"], "one": "x"})
    calls: list[Heard] = []
    thread = listener(lambda ids: None, calls)
    thread._catch_up()
    stamped = [i for c in calls for i in c.ids if i.startswith("stamp:")]
    expected = [("k", "v1"), ("k", "v2"), ("one", "x")]
    assert stamped == [stamp_link_id(name, value) for name, value in expected]
    assert all((c.scope, c.remember) == (Scope.TASK, False) for c in calls)
    calls.clear()
    thread._catch_up()  # nothing new: nothing handled twice
    assert [i for c in calls for i in c.ids if i.startswith("stamp:")] == []


def test_a_stamp_heard_on_the_wire_is_not_handled_again_by_catch_up(
    revoked_stamps: dict[str, object],
) -> None:
    heard: list[list[str]] = []
    thread = listener(heard.append)
    thread._on_message(
        {"method": "revoke_by_stamped_headers", "arguments": {"headers": {"k": "v"}}}, None
    )
    revoked_stamps["k"] = ["v"]
    thread._catch_up()
    assert [ids for ids in heard if stamp_link_id("k", "v") in ids] == [[stamp_link_id("k", "v")]]


def test_ids_heard_on_the_wire_are_not_handled_again_by_catch_up() -> None:
    heard: list[list[str]] = []
    thread = listener(heard.append)
    task_id = f"heard-{uuid.uuid4().hex}"
    thread._on_message(revoke_message(task_id), None)
    state.revoked.add(task_id)
    try:
        thread._catch_up()
        assert heard == [[task_id]]
    finally:
        state.revoked.discard(task_id)


def test_a_stamped_revoke_hands_over_the_stamps_link_ids() -> None:
    heard: list[list[str]] = []
    listener(heard.append)._on_message(
        {"method": "revoke_by_stamped_headers", "arguments": {"headers": {"k": ["v1", "v2"]}}},
        None,
    )
    assert heard == [[stamp_link_id("k", "v1"), stamp_link_id("k", "v2")]]


def test_a_failing_handler_or_a_junk_message_is_logged_and_the_thread_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    heard: list[list[str]] = []

    def handler(ids: list[str]) -> None:
        if "x" in ids:
            raise RuntimeError("store down")
        heard.append(ids)

    thread = listener(handler)
    with caplog.at_level(logging.ERROR, logger="pictify_tasks.listener"):
        thread._on_message(revoke_message("x"), None)
        thread._on_message(object(), None)  # not a control message: ignored, not an error
        thread._on_message(revoke_message("y"), None)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "failed" in errors[0].getMessage()
    assert errors[0].exc_info is not None and isinstance(errors[0].exc_info[1], RuntimeError)
    assert heard == [["y"]]  # the next revoke is still handled


def test_a_revoke_kept_for_later_is_not_handed_over_again_by_the_catch_up() -> None:
    """The fan-out keeps it while the store is down and does it once: one store round trip.

    Broker and store are often one Redis: when it comes back the listener
    reconnects, and its catch-up must not queue the kept revoke a second time.
    """
    up, asked = threading.Event(), []

    class DownStore(MemoryStore):
        def revoke_ids(self, ids: list[str], scope: Scope, ttl: int | None) -> RevokedWork:
            if not up.is_set():
                raise StateStoreError("state store: ConnectionError: refused")
            asked.append(list(ids))
            return super().revoke_ids(ids, scope, ttl)

    fanout = memory_fanout(DownStore(), RecordingPublisher())
    fanout.backlog = Backlog(first_delay=300, max_delay=300)  # only drain() tries again
    thread = _ListenerThread(Celery("catch-up", set_as_current=False), "node", fanout.handle_revoke)
    task_id = f"kept-{uuid.uuid4().hex}"
    thread._on_message(revoke_message(task_id), None)  # the store is down: kept
    state.revoked.add(task_id)
    try:
        thread._catch_up()  # the listener reconnected
    finally:
        state.revoked.discard(task_id)
    up.set()
    fanout.backlog.drain()
    assert [ids for ids in asked if task_id in ids] == [[task_id]]


def test_catch_up_looks_the_workers_revoked_ids_up_in_chunks_not_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker may know tens of thousands of revoked ids: one store round trip per chunk."""
    monkeypatch.setattr("pictify_tasks.revoke.listener.CATCH_UP_CHUNK", 3)
    asked: list[list[str]] = []

    class CountingStore(MemoryStore):
        def revoke_ids(self, ids: list[str], scope: Scope, ttl: int | None) -> RevokedWork:
            asked.append(list(ids))
            return super().revoke_ids(ids, scope, ttl)

    store, publisher = CountingStore(), RecordingPublisher()
    missed = [f"missed-{uuid.uuid4().hex}" for _ in range(5)]
    for task_id in missed:
        store.link_batch(f"batch-{task_id}", BatchLinks(frozenset(), frozenset({task_id})), 3600)
    fanout = memory_fanout(store, publisher)
    thread = _ListenerThread(Celery("catch-up", set_as_current=False), "node", fanout.handle_revoke)
    for task_id in missed:
        state.revoked.add(task_id)
    try:
        thread._catch_up()
    finally:
        for task_id in missed:
            state.revoked.discard(task_id)
    ours = [[i for i in ids if i in missed] for ids in asked]
    assert [ids for ids in ours if ids] == [missed[:3], missed[3:]]
    published = sorted(b for call in publisher.calls for b in call)
    assert published == sorted(f"batch-{i}" for i in missed)
    assert publisher.wanted[0].reason == f"catch-up: {missed[0]} and 2 more"


def test_the_listener_remembers_as_many_handled_ids_as_celery_keeps_revoked() -> None:
    """Fewer, and every reconnect's catch-up hands the worker's oldest revoked ids over again."""
    from celery.worker import state

    from pictify_tasks.revoke import listener

    assert listener._SEEN_LIMIT >= state.REVOKES_MAX
