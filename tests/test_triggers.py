"""The cleanup triggers' settings and choices, without a worker."""

from __future__ import annotations

import pytest
from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from celery import Celery
from celery.app.task import Context
from celery.signals import task_revoked

from pictify_tasks import ImproperlyConfigured, PictifySettings
from pictify_tasks._runtime import runtime_for
from pictify_tasks.cleanup import failure_kind
from pictify_tasks.revoke.links import BatchLinks
from pictify_tasks.triggers import Trigger, parse_cancel_on
from tests.fakes import RecordingPublisher, memory_app


def test_triggers_are_read_from_a_list_or_a_comma_separated_string() -> None:
    both = frozenset({Trigger.REVOKE, Trigger.FAILURE})
    assert parse_cancel_on(["revoke", "failure"]) == both
    assert parse_cancel_on(" Revoke, failure ,") == both
    assert parse_cancel_on(()) == frozenset()
    with pytest.raises(ValueError, match="chain_failure"):
        parse_cancel_on(["revoke", "explode"])


def test_the_setting_defaults_to_revoke_and_reads_the_environment() -> None:
    app = Celery("triggers", set_as_current=False)
    assert PictifySettings.from_app(app, environ={}).cancel_on == {Trigger.REVOKE}
    env = {"PICTIFY_CANCEL_ON": "revoke,time_limit,worker_lost"}
    assert PictifySettings.from_app(app, environ=env).cancel_on == {
        Trigger.REVOKE,
        Trigger.TIME_LIMIT,
        Trigger.WORKER_LOST,
    }
    with pytest.raises(ImproperlyConfigured, match="PICTIFY_CANCEL_ON must be a list of revoke"):
        PictifySettings.from_app(app, environ={"PICTIFY_CANCEL_ON": "sometimes"})


@pytest.mark.parametrize(
    ("exception", "kind"),
    [
        (SoftTimeLimitExceeded(), Trigger.TIME_LIMIT),
        (TimeLimitExceeded(10), Trigger.TIME_LIMIT),
        (WorkerLostError("gone"), Trigger.WORKER_LOST),
        (ValueError("boom"), Trigger.FAILURE),
        (None, Trigger.FAILURE),
    ],
)
def test_a_failure_is_classified_by_its_exception(exception: object, kind: Trigger) -> None:
    assert failure_kind(exception) is kind  # type: ignore[arg-type]


def test_without_revoke_in_cancel_on_a_revoked_task_cancels_nothing() -> None:
    app = memory_app("no-revoke", "proj.child")
    app.conf.pictify_cancel_on = ["failure"]
    runtime = runtime_for(app)
    publisher = RecordingPublisher()
    runtime.fanout.publisher = publisher
    runtime.store.link_batch("b1", BatchLinks(frozenset({"t1"}), frozenset({"t1"})), 60)
    task_revoked.send(sender=app.tasks["proj.child"], request=Context(id="t1"), expired=False)
    assert publisher.calls == []
    assert runtime.store.revoke_ids(["t1"], "workflow", None).batches == ["b1"]  # type: ignore[arg-type]
