"""``PictifyClient`` against the emulator, over real HTTP."""

from __future__ import annotations

import logging
import typing
from collections.abc import Iterator

import pytest

import pictify_tasks
from pictify_tasks import (
    AuthenticationError,
    BatchNotFoundError,
    CancelResult,
    ImproperlyConfigured,
    InvalidBatchIdError,
    InvalidRequestError,
    PictifyClient,
    PictifyConnectionError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
from pictify_tasks.ids import idempotency_key_for
from pictify_tasks.testing import PictifyEmulator

SECRET = "pk_test_0123456789abcdef0123456789abcdef"


@pytest.fixture
def emulator() -> Iterator[PictifyEmulator]:
    with PictifyEmulator(api_key=SECRET, items_per_second=0) as emu:
        yield emu


@pytest.fixture
def client(emulator: PictifyEmulator) -> Iterator[PictifyClient]:
    with PictifyClient(emulator.api_key, base_url=emulator.base_url, timeout=2.0) as client:
        yield client


def test_cancel_a_running_batch(client: PictifyClient, emulator: PictifyEmulator) -> None:
    batch_id = emulator.create_batch(total_items=10)
    result = client.cancel_batch(batch_id)
    assert result == CancelResult(batch_id, "cancelled", "cancelled", "Batch cancelled")
    [request] = emulator.cancel_requests(batch_id)
    assert request.headers["Idempotency-Key"] == idempotency_key_for("cancel", batch_id)
    assert request.headers["Authorization"] == f"Bearer {SECRET}"


def test_cancel_answers_for_finished_cancelled_and_missing_batches(
    client: PictifyClient, emulator: PictifyEmulator
) -> None:
    done = emulator.create_batch(status="completed")
    assert client.cancel_batch(done).outcome == "already_finished"
    assert client.cancel_batch(done).status == "completed"
    earlier = emulator.create_batch(status="cancelled")
    result = client.cancel_batch(earlier)
    assert (result.outcome, result.status) == ("already_finished", "cancelled")
    missing = client.cancel_batch("batch_nope")
    assert (missing.outcome, missing.status) == ("not_found", None)


def test_the_same_cancel_twice_is_replayed_not_repeated(
    client: PictifyClient, emulator: PictifyEmulator
) -> None:
    batch_id = emulator.create_batch()
    first = client.cancel_batch(batch_id)
    second = client.cancel_batch(batch_id)
    assert first == second
    assert [r.replayed for r in emulator.cancel_requests(batch_id)] == [False, True]
    assert emulator.batch(batch_id)["effectiveCancels"] == 1


def test_get_batch_reads_progress(client: PictifyClient, emulator: PictifyEmulator) -> None:
    batch_id = emulator.create_batch(total_items=4, status="completed")
    info = client.get_batch(batch_id)
    assert info.batch_id == batch_id and info.status == "completed" and info.is_terminal
    assert (info.total_items, info.completed_items) == (4, 4)
    # What wait_for_batch returns, pinned to the fields BatchProgress declares.
    progress = info.as_dict()
    assert set(progress) == set(typing.get_type_hints(pictify_tasks.BatchProgress))
    assert (progress["status"], progress["failed_items"], progress["progress"]) == (
        "completed",
        0,
        100,
    )
    with pytest.raises(BatchNotFoundError):
        client.get_batch("batch_nope")


def test_start_batch_posts_a_checked_body(client: PictifyClient, emulator: PictifyEmulator) -> None:
    start = client.start_batch(
        "tpl_1",
        [{"name": "a"}, {"name": "b"}],
        format="webp",
        quality=0.8,
        concurrency=2,
        idempotency_key="start-1",
    )
    assert start.status == "pending" and start.total_items == 2
    assert start.batch_id in emulator.batches()
    again = client.start_batch(
        "tpl_1",
        [{"name": "a"}, {"name": "b"}],
        format="webp",
        quality=0.8,
        concurrency=2,
        idempotency_key="start-1",
    )
    assert again.batch_id == start.batch_id


@pytest.mark.parametrize(
    ("args", "kwargs", "says"),
    [
        (("tpl", []), {}, "at least one"),
        (("tpl", "abc"), {}, "list of objects"),
        (("tpl", [1]), {}, r"variable_sets\[0\]"),
        (("tpl", [{}]), {"format": "gif"}, "format"),
        (("tpl", [{}]), {"quality": 2}, "quality"),
        (("tpl", [{}]), {"concurrency": 0}, "concurrency"),
        (("tpl", [{}]), {"webhook_url": "ftp://x"}, "webhook_url"),
    ],
)
def test_bad_start_arguments_are_refused_before_sending(
    client: PictifyClient, emulator: PictifyEmulator, args: tuple, kwargs: dict, says: str
) -> None:
    with pytest.raises(InvalidRequestError, match=says):
        client.start_batch(*args, **kwargs)
    with pytest.raises(InvalidBatchIdError):
        client.start_batch("tpl/../x", [{}])
    assert emulator.requests == []


def test_bad_batch_ids_are_refused_before_sending(
    client: PictifyClient, emulator: PictifyEmulator
) -> None:
    for bad in ("", "..", "a/b", "x" * 200):
        with pytest.raises(InvalidBatchIdError):
            client.cancel_batch(bad)
    assert emulator.requests == []


def test_ids_are_percent_encoded_in_the_path(
    client: PictifyClient, emulator: PictifyEmulator
) -> None:
    client.cancel_batch("odd:id")
    assert emulator.requests[-1].path.endswith("/batch/odd%3Aid/cancel")


def test_wrong_key_is_an_authentication_error_without_the_key(emulator: PictifyEmulator) -> None:
    wrong = "pk_live_wrongwrongwrongwrong"
    batch_id = emulator.create_batch()
    with (
        PictifyClient(wrong, base_url=emulator.base_url) as client,
        pytest.raises(AuthenticationError) as caught,
    ):
        client.cancel_batch(batch_id)
    assert caught.value.status == 401 and not caught.value.retryable
    assert wrong not in str(caught.value) and wrong not in repr(caught.value)


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (503, None, ServerError),
        (500, "<html><body>Internal Server Error</body></html>", ServerError),
        (502, "", ServerError),
        (400, {"message": "bad"}, InvalidRequestError),
        (402, {"error": "Payment required", "code": "quota"}, QuotaExceededError),
        (429, {"title": "Quota", "code": "quota_exceeded"}, QuotaExceededError),
        (403, {"title": "Forbidden", "detail": "no batch scope"}, AuthenticationError),
    ],
)
def test_injected_errors_map_to_errors(
    client: PictifyClient, emulator: PictifyEmulator, status: int, body: object, kind: type
) -> None:
    emulator.inject(status=status, body=body, times=1)
    with pytest.raises(kind) as caught:
        client.cancel_batch(emulator.create_batch())
    assert caught.value.status == status
    assert f"HTTP {status}" in str(caught.value)


def test_rate_limit_error_carries_retry_after_and_headers_are_read(
    emulator: PictifyEmulator,
) -> None:
    emulator.set_rate_limit(2)
    with PictifyClient(emulator.api_key, base_url=emulator.base_url) as client:
        batch_id = emulator.create_batch()
        client.get_batch(batch_id)
        assert client.last_rate_limit is not None
        assert (client.last_rate_limit.limit, client.last_rate_limit.remaining) == (2, 1)
        client.get_batch(batch_id)
        with pytest.raises(RateLimitError) as caught:
            client.get_batch(batch_id)
    assert caught.value.retryable and caught.value.retry_after is not None
    assert caught.value.retry_after >= 1


def test_timeouts_and_dropped_connections_are_connection_errors(
    emulator: PictifyEmulator,
) -> None:
    batch_id = emulator.create_batch()
    with PictifyClient(emulator.api_key, base_url=emulator.base_url, timeout=0.2) as client:
        emulator.inject(delay=1.0, times=1)
        with pytest.raises(PictifyConnectionError, match="timed out") as timed_out:
            client.cancel_batch(batch_id)
        assert timed_out.value.retryable
        emulator.inject(drop=True, times=1)
        with pytest.raises(PictifyConnectionError):
            client.cancel_batch(batch_id)


def test_the_key_never_shows_in_repr_errors_or_logs(
    emulator: PictifyEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with PictifyClient(SECRET, base_url=emulator.base_url, timeout=0.2) as client:
        assert SECRET not in repr(client) and "pk_test_***" in repr(client)
        emulator.inject(status=500, body={"detail": f"echo Bearer {SECRET}"}, times=1)
        with pytest.raises(ServerError) as caught:
            client.cancel_batch(emulator.create_batch())
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)
    assert SECRET not in caplog.text


def test_a_client_needs_a_key() -> None:
    with pytest.raises(ImproperlyConfigured):
        PictifyClient("")


def test_the_session_is_reused(client: PictifyClient, emulator: PictifyEmulator) -> None:
    session = client._session
    client.get_batch(emulator.create_batch())
    client.get_batch(emulator.create_batch())
    assert client._session is session
