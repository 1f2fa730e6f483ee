"""``install`` / ``uninstall`` of the bootstep and signals, and the signal handlers.

The handlers are driven through Celery's own signals (``send``), as a worker
or a publish would fire them.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.app.task import Context
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.concurrency.thread import TaskPool as ThreadsPool
from celery.signals import (
    before_task_publish,
    task_revoked,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

import pictify_tasks
from pictify_tasks._runtime import runtime_for
from pictify_tasks.integration import install, integration, uninstall
from pictify_tasks.revoke.backlog import Backlog
from pictify_tasks.revoke.links import (
    LINEAGE_HEADER,
    MAX_LINEAGE,
    BatchLinks,
    Scope,
)
from pictify_tasks.revoke.listener import RevokeListener
from tests.fakes import RecordingPublisher, memory_app, running

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


SIGNALS = [task_revoked, before_task_publish, worker_shutdown, worker_process_shutdown]
ALL = [1] * len(SIGNALS)


def connected(signal: Any) -> int:
    """How many of the package's handlers are connected to ``signal``."""
    return sum(1 for (uid, _), _ in signal.receivers if str(uid).startswith("pictify:"))


def others_installed(*mine: Celery) -> bool:
    gc.collect()  # apps of earlier tests that are gone leave the installed set
    # type(), not isinstance(): isinstance would evaluate the package's task proxies.
    apps = [o for o in gc.get_objects() if issubclass(type(o), Celery)]
    return any(integration.installed(a) and all(a is not m for m in mine) for a in apps)


def revoked(app: Celery, **fields: Any) -> None:
    """Fire ``task_revoked`` for a task of ``app`` as a worker does."""
    request = Context(**fields)
    task_revoked.send(
        sender=app.tasks["proj.child"],
        request=request,
        terminated=False,
        signum=None,
        expired=False,
    )


def publish_headers(headers: Any) -> None:
    """Fire ``before_task_publish`` as ``apply_async`` does."""
    before_task_publish.send(
        sender="proj.child", body=(), headers=headers, exchange="", routing_key=""
    )


# -- install / uninstall -----------------------------------------------------------------------


def test_install_adds_the_bootstep_and_uninstall_removes_it(bare_app: Celery) -> None:
    assert RevokeListener not in bare_app.steps["consumer"]
    install(bare_app)
    try:
        assert integration.installed(bare_app)
        assert RevokeListener in bare_app.steps["consumer"]
        assert "pictify.cancel_batch" in bare_app.tasks
    finally:
        uninstall(bare_app)
    assert not integration.installed(bare_app)
    assert RevokeListener not in bare_app.steps["consumer"]
    assert "pictify.cancel_batch" not in bare_app.tasks


def test_signals_are_connected_while_any_app_is_installed() -> None:
    gc.collect()  # apps of earlier tests that are gone must leave the installed set first
    first, second = make_app(installed=False), make_app(installed=False)
    try:
        install(first)
        install(second)
        assert [connected(signal) for signal in SIGNALS] == ALL
        uninstall(first)
        assert [connected(signal) for signal in SIGNALS] == ALL
        uninstall(second)
        expected = 1 if others_installed(first, second) else 0
        assert [connected(signal) for signal in SIGNALS] == [expected] * len(SIGNALS)
        install(first)
        assert [connected(signal) for signal in SIGNALS] == ALL
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
    assert [connected(signal) for signal in SIGNALS] == ALL
    uninstall(app)  # one uninstall undoes both installs
    assert not integration.installed(app)
    assert RevokeListener not in app.steps["consumer"]


def test_uninstalling_an_app_that_is_not_installed_keeps_the_others_hooks(
    app: Celery, bare_app: Celery
) -> None:
    uninstall(bare_app)
    assert integration.installed(app)
    assert [connected(signal) for signal in SIGNALS] == ALL
    assert RevokeListener in app.steps["consumer"]


# -- the task_revoked handler --------------------------------------------------------------------


Recorder = RecordingPublisher


@pytest.fixture
def enqueued(app: Celery) -> Recorder:
    recorder = Recorder()
    runtime_for(app).fanout.publisher = recorder
    return recorder


def drain(app: Celery) -> None:
    """Wait until the fan-out's background thread has run everything handed to it so far."""
    done = threading.Event()
    runtime_for(app).fanout.in_background(done.set)
    assert done.wait(WAIT), "the background thread did not get to the end of its queue"


def link(app: Celery, batch_id: str, workflow: set[str], task: set[str]) -> None:
    links = BatchLinks(frozenset(workflow | task), frozenset(task))
    assert runtime_for(app).store.link_batch(batch_id, links, 3600) == []


def test_task_revoked_cancels_the_tasks_batches_on_a_background_thread(
    app: Celery, enqueued: Recorder
) -> None:
    link(app, "batch-1", {"child-1", "root-1"}, {"child-1", "root-1"})
    link(app, "batch-other", {"root-2"}, {"root-2"})
    revoked(app, id="child-1", root_id="root-1", parent_id="root-1", group=None)
    assert enqueued.called.wait(WAIT), "no cancel was enqueued"
    drain(app)
    assert enqueued.calls == [["batch-1"]]
    assert enqueued.threads[0].startswith("pictify-hooks")
    assert enqueued.threads[0] != threading.current_thread().name
    assert enqueued.wanted[0].reason == "revoked: child-1"


def test_task_revoked_never_widens_to_the_root_or_the_group(
    app: Celery, enqueued: Recorder
) -> None:
    """The signal hears the same id the listener would: the same id, the same batches.

    A dispatcher's root or a group is not revoked because one of its tasks is.
    """
    link(app, "batch-sibling", {"root-1", "group-1", "sibling"}, {"root-1", "sibling"})
    revoked(app, id="member-1", root_id="root-1", group="group-1")
    drain(app)
    assert enqueued.calls == []
    # ...and neither the root nor the group is remembered as revoked.
    links = BatchLinks(frozenset({"root-1", "group-1"}), frozenset({"root-1"}))
    assert runtime_for(app).store.link_batch("batch-late", links, 3600) == []


def test_task_revoked_in_task_scope_only_cancels_the_tasks_own_batches(
    app: Celery, enqueued: Recorder
) -> None:
    app.conf.pictify_revoke_scope = "task"
    runtime_for(app).reset()
    link(app, "batch-pred", {"root-1", "child-1"}, {"root-1"})  # child-1 is its chain successor
    link(app, "batch-own", {"root-1"}, {"child-1", "root-1"})
    revoked(app, id="child-1", root_id="root-1", group="group-1")
    drain(app)
    assert enqueued.calls == [["batch-own"]]


def test_an_expired_task_cancels_only_its_own_batches_and_is_not_remembered(
    app: Celery, enqueued: Recorder
) -> None:
    """Nobody revoked it: workflow scope would reach its chain predecessor's batch."""
    link(app, "batch-pred", {"root-1", "late-1"}, {"root-1"})
    link(app, "batch-own", {"root-1", "late-1"}, {"late-1", "root-1"})
    request = Context(id="late-1", root_id="root-1")
    task_revoked.send(sender=app.tasks["proj.child"], request=request, expired=True)
    drain(app)
    assert enqueued.calls == [["batch-own"]]
    assert enqueued.wanted[0].reason == "expired: late-1"
    links = BatchLinks(frozenset({"late-1"}), frozenset({"late-1"}))
    assert runtime_for(app).store.link_batch("batch-later", links, 3600) == []


def test_task_revoked_remembers_the_id_for_batches_linked_later(
    app: Celery, enqueued: Recorder
) -> None:
    revoked(app, id="child-1", root_id="root-1")
    drain(app)
    assert enqueued.calls == []
    links = BatchLinks(frozenset({"child-1"}), frozenset({"child-1"}))
    assert runtime_for(app).store.link_batch("batch-late", links, 3600) == ["child-1"]


class Exploding:
    """A request whose every attribute access raises."""

    def __getattribute__(self, name: str) -> Any:
        raise RuntimeError(f"boom reading {name}")


class Sender:
    """A task-like sender whose ``app`` is ``app`` (or raises when it is an exception)."""

    def __init__(self, app: Any) -> None:
        self._app = app

    @property
    def app(self) -> Any:
        if isinstance(self._app, Exception):
            raise self._app
        return self._app


def test_task_revoked_logs_an_error_and_never_raises(
    app: Celery, enqueued: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="pictify_tasks.integration"):
        task_revoked.send(sender=app.tasks["proj.child"], request=Exploding())
        task_revoked.send(sender=Sender(RuntimeError("boom")), request=Context(id="t"))
    failures = [r for r in caplog.records if "handling task_revoked failed" in r.getMessage()]
    assert len(failures) == 2
    assert all(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in failures)
    drain(app)
    assert enqueued.calls == []


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_task_revoked_of_an_app_that_is_not_installed_is_ignored(
    app: Celery, bare_app: Celery, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = runtime_for(bare_app)
    link(bare_app, "batch-1", {"root-1"}, {"root-1"})
    other = Recorder()
    runtime.fanout.publisher = other
    with caplog.at_level(logging.ERROR):
        task_revoked.send(
            sender=bare_app.tasks["proj.child"], request=Context(id="child-1", root_id="root-1")
        )
        drain(bare_app)
    assert other.calls == []
    assert errors_logged(caplog) == []
    # Nothing was remembered as revoked either: the batch is still found as running.
    assert runtime.store.revoke_ids(["root-1"], Scope.WORKFLOW, None).batches == ["batch-1"]


@pytest.mark.parametrize(
    "sender,request_",
    [(None, Context(id="t")), (Sender(None), Context(id="t")), ("task", None)],
    ids=["no sender", "sender without app", "no request"],
)
def test_task_revoked_without_sender_or_request_is_ignored_quietly(
    app: Celery, enqueued: Recorder, caplog: pytest.LogCaptureFixture, sender: Any, request_: Any
) -> None:
    link(app, "batch-1", {"t"}, {"t"})
    if sender == "task":
        sender = app.tasks["proj.child"]
    with caplog.at_level(logging.ERROR):
        task_revoked.send(sender=sender, request=request_)
        drain(app)
    assert enqueued.calls == []
    assert errors_logged(caplog) == []  # ignored on purpose, not swallowed as a failure


# -- the before_task_publish handler ---------------------------------------------------------------


@pytest.mark.parametrize("signal", [worker_shutdown, worker_process_shutdown])
def test_at_shutdown_the_backlog_is_tried_once_and_what_is_lost_is_logged(
    app: Celery, signal: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fanout = runtime_for(app).fanout
    fanout.backlog = Backlog(first_delay=300, max_delay=300)  # its thread never gets to it
    done: list[str] = []

    def refused() -> None:
        raise ConnectionError("store down")

    fanout.backlog.keep("revoke of ['wf-1']", lambda: done.append("wf-1"), keep_for=60)
    fanout.backlog.keep("revoke of ['wf-2']", refused, keep_for=60)
    with caplog.at_level(logging.ERROR, logger="pictify_tasks.revoke"):
        signal.send(sender=None, pid=1, exitcode=0)
    assert done == ["wf-1"]
    lost = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert lost == ["pictify-tasks: revoke of ['wf-2'] not done before the worker stopped: lost"]
    assert len(fanout.backlog) == 0


class FakeConsumer:
    """What ``worker_ready`` is sent by: a worker's consumer, with its app and pool."""

    def __init__(self, app: Celery, pool: Any) -> None:
        self.app = app
        self.pool = pool


@pytest.mark.parametrize(
    ("state_url", "pool", "shouts"),
    [
        ("memory://", PreforkPool(2), True),
        ("memory://", PreforkPool(1), True),  # the main process still hears the revokes
        ("memory://", ThreadsPool(4), False),
        ("redis://127.0.0.1:1/0", PreforkPool(2), False),
    ],
    ids=["memory-prefork-2", "memory-prefork-1", "memory-threads", "redis-prefork"],
)
def test_at_worker_ready_memory_state_under_a_prefork_pool_is_an_error(
    app: Celery, state_url: str, pool: Any, shouts: bool, caplog: pytest.LogCaptureFixture
) -> None:
    app.conf.pictify_state_url = state_url
    runtime_for(app).reload()
    with caplog.at_level(logging.INFO, logger="pictify_tasks.integration"):
        worker_ready.send(sender=FakeConsumer(app, pool))
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    prefork = [e for e in errors if "prefork" in e]
    assert len(prefork) == (1 if shouts else 0)
    if shouts:
        assert "Set pictify_state_url to a Redis URL" in prefork[0]
        assert f"concurrency {pool.limit}" in prefork[0]


def test_outside_a_task_headers_are_left_alone(app: Celery) -> None:
    headers = {"id": "C", "task": "proj.child"}
    publish_headers(headers)
    assert headers == {"id": "C", "task": "proj.child"}


def test_inside_a_task_the_lineage_is_carried_on(app: Celery) -> None:
    headers: dict[str, Any] = {"id": "C"}
    with running(app.tasks["proj.parent"], id="P", **{LINEAGE_HEADER: ["R"]}):
        publish_headers(headers)
    assert headers[LINEAGE_HEADER] == ["R", "P"]


def test_a_task_without_lineage_starts_one(app: Celery) -> None:
    headers: dict[str, Any] = {"id": "C"}
    with running(app.tasks["proj.parent"], id="P"):
        publish_headers(headers)
    assert headers[LINEAGE_HEADER] == ["P"]


def test_a_retry_or_replacement_keeps_its_ancestry_without_adding_itself(app: Celery) -> None:
    headers: dict[str, Any] = {"id": "P"}
    with running(app.tasks["proj.parent"], id="P", **{LINEAGE_HEADER: ["R"]}):
        publish_headers(headers)
    assert headers == {"id": "P", LINEAGE_HEADER: ["R"]}
    first: dict[str, Any] = {"id": "P"}
    with running(app.tasks["proj.parent"], id="P"):
        publish_headers(first)
    assert first == {"id": "P"}


def test_a_woken_wait_keeps_its_own_lineage(app: Celery) -> None:
    """``pictify.batch_ended`` sends waiting tasks' own messages again: it is not their parent."""
    headers: dict[str, Any] = {"id": "W", LINEAGE_HEADER: ["R", "S"]}
    with running(app.tasks["pictify.batch_ended"], id="E", **{LINEAGE_HEADER: ["X"]}):
        publish_headers(headers)
    assert headers[LINEAGE_HEADER] == ["R", "S"]


def test_an_eager_task_is_left_alone(app: Celery) -> None:
    headers: dict[str, Any] = {"id": "C"}
    with running(app.tasks["proj.parent"], id="P", is_eager=True):
        publish_headers(headers)
    assert LINEAGE_HEADER not in headers


def test_a_task_of_an_app_that_is_not_installed_is_left_alone(
    app: Celery, bare_app: Celery
) -> None:
    headers: dict[str, Any] = {"id": "C"}
    with running(bare_app.tasks["proj.parent"], id="P"):
        publish_headers(headers)
    assert LINEAGE_HEADER not in headers


def test_the_lineage_is_capped(app: Celery) -> None:
    lineage = [f"x{i}" for i in range(MAX_LINEAGE + 8)]
    headers: dict[str, Any] = {"id": "C"}
    with running(app.tasks["proj.parent"], id="P", **{LINEAGE_HEADER: lineage}):
        publish_headers(headers)
    assert len(headers[LINEAGE_HEADER]) == MAX_LINEAGE
    assert headers[LINEAGE_HEADER] == [*lineage, "P"][-MAX_LINEAGE:]
    assert headers[LINEAGE_HEADER][-1] == "P"
    assert lineage == [f"x{i}" for i in range(MAX_LINEAGE + 8)]  # the request is not changed


def test_headers_that_are_not_a_dict_are_ignored(app: Celery) -> None:
    with running(app.tasks["proj.parent"], id="P"):
        publish_headers(None)
        publish_headers([("id", "C")])


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
