"""The request and response values every layer of the emulator passes along.

The HTTP plumbing turns the wire into a :class:`Request` and a
:class:`Response` back into the wire; everything in between (middleware,
routes) only sees these values, so it can be read without ``http.server``.
"""

from __future__ import annotations

import http
import json
import re
from dataclasses import dataclass, field
from typing import Any

PROBLEM_BASE = "https://pictify.emulator.invalid/problems/"


@dataclass(frozen=True)
class Request:
    """One request as read from the wire; ``target`` keeps the query string."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    _lowered: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The last spelling of a repeated header wins, as in a plain dict.
        lowered = {name.lower(): value for name, value in self.headers.items()}
        object.__setattr__(self, "_lowered", lowered)

    @property
    def path(self) -> str:
        """The target without its query string: what routes and problems name."""
        return self.target.split("?", 1)[0]

    def header(self, name: str) -> str | None:
        """Look a header up case-insensitively (clients differ in spelling)."""
        return self._lowered.get(name.lower())

    @property
    def bearer_token(self) -> str | None:
        """The token of ``Authorization: Bearer <token>`` (scheme in any case), if sent."""
        value = self.header("authorization")
        if value is None:
            return None
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        return token if scheme.lower() == "bearer" and token else None


@dataclass
class Response:
    """What the server should send back, and how.

    Middleware may add headers on the way out. ``drop`` closes the connection
    without answering; ``trickle`` sends the answer spread over that many
    seconds; ``replayed`` marks an idempotent replay for the request log.
    """

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    replayed: bool = False
    drop: bool = False
    trickle: float = 0.0


def dropped() -> Response:
    """No answer at all: the connection is closed instead."""
    return Response(0, drop=True)


def json_response(status: int, payload: Any, content_type: str = "application/json") -> Response:
    """``payload`` as compact JSON, the way the API writes it."""
    return Response(status, encode_json(payload), {"Content-Type": content_type})


def encode_json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def status_title(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem(status: int, detail: str, instance: str, **extensions: Any) -> Response:
    """An RFC 9457 problem details response, the error shape the real API uses."""
    title = status_title(status)
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "error"
    payload: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    payload.update(extensions)
    return json_response(status, payload, "application/problem+json")
