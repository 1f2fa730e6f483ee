"""``PictifyClient`` against the emulator, over real HTTP."""

from __future__ import annotations

import json
import logging
import multiprocessing
import threading
import time
import types
import typing
from collections.abc import Iterator

import pytest
import requests
import urllib3

import pictify_tasks
from pictify_tasks import (
    AuthenticationError,
    BatchNotFoundError,
    CancelNotConfirmedError,
    CancelResult,
    ImproperlyConfigured,
    InvalidBatchIdError,
    InvalidRequestError,
    PictifyClient,
    PictifyConnectionError,
    PictifyError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    UnexpectedResponseError,
    transport,
    watchdog,
)
from pictify_tasks.ids import idempotency_key_for
from pictify_tasks.ratelimit import RateLimitInfo
from pictify_tasks.redaction import Redactor, key_hint
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


def test_rate_limit_error_carries_retry_after(emulator: PictifyEmulator) -> None:
    emulator.set_rate_limit(2)
    with PictifyClient(emulator.api_key, base_url=emulator.base_url) as client:
        batch_id = emulator.create_batch()
        client.get_batch(batch_id)
        client.get_batch(batch_id)
        with pytest.raises(RateLimitError) as caught:
            client.get_batch(batch_id)
    assert caught.value.retryable and caught.value.retry_after is not None
    assert caught.value.retry_after >= 1


def test_every_answer_is_shown_to_the_on_response_observer(emulator: PictifyEmulator) -> None:
    heard: list[tuple[int, RateLimitInfo]] = []
    emulator.set_rate_limit(2, 30)
    batch_id = emulator.create_batch()
    with PictifyClient(
        emulator.api_key,
        base_url=emulator.base_url,
        on_response=lambda status, info: heard.append((status, info)),
    ) as client:
        client.get_batch(batch_id)
        with pytest.raises(BatchNotFoundError):
            client.get_batch("nope")
        with pytest.raises(RateLimitError):
            client.cancel_batch(batch_id)
    assert [status for status, _ in heard] == [200, 404, 429]
    assert [info.remaining for _, info in heard] == [1, 0, 0]
    assert {info.limit for _, info in heard} == {2}
    reset = heard[0][1].reset
    assert reset is not None and time.time() < reset <= time.time() + 30
    assert heard[2][1].retry_after is not None and heard[2][1].retry_after >= 1


def test_retry_after_is_heard_only_on_a_429_or_a_503(emulator: PictifyEmulator) -> None:
    heard: list[RateLimitInfo] = []
    with PictifyClient(
        emulator.api_key,
        base_url=emulator.base_url,
        on_response=lambda status, info: heard.append(info),
    ) as client:
        emulator.inject(status=200, body={"status": "processing"}, headers={"Retry-After": "9"})
        client.get_batch(emulator.create_batch())
        emulator.inject(status=500, body={}, headers={"Retry-After": "9"})
        with pytest.raises(ServerError) as caught:
            client.get_batch(emulator.create_batch())
        assert caught.value.retry_after is None
        emulator.inject(status=503, body={}, headers={"Retry-After": "9"})
        with pytest.raises(ServerError) as caught:
            client.get_batch(emulator.create_batch())
        assert caught.value.retry_after == 9.0
    assert [info.retry_after for info in heard] == [None, None, 9.0]


def test_an_observer_that_raises_does_not_change_the_answer(
    emulator: PictifyEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(status: int, info: RateLimitInfo) -> None:
        raise RuntimeError("observer bug")

    batch_id = emulator.create_batch()
    with PictifyClient(emulator.api_key, base_url=emulator.base_url, on_response=broken) as client:
        assert client.cancel_batch(batch_id).outcome == "cancelled"
    assert "on_response observer failed" in caplog.text


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


# -- hostile or broken answers ----------------------------------------------------------


def test_a_retry_after_of_infinity_over_http_is_ignored(
    client: PictifyClient, emulator: PictifyEmulator
) -> None:
    emulator.inject(status=429, body={}, headers={"Retry-After": "inf"})
    with pytest.raises(RateLimitError) as caught:
        client.cancel_batch(emulator.create_batch())
    assert caught.value.retry_after is None
    emulator.inject(
        status=429, body=b'{"retryAfter": Infinity}', headers={"Content-Type": "application/json"}
    )
    with pytest.raises(RateLimitError) as caught:
        client.cancel_batch(emulator.create_batch())
    assert caught.value.retry_after is None


def test_a_429_with_only_a_rate_limit_reset_waits_for_the_reset(
    client: PictifyClient, emulator: PictifyEmulator
) -> None:
    emulator.inject(status=429, body={}, headers={"X-RateLimit-Reset": str(int(time.time()) + 40)})
    with pytest.raises(RateLimitError) as caught:
        client.cancel_batch(emulator.create_batch())
    assert caught.value.retry_after is not None and 37 <= caught.value.retry_after <= 40


PROXY_404S = [
    ("<html><body><h1>404 Not Found</h1><hr>nginx/1.25</body></html>", "nginx/1.25"),
    ("Not Found", "Not Found"),
    ("", "empty body"),
    (["not", "an", "object"], "not"),
]


@pytest.mark.parametrize(("body", "shows"), PROXY_404S)
def test_a_404_that_is_not_the_apis_answer_is_no_final_not_found(
    client: PictifyClient, emulator: PictifyEmulator, body: object, shows: str
) -> None:
    batch_id = emulator.create_batch()
    emulator.inject(status=404, body=body, path_contains="/cancel")
    with pytest.raises(UnexpectedResponseError) as caught:
        client.cancel_batch(batch_id)
    error = caught.value
    assert error.retryable and error.status == 404
    assert shows in str(error) and "base URL" in str(error)
    assert emulator.base_url in str(error)
    # The batch was never reached: asked again, the API cancels it.
    assert client.cancel_batch(batch_id).outcome == "cancelled"
    # Nor is it a BatchNotFoundError when reading the batch's progress.
    emulator.inject(status=404, body=body, path_contains="/results")
    with pytest.raises(UnexpectedResponseError) as caught:
        client.get_batch(batch_id)
    assert caught.value.retryable and shows in str(caught.value)
    assert not isinstance(caught.value, BatchNotFoundError)


def test_a_404_with_a_json_object_is_not_found_whatever_its_content_type(
    client: PictifyClient, emulator: PictifyEmulator
) -> None:
    emulator.inject(status=404, body=b'{"message": "gone"}', headers={"Content-Type": "text/html"})
    result = client.cancel_batch(emulator.create_batch())
    assert (result.outcome, result.message) == ("not_found", "gone")
    emulator.inject(status=404, body={"detail": "expired"}, path_contains="/results")
    with pytest.raises(BatchNotFoundError):
        client.get_batch(emulator.create_batch())


#: Answers from something in front of the API: a non-JSON 409/408/404, any redirect.
NOT_THE_API = [
    (409, "<html><body>409 Conflict</body></html>", {}),
    (409, "", {}),
    (408, "Request Timeout", {}),
    (403, "<html>blocked by the proxy</html>", {}),
    (302, "", {"Location": "https://portal.example/login"}),
    (301, {"status": "cancelled", "title": "Moved"}, {"Location": "https://api.example/"}),
    (307, {"batchId": "b_moved", "status": "processing"}, {"Location": "/elsewhere"}),
]


@pytest.mark.parametrize(("status", "body", "headers"), NOT_THE_API)
def test_an_answer_that_is_not_the_apis_own_is_unexpected_never_a_final_fact(
    client: PictifyClient,
    emulator: PictifyEmulator,
    status: int,
    body: object,
    headers: dict[str, str],
) -> None:
    batch_id = emulator.create_batch()
    for call in (
        lambda: client.cancel_batch(batch_id),
        lambda: client.get_batch(batch_id),
        lambda: client.start_batch("tpl_1", [{"n": 1}]),
    ):
        emulator.inject(status=status, body=body, headers=headers)
        with pytest.raises(UnexpectedResponseError) as caught:
            call()
        assert caught.value.retryable and caught.value.status == status
        assert f"HTTP {status}" in str(caught.value) and "base URL" in str(caught.value)
    # The batch was never reached: asked again, the API cancels it.
    assert client.cancel_batch(batch_id).outcome == "cancelled"


@pytest.mark.parametrize(
    ("body", "seen"),
    [
        ({}, "no status"),
        ({"status": "processing", "message": "Batch cancelled"}, "'processing'"),
        ({"status": "pending"}, "'pending'"),
        ({"status": "on_fire"}, "'on_fire'"),
        ({"status": 7}, "7"),
    ],
)
def test_a_200_that_does_not_say_cancelled_is_not_a_cancel(
    client: PictifyClient, emulator: PictifyEmulator, body: object, seen: str
) -> None:
    emulator.inject(status=200, body=body, path_contains="/cancel")
    with pytest.raises(CancelNotConfirmedError) as caught:
        client.cancel_batch(emulator.create_batch())
    assert caught.value.retryable and caught.value.status == 200
    assert seen in str(caught.value)


@pytest.mark.parametrize("status", ["completed", "partial", "failed"])
def test_a_200_with_a_finished_status_is_already_finished(
    client: PictifyClient, emulator: PictifyEmulator, status: str
) -> None:
    emulator.inject(status=200, body={"status": status}, path_contains="/cancel")
    result = client.cancel_batch(emulator.create_batch())
    assert (result.outcome, result.status) == ("already_finished", status)


def test_a_200_that_is_not_a_json_object_is_unexpected(
    client: PictifyClient, emulator: PictifyEmulator
) -> None:
    emulator.inject(status=200, body="<html>captive portal</html>", path_contains="/cancel")
    with pytest.raises(UnexpectedResponseError) as caught:
        client.cancel_batch(emulator.create_batch())
    assert caught.value.retryable and "captive portal" in str(caught.value)


def test_long_api_texts_are_cut_to_three_hundred_characters(
    client: PictifyClient, emulator: PictifyEmulator
) -> None:
    emulator.inject(status=200, body={"status": "cancelled", "message": "m" * 200_000})
    result = client.cancel_batch(emulator.create_batch())
    assert result.outcome == "cancelled"
    assert len(result.message) <= 300 and result.message.startswith("m" * 200)
    assert "\N{HORIZONTAL ELLIPSIS}" in result.message
    emulator.inject(status=202, body={"batchId": "b_long", "message": "s" * 200_000})
    start = client.start_batch("tpl_1", [{"n": 1}])
    assert start.batch_id == "b_long" and len(start.message) <= 300
    emulator.inject(status=503, body={"detail": "e" * 200_000})
    with pytest.raises(ServerError) as caught:
        client.cancel_batch(emulator.create_batch())
    assert len(str(caught.value)) < 400
    emulator.inject(status=200, body={"status": "t" * 200_000, "createdAt": "c" * 200_000})
    info = client.get_batch(emulator.create_batch())
    assert len(info.status) <= 300 and info.created_at is not None
    assert len(info.created_at) <= 300


def test_a_body_over_one_mebibyte_is_not_read_whole(
    client: PictifyClient, emulator: PictifyEmulator
) -> None:
    batch_id = emulator.create_batch()
    huge = {"status": "cancelled", "message": "x" * 50_000_000}
    emulator.inject(status=200, body=huge, path_contains="/cancel")
    with pytest.raises(UnexpectedResponseError) as caught:
        client.cancel_batch(batch_id)
    assert caught.value.retryable and "outcome unknown" in str(caught.value)
    assert "1 MiB" in str(caught.value) and len(str(caught.value)) < 400
    # The connection was dropped, not reused half-read: the next call works.
    assert client.cancel_batch(batch_id).outcome == "cancelled"


def test_the_whole_call_is_bounded_not_each_read(emulator: PictifyEmulator) -> None:
    batch_id = emulator.create_batch()
    with PictifyClient(emulator.api_key, base_url=emulator.base_url, timeout=1.0) as client:
        emulator.inject(trickle=3.0, path_contains="/cancel")
        started = time.monotonic()
        with pytest.raises(PictifyConnectionError, match="timed out") as caught:
            client.cancel_batch(batch_id)
        assert time.monotonic() - started < 2.5
        assert caught.value.retryable and "outcome unknown" in str(caught.value)
        # A normal call afterwards still works, on the same client.
        assert client.cancel_batch(batch_id).outcome in ("cancelled", "already_finished")


class _Socket:
    """Stands for a connection's socket: records that the watchdog shut it."""

    def __init__(self) -> None:
        self.shut = threading.Event()

    def shutdown(self, how: int) -> None:
        self.shut.set()


def _watchdog_fires_in_this_process(result: typing.Any) -> None:
    watch = watchdog.Watch(0.05)
    sock = _Socket()
    watch.attach(types.SimpleNamespace(sock=sock))
    watch.start()
    result.put(sock.shut.wait(10))


def test_the_watchdog_bounds_calls_in_a_forked_child_too(emulator: PictifyEmulator) -> None:
    """A prefork worker's children inherit the parent's watchdog state, not its thread."""
    with PictifyClient(emulator.api_key, base_url=emulator.base_url) as client:
        client.get_batch(emulator.create_batch())  # the parent's watchdog thread runs
    context = multiprocessing.get_context("fork")
    result = context.Queue()
    child = context.Process(target=_watchdog_fires_in_this_process, args=(result,))
    child.start()
    fired = result.get(timeout=30)
    child.join(10)
    assert fired is True


def test_a_call_with_a_sooner_deadline_wakes_the_sleeping_watchdog() -> None:
    """The watchdog sleeps until the first deadline; a sooner one must still be kept."""
    late, soon = watchdog.Watch(60.0), watchdog.Watch(0.05)
    late_socket, soon_socket = _Socket(), _Socket()
    late.attach(types.SimpleNamespace(sock=late_socket))
    soon.attach(types.SimpleNamespace(sock=soon_socket))
    late.start()
    try:
        wait_until_asleep = time.monotonic() + 10
        while watchdog._WATCHDOG._asleep_until is None and time.monotonic() < wait_until_asleep:
            time.sleep(0.01)
        soon.start()
        assert soon_socket.shut.wait(10)
        assert not late_socket.shut.is_set()
    finally:
        late.stop()
        soon.stop()


class _UnshutSocket:
    """A TLS socket whose ``shutdown`` takes no ``how`` (urllib3 1.26's pyOpenSSL wrapper)."""

    def shutdown(self) -> None:
        pass


def test_a_socket_that_cannot_be_shut_does_not_stop_the_watchdog(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every later call of the process would run unbounded, and nothing would say so."""
    broken, later = watchdog.Watch(0.01), watchdog.Watch(0.05)
    later_socket = _Socket()
    broken.attach(types.SimpleNamespace(sock=_UnshutSocket()))
    later.attach(types.SimpleNamespace(sock=later_socket))
    with caplog.at_level(logging.ERROR, logger="pictify_tasks.transport"):
        broken.start()
        later.start()
        try:
            assert later_socket.shut.wait(10)
        finally:
            broken.stop()
            later.stop()
    assert broken.fired  # its call ends as timed out
    assert "could not end a late call" in caplog.text


def test_a_watchdog_thread_that_could_not_start_is_started_by_the_next_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Refused(threading.Thread):
        def start(self) -> None:
            raise RuntimeError("can't start new thread")

    dog = watchdog._Watchdog()
    monkeypatch.setattr(watchdog.threading, "Thread", Refused)
    with pytest.raises(RuntimeError):
        dog.watch(watchdog.Watch(60.0), time.monotonic() + 60)
    monkeypatch.undo()
    soon, soon_socket = watchdog.Watch(0.05), _Socket()
    soon.attach(types.SimpleNamespace(sock=soon_socket))
    dog.watch(soon, soon.deadline)
    assert soon_socket.shut.wait(10)


def test_a_watch_that_could_not_start_is_ended_and_forgotten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Else it stays the thread's watch, and in the heap a watchdog looks at every 50 ms."""
    started: list[watchdog.Watch] = []

    def refuse(watch: watchdog.Watch, at: float) -> None:
        started.append(watch)
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(watchdog._WATCHDOG, "watch", refuse)
    with pytest.raises(RuntimeError), watchdog.watched(60.0):
        pass
    assert watchdog.current_watch() is None
    assert [watch.done for watch in started] == [True]


def test_the_watchdog_keeps_only_the_calls_in_flight(
    client: PictifyClient, emulator: PictifyEmulator
) -> None:
    for _ in range(50):
        client.get_batch(emulator.create_batch())
    assert len(watchdog._WATCHDOG._heap) <= 2


def test_the_environment_is_read_once_per_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corporate.pem")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = transport.new_session("https://api.pictify.io")
    assert session.trust_env is False  # no per-call scan of the environment, no ~/.netrc
    assert session.proxies.get("https") == "http://proxy.internal:3128"
    assert session.verify == "/etc/ssl/corporate.pem"
    monkeypatch.setenv("NO_PROXY", "api.pictify.io")
    assert "https" not in transport.new_session("https://api.pictify.io").proxies


def test_normal_calls_keep_one_connection_alive(
    client: PictifyClient, emulator: PictifyEmulator
) -> None:
    for _ in range(3):
        client.get_batch(emulator.create_batch())
    client.cancel_batch(emulator.create_batch())
    pools = client._session.get_adapter(emulator.base_url).poolmanager.pools
    keys = pools.keys()  # the container cannot be iterated itself
    assert [pools[key].num_connections for key in keys] == [1]


# -- the API key: whitespace, control characters, redaction ------------------------------


def test_a_key_with_surrounding_whitespace_is_stripped(emulator: PictifyEmulator) -> None:
    batch_id = emulator.create_batch()
    with PictifyClient(f" {SECRET}\r\n", base_url=emulator.base_url) as client:
        assert client.cancel_batch(batch_id).outcome == "cancelled"
    [request] = emulator.cancel_requests(batch_id)
    assert request.headers["Authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("pk_live_abc\ndef123", "line feed"),
        ("pk_live_abc\x00def123", "control character"),
        ("pk_live_abc def123", "whitespace"),
        ("pk_live_abc\x7fdef123", "control character"),
        ("pk_live_abc\u20acdef123", "non-ASCII"),
    ],
)
def test_a_key_with_control_characters_is_refused_without_showing_it(key: str, says: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=says) as caught:
        PictifyClient(key)
    text = str(caught.value)
    assert "position 11" in text
    assert "abc" not in text and "def123" not in text and repr(key)[1:-1] not in text


def test_an_echoed_key_is_redacted_before_any_text_is_cut(
    client: PictifyClient, emulator: PictifyEmulator
) -> None:
    fragment = SECRET[8:20]  # the secret part, not the kind prefix
    for status, body in [
        (404, "<html>" + "x" * 100 + SECRET + "</html>"),
        (404, "<p>" + " " * 4080 + SECRET),
        (502, "y" * 110 + SECRET),
        (500, {"detail": "z" * 280 + f"Bearer {SECRET}"}),
        (200, {"status": "cancelled", "message": "w" * 280 + SECRET}),
        (200, {"status": "processing " + SECRET}),
    ]:
        emulator.inject(status=status, body=body, path_contains="/cancel")
        try:
            shown = repr(client.cancel_batch(emulator.create_batch()))
        except PictifyError as error:
            shown = f"{error} {error!r} {error.body!r} {error.code!r}"
        assert fragment not in shown, (status, shown)


#: Answers that echo the key, each a different way to an error.
ECHOES = [
    (500, {"detail": f"echo Bearer {SECRET}"}),
    (404, {"title": "Not Found", "detail": SECRET, "errors": [{"field": SECRET}]}),
    (400, {"message": "bad", "errors": [{"field": "key", "message": f"Bearer {SECRET}"}]}),
    (429, {"error": {"message": SECRET, "code": SECRET}}),
    (404, f"<html>no route for Bearer {SECRET}</html>"),
    (302, f"see {SECRET}"),
    (200, f"<html>portal {SECRET}</html>"),
    (200, {"batchId": SECRET + "/", "status": SECRET}),
]


@pytest.mark.parametrize(("status", "body"), ECHOES)
@pytest.mark.parametrize("call", ["get_batch", "start_batch"])
def test_the_key_never_shows_in_a_get_or_start_error(
    client: PictifyClient, emulator: PictifyEmulator, call: str, status: int, body: object
) -> None:
    emulator.inject(status=status, body=body, headers={"X-Echo": SECRET})
    try:
        if call == "get_batch":
            shown = repr(client.get_batch(emulator.create_batch()))
        else:
            shown = repr(client.start_batch("tpl_1", [{"n": 1}]))
    except PictifyError as error:
        shown = f"{error} {error!r} {error.args!r} {error.body!r} {error.code!r}"
    assert SECRET[8:] not in shown, shown


@pytest.mark.parametrize("route", ["own session", "a user's session"])
def test_a_transport_error_carrying_the_keys_repr_is_redacted(
    monkeypatch: pytest.MonkeyPatch, route: str
) -> None:
    # A key with a backslash: its repr() (as requests prints headers) differs from it.
    key = "pk_live_ab\\cd0123456789"
    base_url = "http://127.0.0.1:9"
    session = None if route == "own session" else transport.new_session(base_url)
    client = PictifyClient(key, base_url=base_url, session=session)
    headers = {"Authorization": f"Bearer {key}"}
    text = f"cannot send {headers!r}; key {key!r}; raw {key}"

    def fail_in_requests(*args: object, **kwargs: object) -> None:
        raise requests.ConnectionError(text)

    def fail_in_urllib3(*args: object, **kwargs: object) -> None:
        raise urllib3.exceptions.ProtocolError(text)

    if session is None:
        assert client._route is not None
        monkeypatch.setattr(client._route.pool, "urlopen", fail_in_urllib3)
    else:
        assert client._route is None
        monkeypatch.setattr(session, "request", fail_in_requests)
    with pytest.raises(PictifyConnectionError) as caught:
        client.cancel_batch("b_1")
    shown = str(caught.value)
    assert "ab\\cd" not in shown and "ab\\\\cd" not in shown
    assert "pk_live_***" in shown


def test_the_redactor_hides_every_spelling_of_the_key() -> None:
    key = "pk_live_a\\b'c\"d"
    redact = Redactor(key)
    text = " | ".join(
        [key, f"Bearer {key}", repr(key), repr({"Authorization": f"Bearer {key}"}), json.dumps(key)]
    )
    cleaned = redact(text)
    assert "a\\" not in cleaned and 'c"d' not in cleaned and 'c\\"d' not in cleaned
    assert cleaned.count("pk_live_***") == 5
    assert Redactor("sk_other").mask == "***" and "kind" in Redactor("kind_x")("kind_x kind")


def test_a_key_hint_tells_keys_apart_without_showing_a_short_one() -> None:
    assert key_hint(SECRET) == "pk_test_***" + SECRET[-4:]
    assert key_hint("pk_live_short") == "pk_live_***"
    assert key_hint("x" * 20) == "***xxxx"
    assert key_hint(None) == key_hint("") == "<not set>"
