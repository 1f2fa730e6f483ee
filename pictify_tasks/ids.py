"""Validation of the ids this package sends to the API or stores.

An id is checked before anything is published or requested, so that bad
input fails in the caller's process with a clear error and never reaches a
broker, a URL or a Redis key.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import quote

from pictify_tasks.errors import InvalidBatchIdError

__all__ = [
    "MAX_ID_LENGTH",
    "idempotency_key_for",
    "path_segment",
    "validate_id",
    "validate_max_runtime",
]

MAX_ID_LENGTH = 128
_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def validate_id(value: Any, *, kind: str = "batch id") -> str:
    """Return ``value`` if it is a usable id, else raise :class:`InvalidBatchIdError`.

    A usable id is a non-empty ``str`` of at most 128 characters from
    ``[A-Za-z0-9._:-]`` other than ``.`` and ``..`` (which would change the
    meaning of a URL path).
    """
    if not isinstance(value, str):
        raise InvalidBatchIdError(
            f"{kind} must be a str, not {type(value).__name__}: {_excerpt(value)}"
        )
    if not value:
        raise InvalidBatchIdError(f"{kind} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidBatchIdError(
            f"{kind} is {len(value)} characters long; at most {MAX_ID_LENGTH} are allowed"
        )
    if _ID_PATTERN.fullmatch(value) is None:
        raise InvalidBatchIdError(
            f"{kind} {_excerpt(value)} may only contain letters, digits and . _ : -"
        )
    if value in (".", ".."):
        raise InvalidBatchIdError(f"{kind} must not be {value!r}")
    return value


def path_segment(value: str) -> str:
    """Percent-encode a validated id for use as one URL path segment."""
    return quote(value, safe="")


def idempotency_key_for(operation: str, value: str) -> str:
    """A stable Idempotency-Key for one operation on one id.

    Hashing keeps the key short and uniform whatever the id looks like; the
    same operation on the same id always yields the same key, so every retry
    and every duplicate task is one logical request for the API.
    """
    digest = hashlib.sha256(f"{operation}\x00{value}".encode()).hexdigest()[:40]
    return f"pictify-tasks-{operation}-{digest}"


def _excerpt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_max_runtime(value: Any) -> float | None:
    """``None``, or a positive, finite number of seconds (a batch's ``max_runtime``)."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 < value < float("inf")
    ):
        raise ValueError(f"max_runtime must be a positive number of seconds, got {value!r}")
    return float(value)
