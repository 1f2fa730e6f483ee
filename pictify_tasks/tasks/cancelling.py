"""``pictify.cancel_batch`` and ``pictify.cancel_start``: one effective cancel per batch."""

from __future__ import annotations

import logging
from typing import Any

from pictify_tasks.cancel import CancelContext, GiveUp, RetryLater, cancel_step
from pictify_tasks.client import PictifyClient
from pictify_tasks.errors import PictifyError, cut_short
from pictify_tasks.ids import validate_id
from pictify_tasks.publisher import record_wanted
from pictify_tasks.ratelimit import Priority
from pictify_tasks.reporting import CancelReport
from pictify_tasks.results import CancelBatchResult
from pictify_tasks.revoke.links import BatchLinks
from pictify_tasks.store.base import START_PREFIX
from pictify_tasks.store.records import StartMade, StartRequest, WantedCancel
from pictify_tasks.tasks.base import PictifyTask, asked_at, failed_requests, was_a_request

__all__ = ["CancelBatchTask", "cancel_batch_task", "cancel_start_task"]

logger = logging.getLogger("pictify_tasks.tasks")

MAX_REASON = 200


def validate_cancel_batch(batch_id: Any, *, reason: Any = None) -> None:
    validate_id(batch_id)
    if reason is not None and not (isinstance(reason, str) and len(reason) <= MAX_REASON):
        raise ValueError(f"reason must be a str of at most {MAX_REASON} characters")


class CancelBatchTask(PictifyTask):
    """Records the cancel as wanted before its first publish (the sweep's second line)."""

    def first_publish(self, args: tuple[Any, ...], kwargs: dict[str, Any], asked: float) -> None:
        batch_id = args[0] if args else kwargs.get("batch_id")
        reason = kwargs.get("reason")
        runtime = self.runtime
        wanted = WantedCancel(str(batch_id), asked, reason or "")
        record_wanted(runtime.store, [wanted], runtime.settings.wanted_ttl)


def report_for(task: PictifyTask, batch_id: str, reason: str) -> CancelReport:
    """How ``task`` tells its decisions about ``batch_id`` (its workflow: the root)."""
    request = task.request
    workflow_id = request.root_id if request.root_id not in (None, request.id) else None
    return CancelReport(task, batch_id, workflow_id, reason, asked_at(request))


def run_cancel(task: PictifyTask, batch_id: str, reason: str = "") -> CancelBatchResult:
    """One cancel step inside ``task``: return the outcome, or come back later."""
    runtime = task.runtime
    settings = runtime.settings
    settings.require_api_key()
    report = report_for(task, batch_id, reason)
    context = CancelContext(
        store=runtime.store,
        client=lambda: runtime.client,
        policy=runtime.policy,
        lease_seconds=settings.lease_seconds,
        ttl=settings.outcome_ttl,
        asked_at=asked_at(task.request),
        limiter=runtime.limiter,
        workflow_id=report.workflow_id,
    )
    decision = cancel_step(
        batch_id,
        task.request.id or f"eager-{id(task.request)}",
        context,
        waits=task.request.retries or 0,
    )
    if isinstance(decision, GiveUp):
        report.failed(decision.error, decision.attempts)
        raise decision.error
    if isinstance(decision, RetryLater):
        if decision.error is None:
            report.wait(decision.countdown)
        else:
            report.retry(decision.error, decision.attempt, decision.countdown)
        task.come_back(decision.countdown, error=decision.error)
    report.outcome(decision)
    return decision.as_result()


def cancel_batch_task(
    self: PictifyTask, batch_id: str, *, reason: str | None = None
) -> CancelBatchResult:
    """Cancel a Pictify batch, exactly once however often it is asked.

    ``reason`` says why (``revoked: <id>`` for the package's own); it shows
    in the task's arguments and the log. Returns a
    :class:`~pictify_tasks.CancelBatchResult`.
    """
    validate_cancel_batch(batch_id, reason=reason)
    return run_cancel(self, batch_id, reason or "")


def validate_cancel_start(start_id: Any) -> None:
    validate_id(start_id, kind="start id")


def cancel_start_task(self: PictifyTask, start_id: str) -> CancelBatchResult | None:
    """Cancel the batch of a start that may have reached the API before its task died.

    The start was recorded before its POST. If its batch id is not known, the
    same request is sent again with the same Idempotency-Key: the API answers
    with the batch the first request made (or makes it now); then it is
    cancelled like any other. Returns ``None`` when the record has expired.
    Failing for good before its batch id is known, it is told as a cancel's
    failure is (log line, ``cancel_failed``), under ``start/<start id>``.
    """
    validate_cancel_start(start_id)
    self.runtime.settings.require_api_key()
    reason = f"start {start_id} killed before its answer"
    try:
        batch_id = _batch_of_start(self, start_id)
    except PictifyError as error:  # the API's, or the state store's (transient)
        try:
            self.retry_within_deadline(error)
        except PictifyError as final:  # the budget is spent, or the API refused for good
            attempts = failed_requests(self.request) + was_a_request(final)
            report_for(self, START_PREFIX + start_id, reason).failed(final, attempts)
            raise
    if batch_id is None:
        return None
    return run_cancel(self, batch_id, reason)


def _batch_of_start(task: PictifyTask, start_id: str) -> str | None:
    """The recorded start's batch id, asking the API again (same request) if unknown."""
    runtime = task.runtime
    start = runtime.store.start_request(start_id)
    if start is None:
        logger.warning("start %s is no longer recorded: nothing to cancel", start_id)
        return None
    if start.batch_id is not None:
        return start.batch_id
    task.wait_for_token(Priority.START)
    try:
        batch_id = replay_start(runtime.client, start)
    except PictifyError:
        raise
    except Exception as exc:  # as in a cancel step: a failed request, retried (same key)
        raise cut_short(f"replay of start {start.start_id}", exc) from exc
    links = BatchLinks.from_pairs(start.links)
    runtime.store.finish_start(StartMade(start_id, batch_id), links, runtime.settings.link_ttl)
    logger.info("start %s had made batch %s: cancelling it", start_id, batch_id)
    return batch_id


def replay_start(client: PictifyClient, start: StartRequest) -> str:
    """Send a recorded start again, byte for byte, with its Idempotency-Key."""
    answer = client.start_batch_body(
        start.template_uid, start.body, idempotency_key=start.idempotency_key
    )
    return answer.batch_id
