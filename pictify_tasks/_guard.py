"""One way for code that runs inside Celery's machinery to fail: logged, never raised.

Signal handlers, the revoke listener and background work must never raise
into Celery (it would break a publish or a worker), yet a failure must not
pass silently: it is logged with its traceback, as sentry-sdk's
``capture_internal_exceptions`` does for its own hooks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["logged_not_raised"]


@contextmanager
def logged_not_raised(logger: logging.Logger, what: str) -> Iterator[None]:
    """Run the block; log an ``Exception`` it raises as ``pictify-tasks: <what> failed``."""
    try:
        yield
    except Exception:
        logger.exception("pictify-tasks: %s failed", what)
