"""The project's own tasks: a workflow that renders cards, then publishes them."""

from __future__ import annotations

from typing import Any

from celery import chain
from celery.result import AsyncResult

from pictify_tasks import start_batch, wait_for_batch
from proj.celery import app


# --8<-- [start:workflow]
@app.task(name="proj.publish_cards")
def publish_cards(batch: dict[str, Any]) -> str:
    """Runs once the batch has rendered (never, if the workflow is revoked first)."""
    return f"published {batch['completed_items']} cards of batch {batch['batch_id']}"


def render_cards(rows: list[dict[str, Any]]) -> AsyncResult:
    """Start a batch, wait for it, publish: revoking the workflow cancels the batch."""
    return chain(
        start_batch.s("tpl_cards", rows),  # returns the batch id
        wait_for_batch.s(poll_interval=0.5),  # polls by rescheduling itself
        publish_cards.s(),
    ).apply_async()


# --8<-- [end:workflow]
