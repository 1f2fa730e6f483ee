"""Signals users connect to, Celery style: ``batch_cancelled.connect(handler)``.

They are sent in the worker process that ran the task, from inside the task
(``sender`` is the task), so a handler must be quick and must not raise: an
exception in a handler is logged by Celery's dispatcher and does not change
the cancel.
"""

from __future__ import annotations

from celery.utils.dispatch import Signal

__all__ = ["batch_cancelled", "batch_tracked", "cancel_failed", "cancel_retried"]

#: A batch's cancel reached its outcome (sent once, by the task that made it).
#: Arguments: ``batch_id``, ``outcome`` (``cancelled``, ``already_finished``,
#: ``not_found``), ``workflow_id`` (the root of the revoked workflow, or
#: ``None``), ``reason``, ``latency`` (seconds from the first ask),
#: ``items_not_rendered`` (what the cancel saved, or ``None`` when not known).
batch_cancelled = Signal(
    name="pictify_batch_cancelled",
    providing_args={
        "batch_id",
        "outcome",
        "workflow_id",
        "reason",
        "latency",
        "items_not_rendered",
    },
)

#: A cancel failed for good (its time budget or attempt cap ran out, or the
#: API refused it for good). Arguments: ``batch_id`` (``start/<start id>`` for
#: a killed start whose batch id was never learnt), ``error``, ``attempts``.
cancel_failed = Signal(
    name="pictify_cancel_failed", providing_args={"batch_id", "error", "attempts"}
)

#: An attempt failed and will be retried. Arguments: ``batch_id``, ``error``,
#: ``attempt``, ``countdown``.
cancel_retried = Signal(
    name="pictify_cancel_retried",
    providing_args={"batch_id", "error", "attempt", "countdown"},
)

#: A batch was linked to its workflow (by ``start_batch`` or ``track_batch``).
#: Arguments: ``batch_id``, ``workflow_id``.
batch_tracked = Signal(name="pictify_batch_tracked", providing_args={"batch_id", "workflow_id"})
