"""The webhook receiver: a plain WSGI app, and the one ``handle`` every adapter calls.

A delivery is answered in one store round trip and one publish: its
signature is checked on the raw bytes (401 when it is missing, wrong or
stale), its body read (400 when malformed), both before anything is
touched; then the batch's end is recorded once per ``X-Pictify-Delivery-Id``
and ``pictify.batch_ended`` is published, which wakes the waiting tasks on a
worker. A repeat is published again (it answers 200): the first publish may
have failed, or its process died, after the delivery was recorded, and waking
twice is harmless (the waiters are taken once). Nothing slow runs in the web
request: a broker that does not answer within :data:`PUBLISH_TIMEOUT` per
attempt, over :data:`PUBLISH_RETRIES` retries, makes the answer a 503 (Pictify
sends the delivery again).
"""

from __future__ import annotations

import http
import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Callable

from pictify_tasks._runtime import runtime_for
from pictify_tasks.errors import InvalidBatchIdError, PictifyError
from pictify_tasks.ids import validate_id
from pictify_tasks.names import ASKED_AT_HEADER, BATCH_ENDED
from pictify_tasks.statuses import TERMINAL_STATUSES
from pictify_tasks.store.base import StateStoreError
from pictify_tasks.store.ends import BatchEnd
from pictify_tasks.webhooks.signature import SignatureError, verify

__all__ = [
    "EVENT",
    "MAX_BODY",
    "Answer",
    "MalformedDelivery",
    "WebhookReceiver",
    "read_bounded",
    "read_delivery",
]

logger = logging.getLogger("pictify_tasks.webhooks")

EVENT = "batch.completed"
#: Seconds the broker gets to connect and to answer, per publish attempt.
PUBLISH_TIMEOUT = 2.0
#: Publish attempts after the first, before a delivery is answered 503.
PUBLISH_RETRIES = 2
#: A delivery is a few hundred bytes; a larger body is refused unread.
MAX_BODY = 64 * 1024

#: Publishes ``pictify.batch_ended`` for a batch (the seam tests replace).
Publish = Callable[[str], None]


@dataclass(frozen=True)
class Answer:
    """What the receiver answers: a status and a small JSON body."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, *extra: tuple[str, str], **fields: Any) -> Answer:
        body = json.dumps(fields).encode()
        return cls(status, body, (("Content-Type", "application/json"), *extra))


class MalformedDelivery(ValueError):
    """A correctly signed body that is not a usable delivery (answered 400)."""


class WebhookReceiver:
    """Receives Pictify's deliveries for one Celery app, configured like its workers.

    The secret(s), the state store and the broker come from ``celery_app``'s
    settings (``pictify_webhook_secret``, ``pictify_state_url``, the broker),
    read on first use. ``clock`` and ``publish`` are seams for tests.
    """

    def __init__(
        self,
        celery_app: Any,
        *,
        clock: Callable[[], float] = time.time,
        publish: Publish | None = None,
    ) -> None:
        self._app = celery_app
        self._clock = clock
        self._publish = publish or self._send_batch_ended

    def handle(self, method: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        """Answer one request; ``headers`` are keyed by lower-case name."""
        if method != "POST":
            return Answer.json(405, ("Allow", "POST"), error="use POST")
        if len(body) > MAX_BODY:
            return Answer.json(413, error=f"a delivery is at most {MAX_BODY} bytes")
        try:
            runtime = runtime_for(self._app)
            settings = runtime.settings
        except PictifyError as exc:
            logger.error("pictify webhook: the configuration is invalid: %s", exc)
            return Answer.json(500, error="the receiver is not configured")
        if not settings.webhook_secret:
            logger.error("pictify webhook: no pictify_webhook_secret is set; refusing deliveries")
            return Answer.json(500, error="the receiver is not configured")
        try:
            verify(
                body, headers.get("x-pictify-signature"), settings.webhook_secret, now=self._clock()
            )
        except SignatureError as exc:
            logger.warning("pictify webhook: delivery refused: %s", exc.reason)
            return Answer.json(401, error=exc.reason)
        try:
            delivery_id = _delivery_id(headers)
            end = read_delivery(body, headers.get("x-pictify-event"))
        except MalformedDelivery as exc:
            logger.warning("pictify webhook: malformed delivery: %s", exc)
            return Answer.json(400, error=str(exc))
        if end is None:
            return Answer.json(200, ignored=True)
        try:
            fresh = runtime.store.hear_batch_end(
                end, delivery_id, ttl=settings.link_ttl, outcome_ttl=settings.outcome_ttl
            )
        except StateStoreError as exc:
            logger.error("pictify webhook: delivery %s not recorded: %s", delivery_id, exc)
            return Answer.json(503, error="the state store did not answer; send it again")
        try:
            self._publish(end.batch_id)
        except Exception as exc:
            logger.error("pictify webhook: delivery %s not handed on: %s", delivery_id, exc)
            return Answer.json(503, error="the broker did not answer; send it again")
        if not fresh:
            return Answer.json(200, duplicate=True)
        logger.info(
            "pictify webhook: batch %s ended %s (delivery %s)",
            end.batch_id,
            end.status,
            delivery_id,
        )
        return Answer.json(202, accepted=True)

    def __call__(
        self, environ: Mapping[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        """WSGI: mount it under any path of any WSGI server."""
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        body, problem = _wsgi_body(environ) if method == "POST" else (b"", None)
        headers = {
            key[5:].replace("_", "-").lower(): str(value)
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        answer = problem or self.handle(method, body, headers)
        phrase = http.HTTPStatus(answer.status).phrase
        length = ("Content-Length", str(len(answer.body)))
        start_response(f"{answer.status} {phrase}", [*answer.headers, length])
        return [answer.body]

    def _send_batch_ended(self, batch_id: str) -> None:
        """Publish on a connection of its own, every wait bounded.

        The app's pooled connections wait as long as the broker's client does:
        for Redis, for ever on a broker that accepts and never answers.
        """
        bounded = {name: PUBLISH_TIMEOUT for name in _SOCKET_TIMEOUTS}
        with self._app.connection_for_write(
            connect_timeout=PUBLISH_TIMEOUT, transport_options=bounded
        ) as connection:
            self._app.send_task(
                BATCH_ENDED,
                args=(batch_id,),
                headers={ASKED_AT_HEADER: self._clock()},
                producer=connection.Producer(),
                retry=True,
                retry_policy=_RETRY_POLICY,
            )


#: The transports' names for their socket timeouts (Redis; RabbitMQ's py-amqp).
_SOCKET_TIMEOUTS = ("socket_timeout", "socket_connect_timeout", "read_timeout", "write_timeout")
_RETRY_POLICY = {
    "max_retries": PUBLISH_RETRIES,
    "interval_start": 0,
    "interval_step": 0.25,
    "interval_max": 0.5,
}


def read_delivery(body: bytes, event_header: str | None) -> BatchEnd | None:
    """The batch's end a ``batch.completed`` body tells; ``None`` for another event.

    Raises :class:`MalformedDelivery` for anything else: not JSON, no batch
    id, a status that is not final, a count that is not a whole number >= 0.
    Counts are read in either spelling (``totalCount`` or ``totalItems``).
    """
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedDelivery("the body is not JSON") from None
    if not isinstance(payload, dict):
        raise MalformedDelivery("the body is not a JSON object")
    event = payload.get("event")
    if event_header is not None and event != event_header:
        raise MalformedDelivery("the body's event is not X-Pictify-Event")
    if event != EVENT:
        return None
    data = payload.get("data")
    if not isinstance(data, dict):
        raise MalformedDelivery("batch.completed without a data object")
    try:
        batch_id = validate_id(data.get("batchId"))
    except InvalidBatchIdError as exc:
        raise MalformedDelivery(str(exc)) from None
    status = data.get("status")
    if status not in TERMINAL_STATUSES:
        raise MalformedDelivery(f"status must be one of {', '.join(TERMINAL_STATUSES)}")
    counts = [_count(data, *names) for names in _COUNTS]
    return BatchEnd(batch_id, status, *counts)


_COUNTS = (
    ("totalCount", "totalItems"),
    ("completedCount", "completedItems"),
    ("failedCount", "failedItems"),
)


def _count(data: Mapping[str, Any], *names: str) -> int | None:
    for name in names:
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise MalformedDelivery(f"{name} must be a whole number >= 0")
        return value
    return None


def _delivery_id(headers: Mapping[str, str]) -> str:
    try:
        return validate_id(headers.get("x-pictify-delivery-id"), kind="X-Pictify-Delivery-Id")
    except InvalidBatchIdError as exc:
        raise MalformedDelivery(str(exc)) from None


def read_bounded(stream: Any) -> bytes:
    """A request body read to its end, or to one byte past :data:`MAX_BODY` (then refused)."""
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_BODY:
        chunk = stream.read(MAX_BODY + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _wsgi_body(environ: Mapping[str, Any]) -> tuple[bytes, Answer | None]:
    """The request body, or the answer when it cannot (or must not) be read."""
    stream = environ.get("wsgi.input")
    length_text = str(environ.get("CONTENT_LENGTH") or "").strip()
    if stream is None:
        return b"", None
    if not length_text:
        if environ.get("wsgi.input_terminated"):
            return read_bounded(stream), None
        return b"", Answer.json(411, error="Content-Length is required")
    if not length_text.isdigit():
        return b"", Answer.json(400, error="unusable Content-Length")
    length = int(length_text)
    if length > MAX_BODY:
        return b"", Answer.json(413, error=f"a delivery is at most {MAX_BODY} bytes")
    return stream.read(length) if length else b"", None
