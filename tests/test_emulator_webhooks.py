"""The emulator tells a batch's end to its ``webhookUrl``, signed, with faults on demand."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from pictify_tasks import PictifyClient
from pictify_tasks.errors import CancelNotConfirmedError
from pictify_tasks.testing import PictifyEmulator

SECRET = "whsec_emulator_tests_secret"


class Hook(http.server.BaseHTTPRequestHandler):
    """Records each POST (headers, raw body) and answers 202."""

    received: list[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((dict(self.headers.items()), body))  # type: ignore[attr-defined]
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class Garbage(Hook):
    """Reads the delivery, then answers with something that is not HTTP."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.wfile.write(b"NOT HTTP AT ALL\r\n\r\n")
        self.close_connection = True


class Held(Hook):
    """Answers each delivery once the test releases it (``server.arrived``/``release``)."""

    def do_POST(self) -> None:
        self.server.arrived.set()  # type: ignore[attr-defined]
        self.server.release.wait(30)  # type: ignore[attr-defined]
        super().do_POST()


@contextmanager
def serving(handler: type[Hook]) -> Iterator[tuple[str, Any]]:
    """A receiver on loopback: its URL and its server (``received``, events)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.received = []  # type: ignore[attr-defined]
    server.arrived, server.release = threading.Event(), threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", server
    finally:
        server.release.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def hook() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    with serving(Hook) as (url, server):
        yield url, server.received


@pytest.fixture
def emulator() -> Iterator[PictifyEmulator]:
    with PictifyEmulator(items_per_second=0, webhook_secret=SECRET) as emulator:
        yield emulator


def signed_as_documented(headers: dict[str, str], body: bytes, secret: str = SECRET) -> bool:
    fields = dict(item.split("=", 1) for item in headers["X-Pictify-Signature"].split(","))
    text = fields["t"].encode() + b"." + body
    return hmac.compare_digest(
        fields["v1"], hmac.new(secret.encode(), text, hashlib.sha256).hexdigest()
    )


def stamp(headers: dict[str, str]) -> int:
    return int(headers["X-Pictify-Signature"].split(",")[0].removeprefix("t="))


def test_a_batch_started_with_a_webhook_url_tells_its_end_there(
    emulator: PictifyEmulator, hook: tuple[str, list[Any]]
) -> None:
    url, received = hook
    emulator.items_per_second = 50.0  # ends by itself, with nothing reading it
    with PictifyClient(emulator.api_key, base_url=emulator.base_url) as client:
        batch_id = client.start_batch("tpl", [{"n": 1}, {"n": 2}], webhook_url=url).batch_id
    [delivery] = emulator.wait_for_webhook_deliveries(1, batch_id)
    assert delivery.status == 202 and delivery.url == url
    [(headers, body)] = received
    assert json.loads(body) == {
        "event": "batch.completed",
        "data": {
            "batchId": batch_id,
            "status": "completed",
            "totalCount": 2,
            "completedCount": 2,
            "failedCount": 0,
        },
    }
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Pictify-Event"] == "batch.completed"
    assert headers["X-Pictify-Delivery-Id"] == delivery.delivery_id
    assert signed_as_documented(headers, body)
    assert body == delivery.body and b" " not in body  # compact, as JavaScript writes it


@pytest.mark.parametrize("end", ["completed", "partial", "failed", "cancelled"])
def test_every_end_is_told(
    emulator: PictifyEmulator, hook: tuple[str, list[Any]], end: str
) -> None:
    url, _ = hook
    batch_id = emulator.create_batch(webhook_url=url)
    if end == "cancelled":
        with PictifyClient(emulator.api_key, base_url=emulator.base_url) as client:
            client.cancel_batch(batch_id)
    else:
        emulator.set_batch_status(batch_id, end)
    [delivery] = emulator.wait_for_webhook_deliveries(1, batch_id)
    assert json.loads(delivery.body)["data"]["status"] == end


def test_faults_repeat_spoil_or_lose_a_delivery(
    emulator: PictifyEmulator, hook: tuple[str, list[Any]]
) -> None:
    url, _ = hook
    repeated, forged, stale, lost, plain = (emulator.create_batch(webhook_url=url) for _ in "12345")
    emulator.inject_webhook(copies=3, batch_id=repeated)
    emulator.inject_webhook(bad_signature=True, batch_id=forged)
    emulator.inject_webhook(stale=600, batch_id=stale)
    emulator.inject_webhook(lost=True, batch_id=lost)
    for batch_id in (repeated, forged, stale, lost, plain):
        emulator.set_batch_status(batch_id, "completed")
    emulator.wait_for_webhook_deliveries(1, plain)
    copies = emulator.wait_for_webhook_deliveries(3, repeated)
    assert len({d.delivery_id for d in copies}) == 1  # one delivery, sent three times
    [bad] = emulator.webhook_deliveries(forged)
    assert not signed_as_documented(bad.headers, bad.body)
    [old] = emulator.webhook_deliveries(stale)
    assert signed_as_documented(old.headers, old.body)
    assert stamp(old.headers) <= old.sent_at - 600
    assert emulator.webhook_deliveries(lost) == []  # ended before plain, never sent


def test_a_lagging_cancel_is_told_when_it_takes_effect(
    emulator: PictifyEmulator, hook: tuple[str, list[Any]]
) -> None:
    """The "cancel lags" mode: the batch stops by itself later, and its end is told then."""
    url, _ = hook
    emulator.cancel_lag = 0.3
    batch_id = emulator.create_batch(webhook_url=url)  # frozen: it would never end by itself
    client = PictifyClient(emulator.api_key, base_url=emulator.base_url)
    with client, pytest.raises(CancelNotConfirmedError):  # its 200 says "processing"
        client.cancel_batch(batch_id)
    assert emulator.webhook_deliveries(batch_id) == []  # asked to stop, still running
    [delivery] = emulator.wait_for_webhook_deliveries(1, batch_id, timeout=5)
    assert json.loads(delivery.body)["data"]["status"] == "cancelled"
    # Set running again by hand after the cancel took effect: it runs on.
    emulator.set_batch_status(batch_id, "processing")
    assert emulator.batch(batch_id)["status"] == "processing"


def test_a_late_delivery_waits_its_time(
    emulator: PictifyEmulator, hook: tuple[str, list[Any]]
) -> None:
    url, _ = hook
    batch_id = emulator.create_batch(webhook_url=url)
    emulator.inject_webhook(late=0.5)
    emulator.set_batch_status(batch_id, "failed")
    ended = emulator.batch(batch_id)["completedAt"]
    [delivery] = emulator.wait_for_webhook_deliveries(1, batch_id)
    assert ended is not None
    assert delivery.sent_at >= _wall(ended) + 0.5  # held back, never sent early


def test_no_webhook_url_no_delivery_and_no_receiver_no_crash(emulator: PictifyEmulator) -> None:
    quiet = emulator.create_batch()
    unreachable = emulator.create_batch(webhook_url="http://127.0.0.1:9/nothing-listens")
    emulator.set_batch_status(quiet, "completed")
    emulator.set_batch_status(unreachable, "completed")
    [delivery] = emulator.wait_for_webhook_deliveries(1, unreachable)
    assert delivery.status is None and delivery.error
    assert emulator.webhook_deliveries(quiet) == []


def test_a_receiver_answering_garbage_does_not_stop_later_deliveries(
    emulator: PictifyEmulator, hook: tuple[str, list[Any]]
) -> None:
    url, _ = hook
    with serving(Garbage) as (bad, _server):
        first = emulator.create_batch(status="completed", webhook_url=bad)
        [failed] = emulator.wait_for_webhook_deliveries(1, first, timeout=5)
    assert failed.status is None and failed.error is not None
    assert failed.error.startswith("BadStatusLine")
    second = emulator.create_batch(status="completed", webhook_url=url)
    [delivered] = emulator.wait_for_webhook_deliveries(1, second, timeout=5)
    assert delivered.status == 202


def test_a_delivery_in_flight_during_a_reset_is_not_recorded(
    emulator: PictifyEmulator, hook: tuple[str, list[Any]]
) -> None:
    url, _ = hook
    with serving(Held) as (held, server):
        emulator.create_batch(status="completed", webhook_url=held)
        assert server.arrived.wait(10)
        emulator.reset()
        server.release.set()
        fresh = emulator.create_batch(status="completed", webhook_url=url)
        # one sender thread: the held delivery was done with before this one was sent
        emulator.wait_for_webhook_deliveries(1, fresh, timeout=5)
    assert [d.url for d in emulator.webhook_deliveries()] == [url]


def _wall(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
