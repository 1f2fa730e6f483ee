"""The sweep alone: what it re-sends, and that one sweeper works at a time."""

from __future__ import annotations

import time

from celery import Celery

from pictify_tasks._runtime import runtime_for
from pictify_tasks.store.records import WantedCancel
from pictify_tasks.sweep import sweep_once
from tests.fakes import RecordingPublisher, memory_app


def app_with_publisher() -> tuple[Celery, RecordingPublisher]:
    app = memory_app("sweep-test")
    app.conf.pictify_sweep_interval = 30
    publisher = RecordingPublisher()
    runtime_for(app).fanout.publisher = publisher
    return app, publisher


def test_a_wanted_cancel_with_no_task_on_it_is_sent_again_with_its_first_ask() -> None:
    app, publisher = app_with_publisher()
    runtime = runtime_for(app)
    asked = time.time() - 3600
    runtime.store.want_cancels([WantedCancel("b1", asked, "revoked: wf")], 7200)
    later = time.time() + 60  # one interval on
    assert sweep_once(runtime, "worker-a", now=later) == ["b1"]
    assert publisher.wanted == [WantedCancel("b1", asked, "revoked: wf")]
    # not again within the next interval, and never by a second sweeper meanwhile
    assert sweep_once(runtime, "worker-b", now=later + 40) == []
    app.close()


def test_a_fresh_cancel_is_left_alone() -> None:
    app, publisher = app_with_publisher()
    runtime = runtime_for(app)
    runtime.store.want_cancels([WantedCancel("b1", time.time(), "")], 7200)
    assert sweep_once(runtime, "worker-a") == []
    assert publisher.calls == []
    app.close()
