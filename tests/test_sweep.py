"""The sweep alone: what it re-sends, and that one sweeper works at a time."""

from __future__ import annotations

import time

from celery import Celery

from pictify_tasks._runtime import runtime_for
from pictify_tasks.revoke.links import BatchLinks
from pictify_tasks.store import MemoryStore, StateStoreError
from pictify_tasks.store.records import WantedCancel
from pictify_tasks.sweep import (
    DEADLINE_TICK,
    _SweepThread,
    cancel_due_deadlines,
    sweep_once,
    sweep_ticks,
)
from tests.fakes import RecordingPublisher, memory_app

#: The links of a batch a test gives a deadline (no test here revokes them).
LINKS = BatchLinks(frozenset({"wf-deadline"}), frozenset())


def app_with_publisher(interval: float = 30) -> tuple[Celery, RecordingPublisher]:
    app = memory_app("sweep-test")
    app.conf.pictify_sweep_interval = interval
    publisher = RecordingPublisher()
    runtime_for(app).fanout.publisher = publisher
    return app, publisher


def store_clock(app: Celery) -> list[float]:
    """Put the app's state on a store whose clock (its locks' expiry) the test moves."""
    clock = [0.0]
    runtime_for(app)._store = MemoryStore(clock=lambda: clock[0])
    return clock


def test_a_wanted_cancel_with_no_task_on_it_is_sent_again_with_its_first_ask() -> None:
    app, publisher = app_with_publisher()
    clock = store_clock(app)
    runtime = runtime_for(app)
    asked = time.time() - 3600
    runtime.store.want_cancels([WantedCancel("b1", asked, "revoked: wf")], 7200)
    later = time.time() + 60  # one interval on
    assert sweep_once(runtime, "worker-a", now=later) == ["b1"]
    assert publisher.wanted == [WantedCancel("b1", asked, "revoked: wf")]
    assert publisher.recorded == []  # published only: its wanted record is there already
    clock[0] = 30  # the lock (27 s) has ended: what follows is the wanted index's doing
    # not again within the next interval, but once that is over, again
    assert sweep_once(runtime, "worker-a", now=later + 10) == []
    clock[0] = 60
    assert sweep_once(runtime, "worker-a", now=later + 40) == ["b1"]
    # a second sweeper gets nothing while the first holds the lock, though b1 is due again
    assert sweep_once(runtime, "worker-b", now=later + 80) == []
    clock[0] = 90
    assert sweep_once(runtime, "worker-b", now=later + 80) == ["b1"]
    app.close()


def test_a_batch_past_its_max_runtime_is_cancelled_once() -> None:
    app, publisher = app_with_publisher()
    clock = store_clock(app)
    runtime = runtime_for(app)
    now = time.time()
    runtime.store.link_batch("late", LINKS, 7200, deadline=now - 1)
    runtime.store.link_batch("early", LINKS, 7200, deadline=now + 3600)
    assert cancel_due_deadlines(runtime, "worker-a", now=now) == ["late"]
    assert publisher.calls == [["late"]]
    assert publisher.recorded == []  # recorded as wanted by the take itself: published only
    assert publisher.wanted[0].reason == "max_runtime: late ran past its deadline"
    clock[0] = DEADLINE_TICK  # the deadlines' lock has ended
    assert cancel_due_deadlines(runtime, "worker-a", now=now + 1) == []
    assert sweep_once(runtime, "worker-a", now=now + 1) == []  # wanted since now: not stale
    assert publisher.calls == [["late"]]  # its deadline was taken: not cancelled again
    app.close()


def test_the_publisher_records_a_new_cancel_and_publishes_a_re_send_without_recording() -> None:
    app = memory_app("publisher-test")
    runtime = runtime_for(app)
    publisher = runtime.fanout.publisher
    now = time.time()
    publisher.publish([WantedCancel("re-sent", now, "")])
    publisher.cancels([WantedCancel("new", now, "")])
    wanted = runtime.store.take_stale_wanted(now + 3600, now + 3600, 10)
    assert [w.batch_id for w in wanted] == ["new"]
    app.close()


def test_a_fresh_cancel_is_left_alone() -> None:
    app, publisher = app_with_publisher()
    runtime = runtime_for(app)
    runtime.store.want_cancels([WantedCancel("b1", time.time(), "")], 7200)
    assert sweep_once(runtime, "worker-a") == []
    assert publisher.calls == []
    app.close()


def test_the_thread_ticks_for_deadlines_and_keeps_the_sweeps_interval() -> None:
    assert sweep_ticks(60) == (5.0, 12)  # a full sweep every 12th tick
    assert sweep_ticks(7) == (3.5, 2)
    assert sweep_ticks(1) == (1.0, 1)
    assert all(sweep_ticks(n)[0] <= DEADLINE_TICK for n in (0.5, 5, 5.01, 59, 3600))


def test_deadlines_have_a_lock_of_their_own() -> None:
    app, publisher = app_with_publisher()
    clock = store_clock(app)
    runtime = runtime_for(app)
    now = time.time()
    runtime.store.link_batch("late", LINKS, 7200, deadline=now - 1)
    assert cancel_due_deadlines(runtime, "worker-a", now=now) == ["late"]
    runtime.store.link_batch("later", LINKS, 7200, deadline=now - 1)
    assert cancel_due_deadlines(runtime, "worker-b", now=now) == []  # a holds the lock
    assert runtime.store.claim_sweep("worker-b", 30)  # the sweep's own lock is free
    clock[0] = DEADLINE_TICK * 0.9  # the deadlines' lock lives 0.9 of a tick
    assert cancel_due_deadlines(runtime, "worker-b", now=now) == ["later"]
    assert publisher.calls == [["late"], ["later"]]
    app.close()


def test_a_passed_deadline_is_cancelled_within_a_tick_not_a_sweep_interval() -> None:
    app, publisher = app_with_publisher(interval=60)
    runtime = runtime_for(app)
    assert runtime.settings.sweep_interval == 60
    runtime.store.link_batch("late", LINKS, 7200, deadline=time.time() + 0.2)
    thread = _SweepThread(runtime, "worker-a", 60.0)
    thread.start()
    try:
        deadline = time.monotonic() + 3 * DEADLINE_TICK
        while publisher.calls != [["late"]] and time.monotonic() < deadline:
            time.sleep(0.05)  # a poll with a deadline: the thread publishes on its own clock
        assert publisher.calls == [["late"]]
    finally:
        thread.stopping.set()
        thread.join(10)
    app.close()


class _DeadlinesFail(MemoryStore):
    def take_due_deadlines(self, now: float, limit: int, wanted_ttl: int) -> list[WantedCancel]:
        raise StateStoreError("state store: a refused write")


def test_a_failing_deadlines_look_does_not_stop_the_sweep() -> None:
    app, publisher = app_with_publisher(interval=0.2)
    runtime = runtime_for(app)
    runtime._store = _DeadlinesFail()
    runtime.store.want_cancels([WantedCancel("lost", time.time(), "")], 7200)
    thread = _SweepThread(runtime, "worker-a", 0.2)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not publisher.calls and time.monotonic() < deadline:
            time.sleep(0.05)  # a poll with a deadline: the thread re-sends on its own clock
        assert publisher.calls[:1] == [["lost"]]
    finally:
        thread.stopping.set()
        thread.join(10)
    app.close()
