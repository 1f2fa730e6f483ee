"""The client's own session skips ``requests``' per-call work; the wire must not change.

Each test sends the same calls through the direct route (the client's own
session) and through ``requests`` (a session the user passes), and compares
what the emulator received, or checks that a bound still holds on both.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from pictify_tasks import (
    ImproperlyConfigured,
    PictifyClient,
    PictifyConnectionError,
    PictifyError,
    UnexpectedResponseError,
)
from pictify_tasks.testing import PictifyEmulator
from pictify_tasks.testing.emulator.requestlog import RecordedRequest
from pictify_tasks.transport import DeadlineAdapter, DirectRoute, new_session

ROUTES = ["direct", "requests"]


@pytest.fixture
def emulator() -> Iterator[PictifyEmulator]:
    with PictifyEmulator(items_per_second=0, rate_limit=None) as emu:
        yield emu


def make_client(
    emulator: PictifyEmulator, route: str, base_url: str = "", **kwargs: object
) -> PictifyClient:
    base_url = base_url or emulator.base_url
    session = None if route == "direct" else new_session(base_url)
    client = PictifyClient(emulator.api_key, base_url=base_url, session=session, **kwargs)  # type: ignore[arg-type]
    assert (client._route is not None) == (route == "direct")
    return client


def wire(record: RecordedRequest) -> tuple[str, str, bytes, dict[str, str]]:
    headers = {name.lower(): value for name, value in record.headers.items()}
    return record.method, record.path, record.body, headers


def test_the_direct_route_sends_what_requests_sends(emulator: PictifyEmulator) -> None:
    batch_id = emulator.create_batch()
    rows = [{"name": "Ada"}, {"name": "Grace"}]
    seen: dict[str, list[tuple[str, str, bytes, dict[str, str]]]] = {}
    for route in ROUTES:
        since = len(emulator.requests)
        with make_client(emulator, route) as client:
            assert client.cancel_batch(batch_id).outcome == "cancelled"
            client.get_batch(batch_id)
            client.start_batch("tpl_1", rows, format="png", idempotency_key="start-1")
        seen[route] = [wire(record) for record in emulator.requests[since:]]
    assert seen["direct"] == seen["requests"]
    cancel, _, start = seen["direct"]
    assert cancel[3]["content-length"] == "0" and cancel[3]["idempotency-key"]
    assert start[3]["content-type"] == "application/json"
    assert start[3]["authorization"] == f"Bearer {emulator.api_key}"


def test_a_base_url_with_a_path_keeps_its_path_on_both_routes(emulator: PictifyEmulator) -> None:
    paths = {}
    for route in ROUTES:
        since = len(emulator.requests)
        base_url = emulator.base_url + "/v1/"
        with (
            make_client(emulator, route, base_url=base_url) as client,
            contextlib.suppress(PictifyError),
        ):
            client.cancel_batch("b_1")
        paths[route] = [record.path for record in emulator.requests[since:]]
    assert paths["direct"] == paths["requests"] == ["/v1/templates/batch/b_1/cancel"]


@pytest.mark.parametrize("route", ROUTES)
def test_the_whole_call_is_bounded_on_both_routes(emulator: PictifyEmulator, route: str) -> None:
    batch_id = emulator.create_batch()
    with make_client(emulator, route, timeout=1.0) as client:
        emulator.inject(trickle=3.0, path_contains="/cancel", times=1)
        started = time.monotonic()
        with pytest.raises(PictifyConnectionError, match="timed out"):
            client.cancel_batch(batch_id)
        assert time.monotonic() - started < 2.5
        assert client.cancel_batch(batch_id).outcome == "cancelled"


@pytest.mark.parametrize("route", ROUTES)
def test_connection_failures_are_connection_errors_on_both_routes(
    emulator: PictifyEmulator, route: str
) -> None:
    batch_id = emulator.create_batch()
    with make_client(emulator, route, timeout=0.3) as client:
        emulator.inject(delay=1.0, times=1)
        with pytest.raises(PictifyConnectionError, match="timed out"):
            client.cancel_batch(batch_id)
        emulator.inject(drop=True, times=1)
        with pytest.raises(PictifyConnectionError, match="failed to connect"):
            client.cancel_batch(batch_id)
        assert client.cancel_batch(batch_id).outcome == "cancelled"
    refused = make_client(emulator, route, base_url="http://127.0.0.1:9")
    with refused, pytest.raises(PictifyConnectionError, match="failed to connect"):
        refused.cancel_batch(batch_id)


@pytest.mark.parametrize("route", ROUTES)
def test_a_body_too_large_drops_the_connection_on_both_routes(
    emulator: PictifyEmulator, route: str
) -> None:
    batch_id = emulator.create_batch()
    with make_client(emulator, route) as client:
        emulator.inject(status=200, body={"status": "cancelled", "x": "y" * 3_000_000}, times=1)
        with pytest.raises(UnexpectedResponseError, match="1 MiB"):
            client.cancel_batch(batch_id)
        assert client.cancel_batch(batch_id).outcome == "cancelled"


@pytest.mark.parametrize("route", ROUTES)
def test_a_header_value_that_would_split_the_request_is_refused_on_both_routes(
    emulator: PictifyEmulator, route: str
) -> None:
    batch_id = emulator.create_batch()
    with make_client(emulator, route) as client:
        with pytest.raises(PictifyConnectionError, match="return character"):
            client.cancel_batch(batch_id, idempotency_key="k\r\nX-Injected: 1")
        assert emulator.cancel_requests(batch_id) == []


def test_closing_the_client_closes_the_direct_routes_connection(
    emulator: PictifyEmulator,
) -> None:
    batch_id = emulator.create_batch()
    client = make_client(emulator, "direct")
    client.get_batch(batch_id)
    assert client._route is not None
    [connection] = [conn for conn in client._route.pool.pool.queue if conn is not None]
    assert connection.sock is not None  # kept alive for the next call
    client.close()
    assert connection.sock is None  # not left open for as long as the client object lives
    # Used again, the client works as a closed ``requests`` session does: a new pool.
    assert client.cancel_batch(batch_id).outcome == "cancelled"


def test_a_users_session_is_used_as_it_is(emulator: PictifyEmulator) -> None:
    session = requests.Session()
    calls = []
    send = session.request

    def counted(*args: object, **kwargs: object) -> requests.Response:
        calls.append(args[:2])
        return send(*args, **kwargs)  # type: ignore[arg-type]

    session.request = counted  # type: ignore[method-assign]
    with PictifyClient(emulator.api_key, base_url=emulator.base_url, session=session) as client:
        assert client.cancel_batch(emulator.create_batch()).outcome == "cancelled"
    assert [method for method, _ in calls] == ["POST"]


def test_no_direct_route_where_requests_has_work_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    base_url = "https://api.pictify.io"
    assert DirectRoute.of(new_session(base_url), base_url) is not None
    assert DirectRoute.of(requests.Session(), base_url) is None  # reads the environment per call
    other = new_session(base_url)
    other.mount("https://", requests.adapters.HTTPAdapter())
    assert DirectRoute.of(other, base_url) is None  # no watchdog on its pools
    with_cert = new_session(base_url)
    with_cert.cert = "/etc/ssl/client.pem"
    assert DirectRoute.of(with_cert, base_url) is None
    assert DirectRoute.of(new_session(base_url), "http://a b") is None  # requests will say why
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert DirectRoute.of(new_session(base_url), base_url) is None
    mounted = new_session(base_url)
    assert isinstance(mounted.get_adapter(base_url), DeadlineAdapter)


def test_the_direct_route_verifies_tls_as_requests_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    base_url = "https://api.pictify.io"
    route = DirectRoute.of(new_session(base_url), base_url)
    assert route is not None and route.pool.cert_reqs == "CERT_REQUIRED"
    bundle = tmp_path / "corporate.pem"
    bundle.write_text("")  # read only when a connection is made
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    route = DirectRoute.of(new_session(base_url), base_url)
    assert route is not None and route.pool.cert_reqs == "CERT_REQUIRED"
    assert route.pool.ca_certs == str(bundle)


@pytest.mark.parametrize(
    "base_url", ["localhost:8000", "not a url", "ftp://x", "http://", "", "http://[::1"]
)
def test_a_base_url_that_is_no_http_url_is_refused_at_once(base_url: str) -> None:
    # Before: accepted, then every call failed as a retryable connection error.
    with pytest.raises(ImproperlyConfigured, match="PictifyClient's base_url"):
        PictifyClient("pk_test_abc", base_url=base_url)
