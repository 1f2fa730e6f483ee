"""Hiding the API key, and keeping the API's texts short: stdlib only.

Whatever a proxy, the API or ``requests`` echoes back may carry the key, in
its own spelling or escaped (``repr`` of a header, a JSON string). The client
passes every text it builds through one :class:`Redactor`, then cuts what the
API wrote with :func:`clip`, in that order, so that a cut never leaves part of
a key that the redactor could no longer recognise.
"""

from __future__ import annotations

import json

__all__ = ["MAX_API_TEXT", "Redactor", "clip", "key_hint", "mask_secret"]

#: The most characters of the API's own text (a message, a detail) that are kept.
MAX_API_TEXT = 300
KEY_PREFIXES = ("pk_live_", "pk_test_")


def mask_secret(secret: str | None) -> str:
    """Show which kind of key is set (``pk_live_***``) without showing the key."""
    if not secret:
        return "<not set>"
    for prefix in KEY_PREFIXES:
        if secret.startswith(prefix):
            return prefix + "***"
    return "***"


def key_hint(secret: str | None) -> str:
    """Which key is set, enough to tell two apart: its kind and last 4 (``pk_live_***9f3a``).

    A key under 16 characters shows its kind only: 4 of them would be too much of it.
    """
    if not secret or len(secret) < 16:
        return mask_secret(secret)
    return mask_secret(secret) + secret[-4:]


class Redactor:
    """Replaces every spelling of one secret in a text with :func:`mask_secret`'s mask.

    The spellings are the secret itself (so ``Bearer <key>`` too), the inner
    text of its ``repr()`` (how ``requests`` and tracebacks print a header)
    and of its JSON string (how a body echoes it).
    """

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("nothing to redact: the secret is empty")
        self.mask = mask_secret(secret)
        spellings = {
            secret,
            repr(secret)[1:-1],
            json.dumps(secret)[1:-1],
            json.dumps(secret, ensure_ascii=False)[1:-1],
        }
        # Longest first, so that a spelling containing another is replaced whole.
        self._spellings = sorted(spellings, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for spelling in self._spellings:
            if spelling in text:
                text = text.replace(spelling, self.mask)
        return text

    def __repr__(self) -> str:
        return f"Redactor({self.mask!r})"


def clip(text: str, limit: int = MAX_API_TEXT) -> str:
    """``text``, or its start and a note saying it was cut, in at most ``limit`` characters."""
    if len(text) <= limit:
        return text
    marker = f"\N{HORIZONTAL ELLIPSIS} [cut, {len(text)} characters in all]"
    return text[: max(0, limit - len(marker))] + marker
