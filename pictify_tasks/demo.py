"""``make demo``: cancel a few batches through the task, with no external service.

The emulator plays the Pictify API on loopback; an embedded worker runs on
Celery's in-memory broker. Each line shows what a user of the task sees.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Callable

from celery import Celery, chain, group
from celery.contrib.testing.worker import start_worker

import pictify_tasks
from pictify_tasks.testing import PictifyEmulator, use_emulator


def _demo_app(emulator: PictifyEmulator) -> Celery:
    app = Celery("pictify-demo", broker="memory://localhost/", backend="cache+memory://")
    app.conf.update(
        worker_hijack_root_logger=False, broker_transport_options={"polling_interval": 0.01}
    )
    pictify_tasks.install(app)
    use_emulator(app, emulator, retry_backoff_base=0.2, retry_backoff_max=1.0)
    app.task(name="demo.next_step", shared=False)(_next_step)
    return app


def _next_step(status: Any) -> Any:
    """What a workflow does after its batch is rendered (never reached once revoked)."""
    return status


def _show(
    label: str, result: Any, emulator: PictifyEmulator, batch_id: str, started: float
) -> None:
    requests = emulator.cancel_requests(batch_id)
    statuses = ",".join(str(r.status) for r in requests) or "-"
    print(
        f"  {label:<34} outcome={result['outcome']:<16} status={result['status']!s:<10} "
        f"attempts={result['attempts']}  requests={len(requests)} [{statuses}]  "
        f"{(time.monotonic() - started) * 1000:6.0f} ms"
    )


def cancel_demo(app: Celery, emulator: PictifyEmulator) -> None:
    """Part one: the cancel task, idempotent, retrying, and merged across duplicates."""
    cancel = app.tasks["pictify.cancel_batch"]
    print("Cancelling batches through the pictify.cancel_batch task:")

    def running() -> str:
        return emulator.create_batch(total_items=40, items_per_second=2)

    def flaky() -> str:
        batch_id = running()
        emulator.inject(status=503, times=2, path_contains=f"/{batch_id}/cancel")
        return batch_id

    def slow() -> str:
        batch_id = running()
        emulator.inject(delay=0.3, times=1, path_contains=f"/{batch_id}/cancel")
        return batch_id

    cases: list[tuple[str, Callable[[], str], int]] = [
        ("a running batch", running, 1),
        ("the API answers 503, 503, then 200", flaky, 1),
        ("a batch that already finished", lambda: emulator.create_batch(5, "completed"), 1),
        ("a batch that does not exist", lambda: "batch_missing", 1),
        ("the same batch, 10 tasks at once", slow, 10),
    ]
    for label, make, copies in cases:
        batch_id = make()
        started = time.monotonic()
        sent = [cancel.delay(batch_id) for _ in range(copies)]
        results = [r.get(timeout=30, interval=0.01) for r in sent]
        fresh = [r for r in results if not r["replayed"]]  # the others read the ledger
        _show(label, (fresh or results)[0], emulator, batch_id, started)

    try:
        cancel.delay("../etc/passwd")
    except pictify_tasks.InvalidBatchIdError as exc:
        print(f"  {'a bad id, refused before publishing':<34} {exc}")


def _revoked(
    label: str, emulator: PictifyEmulator, batch_ids: list[str], revoke: Callable[[], Any]
) -> None:
    """Revoke, then wait (with a deadline) for every batch's cancel and show the timing."""
    began = time.monotonic()
    revoke()
    delays = []
    for batch_id in batch_ids:
        [request] = emulator.wait_for_requests(
            1, method="POST", path_contains=f"/{batch_id}/cancel", timeout=30
        )
        delays.append((request.monotonic - began) * 1000)
    statuses = sorted({emulator.batch(b)["status"] for b in batch_ids})
    print(
        f"  {label:<50} {len(batch_ids)} batch(es) -> {','.join(statuses)}; "
        f"cancel received {max(delays):.0f} ms after the revoke"
    )


def revoke_demo(app: Celery, emulator: PictifyEmulator) -> None:
    """Part two: revoking a workflow cancels its batches, whichever way it is revoked."""
    start = app.tasks["pictify.start_batch"]
    wait = app.tasks["pictify.wait_for_batch"]
    rows = [{"name": name} for name in ("Ada", "Grace", "Katherine")]
    print("Revoking workflows that started batches (the batches are cancelled for you):")

    flow = chain(
        start.s("tpl_cards", rows), wait.s(poll_interval=0.2), app.signature("demo.next_step")
    ).apply_async()
    batch_id = flow.parent.parent.get(timeout=30, interval=0.01)
    _revoked("chain start -> wait -> next, tail revoked", emulator, [batch_id], flow.revoke)
    try:
        flow.parent.get(timeout=30)
    except pictify_tasks.BatchCancelledError as stopped:
        print(f"    the waiting step then stopped the chain: {stopped}")

    batches = group(start.s("tpl_cards", rows) for _ in range(3)).apply_async()
    ids = batches.get(timeout=30, interval=0.01)
    _revoked("group of 3 starts, GroupResult.revoke()", emulator, ids, batches.revoke)

    flow = chain(start.s("tpl_cards", rows), wait.s(poll_interval=0.2)).apply_async()
    batch_id = flow.parent.get(timeout=30, interval=0.01)
    _revoked(
        "chain revoked with pictify_tasks.revoke_workflow",
        emulator,
        [batch_id],
        lambda: pictify_tasks.revoke_workflow(flow, app=app),
    )

    emulator.items_per_second = 1000.0
    flow = chain(start.s("tpl_cards", rows), wait.s(poll_interval=0.05)).apply_async()
    final = flow.get(timeout=30, interval=0.01)
    emulator.items_per_second = 0.0
    batch_id = flow.parent.get(timeout=30)
    cancelled_now = pictify_tasks.revoke_workflow(flow, app=app)
    print(
        f"  {'a workflow whose batch had finished':<50} status {final['status']!r}; "
        f"cancels sent: {len(cancelled_now) + len(emulator.cancel_requests(batch_id))}"
    )


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stdout, format="    %(levelname)s %(name)s: %(message)s"
    )
    with PictifyEmulator(items_per_second=0) as emulator:
        print(f"Pictify emulator at {emulator.base_url}")
        app = _demo_app(emulator)
        with start_worker(
            app, pool="threads", concurrency=8, perform_ping_check=False, loglevel="WARNING"
        ):
            cancel_demo(app, emulator)
            print()
            revoke_demo(app, emulator)


if __name__ == "__main__":
    main()
