"""Workflow links: the stores' link semantics, the ids a request links a batch under,
``track_batch``, ``result_ids`` and ``revoke_workflow``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, Callable

import pytest
import redis
from celery import Celery, chain, chord, group
from celery.app.task import Context
from celery.result import AsyncResult, GroupResult
from celery.signals import before_task_publish
from kombu.utils.json import dumps, loads

import pictify_tasks
from pictify_tasks import BatchNotFoundError, InvalidBatchIdError
from pictify_tasks._runtime import runtime_for
from pictify_tasks.ids import validate_id
from pictify_tasks.store import MemoryStore, RedisStore, StateStore
from pictify_tasks.store.base import BatchLinks
from pictify_tasks.testing import PictifyEmulator
from pictify_tasks.workflow import (
    LINEAGE_HEADER,
    cancel_ids,
    cancel_workflow,
    links_from_request,
    result_ids,
    revoke_workflow,
    stamp_link_id,
    stamp_link_ids,
    track_batch,
)
from tests.fakes import memory_app, noop, running

TTL = 3600


def links(workflow: set[str], task: set[str] | None = None) -> BatchLinks:
    task = set() if task is None else task
    return BatchLinks(workflow=frozenset(workflow | task), task=frozenset(task))


# -- the stores ------------------------------------------------------------------------------


def test_a_batch_is_found_under_its_ids_for_each_scope(store: StateStore) -> None:
    assert store.link_batch("b1", links({"root", "next"}, {"own", "root"}), TTL) == []
    for link_id in ("own", "root", "next"):
        assert store.revoke_ids([link_id], "workflow", None) == ["b1"], link_id
    assert store.revoke_ids(["own"], "task", None) == ["b1"]
    assert store.revoke_ids(["root"], "task", None) == ["b1"]


def test_an_id_only_in_the_workflow_set_is_not_found_under_scope_task(store: StateStore) -> None:
    store.link_batch("b1", links({"chain-successor", "group"}, {"own"}), TTL)
    assert store.revoke_ids(["chain-successor"], "task", None) == []
    assert store.revoke_ids(["group", "chain-successor"], "task", None) == []
    assert store.revoke_ids(["chain-successor"], "workflow", None) == ["b1"]


def test_a_finished_batch_is_no_longer_found(store: StateStore) -> None:
    store.link_batch("b1", links({"wf"}, {"own"}), TTL)
    store.link_batch("b2", links({"wf"}, {"own"}), TTL)
    store.finish_batch("b1", TTL)
    for scope, link_id in (("workflow", "wf"), ("workflow", "own"), ("task", "own")):
        assert store.revoke_ids([link_id], scope, None) == ["b2"], (scope, link_id)
    store.finish_batch("b2", TTL)
    assert store.revoke_ids(["wf", "own"], "workflow", None) == []
    assert store.revoke_ids(["own"], "task", None) == []


def test_finishing_an_unknown_batch_is_harmless(store: StateStore) -> None:
    store.link_batch("b1", links({"wf"}), TTL)
    store.finish_batch("never-linked", TTL)
    assert store.revoke_ids(["wf"], "workflow", None) == ["b1"]


def test_several_batches_under_one_id(store: StateStore) -> None:
    for batch_id in ("b1", "b2", "b3"):
        store.link_batch(batch_id, links({"wf"}, {"root"}), TTL)
    assert sorted(store.revoke_ids(["wf"], "workflow", None)) == ["b1", "b2", "b3"]
    assert sorted(store.revoke_ids(["root"], "task", None)) == ["b1", "b2", "b3"]
    store.finish_batch("b2", TTL)
    assert sorted(store.revoke_ids(["wf"], "workflow", None)) == ["b1", "b3"]


def test_one_batch_under_several_ids_is_returned_once(store: StateStore) -> None:
    store.link_batch("b1", links({"x", "y", "z"}, {"x", "y"}), TTL)
    store.link_batch("b2", links({"z"}), TTL)
    found = store.revoke_ids(["x", "y", "z", "x"], "workflow", None)
    assert sorted(found) == ["b1", "b2"]
    assert store.revoke_ids(["x", "y", "z"], "task", None) == ["b1"]


def test_linking_twice_keeps_one_batch(store: StateStore) -> None:
    store.link_batch("b1", links({"wf"}), TTL)
    store.link_batch("b1", links({"wf", "more"}), TTL)
    assert store.revoke_ids(["wf", "more"], "workflow", None) == ["b1"]


def test_revoked_ids_are_remembered_with_a_ttl(store: StateStore) -> None:
    assert store.revoke_ids(["wf", "other"], "workflow", TTL) == []
    assert store.link_batch("b1", links({"wf", "unrelated"}, {"own"}), TTL) == ["wf"]
    assert store.link_batch("b2", links({"unrelated"}, {"own"}), TTL) == []
    # both revoked ids named by one batch are both reported
    assert sorted(store.link_batch("b3", links({"wf", "other"}), TTL)) == ["other", "wf"]


def test_remembering_does_not_depend_on_the_scope_of_the_batch_set(store: StateStore) -> None:
    store.revoke_ids(["root"], "task", TTL)
    assert store.link_batch("b1", links(set(), {"root"}), TTL) == ["root"]


def test_revoked_ids_are_not_remembered_without_a_ttl(store: StateStore) -> None:
    assert store.revoke_ids(["wf"], "workflow", None) == []
    assert store.revoke_ids(["wf"], "task", None) == []
    assert store.link_batch("b1", links({"wf"}, {"wf"}), TTL) == []


def test_revoking_still_finds_running_batches_while_it_remembers(store: StateStore) -> None:
    store.link_batch("b1", links({"wf"}), TTL)
    assert store.revoke_ids(["wf"], "workflow", TTL) == ["b1"]
    assert store.revoke_ids(["wf"], "workflow", TTL) == ["b1"]  # until it is finished


def test_unknown_ids_find_nothing(store: StateStore) -> None:
    assert store.revoke_ids(["nope"], "workflow", None) == []
    assert store.revoke_ids(["nope", "nada"], "task", None) == []
    assert store.revoke_ids([], "workflow", None) == []
    store.link_batch("b1", links({"wf"}), TTL)
    assert store.revoke_ids(["nope"], "workflow", TTL) == []


def test_a_batch_with_no_links_is_harmless(store: StateStore) -> None:
    assert store.link_batch("b1", BatchLinks(frozenset(), frozenset()), TTL) == []
    store.finish_batch("b1", TTL)
    assert store.revoke_ids(["b1"], "workflow", None) == []


def test_memory_links_and_revokes_expire() -> None:
    now = [1000.0]
    store = MemoryStore(clock=lambda: now[0])
    store.link_batch("b1", links({"wf"}), 10)
    store.revoke_ids(["gone"], "workflow", 10)
    now[0] += 11
    assert store.revoke_ids(["wf"], "workflow", None) == []
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
        store.revoke_ids(["wf", "own", "never-linked"], "workflow", TTL)
        store.revoke_ids(["other"], "task", TTL)
        store.revoke_ids(["not-remembered"], "workflow", None)
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


# -- links_from_request: hand-built requests of the shapes Celery 5.7 gives -------------------

A, B, C = "a-0001", "b-0002", "c-0003"
H, G, BODY = "h-0004", "g-0005", "body-0006"


def sig(task: str, task_id: str, **options: Any) -> dict[str, Any]:
    return {
        "task": task,
        "args": [],
        "kwargs": {},
        "options": {"task_id": task_id, "reply_to": "2b1c5e0a-reply", **options},
        "subtask_type": None,
        "immutable": False,
    }


def request(**fields: Any) -> Context:
    base: dict[str, Any] = {
        "root_id": None,
        "parent_id": None,
        "group": None,
        "chain": None,
        "callbacks": None,
        "chord": None,
        "stamped_headers": None,
        "stamps": {},
    }
    return Context({**base, **fields})


def test_head_of_a_chain_links_the_rest_of_the_chain_in_workflow_scope_only() -> None:
    req = request(id=A, root_id=A, chain=[sig("proj.c", C), sig("proj.b", B)])
    found = links_from_request(req)
    assert found.workflow == {A, B, C}
    assert found.task == {A}


def test_middle_of_a_chain_has_its_parent_and_root_as_ancestors() -> None:
    req = request(id=B, root_id=A, parent_id=A, chain=[sig("proj.c", C)])
    found = links_from_request(req)
    assert found.workflow == {A, B, C}
    assert found.task == {A, B}


def test_a_chord_header_task_links_its_group_and_body() -> None:
    body = sig("proj.body", BODY, group_id=G)
    req = request(id=H, root_id=H, group=G, group_index=0, chord=body)
    found = links_from_request(req)
    assert found.workflow == {H, G, BODY}
    assert found.task == {H}


def test_callbacks_are_linked_in_workflow_scope() -> None:
    req = request(id=A, root_id=A, callbacks=[sig("proj.link", "link-1")])
    found = links_from_request(req)
    assert found.workflow == {A, "link-1"}
    assert found.task == {A}


def test_stamps_are_linked_in_both_scopes() -> None:
    req = request(id=A, root_id=A, stamped_headers=["mystamp"], stamps={"mystamp": "S1"})
    found = links_from_request(req)
    assert found.task == {A, stamp_link_id("mystamp", "S1")}
    assert found.workflow == found.task


def test_a_stamp_with_a_list_value_links_each_value() -> None:
    req = request(
        id=A,
        root_id=A,
        stamped_headers=["mystamp", "other"],
        stamps={"mystamp": ["S1", "S2"], "other": "O"},
    )
    expected = {
        stamp_link_id("mystamp", "S1"),
        stamp_link_id("mystamp", "S2"),
        stamp_link_id("other", "O"),
    }
    found = links_from_request(req)
    assert found.task == {A} | expected
    assert found.workflow == {A} | expected


def test_lineage_ids_are_ancestors_in_both_scopes() -> None:
    req = request(id=A, root_id=A, **{LINEAGE_HEADER: ["X", "Y"]})
    found = links_from_request(req)
    assert found.task == {A, "X", "Y"}
    assert found.workflow == {A, "X", "Y"}


def test_everything_at_once() -> None:
    req = request(
        id=B,
        root_id=A,
        parent_id="P",
        group=G,
        chain=[sig("proj.c", C)],
        chord=sig("proj.body", BODY, group_id=G),
        stamped_headers=["mystamp"],
        stamps={"mystamp": "S1"},
        **{LINEAGE_HEADER: ["X", "Y"]},
    )
    stamp = stamp_link_id("mystamp", "S1")
    found = links_from_request(req)
    assert found.workflow == {B, A, "P", G, C, BODY, stamp, "X", "Y"}
    assert found.task == {B, A, "P", stamp, "X", "Y"}
    assert not found.task & {G, C, BODY}


def test_a_simple_namespace_request_works_too() -> None:
    req = SimpleNamespace(
        id=A,
        root_id=A,
        parent_id=None,
        group=G,
        chain=[sig("proj.c", C)],
        callbacks=None,
        chord=None,
        stamps={"s": "v"},
        pictify_lineage=["X"],
    )
    found = links_from_request(req)
    assert found.workflow == {A, G, C, "X", stamp_link_id("s", "v")}
    assert found.task == {A, "X", stamp_link_id("s", "v")}


def test_a_group_nested_in_a_chain_links_its_members() -> None:
    nested = {
        "task": "celery.group",
        "args": [],
        "kwargs": {"tasks": [sig("proj.m", "m-1", group_index=0), sig("proj.m", "m-2")]},
        "options": {"task_id": "gid-1", "parent_id": None, "root_id": None},
        "subtask_type": "group",
        "immutable": False,
    }
    req = request(id=A, root_id=A, chain=[sig("proj.c", C), nested])
    found = links_from_request(req)
    assert found.workflow == {A, C, "gid-1", "m-1", "m-2"}
    assert found.task == {A}


def test_a_chord_nested_in_a_chain_links_its_header_and_body() -> None:
    nested_chord = {
        "task": "celery.chord",
        "args": [],
        "kwargs": {
            "header": {
                "task": "celery.group",
                "args": [],
                "kwargs": {"tasks": [sig("proj.m", "m-1"), sig("proj.m", "m-2")]},
                "options": {"task_id": "gid-1"},
                "subtask_type": "group",
                "immutable": False,
            },
            "body": sig("proj.body", BODY),
            "kwargs": {},
        },
        "options": {"task_id": "gid-1"},
        "subtask_type": "chord",
        "immutable": False,
    }
    found = links_from_request(request(id=A, root_id=A, chain=[nested_chord]))
    assert found.workflow == {A, "gid-1", "m-1", "m-2", BODY}


def test_none_empty_and_garbage_values_are_dropped() -> None:
    req = request(
        id=A,
        root_id=None,
        parent_id="",
        group="",
        chain="not-a-list",
        callbacks=[None, 5, {"options": "x"}, {"options": {"task_id": 7}}],
        chord=5,
        stamps="not-a-mapping",
        **{LINEAGE_HEADER: ["X", None, "", 3]},
    )
    found = links_from_request(req)
    assert found.workflow == {A, "X"}
    assert found.task == {A, "X"}
    assert "None" not in found.workflow


def test_a_string_lineage_is_not_split_into_characters() -> None:
    found = links_from_request(request(id=A, root_id=A, **{LINEAGE_HEADER: "XY"}))
    assert found.task == {A}


def test_deeply_nested_signatures_do_not_recurse_without_bound() -> None:
    inner: dict[str, Any] = sig("proj.leaf", "leaf")
    for level in range(200):
        inner = {
            "task": "celery.chord",
            "kwargs": {"body": inner},
            "options": {"task_id": f"n{level}"},
        }
    found = links_from_request(request(id=A, root_id=A, chain=[inner]))
    assert "n199" in found.workflow  # the outermost levels are found
    assert "leaf" not in found.workflow  # past the depth limit nothing is read
    assert len(found.workflow) < 20


# -- links_from_request on what Celery itself publishes --------------------------------------


@pytest.fixture
def proj() -> Iterator[Celery]:
    """An app with four plain tasks, on the in-memory broker."""
    app = Celery(f"proj-{uuid.uuid4().hex[:6]}", broker="memory://", backend="cache+memory://")
    for name in ("proj.a", "proj.b", "proj.c", "proj.body"):
        app.task(name=name, shared=False)(noop)
    app.finalize()
    yield app
    app.close()


def published(publish: Callable[[], Any]) -> tuple[Any, list[Context]]:
    """Run ``publish``; return its result and, per message sent, the request a worker builds.

    As ``celery.worker.request.Request`` does: the headers, updated with the
    body's embed (callbacks, errbacks, chain, chord), after a JSON round trip.
    """
    messages: list[tuple[dict[str, Any], Any]] = []

    def capture(headers: Any = None, body: Any = None, **_: Any) -> None:
        messages.append((loads(dumps(headers)), loads(dumps(body))))

    before_task_publish.connect(capture, weak=False, dispatch_uid="test_links.capture")
    try:
        result = publish()
    finally:
        before_task_publish.disconnect(capture, dispatch_uid="test_links.capture")
    requests = []
    for headers, (args, kwargs, embed) in messages:
        requests.append(
            Context({**headers, "is_eager": False, **(embed or {})}, args=args, kwargs=kwargs)
        )
    return result, requests


def test_a_published_chain_head_links_every_task_of_the_chain(proj: Celery) -> None:
    a, b, c = (proj.tasks[f"proj.{n}"] for n in "abc")
    result, [head] = published(lambda: chain(a.s(), b.s(), c.s()).apply_async())
    every = set(result_ids(result))
    assert len(every) == 3
    found = links_from_request(head)
    assert found.workflow == every
    assert found.task == {head.id}


def test_a_published_chord_header_links_its_group_and_body(proj: Celery) -> None:
    a, b, body = (proj.tasks[f"proj.{n}"] for n in ("a", "b", "body"))
    result, headers = published(lambda: chord([a.s(), b.s()], body.s()).apply_async())
    header_requests = [r for r in headers if r.task in ("proj.a", "proj.b")]
    assert len(header_requests) == 2
    group_id = result.parent.id
    for req in header_requests:
        found = links_from_request(req)
        assert {req.id, group_id, result.id} <= found.workflow
        assert found.task == {req.id}


def test_a_published_chain_with_a_group_and_chord_links_them_all(proj: Celery) -> None:
    a, b, c, body = (proj.tasks[f"proj.{n}"] for n in ("a", "b", "c", "body"))
    result, [head] = published(lambda: chain(a.s(), group(b.s(), c.s()), body.s()).apply_async())
    every = set(result_ids(result))
    assert len(every) >= 5  # a, the group, b, c, the body
    assert every <= links_from_request(head).workflow


def test_a_published_stamped_task_links_its_stamp(proj: Celery) -> None:
    signature = proj.tasks["proj.a"].s()
    signature.stamp(mystamp="S1")
    _, [req] = published(signature.apply_async)
    assert req.stamped_headers == ["mystamp"]
    found = links_from_request(req)
    assert stamp_link_id("mystamp", "S1") in found.task


# -- stamp_link_id ------------------------------------------------------------------------------


def test_stamp_link_id_is_stable_and_distinct() -> None:
    assert stamp_link_id("k", "v") == stamp_link_id("k", "v")
    assert stamp_link_id("k", "v") != stamp_link_id("k", "w")
    assert stamp_link_id("k", "v") != stamp_link_id("j", "v")
    assert stamp_link_id("k", "v") != "v"
    assert stamp_link_id("ab", "c") != stamp_link_id("a", "bc")


@pytest.mark.parametrize(
    "name,value", [("k", "v"), ("a b", "{x} y"), ("k", "x" * 5000), ("k", 5), ("k", None)]
)
def test_stamp_link_id_has_no_braces_or_spaces_and_is_a_valid_id(name: str, value: Any) -> None:
    link_id = stamp_link_id(name, value)
    assert not set(link_id) & set("{} \t\n")
    assert validate_id(link_id, kind="link id") == link_id


def test_stamp_link_ids_expands_lists() -> None:
    assert stamp_link_ids({"k": ["a", "b"], "j": "c"}) == {
        stamp_link_id("k", "a"),
        stamp_link_id("k", "b"),
        stamp_link_id("j", "c"),
    }
    assert stamp_link_ids({}) == set()


# -- track_batch ---------------------------------------------------------------------------------


@pytest.fixture
def app() -> Iterator[Celery]:
    app = memory_app("links-test", "proj.a")
    yield app
    pictify_tasks.uninstall(app)
    app.close()


@pytest.fixture
def enqueued(app: Celery) -> list[list[str]]:
    """The batch ids each ``enqueue_cancels`` of the app's runtime was called with."""
    calls: list[list[str]] = []
    runtime_for(app).enqueue_cancels = lambda batch_ids: calls.append(list(batch_ids))  # type: ignore[method-assign]
    return calls


def test_track_batch_outside_a_task_needs_a_workflow_id(app: Celery) -> None:
    with pytest.raises(RuntimeError, match="workflow_id"):
        track_batch("batch-1", app=app)


@pytest.mark.parametrize("bad", ["", "a/b", "a b", "{x}", "x" * 129, 7, None])
def test_track_batch_rejects_bad_batch_ids(app: Celery, bad: Any) -> None:
    with pytest.raises(InvalidBatchIdError):
        track_batch(bad, workflow_id="wf-1", app=app)
    assert runtime_for(app).store.revoke_ids(["wf-1"], "workflow", None) == []


def test_track_batch_rejects_a_bad_workflow_id(app: Celery) -> None:
    with pytest.raises(InvalidBatchIdError, match="workflow id"):
        track_batch("batch-1", workflow_id="a/b", app=app)


def test_track_batch_with_a_workflow_id_links_under_it(
    app: Celery, enqueued: list[list[str]]
) -> None:
    found = track_batch("batch-1", workflow_id="wf-1", app=app)
    assert found == BatchLinks(frozenset({"wf-1"}), frozenset({"wf-1"}))
    store = runtime_for(app).store
    assert store.revoke_ids(["wf-1"], "workflow", None) == ["batch-1"]
    assert store.revoke_ids(["wf-1"], "task", None) == ["batch-1"]
    assert enqueued == []


def test_track_batch_inside_a_task_links_under_its_request(
    app: Celery, enqueued: list[list[str]]
) -> None:
    task = app.tasks["proj.a"]
    with running(task, id=B, root_id=A, parent_id=A, chain=[sig("proj.c", C)]):
        found = track_batch("batch-1")
    assert found.workflow == {A, B, C} and found.task == {A, B}
    store = runtime_for(app).store
    assert store.revoke_ids([C], "workflow", None) == ["batch-1"]
    assert store.revoke_ids([C], "task", None) == []
    assert store.revoke_ids([A], "task", None) == ["batch-1"]
    assert enqueued == []


def test_track_batch_inside_a_task_adds_the_workflow_id(app: Celery) -> None:
    with running(app.tasks["proj.a"], id=A, root_id=A):
        found = track_batch("batch-1", workflow_id="extra")
    assert found.workflow == {A, "extra"} and found.task == {A, "extra"}


def test_track_batch_inside_an_eager_task_links_under_its_request(
    app: Celery, enqueued: list[list[str]]
) -> None:
    with running(app.tasks["proj.a"], id=A, root_id=A, is_eager=True):
        found = track_batch("batch-1")
    assert A in found.task
    assert runtime_for(app).store.revoke_ids([A], "workflow", None) == ["batch-1"]


def _eager_app(emulator: PictifyEmulator) -> Celery:
    """An installed app that runs tasks eagerly against the emulator (uninstall it after)."""
    app = Celery(f"links-eager-{uuid.uuid4().hex[:6]}", set_as_current=False)
    app.conf.update(
        task_always_eager=True,
        task_eager_propagates=True,
        pictify_api_key=emulator.api_key,
        pictify_base_url=emulator.base_url,
        pictify_state_url="memory://",
    )
    pictify_tasks.install(app)
    return app


def test_an_eager_start_batch_returns_its_batch_id() -> None:
    with PictifyEmulator(items_per_second=0) as emulator:
        app = _eager_app(emulator)
        try:
            batch_id = app.tasks["pictify.start_batch"].delay("tpl_1", [{"n": 1}]).get()
            assert emulator.batches() == [batch_id]
        finally:
            pictify_tasks.uninstall(app)
            app.close()


def test_track_batch_after_the_workflow_was_revoked_enqueues_a_cancel(
    app: Celery, enqueued: list[list[str]]
) -> None:
    assert cancel_workflow("wf-1", app=app) == []
    track_batch("batch-1", workflow_id="wf-1", app=app)
    assert enqueued == [["batch-1"]]
    track_batch("batch-2", workflow_id="wf-other", app=app)
    assert enqueued == [["batch-1"]]


def test_track_batch_in_a_task_whose_root_was_revoked_enqueues_a_cancel(
    app: Celery, enqueued: list[list[str]]
) -> None:
    cancel_ids(app, [A])
    with running(app.tasks["proj.a"], id=B, root_id=A, parent_id=A):
        track_batch("batch-1")
    assert enqueued == [["batch-1"]]


def test_scope_task_does_not_cancel_a_batch_for_a_revoked_chain_successor(
    app: Celery, enqueued: list[list[str]]
) -> None:
    app.conf.pictify_revoke_scope = "task"
    runtime_for(app).reset()
    task = app.tasks["proj.a"]
    fields = {"id": A, "root_id": A, "chain": [sig("proj.c", C), sig("proj.b", B)]}
    with running(task, **fields):
        track_batch("batch-before")
    # revoking the successor C in task scope does not cancel A's batch...
    assert cancel_ids(app, [C]) == []
    # ...so neither should it cancel a batch A starts a moment later
    with running(task, **fields):
        track_batch("batch-after")
    assert enqueued == []


def test_track_batch_after_a_revoke_cancels_it_through_the_emulator() -> None:
    with PictifyEmulator(items_per_second=0) as emulator:
        app = _eager_app(emulator)
        try:
            revoked_batch = emulator.create_batch()
            other_batch = emulator.create_batch()
            assert cancel_workflow("wf-1", app=app) == []
            assert emulator.cancel_requests() == []
            track_batch(revoked_batch, workflow_id="wf-1", app=app)
            track_batch(other_batch, workflow_id="wf-2", app=app)
            assert len(emulator.cancel_requests(revoked_batch)) == 1
            assert emulator.batch(revoked_batch)["status"] == "cancelled"
            assert emulator.cancel_requests(other_batch) == []
        finally:
            pictify_tasks.uninstall(app)
            app.close()


# -- result_ids ---------------------------------------------------------------------------------


def test_result_ids_of_a_chain_tail(app: Celery) -> None:
    head = AsyncResult("a", app=app)
    tail = AsyncResult("c", parent=AsyncResult("b", parent=head, app=app), app=app)
    ids = result_ids(tail)
    assert sorted(ids) == ["a", "b", "c"]


def test_result_ids_of_a_group(app: Celery) -> None:
    members = [AsyncResult(i, app=app) for i in ("m1", "m2", "m3")]
    ids = result_ids(GroupResult("g", members, app=app))
    assert sorted(ids) == ["g", "m1", "m2", "m3"]


def test_result_ids_of_a_chord(app: Celery) -> None:
    first = AsyncResult("first", app=app)
    header = GroupResult(
        "g",
        [AsyncResult("h1", parent=first, app=app), AsyncResult("h2", parent=first, app=app)],
        parent=first,
        app=app,
    )
    ids = result_ids(AsyncResult("body", parent=header, app=app))
    assert sorted(ids) == ["body", "first", "g", "h1", "h2"]
    assert len(ids) == len(set(ids))


def test_result_ids_of_a_group_of_chains_with_repeats(app: Celery) -> None:
    shared = AsyncResult("shared", app=app)
    members = [
        AsyncResult("x", parent=shared, app=app),
        AsyncResult("y", parent=AsyncResult("shared", app=app), app=app),
        AsyncResult("x", app=app),
    ]
    ids = result_ids(GroupResult("g", members, app=app))
    assert sorted(ids) == ["g", "shared", "x", "y"]


def test_result_ids_include_known_children(app: Celery) -> None:
    result = AsyncResult("a", app=app)
    result._cache = {"children": [AsyncResult("kid", app=app), GroupResult("kg", [], app=app)]}
    assert sorted(result_ids(result)) == ["a", "kg", "kid"]


def test_result_ids_of_real_canvas_results(proj: Celery) -> None:
    a, b, c, body = (proj.tasks[f"proj.{n}"] for n in ("a", "b", "c", "body"))
    result = chain(a.s(), b.s(), c.s()).apply_async()
    assert sorted(result_ids(result)) == sorted(
        [result.id, result.parent.id, result.parent.parent.id]
    )
    result = chord([a.s(), b.s()], body.s()).apply_async()
    header = result.parent
    assert sorted(result_ids(result)) == sorted(
        [result.id, header.id, *(r.id for r in header.results)]
    )


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
    batches = revoke_workflow(tail, terminate=True, signal="SIGKILL", app=app)
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
    assert revoke_workflow(tail) == ["batch-1"]
    [(ids, options)] = revokes
    assert sorted(ids) == ["a", "b"]
    assert options == {"terminate": False}
    assert enqueued == [["batch-1"]]


def test_revoke_workflow_with_nothing_linked(
    app: Celery, revokes: list[tuple[Any, dict[str, Any]]], enqueued: list[list[str]]
) -> None:
    assert revoke_workflow(GroupResult("g", [AsyncResult("m", app=app)], app=app), app=app) == []
    assert [sorted(ids) for ids, _ in revokes] == [["g", "m"]]
    assert enqueued == []


def test_a_batch_that_is_gone_is_finished_and_never_sent_a_cancel() -> None:
    with PictifyEmulator(items_per_second=0) as emulator:
        app = _eager_app(emulator)
        try:
            track_batch("batch_gone", workflow_id="wf-gone", app=app)
            with pytest.raises(BatchNotFoundError):
                app.tasks["pictify.wait_for_batch"].delay("batch_gone").get()
            assert cancel_workflow("wf-gone", app=app) == []
            assert emulator.cancel_requests() == []
        finally:
            pictify_tasks.uninstall(app)
