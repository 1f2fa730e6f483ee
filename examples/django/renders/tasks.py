"""The app's tasks: render cards with a Pictify batch, then publish them."""

from __future__ import annotations

from typing import Any

from celery import chain, shared_task
from celery.result import AsyncResult

from pictify_tasks import start_batch, wait_for_batch


@shared_task(name="renders.publish")
def publish(batch: dict[str, Any]) -> int:
    """Runs once the batch has rendered; a cancelled render never gets here."""
    return int(batch["completed_items"] or 0)


def render(rows: list[dict[str, Any]]) -> AsyncResult:
    """The render workflow; its id is the id a cancel names."""
    return chain(
        start_batch.s("tpl_cards", rows),
        wait_for_batch.s(poll_interval=0.5),
        publish.s(),
    ).apply_async()
