"""Helpers for users' own tests: point an app at an emulator, assert what the API saw.

Assertions read the emulator, the API's side of the wire: "cancelled exactly
once" means the API executed one cancel request for the batch and it
stopped the batch, whatever the tasks, retries and duplicates did.
"""

from __future__ import annotations

import time
from typing import Any

from pictify_tasks.configuration import configure
from pictify_tasks.settings import MEMORY_STATE_URL, PictifySettings
from pictify_tasks.testing.emulator import PictifyEmulator

__all__ = ["assert_cancelled_once", "assert_not_cancelled", "emulator_env", "use_emulator"]

#: How often the assertions look at the emulator while they wait.
POLL_INTERVAL = 0.01


def use_emulator(
    app: Any,
    emulator: PictifyEmulator,
    *,
    state_url: str | None = MEMORY_STATE_URL,
    **settings: Any,
) -> PictifySettings:
    """Point ``app`` (in this process) at ``emulator`` and re-read its settings.

    The ledger is kept in process memory unless ``state_url`` names a Redis
    (``None``: the app's broker if it is Redis). Other keywords are settings,
    as for :func:`pictify_tasks.configure`. The webhook secret is the
    emulator's, so a receiver of this app accepts its deliveries. A worker
    running in another process needs the same values in its environment
    (:func:`emulator_env`).
    """
    return configure(
        app,
        **{
            "api_key": emulator.api_key,
            "base_url": emulator.base_url,
            "webhook_secret": emulator.webhook_secret,
            "state_url": state_url,
            **settings,
        },
    )


def emulator_env(emulator: PictifyEmulator, *, state_url: str | None = None) -> dict[str, str]:
    """The environment that points a worker process at ``emulator`` (for ``run_worker``).

    A worker is another process: it reads ``PICTIFY_*`` from its environment.
    Give it the caller's ``state_url`` (a Redis) so both share one ledger.
    """
    env = {
        "PICTIFY_API_KEY": emulator.api_key,
        "PICTIFY_BASE_URL": emulator.base_url,
        "PICTIFY_WEBHOOK_SECRET": emulator.webhook_secret,
    }
    if state_url is not None:
        env["PICTIFY_STATE_URL"] = state_url
    return env


def assert_cancelled_once(
    emulator: PictifyEmulator, batch_id: str, *, timeout: float = 10.0
) -> dict[str, Any]:
    """Wait up to ``timeout`` for the API to cancel ``batch_id``; assert it did so once.

    Returns the batch as the emulator holds it. A cancel that comes after
    this returns is not seen: wait for your workflow to end first.
    """
    deadline = time.monotonic() + timeout
    batch = _batch(emulator, batch_id)
    while batch["cancelRequests"] == 0 and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
        batch = _batch(emulator, batch_id)
    requests, effective = batch["cancelRequests"], batch["effectiveCancels"]
    assert requests > 0, f"batch {batch_id} was not cancelled within {timeout:g} s"
    assert (requests, effective) == (1, 1), (
        f"batch {batch_id}: the API executed {requests} cancel request(s), "
        f"{effective} of which stopped it; expected exactly one that did"
    )
    return batch


def assert_not_cancelled(emulator: PictifyEmulator, batch_id: str) -> dict[str, Any]:
    """Assert that no cancel of ``batch_id`` has reached the API (so far)."""
    batch = _batch(emulator, batch_id)
    sent = emulator.cancel_requests(batch_id)
    assert not sent, f"batch {batch_id} was sent {len(sent)} cancel request(s)"
    return batch


def _batch(emulator: PictifyEmulator, batch_id: str) -> dict[str, Any]:
    try:
        return emulator.batch(batch_id)
    except KeyError:
        raise AssertionError(f"the emulator has no batch {batch_id!r}") from None
