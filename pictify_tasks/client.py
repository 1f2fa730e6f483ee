"""``PictifyClient``: the three batch endpoints over one reused ``requests.Session``.

The client knows HTTP and the API's shapes, nothing about Celery. The API key
lives only in the session's headers; every message the client builds is
passed through :meth:`PictifyClient._redact` so a key never leaks into an
error or a log, whatever a proxy or the API echoes back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import requests

from pictify_tasks import __version__
from pictify_tasks.errors import (
    ImproperlyConfigured,
    InvalidRequestError,
    PictifyConnectionError,
    PictifyError,
    error_from_response,
)
from pictify_tasks.ids import idempotency_key_for, path_segment, validate_id
from pictify_tasks.render_body import PYTHON_NAMES, build_render_body, render_body_errors
from pictify_tasks.settings import DEFAULT_BASE_URL, mask_secret

__all__ = [
    "TERMINAL_STATUSES",
    "BatchInfo",
    "BatchStart",
    "CancelResult",
    "PictifyClient",
    "RateLimitInfo",
]

TERMINAL_STATUSES = frozenset({"completed", "partial", "failed", "cancelled"})
Timeout = Union[float, tuple[float, float]]


@dataclass(frozen=True)
class CancelResult:
    """What a cancel request achieved.

    ``outcome`` is ``"cancelled"`` (this cancel stopped the batch),
    ``"already_finished"`` (it had finished, or an earlier cancel had stopped
    it) or ``"not_found"`` (no such batch, or its results expired).
    """

    batch_id: str
    status: str | None
    outcome: str
    message: str


@dataclass(frozen=True)
class BatchStart:
    """The answer to starting a batch."""

    batch_id: str
    status: str
    total_items: int | None
    message: str


@dataclass(frozen=True)
class BatchInfo:
    """A batch's progress, from either spelling of the results body."""

    batch_id: str
    status: str
    progress: float | None
    total_items: int | None
    completed_items: int | None
    failed_items: int | None
    results: list[Any] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "status": self.status,
            "progress": self.progress,
            "total_items": self.total_items,
            "completed_items": self.completed_items,
            "failed_items": self.failed_items,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
        }


@dataclass(frozen=True)
class RateLimitInfo:
    """The ``X-RateLimit-*`` headers of the last response."""

    limit: int | None
    remaining: int | None
    reset: int | None


class PictifyClient:
    """A small client for Pictify's batch endpoints.

    One ``requests.Session`` per client, reused for every request (keep-alive).
    Create one client per process: sessions are not meant to cross a fork.
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: Timeout = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ImproperlyConfigured("PictifyClient needs a non-empty API key")
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.last_rate_limit: RateLimitInfo | None = None
        self._session = session or requests.Session()
        self._session.headers.update(
            {
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "User-Agent": f"pictify-tasks/{__version__}",
            }
        )

    def __repr__(self) -> str:
        return f"PictifyClient(base_url={self.base_url!r}, api_key={mask_secret(self._api_key)!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> PictifyClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- endpoints -----------------------------------------------------------

    def cancel_batch(self, batch_id: str, *, idempotency_key: str | None = None) -> CancelResult:
        """Cancel a batch; 200, 409 and 404 are answers, anything else raises.

        Every call for one batch carries the same ``Idempotency-Key`` unless
        one is given, so retries and duplicates are one request to the API.
        """
        batch_id = validate_id(batch_id)
        key = idempotency_key or idempotency_key_for("cancel", batch_id)
        what = f"cancel of batch {batch_id}"
        response = self._request(
            "POST",
            f"/templates/batch/{path_segment(batch_id)}/cancel",
            what=what,
            headers={"Idempotency-Key": key},
        )
        if response.status_code == 409:
            body = _json_object(response)
            status = _str_or_none(body.get("batchStatus")) or _str_or_none(body.get("state"))
            return CancelResult(
                batch_id, status, "already_finished", self._redact(_message(body, response))
            )
        if response.status_code == 404:
            body = _json_object(response)
            return CancelResult(batch_id, None, "not_found", self._redact(_message(body, response)))
        self._raise_for_status(response, what)
        body = self._success_body(response, what)
        status = _str_or_none(body.get("status"))
        message = self._redact(_str_or_none(body.get("message")) or "")
        return CancelResult(batch_id, status, _cancel_outcome(status, message), message)

    def get_batch(self, batch_id: str) -> BatchInfo:
        """A batch's progress (``GET /templates/batch/{id}/results``)."""
        batch_id = validate_id(batch_id)
        what = f"status of batch {batch_id}"
        response = self._request(
            "GET", f"/templates/batch/{path_segment(batch_id)}/results", what=what
        )
        self._raise_for_status(response, what)
        return _batch_info(self._success_body(response, what), batch_id)

    def start_batch(
        self,
        template_uid: str,
        variable_sets: Sequence[Mapping[str, Any]],
        *,
        format: str | None = None,
        quality: float | None = None,
        concurrency: int | None = None,
        layout: Any | None = None,
        layouts: Any | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> BatchStart:
        """Start rendering ``template_uid`` once per variable set.

        Arguments are checked before anything is sent. Pass an
        ``idempotency_key`` to make a retried start return the same batch.
        """
        template_uid = validate_id(template_uid, kind="template uid")
        body = batch_render_body(
            variable_sets,
            format=format,
            quality=quality,
            concurrency=concurrency,
            layout=layout,
            layouts=layouts,
            webhook_url=webhook_url,
        )
        what = f"batch render of template {template_uid}"
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        response = self._request(
            "POST",
            f"/templates/{path_segment(template_uid)}/batch-render",
            what=what,
            headers=headers,
            json_body=body,
        )
        self._raise_for_status(response, what)
        data = self._success_body(response, what)
        batch_id = _str_or_none(data.get("batchId")) or _str_or_none(data.get("id"))
        if batch_id is None:
            raise PictifyError(f"{what}: the response has no batchId", status=response.status_code)
        return BatchStart(
            batch_id=batch_id,
            status=_str_or_none(data.get("status")) or "pending",
            total_items=_int_or_none(_first(data, "totalItems", "totalCount")),
            message=_str_or_none(data.get("message")) or "",
        )

    # -- plumbing --------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
    ) -> requests.Response:
        try:
            response = self._session.request(
                method,
                self.base_url + path,
                headers=dict(headers or {}),
                json=json_body,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            raise PictifyConnectionError(
                self._redact(f"{what} timed out (outcome unknown): {exc}")
            ) from None
        except requests.RequestException as exc:
            raise PictifyConnectionError(
                self._redact(f"{what} failed to connect (outcome unknown): {exc}")
            ) from None
        self.last_rate_limit = RateLimitInfo(
            limit=_int_or_none(response.headers.get("X-RateLimit-Limit")),
            remaining=_int_or_none(response.headers.get("X-RateLimit-Remaining")),
            reset=_int_or_none(response.headers.get("X-RateLimit-Reset")),
        )
        return response

    def _raise_for_status(self, response: requests.Response, what: str) -> None:
        if response.status_code < 300:
            return
        error = error_from_response(
            response.status_code, response.content, response.headers, what=what
        )
        error.message = self._redact(error.message)
        error.args = (error.message,)
        raise error

    def _success_body(self, response: requests.Response, what: str) -> Mapping[str, Any]:
        try:
            data = response.json()
        except ValueError:
            raise PictifyError(
                f"{what}: HTTP {response.status_code} with a body that is not JSON",
                status=response.status_code,
            ) from None
        if not isinstance(data, Mapping):
            raise PictifyError(
                f"{what}: HTTP {response.status_code} with a JSON body that is not an object",
                status=response.status_code,
            )
        return data

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, mask_secret(self._api_key))


def batch_render_body(
    variable_sets: Sequence[Mapping[str, Any]],
    *,
    format: str | None = None,
    quality: float | None = None,
    concurrency: int | None = None,
    layout: Any | None = None,
    layouts: Any | None = None,
    webhook_url: str | None = None,
) -> dict[str, Any]:
    """The JSON body of a batch render, checked so that bad input is never sent.

    The rules are the ones the emulator applies (:mod:`pictify_tasks.render_body`).
    """
    body = build_render_body(
        variable_sets,
        format=format,
        quality=quality,
        concurrency=concurrency,
        layout=layout,
        layouts=layouts,
        webhook_url=webhook_url,
    )
    errors = render_body_errors(body, names=PYTHON_NAMES)
    if errors:
        raise InvalidRequestError(
            "invalid batch render: " + "; ".join(str(error) for error in errors),
            body={"errors": [error.as_dict() for error in errors]},
        )
    return body


def _cancel_outcome(status: str | None, message: str) -> str:
    """A 200 means "cancelled now", unless the batch had already finished."""
    if status in ("completed", "partial", "failed"):
        return "already_finished"
    if status == "cancelled" and "already" in message.lower():
        return "already_finished"
    return "cancelled"


def _batch_info(data: Mapping[str, Any], batch_id: str) -> BatchInfo:
    results = data.get("results")
    errors = data.get("errors")
    return BatchInfo(
        batch_id=_str_or_none(data.get("batchId")) or _str_or_none(data.get("id")) or batch_id,
        status=_str_or_none(data.get("status")) or "unknown",
        progress=_float_or_none(data.get("progress")),
        total_items=_int_or_none(_first(data, "totalItems", "totalCount")),
        completed_items=_int_or_none(_first(data, "completedItems", "completedCount")),
        failed_items=_int_or_none(_first(data, "failedItems", "failedCount")),
        results=list(results) if isinstance(results, list) else [],
        errors=list(errors) if isinstance(errors, list) else [],
        created_at=_str_or_none(data.get("createdAt")),
        started_at=_str_or_none(data.get("startedAt")),
        completed_at=_str_or_none(data.get("completedAt")),
    )


def _json_object(response: requests.Response) -> Mapping[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, Mapping) else {}


def _message(body: Mapping[str, Any], response: requests.Response) -> str:
    for name in ("detail", "message", "title", "error"):
        value = body.get(name)
        if isinstance(value, str) and value:
            return value
    return response.reason or f"HTTP {response.status_code}"


def _first(data: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if data.get(name) is not None:
            return data[name]
    return None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int_or_none(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float_or_none(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
