"""The task side of webhooks in one process: the start's webhook URL, eager waits."""

from __future__ import annotations

import json
from typing import Any

import pytest
from celery.exceptions import Ignore

import pictify_tasks
from pictify_tasks._runtime import runtime_for
from pictify_tasks.limiter import LimiterConfig, StoreLimiter
from pictify_tasks.ratelimit import Priority
from pictify_tasks.revoke.links import BatchLinks
from pictify_tasks.store import MemoryStore
from pictify_tasks.store.ends import BatchEnd
from pictify_tasks.testing import PictifyEmulator, use_emulator
from tests.fakes import eager_app, memory_app, running

HOOK = "https://example.com/pictify/webhook"


def sent_webhook_url(emulator: PictifyEmulator) -> Any:
    [start] = emulator.requests_matching("POST", "/batch-render")
    return json.loads(start.body).get("webhookUrl")


@pytest.mark.parametrize(
    ("setting", "options", "expected"),
    [
        (HOOK, {}, HOOK),  # the setting is the default
        (HOOK, {"webhook_url": "https://other.example/hook"}, "https://other.example/hook"),
        (HOOK, {"webhook_url": None}, None),  # None: this batch without one
        (None, {}, None),
    ],
)
def test_the_webhook_url_setting_is_start_batchs_default(
    emulator: PictifyEmulator, setting: str | None, options: dict[str, Any], expected: str | None
) -> None:
    app = eager_app(emulator, pictify_webhook_url=setting)
    try:
        batch_id = app.tasks["pictify.start_batch"].delay("tpl", [{"n": 1}], **options).get()
        turn = runtime_for(app).store.wait_turn(batch_id, "probe", 60)
    finally:
        pictify_tasks.uninstall(app)
    assert sent_webhook_url(emulator) == expected
    assert turn.webhook is (expected is not None)  # what a wait reads to choose its interval


def test_an_eager_wait_returns_a_heard_end_without_polling(emulator: PictifyEmulator) -> None:
    app = eager_app(emulator)
    batch_id = emulator.create_batch(total_items=4)
    end = BatchEnd(batch_id, "partial", 4, 3, 1)
    try:
        runtime_for(app).store.hear_batch_end(end, "dlv-1", ttl=60, outcome_ttl=60)
        result = app.tasks["pictify.wait_for_batch"].delay(batch_id, raise_on=()).get()
    finally:
        pictify_tasks.uninstall(app)
    assert (result["status"], result["completed_items"], result["failed_items"]) == (
        "partial",
        3,
        1,
    )
    assert result["progress"] == 100.0
    assert emulator.requests_matching("GET", "/results") == []


def test_a_heard_failed_end_ends_the_wait_too(emulator: PictifyEmulator) -> None:
    """Pictify's one event, ``batch.completed``, tells a failed end as well: it ends the wait."""
    app = eager_app(emulator)
    batch_id = emulator.create_batch(total_items=4)
    try:
        end = BatchEnd(batch_id, "failed", 4, 0, 4)
        runtime_for(app).store.hear_batch_end(end, "dlv-1", ttl=60, outcome_ttl=60)
        with pytest.raises(pictify_tasks.BatchFailedError):
            app.tasks["pictify.wait_for_batch"].delay(batch_id).get()
    finally:
        pictify_tasks.uninstall(app)
    assert emulator.requests_matching("GET", "/results") == []


def test_an_eager_wait_with_webhooks_on_polls_at_its_own_interval(
    emulator: PictifyEmulator,
) -> None:
    # Nothing can wake an eager task: it keeps polling as asked, never for 300 s.
    emulator.items_per_second = 50.0
    app = eager_app(emulator, pictify_webhook_url=HOOK)
    try:
        batch_id = app.tasks["pictify.start_batch"].delay("tpl", [{"n": n} for n in range(5)]).get()
        result = app.tasks["pictify.wait_for_batch"].delay(batch_id, poll_interval=0.02).get()
    finally:
        pictify_tasks.uninstall(app)
    assert result["status"] == "completed"


class CountingStore(MemoryStore):
    """Names each store call a wait makes: each is one round trip to Redis."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def wait_turn(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("wait_turn" + ("+progress" if kwargs.get("progress") else ""))
        return super().wait_turn(*args, **kwargs)

    def note_progress(self, *args: Any) -> None:
        self.calls.append("note_progress")
        super().note_progress(*args)

    def finish_batch(self, batch_id: str, ttl: int) -> None:
        self.calls.append("finish_batch")
        super().finish_batch(batch_id, ttl)

    def revoked_among(self, links: BatchLinks) -> list[str]:
        self.calls.append("revoked_among")
        return super().revoked_among(links)

    def rate_limiter(self, bucket: str, config: LimiterConfig) -> StoreLimiter:
        limiter = super().rate_limiter(bucket, config)
        take = limiter.acquire

        def acquire(priority: Priority) -> float:
            self.calls.append("token")
            return take(priority)

        limiter.acquire = acquire  # type: ignore[method-assign]
        return limiter


def test_a_poll_makes_each_store_round_trip_once(emulator: PictifyEmulator) -> None:
    """Running: heard, token, register with its progress. Ended: also the claim and revoke check."""
    app = memory_app("poll-trips")
    use_emulator(app, emulator)
    store = CountingStore()
    runtime_for(app)._store = store
    batch_id = emulator.create_batch(total_items=4)
    task = app.tasks["pictify.wait_for_batch"]
    request = {"id": "wait-1", "root_id": "wait-1", "args": (batch_id,), "is_eager": False}
    try:
        with running(task, retries=0, **request), pytest.raises(Ignore):  # sent again
            task.run(batch_id)
        assert store.calls == ["wait_turn", "token", "wait_turn+progress"]
        store.calls.clear()
        emulator.set_batch_status(batch_id, "completed")
        with running(task, retries=1, **request):
            assert task.run(batch_id)["status"] == "completed"
        assert store.calls == ["wait_turn", "token", "finish_batch", "wait_turn", "revoked_among"]
    finally:
        pictify_tasks.uninstall(app)
