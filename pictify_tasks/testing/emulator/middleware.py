"""The request path: one small middleware per concern, composed around the router.

Each middleware is called as ``middleware(request, call_next)`` and returns a
:class:`Response`: it may answer by itself, or call ``call_next`` and adjust
what comes back. :func:`compose` nests a list of them, first outermost, so the
order of the list is the order a request meets them (see ``app.py``).
"""

from __future__ import annotations

import hashlib
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Protocol

from pictify_tasks.testing.emulator.faults import FaultList, canned_answer
from pictify_tasks.testing.emulator.idempotency import IdempotencyCache, cacheable
from pictify_tasks.testing.emulator.messages import Request, Response, dropped, problem
from pictify_tasks.testing.emulator.ratelimit import RateLimiter
from pictify_tasks.testing.emulator.requestlog import RecordedRequest, RequestLog

#: Anything that answers a request: the router, or middleware bound to what follows it.
Handler = Callable[[Request], Response]


class Middleware(Protocol):
    """One concern of the request path: answer, or pass on and adjust the answer."""

    def __call__(self, request: Request, call_next: Handler) -> Response: ...


def compose(middleware: Sequence[Middleware], endpoint: Handler) -> Handler:
    """One handler: ``middleware[0]`` sees the request first and the response last."""
    handler = endpoint
    for layer in reversed(middleware):
        handler = _bind(layer, handler)
    return handler


def _bind(layer: Middleware, call_next: Handler) -> Handler:
    def handler(request: Request) -> Response:
        return layer(request, call_next)

    return handler


class AccessLog:
    """One line per request (method, path, status, milliseconds) for people watching.

    The time is until the answer was ready (a trickled answer takes longer to
    send). The query string is left out and no header is shown, so no key can leak.
    """

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write

    def __call__(self, request: Request, call_next: Handler) -> Response:
        started = time.perf_counter()
        response = call_next(request)
        elapsed_ms = (time.perf_counter() - started) * 1000
        status = "dropped" if response.drop else str(response.status)
        self._write(f"{request.method} {_printable(request.path)} {status} {elapsed_ms:.1f} ms")
        return response


def _printable(text: str) -> str:
    """Control characters escaped, so a hostile path cannot forge log lines."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


class RecordRequest:
    """Log each request on arrival and fill in its answer, for tests to assert on."""

    def __init__(self, log: RequestLog) -> None:
        self._log = log

    def __call__(self, request: Request, call_next: Handler) -> Response:
        record = RecordedRequest(
            request.method,
            request.target,
            dict(request.headers),
            request.body,
            time.time(),
            time.monotonic(),
        )
        token = self._log.begin(record)
        response = call_next(request)
        self._log.finish(token, None if response.drop else response.status, response.replayed)
        return response


class AnswerErrors:
    """An emulator bug answers 500 and is printed, rather than hanging the client up."""

    def __call__(self, request: Request, call_next: Handler) -> Response:
        try:
            return call_next(request)
        except Exception as exc:
            traceback.print_exc()
            return problem(500, f"Emulator error: {exc!r}", request.path)


class InjectFaults:
    """Apply the first matching fault, before auth and rate limits (as a proxy would)."""

    def __init__(self, faults: FaultList, stopping: threading.Event) -> None:
        self._faults = faults
        self._stopping = stopping  # set on stop, so a long delay does not hold it up

    def __call__(self, request: Request, call_next: Handler) -> Response:
        fault = self._faults.take(request.method, request.target)
        if fault is None:
            return call_next(request)
        if fault.delay > 0:
            self._stopping.wait(fault.delay)
        if fault.drop:
            return dropped()
        if fault.status is not None:
            response = canned_answer(fault, request.path)
        else:
            response = call_next(request)
        if fault.drop_after_handling:
            return replace(response, drop=True)
        if fault.trickle > 0:
            return replace(response, trickle=fault.trickle)
        return response


class ApiKeys:
    """The keys the emulator accepts; tests may add keys while it serves."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._lock = threading.Lock()
        self._keys = set(keys)

    def add(self, key: str) -> None:
        with self._lock:
            self._keys.add(key)

    def accepts(self, key: str | None) -> bool:
        with self._lock:
            return key in self._keys


class RateLimit:
    """Count every request in its key's window and put X-RateLimit-* on every answer.

    It comes before :class:`Authenticate` so that 401s carry the headers too;
    a request without an accepted key is counted (under the token it sent, or
    ``anonymous``) but never refused here: its answer is Authenticate's 401.
    """

    def __init__(self, limiter: RateLimiter, keys: ApiKeys) -> None:
        self._limiter = limiter
        self._keys = keys

    def __call__(self, request: Request, call_next: Handler) -> Response:
        token = request.bearer_token
        decision = self._limiter.hit(token if token is not None else "anonymous")
        if decision.allowed or not self._keys.accepts(token):
            response = call_next(request)
        else:
            response = problem(
                429,
                f"Rate limit of {decision.limit} requests per {self._limiter.window:g} s "
                f"exceeded; retry after {decision.retry_after} s",
                request.path,
                code="rate_limited",
                retryAfter=decision.retry_after,
            )
            response.headers["Retry-After"] = str(decision.retry_after)
        response.headers.update(decision.headers())
        return response


class Authenticate:
    """401 without ``Authorization: Bearer <accepted key>``."""

    def __init__(self, keys: ApiKeys) -> None:
        self._keys = keys

    def __call__(self, request: Request, call_next: Handler) -> Response:
        token = request.bearer_token
        if token is None:
            detail, challenge = "Missing API key: send Authorization: Bearer <key>", ""
        elif not self._keys.accepts(token):
            detail, challenge = "Invalid API key", ', error="invalid_token"'
        else:
            return call_next(request)
        response = problem(401, detail, request.path)
        response.headers["WWW-Authenticate"] = f'Bearer realm="pictify"{challenge}'
        return response


class Idempotency:
    """Replay the first final answer to a POST with the same Idempotency-Key.

    Keys are per API key (so it must follow :class:`Authenticate`). A key
    reused for a different request is answered 422 ``idempotency_key_reused``.
    Requests with one key run one at a time, so concurrent retries execute once.
    """

    def __init__(self, cache: IdempotencyCache) -> None:
        self._cache = cache

    def __call__(self, request: Request, call_next: Handler) -> Response:
        key = (request.header("idempotency-key") or "").strip()
        api_key = request.bearer_token
        if request.method != "POST" or not key or api_key is None:
            return call_next(request)
        fingerprint = hashlib.sha256(
            request.method.encode() + b"\n" + request.target.encode() + b"\n" + request.body
        ).hexdigest()
        with self._cache.lock_for(api_key, key):
            cached = self._cache.get(api_key, key)
            if cached is None:
                response = call_next(request)
                if cacheable(response.status):
                    self._cache.put(api_key, key, fingerprint, response)
                return response
            if cached.fingerprint != fingerprint:
                return problem(
                    422,
                    "This Idempotency-Key was already used with a different request",
                    request.path,
                    code="idempotency_key_reused",
                )
            headers = {"Content-Type": cached.content_type, "Idempotent-Replayed": "true"}
            return Response(cached.status, cached.body, headers, replayed=True)
