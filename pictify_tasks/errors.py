"""The error hierarchy, and the mapping from an HTTP response to an error.

Every error says whether retrying can help (``retryable``) so that the retry
policy decides from the error alone, the way stripe-python decides from the
response. Messages never contain the API key: the client redacts them.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "AuthenticationError",
    "BatchConflictError",
    "BatchNotFoundError",
    "ImproperlyConfigured",
    "InvalidBatchIdError",
    "InvalidRequestError",
    "PictifyConnectionError",
    "PictifyError",
    "QuotaExceededError",
    "RateLimitError",
    "ServerError",
    "error_from_response",
    "parse_retry_after",
    "problem_fields",
]


class PictifyError(Exception):
    """Base of every error this package raises.

    Only the message is passed to ``Exception.__init__`` so that Celery can
    rebuild the error from a result backend (it calls ``cls(*args)``).
    """

    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.body: Mapping[str, Any] = dict(body or {})

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status!r})"


class ImproperlyConfigured(PictifyError):
    """A missing API key or an invalid setting: retrying cannot help."""


class InvalidBatchIdError(PictifyError, ValueError):
    """A batch, template or workflow id that must not be sent anywhere."""


class InvalidRequestError(PictifyError, ValueError):
    """400 or 422: the API rejected what we sent."""


class AuthenticationError(PictifyError):
    """401 or 403: the key is missing, wrong, or lacks permission."""


class BatchNotFoundError(PictifyError):
    """404: no such batch, or its results expired."""


class BatchConflictError(PictifyError):
    """409: the batch is in a state that forbids the request (already finished)."""


class QuotaExceededError(PictifyError):
    """402, or 429 with code ``quota_exceeded``: the plan's quota, not a rate."""


class RateLimitError(PictifyError):
    """429: too many requests; ``retry_after`` says how long to wait."""

    retryable = True


class ServerError(PictifyError):
    """5xx: the API failed; a later attempt may succeed."""

    retryable = True


class PictifyConnectionError(PictifyError):
    """A timeout or connection failure: the outcome is unknown, so retry."""

    retryable = True


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP date)."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        current = time.time() if now is None else now
        return max(0.0, when.timestamp() - current)
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return seconds


def problem_fields(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(message, code) from a problem details body or the older shapes."""
    code = body.get("code")
    detail = body.get("detail")
    title = body.get("title")
    message = body.get("message")
    error = body.get("error")
    text: str | None = None
    if isinstance(detail, str) and detail:
        text = f"{title}: {detail}" if isinstance(title, str) and title else detail
    elif isinstance(title, str) and title:
        text = title
    elif isinstance(message, str) and message:
        text = message
    elif isinstance(error, str) and error:
        text = error
    elif isinstance(error, Mapping):
        inner_text, inner_code = problem_fields(error)
        text = inner_text
        code = code or inner_code
    field_errors = body.get("errors")
    if isinstance(field_errors, list) and field_errors:
        parts = []
        for item in field_errors:
            if isinstance(item, Mapping):
                field = item.get("field")
                msg = item.get("message")
                parts.append(f"{field}: {msg}" if field else str(msg))
        if parts:
            text = f"{text or 'Invalid request'} ({'; '.join(parts)})"
    return text, (str(code) if code is not None else None)


def _parse_body(content: bytes, content_type: str) -> tuple[Mapping[str, Any], str | None]:
    """The JSON object of a body, or an excerpt of a non-JSON one."""
    if not content:
        return {}, None
    try:
        data = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        kind = "HTML" if "html" in content_type.lower() else "non-JSON"
        snippet = " ".join(content.decode("utf-8", "replace").split())[:120]
        return {}, f"{kind} body: {snippet!r}"
    if isinstance(data, Mapping):
        return data, None
    return {}, f"unexpected JSON body: {str(data)[:120]!r}"


def _body_retry_after(body: Mapping[str, Any]) -> float | None:
    value = body.get("retryAfter")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        return parse_retry_after(value)
    return None


def error_from_response(
    status: int,
    content: bytes,
    headers: Mapping[str, str],
    *,
    what: str,
) -> PictifyError:
    """Map an error response to the error that says what to do about it.

    ``what`` names the request ("cancel of batch b_1") for the message.
    ``headers`` must be case-insensitive (``requests`` gives such a mapping).
    """
    content_type = headers.get("Content-Type", "") or ""
    body, raw_note = _parse_body(content, content_type)
    text, code = problem_fields(body)
    if text is None:
        text = raw_note or ("empty body" if not content else "no message")
    message = f"{what} failed: HTTP {status}: {text}"
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if retry_after is None:
        retry_after = _body_retry_after(body)
    fields: dict[str, Any] = {"status": status, "code": code, "body": body}

    if status == 429 and code == "quota_exceeded":
        return QuotaExceededError(message, **fields)
    if status == 429:
        return RateLimitError(message, retry_after=retry_after, **fields)
    if status == 402:
        return QuotaExceededError(message, **fields)
    if status in (401, 403):
        return AuthenticationError(message, **fields)
    if status == 404:
        return BatchNotFoundError(message, **fields)
    if status == 409:
        return BatchConflictError(message, **fields)
    if status >= 500:
        return ServerError(message, retry_after=retry_after, **fields)
    if 400 <= status < 500:
        return InvalidRequestError(message, **fields)
    return PictifyError(message, **fields)
