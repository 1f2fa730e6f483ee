"""``install`` / ``uninstall`` of the bootstep and signals, and the signal handlers."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, Callable

import pytest
from celery import Celery
from celery.app.task import Context
from celery.signals import before_task_publish, task_revoked

import pictify_tasks
from pictify_tasks import hooks
from pictify_tasks._runtime import runtime_for
from pictify_tasks.hooks import (
    _on_before_task_publish,
    _on_task_revoked,
    _revoked_ids,
    install,
    installed,
    on_revoke_notice,
    uninstall,
)
from pictify_tasks.listener import RevokeListener, RevokeNotice
from pictify_tasks.store.base import BatchLinks
from pictify_tasks.workflow import LINEAGE_HEADER, MAX_LINEAGE
from tests.fakes import memory_app, running

WAIT = 10.0


def make_app(installed: bool = True) -> Celery:
    return memory_app("hooks-test", "proj.parent", "proj.child", installed=installed)


@pytest.fixture
def app() -> Iterator[Celery]:
    app = make_app()
    yield app
    uninstall(app)
    app.close()


@pytest.fixture
def bare_app() -> Iterator[Celery]:
    """An app the package is not installed on."""
    app = make_app(installed=False)
    yield app
    app.close()


def connected(signal: Any, handler: Callable[..., Any]) -> int:
    """How many times ``handler`` is connected to ``signal``."""
    return sum(1 for _, receiver in signal.receivers if receiver is handler)


def other_installed_apps(*mine: Celery) -> list[Any]:
    gc.collect()  # apps of earlier tests that are gone leave the WeakSet
    return [app for app in list(hooks._installed) if all(app is not m for m in mine)]


# -- install / uninstall -----------------------------------------------------------------------


def test_install_adds_the_bootstep_and_uninstall_removes_it(bare_app: Celery) -> None:
    assert RevokeListener not in bare_app.steps["consumer"]
    install(bare_app)
    try:
        assert installed(bare_app)
        assert RevokeListener in bare_app.steps["consumer"]
        assert "pictify.cancel_batch" in bare_app.tasks
    finally:
        uninstall(bare_app)
    assert not installed(bare_app)
    assert RevokeListener not in bare_app.steps["consumer"]
    assert "pictify.cancel_batch" not in bare_app.tasks


def test_signals_are_connected_while_any_app_is_installed() -> None:
    first, second = make_app(installed=False), make_app(installed=False)
    try:
        install(first)
        install(second)
        for signal, handler in hooks._SIGNALS:
            assert connected(signal, handler) == 1, signal
        uninstall(first)
        for signal, handler in hooks._SIGNALS:
            assert connected(signal, handler) == 1, signal
        uninstall(second)
        expected = 1 if other_installed_apps(first, second) else 0
        for signal, handler in hooks._SIGNALS:
            assert connected(signal, handler) == expected, signal
        install(first)
        for signal, handler in hooks._SIGNALS:
            assert connected(signal, handler) == 1, signal
    finally:
        uninstall(first)
        uninstall(second)
        first.close()
        second.close()


def test_installing_twice_is_harmless(app: Celery) -> None:
    task = app.tasks["pictify.cancel_batch"]
    install(app)
    assert app.tasks["pictify.cancel_batch"] is task
    assert sum(1 for step in app.steps["consumer"] if step is RevokeListener) == 1
    for signal, handler in hooks._SIGNALS:
        assert connected(signal, handler) == 1, signal
    uninstall(app)  # one uninstall undoes both installs
    assert not installed(app)
    assert RevokeListener not in app.steps["consumer"]


def test_uninstalling_an_app_that_is_not_installed_keeps_the_others_hooks(
    app: Celery, bare_app: Celery
) -> None:
    uninstall(bare_app)
    assert installed(app)
    for signal, handler in hooks._SIGNALS:
        assert connected(signal, handler) == 1, signal
    assert RevokeListener in app.steps["consumer"]


# -- _revoked_ids ----------------------------------------------------------------------------------


def test_revoked_ids_in_workflow_scope() -> None:
    request = Context(id="t", root_id="r", group="g", parent_id="p")
    assert _revoked_ids(request, "workflow") == ["t", "r", "g"]


def test_revoked_ids_in_task_scope_are_only_the_own_id() -> None:
    request = Context(id="t", root_id="r", group="g", parent_id="p")
    assert _revoked_ids(request, "task") == ["t"]


def test_revoked_ids_read_the_group_from_group_id_too() -> None:
    assert _revoked_ids(SimpleNamespace(id="t", root_id="r", group_id="g2"), "workflow") == [
        "t",
        "r",
        "g2",
    ]
    both = SimpleNamespace(id="t", root_id="r", group_id="g2", group="g")
    assert _revoked_ids(both, "workflow") == ["t", "r", "g2"]
    neither = SimpleNamespace(id="t", root_id="r", group_id=None, group="g")
    assert _revoked_ids(neither, "workflow") == ["t", "r", "g"]


def test_revoked_ids_drop_none_empty_and_missing_values() -> None:
    assert _revoked_ids(Context(id="t"), "workflow") == ["t"]
    assert _revoked_ids(SimpleNamespace(id="t"), "workflow") == ["t"]
    assert _revoked_ids(SimpleNamespace(id="t", root_id="", group=5), "workflow") == ["t"]
    assert _revoked_ids(SimpleNamespace(), "workflow") == []
    assert _revoked_ids(SimpleNamespace(), "task") == []


# -- _on_task_revoked ------------------------------------------------------------------------------


class Recorder:
    """Stands in for ``Runtime.enqueue_cancels``: records calls and the thread they ran on."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.threads: list[str] = []
        self.called = threading.Event()

    def __call__(self, batch_ids: list[str]) -> None:
        self.calls.append(list(batch_ids))
        self.threads.append(threading.current_thread().name)
        self.called.set()


@pytest.fixture
def enqueued(app: Celery) -> Recorder:
    recorder = Recorder()
    runtime_for(app).enqueue_cancels = recorder  # type: ignore[method-assign]
    return recorder


def drain(app: Celery) -> None:
    """Wait until the runtime's background thread has run everything submitted so far."""
    done = threading.Event()
    runtime_for(app).submit(done.set)
    assert done.wait(WAIT), "the background thread did not get to the end of its queue"


def link(app: Celery, batch_id: str, workflow: set[str], task: set[str]) -> None:
    links = BatchLinks(frozenset(workflow | task), frozenset(task))
    assert runtime_for(app).store.link_batch(batch_id, links, 3600) == []


def test_task_revoked_cancels_the_batches_of_the_root_on_a_background_thread(
    app: Celery, enqueued: Recorder
) -> None:
    link(app, "batch-1", {"root-1"}, {"root-1"})
    link(app, "batch-other", {"root-2"}, {"root-2"})
    task = app.tasks["proj.child"]
    request = Context(id="child-1", root_id="root-1", parent_id="root-1", group=None)
    task_revoked.send(sender=task, request=request, terminated=False, signum=None, expired=False)
    assert enqueued.called.wait(WAIT), "no cancel was enqueued"
    drain(app)
    assert enqueued.calls == [["batch-1"]]
    assert enqueued.threads[0].startswith("pictify-hooks")
    assert enqueued.threads[0] != threading.current_thread().name


def test_task_revoked_cancels_the_batches_of_the_group(app: Celery, enqueued: Recorder) -> None:
    link(app, "batch-g", {"group-1"}, set())
    request = Context(id="member-1", root_id="member-1", group="group-1")
    _on_task_revoked(sender=app.tasks["proj.child"], request=request)
    assert enqueued.called.wait(WAIT)
    assert enqueued.calls == [["batch-g"]]


def test_task_revoked_in_task_scope_only_cancels_the_tasks_own_batches(
    app: Celery, enqueued: Recorder
) -> None:
    app.conf.pictify_revoke_scope = "task"
    runtime_for(app).reset()
    link(app, "batch-root", {"root-1"}, {"root-1"})
    link(app, "batch-own", {"root-1"}, {"child-1", "root-1"})
    request = Context(id="child-1", root_id="root-1", group="group-1")
    _on_task_revoked(sender=app.tasks["proj.child"], request=request)
    drain(app)
    assert enqueued.calls == [["batch-own"]]


def test_task_revoked_remembers_the_ids_for_batches_linked_later(
    app: Celery, enqueued: Recorder
) -> None:
    request = Context(id="child-1", root_id="root-1")
    _on_task_revoked(sender=app.tasks["proj.child"], request=request)
    drain(app)
    assert enqueued.calls == []
    links = BatchLinks(frozenset({"root-1"}), frozenset({"root-1"}))
    assert runtime_for(app).store.link_batch("batch-late", links, 3600) == ["root-1"]


class Exploding:
    """A request (or sender) whose every attribute access raises."""

    def __getattribute__(self, name: str) -> Any:
        raise RuntimeError(f"boom reading {name}")


def test_task_revoked_logs_an_error_and_never_raises(
    app: Celery, enqueued: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="pictify_tasks.hooks"):
        _on_task_revoked(sender=app.tasks["proj.child"], request=Exploding())
        _on_task_revoked(sender=Exploding(), request=Context(id="t"))
    failures = [r for r in caplog.records if "handling task_revoked failed" in r.getMessage()]
    assert len(failures) == 2
    assert all(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in failures)
    drain(app)
    assert enqueued.calls == []


def test_task_revoked_of_an_app_that_is_not_installed_is_ignored(
    app: Celery, bare_app: Celery
) -> None:
    runtime = runtime_for(bare_app)
    link(bare_app, "batch-1", {"root-1"}, {"root-1"})
    submitted: list[Any] = []
    runtime.submit = lambda *args: submitted.append(args)  # type: ignore[method-assign]
    request = Context(id="child-1", root_id="root-1")
    task_revoked.send(sender=bare_app.tasks["proj.child"], request=request)
    _on_task_revoked(sender=bare_app.tasks["proj.child"], request=request)
    assert submitted == []
    assert runtime.store.revoke_ids(["root-1"], "workflow", None) == ["batch-1"]


@pytest.mark.parametrize(
    "sender,request_",
    [(None, Context(id="t")), (SimpleNamespace(app=None), Context(id="t")), ("task", None)],
    ids=["no sender", "sender without app", "no request"],
)
def test_task_revoked_without_sender_or_request_is_ignored(
    app: Celery, sender: Any, request_: Any
) -> None:
    submitted: list[Any] = []
    runtime_for(app).submit = lambda *args: submitted.append(args)  # type: ignore[method-assign]
    if sender == "task":
        sender = app.tasks["proj.child"]
    _on_task_revoked(sender=sender, request=request_)
    assert submitted == []


# -- on_revoke_notice ----------------------------------------------------------------------------


def test_a_revoke_notice_cancels_at_once_on_an_installed_app_only(
    app: Celery, bare_app: Celery, enqueued: Recorder
) -> None:
    link(app, "batch-1", {"wf-1"}, set())
    on_revoke_notice(app, RevokeNotice(task_ids=("nope", "wf-1")))
    assert enqueued.calls == [["batch-1"]]
    other = Recorder()
    runtime_for(bare_app).enqueue_cancels = other  # type: ignore[method-assign]
    link(bare_app, "batch-2", {"wf-1"}, set())
    on_revoke_notice(bare_app, RevokeNotice(task_ids=("wf-1",)))
    assert other.calls == []


# -- _on_before_task_publish -----------------------------------------------------------------------


def test_outside_a_task_headers_are_left_alone(app: Celery) -> None:
    headers = {"id": "C", "task": "proj.child"}
    _on_before_task_publish(headers=headers)
    assert headers == {"id": "C", "task": "proj.child"}


def test_inside_a_task_the_lineage_is_carried_on(app: Celery) -> None:
    headers: dict[str, Any] = {"id": "C"}
    with running(app.tasks["proj.parent"], id="P", **{LINEAGE_HEADER: ["R"]}):
        _on_before_task_publish(headers=headers)
    assert headers[LINEAGE_HEADER] == ["R", "P"]


def test_a_task_without_lineage_starts_one(app: Celery) -> None:
    headers: dict[str, Any] = {"id": "C"}
    with running(app.tasks["proj.parent"], id="P"):
        _on_before_task_publish(headers=headers)
    assert headers[LINEAGE_HEADER] == ["P"]


def test_a_retry_or_replacement_keeps_its_ancestry_without_adding_itself(app: Celery) -> None:
    headers: dict[str, Any] = {"id": "P"}
    with running(app.tasks["proj.parent"], id="P", **{LINEAGE_HEADER: ["R"]}):
        _on_before_task_publish(headers=headers)
    assert headers == {"id": "P", LINEAGE_HEADER: ["R"]}
    first: dict[str, Any] = {"id": "P"}
    with running(app.tasks["proj.parent"], id="P"):
        _on_before_task_publish(headers=first)
    assert first == {"id": "P"}


def test_an_eager_task_is_left_alone(app: Celery) -> None:
    headers: dict[str, Any] = {"id": "C"}
    with running(app.tasks["proj.parent"], id="P", is_eager=True):
        _on_before_task_publish(headers=headers)
    assert LINEAGE_HEADER not in headers


def test_a_task_of_an_app_that_is_not_installed_is_left_alone(
    app: Celery, bare_app: Celery
) -> None:
    headers: dict[str, Any] = {"id": "C"}
    with running(bare_app.tasks["proj.parent"], id="P"):
        _on_before_task_publish(headers=headers)
    assert LINEAGE_HEADER not in headers


def test_the_lineage_is_capped(app: Celery) -> None:
    lineage = [f"x{i}" for i in range(MAX_LINEAGE + 8)]
    headers: dict[str, Any] = {"id": "C"}
    with running(app.tasks["proj.parent"], id="P", **{LINEAGE_HEADER: lineage}):
        _on_before_task_publish(headers=headers)
    assert len(headers[LINEAGE_HEADER]) == MAX_LINEAGE
    assert headers[LINEAGE_HEADER] == [*lineage, "P"][-MAX_LINEAGE:]
    assert headers[LINEAGE_HEADER][-1] == "P"
    assert lineage == [f"x{i}" for i in range(MAX_LINEAGE + 8)]  # the request is not changed


def test_headers_that_are_not_a_dict_are_ignored(app: Celery) -> None:
    with running(app.tasks["proj.parent"], id="P"):
        _on_before_task_publish(headers=None)
        _on_before_task_publish(headers=[("id", "C")])


def test_a_publish_from_a_running_task_carries_the_lineage(app: Celery) -> None:
    """Through Celery itself: ``apply_async`` inside a task, on the in-memory broker."""
    sent: list[dict[str, Any]] = []

    def capture(headers: Any = None, **_: Any) -> None:
        sent.append(headers)  # the same dict every receiver sees

    before_task_publish.connect(capture, weak=False, dispatch_uid="test_hooks.capture")
    try:
        with running(app.tasks["proj.parent"], id="P", root_id="R", **{LINEAGE_HEADER: ["R"]}):
            result = app.tasks["proj.child"].apply_async()
        app.tasks["proj.child"].apply_async()  # and one from outside any task
    finally:
        before_task_publish.disconnect(capture, dispatch_uid="test_hooks.capture")
    inside, outside = sent
    assert inside["id"] == result.id
    assert inside[LINEAGE_HEADER] == ["R", "P"]
    assert inside["parent_id"] == "P" and inside["root_id"] == "R"
    assert LINEAGE_HEADER not in outside


def test_the_package_is_importable_as_documented() -> None:
    assert pictify_tasks.install is install and pictify_tasks.uninstall is uninstall
