"""The error hierarchy, and the mapping from an HTTP response to an error.

Every error says whether retrying can help (``retryable``) so that the retry
policy decides from the error alone, the way stripe-python decides from the
response. Messages never contain the API key: the client redacts them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Callable, ClassVar

from pictify_tasks.ratelimit import RETRY_AFTER_STATUSES, RateLimitInfo, parse_retry_after
from pictify_tasks.redaction import clip

__all__ = [
    "AuthenticationError",
    "BatchCancelledError",
    "BatchConflictError",
    "BatchEndedError",
    "BatchFailedError",
    "BatchNotFoundError",
    "CancelFailedError",
    "CancelNotConfirmedError",
    "ImproperlyConfigured",
    "InvalidBatchIdError",
    "InvalidRequestError",
    "PictifyConnectionError",
    "PictifyError",
    "QuotaExceededError",
    "RateLimitError",
    "ServerError",
    "UnexpectedResponseError",
    "WaitTimeoutError",
    "cut_short",
    "describe_body",
    "error_from_response",
    "is_api_answer",
    "json_object",
    "problem_fields",
]

#: An error keeps the API's body when its JSON is at most this long.
MAX_KEPT_BODY = 4096
_PROBLEM_NAMES = frozenset({"type", "title", "status", "detail", "code", "message", "error"})
#: How a text is cleaned of the key (``str`` leaves it as it is).
Redact = Callable[[str], str]


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


class CancelFailedError(PictifyError):
    """The cancel was asked, tried until its budget ran out, and failed for good.

    Raised by every task asking for the same cancel before that failure, so a
    storm of duplicates fails together instead of starting the attempts over.
    """


class BatchEndedError(PictifyError):
    """A batch a workflow waited for ended without rendering (see ``raise_on``).

    Raised by ``pictify.wait_for_batch`` so that the chain stops instead of
    passing a cancelled or failed batch on as a success.
    """


class BatchCancelledError(BatchEndedError):
    """The batch ended ``cancelled``."""


class BatchFailedError(BatchEndedError):
    """The batch ended ``failed``."""


class WaitTimeoutError(PictifyError):
    """``pictify.wait_for_batch`` waited longer than its ``timeout``; the batch was cancelled."""


class PictifyConnectionError(PictifyError):
    """A timeout or connection failure: the outcome is unknown, so retry."""

    retryable = True


def cut_short(what: str, exc: Exception) -> PictifyConnectionError:
    """An exception that cut a request short (the soft time limit, an ``OSError``, a bug),
    as the API error it amounts to: the outcome is unknown, so the request is retried.

    ``what`` names the request ("cancel of batch b_1"); only ``exc``'s type is told.
    """
    error = PictifyConnectionError(f"{what} cut short by {type(exc).__name__} (outcome unknown)")
    error.__cause__ = exc
    return error


class UnexpectedResponseError(PictifyError):
    """An answer that is not the API's own: an HTML 404, a non-JSON 200, a body over 1 MiB.

    Retryable: it is most often a proxy during a deploy, the request is
    idempotent, and the cancel's time budget bounds the retries. Its message
    says what came back and that the base URL may be wrong.
    """

    retryable = True


class CancelNotConfirmedError(PictifyError):
    """A 200 to a cancel whose status is not ``cancelled`` nor finished: look again later."""

    retryable = True


def problem_fields(body: Mapping[str, Any], *, depth: int = 0) -> tuple[str | None, str | None]:
    """(message, code) from a problem details body or the older shapes.

    Only strings and numbers are read, and a nested ``error`` only a few
    levels down, so that a hostile body cannot make this recurse or grow.
    """
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
    elif isinstance(error, Mapping) and depth < 3:
        inner_text, inner_code = problem_fields(error, depth=depth + 1)
        text = inner_text
        code = code or inner_code
    field_errors = body.get("errors")
    if isinstance(field_errors, list) and field_errors:
        parts = []
        for item in field_errors[:20]:
            if isinstance(item, Mapping):
                field = _scalar_text(item.get("field"))
                msg = _scalar_text(item.get("message"))
                parts.append(f"{field}: {msg}" if field else msg)
        if parts:
            text = f"{text or 'Invalid request'} ({'; '.join(parts)})"
    return text, (_scalar_text(code) if code is not None else None)


def _scalar_text(value: Any) -> str:
    """A string or number as short text; anything else by its kind only."""
    if isinstance(value, (str, int, float)):
        return clip(str(value), 100)
    return "" if value is None else f"<{type(value).__name__}>"


def json_object(content: bytes, redact: Redact = str) -> dict[str, Any] | None:
    """The body as a JSON object with the key redacted, or ``None`` when it is not one.

    Only a JSON object can be an answer of the API's own; anything else (HTML,
    text, a list, nothing) came from something in between. ``redact`` is applied
    to the re-encoded object, so every string in it, however escaped, is clean.
    """
    if not content:
        return None
    try:
        data = json.loads(content)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
        return None
    if not isinstance(data, dict):
        return None
    if redact is str:
        return data
    try:
        cleaned = json.loads(redact(json.dumps(data, ensure_ascii=False)))
    except (ValueError, RecursionError):
        return {}
    return cleaned if isinstance(cleaned, dict) else {}


def describe_body(content: bytes, content_type: str, redact: Redact = str) -> str:
    """What came back, for a message: its kind, content type and a short excerpt."""
    if not content:
        return "empty body"
    shown_type = clip(redact(content_type), 80) or "no Content-Type"
    kind = "HTML body" if "html" in content_type.lower() else "body"
    # Redacted whole before anything is cut, so no piece of a key can remain.
    text = redact(content.decode("utf-8", "replace"))
    return f"{kind} ({shown_type}): {clip(' '.join(text[:4096].split()), 120)!r}"


def is_api_answer(status: int, body: Mapping[str, Any] | None) -> bool:
    """Whether the API itself answered: it always sends a JSON object and never redirects.

    Anything else (HTML, text, nothing, a 3xx) came from a proxy, a captive
    portal or a load balancer: it may ask for a retry, never say something final.
    """
    return body is not None and not 300 <= status < 400


def error_from_response(
    status: int,
    body: Mapping[str, Any] | None,
    rate: RateLimitInfo,
    *,
    content: bytes,
    content_type: str,
    what: str,
    redact: Redact = str,
    base_url: str | None = None,
    now: float | None = None,
) -> PictifyError:
    """Map an answer that is not a usable success to the error that says what to do about it.

    An answer that is not the API's own (:func:`is_api_answer`) is an
    :class:`UnexpectedResponseError` saying what came back and that the base
    URL may be wrong; only a 429 or a 5xx keeps its own (retryable) kind.
    ``body`` is the answer's JSON object as :func:`json_object` read it (redacted),
    ``rate`` its headers as :func:`~pictify_tasks.ratelimit.rate_limit_from` read
    them; ``content`` and ``content_type`` only describe an answer without a body.
    ``what`` names the request ("cancel of batch b_1") for the message.
    ``redact`` hides the key in everything taken from the answer, before the
    API's text is cut to :data:`~pictify_tasks.redaction.MAX_API_TEXT`.
    """
    if not is_api_answer(status, body) and status != 429 and status < 500:
        where = f" ({clip(redact(base_url), 120)})" if base_url else ""
        return UnexpectedResponseError(
            f"{what}: HTTP {status} with {describe_body(content, content_type, redact)}: "
            "not an answer of the Pictify API; a proxy may be in the way, or the base "
            f"URL{where} may be wrong (outcome unknown)",
            status=status,
        )
    text, code = problem_fields(body or {})
    if text is None:
        text = "no message" if body is not None else describe_body(content, content_type, redact)
    message = f"{what} failed: HTTP {status}: {clip(text)}"
    retry_after = rate.retry_after
    if retry_after is None and body is not None and status in RETRY_AFTER_STATUSES:
        retry_after = parse_retry_after(body.get("retryAfter"), now=now)
    fields: dict[str, Any] = {
        "status": status,
        "code": code,
        "body": _kept_body(body or {}),
    }

    if status == 429 and code == "quota_exceeded":
        return QuotaExceededError(message, **fields)
    if status == 429:
        if retry_after is None:
            retry_after = rate.reset_wait(now)
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


def _kept_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body an error keeps: whole when small, else only its short problem fields."""
    try:
        size = len(json.dumps(body))
    except (TypeError, ValueError, RecursionError):
        size = MAX_KEPT_BODY + 1
    if size <= MAX_KEPT_BODY:
        return dict(body)
    return {
        name: clip(value) if isinstance(value, str) else value
        for name, value in body.items()
        if name in _PROBLEM_NAMES and isinstance(value, (str, int, float))
    }
