"""The ids a batch is linked under, from hand-built requests and from what Celery publishes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, Callable

import pytest
from celery import Celery, chain, chord, group
from celery.app.task import Context
from celery.result import AsyncResult, GroupResult
from celery.signals import before_task_publish
from kombu.utils.json import dumps, loads

from pictify_tasks.ids import validate_id
from pictify_tasks.revoke.links import (
    LINEAGE_HEADER,
    links_from_request,
    result_ids,
    stamp_link_id,
    stamp_link_ids,
)
from tests.fakes import noop

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
    assert stamp_link_ids({"k": ["a", "b"], "j": "c"}) == [
        stamp_link_id("k", "a"),
        stamp_link_id("k", "b"),
        stamp_link_id("j", "c"),
    ]
    assert stamp_link_ids({}) == []
    # pairs, as a revoke broadcast names them, give the same ids; repeats once
    assert stamp_link_ids([("k", "a"), ("k", "b"), ("k", "a")]) == stamp_link_ids({"k": ["a", "b"]})


# -- result_ids ---------------------------------------------------------------------------------


def test_result_ids_of_a_chain_tail(proj: Celery) -> None:
    head = AsyncResult("a", app=proj)
    tail = AsyncResult("c", parent=AsyncResult("b", parent=head, app=proj), app=proj)
    ids = result_ids(tail)
    assert sorted(ids) == ["a", "b", "c"]


def test_result_ids_of_a_group(proj: Celery) -> None:
    members = [AsyncResult(i, app=proj) for i in ("m1", "m2", "m3")]
    ids = result_ids(GroupResult("g", members, app=proj))
    assert sorted(ids) == ["g", "m1", "m2", "m3"]


def test_result_ids_of_a_chord(proj: Celery) -> None:
    first = AsyncResult("first", app=proj)
    header = GroupResult(
        "g",
        [AsyncResult("h1", parent=first, app=proj), AsyncResult("h2", parent=first, app=proj)],
        parent=first,
        app=proj,
    )
    ids = result_ids(AsyncResult("body", parent=header, app=proj))
    assert sorted(ids) == ["body", "first", "g", "h1", "h2"]
    assert len(ids) == len(set(ids))


def test_result_ids_of_a_group_of_chains_with_repeats(proj: Celery) -> None:
    shared = AsyncResult("shared", app=proj)
    members = [
        AsyncResult("x", parent=shared, app=proj),
        AsyncResult("y", parent=AsyncResult("shared", app=proj), app=proj),
        AsyncResult("x", app=proj),
    ]
    ids = result_ids(GroupResult("g", members, app=proj))
    assert sorted(ids) == ["g", "shared", "x", "y"]


def test_result_ids_include_known_children(proj: Celery) -> None:
    result = AsyncResult("a", app=proj)
    result._cache = {"children": [AsyncResult("kid", app=proj), GroupResult("kg", [], app=proj)]}
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
