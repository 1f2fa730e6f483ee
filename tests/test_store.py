"""The ledger's semantics, the same on every store: in process, fakeredis, Redis, a cluster."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest
import redis

from pictify_tasks.revoke.links import BatchLinks, Scope
from pictify_tasks.store import (
    FailureRecord,
    OutcomeRecord,
    RedisStore,
    StateStore,
    StateStoreError,
)
from pictify_tasks.store.records import StartMade, StartRequest, WantedCancel
from tests.spare_redis import spare_redis

#: The links of a batch a test gives a deadline (no test here revokes them).
LINKS = BatchLinks(frozenset({"wf-deadline"}), frozenset())

ASKED = 1_700_000_000.0  # when the cancels in these tests were asked for
OUTCOME = OutcomeRecord("b1", "cancelled", "cancelled", 1, "Batch cancelled")


def failure(
    error: str = "ServerError", *, final: bool = False, batch_id: str = "b1"
) -> FailureRecord:
    return FailureRecord(batch_id, error, f"{error} happened", 503, 1, final, ASKED + 5)


def test_first_caller_takes_the_lease_others_wait(store: StateStore) -> None:
    first = store.begin_cancel("b1", "task-a", 30, ASKED)
    assert first.acquired and first.attempt == 1 and first.outcome is None
    other = store.begin_cancel("b1", "task-b", 30, ASKED)
    assert not other.acquired and other.outcome is None
    assert 0 < other.lease_remaining <= 30


def test_the_owner_renews_its_lease_and_failed_attempts_count(store: StateStore) -> None:
    assert store.begin_cancel("b1", "task-a", 30, ASKED).attempt == 1
    # holding the lease (waiting for a rate-limit token) is no attempt
    assert store.begin_cancel("b1", "task-a", 30, ASKED).attempt == 1
    store.fail_cancel("task-a", failure(), 3600, 30)
    assert store.begin_cancel("b1", "task-a", 30, ASKED).attempt == 2
    store.fail_cancel("task-a", failure(), 3600, 30)
    assert store.begin_cancel("b1", "task-a", 30, ASKED).attempt == 3


def test_the_owner_keeps_its_lease_over_a_long_wait_and_nobody_else_can(
    store: StateStore,
) -> None:
    store.begin_cancel("b1", "task-a", 5, ASKED)
    assert store.keep_lease("b1", "task-a", 60)  # waits a minute for a rate-limit token
    assert not store.keep_lease("b1", "task-b", 60)
    assert not store.keep_lease("b-unknown", "task-a", 60)
    other = store.begin_cancel("b1", "task-b", 30, ASKED)
    assert not other.acquired and 30 < other.lease_remaining <= 60


def test_an_outcome_is_recorded_once_and_returned_to_everyone(store: StateStore) -> None:
    store.begin_cancel("b1", "task-a", 30, ASKED)
    assert store.finish_cancel("task-a", OUTCOME, 3600, ()) == OUTCOME
    later = dataclasses.replace(OUTCOME, outcome="already_finished")
    assert store.finish_cancel("task-b", later, 3600, ()) == OUTCOME
    assert store.cancel_state("b1").outcome == OUTCOME
    begin = store.begin_cancel("b1", "task-c", 30, ASKED)
    assert begin.outcome == OUTCOME and not begin.acquired


def test_a_retrying_owner_keeps_its_lease(store: StateStore) -> None:
    store.begin_cancel("b1", "task-a", 30, ASKED)
    store.fail_cancel("task-a", failure(), 3600, 60)
    assert not store.begin_cancel("b1", "task-b", 30, ASKED).acquired
    assert store.begin_cancel("b1", "task-a", 30, ASKED).attempt == 2
    assert store.cancel_state("b1").failure == failure()


def test_a_final_failure_answers_earlier_asks_and_a_later_ask_starts_afresh(
    store: StateStore,
) -> None:
    store.begin_cancel("b1", "task-a", 30, ASKED)
    store.begin_cancel("b1", "task-a", 30, ASKED)
    final = failure("AuthenticationError", final=True)  # recorded at ASKED + 5
    store.fail_cancel("task-a", final, 3600, 0)
    state = store.cancel_state("b1")
    assert state.outcome is None and state.failure == final
    # A duplicate asked before the failure shares it, without an attempt of its own.
    duplicate = store.begin_cancel("b1", "task-b", 30, ASKED)
    assert duplicate.failure == final and not duplicate.acquired
    # A cancel asked after it is a new ask: a fresh lease and attempt count.
    again = store.begin_cancel("b1", "task-c", 30, ASKED + 60)
    assert again.acquired and again.attempt == 1 and again.failure is None
    store.finish_cancel("task-c", OUTCOME, 3600, ())
    assert store.cancel_state("b1").failure is None
    assert store.begin_cancel("b1", "task-d", 30, ASKED).outcome == OUTCOME


def test_after_an_unconfirmed_answer_every_attempt_wants_a_fresh_key(store: StateStore) -> None:
    """Until the outcome: a later 503 (or a final failure) does not bring the own key back."""
    assert not store.begin_cancel("b1", "task-a", 30, ASKED).fresh_keys
    store.fail_cancel("task-a", failure("CancelNotConfirmedError"), 3600, 30)
    assert store.begin_cancel("b1", "task-a", 30, ASKED).fresh_keys
    store.fail_cancel("task-a", failure(), 3600, 30)  # a 503: not unconfirmed
    assert store.begin_cancel("b1", "task-a", 30, ASKED).fresh_keys
    store.fail_cancel("task-a", failure(final=True), 3600, 0)
    # A later ask: the API still keeps the unconfirmed answer under the own key.
    assert store.begin_cancel("b1", "task-b", 30, ASKED + 60).fresh_keys
    store.finish_cancel("task-b", OUTCOME, 3600, ())
    store.fail_cancel("task-c", failure(), 3600, 0)  # a straggler after the outcome
    assert not store.begin_cancel("b1", "task-c", 30, ASKED).fresh_keys
    assert not store.begin_cancel("b2", "task-c", 30, ASKED).fresh_keys


def test_the_attempt_count_belongs_to_the_batch_not_the_task(store: StateStore) -> None:
    """A task taking over an expired lease goes on counting: duplicates never add attempts."""
    assert store.begin_cancel("b1", "task-a", 0.05, ASKED).attempt == 1
    store.fail_cancel("task-a", failure(), 3600, 0)  # gave the lease back (not final)
    assert store.begin_cancel("b1", "task-b", 30, ASKED).attempt == 2


def test_a_stranger_cannot_release_anothers_lease(store: StateStore) -> None:
    store.begin_cancel("b1", "task-a", 30, ASKED)
    store.fail_cancel("task-b", failure(), 3600, 0)
    assert not store.begin_cancel("b1", "task-b", 30, ASKED).acquired


def test_an_expired_lease_can_be_taken_over(store: StateStore) -> None:
    store.begin_cancel("b1", "task-a", 30, ASKED)
    store.fail_cancel("task-a", failure(), 3600, 0.05)  # will retry; the lease runs out
    deadline = threading.Event()
    for _ in range(100):
        begin = store.begin_cancel("b1", "task-b", 30, ASKED)
        if begin.acquired:
            break
        deadline.wait(0.01)
    assert begin.acquired and begin.attempt == 2  # the batch's count goes on


def test_batches_are_independent(store: StateStore) -> None:
    store.begin_cancel("b1", "task-a", 30, ASKED)
    assert store.begin_cancel("b2", "task-b", 30, ASKED).acquired


# fakeredis serialises every command anyway: the race is only worth running for real.
@pytest.mark.parametrize("store", ["memory", "redis"], indirect=True)
def test_only_one_of_many_concurrent_callers_gets_the_lease(store: StateStore) -> None:
    winners: list[str] = []
    barrier = threading.Barrier(20)

    def contend(owner: str) -> None:
        barrier.wait()
        if store.begin_cancel("b-race", owner, 30, ASKED).acquired:
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
    store.begin_cancel("b:1", "task-a", 30, ASKED)
    store.fail_cancel("task-a", failure(batch_id="b:1"), 3600, 10)
    store.finish_cancel("task-a", dataclasses.replace(OUTCOME, batch_id="b:1"), 3600, ())
    keys = sorted(k.decode() for k in client.scan_iter(f"{key_prefix}:*"))
    assert keys == [f"{key_prefix}:{{b:b:1}}:outcome"]
    assert 0 < client.ttl(keys[0]) <= 3600
    client.delete(*keys)
    client.close()


def test_a_server_that_forgot_the_scripts_gets_them_again(tmp_path: Path) -> None:
    """Outcomes and final failures go by script SHA in one pipeline; NOSCRIPT loads them."""
    with spare_redis(tmp_path) as server:
        client = redis.Redis.from_url(server.url)
        store = RedisStore(client, prefix="fresh")
        for batch_id, final in (("b1", False), ("b2", True)):
            client.script_flush()
            store.begin_cancel(batch_id, "task-a", 30, ASKED)
            client.script_flush()
            if final:
                store.fail_cancel("task-a", failure(final=True, batch_id=batch_id), 3600, 0)
                assert store.cancel_state(batch_id).failure == failure(
                    final=True, batch_id=batch_id
                )
            else:
                outcome = dataclasses.replace(OUTCOME, batch_id=batch_id)
                assert store.finish_cancel("task-a", outcome, 3600, ()) == outcome
        client.close()


# -- wanted cancels and the sweep ---------------------------------------------------------------


def wanted(batch_id: str, asked_at: float = ASKED, reason: str = "") -> WantedCancel:
    return WantedCancel(batch_id, asked_at, reason)


def test_wanted_cancels_are_stale_only_without_outcome_and_lease(store: StateStore) -> None:
    store.want_cancels([wanted("b1", reason="revoked: wf"), wanted("b2"), wanted("b3")], 3600)
    store.begin_cancel("b2", "task-b", 30, ASKED)  # a task is on it
    store.begin_cancel("b3", "task-c", 30, ASKED)
    store.finish_cancel("task-c", dataclasses.replace(OUTCOME, batch_id="b3"), 3600, ())
    later = time.time() + 120
    stale = store.take_stale_wanted(later - 60, later, 100)
    assert stale == [wanted("b1", reason="revoked: wf")]
    # taken: marked as sent now, so the next sweep leaves it for an interval
    assert store.take_stale_wanted(later - 60, later + 1, 100) == []
    assert store.take_stale_wanted(later + 61, later + 61, 100) == [
        wanted("b1", reason="revoked: wf")
    ]


def test_the_first_ask_is_kept_and_a_final_failure_ends_the_want(store: StateStore) -> None:
    store.want_cancels([wanted("b1", ASKED)], 3600)
    store.want_cancels([wanted("b1", ASKED + 30, "again")], 3600)
    later = time.time() + 120
    [item] = store.take_stale_wanted(later, later, 10)
    assert (item.asked_at, item.reason) == (ASKED, "again")
    store.begin_cancel("b1", "task-a", 30, ASKED)
    store.fail_cancel("task-a", failure(final=True), 3600, 0)
    assert store.take_stale_wanted(later + 600, later + 600, 10) == []


def test_a_freshly_wanted_cancel_is_not_stale(store: StateStore) -> None:
    store.want_cancels([wanted("b1")], 3600)
    assert store.take_stale_wanted(time.time() - 60, time.time(), 10) == []


def test_a_taken_deadline_is_a_wanted_cancel_until_its_task_is_published(
    store: StateStore,
) -> None:
    """A sweeper killed between taking a deadline and publishing its cancel loses nothing."""
    now = time.time()
    store.link_batch("late", LINKS, 3600, deadline=now - 1)
    store.link_batch("early", LINKS, 3600, deadline=now + 3600)
    [taken] = store.take_due_deadlines(now, 10, 3600)
    assert (taken.batch_id, taken.reason) == ("late", "max_runtime: late ran past its deadline")
    assert store.take_due_deadlines(now, 10, 3600) == []  # taken once
    assert store.take_stale_wanted(now - 60, now, 10) == []  # a fresh want, as if just sent
    # Nothing published it: an interval later the sweep finds it wanted, with no task on it.
    stale = store.take_stale_wanted(now + 1, now + 60, 10)
    assert [(w.batch_id, w.asked_at, w.reason) for w in stale] == [("late", now, taken.reason)]


@pytest.mark.parametrize("store", ["fakeredis", "redis", "cluster"], indirect=True)
def test_a_deadline_whose_wanted_record_failed_is_not_taken(store: StateStore) -> None:
    """A pipeline is no transaction: a refused write must not leave the deadline taken."""
    assert isinstance(store, RedisStore)
    now = time.time()
    store.link_batch("late", LINKS, 3600, deadline=now - 1)
    wanted_key = store.batch_key("late", "wanted")
    store.redis.set(wanted_key, "not a hash")  # its HSETNX is refused (as under maxmemory)
    with pytest.raises(StateStoreError):
        store.take_due_deadlines(now, 10, 3600)
    store.redis.delete(wanted_key)
    assert [w.batch_id for w in store.take_due_deadlines(now, 10, 3600)] == ["late"]


def test_one_sweeper_at_a_time(store: StateStore) -> None:
    assert store.claim_sweep("worker-a", 30)
    assert not store.claim_sweep("worker-b", 30)
    assert store.claim_sweep("worker-b", 30, part="deadlines")  # each part its own lock
    assert not store.claim_sweep("worker-a", 30, part="deadlines")
    assert not store.claim_sweep("worker-a", 30)  # not even by its holder


# -- starts --------------------------------------------------------------------------------------


def start_request(start_id: str = "start-1") -> StartRequest:
    return StartRequest(
        start_id=start_id,
        template_uid="tpl",
        body={"variableSets": [{"n": 1}]},
        idempotency_key=f"key-{start_id}",
        links=(("workflow", "wf"), ("task", "own")),
    )


def test_a_pending_start_is_found_by_a_revoke_until_it_has_a_batch(store: StateStore) -> None:
    links = BatchLinks(frozenset({"wf", "own"}), frozenset({"own"}))
    assert store.begin_start(start_request(), links, 3600) == []
    found = store.revoke_ids(["wf"], Scope.WORKFLOW, 3600)
    assert (found.batches, found.starts) == ([], ["start-1"])
    assert store.start_request("start-1") == start_request()
    # the start made its batch: the batch takes the start's place, and the
    # revoke remembered above reports it at once
    assert store.finish_start(StartMade("start-1", "batch-1"), links, 3600) == ["wf"]
    found = store.revoke_ids(["wf"], Scope.WORKFLOW, None)
    assert (found.batches, found.starts) == (["batch-1"], [])
    assert store.start_request("start-1") == dataclasses.replace(
        start_request(), batch_id="batch-1"
    )


def test_a_start_whose_workflow_was_revoked_is_told_before_its_post(store: StateStore) -> None:
    store.revoke_ids(["wf"], Scope.WORKFLOW, 3600)
    links = BatchLinks(frozenset({"wf"}), frozenset())
    assert store.begin_start(start_request(), links, 3600) == ["wf"]


def test_an_unknown_start_is_none(store: StateStore) -> None:
    assert store.start_request("nope") is None


def test_a_final_outcome_marks_the_batch_finished_in_its_links(store: StateStore) -> None:
    """A worker's catch-up after a restart finds nothing left to cancel."""
    links = BatchLinks(frozenset({"wf"}), frozenset({"own"}))
    store.link_batch("b1", links, 3600)
    begin = store.begin_cancel("b1", "task-a", 30, ASKED)
    assert sorted(begin.links) == [("task", "own"), ("workflow", "wf")]
    store.finish_cancel("task-a", OUTCOME, 3600, begin.links)
    assert store.revoke_ids(["wf"], Scope.WORKFLOW, None).batches == []
    assert store.revoke_ids(["own"], Scope.TASK, None).batches == []


def test_what_a_cancel_saved_counts_once_per_batch(store: StateStore) -> None:
    """A redelivered task or a replayed step records the same outcome again: it counts once."""
    saved = dataclasses.replace(OUTCOME, items_not_rendered=7)
    store.begin_cancel("b1", "task-a", 30, ASKED)
    store.finish_cancel("task-a", saved, 3600, (), workflow_id="wf")
    store.finish_cancel("task-a", saved, 3600, (), workflow_id="wf")
    other = dataclasses.replace(saved, batch_id="b2", items_not_rendered=3)
    store.finish_cancel("task-b", other, 3600, (), workflow_id="wf")
    assert store.items_not_rendered("wf") == 10
    assert store.items_not_rendered("another-wf") == 0


def test_an_earlier_ask_gets_the_final_failure_not_a_later_series_attempt(
    store: StateStore,
) -> None:
    """A later ask starts afresh after a final failure; its attempts never answer earlier asks."""
    store.begin_cancel("b1", "task-a", 30, ASKED)
    final = failure("AuthenticationError", final=True)  # recorded at ASKED + 5
    store.fail_cancel("task-a", final, 3600, 0)
    assert store.begin_cancel("b1", "task-c", 30, ASKED + 60).acquired
    store.fail_cancel("task-c", dataclasses.replace(failure(), at=ASKED + 65), 3600, 30)
    duplicate = store.begin_cancel("b1", "task-b", 30, ASKED)
    assert duplicate.failure == final and not duplicate.acquired


def test_a_leased_wanted_cancel_waits_out_its_lease_and_starves_no_other(
    store: StateStore,
) -> None:
    """A sweep skips a leased cancel until its lease can have ended, so it is not read again."""
    store.want_cancels([wanted("b1"), wanted("b2")], 3600)
    store.begin_cancel("b1", "task-a", 30, ASKED)  # a task is on it for 30 s
    later = time.time() + 120
    assert store.take_stale_wanted(later - 60, later, 1) == []  # b1 comes first, and is leased
    assert store.take_stale_wanted(later - 60, later, 1) == [wanted("b2")]
    store.fail_cancel("task-a", failure(), 3600, 0)  # gives the lease back
    # sweeps a minute apart: b1 is due an interval after its lease can have ended
    assert store.take_stale_wanted(later + 25, later + 85, 10) == [wanted("b2")]
    assert store.take_stale_wanted(later + 31, later + 91, 10) == [wanted("b1")]
