"""``PictifyClient``: the three batch endpoints over one reused ``requests.Session``.

The client knows HTTP and the API's shapes, nothing about Celery. The API key
lives only in the session's headers; every message the client builds is
passed through :meth:`PictifyClient._redact` so a key never leaks into an
error or a log, whatever a proxy or the API echoes back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Union

import requests

from pictify_tasks import __version__
from pictify_tasks.errors import (
    ImproperlyConfigured,
    InvalidRequestError,
    PictifyConnectionError,
    PictifyError,
    error_from_response,
    problem_fields,
)
from pictify_tasks.ids import idempotency_key_for, path_segment, validate_id
from pictify_tasks.models import (
    BatchInfo,
    BatchStart,
    CancelResult,
    RateLimitInfo,
    batch_info_from,
    batch_start_from,
    cancel_outcome,
    first_str,
    rate_limit_from,
)
from pictify_tasks.render_body import PYTHON_NAMES, build_render_body, render_body_errors
from pictify_tasks.settings import DEFAULT_BASE_URL, mask_secret

__all__ = ["BatchInfo", "BatchStart", "CancelResult", "PictifyClient", "RateLimitInfo"]

Timeout = Union[float, tuple[float, float]]


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
            status = first_str(body, "batchStatus", "state")
            return CancelResult(batch_id, status, "already_finished", self._message(body, response))
        if response.status_code == 404:
            body = _json_object(response)
            return CancelResult(batch_id, None, "not_found", self._message(body, response))
        self._raise_for_status(response, what)
        body = self._success_body(response, what)
        status = first_str(body, "status")
        message = self._redact(first_str(body, "message") or "")
        return CancelResult(batch_id, status, cancel_outcome(status, message), message)

    def get_batch(self, batch_id: str) -> BatchInfo:
        """A batch's progress (``GET /templates/batch/{id}/results``)."""
        batch_id = validate_id(batch_id)
        what = f"status of batch {batch_id}"
        response = self._request(
            "GET", f"/templates/batch/{path_segment(batch_id)}/results", what=what
        )
        self._raise_for_status(response, what)
        return batch_info_from(self._success_body(response, what), batch_id)

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
        start = batch_start_from(self._success_body(response, what))
        if start is None:
            raise PictifyError(f"{what}: the response has no batchId", status=response.status_code)
        return start

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
        self.last_rate_limit = rate_limit_from(response.headers)
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

    def _message(self, body: Mapping[str, Any], response: requests.Response) -> str:
        """The text of an answer that is not an error (404, 409), redacted."""
        text, _ = problem_fields(body)
        return self._redact(text or response.reason or f"HTTP {response.status_code}")

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, mask_secret(self._api_key))


def batch_render_body(variable_sets: Sequence[Mapping[str, Any]], **options: Any) -> dict[str, Any]:
    """The JSON body of a batch render, checked so that bad input is never sent.

    ``options`` are :meth:`PictifyClient.start_batch`'s. The rules are the
    ones the emulator applies (:mod:`pictify_tasks.render_body`).
    """
    body = build_render_body(variable_sets, **options)
    errors = render_body_errors(body, names=PYTHON_NAMES)
    if errors:
        raise InvalidRequestError(
            "invalid batch render: " + "; ".join(str(error) for error in errors),
            body={"errors": [error.as_dict() for error in errors]},
        )
    return body


def _json_object(response: requests.Response) -> Mapping[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, Mapping) else {}
