"""``PictifyClient``: the three batch endpoints over one reused ``requests.Session``.

The client knows HTTP and the API's shapes, nothing about Celery. The API key
lives only in the session's headers. Every text the client builds, and every
answer it keeps, passes through one :class:`~pictify_tasks.redaction.Redactor`
before the API's part of it is cut to 300 characters, so a key never leaks
into an error, a result or a log, whatever a proxy, the API or ``requests``
echoes back. Answers that are not the API's own (an HTML 404, a non-JSON 200)
never become final facts such as ``not_found``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Callable, TypeVar

import requests

from pictify_tasks import __version__
from pictify_tasks.errors import (
    CancelNotConfirmedError,
    ImproperlyConfigured,
    InvalidBatchIdError,
    InvalidRequestError,
    PictifyConnectionError,
    PictifyError,
    UnexpectedResponseError,
    error_from_response,
    is_api_answer,
    json_object,
    problem_fields,
)
from pictify_tasks.ids import idempotency_key_for, path_segment, validate_id
from pictify_tasks.models import (
    BatchInfo,
    BatchStart,
    CancelResult,
    batch_info_from,
    batch_start_from,
    cancel_outcome,
    first_str,
)
from pictify_tasks.ratelimit import RateLimitInfo, rate_limit_from
from pictify_tasks.redaction import Redactor, clip, mask_secret
from pictify_tasks.render_body import PYTHON_NAMES, build_render_body, render_body_errors
from pictify_tasks.settings import DEFAULT_BASE_URL, check_url, clean_api_key
from pictify_tasks.transport import (
    MAX_BODY,
    Answer,
    BodyTooLarge,
    CallTimedOut,
    DirectRoute,
    Timeout,
    new_session,
    send,
)

__all__ = [
    "BatchInfo",
    "BatchStart",
    "CancelResult",
    "PictifyClient",
    "RateLimitInfo",
    "ResponseObserver",
]

logger = logging.getLogger("pictify_tasks.client")

BodyT = TypeVar("BodyT", bound=Mapping[str, Any])

#: Called with every answer's HTTP status and rate-limit headers (see ``on_response``).
ResponseObserver = Callable[[int, RateLimitInfo], None]


@dataclass(frozen=True)
class _Reply:
    """An answer, read once: its JSON object (redacted; ``None`` when not one) and rate limit."""

    answer: Answer
    body: dict[str, Any] | None
    rate: RateLimitInfo

    @property
    def status(self) -> int:
        return self.answer.status


class PictifyClient:
    """A small client for Pictify's batch endpoints.

    One ``requests.Session`` per client, reused for every request (keep-alive);
    the client's own session is sent through its pool directly
    (:class:`~pictify_tasks.transport.DirectRoute`).
    Create one client per process: sessions are not meant to cross a fork.
    ``timeout`` bounds each whole call (connect, send, every read). A session
    passed in keeps its own adapters: mount a
    :class:`~pictify_tasks.transport.DeadlineAdapter` on it, or a slow read
    is only cut by ``requests``' own per-read timeout.

    ``on_response`` is called with the status and :class:`RateLimitInfo` of
    every answer the API (or a proxy) gives, once its body is read and before
    it becomes a result or an error: that is how a rate limiter shared by
    many processes learns the API's view of the budget. An observer that
    raises is logged and ignored; the request's outcome never depends on it.
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: Timeout = 10.0,
        session: requests.Session | None = None,
        on_response: ResponseObserver | None = None,
    ) -> None:
        api_key = clean_api_key(api_key, name="PictifyClient's api_key")
        if not api_key:
            raise ImproperlyConfigured("PictifyClient needs a non-empty API key")
        if session is None:  # a session passed in may have adapters for other schemes
            check_url(base_url, "PictifyClient's base_url", schemes=("http", "https"))
        self._api_key = api_key
        self._redact = Redactor(api_key)
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._on_response = on_response
        self._session = session or new_session(self.base_url)
        self._session.headers.update(
            {
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "User-Agent": f"pictify-tasks/{__version__}",
            }
        )
        # A session of our own skips ``requests``' per-call work; a user's goes through it.
        self._route = DirectRoute.of(self._session, self.base_url) if session is None else None

    def __repr__(self) -> str:
        return f"PictifyClient(base_url={self.base_url!r}, api_key={mask_secret(self._api_key)!r})"

    def close(self) -> None:
        """Close the connections; a call made afterwards goes through ``requests`` (a new pool)."""
        route, self._route = self._route, None
        if route is not None:  # the session forgets this pool but does not close it
            route.pool.close()
        self._session.close()

    def __enter__(self) -> PictifyClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- endpoints -----------------------------------------------------------

    def cancel_batch(self, batch_id: str, *, idempotency_key: str | None = None) -> CancelResult:
        """Cancel a batch; the API's 200, 409 and 404 are answers, anything else raises.

        Every call for one batch carries the same ``Idempotency-Key`` unless
        one is given, so retries and duplicates are one request to the API.
        A 200 must say ``cancelled`` or a finished status; a still-running,
        missing or unknown status raises :class:`CancelNotConfirmedError`.
        """
        batch_id = validate_id(batch_id)
        key = idempotency_key or idempotency_key_for("cancel", batch_id)
        what = f"cancel of batch {batch_id}"
        reply = self._request(
            "POST",
            f"/templates/batch/{path_segment(batch_id)}/cancel",
            what=what,
            headers={"Idempotency-Key": key},
        )
        body = self._api_body(reply, what, 404, 409)
        if reply.status == 409:
            status = first_str(body, "batchStatus", "state")
            return CancelResult(
                batch_id,
                self._text(status) if status else None,
                "already_finished",
                self._message(body, reply),
            )
        if reply.status == 404:
            return CancelResult(batch_id, None, "not_found", self._message(body, reply))
        status = first_str(body, "status")
        message = self._text(first_str(body, "message") or "")
        outcome = cancel_outcome(status, message)
        if outcome is None:
            raw = body.get("status")
            seen = "no status" if raw is None else f"status {raw!r}"
            raise CancelNotConfirmedError(
                f"{what}: HTTP {reply.status} does not confirm it: the answer gives "
                f"{clip(seen, 120)}, neither cancelled nor finished; "
                "look again later",
                status=reply.status,
            )
        return CancelResult(batch_id, status, outcome, message)

    def get_batch(self, batch_id: str) -> BatchInfo:
        """A batch's progress (``GET /templates/batch/{id}/results``)."""
        batch_id = validate_id(batch_id)
        what = f"status of batch {batch_id}"
        reply = self._request(
            "GET", f"/templates/batch/{path_segment(batch_id)}/results", what=what
        )
        return batch_info_from(self._api_body(reply, what), batch_id)

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
        return self._start(template_uid, body, idempotency_key)

    def start_batch_body(
        self,
        template_uid: str,
        body: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> BatchStart:
        """Start a batch with a body :func:`batch_render_body` built, sent exactly as it is.

        A start recorded before its POST is replayed with this: the API gives
        the first request's batch back only for the same key *and* the same
        request, so the body is not built again. It is checked all the same.
        """
        template_uid = validate_id(template_uid, kind="template uid")
        return self._start(template_uid, _checked(body), idempotency_key)

    def _start(
        self, template_uid: str, body: Mapping[str, Any], idempotency_key: str | None
    ) -> BatchStart:
        what = f"batch render of template {template_uid}"
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        reply = self._request(
            "POST",
            f"/templates/{path_segment(template_uid)}/batch-render",
            what=what,
            headers=headers,
            json_body=body,
        )
        start = batch_start_from(self._api_body(reply, what))
        if start is None:
            raise PictifyError(f"{what}: the answer has no batchId", status=reply.status)
        try:
            validate_id(start.batch_id)
        except InvalidBatchIdError:
            raise PictifyError(
                f"{what}: the answer's batchId is not a usable id", status=reply.status
            ) from None
        return replace(start, message=self._text(start.message))

    # -- plumbing --------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
    ) -> _Reply:
        try:
            answer = send(
                self._session,
                method,
                self.base_url + path,
                headers=headers or {},
                json_body=json_body,
                timeout=self.timeout,
                route=self._route,
            )
        except CallTimedOut as exc:
            raise PictifyConnectionError(f"{what} timed out: {exc} (outcome unknown)") from None
        except BodyTooLarge as exc:
            raise UnexpectedResponseError(
                f"{what}: HTTP {exc.status} with a body over {MAX_BODY // (1024 * 1024)} MiB; "
                "reading stopped there (outcome unknown)",
                status=exc.status,
            ) from None
        except requests.RequestException as exc:
            happened = "timed out" if isinstance(exc, requests.Timeout) else "failed to connect"
            raise PictifyConnectionError(
                f"{what} {happened} (outcome unknown): {self._text(str(exc))}"
            ) from None
        reply = _Reply(
            answer,
            json_object(answer.content, self._redact),
            rate_limit_from(answer.status, answer.headers),
        )
        if self._on_response is not None:
            try:
                self._on_response(answer.status, reply.rate)
            except Exception:
                logger.exception("the on_response observer failed (the answer is used anyway)")
        return reply

    def _api_body(self, reply: _Reply, what: str, *also: int) -> dict[str, Any]:
        """The API's own JSON object, for a 2xx or a status in ``also``; anything else raises."""
        status, body = reply.status, reply.body
        if body is None or not is_api_answer(status, body) or not (status < 300 or status in also):
            raise error_from_response(
                status,
                body,
                reply.rate,
                content=reply.answer.content,
                content_type=reply.answer.headers.get("Content-Type", ""),
                what=what,
                redact=self._redact,
                base_url=self.base_url,
            )
        return body

    def _message(self, body: Mapping[str, Any], reply: _Reply) -> str:
        """The text of an answer that is not an error (404, 409), redacted and cut."""
        text, _ = problem_fields(body)
        return self._text(text or reply.answer.reason or f"HTTP {reply.status}")

    def _text(self, text: str) -> str:
        """Something the API wrote, made safe to keep: the key hidden, then cut."""
        return clip(self._redact(text))


def batch_render_body(variable_sets: Sequence[Mapping[str, Any]], **options: Any) -> dict[str, Any]:
    """The JSON body of a batch render, checked so that bad input is never sent.

    ``options`` are :meth:`PictifyClient.start_batch`'s. The rules are the
    ones the emulator applies (:mod:`pictify_tasks.render_body`).
    """
    return _checked(build_render_body(variable_sets, **options), names=PYTHON_NAMES)


def _checked(body: BodyT, *, names: Mapping[str, str] | None = None) -> BodyT:
    """``body`` if it is a valid batch render, else :class:`InvalidRequestError` naming why."""
    errors = render_body_errors(body, names=names)
    if errors:
        raise InvalidRequestError(
            "invalid batch render: " + "; ".join(str(error) for error in errors),
            body={"errors": [error.as_dict() for error in errors]},
        )
    return body
