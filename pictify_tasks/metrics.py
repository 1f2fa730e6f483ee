"""Prometheus metrics, when ``prometheus_client`` is installed (``pictify-tasks[metrics]``).

:func:`pictify_tasks.install` connects them to the package's signals; nothing
here runs otherwise. Under Celery's prefork pool set ``PROMETHEUS_MULTIPROC_DIR``
for the worker (prometheus_client's multiprocess mode: each pool process
writes its own file) and expose them with a ``MultiProcessCollector``.

- ``pictify_cancels_total{outcome}``: cancels that reached an outcome.
- ``pictify_cancel_failures_total``: cancels that failed for good.
- ``pictify_cancel_retries_total{reason}``: failed attempts retried, by error.
- ``pictify_rate_limited_total``: attempts answered 429.
- ``pictify_revoke_to_cancel_seconds``: from a revoke to its batch's cancel outcome.
- ``pictify_batches_tracked_total``: batches linked to their workflow.
- ``pictify_items_not_rendered_total``: items the cancels stopped from rendering
  ("renders saved").
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram

from pictify_tasks.errors import RateLimitError
from pictify_tasks.signals import batch_cancelled, batch_tracked, cancel_failed, cancel_retried

__all__ = ["connect", "disconnect"]

CANCELS = Counter("pictify_cancels", "Cancels that reached an outcome", ["outcome"])
FAILURES = Counter("pictify_cancel_failures", "Cancels that failed for good")
RETRIES = Counter("pictify_cancel_retries", "Failed cancel attempts retried", ["reason"])
RATE_LIMITED = Counter("pictify_rate_limited", "Cancel attempts answered 429")
REVOKE_TO_CANCEL = Histogram(
    "pictify_revoke_to_cancel_seconds",
    "From a revoke to its batch's cancel outcome",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
TRACKED = Counter("pictify_batches_tracked", "Batches linked to their workflow")
NOT_RENDERED = Counter("pictify_items_not_rendered", "Items the cancels stopped from rendering")


def _on_cancelled(
    outcome: str = "",
    reason: str = "",
    latency: float = 0.0,
    items_not_rendered: int | None = None,
    **_: Any,
) -> None:
    CANCELS.labels(outcome=outcome).inc()
    if reason.startswith("revoked:"):
        REVOKE_TO_CANCEL.observe(max(0.0, latency))
    if items_not_rendered:
        NOT_RENDERED.inc(items_not_rendered)


def _on_failed(**_: Any) -> None:
    FAILURES.inc()


def _on_retried(error: BaseException | None = None, **_: Any) -> None:
    RETRIES.labels(reason=type(error).__name__).inc()
    if isinstance(error, RateLimitError):
        RATE_LIMITED.inc()


def _on_tracked(**_: Any) -> None:
    TRACKED.inc()


_HANDLERS = [
    (batch_cancelled, _on_cancelled),
    (cancel_failed, _on_failed),
    (cancel_retried, _on_retried),
    (batch_tracked, _on_tracked),
]


def connect() -> None:
    for signal, handler in _HANDLERS:
        signal.connect(handler, weak=False, dispatch_uid=f"pictify-metrics:{handler.__name__}")


def disconnect() -> None:
    for signal, handler in _HANDLERS:
        signal.disconnect(handler, dispatch_uid=f"pictify-metrics:{handler.__name__}")
