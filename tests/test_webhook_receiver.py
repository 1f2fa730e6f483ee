"""The receiver on its own: what it answers, what it records, what it hands on.

A forged, stale, replayed or malformed delivery changes nothing in the store
and publishes nothing; a good one is recorded once and handed on at once.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery

import pictify_tasks
from pictify_tasks._runtime import runtime_for
from pictify_tasks.store.base import StateStoreError
from pictify_tasks.store.ends import BatchEnd
from pictify_tasks.webhooks import WebhookReceiver, sign, wsgi_app

SECRET = "whsec_0123456789abcdef"
OLD = "whsec_fedcba9876543210"
NOW = 1_700_000_000


def body_for(batch_id: str = "b1", status: str = "completed", **data: Any) -> bytes:
    fields = {"batchId": batch_id, "status": status, "totalCount": 3, "completedCount": 3}
    payload = {"event": "batch.completed", "data": {**fields, "failedCount": 0, **data}}
    return json.dumps(payload, separators=(",", ":")).encode()


def headers_for(
    body: bytes, *, secret: str = SECRET, at: int = NOW, delivery: str = "dlv-1"
) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-pictify-event": "batch.completed",
        "x-pictify-delivery-id": delivery,
        "x-pictify-signature": sign(body, secret, at),
    }


class Receiving:
    """A receiver of an app with its state in memory, a fixed clock and a recording publish."""

    def __init__(self, **conf: Any) -> None:
        self.app = Celery(f"receiver-{uuid.uuid4().hex[:6]}", set_as_current=False)
        defaults = {"pictify_state_url": "memory://", "pictify_webhook_secret": [SECRET, OLD]}
        self.app.conf.update({**defaults, **conf})
        pictify_tasks.install(self.app)
        self.published: list[str] = []
        self.fail_publish = False
        self.receiver = WebhookReceiver(self.app, clock=lambda: NOW, publish=self.publish)

    def publish(self, batch_id: str) -> None:
        if self.fail_publish:
            raise ConnectionError("the broker is down")
        self.published.append(batch_id)

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        answer = self.receiver.handle("POST", body, headers)
        return answer.status, json.loads(answer.body)

    def end(self, batch_id: str = "b1") -> BatchEnd | None:
        return runtime_for(self.app).store.wait_turn(batch_id, "probe", 60).end

    def untouched(self, batch_id: str = "b1") -> bool:
        store = runtime_for(self.app).store
        return (
            self.published == []
            and store.cancel_state(batch_id).outcome is None
            and store.wait_turn(batch_id, "probe", 60).end is None
        )


@pytest.fixture
def receiving() -> Iterator[Receiving]:
    receiving = Receiving()
    yield receiving
    pictify_tasks.uninstall(receiving.app)


def test_a_good_delivery_is_recorded_and_handed_on_at_once(receiving: Receiving) -> None:
    body = body_for()
    assert receiving.post(body, headers_for(body)) == (202, {"accepted": True})
    assert receiving.published == ["b1"]
    assert receiving.end() == BatchEnd("b1", "completed", 3, 3, 0)
    outcome = runtime_for(receiving.app).store.cancel_state("b1").outcome
    assert outcome is not None and outcome.outcome == "already_finished"


def test_a_replayed_delivery_is_recorded_once_and_handed_on_again(receiving: Receiving) -> None:
    body = body_for()
    receiving.post(body, headers_for(body))
    late = body_for(status="failed")  # the same delivery id: the first end heard stays
    assert receiving.post(late, headers_for(late, at=NOW + 60)) == (200, {"duplicate": True})
    assert receiving.published == ["b1", "b1"]
    assert receiving.end() == BatchEnd("b1", "completed", 3, 3, 0)


def test_a_delivery_recorded_but_never_handed_on_is_handed_on_when_sent_again(
    receiving: Receiving,
) -> None:
    """The receiver's process died between recording the delivery and publishing it."""
    end = BatchEnd("b1", "completed", 3, 3, 0)
    runtime_for(receiving.app).store.hear_batch_end(end, "dlv-1", ttl=60, outcome_ttl=60)
    body = body_for()
    assert receiving.post(body, headers_for(body)) == (200, {"duplicate": True})
    assert receiving.published == ["b1"]


def test_a_delivery_signed_with_the_previous_secret_is_accepted(receiving: Receiving) -> None:
    body = body_for()
    assert receiving.post(body, headers_for(body, secret=OLD))[0] == 202


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"secret": "whsec_not_the_secret_at_all"}, "signature does not match"),
        ({"at": NOW - 301}, "timestamp outside the 5-minute window"),
        ({"at": NOW + 301}, "timestamp outside the 5-minute window"),
    ],
)
def test_a_forged_or_stale_delivery_is_refused_and_changes_nothing(
    receiving: Receiving, change: dict[str, Any], reason: str
) -> None:
    body = body_for()
    assert receiving.post(body, headers_for(body, **change)) == (401, {"error": reason})
    assert receiving.untouched()


def test_a_body_changed_after_signing_is_refused(receiving: Receiving) -> None:
    headers = headers_for(body_for())
    assert receiving.post(body_for(status="cancelled"), headers)[0] == 401
    assert receiving.untouched()


def test_an_unsigned_delivery_is_refused(receiving: Receiving) -> None:
    body = body_for()
    headers = {k: v for k, v in headers_for(body).items() if k != "x-pictify-signature"}
    assert receiving.post(body, headers)[0] == 401
    assert receiving.untouched()


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"event":"batch.completed"}',
        b'{"event":"batch.completed","data":{"status":"completed"}}',
        body_for(batch_id="../etc"),
        body_for(status="processing"),
        body_for(totalCount=-1),
        body_for(completedCount="3"),
        body_for(failedCount=True),
        b'{"event":"render.completed","data":{}}',  # not what X-Pictify-Event says
    ],
)
def test_a_signed_but_malformed_body_is_refused_and_changes_nothing(
    receiving: Receiving, body: bytes
) -> None:
    assert receiving.post(body, headers_for(body))[0] == 400
    assert receiving.untouched()


@pytest.mark.parametrize("delivery", ["", "a/b", "x" * 129])
def test_a_delivery_without_a_usable_delivery_id_is_refused(
    receiving: Receiving, delivery: str
) -> None:
    body = body_for()
    assert receiving.post(body, headers_for(body, delivery=delivery))[0] == 400
    assert receiving.untouched()


def test_another_event_is_acknowledged_and_ignored(receiving: Receiving) -> None:
    body = b'{"event":"render.completed","data":{"renderId":"r1"}}'
    headers = {**headers_for(body), "x-pictify-event": "render.completed"}
    assert receiving.post(body, headers) == (200, {"ignored": True})
    assert receiving.published == []


def test_a_delivery_not_handed_on_is_answered_503_and_heard_when_sent_again(
    receiving: Receiving,
) -> None:
    body = body_for()
    receiving.fail_publish = True
    assert receiving.post(body, headers_for(body))[0] == 503
    receiving.fail_publish = False
    assert receiving.post(body, headers_for(body))[0] == 200
    assert receiving.published == ["b1"]


def test_a_delivery_the_store_cannot_record_is_answered_503_and_heard_when_sent_again(
    receiving: Receiving, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is handed on unrecorded: Pictify sends it again, and then it is heard."""
    store = runtime_for(receiving.app).store

    def down(*args: Any, **kwargs: Any) -> bool:
        raise StateStoreError("the state store did not answer")

    body = body_for()
    with monkeypatch.context() as patched:
        patched.setattr(store, "hear_batch_end", down)
        assert receiving.post(body, headers_for(body)) == (
            503,
            {"error": "the state store did not answer; send it again"},
        )
    assert receiving.untouched()
    assert receiving.post(body, headers_for(body)) == (202, {"accepted": True})
    assert receiving.published == ["b1"] and receiving.end() is not None


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """A broker's address that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(socket.timeout):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(10)
    for connection in [*held, server]:
        connection.close()


@pytest.mark.parametrize("scheme", ["redis://{}/0", "amqp://guest:guest@{}//"])
def test_a_broker_that_never_answers_gets_a_prompt_503_not_a_hung_request(
    silent_broker: str, scheme: str
) -> None:
    receiving = Receiving(broker_url=scheme.format(silent_broker))
    receiver = WebhookReceiver(receiving.app, clock=lambda: NOW)  # publishes for real
    body = body_for()
    answers: list[int] = []
    thread = threading.Thread(
        target=lambda: answers.append(receiver.handle("POST", body, headers_for(body)).status),
        daemon=True,
    )
    thread.start()
    thread.join(60)  # a deadline for a hang, not a measure of speed
    pictify_tasks.uninstall(receiving.app)
    assert answers == [503], "the delivery is still waiting for the broker"


def test_without_a_secret_every_delivery_is_refused() -> None:
    receiving = Receiving(pictify_webhook_secret=None)
    try:
        body = body_for()
        assert receiving.post(body, headers_for(body))[0] == 500
        assert receiving.untouched()
    finally:
        pictify_tasks.uninstall(receiving.app)


def test_the_secret_never_reaches_the_log(
    receiving: Receiving, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = body_for()
    for headers in (headers_for(body), headers_for(body, at=NOW - 999), headers_for(body)):
        receiving.post(body, headers)
    receiving.post(b"{", headers_for(b"{"))
    assert caplog.records
    assert SECRET not in caplog.text and OLD not in caplog.text


def wsgi_call(app: Any, method: str, body: bytes, headers: dict[str, str]) -> tuple[str, bytes]:
    environ = {
        "REQUEST_METHOD": method,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        **{"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()},
    }
    seen: list[str] = []
    chunks = app(environ, lambda status, headers: seen.append(status))
    return seen[0], b"".join(chunks)


def test_the_wsgi_app_reads_its_secret_from_the_celery_app(receiving: Receiving) -> None:
    app = wsgi_app(receiving.app)
    body = body_for()
    status, answer = wsgi_call(app, "POST", body, headers_for(body, at=_now()))
    assert status == "202 Accepted" and json.loads(answer) == {"accepted": True}
    assert wsgi_call(app, "GET", b"", {})[0] == "405 Method Not Allowed"
    assert wsgi_call(app, "POST", b"{" * 70_000, {})[0] == "413 Request Entity Too Large"


def _now() -> int:
    import time

    return int(time.time())
