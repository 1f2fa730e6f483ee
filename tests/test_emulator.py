"""Unit tests of the Pictify emulator, over real HTTP with ``requests``.

The rest of the test suite trusts the emulator to behave like the API and to
misbehave exactly as asked, so each behaviour here is pinned by a test.
"""

from __future__ import annotations

import dataclasses
import math
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from pictify_tasks.testing import Fault, PictifyEmulator, RecordedRequest
from pictify_tasks.testing.emulator.ratelimit import RateLimiter as EmulatorRateLimiter

REPO_ROOT = Path(__file__).resolve().parents[1]
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
RESULT_KEYS = {
    "batchId",
    "status",
    "progress",
    "totalItems",
    "completedItems",
    "failedItems",
    "results",
    "errors",
    "createdAt",
    "startedAt",
    "completedAt",
}
PROBLEM_KEYS = {"type", "title", "status", "detail", "instance"}


@pytest.fixture
def emu() -> Iterator[PictifyEmulator]:
    """An emulator whose batches do not progress unless a test asks them to."""
    with PictifyEmulator(items_per_second=0) as emulator:
        yield emulator


def call(
    emu: PictifyEmulator,
    method: str,
    path: str,
    *,
    key: str | None = "default",
    json: Any = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> requests.Response:
    """One request on a fresh connection, authenticated with the emulator's key."""
    sent = dict(headers or {})
    if key is not None:
        sent["Authorization"] = f"Bearer {emu.api_key if key == 'default' else key}"
    return requests.request(
        method, emu.base_url + path, json=json, data=data, headers=sent, timeout=timeout
    )


def results(emu: PictifyEmulator, batch_id: str) -> dict[str, Any]:
    response = call(emu, "GET", f"/templates/batch/{batch_id}/results")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def cancel(emu: PictifyEmulator, batch_id: str, **kwargs: Any) -> requests.Response:
    return call(emu, "POST", f"/templates/batch/{batch_id}/cancel", **kwargs)


def render(emu: PictifyEmulator, body: Any, **kwargs: Any) -> requests.Response:
    return call(emu, "POST", "/templates/tpl_1/batch-render", json=body, **kwargs)


def assert_problem(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_KEYS
    assert body["status"] == status
    return body


def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    """Poll with a deadline, for state that changes with time rather than by request."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        time.sleep(0.01)


# --------------------------------------------------------------------------- lifecycle


def test_base_url_and_stop_is_idempotent() -> None:
    emulator = PictifyEmulator()
    with pytest.raises(RuntimeError):
        _ = emulator.base_url
    emulator.start()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", emulator.base_url)
    assert call(emulator, "GET", "/templates/batch/nope/results").status_code == 404
    emulator.stop()
    emulator.stop()
    assert not emulator.running
    with pytest.raises(requests.ConnectionError):
        call(emulator, "GET", "/templates/batch/nope/results", timeout=2)


def test_restart_reuses_the_port_and_keeps_batches() -> None:
    with PictifyEmulator(items_per_second=0) as emulator:
        url = emulator.base_url
        batch_id = emulator.create_batch()
        emulator.stop()
        emulator.start()
        assert emulator.base_url == url
        assert results(emulator, batch_id)["status"] == "processing"


def test_stop_closes_kept_alive_connections() -> None:
    emulator = PictifyEmulator().start()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {emulator.api_key}"
    assert session.get(emulator.base_url + "/nothing", timeout=5).status_code == 404
    emulator.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(emulator.base_url + "/nothing", timeout=2)
    session.close()


# --------------------------------------------------------------------------- batch-render


def test_render_accepts_a_valid_body(emu: PictifyEmulator) -> None:
    body = {
        "variableSets": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        "format": "webp",
        "quality": 0.5,
        "concurrency": 3,
        "layout": "square",
        "layouts": ["square", "story"],
        "webhookUrl": "https://example.invalid/hook",
    }
    response = render(emu, body)
    assert response.status_code == 202
    assert response.headers["Content-Type"] == "application/json"
    data = response.json()
    assert set(data) == {"batchId", "status", "totalItems", "message"}
    assert data["status"] == "pending"
    assert data["totalItems"] == 3
    assert re.fullmatch(r"batch_[0-9a-f]{24}", data["batchId"])
    assert emu.batches() == [data["batchId"]]
    snapshot = emu.batch(data["batchId"])
    assert snapshot["status"] == "pending"
    assert snapshot["totalItems"] == 3


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({}, "variableSets", "required"),
        ({"variableSets": {}}, "variableSets", "invalid_type"),
        ({"variableSets": []}, "variableSets", "too_small"),
        ({"variableSets": [{}] * 101}, "variableSets", "too_big"),
        ({"variableSets": [{}, 3]}, "variableSets[1]", "invalid_type"),
        ({"variableSets": [{}], "format": "gif"}, "format", "invalid_enum"),
        ({"variableSets": [{}], "quality": 0.05}, "quality", "out_of_range"),
        ({"variableSets": [{}], "quality": "high"}, "quality", "out_of_range"),
        ({"variableSets": [{}], "concurrency": 11}, "concurrency", "out_of_range"),
        ({"variableSets": [{}], "concurrency": True}, "concurrency", "out_of_range"),
        ({"variableSets": [{}], "layout": 5}, "layout", "invalid_type"),
        ({"variableSets": [{}], "layouts": "square"}, "layouts", "invalid_type"),
        ({"variableSets": [{}], "webhookUrl": "ftp://x"}, "webhookUrl", "invalid_url"),
        ([{}], "body", "invalid_type"),
    ],
)
def test_render_rejects_invalid_bodies(
    emu: PictifyEmulator, body: Any, field: str, code: str
) -> None:
    problem = assert_problem(render(emu, body), 400)
    assert {"field": field, "code": code} in [
        {"field": e["field"], "code": e["code"]} for e in problem["errors"]
    ]
    assert all(e["message"] for e in problem["errors"])
    assert emu.batches() == []


def test_render_reports_every_invalid_field_and_bad_json(emu: PictifyEmulator) -> None:
    problem = assert_problem(render(emu, {"format": "gif", "concurrency": 0}), 400)
    assert {e["field"] for e in problem["errors"]} == {"variableSets", "format", "concurrency"}
    broken = call(
        emu,
        "POST",
        "/templates/tpl_1/batch-render",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert assert_problem(broken, 400)["errors"][0]["code"] == "invalid_json"


def test_render_boundaries_are_inclusive(emu: PictifyEmulator) -> None:
    body = {"variableSets": [{}] * 100, "quality": 1, "concurrency": 10}
    assert render(emu, body).status_code == 202
    assert render(emu, {"variableSets": [{}], "quality": 0.1, "concurrency": 1}).status_code == 202


# --------------------------------------------------------------------------- progress


def test_results_shape_of_a_running_batch(emu: PictifyEmulator) -> None:
    batch_id = emu.create_batch(total_items=4, status="processing")
    data = results(emu, batch_id)
    assert set(data) == RESULT_KEYS
    assert data["batchId"] == batch_id
    assert (data["status"], data["progress"], data["totalItems"]) == ("processing", 0, 4)
    assert (data["completedItems"], data["failedItems"]) == (0, 0)
    assert data["results"] == [] and data["errors"] == []
    assert ISO_RE.match(data["createdAt"]) and ISO_RE.match(data["startedAt"])
    assert data["completedAt"] is None


def test_zero_rate_never_progresses(emu: PictifyEmulator) -> None:
    pending = emu.create_batch(total_items=2, status="pending")
    data = results(emu, pending)
    assert (data["status"], data["startedAt"], data["completedItems"]) == ("pending", None, 0)


def test_batch_progresses_with_time_to_completed(emu: PictifyEmulator) -> None:
    batch_id = emu.create_batch(total_items=5, status="pending", items_per_second=1000)
    wait_until(lambda: results(emu, batch_id)["status"] == "completed")
    data = results(emu, batch_id)
    assert (data["progress"], data["completedItems"], data["failedItems"]) == (100, 5, 0)
    assert data["results"] == [
        {"index": i, "url": f"https://cdn.emulator.invalid/{batch_id}/{i}.png"} for i in range(5)
    ]
    assert data["createdAt"] <= data["startedAt"] <= data["completedAt"]


def test_batch_is_processing_in_between(emu: PictifyEmulator) -> None:
    batch_id = emu.create_batch(total_items=100_000, status="pending", items_per_second=500)
    wait_until(lambda: results(emu, batch_id)["completedItems"] > 0)
    data = results(emu, batch_id)
    assert data["status"] == "processing"
    assert 0 < data["completedItems"] < 100_000
    assert len(data["results"]) == data["completedItems"]
    assert data["progress"] == data["completedItems"] * 100 // 100_000
    assert ISO_RE.match(data["startedAt"])


def test_http_batches_use_the_emulator_rate() -> None:
    with PictifyEmulator(items_per_second=1000) as emulator:
        batch_id = render(emulator, {"variableSets": [{}] * 3, "format": "jpeg"}).json()["batchId"]
        wait_until(lambda: results(emulator, batch_id)["status"] == "completed")
        assert results(emulator, batch_id)["results"][2]["url"].endswith(f"{batch_id}/2.jpeg")


@pytest.mark.parametrize(
    ("status", "completed", "failed"),
    [("completed", 4, 0), ("partial", 2, 2), ("failed", 0, 4), ("cancelled", 0, 0)],
)
def test_terminal_batches_stay_terminal(status: str, completed: int, failed: int) -> None:
    with PictifyEmulator(items_per_second=1000) as emulator:
        batch_id = emulator.create_batch(total_items=4, status=status)
        data = results(emulator, batch_id)
        assert data["status"] == status
        assert (data["completedItems"], data["failedItems"]) == (completed, failed)
        assert len(data["results"]) == completed and len(data["errors"]) == failed
        assert data["completedAt"] is not None


def test_set_batch_status_forces_and_resumes(emu: PictifyEmulator) -> None:
    batch_id = emu.create_batch(total_items=3, status="pending")
    emu.set_batch_status(batch_id, "processing")
    assert results(emu, batch_id)["status"] == "processing"
    emu.set_batch_status(batch_id, "completed")
    data = results(emu, batch_id)
    assert (data["status"], data["completedItems"], data["progress"]) == ("completed", 3, 100)
    with pytest.raises(ValueError):
        emu.set_batch_status(batch_id, "done")
    with pytest.raises(KeyError):
        emu.set_batch_status("batch_unknown", "failed")
    with pytest.raises(KeyError):
        emu.batch("batch_unknown")


def test_results_of_unknown_batch_is_404(emu: PictifyEmulator) -> None:
    problem = assert_problem(call(emu, "GET", "/templates/batch/batch_missing/results"), 404)
    assert problem["instance"] == "/templates/batch/batch_missing/results"
    assert problem["title"] == "Not Found"


# --------------------------------------------------------------------------- cancel


def test_cancel_running_batch_keeps_rendered_items(emu: PictifyEmulator) -> None:
    batch_id = emu.create_batch(total_items=100_000, items_per_second=1000)
    wait_until(lambda: results(emu, batch_id)["completedItems"] >= 2)
    response = cancel(emu, batch_id)
    assert response.status_code == 200
    assert response.json() == {
        "batchId": batch_id,
        "status": "cancelled",
        "message": "Batch cancelled",
    }
    frozen = results(emu, batch_id)
    assert frozen["status"] == "cancelled"
    assert frozen["completedItems"] >= 2
    assert len(frozen["results"]) == frozen["completedItems"]
    assert frozen["completedAt"] is not None
    # At 1000 items/s any further rendering would show within a few ms.
    deadline = time.monotonic() + 0.05
    while time.monotonic() < deadline:
        assert results(emu, batch_id)["completedItems"] == frozen["completedItems"]
    snapshot = emu.batch(batch_id)
    assert (snapshot["cancelRequests"], snapshot["effectiveCancels"]) == (1, 1)


def test_cancel_pending_batch(emu: PictifyEmulator) -> None:
    batch_id = emu.create_batch(status="pending")
    assert cancel(emu, batch_id).json()["status"] == "cancelled"
    data = results(emu, batch_id)
    assert (data["status"], data["completedItems"], data["startedAt"]) == ("cancelled", 0, None)


def test_cancel_already_cancelled_is_200(emu: PictifyEmulator) -> None:
    batch_id = emu.create_batch()
    assert cancel(emu, batch_id).json()["message"] == "Batch cancelled"
    again = cancel(emu, batch_id)
    assert again.status_code == 200
    assert again.json() == {
        "batchId": batch_id,
        "status": "cancelled",
        "message": "Batch was already cancelled",
    }
    snapshot = emu.batch(batch_id)
    assert (snapshot["cancelRequests"], snapshot["effectiveCancels"]) == (2, 1)


@pytest.mark.parametrize("status", ["completed", "partial", "failed"])
def test_cancel_finished_batch_is_409(emu: PictifyEmulator, status: str) -> None:
    batch_id = emu.create_batch(status=status)
    problem = assert_problem(cancel(emu, batch_id), 409)
    assert problem["title"] == "Conflict"
    assert problem["batchStatus"] == status
    assert "already finished" in problem["detail"]
    snapshot = emu.batch(batch_id)
    assert snapshot["status"] == status
    assert (snapshot["cancelRequests"], snapshot["effectiveCancels"]) == (1, 0)


def test_cancel_after_natural_completion_is_409(emu: PictifyEmulator) -> None:
    batch_id = emu.create_batch(total_items=2, items_per_second=1000)
    wait_until(lambda: results(emu, batch_id)["status"] == "completed")
    assert assert_problem(cancel(emu, batch_id), 409)["batchStatus"] == "completed"


def test_cancel_unknown_batch_is_404(emu: PictifyEmulator) -> None:
    assert_problem(cancel(emu, "batch_000000000000000000000000"), 404)


# --------------------------------------------------------------------------- routing


def test_v1_prefix_is_accepted(emu: PictifyEmulator) -> None:
    created = call(emu, "POST", "/v1/templates/t/batch-render", json={"variableSets": [{}]})
    assert created.status_code == 202
    batch_id = created.json()["batchId"]
    assert call(emu, "GET", f"/v1/templates/batch/{batch_id}/results").json()["status"] == (
        "pending"
    )
    assert call(emu, "POST", f"/v1/templates/batch/{batch_id}/cancel").status_code == 200
    assert [r.path for r in emu.cancel_requests(batch_id)] == [
        f"/v1/templates/batch/{batch_id}/cancel"
    ]


def test_unknown_path_is_404_and_wrong_method_is_405(emu: PictifyEmulator) -> None:
    assert_problem(call(emu, "GET", "/templates"), 404)
    assert_problem(call(emu, "POST", "/v2/templates/batch/x/cancel"), 404)
    batch_id = emu.create_batch()
    wrong = call(emu, "GET", f"/templates/batch/{batch_id}/cancel")
    assert_problem(wrong, 405)
    assert wrong.headers["Allow"] == "POST"
    assert call(emu, "DELETE", f"/templates/batch/{batch_id}/results").status_code == 405
    assert emu.batch(batch_id)["status"] == "processing"


# --------------------------------------------------------------------------- auth


def test_missing_and_wrong_key_are_401_with_rate_headers(emu: PictifyEmulator) -> None:
    batch_id = emu.create_batch()
    missing = cancel(emu, batch_id, key=None)
    assert_problem(missing, 401)
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(
        missing.headers
    )
    assert_problem(cancel(emu, batch_id, key="pk_test_wrong"), 401)
    assert_problem(cancel(emu, batch_id, key=None, headers={"Authorization": emu.api_key}), 401)
    assert emu.batch(batch_id)["status"] == "processing"
    assert emu.batch(batch_id)["cancelRequests"] == 0


def test_added_key_is_accepted(emu: PictifyEmulator) -> None:
    emu.add_api_key("pk_test_second")
    assert call(emu, "GET", "/nowhere", key="pk_test_second").status_code == 404
    lower_scheme = call(
        emu, "GET", "/nowhere", key=None, headers={"Authorization": f"bearer {emu.api_key}"}
    )
    assert lower_scheme.status_code == 404


# --------------------------------------------------------------------------- rate limits


def test_rate_limit_headers_and_429() -> None:
    with PictifyEmulator(rate_limit=2, rate_window=30) as emulator:
        before = time.time()
        first = call(emulator, "GET", "/x")
        second = call(emulator, "GET", "/x")
        assert first.headers["X-RateLimit-Limit"] == "2"
        remaining = [r.headers["X-RateLimit-Remaining"] for r in (first, second)]
        assert remaining == ["1", "0"]
        reset = int(first.headers["X-RateLimit-Reset"])
        assert before + 29 <= reset <= time.time() + 31
        limited = call(emulator, "GET", "/x")
        problem = assert_problem(limited, 429)
        retry_after = int(limited.headers["Retry-After"])
        assert 1 <= retry_after <= 30
        assert problem["retryAfter"] == retry_after
        assert problem["code"] == "rate_limited"
        assert limited.headers["X-RateLimit-Remaining"] == "0"
        # A 429 must not reach the handler: the batch is left alone.
        batch_id = emulator.create_batch()
        assert cancel(emulator, batch_id).status_code == 429
        assert emulator.batch(batch_id)["status"] == "processing"
        # Another key has its own window.
        emulator.add_api_key("pk_test_other")
        other = call(emulator, "GET", "/x", key="pk_test_other")
        assert (other.status_code, other.headers["X-RateLimit-Remaining"]) == (404, "1")
        emulator.reset()
        assert call(emulator, "GET", "/x").status_code == 404


def test_a_window_of_whole_seconds_ends_exactly_at_its_reset() -> None:
    limiter = EmulatorRateLimiter(limit=3, window=1.0)
    for _ in range(20):
        before = time.time()
        decision = limiter.hit("pk")
        after = time.time()
        # the window began at the whole second of its first request: Reset is its end
        assert math.floor(before) + 1 <= decision.reset <= math.floor(after) + 1
        limiter.clear()


def test_rate_limit_window_resets() -> None:
    with PictifyEmulator(rate_limit=1, rate_window=0.2) as emulator:
        assert call(emulator, "GET", "/x").status_code == 404
        limited = call(emulator, "GET", "/x")
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "1"  # never 0, even for short windows
        wait_until(lambda: call(emulator, "GET", "/x").status_code == 404)


def test_unlimited_still_sends_headers() -> None:
    with PictifyEmulator(rate_limit=None) as emulator:
        for _ in range(5):
            response = call(emulator, "GET", "/x")
            assert response.status_code == 404
        assert int(response.headers["X-RateLimit-Limit"]) >= 1_000_000
        assert int(response.headers["X-RateLimit-Remaining"]) >= 1_000_000 - 5


# --------------------------------------------------------------------------- idempotency


def test_idempotent_replay_of_cancel(emu: PictifyEmulator) -> None:
    batch_id = emu.create_batch()
    headers = {"Idempotency-Key": f"cancel-{batch_id}"}
    first = cancel(emu, batch_id, headers=headers)
    second = cancel(emu, batch_id, headers=headers)
    assert first.status_code == second.status_code == 200
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert (
        second.json()
        == first.json()
        == {"batchId": batch_id, "status": "cancelled", "message": "Batch cancelled"}
    )
    assert "X-RateLimit-Remaining" in second.headers
    snapshot = emu.batch(batch_id)
    assert (snapshot["cancelRequests"], snapshot["effectiveCancels"]) == (1, 1)
    assert [r.replayed for r in emu.cancel_requests(batch_id)] == [False, True]


def test_a_cancel_that_lags_says_processing_then_the_batch_stops(emu: PictifyEmulator) -> None:
    """The "cancel lags" mode: the 200 does not confirm; a GET a little later does."""
    emu.cancel_lag = 0.2
    batch_id = emu.create_batch()
    headers = {"Idempotency-Key": f"cancel-{batch_id}"}
    first = cancel(emu, batch_id, headers=headers)
    assert first.status_code == 200
    assert first.json() == {
        "batchId": batch_id,
        "status": "processing",
        "message": "Cancellation requested",
    }
    wait_until(lambda: results(emu, batch_id)["status"] == "cancelled")
    assert results(emu, batch_id)["completedAt"] is not None
    # The same key replays the unconfirmed answer; a new request hears it is done.
    assert cancel(emu, batch_id, headers=headers).json() == first.json()
    again = cancel(emu, batch_id).json()
    assert (again["status"], again["message"]) == ("cancelled", "Batch was already cancelled")
    assert emu.batch(batch_id)["effectiveCancels"] == 1
    with pytest.raises(ValueError):
        emu.cancel_lag = -1


def test_idempotent_replay_of_render_creates_one_batch(emu: PictifyEmulator) -> None:
    headers = {"Idempotency-Key": "render-1"}
    first = render(emu, {"variableSets": [{}]}, headers=headers)
    second = render(emu, {"variableSets": [{}]}, headers=headers)
    assert first.json()["batchId"] == second.json()["batchId"]
    assert second.status_code == 202
    assert len(emu.batches()) == 1


def test_idempotency_key_reused_for_other_request_is_422(emu: PictifyEmulator) -> None:
    one, two = emu.create_batch(), emu.create_batch()
    headers = {"Idempotency-Key": "shared"}
    assert cancel(emu, one, headers=headers).status_code == 200
    problem = assert_problem(cancel(emu, two, headers=headers), 422)
    assert problem["code"] == "idempotency_key_reused"
    assert emu.batch(two)["status"] == "processing"
    body_differs = render(emu, {"variableSets": [{}]}, headers={"Idempotency-Key": "r"})
    assert body_differs.status_code == 202
    reused = render(emu, {"variableSets": [{}, {}]}, headers={"Idempotency-Key": "r"})
    assert assert_problem(reused, 422)["code"] == "idempotency_key_reused"


def test_idempotency_keys_are_per_api_key(emu: PictifyEmulator) -> None:
    emu.add_api_key("pk_test_other")
    headers = {"Idempotency-Key": "same"}
    first = render(emu, {"variableSets": [{}]}, headers=headers)
    other = render(emu, {"variableSets": [{}]}, headers=headers, key="pk_test_other")
    assert "Idempotent-Replayed" not in other.headers
    assert first.json()["batchId"] != other.json()["batchId"]


def test_only_final_answers_are_cached(emu: PictifyEmulator) -> None:
    # 4xx (not 429) is final: replayed.
    bad: dict[str, Any] = {"variableSets": []}
    assert render(emu, bad, headers={"Idempotency-Key": "bad"}).status_code == 400
    replay = render(emu, bad, headers={"Idempotency-Key": "bad"})
    assert (replay.status_code, replay.headers.get("Idempotent-Replayed")) == (400, "true")
    assert replay.headers["Content-Type"] == "application/problem+json"
    # An injected 503 is not cached: the retry executes.
    batch_id = emu.create_batch()
    headers = {"Idempotency-Key": "retry-me"}
    emu.inject(status=503)
    assert cancel(emu, batch_id, headers=headers).status_code == 503
    retried = cancel(emu, batch_id, headers=headers)
    assert retried.status_code == 200
    assert "Idempotent-Replayed" not in retried.headers
    assert emu.batch(batch_id)["effectiveCancels"] == 1


def test_429_is_not_cached() -> None:
    with PictifyEmulator(rate_limit=1, rate_window=0.2, items_per_second=0) as emulator:
        batch_id = emulator.create_batch()
        headers = {"Idempotency-Key": "k"}
        assert call(emulator, "GET", "/x").status_code == 404
        assert cancel(emulator, batch_id, headers=headers).status_code == 429

        def retried() -> bool:
            response = cancel(emulator, batch_id, headers=headers)
            return response.status_code == 200 and "Idempotent-Replayed" not in response.headers

        wait_until(retried)
        assert emulator.batch(batch_id)["effectiveCancels"] == 1


def test_concurrent_requests_with_one_key_execute_once(
    emu: PictifyEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch_id = emu.create_batch()
    # A slow handler widens the race window, so a missing per-key lock would show.
    real_cancel = emu._store.cancel

    def slow_cancel(batch: str) -> Any:
        time.sleep(0.2)
        return real_cancel(batch)

    monkeypatch.setattr(emu._store, "cancel", slow_cancel)
    workers = 8
    barrier = threading.Barrier(workers)
    responses: list[requests.Response] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        response = cancel(emu, batch_id, headers={"Idempotency-Key": "concurrent"})
        with lock:
            responses.append(response)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert [r.status_code for r in responses] == [200] * workers
    assert {r.json()["message"] for r in responses} == {"Batch cancelled"}
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == workers - 1
    snapshot = emu.batch(batch_id)
    assert (snapshot["cancelRequests"], snapshot["effectiveCancels"]) == (1, 1)


# --------------------------------------------------------------------------- faults


def test_fault_status_with_json_body_leaves_state_alone(emu: PictifyEmulator) -> None:
    batch_id = emu.create_batch()
    fault = emu.inject(status=503, body={"message": "upstream down"}, headers={"Retry-After": "2"})
    assert isinstance(fault, Fault)
    assert (fault.remaining, fault.hits) == (1, 0)
    response = cancel(emu, batch_id)
    assert response.status_code == 503
    assert response.json() == {"message": "upstream down"}
    assert response.headers["Retry-After"] == "2"
    assert response.headers["Content-Type"] == "application/json"
    assert (fault.remaining, fault.hits) == (0, 1)
    assert emu.batch(batch_id)["status"] == "processing"
    assert emu.batch(batch_id)["cancelRequests"] == 0
    assert cancel(emu, batch_id).status_code == 200  # spent after one use


def test_fault_status_with_html_body(emu: PictifyEmulator) -> None:
    page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    emu.inject(status=502, body=page)
    response = call(emu, "GET", "/templates/batch/x/results")
    assert response.status_code == 502
    assert response.text == page
    assert response.headers["Content-Type"].startswith("text/html")


def test_fault_status_without_body_is_a_problem(emu: PictifyEmulator) -> None:
    emu.inject(status=429, headers={"Retry-After": "7"})
    problem = assert_problem(call(emu, "GET", "/x"), 429)
    assert (problem["retryAfter"], problem["code"]) == (7, "rate_limited")
    emu.inject(status=500)
    assert_problem(call(emu, "GET", "/x"), 500)


def test_faults_apply_before_auth_and_rate_limits() -> None:
    with PictifyEmulator(rate_limit=1) as emulator:
        emulator.inject(status=503)
        response = call(emulator, "GET", "/x", key=None)
        assert response.status_code == 503
        assert "X-RateLimit-Remaining" not in response.headers  # a proxy answered
        # The window was not consumed by the faulted request.
        assert call(emulator, "GET", "/x").headers["X-RateLimit-Remaining"] == "0"


def test_fault_delay_times_out_the_client_then_handles(emu: PictifyEmulator) -> None:
    batch_id = emu.create_batch()
    fault = emu.inject(delay=0.5, path_contains="/cancel")
    with pytest.raises(requests.Timeout):
        cancel(emu, batch_id, timeout=0.1)
    assert fault.hits == 1
    # Delay alone: the request is then handled normally, so the cancel lands.
    wait_until(lambda: emu.batch(batch_id)["status"] == "cancelled")
    wait_until(lambda: emu.cancel_requests(batch_id)[0].status == 200)


def test_fault_drop_is_a_connection_error_without_side_effects(emu: PictifyEmulator) -> None:
    batch_id = emu.create_batch()
    emu.inject(drop=True)
    with pytest.raises(requests.ConnectionError):
        cancel(emu, batch_id)
    snapshot = emu.batch(batch_id)
    assert (snapshot["status"], snapshot["cancelRequests"]) == ("processing", 0)
    [record] = emu.cancel_requests(batch_id)
    assert record.status is None


def test_fault_drop_after_handling_loses_the_response(emu: PictifyEmulator) -> None:
    batch_id = emu.create_batch()
    headers = {"Idempotency-Key": f"cancel-{batch_id}"}
    emu.inject(drop_after_handling=True, method="POST")
    with pytest.raises(requests.ConnectionError):
        cancel(emu, batch_id, headers=headers)
    snapshot = emu.batch(batch_id)
    assert (snapshot["status"], snapshot["effectiveCancels"]) == ("cancelled", 1)
    # The retry with the same key gets the response that was lost.
    retry = cancel(emu, batch_id, headers=headers)
    assert retry.json()["message"] == "Batch cancelled"
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert [r.status for r in emu.cancel_requests(batch_id)] == [None, 200]


def test_fault_times_and_matching(emu: PictifyEmulator) -> None:
    batch_id = emu.create_batch()
    fault = emu.inject(status=500, times=2, method="post", path_contains="/cancel")
    assert results(emu, batch_id)["status"] == "processing"  # GET does not match
    assert fault.hits == 0
    assert [cancel(emu, batch_id).status_code for _ in range(3)] == [500, 500, 200]
    assert (fault.hits, fault.remaining) == (2, 0)


def test_faults_match_in_order_and_forever(emu: PictifyEmulator) -> None:
    first = emu.inject(status=502, times=1)
    forever = emu.inject(status=504, times=None)
    statuses = [call(emu, "GET", "/x").status_code for _ in range(4)]
    assert statuses == [502, 504, 504, 504]
    assert (first.hits, forever.hits, forever.remaining) == (1, 3, None)
    emu.clear_faults()
    assert call(emu, "GET", "/x").status_code == 404


def test_inject_rejects_contradictions(emu: PictifyEmulator) -> None:
    with pytest.raises(ValueError):
        emu.inject(status=500, drop=True)
    with pytest.raises(ValueError):
        emu.inject(body={"a": 1})
    with pytest.raises(ValueError):
        emu.inject(status=500, times=0)
    with pytest.raises(ValueError):
        emu.inject(trickle=1.0, drop=True)
    with pytest.raises(TypeError):
        emu.inject(status=200, body={"not JSON": {1, 2}})  # refused now, not as a 500 later


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ({}, "application/json"),
        ([], "application/json"),
        (["a", 1, None, {"b": []}], "application/json"),
        (0, "application/json"),
        ("x" * 1_000_000, "text/plain; charset=utf-8"),
    ],
)
def test_fault_200_answers_any_body_without_cancelling(
    emu: PictifyEmulator, body: Any, content_type: str
) -> None:
    batch_id = emu.create_batch()
    fault = emu.inject(status=200, body=body, path_contains="/cancel")
    response = cancel(emu, batch_id)
    assert (response.status_code, response.headers["Content-Type"]) == (200, content_type)
    if isinstance(body, str):
        assert response.text == body
    else:
        assert response.json() == body
    assert fault.hits == 1
    snapshot = emu.batch(batch_id)
    assert (snapshot["status"], snapshot["cancelRequests"]) == ("processing", 0)


def test_fault_trickle_is_slow_as_a_whole_but_never_on_one_read(emu: PictifyEmulator) -> None:
    batch_id = emu.create_batch()
    fault = emu.inject(trickle=2.0, path_contains="/cancel")
    started = time.monotonic()
    response = cancel(emu, batch_id, timeout=0.5)  # each read gets a byte well within 0.5 s
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json() == {
        "batchId": batch_id,
        "status": "cancelled",
        "message": "Batch cancelled",
    }
    assert "X-RateLimit-Remaining" in response.headers  # handled normally, then trickled
    assert fault.hits == 1
    assert elapsed >= 1.8
    assert emu.batch(batch_id)["status"] == "cancelled"


def test_fault_trickle_ends_when_the_emulator_stops() -> None:
    emulator = PictifyEmulator(items_per_second=0).start()
    emulator.inject(trickle=120.0)
    failures: list[Exception] = []

    def client() -> None:
        try:
            call(emulator, "GET", "/x", timeout=5)
        except requests.RequestException as exc:
            failures.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    emulator.wait_for_requests(1, timeout=5)
    emulator.stop()
    thread.join(10)  # without the stop, the answer would take 120 s
    assert not thread.is_alive()
    assert len(failures) == 1


def test_access_log_shows_method_path_status_and_time_but_no_key() -> None:
    lines: list[str] = []
    with PictifyEmulator(access_log=lines.append) as emulator:
        call(emulator, "GET", "/templates/batch/b1/results?token=secret")
        emulator.inject(drop=True)
        with pytest.raises(requests.ConnectionError):
            call(emulator, "POST", "/templates/batch/b1/cancel")
    assert len(lines) == 2
    assert re.fullmatch(r"GET /templates/batch/b1/results 404 \d+\.\d ms", lines[0])
    assert re.fullmatch(r"POST /templates/batch/b1/cancel dropped \d+\.\d ms", lines[1])
    assert not any("secret" in line or emulator.api_key in line for line in lines)


# --------------------------------------------------------------------------- request log


def test_request_log_records_everything(emu: PictifyEmulator) -> None:
    batch_id = emu.create_batch()
    cancel(emu, batch_id, key=None)
    cancel(emu, batch_id, headers={"X-Trace": "t1"})
    call(emu, "GET", f"/templates/batch/{batch_id}/results?verbose=1")
    log = emu.requests
    assert [(r.method, r.status) for r in log] == [("POST", 401), ("POST", 200), ("GET", 200)]
    record = log[1]
    assert isinstance(record, RecordedRequest)
    assert record.header("x-trace") == "t1"
    assert record.header("authorization") == f"Bearer {emu.api_key}"
    assert record.body == b""
    assert record.monotonic <= time.monotonic() and abs(record.time - time.time()) < 60
    assert log[2].path.endswith("?verbose=1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.status = 500  # type: ignore[misc]
    assert len(emu.requests_matching(method="GET")) == 1
    assert len(emu.requests_matching(path_contains="/cancel")) == 2
    assert len(emu.cancel_requests(batch_id)) == 2
    assert emu.cancel_requests("batch_other") == []
    emu.clear_requests()
    assert emu.requests == []


def test_request_body_is_recorded(emu: PictifyEmulator) -> None:
    render(emu, {"variableSets": [{"a": 1}]})
    assert emu.requests[0].json() == {"variableSets": [{"a": 1}]}


def test_wait_for_requests_wakes_on_arrival(emu: PictifyEmulator) -> None:
    batch_id = emu.create_batch()
    thread = threading.Thread(target=lambda: [cancel(emu, batch_id) for _ in range(2)])
    thread.start()
    found = emu.wait_for_requests(2, method="POST", path_contains=batch_id, timeout=5)
    thread.join(5)
    assert len(found) == 2
    assert all(r.method == "POST" for r in found)


def test_wait_for_requests_times_out_clearly(emu: PictifyEmulator) -> None:
    call(emu, "GET", "/x")
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"at least 2 .*path_contains='/x'.*saw 1"):
        emu.wait_for_requests(2, path_contains="/x", timeout=0.1)
    assert time.monotonic() - started < 2


def test_reset_forgets_state(emu: PictifyEmulator) -> None:
    emu.create_batch()
    emu.inject(status=500, times=None)
    call(emu, "GET", "/x")
    emu.reset()
    assert emu.batches() == [] and emu.requests == []
    assert call(emu, "GET", "/x").status_code == 404


# --------------------------------------------------------------------------- CLI


def _cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


class _Cli:
    """The emulator CLI as a subprocess: its URL from stdout, its stderr line by line."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "pictify_tasks.testing.emulator", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_cli_env(),
            cwd=REPO_ROOT,
        )
        self.stderr_lines: queue.Queue[str] = queue.Queue()
        self._stderr: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        assert self.process.stdout is not None
        self.first_line = self.process.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)", self.first_line)
        assert match, f"unexpected first line {self.first_line!r}"
        self.url = match.group(1)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)
            self.stderr_lines.put(line)

    def next_stderr_line(self, timeout: float = 10.0) -> str:
        return self.stderr_lines.get(timeout=timeout)

    def terminate(self) -> str:
        """SIGTERM, then the exit code must be 0; returns all it wrote to stderr."""
        self.process.terminate()
        assert self.process.wait(timeout=10) == 0
        self._reader.join(10)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return "".join(self._stderr)


def test_cli_serves_until_terminated() -> None:
    cli = _Cli("--api-key", "pk_test_cli", "--items-per-second", "0")
    try:
        assert "pk_test_" in cli.first_line
        response = requests.post(
            cli.url + "/templates/t/batch-render?api_key=pk_test_cli",
            json={"variableSets": [{}]},
            headers={"Authorization": "Bearer pk_test_cli"},
            timeout=5,
        )
        assert response.status_code == 202
        assert requests.get(cli.url + "/nowhere", timeout=5).status_code == 401
        render_line, missing_line = cli.next_stderr_line(), cli.next_stderr_line()
    finally:
        errors = cli.terminate()
    assert re.fullmatch(r"POST /templates/t/batch-render 202 \d+\.\d ms\n", render_line)
    assert re.fullmatch(r"GET /nowhere 401 \d+\.\d ms\n", missing_line)
    assert "pk_test_cli" not in errors and "Bearer" not in errors, errors
    assert "Traceback" not in errors and "Warning" not in errors, errors


def test_cli_quiet_logs_nothing() -> None:
    cli = _Cli("--quiet")
    try:
        assert requests.get(cli.url + "/nowhere", timeout=5).status_code == 401
    finally:
        errors = cli.terminate()
    # The line would have been written before the answer was sent.
    assert errors == ""


def test_cli_help_shows_every_default() -> None:
    shown = subprocess.run(
        [sys.executable, "-W", "error", "-m", "pictify_tasks.testing.emulator", "--help"],
        capture_output=True,
        text=True,
        env=_cli_env(),
        cwd=REPO_ROOT,
        timeout=30,
    )
    assert (shown.returncode, shown.stderr) == (0, "")  # no runpy warning either
    text = " ".join(shown.stdout.split())
    options = set(re.findall(r"--[a-z][a-z-]+", text)) - {"--help"}
    assert {"--port", "--rate-limit", "--quiet"} <= options
    assert text.count("(default: ") == len(options)
    assert "(default: 8765)" in text and "(default: pk_test_emulator)" in text


def test_a_fault_with_every_applies_to_every_nth_matching_request(
    emu: PictifyEmulator,
) -> None:
    fault = emu.inject(status=503, times=None, every=3, path_contains="/results")
    batch_id = emu.create_batch()
    url = f"{emu.base_url}/templates/batch/{batch_id}/results"
    headers = {"Authorization": f"Bearer {emu.api_key}"}
    statuses = [requests.get(url, headers=headers, timeout=5).status_code for _ in range(9)]
    assert statuses == [200, 200, 503] * 3
    assert fault.hits == 3
    with pytest.raises(ValueError):
        emu.inject(status=503, every=0)
