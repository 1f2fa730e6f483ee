"""The base of the package's tasks: arguments checked before publishing, a first-asked time.

Every task of the package is published with the wall time it was first asked
for (a header kept by retries, redeliveries and the sweep's re-sends), so a
task's time budget (``pictify_cancel_deadline``) counts from the ask, not
from whichever attempt is running.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, NoReturn

from celery import Task
from celery.exceptions import Ignore, Reject

from pictify_tasks._runtime import Runtime, runtime_for
from pictify_tasks.names import ASKED_AT_HEADER
from pictify_tasks.ratelimit import Priority
from pictify_tasks.retry import NoTokenInTimeError
from pictify_tasks.store.base import StateStoreError

__all__ = [
    "EagerComeBack",
    "PictifyTask",
    "TaskSpec",
    "asked_at",
    "failed_requests",
    "header",
    "run_eagerly_in_a_loop",
    "set_header",
    "was_a_request",
]

logger = logging.getLogger("pictify_tasks.tasks")

#: Header of a retried task: how many of its API requests failed. The attempt
#: cap (``pictify_cancel_max_attempts``) counts these, not its waits.
ATTEMPTS_HEADER = "pictify_attempts"


@functools.cache
def _signature(function: Callable[..., None]) -> inspect.Signature:
    """A validator's signature, built once: it is checked on every publish."""
    return inspect.signature(function)


class PictifyTask(Task):  # type: ignore[misc]
    """Base of the package's tasks: arguments are validated in the caller.

    ``apply_async`` (and so ``delay``, signatures, chains and groups) runs the
    task's validator first, so bad input raises in the caller's process and
    is never published. The worker validates again before running.
    """

    #: Called with the task's arguments; raises on bad input.
    validator: Callable[..., None] | None = None

    def apply_async(
        self,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        *rest: Any,
        **options: Any,
    ) -> Any:
        self.check_arguments(args, kwargs)
        headers = dict(options.get("headers") or {})
        if ASKED_AT_HEADER not in headers:
            headers[ASKED_AT_HEADER] = time.time()
            self.first_publish(args or (), kwargs or {}, headers[ASKED_AT_HEADER])
        options["headers"] = headers
        return super().apply_async(args, kwargs, *rest, **options)

    def first_publish(self, args: tuple[Any, ...], kwargs: dict[str, Any], asked_at: float) -> None:
        """Called in the caller's process before the first publish (not retries)."""

    def check_arguments(self, args: tuple[Any, ...] | None, kwargs: dict[str, Any] | None) -> None:
        validator = type(self).validator
        if validator is None:
            return
        try:
            _signature(validator).bind(*(args or ()), **(kwargs or {}))
        except TypeError as exc:
            raise TypeError(f"{self.name}() {exc}") from None
        validator(*(args or ()), **(kwargs or {}))

    @property
    def runtime(self) -> Runtime:
        return runtime_for(self.app)

    def retry_within_deadline(self, error: Exception) -> NoReturn:
        """Retry after ``error`` as the policy says, or raise it when the budget is spent.

        The attempt cap counts the task's failed API requests (a header its
        retries carry), as a cancel's ledger does: a wait for a token or a
        store that did not answer is no attempt (the store's trouble backs off
        with each run, bounded by the deadline alone).
        """
        failed = failed_requests(self.request)
        if was_a_request(error):
            failed += 1
            attempt = failed
        else:
            attempt = (self.request.retries or 0) + 1
        wait = self.runtime.policy.next_wait(error, attempt, time.time() - asked_at(self.request))
        if wait is None:
            raise error
        set_header(self.request, ATTEMPTS_HEADER, failed)
        self.come_back(wait, error=error)

    def wait_for_token(self, priority: Priority, *, within_deadline: bool = True) -> None:
        """Return when a request may go; else come back when it may.

        ``within_deadline``: a token that comes after the task's deadline is
        its final failure (:class:`~pictify_tasks.retry.NoTokenInTimeError`),
        as a retry past it would be. A store that cannot be asked raises its
        ``StateStoreError`` (transient: the caller retries).
        """
        wait = self.runtime.limiter.acquire(priority)
        if wait <= 0:
            return
        if within_deadline:
            elapsed = time.time() - asked_at(self.request)
            late = self.runtime.policy.token_too_late(self.name, wait, elapsed)
            if late is not None:
                raise late
        self.come_back(wait)

    def end_as_revoked(self, reason: str) -> NoReturn:
        """End this run as ``REVOKED`` with ``reason``: the workflow was revoked, go no further.

        For a revoke the worker running this task may never have heard (it
        was remembered in the state store): nothing is sent, the chain stops.
        """
        logger.info("%s[%s] %s", self.name, self.request.id, reason)
        self.backend.mark_as_revoked(self.request.id, reason, request=self.request)
        raise Ignore(reason)

    def come_back(self, countdown: float, *, error: Exception | None = None) -> NoReturn:
        """Run this task again in ``countdown`` seconds, with the same id, chain and headers.

        After an ``error`` it is Celery's retry (state RETRY, counted as one).
        Without, it is a wait (another task's lease, a token, the next poll):
        the task is sent again and this run is ignored, so Flower does not
        count every look as a retry and the log says it at DEBUG. Under eager
        execution the caller's thread waits and runs the task again in a
        loop, as a worker would (Celery's eager retries would nest).
        """
        if self.request.is_eager:
            raise EagerComeBack(countdown)
        if error is not None:
            headers = self.resent_headers()
            raise self.retry(exc=error, countdown=countdown, max_retries=None, headers=headers)
        logger.debug("%s[%s] waits %.2fs", self.name, self.request.id, countdown)
        again = self.again(countdown=countdown)
        try:
            again.apply_async()
        except Exception as exc:
            raise Reject(exc, requeue=False) from exc
        raise Ignore()

    def again(self, **options: Any) -> Any:
        """This task's message sent again: the same id, chain and headers, one more retry."""
        return self.signature_from_request(
            self.request,
            retries=(self.request.retries or 0) + 1,
            headers=self.resent_headers(),
            **options,
        )

    def resent_headers(self) -> dict[str, Any]:
        """The running message's headers, with when it was first asked for."""
        return {
            **(getattr(self.request, "headers", None) or {}),
            ASKED_AT_HEADER: asked_at(self.request),
        }


class EagerComeBack(Exception):
    """Under eager execution: wait ``countdown`` seconds and run the task again."""

    def __init__(self, countdown: float) -> None:
        super().__init__(countdown)
        self.countdown = countdown


def run_eagerly_in_a_loop(function: Callable[..., Any]) -> Callable[..., Any]:
    """The task function, looping over :class:`EagerComeBack` instead of nesting retries."""

    @functools.wraps(function)
    def run(self: PictifyTask, *args: Any, **kwargs: Any) -> Any:
        while True:
            try:
                return function(self, *args, **kwargs)
            except EagerComeBack as wait:
                time.sleep(wait.countdown)  # eager: the caller waits, as a worker would
                self.request.retries = (self.request.retries or 0) + 1

    return run


@dataclass(frozen=True)
class TaskSpec:
    """What ``install`` registers for one task name."""

    function: Callable[..., Any]
    validator: Callable[..., None]
    options: dict[str, Any] = field(default_factory=dict)
    base: type[PictifyTask] = PictifyTask


def header(request: Any, name: str) -> Any:
    """A custom message header of a request (an attribute on a worker, in ``headers`` eager)."""
    value = getattr(request, name, None)
    if value is None:
        headers = getattr(request, "headers", None)
        if isinstance(headers, dict):
            value = headers.get(name)
    return value


def set_header(request: Any, name: str, value: Any) -> None:
    """Set a header of the running task's next message (see :meth:`PictifyTask.resent_headers`)."""
    headers = getattr(request, "headers", None)
    if isinstance(headers, dict):
        headers[name] = value
    else:
        request.headers = {name: value}


def was_a_request(error: BaseException) -> bool:
    """Whether ``error`` ended an API request, one the attempt cap counts.

    Not a store that did not answer, nor a token that came after the deadline.
    """
    return not isinstance(error, (StateStoreError, NoTokenInTimeError))


def failed_requests(request: Any) -> int:
    """How many of the running task's API requests failed before this run."""
    value = header(request, ATTEMPTS_HEADER)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def asked_at(request: Any) -> float:
    """When the running task was first asked for (now, when the header is missing)."""
    value = header(request, ASKED_AT_HEADER)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return time.time()
