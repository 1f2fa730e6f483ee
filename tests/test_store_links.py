"""The stores' link semantics: memory, fakeredis and the real Redis behave alike."""

from __future__ import annotations

import re

import pytest
import redis

from pictify_tasks.revoke.links import BatchLinks, Scope, stamp_link_id
from pictify_tasks.store import (
    Linked,
    MemoryStore,
    OutcomeRecord,
    RedisStore,
    StartRequest,
    StateStore,
)
from pictify_tasks.store.base import START_PREFIX
from pictify_tasks.store.records import StartMade

TTL = 3600


def links(workflow: set[str], task: set[str] | None = None) -> BatchLinks:
    task = set() if task is None else task
    return BatchLinks(workflow=frozenset(workflow | task), task=frozenset(task))


def test_a_batch_is_found_under_its_ids_for_each_scope(store: StateStore) -> None:
    assert store.link_batch("b1", links({"root", "next"}, {"own", "root"}), TTL) == []
    for link_id in ("own", "root", "next"):
        assert store.revoke_ids([link_id], Scope.WORKFLOW, None).batches == ["b1"], link_id
    assert store.revoke_ids(["own"], Scope.TASK, None).batches == ["b1"]
    assert store.revoke_ids(["root"], Scope.TASK, None).batches == ["b1"]


def test_an_id_only_in_the_workflow_set_is_not_found_under_scope_task(store: StateStore) -> None:
    store.link_batch("b1", links({"chain-successor", "group"}, {"own"}), TTL)
    assert store.revoke_ids(["chain-successor"], Scope.TASK, None).batches == []
    assert store.revoke_ids(["group", "chain-successor"], Scope.TASK, None).batches == []
    assert store.revoke_ids(["chain-successor"], Scope.WORKFLOW, None).batches == ["b1"]


def test_a_finished_batch_is_no_longer_found(store: StateStore) -> None:
    store.link_batch("b1", links({"wf"}, {"own"}), TTL)
    store.link_batch("b2", links({"wf"}, {"own"}), TTL)
    store.finish_batch("b1", TTL)
    for scope, link_id in ((Scope.WORKFLOW, "wf"), (Scope.WORKFLOW, "own"), (Scope.TASK, "own")):
        assert store.revoke_ids([link_id], scope, None).batches == ["b2"], (scope, link_id)
    store.finish_batch("b2", TTL)
    assert store.revoke_ids(["wf", "own"], Scope.WORKFLOW, None).batches == []
    assert store.revoke_ids(["own"], Scope.TASK, None).batches == []


def test_finishing_an_unknown_batch_is_harmless(store: StateStore) -> None:
    store.link_batch("b1", links({"wf"}), TTL)
    store.finish_batch("never-linked", TTL)
    assert store.revoke_ids(["wf"], Scope.WORKFLOW, None).batches == ["b1"]


def test_several_batches_under_one_id(store: StateStore) -> None:
    for batch_id in ("b1", "b2", "b3"):
        store.link_batch(batch_id, links({"wf"}, {"root"}), TTL)
    assert sorted(store.revoke_ids(["wf"], Scope.WORKFLOW, None).batches) == ["b1", "b2", "b3"]
    assert sorted(store.revoke_ids(["root"], Scope.TASK, None).batches) == ["b1", "b2", "b3"]
    store.finish_batch("b2", TTL)
    assert sorted(store.revoke_ids(["wf"], Scope.WORKFLOW, None).batches) == ["b1", "b3"]


def test_one_batch_under_several_ids_is_returned_once(store: StateStore) -> None:
    store.link_batch("b1", links({"x", "y", "z"}, {"x", "y"}), TTL)
    store.link_batch("b2", links({"z"}), TTL)
    found = store.revoke_ids(["x", "y", "z", "x"], Scope.WORKFLOW, None).batches
    assert sorted(found) == ["b1", "b2"]
    assert store.revoke_ids(["x", "y", "z"], Scope.TASK, None).batches == ["b1"]


def test_linking_twice_keeps_one_batch(store: StateStore) -> None:
    store.link_batch("b1", links({"wf"}), TTL)
    store.link_batch("b1", links({"wf", "more"}), TTL)
    assert store.revoke_ids(["wf", "more"], Scope.WORKFLOW, None).batches == ["b1"]


def test_revoked_ids_are_remembered_with_a_ttl(store: StateStore) -> None:
    assert store.revoke_ids(["wf", "other"], Scope.WORKFLOW, TTL).batches == []
    assert store.link_batch("b1", links({"wf", "unrelated"}, {"own"}), TTL) == ["wf"]
    assert store.link_batch("b2", links({"unrelated"}, {"own"}), TTL) == []
    # both revoked ids named by one batch are both reported
    assert sorted(store.link_batch("b3", links({"wf", "other"}), TTL)) == ["other", "wf"]


def test_remembering_does_not_depend_on_the_scope_of_the_batch_set(store: StateStore) -> None:
    store.revoke_ids(["root"], Scope.TASK, TTL)
    assert store.link_batch("b1", links(set(), {"root"}), TTL) == ["root"]


def test_revoked_among_reports_what_linking_would_without_linking(store: StateStore) -> None:
    store.revoke_ids(["wf", "other"], Scope.WORKFLOW, TTL)
    store.revoke_ids(["root"], Scope.TASK, TTL)
    assert store.revoked_among(links({"wf", "unrelated"}, {"own"})) == ["wf"]
    assert store.revoked_among(links({"wf", "other"}, {"root"})) == ["other", "root", "wf"]
    # Each id counts in the scope it is linked under: "wf" was revoked as a workflow only.
    assert store.revoked_among(BatchLinks(workflow=frozenset(), task=frozenset({"wf"}))) == []
    assert store.revoked_among(links(set())) == []
    assert store.revoke_ids(["wf"], Scope.WORKFLOW, None).batches == []  # nothing was linked


def test_revoked_ids_are_not_remembered_without_a_ttl(store: StateStore) -> None:
    assert store.revoke_ids(["wf"], Scope.WORKFLOW, None).batches == []
    assert store.revoke_ids(["wf"], Scope.TASK, None).batches == []
    assert store.link_batch("b1", links({"wf"}, {"wf"}), TTL) == []


def test_revoking_still_finds_running_batches_while_it_remembers(store: StateStore) -> None:
    store.link_batch("b1", links({"wf"}), TTL)
    assert store.revoke_ids(["wf"], Scope.WORKFLOW, TTL).batches == ["b1"]
    assert store.revoke_ids(["wf"], Scope.WORKFLOW, TTL).batches == ["b1"]  # until it is finished


def test_unknown_ids_find_nothing(store: StateStore) -> None:
    assert store.revoke_ids(["nope"], Scope.WORKFLOW, None).batches == []
    assert store.revoke_ids(["nope", "nada"], Scope.TASK, None).batches == []
    assert store.revoke_ids([], Scope.WORKFLOW, None).batches == []
    store.link_batch("b1", links({"wf"}), TTL)
    assert store.revoke_ids(["nope"], Scope.WORKFLOW, TTL).batches == []


def test_a_batch_with_no_links_is_harmless(store: StateStore) -> None:
    assert store.link_batch("b1", BatchLinks(frozenset(), frozenset()), TTL) == []
    store.finish_batch("b1", TTL)
    assert store.revoke_ids(["b1"], Scope.WORKFLOW, None).batches == []


def test_memory_links_and_revokes_expire() -> None:
    now = [1000.0]
    store = MemoryStore(clock=lambda: now[0])
    store.link_batch("b1", links({"wf"}), 10)
    store.revoke_ids(["gone"], Scope.WORKFLOW, 10)
    now[0] += 11
    assert store.revoke_ids(["wf"], Scope.WORKFLOW, None).batches == []
    assert store.link_batch("b2", links({"gone"}), 10) == []


@pytest.mark.redis
def test_every_redis_key_has_a_ttl_and_one_hash_tag(
    real_redis: redis.Redis, key_prefix: str
) -> None:
    store = RedisStore(real_redis, prefix=key_prefix)
    stamp = stamp_link_id("mystamp", "S 1 {x}")
    try:
        store.link_batch("b1", links({"wf", "group", stamp}, {"own", stamp}), TTL)
        store.link_batch("b2", links({"wf"}), TTL)
        store.finish_batch("b2", TTL)
        store.revoke_ids(["wf", "own", "never-linked"], Scope.WORKFLOW, TTL)
        store.revoke_ids(["other"], Scope.TASK, TTL)
        store.revoke_ids(["not-remembered"], Scope.WORKFLOW, None)
        keys = sorted(k.decode() for k in real_redis.scan_iter(f"{key_prefix}:*"))
        assert keys, "nothing was written"
        # the link sets of each scope, the batches' own link sets, and the revoked markers
        assert any(k.endswith(":workflow") for k in keys)
        assert any(k.endswith(":task") for k in keys)
        assert any(k.endswith(":revoked:workflow") for k in keys)
        assert not any("not-remembered" in k for k in keys)
        for key in keys:
            ttl = real_redis.ttl(key)
            assert 0 < ttl <= TTL, (key, ttl)
            assert len(re.findall(r"\{[^{}]*\}", key)) == 1, key
            assert key.count("{") == 1 and key.count("}") == 1, key
        # all keys of one link id share its tag, so one id is one slot
        wf_keys = [k for k in keys if "{w:wf}" in k]
        assert {k.split("}:", 1)[1] for k in wf_keys} == {"workflow", "revoked:workflow"}
    finally:
        for key in real_redis.scan_iter(f"{key_prefix}:*"):
            real_redis.delete(key)


# -- linked: what an operator sees under an id (celery pictify links) --------------------


def test_linked_shows_each_entry_and_its_state_per_scope(store: StateStore) -> None:
    store.link_batch("b1", links({"wf"}, {"own"}), TTL)
    store.link_batch("b2", links({"wf"}), TTL)
    store.finish_batch("b2", TTL)
    assert store.linked("wf", Scope.WORKFLOW).entries == {"b1": "running", "b2": "finished"}
    assert store.linked("own", Scope.TASK).entries == {"b1": "running"}
    assert store.linked("wf", Scope.TASK).entries == {}
    assert store.linked("never-linked", Scope.WORKFLOW).entries == {}


def test_linked_reads_a_workflows_savings_with_its_entries(store: StateStore) -> None:
    store.link_batch("b1", links({"wf"}, {"own"}), TTL)
    assert store.linked("wf", Scope.WORKFLOW) == Linked({"b1": "running"}, 0)
    store.begin_cancel("b1", "task-a", 30, 0.0)
    outcome = OutcomeRecord("b1", "cancelled", "cancelled", 1, "Batch cancelled", 7)
    store.finish_cancel("task-a", outcome, TTL, [("workflow", "wf")], workflow_id="wf")
    assert store.linked("wf", Scope.WORKFLOW) == Linked({"b1": "finished"}, 7)
    assert store.items_not_rendered("wf") == 7
    # savings are counted per workflow: a task scope's view has none to show
    assert store.linked("own", Scope.TASK).items_not_rendered is None


def test_linked_shows_a_start_until_its_batch_replaces_it(store: StateStore) -> None:
    start = StartRequest("s1", "tpl", {"variableSets": [{}]}, "key-s1")
    store.begin_start(start, links({"wf"}), TTL)
    assert store.linked("wf", Scope.WORKFLOW).entries == {START_PREFIX + "s1": "running"}
    store.finish_start(StartMade("s1", "b9"), links({"wf"}), TTL)
    assert store.linked("wf", Scope.WORKFLOW).entries == {"b9": "running"}


def test_linked_only_reads(store: StateStore) -> None:
    store.link_batch("b1", links({"wf"}), TTL)
    store.linked("wf", Scope.WORKFLOW)
    store.linked("wf", Scope.WORKFLOW)
    assert store.revoke_ids(["wf"], Scope.WORKFLOW, None).batches == ["b1"]
    assert store.link_batch("b2", links({"wf"}), TTL) == []  # nothing was remembered as revoked
