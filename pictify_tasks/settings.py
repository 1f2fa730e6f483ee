"""The one place settings are read: the Celery app's config, then the environment.

Reading ``app.conf`` first means Django projects that load their settings with
``app.config_from_object("django.conf:settings", namespace="CELERY")`` set
``CELERY_PICTIFY_API_KEY`` and friends. Every value is validated here into a
frozen :class:`PictifySettings`, so the rest of the package never parses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

from pictify_tasks.errors import ImproperlyConfigured
from pictify_tasks.revoke.links import Scope

__all__ = [
    "DEFAULT_BASE_URL",
    "MEMORY_STATE_URL",
    "REDIS_SCHEMES",
    "PictifySettings",
    "mask_secret",
]

DEFAULT_BASE_URL = "https://api.pictify.io"
REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})
#: Keep the state in process memory on purpose (tests, demos, one worker process).
MEMORY_STATE_URL = "memory://"
SEVEN_DAYS = 7 * 24 * 3600

T = TypeVar("T")


def mask_secret(secret: str | None) -> str:
    """Show which kind of key is set (``pk_live_***``) without showing the key."""
    if not secret:
        return "<not set>"
    for prefix in ("pk_live_", "pk_test_"):
        if secret.startswith(prefix):
            return prefix + "***"
    return "***"


@dataclass(frozen=True)
class PictifySettings:
    """Validated settings; the API key is hidden from ``repr``."""

    api_key: str | None = field(default=None, repr=False)
    base_url: str = DEFAULT_BASE_URL
    timeout: float = 10.0
    state_url: str | None = None
    cancel_max_attempts: int = 5
    retry_backoff_base: float = 1.0
    retry_backoff_max: float = 600.0
    link_ttl: int = SEVEN_DAYS
    outcome_ttl: int = SEVEN_DAYS
    revoke_scope: Scope = Scope.WORKFLOW
    revoke_listener: bool = True

    def __post_init__(self) -> None:
        _check_url(self.base_url, "pictify_base_url", schemes=("http", "https"))
        if self.state_url is not None and self.state_url != MEMORY_STATE_URL:
            _check_url(self.state_url, "pictify_state_url", schemes=tuple(REDIS_SCHEMES))
        _check_positive(self.timeout, "pictify_timeout")
        _check_positive(self.retry_backoff_base, "pictify_retry_backoff_base")
        _check_positive(self.retry_backoff_max, "pictify_retry_backoff_max")
        _check_positive(self.link_ttl, "pictify_link_ttl")
        _check_positive(self.outcome_ttl, "pictify_outcome_ttl")
        if self.cancel_max_attempts < 1:
            raise ImproperlyConfigured(
                f"pictify_cancel_max_attempts must be at least 1, got {self.cancel_max_attempts}"
            )
        if not isinstance(self.revoke_scope, Scope):
            raise ImproperlyConfigured(
                f"pictify_revoke_scope must be a Scope, got {self.revoke_scope!r}"
            )

    def require_api_key(self) -> str:
        """The API key, or :class:`ImproperlyConfigured` saying how to set it."""
        if not self.api_key:
            raise ImproperlyConfigured(
                "no Pictify API key: set pictify_api_key in the Celery config "
                "(CELERY_PICTIFY_API_KEY under Django) or the PICTIFY_API_KEY environment variable"
            )
        return self.api_key

    @classmethod
    def from_app(cls, app: Any, environ: Mapping[str, str] | None = None) -> PictifySettings:
        """Read every setting from ``app.conf``, then ``environ`` (default ``os.environ``)."""
        reader = _Reader(app.conf, os.environ if environ is None else environ)
        state_url = reader.get("pictify_state_url", str, None)
        if state_url is None:
            state_url = redis_broker_url(app)
        return cls(
            api_key=reader.get("pictify_api_key", str, None) or None,
            base_url=reader.get("pictify_base_url", str, DEFAULT_BASE_URL).rstrip("/"),
            timeout=reader.get("pictify_timeout", float, 10.0),
            state_url=state_url or None,
            cancel_max_attempts=reader.get("pictify_cancel_max_attempts", int, 5),
            retry_backoff_base=reader.get("pictify_retry_backoff_base", float, 1.0),
            retry_backoff_max=reader.get("pictify_retry_backoff_max", float, 600.0),
            link_ttl=reader.get("pictify_link_ttl", int, SEVEN_DAYS),
            outcome_ttl=reader.get("pictify_outcome_ttl", int, SEVEN_DAYS),
            revoke_scope=reader.get("pictify_revoke_scope", _scope, Scope.WORKFLOW),
            revoke_listener=reader.get("pictify_revoke_listener", _boolean, True),
        )


def redis_broker_url(app: Any) -> str | None:
    """The broker URL when the broker is Redis (the default home of our state)."""
    url = app.conf.get("broker_url") or app.conf.get("broker_write_url")
    if isinstance(url, (list, tuple)):
        url = url[0] if url else None
    if not isinstance(url, str):
        return None
    first = url.split(";")[0].strip()
    return first if urlsplit(first).scheme in REDIS_SCHEMES else None


class _Reader:
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
        if isinstance(value, bool) and convert is not _boolean:
            raise ImproperlyConfigured(f"{source} must be a number, not a bool")
        try:
            return convert(value)
        except (TypeError, ValueError):
            shown = "<hidden>" if "key" in name else repr(value)
            raise ImproperlyConfigured(
                f"{source} must be {_KINDS.get(convert, 'a value')}, got {shown}"
            ) from None


def _boolean(value: Any) -> bool:
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


def _scope(value: Any) -> Scope:
    """A revoke scope from its name (``workflow`` or ``task``)."""
    if isinstance(value, Scope):
        return value
    if isinstance(value, str):
        return Scope(value.strip().lower())
    raise TypeError(value)


_KINDS: dict[Any, str] = {
    int: "a whole number",
    float: "a number",
    _boolean: "a boolean",
    _scope: "one of " + ", ".join(repr(s.value) for s in Scope),
}


def _check_positive(value: float, name: str) -> None:
    if not value > 0:
        raise ImproperlyConfigured(f"{name} must be greater than 0, got {value!r}")


def _check_url(url: str, name: str, *, schemes: tuple[str, ...]) -> None:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not (parts.netloc or parts.scheme == "unix"):
        raise ImproperlyConfigured(
            f"{name} must be a URL starting with one of {sorted(schemes)}://, "
            f"got {_safe_url(url)!r}"
        )


def _safe_url(url: str) -> str:
    """A URL with any password replaced, for messages."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url
