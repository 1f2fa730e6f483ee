"""How one setting's value is read, checked and converted (``settings.py`` says which).

Every value comes from the Celery config or from an environment string, so
each converter takes either and refuses what would break later: a non-finite
number, a bool where a number belongs, a key with a control character in it.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from typing import Any, Callable, TypeVar

from pictify_tasks.errors import ImproperlyConfigured
from pictify_tasks.ratelimit import Rate, parse_rate
from pictify_tasks.revoke.links import Scope
from pictify_tasks.triggers import Trigger, parse_cancel_on

__all__ = [
    "KINDS",
    "Reader",
    "boolean",
    "clean_api_key",
    "finite",
    "number",
    "rate",
    "scope",
    "webhook_secrets",
    "whole_number",
]

T = TypeVar("T")


def clean_api_key(key: str, *, name: str, what: str = "an API key") -> str:
    """The key without surrounding whitespace; refused if anything odd is left inside.

    A key read from a mounted secret file often ends in a newline, and
    ``requests`` refuses such a header with an error that quotes the whole
    value. Only printable ASCII without spaces is accepted: the message names
    the position and kind of the first odd character, never the key.
    """
    if not isinstance(key, str):
        raise ImproperlyConfigured(f"{name} must be a string")
    stripped = key.strip()
    for position, char in enumerate(stripped):
        kind = _odd_character(char)
        if kind is not None:
            raise ImproperlyConfigured(
                f"{name} contains {kind} at position {position} (counting from 0) of its "
                f"{len(stripped)} characters; {what} is printable ASCII without spaces "
                "(the value itself is not shown)"
            )
    return stripped


_CONTROL_NAMES = {"\n": "line feed", "\r": "carriage return", "\t": "tab", "\x00": "NUL"}


def _odd_character(char: str) -> str | None:
    """What is wrong with one character of a key, or ``None`` when it is fine."""
    code = ord(char)
    if 0x21 <= code <= 0x7E:
        return None
    if unicodedata.category(char) == "Cc":
        named = f" {_CONTROL_NAMES[char]}" if char in _CONTROL_NAMES else ""
        return f"a control character (U+{code:04X}{named})"
    if code > 0x7E:
        return f"a non-ASCII character (U+{code:04X})"
    return "whitespace (U+0020, a space)"


class Reader:
    """Looks a setting up in the app config, then the environment, and converts it."""

    def __init__(self, conf: Any, environ: Mapping[str, str]) -> None:
        self._conf = conf
        self._environ = environ

    def get(self, name: str, convert: Callable[[Any], T], default: T) -> T:
        value = self._conf.get(name)
        source = f"app.conf.{name}"
        if value is None:
            env_name = name.upper()
            value = self._environ.get(env_name)
            source = f"environment variable {env_name}"
            if value is None or value == "":
                return default
        if convert is str:
            if not isinstance(value, str):
                raise ImproperlyConfigured(f"{source} must be a string")
            return value  # type: ignore[return-value]
        if isinstance(value, bool) and convert is not boolean:
            raise ImproperlyConfigured(f"{source} must be a number, not a bool")
        shown = "<hidden>" if "key" in name or "secret" in name else repr(value)
        try:
            return convert(value)
        except NotFinite:
            raise ImproperlyConfigured(f"{source} must be a finite number, got {shown}") from None
        except (TypeError, ValueError, OverflowError):
            raise ImproperlyConfigured(
                f"{source} must be {KINDS.get(convert, 'a value')}, got {shown}"
            ) from None


class NotFinite(ValueError):
    """A number that is infinite or NaN: it would pass every comparison and break later."""


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number(value: Any) -> float:
    """A finite number from the config or an environment string (``inf``, ``nan`` refused)."""
    number = float(value.strip() if isinstance(value, str) else value)
    if not math.isfinite(number):
        raise NotFinite(value)
    return number


def whole_number(value: Any) -> int:
    """A whole number; ``2.0`` is one, ``2.5`` is not."""
    converted = number(value)
    if isinstance(value, int):
        return value
    if not converted.is_integer():
        raise ValueError(value)
    return int(converted)


def boolean(value: Any) -> bool:
    """A bool from the config, or from an environment string such as ``0`` or ``off``."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(value)
    if isinstance(value, int):
        return bool(value)
    raise TypeError(value)


def rate(value: Any) -> Rate:
    """A rate such as ``"300/m"`` (see :func:`pictify_tasks.ratelimit.parse_rate`)."""
    return value if isinstance(value, Rate) else parse_rate(value)


def scope(value: Any) -> Scope:
    """A revoke scope from its name (``workflow`` or ``task``)."""
    if isinstance(value, Scope):
        return value
    if isinstance(value, str):
        return Scope(value.strip().lower())
    raise TypeError(value)


def webhook_secrets(value: Any) -> tuple[str, ...]:
    """Webhook signing secrets from a list, or one string of comma-separated secrets.

    Several are accepted while a secret is rotated. Each must be at least 16
    printable ASCII characters without spaces (a short HMAC key can be
    guessed from one captured delivery); a message never shows one.
    """
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise ImproperlyConfigured("pictify_webhook_secret must be a string or a list of strings")
    secrets = tuple(clean_api_key(i, name="pictify_webhook_secret", what="a secret") for i in items)
    for number, secret in enumerate(secrets, start=1):
        if len(secret) < 16:
            raise ImproperlyConfigured(
                f"pictify_webhook_secret number {number} has {len(secret)} characters; "
                "a signing secret needs at least 16 (the secret itself is not shown)"
            )
    return secrets


KINDS: dict[Any, str] = {
    number: "a number",
    whole_number: "a whole number",
    boolean: "a boolean",
    scope: "one of " + ", ".join(repr(s.value) for s in Scope),
    parse_cancel_on: "a list of " + ", ".join(t.value for t in Trigger),
    rate: 'a rate of at least 1 request: "N/s", "N/m" or "N/h" (e.g. "300/m")',
}
