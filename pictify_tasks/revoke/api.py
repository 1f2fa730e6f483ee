"""The public helpers of the revoke side: link a batch, cancel a workflow, revoke a tree."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import current_app, current_task
from celery.result import ResultBase

from pictify_tasks._runtime import runtime_for
from pictify_tasks.ids import validate_id, validate_max_runtime
from pictify_tasks.revoke.links import BatchLinks, links_from_request, result_ids
from pictify_tasks.signals import batch_tracked

__all__ = ["cancel_workflow", "revoke_workflow", "track_batch"]

logger = logging.getLogger("pictify_tasks.revoke")


def track_batch(
    batch_id: str,
    *,
    workflow_id: str | None = None,
    max_runtime: float | None = None,
    app: Any = None,
) -> BatchLinks:
    """Link ``batch_id`` to the running task's workflow, so a revoke cancels it.

    Inside a task the links come from the task's request; outside one,
    ``workflow_id=`` names the id whose revoke must cancel the batch. If any
    linked id was revoked already, the batch is cancelled at once. With
    ``max_runtime`` (seconds from now) it is cancelled if it still runs then.
    """
    batch_id = validate_id(batch_id)
    max_runtime = validate_max_runtime(max_runtime)
    extra = [validate_id(workflow_id, kind="workflow id")] if workflow_id is not None else []
    task = current_task._get_current_object() if current_task else None
    request = getattr(task, "request", None)
    if task is not None and request is not None and request.id:
        links = links_from_request(request).plus(extra)
        app = app or task.app
    elif not extra:
        raise RuntimeError(
            "track_batch() was called outside a running Celery task: "
            "pass workflow_id= to say which id's revoke must cancel the batch"
        )
    else:
        links = BatchLinks(frozenset(), frozenset(), root_id=extra[0]).plus(extra)
    runtime = runtime_for(app or current_app._get_current_object())
    deadline = None if max_runtime is None else time.time() + max_runtime
    revoked = runtime.store.link_batch(
        batch_id, links, runtime.settings.link_ttl, deadline=deadline
    )
    batch_tracked.send(sender=task, batch_id=batch_id, workflow_id=links.root_id)
    if revoked:
        logger.info(
            "batch %s was linked after %s had been revoked: cancelling it now",
            batch_id,
            ", ".join(revoked),
        )
        runtime.fanout.enqueue(
            [batch_id],
            reason=f"revoked: {revoked[0]}",
            origins={batch_id: (links.root_id, links.started_by)},
        )
    return links


def cancel_workflow(workflow_id_or_task_id: str, *, app: Any = None) -> list[str]:
    """Cancel every running batch linked to a workflow or task id; return their ids.

    The same as the ``pictify.cancel_workflow`` task, run in this process.
    """
    target = validate_id(workflow_id_or_task_id, kind="workflow or task id")
    return runtime_for(app or current_app._get_current_object()).fanout.cancel_ids([target])


def revoke_workflow(
    result: ResultBase, *, terminate: bool = False, signal: str | None = None, app: Any = None
) -> list[str]:
    """Revoke every task in a result tree and cancel its batches from this process.

    ``result`` is what the caller holds: a chain's tail, a ``GroupResult``, a
    chord's result. Returns the ids of the batches whose cancel was enqueued.
    """
    app = app or getattr(result, "app", None) or current_app._get_current_object()
    ids = result_ids(result)
    if not ids:
        return []
    options: dict[str, Any] = {"terminate": terminate}
    if signal is not None:
        options["signal"] = signal
    app.control.revoke(ids, **options)
    return runtime_for(app).fanout.cancel_ids(ids)
