"""The Idempotency-Key store: first final answer per (API key, idempotency key)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from pictify_tasks.testing.emulator.messages import Response

IDEMPOTENCY_TTL = 24 * 60 * 60.0


@dataclass(frozen=True)
class CachedResponse:
    """Enough of an answer to replay it, and the request it answered."""

    fingerprint: str
    status: int
    body: bytes
    content_type: str
    expires: float  # time.monotonic()


def cacheable(status: int) -> bool:
    """2xx and 4xx other than 429 are final answers; 5xx and 429 invite a retry."""
    return 200 <= status < 300 or (400 <= status < 500 and status != 429)


class IdempotencyCache:
    """First response per (api key, idempotency key), plus a lock per key pair.

    The lock makes concurrent requests with one key run one after the other,
    so the second sees the first one's cached response instead of re-executing.
    """

    def __init__(self, ttl: float = IDEMPOTENCY_TTL) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._entries: dict[tuple[str, str], CachedResponse] = {}

    def lock_for(self, api_key: str, key: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault((api_key, key), threading.Lock())

    def get(self, api_key: str, key: str) -> CachedResponse | None:
        """The live entry for the pair; an expired one is forgotten."""
        with self._lock:
            entry = self._entries.get((api_key, key))
            if entry is not None and entry.expires <= time.monotonic():
                del self._entries[(api_key, key)]
                return None
            return entry

    def put(self, api_key: str, key: str, fingerprint: str, response: Response) -> None:
        with self._lock:
            self._entries[(api_key, key)] = CachedResponse(
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
