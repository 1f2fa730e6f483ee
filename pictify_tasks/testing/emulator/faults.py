"""Injected faults: the misbehaviour a test asks for, and the list they wait in."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, Union

from pictify_tasks.testing.emulator.messages import Response, encode_json, problem

#: A fault's body: JSON (mapping, list, number, bool), raw text or bytes, or
#: ``None`` for a problem-details body.
JsonBody = Union[Mapping[str, Any], Sequence[Any], str, bytes, int, float, None]


class Uses:
    """How many more matches a fault applies to (``None``: for ever), and how many it had.

    Shared by the API's faults and the webhooks' ones; used under their lock.
    """

    def __init__(self, times: int | None) -> None:
        if times is not None and times < 1:
            raise ValueError("times must be >= 1, or None for ever")
        self.remaining = times
        self.hits = 0

    @property
    def spent(self) -> bool:
        return self.remaining == 0

    def use(self) -> None:
        self.hits += 1
        if self.remaining is not None:
            self.remaining -= 1


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
        trickle: float = 0.0,
        every: int = 1,
    ) -> None:
        if status is not None and not 200 <= status <= 599:
            raise ValueError(f"fault status must be 200..599, got {status}")
        if sum((status is not None, drop, drop_after_handling)) > 1:
            raise ValueError("status, drop and drop_after_handling are mutually exclusive")
        if status is None and (body is not None or headers):
            raise ValueError("body and headers need a status to answer with")
        if delay < 0:
            raise ValueError("delay must be >= 0")
        if trickle < 0:
            raise ValueError("trickle must be >= 0")
        if trickle and (drop or drop_after_handling):
            raise ValueError("trickle needs an answer to send; drop sends none")
        if every < 1:
            raise ValueError("every must be >= 1")
        self.status = status
        self.body = body
        self.headers: dict[str, str] = dict(headers or {})
        self.delay = float(delay)
        self.trickle = float(trickle)
        self.drop = drop
        self.drop_after_handling = drop_after_handling
        self.method = method.upper() if method is not None else None
        self.path_contains = path_contains
        self._uses = Uses(times)
        self._every = every
        self._seen = 0
        # Encoded now, so a body JSON cannot carry fails in inject(), not as a 500 later.
        self._encoded = _encode_body(body)

    @property
    def remaining(self) -> int | None:
        """Matching requests this fault still applies to (``None``: for ever)."""
        return self._uses.remaining

    @property
    def hits(self) -> int:
        """Requests this fault has been applied to so far."""
        return self._uses.hits

    @property
    def spent(self) -> bool:
        return self._uses.spent

    def _matches(self, method: str, target: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.path_contains is None or self.path_contains in target

    def _due(self) -> bool:
        """Counts a matching request; whether this one is the ``every``-th."""
        self._seen += 1
        return self._seen % self._every == 0

    def __repr__(self) -> str:
        if self.status is not None:
            action = f"status={self.status}"
        elif self.drop:
            action = "drop"
        elif self.drop_after_handling:
            action = "drop_after_handling"
        else:
            action = "pass-through"
        return (
            f"Fault({action}, delay={self.delay:g}, trickle={self.trickle:g}, "
            f"method={self.method!r}, path_contains={self.path_contains!r}, "
            f"remaining={self.remaining}, hits={self.hits})"
        )


def _encode_body(body: JsonBody) -> tuple[bytes, str] | None:
    """The body's bytes and content type (``None``: a problem body made per request)."""
    if body is None:
        return None
    if isinstance(body, (str, bytes)):
        raw = body.encode("utf-8") if isinstance(body, str) else body
        looks_html = raw.lstrip()[:1] == b"<"
        return raw, "text/html; charset=utf-8" if looks_html else "text/plain; charset=utf-8"
    return encode_json(body), "application/json"


def canned_answer(fault: Fault, instance: str) -> Response:
    """A status fault's answer; it models a proxy, so no rate-limit headers are added."""
    assert fault.status is not None
    if fault._encoded is None:
        extensions: dict[str, Any] = {}
        if fault.status == 429:
            extensions["code"] = "rate_limited"
            retry_after = {k.lower(): v for k, v in fault.headers.items()}.get("retry-after")
            if retry_after is not None and retry_after.strip().isdigit():
                extensions["retryAfter"] = int(retry_after)
        detail = f"Injected fault: HTTP {fault.status}"
        response = problem(fault.status, detail, instance, **extensions)
    else:
        raw, content_type = fault._encoded
        response = Response(fault.status, raw, {"Content-Type": content_type})
    overrides = {k.lower() for k in fault.headers}
    response.headers = {k: v for k, v in response.headers.items() if k.lower() not in overrides}
    response.headers.update(fault.headers)
    return response


class FaultList:
    """Faults in the order added; the first live match takes the request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def take(self, method: str, target: str) -> Fault | None:
        """The fault for this request, counted as used; ``None`` when none matches."""
        with self._lock:
            for fault in self._faults:
                if not fault.spent and fault._matches(method, target) and fault._due():
                    fault._uses.use()
                    if fault.spent:
                        self._faults.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
