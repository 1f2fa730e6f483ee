"""``pictify.start_batch`` and ``pictify.wait_for_batch``: the start side of a workflow."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from pictify_tasks.client import batch_render_body
from pictify_tasks.errors import PictifyError
from pictify_tasks.ids import idempotency_key_for, validate_id, validate_max_runtime
from pictify_tasks.ratelimit import Priority
from pictify_tasks.revoke.links import links_from_request
from pictify_tasks.signals import batch_tracked
from pictify_tasks.store.records import StartMade, StartRequest
from pictify_tasks.tasks.base import PictifyTask

__all__ = ["start_batch_task", "validate_start_batch"]

logger = logging.getLogger("pictify_tasks.tasks")


def validate_start_batch(
    template_uid: Any,
    variable_sets: Sequence[Mapping[str, Any]],
    *,
    max_runtime: Any = None,
    **options: Any,
) -> None:
    validate_id(template_uid, kind="template uid")
    validate_max_runtime(max_runtime)
    batch_render_body(variable_sets, **options)


def start_batch_task(
    self: PictifyTask,
    template_uid: str,
    variable_sets: Sequence[Mapping[str, Any]],
    *,
    max_runtime: float | None = None,
    **options: Any,
) -> str:
    """Start a batch and link it to this task's workflow; return its id.

    The start is recorded (and linked) before its POST, so a revoke that
    kills this task inside the POST still finds the batch; a start whose
    workflow was revoked already is not sent at all. The Idempotency-Key
    comes from this task's id, which a retry keeps: a retried start returns
    the batch the first attempt made. With ``max_runtime`` (seconds) the
    batch is cancelled if it still runs that long after it started, whether
    or not anyone waits for it (the sweep does it, to its interval). Without
    ``webhook_url`` the ``pictify_webhook_url`` setting is Pictify's webhook
    URL (``webhook_url=None`` starts it without one).
    """
    validate_start_batch(template_uid, variable_sets, max_runtime=max_runtime, **options)
    runtime = self.runtime
    settings = runtime.settings
    settings.require_api_key()
    if "webhook_url" not in options and settings.webhook_url:
        options["webhook_url"] = settings.webhook_url
    start_id = str(self.request.id)
    links = links_from_request(self.request)
    start = StartRequest(
        start_id=start_id,
        template_uid=template_uid,
        body=batch_render_body(variable_sets, **options),
        idempotency_key=idempotency_key_for("start", start_id),
        links=tuple((str(scope), link_id) for scope, link_id in links.pairs()),
    )
    try:
        revoked = runtime.store.begin_start(start, links, settings.link_ttl)
        if revoked:
            self.end_as_revoked(f"not started: {', '.join(revoked)} had been revoked")
        self.wait_for_token(Priority.START)
        # The recorded body, the very bytes a replay of this start will send.
        answer = runtime.client.start_batch_body(
            template_uid, start.body, idempotency_key=start.idempotency_key
        )
        made = StartMade(
            start_id,
            answer.batch_id,
            total_items=answer.total_items,
            deadline=None if max_runtime is None else time.time() + max_runtime,
            webhook=options.get("webhook_url") is not None,
        )
        revoked = runtime.store.finish_start(made, links, settings.link_ttl)
    except PictifyError as error:
        self.retry_within_deadline(error)
    batch_tracked.send(sender=self, batch_id=answer.batch_id, workflow_id=links.root_id)
    if revoked:
        logger.info(
            "batch %s was started after %s had been revoked: cancelling it now",
            answer.batch_id,
            ", ".join(revoked),
        )
        runtime.fanout.enqueue(
            [answer.batch_id],
            reason=f"revoked: {revoked[0]}",
            origins={answer.batch_id: (links.root_id, links.started_by)},
        )
    return answer.batch_id
