"""``X-Pictify-Signature``: ``t=<unix seconds>,v1=<hex>``, checked as Pictify documents it.

``v1`` is HMAC-SHA256, keyed with the signing secret, over the text
``<t>.<raw body>``: the bytes as they arrived, never JSON parsed and written
again (another spelling of the same JSON has another signature). Digests are
compared in constant time, and a ``t`` more than five minutes from this
clock is refused, so a captured delivery cannot be replayed later. Several
secrets are tried, so that a secret can be rotated without losing deliveries.
Stdlib only.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

__all__ = ["TOLERANCE", "SignatureError", "sign", "verify"]

#: Seconds a delivery's timestamp may be away from this clock, either way.
TOLERANCE = 300.0
#: A longer header is not a signature (and is not worth parsing).
MAX_HEADER = 2048
#: At most this many ``v1`` values are tried.
MAX_SIGNATURES = 8


class SignatureError(ValueError):
    """The delivery is not signed by a known secret, or not now; ``reason`` says which.

    The text never holds a secret or the signature.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The header value a sender puts on ``body`` at ``timestamp``."""
    return f"t={timestamp},v1={_digest(secret, str(timestamp), body)}"


def verify(
    body: bytes,
    header: str | None,
    secrets: Sequence[str],
    *,
    now: float,
    tolerance: float = TOLERANCE,
) -> int:
    """Return the delivery's timestamp if ``header`` signs ``body`` now; else raise.

    Raises :class:`SignatureError` for a missing or malformed header, a stale
    (or future) timestamp, or no ``v1`` made with any of ``secrets``.
    """
    if not header:
        raise SignatureError("missing X-Pictify-Signature")
    if len(header) > MAX_HEADER:
        raise SignatureError("malformed X-Pictify-Signature")
    timestamp, candidates = _parse(header)
    if abs(now - int(timestamp)) > tolerance:
        raise SignatureError("timestamp outside the 5-minute window")
    expected = [_digest(secret, timestamp, body).encode("ascii") for secret in secrets]
    matched = False
    for candidate in candidates:
        for digest in expected:
            # Every pair is compared (no early exit): the time says nothing.
            matched |= hmac.compare_digest(candidate, digest)
    if not matched:
        raise SignatureError("signature does not match")
    return int(timestamp)


def _parse(header: str) -> tuple[str, list[bytes]]:
    """The timestamp as sent (digits) and the ``v1`` values, lower-case bytes."""
    timestamp: str | None = None
    candidates: list[bytes] = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        value = value.strip()
        if name == "t" and timestamp is None:
            timestamp = value
        elif name == "v1" and len(candidates) < MAX_SIGNATURES:
            candidates.append(value.lower().encode("utf-8", "replace"))
    if not timestamp or not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureError("malformed X-Pictify-Signature: no usable t=")
    if not candidates:
        raise SignatureError("malformed X-Pictify-Signature: no v1=")
    return timestamp, candidates


def _digest(secret: str, timestamp: str, body: bytes) -> str:
    message = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
