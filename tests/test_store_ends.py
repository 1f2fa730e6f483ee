"""The webhook half of the store, the same on every store: in-process, fakeredis, real Redis."""

from __future__ import annotations

import dataclasses

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pictify_tasks.revoke.links import BatchLinks
from pictify_tasks.store import OutcomeRecord, RedisStore, StateStore, StateStoreError
from pictify_tasks.store.ends import BatchEnd
from pictify_tasks.store.records import StartMade, StartRequest, WantedCancel
from pictify_tasks.testing.redis_server import free_port

END = BatchEnd("b1", "completed", 3, 3, 0)
TTL = 3600
ASKED = 1_700_000_000.0


def hear(store: StateStore, delivery_id: str = "dlv-1", end: BatchEnd = END) -> bool:
    return store.hear_batch_end(end, delivery_id, ttl=TTL, outcome_ttl=TTL)


def test_a_delivery_is_heard_once_per_delivery_id(store: StateStore) -> None:
    assert hear(store) is True
    assert hear(store) is False  # the same delivery again: a repeat
    assert hear(store, "dlv-2") is True  # another delivery of the same end


def test_a_heard_end_answers_a_later_cancel_without_a_lease(store: StateStore) -> None:
    hear(store)
    begin = store.begin_cancel("b1", "task-a", 30, ASKED)
    assert not begin.acquired
    assert begin.outcome == OutcomeRecord(
        "b1",
        "completed",
        "already_finished",
        0,
        "the batch had ended completed (told by Pictify's batch.completed webhook)",
    )


def test_the_first_heard_end_is_kept(store: StateStore) -> None:
    hear(store)
    hear(store, "dlv-2", dataclasses.replace(END, status="failed"))
    assert store.wait_turn("b1", "task-w", TTL).end == END
    assert store.cancel_state("b1").outcome is not None
    assert store.cancel_state("b1").outcome.status == "completed"  # type: ignore[union-attr]


def test_a_cancel_holding_the_lease_records_what_it_did(store: StateStore) -> None:
    assert store.begin_cancel("b1", "task-a", 30, ASKED).acquired
    hear(store, end=dataclasses.replace(END, status="cancelled"))
    assert store.cancel_state("b1").outcome is None  # the cancel in flight will say
    did = OutcomeRecord("b1", "cancelled", "cancelled", 1, "Batch cancelled")
    assert store.finish_cancel("task-a", did, TTL, ()) == did


def test_a_heard_end_is_no_longer_a_wanted_cancel(store: StateStore) -> None:
    store.want_cancels([WantedCancel("b1", ASKED)], TTL)
    hear(store)
    assert store.take_stale_wanted(before=ASKED * 2, now=ASKED * 2, limit=10) == []


def test_waiters_register_and_are_taken_once(store: StateStore) -> None:
    assert store.wait_turn("b1", "task-w", TTL, message='{"w": 1}') == store.wait_turn(
        "b1", "task-v", TTL, message='{"v": 1}'
    )
    store.wait_turn("b1", "task-v", TTL)  # a run that polls is no waiter meanwhile
    assert store.take_waiters("b1") == ['{"w": 1}']
    assert store.take_waiters("b1") == []


def test_a_waiter_registering_after_the_end_gets_it_and_claims_once(store: StateStore) -> None:
    hear(store)
    first = store.wait_turn("b1", "task-w", TTL, message="{}")
    assert (first.end, first.mine) == (END, True)
    assert store.take_waiters("b1") == []  # it got the end instead of waiting
    again = store.wait_turn("b1", "task-w", TTL)  # the same task's other run
    assert (again.end, again.mine) == (END, False)
    other = store.wait_turn("b1", "task-x", TTL)  # another task waiting for the same batch
    assert other.mine is True


def test_a_polled_end_claims_the_wait_without_a_delivery(store: StateStore) -> None:
    polled = dataclasses.replace(END, completed_items=2, failed_items=1, status="partial")
    first = store.wait_turn("b1", "task-w", TTL, polled=polled)
    assert (first.end, first.mine) == (polled, True)
    assert store.wait_turn("b1", "task-w", TTL, polled=polled).mine is False
    assert store.wait_turn("b1", "task-w", TTL).end is None  # a poll tells no other waiter


def test_whether_a_batch_was_started_with_a_webhook_is_kept(store: StateStore) -> None:
    links = BatchLinks(frozenset({"wf"}), frozenset(), root_id="wf")
    for start_id, batch_id, webhook in (("s1", "b1", True), ("s2", "b2", False)):
        store.begin_start(StartRequest(start_id, "tpl", {}, "key"), links, TTL)
        store.finish_start(StartMade(start_id, batch_id, webhook=webhook), links, TTL)
    assert store.wait_turn("b1", "task-w", TTL).webhook is True
    assert store.wait_turn("b2", "task-w", TTL).webhook is False
    assert store.wait_turn("b3", "task-w", TTL).webhook is None


def test_a_redis_that_does_not_answer_is_a_transient_store_error() -> None:
    """The webhook half maps Redis failures like the ledger: whoever called retries."""
    client = redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    store = RedisStore(client, prefix="nobody")
    calls = [
        lambda: hear(store),
        lambda: store.wait_turn("b1", "waiter-1", TTL, message="{}"),
        lambda: store.take_waiters("b1"),
    ]
    for call in calls:
        with pytest.raises(StateStoreError):
            call()
    client.close()


def test_a_waiters_turn_notes_the_progress_its_poll_saw(store: StateStore) -> None:
    store.wait_turn("b1", "task-w", TTL, message="{}", progress=(3, 10))
    begin = store.begin_cancel("b1", "owner", 30, ASKED)
    assert begin.acquired and begin.progress == (3, 10)
    store.wait_turn("b2", "task-w", TTL, message="{}")  # no progress given: none noted
    assert store.begin_cancel("b2", "owner", 30, ASKED).progress is None
