"""A local emulator of the Pictify batch endpoints, spoken to over real HTTP.

The real API cannot be reached from where this project is built and tested, so
the client, the tasks, the demo and their tests talk to this server instead.
It keeps what matters for cancelling batches (bearer auth, per-key rate limits,
idempotency keys, RFC 9457 problem details, batch progress) and adds what the
real API cannot give a test: a request log to assert on and injected faults
(error statuses, delays, dropped connections, lost responses).

Stdlib only and free of other ``pictify_tasks`` imports, so it runs anywhere.
Run it by hand with ``python -m pictify_tasks.testing.emulator --port 8765``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http
import http.server
import json
import math
import re
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from types import FrameType, TracebackType
from typing import Any, Union

__all__ = [
    "BATCH_STATUSES",
    "DEFAULT_API_KEY",
    "RUNNING_STATUSES",
    "TERMINAL_STATUSES",
    "Fault",
    "PictifyEmulator",
    "RecordedRequest",
    "main",
]

DEFAULT_API_KEY = "pk_test_emulator"
RUNNING_STATUSES: tuple[str, ...] = ("pending", "processing")
TERMINAL_STATUSES: tuple[str, ...] = ("completed", "partial", "failed", "cancelled")
BATCH_STATUSES: tuple[str, ...] = RUNNING_STATUSES + TERMINAL_STATUSES

_FORMATS = ("png", "jpeg", "webp")
_MAX_VARIABLE_SETS = 100
_UNLIMITED = 1_000_000_000  # the limit advertised when rate limiting is off
_IDEMPOTENCY_TTL = 24 * 60 * 60.0
_MAX_BODY = 10 * 1024 * 1024
_PROBLEM_BASE = "https://pictify.emulator.invalid/problems/"
_CDN = "https://cdn.emulator.invalid"

_ROUTE_RENDER = re.compile(r"(?:/v1)?/templates/([^/]+)/batch-render/?")
_ROUTE_RESULTS = re.compile(r"(?:/v1)?/templates/batch/([^/]+)/results/?")
_ROUTE_CANCEL = re.compile(r"(?:/v1)?/templates/batch/([^/]+)/cancel/?")

JsonBody = Union[Mapping[str, Any], Sequence[Any], str, bytes, None]


def _iso(timestamp: float | None) -> str | None:
    """ISO-8601 UTC with milliseconds and a ``Z``, as JavaScript back ends write it."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- responses


@dataclass
class _Response:
    """What the handler should send (or, with ``drop``, not send)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    replayed: bool = False
    drop: bool = False


def _json_response(status: int, payload: Any, content_type: str = "application/json") -> _Response:
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return _Response(status, body, {"Content-Type": content_type})


def _status_title(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _problem(status: int, detail: str, instance: str, **extensions: Any) -> _Response:
    """An RFC 9457 problem details response, the error shape the real API uses."""
    title = _status_title(status)
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "error"
    payload: dict[str, Any] = {
        "type": _PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    payload.update(extensions)
    return _json_response(status, payload, "application/problem+json")


def _field_error(field_name: str, message: str, code: str) -> dict[str, str]:
    return {"field": field_name, "message": message, "code": code}


# --------------------------------------------------------------------------- request log


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator received it, so tests can assert on the wire.

    ``status`` is what was sent back: ``None`` while the request is still being
    handled and when the connection was dropped (also after handling).
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    time: float
    monotonic: float
    status: int | None = None
    replayed: bool = False

    def header(self, name: str) -> str | None:
        """Look a header up case-insensitively (clients differ in spelling)."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None

    def json(self) -> Any:
        """The body parsed as JSON, or ``None`` when there is no body."""
        return json.loads(self.body.decode("utf-8")) if self.body else None


def _matches(record: RecordedRequest, method: str | None, path_contains: str | None) -> bool:
    if method is not None and record.method != method.upper():
        return False
    return path_contains is None or path_contains in record.path


class _RequestLog:
    """Thread-safe log; a condition lets tests wait for requests without polling."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._entries: list[RecordedRequest] = []
        self._generation = 0

    def begin(self, record: RecordedRequest) -> tuple[int, int]:
        """Log a request on arrival, so waiters see it even while it is delayed."""
        with self._cond:
            self._entries.append(record)
            self._cond.notify_all()
            return self._generation, len(self._entries) - 1

    def finish(self, token: tuple[int, int], status: int | None, replayed: bool) -> None:
        generation, index = token
        with self._cond:
            if generation != self._generation:
                return  # the log was cleared while the request was in flight
            self._entries[index] = replace(self._entries[index], status=status, replayed=replayed)
            self._cond.notify_all()

    def snapshot(self) -> list[RecordedRequest]:
        with self._cond:
            return list(self._entries)

    def clear(self) -> None:
        with self._cond:
            self._entries.clear()
            self._generation += 1

    def wait_for(
        self, count: int, method: str | None, path_contains: str | None, timeout: float
    ) -> list[RecordedRequest]:
        def matching() -> list[RecordedRequest]:
            return [r for r in self._entries if _matches(r, method, path_contains)]

        with self._cond:
            if self._cond.wait_for(lambda: len(matching()) >= count, timeout):
                return matching()
            seen = len(matching())
        raise TimeoutError(
            f"expected at least {count} request(s) matching method={method!r}, "
            f"path_contains={path_contains!r} within {timeout:g} s; saw {seen}"
        )


# --------------------------------------------------------------------------- faults


class Fault:
    """One injected misbehaviour; see :meth:`PictifyEmulator.inject`.

    Counters are updated under the fault list's lock; reading them is safe.
    """

    def __init__(
        self,
        *,
        status: int | None,
        body: JsonBody,
        headers: Mapping[str, str] | None,
        delay: float,
        drop: bool,
        drop_after_handling: bool,
        times: int | None,
        method: str | None,
        path_contains: str | None,
    ) -> None:
        if status is not None and not 200 <= status <= 599:
            raise ValueError(f"fault status must be 200..599, got {status}")
        if sum((status is not None, drop, drop_after_handling)) > 1:
            raise ValueError("status, drop and drop_after_handling are mutually exclusive")
        if status is None and (body is not None or headers):
            raise ValueError("body and headers need a status to answer with")
        if delay < 0:
            raise ValueError("delay must be >= 0")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1, or None for ever")
        self.status = status
        self.body = body
        self.headers: dict[str, str] = dict(headers or {})
        self.delay = float(delay)
        self.drop = drop
        self.drop_after_handling = drop_after_handling
        self.method = method.upper() if method is not None else None
        self.path_contains = path_contains
        self._remaining = times
        self._hits = 0

    @property
    def remaining(self) -> int | None:
        """Matching requests this fault still applies to (``None``: for ever)."""
        return self._remaining

    @property
    def hits(self) -> int:
        """Requests this fault has been applied to so far."""
        return self._hits

    @property
    def spent(self) -> bool:
        return self._remaining == 0

    def _matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.path_contains is None or self.path_contains in path

    def _consume(self) -> None:
        self._hits += 1
        if self._remaining is not None:
            self._remaining -= 1

    def _response(self, instance: str) -> _Response:
        """The canned answer; it models a proxy, so no rate-limit headers are added."""
        assert self.status is not None
        body = self.body
        if body is None:
            extensions: dict[str, Any] = {}
            if self.status == 429:
                extensions["code"] = "rate_limited"
                retry_after = {k.lower(): v for k, v in self.headers.items()}.get("retry-after")
                if retry_after is not None and retry_after.strip().isdigit():
                    extensions["retryAfter"] = int(retry_after)
            response = _problem(
                self.status, f"Injected fault: HTTP {self.status}", instance, **extensions
            )
        elif isinstance(body, (str, bytes)):
            raw = body.encode("utf-8") if isinstance(body, str) else body
            looks_html = raw.lstrip()[:1] == b"<"
            content_type = "text/html; charset=utf-8" if looks_html else "text/plain; charset=utf-8"
            response = _Response(self.status, raw, {"Content-Type": content_type})
        else:
            response = _json_response(self.status, body)
        overrides = {k.lower() for k in self.headers}
        response.headers = {k: v for k, v in response.headers.items() if k.lower() not in overrides}
        response.headers.update(self.headers)
        return response

    def __repr__(self) -> str:
        action = (
            f"status={self.status}"
            if self.status is not None
            else "drop"
            if self.drop
            else "drop_after_handling"
            if self.drop_after_handling
            else "delay-only"
        )
        return (
            f"Fault({action}, delay={self.delay:g}, method={self.method!r}, "
            f"path_contains={self.path_contains!r}, remaining={self._remaining}, "
            f"hits={self._hits})"
        )


class _FaultList:
    """Faults in the order added; the first live match takes the request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if not fault.spent and fault._matches(method, path):
                    fault._consume()
                    if fault.spent:
                        self._faults.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


# --------------------------------------------------------------------------- rate limits


@dataclass(frozen=True)
class _RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # Unix seconds when the window ends
    retry_after: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }


@dataclass
class _Window:
    ends_monotonic: float
    ends_wall: float
    count: int = 0


class _RateLimiter:
    """Fixed windows per API key, the simplest scheme that yields the real headers."""

    def __init__(self, limit: int | None, window: float) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}
        self.configure(limit, window)

    def configure(self, limit: int | None, window: float) -> None:
        if limit is not None and limit < 0:
            raise ValueError("rate_limit must be >= 0 or None")
        if window <= 0:
            raise ValueError("rate_window must be > 0")
        with self._lock:
            self._limit = limit
            self._window = float(window)
            self._windows.clear()

    @property
    def limit(self) -> int | None:
        return self._limit

    @property
    def window(self) -> float:
        return self._window

    def hit(self, key: str) -> _RateDecision:
        with self._lock:
            now, wall = time.monotonic(), time.time()
            window = self._windows.get(key)
            if window is None or now >= window.ends_monotonic:
                window = _Window(now + self._window, wall + self._window)
                self._windows[key] = window
            limit = _UNLIMITED if self._limit is None else self._limit
            allowed = window.count < limit
            if allowed:
                window.count += 1
            return _RateDecision(
                allowed=allowed,
                limit=limit,
                remaining=max(0, limit - window.count),
                reset=math.ceil(window.ends_wall),
                retry_after=max(1, math.ceil(window.ends_monotonic - now)),
            )

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()


# --------------------------------------------------------------------------- idempotency


@dataclass(frozen=True)
class _CachedResponse:
    fingerprint: str
    status: int
    body: bytes
    content_type: str
    expires: float  # time.monotonic()


class _IdempotencyCache:
    """First response per (api key, idempotency key), plus a lock per key pair.

    The lock makes concurrent requests with one key run one after the other,
    so the second sees the first one's cached response instead of re-executing.
    """

    def __init__(self, ttl: float = _IDEMPOTENCY_TTL) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._entries: dict[tuple[str, str], _CachedResponse] = {}

    def lock_for(self, api_key: str, key: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault((api_key, key), threading.Lock())

    def get(self, api_key: str, key: str) -> _CachedResponse | None:
        with self._lock:
            entry = self._entries.get((api_key, key))
            if entry is not None and entry.expires <= time.monotonic():
                del self._entries[(api_key, key)]
                return None
            return entry

    def put(self, api_key: str, key: str, fingerprint: str, response: _Response) -> None:
        with self._lock:
            self._entries[(api_key, key)] = _CachedResponse(
                fingerprint=fingerprint,
                status=response.status,
                body=response.body,
                content_type=response.headers.get("Content-Type", "application/json"),
                expires=time.monotonic() + self._ttl,
            )

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._locks.clear()


def _cacheable(status: int) -> bool:
    """2xx and 4xx other than 429 are final answers; 5xx and 429 invite a retry."""
    return 200 <= status < 300 or (400 <= status < 500 and status != 429)


# --------------------------------------------------------------------------- batches


class _Batch:
    """One batch. Progress is derived from elapsed time when read, so no thread runs it."""

    def __init__(
        self,
        batch_id: str,
        template_uid: str,
        total_items: int,
        status: str,
        rate: float,
        image_format: str,
    ) -> None:
        now_mono, now_wall = time.monotonic(), time.time()
        self.batch_id = batch_id
        self.template_uid = template_uid
        self.total_items = total_items
        self.rate = rate
        self.image_format = image_format
        self.status = status
        self.created_wall = now_wall
        self.started_wall: float | None = None if status in ("pending", "cancelled") else now_wall
        self.completed_wall: float | None = now_wall if status in TERMINAL_STATUSES else None
        # Progress runs from an anchor: base_rendered items done at anchor time.
        self.anchor_monotonic = now_mono
        self.anchor_wall = now_wall
        self.rendered = 0
        self.failed = 0
        if status == "completed":
            self.rendered = total_items
        elif status == "partial":
            self.rendered = total_items // 2
            self.failed = total_items - self.rendered
        elif status == "failed":
            self.failed = total_items
        self.base_rendered = self.rendered
        self.cancel_requests = 0
        self.effective_cancels = 0

    def settle(self, now: float) -> None:
        """Bring the stored state up to ``now`` (time.monotonic())."""
        if self.status in TERMINAL_STATUSES or self.rate <= 0:
            return
        done = int((now - self.anchor_monotonic) * self.rate)
        rendered = min(self.total_items, self.base_rendered + max(0, done))
        if rendered > self.base_rendered and self.status == "pending":
            self.status = "processing"
        if rendered > self.base_rendered and self.started_wall is None:
            self.started_wall = self.anchor_wall + 1.0 / self.rate
        self.rendered = rendered
        if rendered >= self.total_items:
            self.status = "completed"
            self.completed_wall = (
                self.anchor_wall + (self.total_items - self.base_rendered) / self.rate
            )

    def force(self, status: str) -> None:
        """Set a status by hand; running statuses resume progress from here."""
        now_mono, now_wall = time.monotonic(), time.time()
        self.settle(now_mono)
        self.status = status
        if status in RUNNING_STATUSES:
            self.failed = 0
            self.completed_wall = None
            self.anchor_monotonic, self.anchor_wall = now_mono, now_wall
            self.base_rendered = self.rendered
            if status == "processing" and self.started_wall is None:
                self.started_wall = now_wall
            self.settle(now_mono)
            return
        self.completed_wall = now_wall
        if status == "completed":
            self.rendered, self.failed = self.total_items, 0
        elif status in ("partial", "failed"):
            self.failed = self.total_items - self.rendered
        else:
            self.failed = 0
        if status != "cancelled" and self.started_wall is None:
            self.started_wall = now_wall

    def cancel(self) -> str:
        """Cancel if still running; returns ``cancelled``, ``already`` or ``finished``."""
        now_mono, now_wall = time.monotonic(), time.time()
        self.settle(now_mono)
        self.cancel_requests += 1
        if self.status == "cancelled":
            return "already"
        if self.status in TERMINAL_STATUSES:
            return "finished"
        self.status = "cancelled"
        self.completed_wall = now_wall
        self.effective_cancels += 1
        return "cancelled"

    def public(self) -> dict[str, Any]:
        """The results-endpoint body (call :meth:`settle` first)."""
        processed = self.rendered + self.failed
        progress = 100 if self.total_items == 0 else processed * 100 // self.total_items
        failed_from = self.total_items - self.failed
        return {
            "batchId": self.batch_id,
            "status": self.status,
            "progress": progress,
            "totalItems": self.total_items,
            "completedItems": self.rendered,
            "failedItems": self.failed,
            "results": [
                {"index": i, "url": f"{_CDN}/{self.batch_id}/{i}.{self.image_format}"}
                for i in range(self.rendered)
            ],
            "errors": [
                {"index": i, "message": "Rendering failed (emulated)", "code": "render_failed"}
                for i in range(failed_from, self.total_items)
            ],
            "createdAt": _iso(self.created_wall),
            "startedAt": _iso(self.started_wall),
            "completedAt": _iso(self.completed_wall),
        }


class _BatchStore:
    """All batches, behind one lock; every read settles progress first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batches: dict[str, _Batch] = {}

    def create(
        self, template_uid: str, total_items: int, status: str, rate: float, image_format: str
    ) -> str:
        batch_id = "batch_" + uuid.uuid4().hex[:24]
        batch = _Batch(batch_id, template_uid, total_items, status, rate, image_format)
        with self._lock:
            self._batches[batch_id] = batch
        return batch_id

    def _get(self, batch_id: str) -> _Batch:
        try:
            return self._batches[batch_id]
        except KeyError:
            raise KeyError(f"unknown batch {batch_id!r}") from None

    def public(self, batch_id: str) -> dict[str, Any] | None:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None:
                return None
            batch.settle(time.monotonic())
            return batch.public()

    def snapshot(self, batch_id: str) -> dict[str, Any]:
        with self._lock:
            batch = self._get(batch_id)
            batch.settle(time.monotonic())
            data = batch.public()
            data["cancelRequests"] = batch.cancel_requests
            data["effectiveCancels"] = batch.effective_cancels
            return data

    def force(self, batch_id: str, status: str) -> None:
        with self._lock:
            self._get(batch_id).force(status)

    def cancel(self, batch_id: str) -> tuple[str, str] | None:
        """``(outcome, status after)`` or ``None`` for an unknown batch."""
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None:
                return None
            outcome = batch.cancel()
            return outcome, batch.status

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._batches)

    def clear(self) -> None:
        with self._lock:
            self._batches.clear()


def _validate_render(payload: Any) -> list[dict[str, str]]:
    """Field errors for a batch-render body, in the problem-details ``errors`` shape."""
    if not isinstance(payload, dict):
        return [_field_error("body", "Request body must be a JSON object", "invalid_type")]
    errors: list[dict[str, str]] = []
    sets = payload.get("variableSets")
    if sets is None:
        errors.append(_field_error("variableSets", "variableSets is required", "required"))
    elif not isinstance(sets, list):
        errors.append(_field_error("variableSets", "variableSets must be an array", "invalid_type"))
    elif not sets:
        errors.append(_field_error("variableSets", "needs at least 1 item", "too_small"))
    elif len(sets) > _MAX_VARIABLE_SETS:
        errors.append(
            _field_error(
                "variableSets", f"variableSets allows at most {_MAX_VARIABLE_SETS} items", "too_big"
            )
        )
    else:
        for index, item in enumerate(sets):
            if not isinstance(item, dict):
                errors.append(
                    _field_error(f"variableSets[{index}]", "must be an object", "invalid_type")
                )
                break
    image_format = payload.get("format")
    if image_format is not None and image_format not in _FORMATS:
        errors.append(_field_error("format", "format must be png, jpeg or webp", "invalid_enum"))
    quality = payload.get("quality")
    if quality is not None and not (
        isinstance(quality, (int, float)) and not isinstance(quality, bool) and 0.1 <= quality <= 1
    ):
        errors.append(_field_error("quality", "quality must be a number 0.1..1", "out_of_range"))
    concurrency = payload.get("concurrency")
    if concurrency is not None and not (
        isinstance(concurrency, int)
        and not isinstance(concurrency, bool)
        and 1 <= concurrency <= 10
    ):
        errors.append(
            _field_error("concurrency", "concurrency must be an integer 1..10", "out_of_range")
        )
    layout = payload.get("layout")
    if layout is not None and not isinstance(layout, (str, dict)):
        errors.append(_field_error("layout", "layout must be a string or object", "invalid_type"))
    layouts = payload.get("layouts")
    if layouts is not None and not isinstance(layouts, list):
        errors.append(_field_error("layouts", "layouts must be an array", "invalid_type"))
    webhook = payload.get("webhookUrl")
    if webhook is not None and not (
        isinstance(webhook, str) and webhook.startswith(("http://", "https://"))
    ):
        errors.append(_field_error("webhookUrl", "must be an http(s) URL", "invalid_url"))
    return errors


def _bearer_token(value: str | None) -> str | None:
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


# --------------------------------------------------------------------------- HTTP plumbing


class _Server(http.server.ThreadingHTTPServer):
    """Threaded server that can close its open keep-alive connections on stop."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False  # stop() closes connections itself instead of joining threads

    def __init__(self, address: tuple[str, int], emulator: PictifyEmulator) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a DNS lookup that can stall.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or go away are part of the game, not errors to print.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Turns HTTP into calls on the emulator; all API behaviour lives there."""

    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "PictifyEmulator/1.0"
    timeout = 120  # idle keep-alive connections do not live for ever
    # Headers and body go out in two writes; with Nagle's algorithm on, a
    # keep-alive client would wait ~40 ms for the body (delayed ACK). The real
    # API does not make clients wait like that, so neither may its stand-in.
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log; the request log replaces it."""

    def _dispatch(self) -> None:
        length_header = self.headers.get("Content-Length")
        try:
            length = int(length_header) if length_header else 0
        except ValueError:
            length = -1
        if length < 0 or length > _MAX_BODY:
            self.close_connection = True
            status = 413 if length > _MAX_BODY else 400
            self._write(_problem(status, "Unusable Content-Length", self.path.split("?")[0]))
            return
        body = self.rfile.read(length) if length else b""
        response = self.server.emulator._serve(self.command, self.path, self.headers.items(), body)
        if response.drop:
            self.close_connection = True
            return
        self._write(response)

    def _write(self, response: _Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = _dispatch
    do_POST = _dispatch
    do_PUT = _dispatch
    do_PATCH = _dispatch
    do_DELETE = _dispatch
    do_HEAD = _dispatch
    do_OPTIONS = _dispatch


# --------------------------------------------------------------------------- the emulator

_RouteHandler = Callable[[str, bytes, str], _Response]


class PictifyEmulator:
    """An in-process Pictify API (batch endpoints) on a loopback port.

    ``with PictifyEmulator() as emu:`` starts it; point a client at
    ``emu.base_url`` with ``emu.api_key``. Batches progress with wall time at
    ``items_per_second`` (0 freezes them), so tests control timing by rate and
    :meth:`set_batch_status` rather than by sleeping.
    """

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit: int | None = 1000,
        rate_window: float = 60.0,
        items_per_second: float = 2.0,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        if items_per_second < 0:
            raise ValueError("items_per_second must be >= 0")
        self._api_key = api_key
        self._api_keys: set[str] = {api_key}
        self._keys_lock = threading.Lock()
        self._host = host
        self._port = port
        self._items_per_second = float(items_per_second)
        self._limiter = _RateLimiter(rate_limit, rate_window)
        self._idempotency = _IdempotencyCache()
        self._faults = _FaultList()
        self._log = _RequestLog()
        self._store = _BatchStore()
        self._lifecycle_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._bound_port: int | None = None
        self._stopping = threading.Event()
        self._routes: list[tuple[re.Pattern[str], str, _RouteHandler]] = [
            (_ROUTE_RENDER, "POST", self._render),
            (_ROUTE_RESULTS, "GET", self._results),
            (_ROUTE_CANCEL, "POST", self._cancel),
        ]

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> PictifyEmulator:
        """Bind and serve in a daemon thread; a restart reuses the first port."""
        with self._lifecycle_lock:
            if self._server is not None:
                return self
            port = self._bound_port if self._bound_port is not None else self._port
            server = _Server((self._host, port), self)
            self._bound_port = int(server.server_address[1])
            self._stopping.clear()
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"pictify-emulator:{self._bound_port}",
                daemon=True,
            )
            thread.start()
            self._server, self._thread = server, thread
            return self

    def stop(self) -> None:
        """Stop serving, close the socket and open connections; safe to call twice."""
        with self._lifecycle_lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            if server is None:
                return
            self._stopping.set()  # wakes requests sleeping in an injected delay
            server.shutdown()
            server.server_close()
            server.close_connections()
            if thread is not None:
                thread.join()

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self) -> PictifyEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://host:port`` without a trailing slash (needs :meth:`start`)."""
        if self._bound_port is None:
            raise RuntimeError("the emulator has not been started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._bound_port}"

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("the emulator has not been started")
        return self._bound_port

    @property
    def api_key(self) -> str:
        return self._api_key

    def add_api_key(self, key: str) -> None:
        """Accept another key; each key gets its own rate-limit window."""
        if not key:
            raise ValueError("key must not be empty")
        with self._keys_lock:
            self._api_keys.add(key)

    @property
    def items_per_second(self) -> float:
        """Default render rate for batches created from now on."""
        return self._items_per_second

    @items_per_second.setter
    def items_per_second(self, value: float) -> None:
        if value < 0:
            raise ValueError("items_per_second must be >= 0")
        self._items_per_second = float(value)

    def set_rate_limit(self, limit: int | None, window: float | None = None) -> None:
        """Change the limit (``None``: unlimited) and start fresh windows."""
        self._limiter.configure(limit, self._limiter.window if window is None else window)

    def reset(self) -> None:
        """Forget batches, requests, faults, idempotency keys and rate windows.

        Accepted API keys and settings stay.
        """
        self._store.clear()
        self._log.clear()
        self._faults.clear()
        self._idempotency.clear()
        self._limiter.clear()

    # ------------------------------------------------------------------ batches

    def create_batch(
        self,
        total_items: int = 10,
        status: str = "processing",
        items_per_second: float | None = None,
        template_uid: str = "tpl_emulator",
    ) -> str:
        """Make a batch without HTTP and return its id.

        Running statuses progress at ``items_per_second`` (default: the
        emulator's; 0: never); terminal statuses stay as given.
        """
        if status not in BATCH_STATUSES:
            raise ValueError(f"status must be one of {BATCH_STATUSES}, got {status!r}")
        if total_items < 1:
            raise ValueError("total_items must be >= 1")
        rate = self._items_per_second if items_per_second is None else float(items_per_second)
        if rate < 0:
            raise ValueError("items_per_second must be >= 0")
        return self._store.create(template_uid, total_items, status, rate, "png")

    def set_batch_status(self, batch_id: str, status: str) -> None:
        """Force a status; ``pending``/``processing`` resume progress from now."""
        if status not in BATCH_STATUSES:
            raise ValueError(f"status must be one of {BATCH_STATUSES}, got {status!r}")
        self._store.force(batch_id, status)

    def batch(self, batch_id: str) -> dict[str, Any]:
        """Results-endpoint fields plus ``cancelRequests`` and ``effectiveCancels``.

        Both count cancel requests the API executed for this batch; idempotent
        replays and requests stopped by faults, auth or rate limits are not
        executed (see :meth:`cancel_requests` for what was on the wire).
        Raises ``KeyError`` for an unknown batch.
        """
        return self._store.snapshot(batch_id)

    def batches(self) -> list[str]:
        """Batch ids in creation order."""
        return self._store.ids()

    # ------------------------------------------------------------------ request log

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the request log, oldest first."""
        return self._log.snapshot()

    def requests_matching(
        self, method: str | None = None, path_contains: str | None = None
    ) -> list[RecordedRequest]:
        return [r for r in self._log.snapshot() if _matches(r, method, path_contains)]

    def cancel_requests(self, batch_id: str | None = None) -> list[RecordedRequest]:
        """POSTs that reached the cancel endpoint (whatever became of them)."""
        found = []
        for record in self._log.snapshot():
            match = _ROUTE_CANCEL.fullmatch(record.path.split("?", 1)[0])
            if record.method == "POST" and match and batch_id in (None, match.group(1)):
                found.append(record)
        return found

    def clear_requests(self) -> None:
        self._log.clear()

    def wait_for_requests(
        self,
        count: int,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        timeout: float = 10.0,
    ) -> list[RecordedRequest]:
        """Block until ``count`` matching requests have arrived; ``TimeoutError`` if not.

        Requests are logged on arrival, so one still held by a delay counts
        (with ``status`` still ``None``).
        """
        return self._log.wait_for(count, method, path_contains, timeout)

    # ------------------------------------------------------------------ faults

    def inject(
        self,
        *,
        status: int | None = None,
        body: JsonBody = None,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        drop: bool = False,
        drop_after_handling: bool = False,
        times: int | None = 1,
        method: str | None = None,
        path_contains: str | None = None,
    ) -> Fault:
        """Make the next matching requests misbehave, before auth and rate limits.

        ``status``: answer it with ``body`` (mapping/list → JSON, str/bytes →
        raw, ``None`` → problem details) and ``headers``, leaving state alone.
        ``drop``: close the connection without answering, leaving state alone.
        ``drop_after_handling``: handle normally, then close without answering.
        ``delay``: sleep first (alone: then handle normally). Applies to
        ``times`` matching requests (``None``: for ever).
        """
        fault = Fault(
            status=status,
            body=body,
            headers=headers,
            delay=delay,
            drop=drop,
            drop_after_handling=drop_after_handling,
            times=times,
            method=method,
            path_contains=path_contains,
        )
        self._faults.add(fault)
        return fault

    def clear_faults(self) -> None:
        self._faults.clear()

    # ------------------------------------------------------------------ request handling

    def _serve(
        self, method: str, target: str, header_items: Iterable[tuple[str, Any]], body: bytes
    ) -> _Response:
        """Log, apply faults, then the API; called by the handler thread."""
        headers: dict[str, str] = {str(k): str(v) for k, v in header_items}
        token = self._log.begin(
            RecordedRequest(method, target, headers, body, time.time(), time.monotonic())
        )
        try:
            response = self._apply_faults(method, target, headers, body)
        except Exception as exc:  # an emulator bug: answer 500 and show it, don't hang up
            traceback.print_exc()
            response = _problem(500, f"Emulator error: {exc!r}", target.split("?", 1)[0])
        self._log.finish(token, None if response.drop else response.status, response.replayed)
        return response

    def _apply_faults(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> _Response:
        path = target.split("?", 1)[0]
        fault = self._faults.take(method, target)
        if fault is not None:
            if fault.delay > 0:
                self._stopping.wait(fault.delay)
            if fault.drop:
                return _Response(0, drop=True)
            if fault.status is not None:
                return fault._response(path)
        response = self._authenticated(method, target, path, headers, body)
        if fault is not None and fault.drop_after_handling:
            response.drop = True
        return response

    def _authenticated(
        self, method: str, target: str, path: str, headers: dict[str, str], body: bytes
    ) -> _Response:
        lowered = {k.lower(): v for k, v in headers.items()}
        key = _bearer_token(lowered.get("authorization"))
        decision = self._limiter.hit(key if key is not None else "anonymous")
        with self._keys_lock:
            known = key in self._api_keys
        if key is None:
            response = _problem(401, "Missing API key: send Authorization: Bearer <key>", path)
            response.headers["WWW-Authenticate"] = 'Bearer realm="pictify"'
        elif not known:
            response = _problem(401, "Invalid API key", path)
            response.headers["WWW-Authenticate"] = 'Bearer realm="pictify", error="invalid_token"'
        elif not decision.allowed:
            response = _problem(
                429,
                f"Rate limit of {decision.limit} requests per {self._limiter.window:g} s "
                f"exceeded; retry after {decision.retry_after} s",
                path,
                code="rate_limited",
                retryAfter=decision.retry_after,
            )
            response.headers["Retry-After"] = str(decision.retry_after)
        else:
            response = self._idempotent(method, target, path, lowered, body, key)
        response.headers.update(decision.headers())
        return response

    def _idempotent(
        self,
        method: str,
        target: str,
        path: str,
        lowered: dict[str, str],
        body: bytes,
        api_key: str,
    ) -> _Response:
        key = lowered.get("idempotency-key", "").strip()
        if method != "POST" or not key:
            return self._route(method, path, body)
        fingerprint = hashlib.sha256(
            method.encode() + b"\n" + target.encode() + b"\n" + body
        ).hexdigest()
        with self._idempotency.lock_for(api_key, key):
            cached = self._idempotency.get(api_key, key)
            if cached is not None:
                if cached.fingerprint != fingerprint:
                    return _problem(
                        422,
                        "This Idempotency-Key was already used with a different request",
                        path,
                        code="idempotency_key_reused",
                    )
                headers = {"Content-Type": cached.content_type, "Idempotent-Replayed": "true"}
                return _Response(cached.status, cached.body, headers, replayed=True)
            response = self._route(method, path, body)
            if _cacheable(response.status):
                self._idempotency.put(api_key, key, fingerprint, response)
            return response

    def _route(self, method: str, path: str, body: bytes) -> _Response:
        for pattern, allowed, handler in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if method != allowed:
                response = _problem(405, f"{method} is not allowed here; use {allowed}", path)
                response.headers["Allow"] = allowed
                return response
            return handler(match.group(1), body, path)
        return _problem(404, f"No such endpoint: {method} {path}", path)

    def _render(self, template_uid: str, body: bytes, path: str) -> _Response:
        try:
            payload: Any = json.loads(body.decode("utf-8")) if body else None
        except ValueError:
            errors = [_field_error("body", "Request body must be valid JSON", "invalid_json")]
            return _problem(400, "The request body is not valid JSON", path, errors=errors)
        errors = _validate_render(payload)
        if errors:
            return _problem(400, "The request body is invalid", path, errors=errors)
        total = len(payload["variableSets"])
        image_format = str(payload.get("format") or "png")
        batch_id = self._store.create(
            template_uid, total, "pending", self._items_per_second, image_format
        )
        return _json_response(
            202,
            {
                "batchId": batch_id,
                "status": "pending",
                "totalItems": total,
                "message": f"Batch render started for {total} items",
            },
        )

    def _results(self, batch_id: str, body: bytes, path: str) -> _Response:
        data = self._store.public(batch_id)
        if data is None:
            return _problem(404, f"Batch {batch_id} not found", path)
        return _json_response(200, data)

    def _cancel(self, batch_id: str, body: bytes, path: str) -> _Response:
        result = self._store.cancel(batch_id)
        if result is None:
            return _problem(404, f"Batch {batch_id} not found", path)
        outcome, status = result
        if outcome == "finished":
            return _problem(
                409,
                f"Batch {batch_id} already finished with status {status}; it cannot be cancelled",
                path,
                batchStatus=status,
            )
        message = "Batch cancelled" if outcome == "cancelled" else "Batch was already cancelled"
        return _json_response(200, {"batchId": batch_id, "status": "cancelled", "message": message})


# --------------------------------------------------------------------------- CLI


def _key_hint(key: str) -> str:
    """Show the default test key whole; show only the start of a key someone chose."""
    return key if key == DEFAULT_API_KEY else key[:8] + "..."


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the emulator until Ctrl-C or SIGTERM, for demos and manual poking."""
    parser = argparse.ArgumentParser(
        prog="python -m pictify_tasks.testing.emulator",
        description="Local emulator of the Pictify batch endpoints.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--items-per-second", type=float, default=2.0)
    parser.add_argument(
        "--rate-limit", type=int, default=1000, help="requests per window; 0 means unlimited"
    )
    parser.add_argument("--rate-window", type=float, default=60.0, help="seconds")
    args = parser.parse_args(argv)

    emulator = PictifyEmulator(
        args.api_key,
        host=args.host,
        port=args.port,
        rate_limit=args.rate_limit or None,
        rate_window=args.rate_window,
        items_per_second=args.items_per_second,
    )
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    emulator.start()
    try:
        print(
            f"Pictify emulator listening on {emulator.base_url} "
            f"(api key: {_key_hint(emulator.api_key)}); Ctrl-C to stop",
            flush=True,
        )
        while not done.wait(1.0):
            pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
