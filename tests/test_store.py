"""The ledger's semantics, the same on every store: in-process, fakeredis and real Redis."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import redis

from pictify_tasks.store import FailureRecord, OutcomeRecord, RedisStore, StateStore

OUTCOME = OutcomeRecord("b1", "cancelled", "cancelled", 1, "Batch cancelled")


def failure(
    error: str = "ServerError", *, final: bool = False, batch_id: str = "b1"
) -> FailureRecord:
    return FailureRecord(batch_id, error, f"{error} happened", 503, 1, final, 1_700_000_000.0)


def test_first_caller_takes_the_lease_others_wait(store: StateStore) -> None:
    first = store.begin_cancel("b1", "task-a", 30)
    assert first.acquired and first.attempt == 1 and first.outcome is None
    other = store.begin_cancel("b1", "task-b", 30)
    assert not other.acquired and other.outcome is None
    assert 0 < other.lease_remaining <= 30


def test_the_owner_renews_its_lease_and_counts_attempts(store: StateStore) -> None:
    assert store.begin_cancel("b1", "task-a", 30).attempt == 1
    assert store.begin_cancel("b1", "task-a", 30).attempt == 2
    assert store.begin_cancel("b1", "task-a", 30).attempt == 3


def test_an_outcome_is_recorded_once_and_returned_to_everyone(store: StateStore) -> None:
    store.begin_cancel("b1", "task-a", 30)
    assert store.finish_cancel("task-a", OUTCOME, 3600) == OUTCOME
    later = dataclasses.replace(OUTCOME, outcome="already_finished")
    assert store.finish_cancel("task-b", later, 3600) == OUTCOME
    assert store.cancel_state("b1").outcome == OUTCOME
    begin = store.begin_cancel("b1", "task-c", 30)
    assert begin.outcome == OUTCOME and not begin.acquired


def test_a_retrying_owner_keeps_its_lease(store: StateStore) -> None:
    store.begin_cancel("b1", "task-a", 30)
    store.fail_cancel("task-a", failure(), 3600, 60)
    assert not store.begin_cancel("b1", "task-b", 30).acquired
    assert store.begin_cancel("b1", "task-a", 30).attempt == 2
    assert store.cancel_state("b1").failure == failure()


def test_a_final_failure_is_recorded_but_not_final(store: StateStore) -> None:
    store.begin_cancel("b1", "task-a", 30)
    store.begin_cancel("b1", "task-a", 30)
    store.fail_cancel("task-a", failure("AuthenticationError", final=True), 3600, 0)
    state = store.cancel_state("b1")
    assert state.outcome is None
    assert state.failure == failure("AuthenticationError", final=True)
    again = store.begin_cancel("b1", "task-b", 30)
    assert again.acquired and again.attempt == 1
    store.finish_cancel("task-b", OUTCOME, 3600)
    assert store.cancel_state("b1").failure is None


def test_a_stranger_cannot_release_anothers_lease(store: StateStore) -> None:
    store.begin_cancel("b1", "task-a", 30)
    store.fail_cancel("task-b", failure(), 3600, 0)
    assert not store.begin_cancel("b1", "task-b", 30).acquired


def test_an_expired_lease_can_be_taken_over(store: StateStore) -> None:
    store.begin_cancel("b1", "task-a", 0.05)
    deadline = threading.Event()
    for _ in range(100):
        begin = store.begin_cancel("b1", "task-b", 30)
        if begin.acquired:
            break
        deadline.wait(0.01)
    assert begin.acquired and begin.attempt == 1


def test_batches_are_independent(store: StateStore) -> None:
    store.begin_cancel("b1", "task-a", 30)
    assert store.begin_cancel("b2", "task-b", 30).acquired


# fakeredis serialises every command anyway: the race is only worth running for real.
@pytest.mark.parametrize("store", ["memory", "redis"], indirect=True)
def test_only_one_of_many_concurrent_callers_gets_the_lease(store: StateStore) -> None:
    winners: list[str] = []
    barrier = threading.Barrier(20)

    def contend(owner: str) -> None:
        barrier.wait()
        if store.begin_cancel("b-race", owner, 30).acquired:
            winners.append(owner)

    threads = [threading.Thread(target=contend, args=(f"t{i}",)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1


def test_redis_keys_carry_one_hash_tag_per_batch_and_expire(
    redis_url: str, key_prefix: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    store = RedisStore(client, prefix=key_prefix)
    store.begin_cancel("b:1", "task-a", 30)
    store.fail_cancel("task-a", failure(batch_id="b:1"), 3600, 10)
    store.finish_cancel("task-a", dataclasses.replace(OUTCOME, batch_id="b:1"), 3600)
    keys = sorted(k.decode() for k in client.scan_iter(f"{key_prefix}:*"))
    assert keys == [f"{key_prefix}:{{b:b:1}}:outcome"]
    assert 0 < client.ttl(keys[0]) <= 3600
    client.delete(*keys)
    client.close()
