"""The fan-out alone: de-duplication, and work kept when the store or the broker fails."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Callable

import pytest

from pictify_tasks.revoke.backlog import Backlog
from pictify_tasks.revoke.links import BatchLinks, Scope
from pictify_tasks.store import MemoryStore, StateStoreError
from pictify_tasks.store.base import RevokedWork
from pictify_tasks.store.records import WantedCancel
from tests.fakes import RecordingPublisher, memory_fanout
from tests.workflows import eventually

WAIT = 10.0


class FlakyStore(MemoryStore):
    """A store whose ``revoke_ids`` fails until :attr:`up` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.up = threading.Event()
        self.failures = 0

    def revoke_ids(self, ids: list[str], scope: Scope, ttl: int | None) -> RevokedWork:
        if not self.up.is_set():
            self.failures += 1
            raise StateStoreError("state store: ConnectionError: refused")
        return super().revoke_ids(ids, scope, ttl)


def linked(store: MemoryStore, batch_id: str, workflow_id: str) -> None:
    store.link_batch(batch_id, BatchLinks(frozenset({workflow_id}), frozenset()), 3600)


def test_a_revoke_the_store_cannot_answer_is_kept_and_done_when_it_can() -> None:
    store, publisher = FlakyStore(), RecordingPublisher()
    linked(store, "batch-1", "wf-1")
    fan = memory_fanout(store, publisher)
    fan.backlog = Backlog(first_delay=0.01, max_delay=0.05)
    assert fan.handle_revoke(["wf-1"]) is False  # kept, not handled
    assert publisher.calls == []
    store.up.set()
    assert publisher.called.wait(WAIT), "the kept revoke was never done"
    assert publisher.calls == [["batch-1"]]
    assert publisher.wanted[0].reason == "revoked: wf-1"
    assert store.failures >= 1


class FlakyPublisher(RecordingPublisher):
    def __init__(self) -> None:
        super().__init__()
        self.up = threading.Event()

    def cancels(self, wanted: Sequence[WantedCancel]) -> None:
        if not self.up.is_set():
            raise ConnectionError("broker down")
        super().cancels(wanted)


def test_a_publish_the_broker_refuses_is_kept_and_sent_later() -> None:
    store, publisher = MemoryStore(), FlakyPublisher()
    linked(store, "batch-1", "wf-1")
    fan = memory_fanout(store, publisher)
    fan.backlog = Backlog(first_delay=0.01, max_delay=0.05)
    assert fan.cancel_ids(["wf-1"]) == ["batch-1"]
    publisher.up.set()
    assert publisher.called.wait(WAIT)
    assert publisher.calls == [["batch-1"]]


def test_the_same_batch_is_published_once_within_a_few_seconds() -> None:
    store, publisher = MemoryStore(), RecordingPublisher()
    fan = memory_fanout(store, publisher)
    fan.enqueue(["b1", "b2", "b1"])
    fan.enqueue(["b2", "b3"])
    assert publisher.calls == [["b1", "b2"], ["b3"]]


def test_a_full_backlog_drops_its_oldest_with_an_error(caplog: pytest.LogCaptureFixture) -> None:
    backlog = Backlog(max_items=2, first_delay=30, max_delay=30)
    try:
        # Hold the backlog's lock: its thread must not take items between two keeps.
        with backlog._cond:
            for n in range(3):
                backlog.keep(f"item {n}", lambda: None, keep_for=60)
            assert len(backlog) == 2
        assert "dropped item 0" in caplog.text
    finally:
        backlog.stop()


class Steps:
    """Actions that record their calls and fail until :attr:`up` is set."""

    def __init__(self) -> None:
        self.up = threading.Event()
        self.calls: list[str] = []

    def action(self, name: str, *, flaky: bool = False) -> Callable[[], None]:
        def run() -> None:
            self.calls.append(name)
            if flaky and not self.up.is_set():
                raise StateStoreError("state store: ConnectionError: refused")

        return run


def test_a_round_stops_at_the_first_failure_and_keeps_the_order() -> None:
    steps = Steps()
    backlog = Backlog(first_delay=0.01, max_delay=0.02)
    try:
        backlog.keep("a", steps.action("a", flaky=True), keep_for=60)
        backlog.keep("b", steps.action("b"), keep_for=60)
        assert eventually(lambda: steps.calls.count("a") >= 3)
        assert "b" not in steps.calls  # the store is still down: not asked for b
        steps.up.set()
        assert eventually(lambda: len(backlog) == 0)
        assert steps.calls[-2:] == ["a", "b"] and steps.calls.count("b") == 1
    finally:
        backlog.stop()


def test_an_item_past_its_deadline_is_dropped_with_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    steps, now = Steps(), [0.0]
    backlog = Backlog(first_delay=0.01, max_delay=0.02, clock=lambda: now[0])
    try:
        with caplog.at_level(logging.WARNING, logger="pictify_tasks.revoke"):
            backlog.keep("revoke of ['wf-1']", steps.action("a", flaky=True), keep_for=60)
            assert eventually(lambda: len(steps.calls) >= 2)
            assert len(backlog) == 1
            now[0] = 61.0
            assert eventually(lambda: len(backlog) == 0)
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert errors == [
            "pictify-tasks: revoke of ['wf-1'] dropped: still not done at its deadline "
            "(the state store or broker kept refusing it)"
        ]
    finally:
        backlog.stop()


def test_a_revoke_heard_while_others_wait_joins_them_untried_and_in_order() -> None:
    store, publisher = FlakyStore(), RecordingPublisher()
    linked(store, "batch-1", "wf-1")
    linked(store, "batch-2", "wf-2")
    fan = memory_fanout(store, publisher)
    fan.backlog = Backlog(first_delay=300, max_delay=300)  # only drain() tries again
    assert fan.handle_revoke(["wf-1"]) is False
    assert fan.handle_revoke(["wf-2"]) is False
    assert store.failures == 1  # the second was not sent to a store known to be down
    store.up.set()
    fan.backlog.drain()
    assert publisher.calls == [["batch-1"], ["batch-2"]]


def test_drain_tries_each_item_once_and_logs_each_lost_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    steps = Steps()
    backlog = Backlog(first_delay=300, max_delay=300)
    backlog.keep("a", steps.action("a", flaky=True), keep_for=60)
    backlog.keep("b", steps.action("b"), keep_for=60)
    with caplog.at_level(logging.ERROR, logger="pictify_tasks.revoke"):
        backlog.drain()
    assert steps.calls == ["a"]  # stopped at the first failure: the store is down
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        "pictify-tasks: a not done before the worker stopped: lost",
        "pictify-tasks: b not done before the worker stopped: lost",
    ]
    assert len(backlog) == 0


class CountingStore(MemoryStore):
    """A store that counts the ids each ``revoke_ids`` round trip is asked about."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[list[str]] = []

    def revoke_ids(self, ids: list[str], scope: Scope, ttl: int | None) -> RevokedWork:
        self.asked.append(list(ids))
        return super().revoke_ids(ids, scope, ttl)


def test_the_same_revoke_heard_twice_is_handled_once() -> None:
    """The task_revoked signal and the listener both hear one revoke."""
    store, publisher = CountingStore(), RecordingPublisher()
    linked(store, "batch-1", "wf-1")
    fan = memory_fanout(store, publisher)
    assert fan.handle_revoke(["wf-1"]) is True
    assert fan.handle_revoke(["wf-1"]) is True  # heard again: nothing to do
    assert fan.handle_revoke(["wf-1", "wf-2"]) is True  # only the new id is looked up
    assert store.asked == [["wf-1"], ["wf-2"]]
    assert publisher.calls == [["batch-1"]]


def test_a_catch_up_of_an_id_handled_already_asks_the_store_nothing() -> None:
    """The narrowest reading (task scope, not remembered) is covered by a remembered one.

    The signal handled a revoke while the listener was reconnecting; its
    catch-up then hands the same id over in that reading.
    """
    store = CountingStore()
    fan = memory_fanout(store, RecordingPublisher())
    fan.handle_revoke(["wf-1"])  # the signal
    fan.handle_revoke(["wf-1", "wf-3"], Scope.TASK, False, "catch-up: wf-1 and 1 more")
    fan.handle_revoke(["wf-4"], Scope.TASK, False, "catch-up: wf-4")
    fan.handle_revoke(["wf-4"])  # a wider reading than the one handled: looked up
    fan.handle_revoke(["wf-5"], Scope.WORKFLOW, False, "failed: wf-5")
    fan.handle_revoke(["wf-5"], Scope.TASK, False)  # not remembered: later links not covered
    assert store.asked == [["wf-1"], ["wf-3"], ["wf-4"], ["wf-4"], ["wf-5"], ["wf-5"]]


def test_the_memo_of_handled_revokes_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pictify_tasks.revoke.fanout.HANDLED_MEMO", 2)
    store = CountingStore()
    fan = memory_fanout(store, RecordingPublisher())
    for task_id in ["a", "b", "c", "a"]:  # "a" was pushed out by "c": looked up again
        fan.handle_revoke([task_id])
    assert store.asked == [["a"], ["b"], ["c"], ["a"]]


def test_in_background_passes_keyword_arguments_through() -> None:
    fan = memory_fanout(MemoryStore(), RecordingPublisher())
    got: list[tuple[object, ...]] = []
    done = threading.Event()

    def work(*args: object, **kwargs: object) -> None:
        got.append((args, kwargs))
        done.set()

    fan.in_background(work, 1, reason="r")
    assert done.wait(WAIT)
    assert got == [((1,), {"reason": "r"})]


def test_at_drain_a_revoke_still_on_the_background_thread_is_tried_and_logged_if_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A revoke a signal handed over just before shutdown is not lost silently."""
    store, publisher = FlakyStore(), RecordingPublisher()  # the store stays down
    fan = memory_fanout(store, publisher)
    fan.backlog = Backlog(first_delay=300, max_delay=300)
    gate = threading.Event()
    fan.in_background(gate.wait)  # the background thread is busy ...
    fan.in_background(fan.handle_revoke, ["wf-1"])  # ... with this revoke behind it
    drainer = threading.Thread(target=fan.drain)
    with caplog.at_level(logging.ERROR, logger="pictify_tasks.revoke"):
        drainer.start()
        gate.set()
        drainer.join(WAIT)
    assert not drainer.is_alive()
    assert store.failures == 2  # tried on the background thread, then once more by the drain
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["pictify-tasks: revoke of ['wf-1'] not done before the worker stopped: lost"]


def test_work_kept_after_the_drain_is_logged_as_lost_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backlog = Backlog(first_delay=300, max_delay=300)
    backlog.drain()
    with caplog.at_level(logging.ERROR, logger="pictify_tasks.revoke"):
        backlog.keep("revoke of ['wf-1']", lambda: None, keep_for=60)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["pictify-tasks: revoke of ['wf-1'] not done before the worker stopped: lost"]
    assert len(backlog) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_neither_does_nor_waits_on_its_parents_kept_work() -> None:
    """A prefork pool process drains its backlog at its exit (``worker_process_shutdown``).

    It is forked while its parent's backlog holds work and, maybe, its
    thread is mid-round: the child must not do the parent's items, nor wait
    forever on the round lock that thread held, and its own kept work must
    still be done.
    """
    steps = Steps()
    backlog = Backlog(first_delay=0.05, max_delay=0.2)
    backlog.keep("parent's", steps.action("parent's", flaky=True), keep_for=60)
    read, write = os.pipe()
    mid_round, fork_done = threading.Event(), threading.Event()

    def hold_the_round_lock() -> None:  # as the parent's backlog thread does mid-round
        with backlog._round_lock:
            mid_round.set()
            fork_done.wait(WAIT)

    holder = threading.Thread(target=hold_the_round_lock)
    holder.start()
    assert mid_round.wait(WAIT)
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        try:
            steps.calls.clear()
            inherited = len(backlog)  # what its drain at exit would do and log as lost
            done = threading.Event()
            backlog.keep("child's", done.set, keep_for=60)
            own_done = done.wait(5)
            drainer = threading.Thread(target=backlog.drain, daemon=True)
            drainer.start()
            drainer.join(5)
            report = f"{inherited} {own_done} {drainer.is_alive()} {steps.calls} {len(backlog)}"
            os.write(write, report.encode())
        finally:
            os._exit(0)
    fork_done.set()
    holder.join(WAIT)
    os.close(write)
    try:
        with os.fdopen(read, "rb") as pipe:
            report = pipe.read().decode()
        os.waitpid(pid, 0)
        # nothing inherited, own work done, drain returned, the parent's item not run
        assert report == "0 True False [] 0"
    finally:
        backlog.stop()
