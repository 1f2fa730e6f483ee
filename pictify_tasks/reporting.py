"""How a cancel decision is told: one structured log line, and the package's signals.

Every decision a cancel task takes (an outcome, a retry, a wait, a failure)
is one line through Celery's task logger, as ``key=value`` pairs an operator
can grep and a log pipeline can parse; the outcome and the failure are also
sent as signals (:mod:`pictify_tasks.signals`). No secret is ever in either:
the texts come from errors the client has already redacted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from celery.utils.log import get_task_logger

from pictify_tasks.signals import batch_cancelled, cancel_failed, cancel_retried
from pictify_tasks.store.records import OutcomeRecord

__all__ = ["CancelReport"]

logger = get_task_logger("pictify_tasks.cancel")


@dataclass(frozen=True)
class CancelReport:
    """The decisions of one run of a cancel task for one batch."""

    sender: Any
    batch_id: str
    workflow_id: str | None
    reason: str
    asked_at: float

    def outcome(self, record: OutcomeRecord) -> None:
        saved = {} if record.items_not_rendered is None else {"saved": record.items_not_rendered}
        self._line(
            logging.INFO,
            "outcome" if not record.replayed else "replayed",
            outcome=record.outcome,
            attempt=record.attempts,
            **saved,
        )
        if not record.replayed:
            batch_cancelled.send(
                sender=self.sender,
                batch_id=self.batch_id,
                outcome=record.outcome,
                workflow_id=self.workflow_id,
                reason=self.reason,
                latency=time.time() - self.asked_at,
                items_not_rendered=record.items_not_rendered,
            )

    def retry(self, error: BaseException, attempt: int, wait: float) -> None:
        self._line(logging.WARNING, "retry", attempt=attempt, wait=wait, error=error)
        cancel_retried.send(
            sender=self.sender,
            batch_id=self.batch_id,
            error=error,
            attempt=attempt,
            countdown=wait,
        )

    def wait(self, wait: float) -> None:
        """Another task holds the lease, or no token yet: not worth more than DEBUG."""
        self._line(logging.DEBUG, "wait", wait=wait)

    def failed(self, error: BaseException, attempts: int) -> None:
        self._line(logging.ERROR, "failed", attempt=attempts, error=error)
        cancel_failed.send(
            sender=self.sender, batch_id=self.batch_id, error=error, attempts=attempts
        )

    def _line(self, level: int, decision: str, **fields: Any) -> None:
        if not logger.isEnabledFor(level):
            return
        pairs = {
            "batch_id": self.batch_id,
            "workflow_id": self.workflow_id or "-",
            "decision": decision,
            **fields,
            "reason": self.reason or "-",
        }
        logger.log(level, "pictify cancel %s", " ".join(_pair(k, v) for k, v in pairs.items()))


def _pair(name: str, value: Any) -> str:
    if isinstance(value, float):
        return f"{name}={value:.2f}"
    if isinstance(value, BaseException):
        value = f"{type(value).__name__}: {value}"
    text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name}={text}"
