"""What a team sees of a cancel: signals, one structured log line per decision, metrics,
the auto-cancel's place in its workflow, and the worker's start-up line."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, chain
from celery.signals import before_task_publish
from prometheus_client import REGISTRY

import pictify_tasks
from pictify_tasks.signals import batch_cancelled, batch_tracked, cancel_failed, cancel_retried
from pictify_tasks.testing import PictifyEmulator
from tests.fakes import Heard, retrying_app


@pytest.fixture
def app(emulator: PictifyEmulator) -> Iterator[Celery]:
    app = retrying_app(emulator, pictify_cancel_deadline=1.0)
    yield app
    pictify_tasks.uninstall(app)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_an_outcome_is_one_log_line_one_signal_and_a_metric(
    app: Celery, emulator: PictifyEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    batch_id = emulator.create_batch()
    emulator.inject(status=503, times=1, path_contains=f"/{batch_id}/cancel")
    before = value("pictify_cancels_total", outcome="cancelled")
    retries = value("pictify_cancel_retries_total", reason="ServerError")
    task = app.tasks["pictify.cancel_batch"]
    caplog.set_level(logging.INFO, logger="pictify_tasks.cancel")
    with Heard(batch_cancelled) as cancelled, Heard(cancel_retried) as retried:
        task.delay(batch_id, reason="revoked: wf-1").get()
        task.delay(batch_id).get()  # replayed from the ledger: no second signal
    [sent] = cancelled.calls
    assert (sent["batch_id"], sent["outcome"]) == (batch_id, "cancelled")
    assert sent["reason"] == "revoked: wf-1"
    assert sent["latency"] >= 0
    assert [(r["batch_id"], r["attempt"]) for r in retried.calls] == [(batch_id, 1)]
    lines = [r.getMessage() for r in caplog.records if r.name == "pictify_tasks.cancel"]
    assert lines == [
        lines[0],
        f"pictify cancel batch_id={batch_id} workflow_id=- decision=outcome outcome=cancelled "
        'attempt=2 reason="revoked: wf-1"',
        f"pictify cancel batch_id={batch_id} workflow_id=- decision=replayed outcome=cancelled "
        "attempt=2 reason=-",
    ]
    assert "decision=retry attempt=1" in lines[0] and "ServerError" in lines[0]
    assert emulator.api_key not in " ".join(lines)
    assert value("pictify_cancels_total", outcome="cancelled") == before + 1
    assert value("pictify_cancel_retries_total", reason="ServerError") == retries + 1
    assert value("pictify_revoke_to_cancel_seconds_count") >= 1


def test_a_failure_for_good_is_signalled_and_counted(
    app: Celery, emulator: PictifyEmulator
) -> None:
    batch_id = emulator.create_batch()
    emulator.inject(status=401, times=1, path_contains=f"/{batch_id}/cancel")
    failures = value("pictify_cancel_failures_total")
    with Heard(cancel_failed) as failed, pytest.raises(pictify_tasks.AuthenticationError):
        app.tasks["pictify.cancel_batch"].delay(batch_id).get()
    [sent] = failed.calls
    assert sent["batch_id"] == batch_id and sent["attempts"] == 1
    assert isinstance(sent["error"], pictify_tasks.AuthenticationError)
    assert value("pictify_cancel_failures_total") == failures + 1


def test_a_started_batch_is_signalled_as_tracked_under_its_workflow(
    app: Celery, emulator: PictifyEmulator
) -> None:
    with Heard(batch_tracked) as tracked:
        result = app.tasks["pictify.start_batch"].delay("tpl", [{"n": 1}])
        batch_id = result.get()
    assert tracked.calls == [{"batch_id": batch_id, "workflow_id": result.id}]


def test_an_auto_cancel_is_published_inside_the_revoked_workflow(emulator: PictifyEmulator) -> None:
    """Its root and parent are the workflow's; its reason says which revoke caused it."""
    app = Celery(f"auto-{uuid.uuid4().hex[:6]}", broker="memory://", set_as_current=False)
    app.conf.update(
        pictify_api_key=emulator.api_key,
        pictify_base_url=emulator.base_url,
        pictify_state_url="memory://",
    )
    pictify_tasks.install(app)
    sent: list[tuple[dict[str, Any], Any]] = []

    def capture(headers: Any = None, body: Any = None, **_: Any) -> None:
        if headers.get("task") == "pictify.cancel_batch":
            sent.append((dict(headers), body))

    before_task_publish.connect(capture, weak=False, dispatch_uid="test_reporting.capture")
    try:
        from tests.fakes import running

        start = app.tasks["pictify.start_batch"]
        with running(start, id="start-1", root_id="root-1", parent_id="root-1"):
            pictify_tasks.track_batch("batch-1", app=app)
        pictify_tasks.cancel_workflow("root-1", app=app)
    finally:
        before_task_publish.disconnect(capture, dispatch_uid="test_reporting.capture")
        pictify_tasks.uninstall(app)
    [(headers, (args, kwargs, _))] = sent
    assert args == ["batch-1"] or args == ("batch-1",)
    assert kwargs == {"reason": "revoked: root-1"}
    assert (headers["root_id"], headers["parent_id"]) == ("root-1", "start-1")


def test_a_wait_in_a_chain_returns_a_batch_that_had_already_completed(
    app: Celery, emulator: PictifyEmulator
) -> None:
    batch_id = emulator.create_batch(status="completed")
    flow = chain(app.tasks["pictify.wait_for_batch"].s(batch_id, poll_interval=0.01))
    assert flow.apply_async().get()["status"] == "completed"
