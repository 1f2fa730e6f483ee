"""One command: ``python examples/plain/run.py``.

Starts the Pictify API emulator, a real ``celery worker`` of ``proj``, and
then cancels a batch by hand and revokes a running workflow. Needs the Redis
at ``CELERY_BROKER_URL`` (default ``redis://127.0.0.1:6379/0``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so that `proj` imports

from proj.celery import app
from proj.tasks import render_cards

from pictify_tasks import cancel_batch
from pictify_tasks.testing import (
    PictifyEmulator,
    assert_cancelled_once,
    emulator_env,
    use_emulator,
)
from pictify_tasks.testing.worker import run_worker


def main() -> int:
    state_url = app.conf.broker_url  # one ledger for this process and the worker
    with PictifyEmulator(items_per_second=0) as emulator:  # batches run until cancelled
        use_emulator(app, emulator, state_url=state_url)
        print(f"Pictify emulator at {emulator.base_url}; starting a worker of proj ...")
        with run_worker(app, env=emulator_env(emulator, state_url=state_url), concurrency=2):
            batch_id = emulator.create_batch(total_items=50)
            # --8<-- [start:cancel]
            result = cancel_batch.delay(batch_id).get(timeout=30)
            print(f"cancel_batch({batch_id!r}) -> {result['outcome']}")
            # --8<-- [end:cancel]
            assert_cancelled_once(emulator, batch_id)

            # --8<-- [start:revoke]
            flow = render_cards([{"name": "Ada"}, {"name": "Grace"}])
            batch_id = flow.parent.parent.get(timeout=30)  # the start step's result
            print(f"workflow started batch {batch_id}; revoking the workflow ...")
            revoked_at = time.monotonic()
            flow.revoke()  # the workers hear it and cancel the batch
            # --8<-- [end:revoke]
            assert_cancelled_once(emulator, batch_id, timeout=30)
            elapsed = (time.monotonic() - revoked_at) * 1000
            print(f"batch {batch_id} cancelled {elapsed:.0f} ms after the revoke")
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
