"""The request log: what reached the emulator, so tests can assert on the wire."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, TypeVar


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator received it, so tests can assert on the wire.

    ``status`` is what was sent back: ``None`` while the request is still being
    handled and when the connection was dropped (also after handling).
    ``finished`` is the monotonic time its handling ended (``None`` until then),
    so tests can tell requests that overlapped from ones that followed.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    time: float
    monotonic: float
    status: int | None = None
    replayed: bool = False
    finished: float | None = None

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


def matches(record: RecordedRequest, method: str | None, path_contains: str | None) -> bool:
    """The filter the control API offers: a method (any case) and a piece of the path."""
    if method is not None and record.method != method.upper():
        return False
    return path_contains is None or path_contains in record.path


LogToken = tuple[int, int]
T = TypeVar("T")


def wait_for_count(
    cond: threading.Condition, find: Callable[[], list[T]], count: int, timeout: float
) -> list[T]:
    """What ``find()`` returns once it holds ``count`` items, or at ``timeout`` (fewer).

    ``find`` runs under ``cond`` (a re-entrant lock), whose holders notify on change.
    """
    with cond:
        cond.wait_for(lambda: len(find()) >= count, timeout)
        return find()


class RequestLog:
    """Thread-safe log; a condition lets tests wait for requests without polling."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._entries: list[RecordedRequest] = []
        self._generation = 0

    def begin(self, record: RecordedRequest) -> LogToken:
        """Log a request on arrival, so waiters see it even while it is delayed."""
        with self._cond:
            self._entries.append(record)
            self._cond.notify_all()
            return self._generation, len(self._entries) - 1

    def finish(self, token: LogToken, status: int | None, replayed: bool) -> None:
        """Fill in how the request was answered (``None``: not at all)."""
        generation, index = token
        with self._cond:
            if generation != self._generation:
                return  # the log was cleared while the request was in flight
            self._entries[index] = replace(
                self._entries[index], status=status, replayed=replayed, finished=time.monotonic()
            )
            self._cond.notify_all()

    def snapshot(self) -> list[RecordedRequest]:
        with self._cond:
            return list(self._entries)

    def matching(self, method: str | None, path_contains: str | None) -> list[RecordedRequest]:
        with self._cond:
            return [r for r in self._entries if matches(r, method, path_contains)]

    def clear(self) -> None:
        with self._cond:
            self._entries.clear()
            self._generation += 1

    def wait_for(
        self, count: int, method: str | None, path_contains: str | None, timeout: float
    ) -> list[RecordedRequest]:
        """At least ``count`` matching requests, waiting up to ``timeout`` for them."""
        records = wait_for_count(
            self._cond, lambda: self.matching(method, path_contains), count, timeout
        )
        if len(records) >= count:
            return records
        raise TimeoutError(
            f"expected at least {count} request(s) matching method={method!r}, "
            f"path_contains={path_contains!r} within {timeout:g} s; saw {len(records)}"
        )
