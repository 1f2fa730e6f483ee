"""``make demo``: cancel a few batches through the task, with no external service.

The emulator plays the Pictify API on loopback; an embedded worker runs on
Celery's in-memory broker. Each line shows what a user of the task sees.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from celery import Celery
from celery.contrib.testing.worker import start_worker

import pictify_tasks
from pictify_tasks.testing import PictifyEmulator


def _demo_app(emulator: PictifyEmulator) -> Celery:
    app = Celery("pictify-demo", broker="memory://localhost/", backend="cache+memory://")
    app.conf.update(
        pictify_api_key=emulator.api_key,
        pictify_base_url=emulator.base_url,
        pictify_state_url="memory://",
        pictify_retry_backoff_base=0.2,
        pictify_retry_backoff_max=1.0,
        worker_hijack_root_logger=False,
        broker_transport_options={"polling_interval": 0.01},
    )
    pictify_tasks.install(app)
    return app


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

    running = emulator.create_batch(total_items=40, items_per_second=2)
    started = time.monotonic()
    _show(
        "a running batch",
        cancel.delay(running).get(timeout=30, interval=0.01),
        emulator,
        running,
        started,
    )

    flaky = emulator.create_batch(total_items=40, items_per_second=2)
    emulator.inject(status=503, times=2, path_contains=f"/{flaky}/cancel")
    started = time.monotonic()
    _show(
        "the API answers 503, 503, then 200",
        cancel.delay(flaky).get(timeout=30, interval=0.01),
        emulator,
        flaky,
        started,
    )

    finished = emulator.create_batch(total_items=5, status="completed")
    started = time.monotonic()
    _show(
        "a batch that already finished",
        cancel.delay(finished).get(timeout=30, interval=0.01),
        emulator,
        finished,
        started,
    )

    started = time.monotonic()
    _show(
        "a batch that does not exist",
        cancel.delay("batch_missing").get(timeout=30, interval=0.01),
        emulator,
        "batch_missing",
        started,
    )

    popular = emulator.create_batch(total_items=40, items_per_second=2)
    emulator.inject(delay=0.3, times=1, path_contains=f"/{popular}/cancel")
    started = time.monotonic()
    results = [r.get(timeout=30, interval=0.01) for r in [cancel.delay(popular) for _ in range(10)]]
    assert all(r == results[0] for r in results)
    _show("the same batch, 10 tasks at once", results[0], emulator, popular, started)

    try:
        cancel.delay("../etc/passwd")
    except pictify_tasks.InvalidBatchIdError as exc:
        print(f"  {'a bad id, refused before publishing':<34} {exc}")


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stdout, format="    %(levelname)s %(name)s: %(message)s"
    )
    with PictifyEmulator() as emulator:
        print(f"Pictify emulator at {emulator.base_url}")
        app = _demo_app(emulator)
        with start_worker(
            app, pool="threads", concurrency=8, perform_ping_check=False, loglevel="WARNING"
        ):
            cancel_demo(app, emulator)


if __name__ == "__main__":
    main()
