"""The tasks, eagerly, against the emulator: a state store that fails is waited out, a
rate limit that would end past the deadline is the final failure."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

import pictify_tasks
from pictify_tasks._runtime import runtime_for
from pictify_tasks.client import batch_render_body
from pictify_tasks.errors import InvalidRequestError, ServerError
from pictify_tasks.ids import idempotency_key_for
from pictify_tasks.retry import NoTokenInTimeError
from pictify_tasks.revoke.links import BatchLinks, Scope
from pictify_tasks.signals import cancel_failed
from pictify_tasks.store import MemoryStore, StateStoreError
from pictify_tasks.store.base import RevokedWork
from pictify_tasks.store.records import StartRequest
from pictify_tasks.tasks import cancelling
from pictify_tasks.testing import PictifyEmulator
from tests.fakes import Heard, Limiter, retrying_app


class StoreDownAtFirst(MemoryStore):
    """A memory store whose reads of starts and revokes fail ``times`` times, as a Redis down."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.failures_left = times

    def _maybe_down(self) -> None:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise StateStoreError("state store: ConnectionError: refused")

    def start_request(self, start_id: str) -> StartRequest | None:
        self._maybe_down()
        return super().start_request(start_id)

    def revoke_ids(self, ids: list[str], scope: Scope, ttl: int | None) -> RevokedWork:
        self._maybe_down()
        return super().revoke_ids(ids, scope, ttl)


@pytest.fixture
def app(emulator: PictifyEmulator) -> Iterator[Celery]:
    # An attempt cap counts HTTP attempts, not store trouble.
    app = retrying_app(emulator, pictify_cancel_max_attempts=1)
    yield app
    pictify_tasks.uninstall(app)


def use_store(app: Celery, store: MemoryStore) -> None:
    """Make ``store`` the app's state store in this process."""
    runtime_for(app)._store = store


def record_start(store: MemoryStore, start_id: str, rows: list[dict[str, Any]]) -> StartRequest:
    start = StartRequest(
        start_id=start_id,
        template_uid="tpl_cards",
        body=batch_render_body(rows, format="webp", webhook_url="https://hooks.example/p"),
        idempotency_key=idempotency_key_for("start", start_id),
    )
    store.begin_start(start, BatchLinks(frozenset({"wf-1"}), frozenset()), 3600)
    return start


def test_cancel_start_waits_out_a_state_store_that_does_not_answer(
    app: Celery, emulator: PictifyEmulator
) -> None:
    store = StoreDownAtFirst(times=2)
    use_store(app, store)
    record_start(store, "start-1", [{"name": "Ada"}])
    result = app.tasks["pictify.cancel_start"].delay("start-1").get()
    assert result["outcome"] == "cancelled"
    assert store.failures_left == 0
    assert len(emulator.requests_matching("POST", "/batch-render")) == 1


def test_cancel_workflow_waits_out_a_state_store_that_does_not_answer(
    app: Celery, emulator: PictifyEmulator
) -> None:
    store = StoreDownAtFirst(times=2)
    use_store(app, store)
    batch_id = emulator.create_batch()
    store.link_batch(batch_id, BatchLinks(frozenset({"wf-1"}), frozenset()), 3600)
    assert app.tasks["pictify.cancel_workflow"].delay("wf-1").get() == [batch_id]
    assert store.failures_left == 0
    assert [r.status for r in emulator.cancel_requests(batch_id)] == [200]


def configure(app: Celery, *, limiter: Limiter | None = None, **conf: Any) -> None:
    """Set ``conf`` and read the settings again; ``limiter`` replaces the one they build."""
    app.conf.update(conf)
    runtime = runtime_for(app)
    runtime.reload()
    if limiter is not None:
        runtime._limiter = limiter


def test_a_wait_whose_limiter_store_is_down_polls_again(
    app: Celery, emulator: PictifyEmulator
) -> None:
    limiter = Limiter(down=2)
    configure(app, limiter=limiter)
    batch_id = emulator.create_batch(status="completed")
    result = app.tasks["pictify.wait_for_batch"].delay(batch_id, poll_interval=0.01).get()
    assert result["status"] == "completed" and limiter.down == 0


def test_a_start_whose_token_comes_after_the_deadline_fails_for_good(
    app: Celery, emulator: PictifyEmulator
) -> None:
    configure(app, pictify_cancel_deadline=30, limiter=Limiter(wait=40.0))
    with pytest.raises(NoTokenInTimeError, match="no request token before the deadline"):
        app.tasks["pictify.start_batch"].delay("tpl_cards", [{"name": "Ada"}]).get()
    assert emulator.requests_matching("POST", "/batch-render") == []


def test_the_attempt_cap_counts_requests_not_a_store_that_did_not_answer(
    app: Celery, emulator: PictifyEmulator
) -> None:
    """Cap 2: the replay that met a 503 is sent again, though the store's trouble came first."""
    configure(app, pictify_cancel_max_attempts=2)
    store = StoreDownAtFirst(times=1)
    use_store(app, store)
    record_start(store, "start-1", [{"name": "Ada"}])
    emulator.inject(status=503, times=1, path_contains="/batch-render")
    result = app.tasks["pictify.cancel_start"].delay("start-1").get()
    assert result["outcome"] == "cancelled"
    starts = emulator.requests_matching("POST", "/batch-render")
    assert [r.status for r in starts] == [503, 202]


def test_the_attempt_cap_counts_requests_not_waits_for_a_token(
    app: Celery, emulator: PictifyEmulator
) -> None:
    """Cap 2: a start that waited for its token still gets its second request after a 503."""
    configure(app, pictify_cancel_max_attempts=2, limiter=Limiter(wait=0.01, waits=1))
    emulator.inject(status=503, times=1, path_contains="/batch-render")
    batch_id = app.tasks["pictify.start_batch"].delay("tpl_cards", [{"name": "Ada"}]).get()
    assert batch_id in emulator.batches()
    assert [r.status for r in emulator.requests_matching("POST", "/batch-render")] == [503, 202]


def test_a_cancel_that_lags_is_confirmed_by_a_new_request(
    app: Celery, emulator: PictifyEmulator
) -> None:
    """The first 200 still says processing; replaying its key would say so until the deadline."""
    configure(app, pictify_cancel_max_attempts=None, pictify_cancel_deadline=10)
    emulator.cancel_lag = 0.2
    batch_id = emulator.create_batch()
    result = app.tasks["pictify.cancel_batch"].delay(batch_id).get()
    assert result["outcome"] == "cancelled" and result["attempts"] >= 2
    answers = [r.status for r in emulator.cancel_requests(batch_id)]
    assert answers[0] == 200 and len(answers) == result["attempts"]
    assert emulator.batch(batch_id)["status"] == "cancelled"


def test_a_replayed_start_sends_the_recorded_body_exactly(
    app: Celery, emulator: PictifyEmulator
) -> None:
    """Its fields in the recorded order (as another version may have written them)."""
    store = MemoryStore()
    use_store(app, store)
    body = {
        "webhookUrl": "https://hooks.example/p",
        "format": "webp",
        "variableSets": [{"name": "Ada"}],
    }
    store.begin_start(
        StartRequest("start-2", "tpl_cards", body, idempotency_key_for("start", "start-2")),
        BatchLinks(frozenset({"wf-2"}), frozenset()),
        3600,
    )
    assert app.tasks["pictify.cancel_start"].delay("start-2").get()["outcome"] == "cancelled"
    (sent,) = emulator.requests_matching("POST", "/batch-render")
    assert list(json.loads(sent.body).items()) == list(body.items())


def test_a_recorded_body_that_is_not_valid_is_never_sent(
    app: Celery, emulator: PictifyEmulator
) -> None:
    store = MemoryStore()
    use_store(app, store)
    start = StartRequest("start-3", "tpl_cards", {"variableSets": []}, "key-3")
    store.begin_start(start, BatchLinks(frozenset({"wf-3"}), frozenset()), 3600)
    with pytest.raises(InvalidRequestError, match="at least one object"):
        app.tasks["pictify.cancel_start"].delay("start-3").get()
    assert emulator.requests_matching("POST", "/batch-render") == []


def test_a_start_whose_replay_fails_for_good_is_a_loud_cancel_failure(
    app: Celery, emulator: PictifyEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Its batch id never known: told under ``start/<id>``, as any cancel's final failure."""
    configure(app, pictify_cancel_max_attempts=2)
    store = StoreDownAtFirst(times=1)  # store trouble first: no request, not counted
    use_store(app, store)
    record_start(store, "start-4", [{"name": "Ada"}])
    emulator.inject(status=503, times=2, path_contains="/batch-render")
    caplog.set_level(logging.ERROR, logger="pictify_tasks.cancel")
    with Heard(cancel_failed) as heard, pytest.raises(ServerError):
        app.tasks["pictify.cancel_start"].delay("start-4").get()
    [sent] = heard.calls
    assert (sent["batch_id"], sent["attempts"]) == ("start/start-4", 2)
    assert isinstance(sent["error"], ServerError)
    [line] = [r.getMessage() for r in caplog.records if r.name == "pictify_tasks.cancel"]
    assert line.startswith("pictify cancel batch_id=start/start-4 workflow_id=- decision=failed")
    assert 'reason="start start-4 killed before its answer"' in line


def test_a_replay_cut_short_by_the_soft_time_limit_is_retried(
    app: Celery, emulator: PictifyEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in a cancel step: the outcome is unknown, so the same request goes again."""
    configure(app, pictify_cancel_max_attempts=2)
    store = MemoryStore()
    use_store(app, store)
    record_start(store, "start-5", [{"name": "Ada"}])
    replay = cancelling.replay_start
    cuts = [SoftTimeLimitExceeded()]

    def cut_once(client: Any, start: StartRequest) -> str:
        if cuts:
            raise cuts.pop()
        return replay(client, start)

    monkeypatch.setattr(cancelling, "replay_start", cut_once)
    assert app.tasks["pictify.cancel_start"].delay("start-5").get()["outcome"] == "cancelled"
    assert len(emulator.requests_matching("POST", "/batch-render")) == 1


def test_a_start_whose_replay_gets_no_token_in_time_fails_after_no_request(
    app: Celery, emulator: PictifyEmulator
) -> None:
    """The final failure of a replay that never went out counts no attempt."""
    configure(app, pictify_cancel_deadline=30, limiter=Limiter(wait=40.0))
    store = MemoryStore()
    use_store(app, store)
    record_start(store, "start-6", [{"name": "Ada"}])
    with Heard(cancel_failed) as heard, pytest.raises(NoTokenInTimeError):
        app.tasks["pictify.cancel_start"].delay("start-6").get()
    [sent] = heard.calls
    assert (sent["batch_id"], sent["attempts"]) == ("start/start-6", 0)
    assert emulator.requests_matching("POST", "/batch-render") == []
