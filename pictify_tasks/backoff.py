"""The one backoff formula every wait in the package uses.

Retries after an API error, looks at another task's lease, the revoke
listener's reconnects and a poll after a failed poll all wait
``base * 2**(attempt-1)``, capped, with some jitter. Writing that once keeps
them from drifting apart; what differs between them is only the numbers.
"""

from __future__ import annotations

import random
from typing import Callable

__all__ = ["backoff_delay"]


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    jitter: float = 1.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 1).

    The ceiling is ``min(cap, base * 2**(attempt-1))``. ``jitter`` is the share
    of it left to chance: ``1.0`` is full jitter (uniform in ``[0, ceiling]``,
    which spreads many workers retrying at once), ``0.5`` waits between half
    and all of it, ``0.0`` waits exactly the ceiling.
    """
    if not 0.0 <= jitter <= 1.0:
        raise ValueError("jitter must be between 0 and 1")
    exponent = min(max(attempt - 1, 0), 62)
    ceiling = min(cap, base * (2.0**exponent))
    return ceiling * (1.0 - jitter + jitter * rand())
