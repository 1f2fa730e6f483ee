"""The one place settings are read: the Celery app's config, then the environment.

Reading ``app.conf`` first means Django projects that load their settings with
``app.config_from_object("django.conf:settings", namespace="CELERY")`` set
``CELERY_PICTIFY_API_KEY`` and friends. Every value is validated here into a
frozen :class:`PictifySettings`, so the rest of the package never parses.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

from pictify_tasks.errors import ImproperlyConfigured
from pictify_tasks.ratelimit import Rate
from pictify_tasks.redaction import key_hint
from pictify_tasks.revoke.links import Scope
from pictify_tasks.setting_values import (
    Reader,
    boolean,
    clean_api_key,
    finite,
    number,
    rate,
    scope,
    webhook_secrets,
    whole_number,
)
from pictify_tasks.triggers import DEFAULT_CANCEL_ON, Trigger, parse_cancel_on

__all__ = [
    "DEFAULT_BASE_URL",
    "MEMORY_STATE_URL",
    "REDIS_SCHEMES",
    "PictifySettings",
    "clean_api_key",
]

DEFAULT_BASE_URL = "https://api.pictify.io"
REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})
#: Keep the state in process memory on purpose (tests, demos, one worker process).
MEMORY_STATE_URL = "memory://"
SEVEN_DAYS = 7 * 24 * 3600

T = TypeVar("T")


@dataclass(frozen=True)
class PictifySettings:
    """Validated settings; the API key is hidden from ``repr``."""

    api_key: str | None = field(default=None, repr=False)
    base_url: str = DEFAULT_BASE_URL
    timeout: float = 10.0
    state_url: str | None = None
    #: ``None``: no cap on attempts; ``cancel_deadline`` bounds a cancel.
    cancel_max_attempts: int | None = None
    retry_backoff_base: float = 1.0
    #: Short, so that a cancel goes out within about a minute of the API recovering.
    retry_backoff_max: float = 60.0
    link_ttl: int = SEVEN_DAYS
    outcome_ttl: int = SEVEN_DAYS
    revoke_scope: Scope = Scope.WORKFLOW
    revoke_listener: bool = True
    #: Seconds after a cancel was first asked for during which it keeps retrying.
    cancel_deadline: float = 3600.0
    #: The longest wait a server's ``Retry-After`` (or rate-limit reset) may impose.
    retry_after_max: float = 300.0
    #: Seconds between sweeps of unfinished cancels; 0 switches the sweep off.
    sweep_interval: float = 60.0
    #: What every key of the state store starts with: apps sharing one Redis keep apart.
    state_prefix: str = "pictify"
    #: What cancels a batch before it ends by itself (see :mod:`pictify_tasks.triggers`).
    cancel_on: frozenset[Trigger] = DEFAULT_CANCEL_ON
    #: Where Pictify tells a batch's end (``start_batch``'s default ``webhook_url``).
    webhook_url: str | None = None
    #: The secrets a delivery may be signed with (several during a rotation); never shown.
    webhook_secret: tuple[str, ...] = field(default=(), repr=False)
    #: With webhooks on, seconds between the safety-net polls of a waiting batch.
    webhook_poll_interval: float = 300.0
    #: The API key's request budget; ``None``: what the API's headers say.
    rate_limit: Rate | None = None
    #: ``state_url`` names a node of a Redis Cluster (the client follows the slots).
    state_cluster: bool = False

    def __post_init__(self) -> None:
        if self.api_key is not None:
            object.__setattr__(
                self, "api_key", clean_api_key(self.api_key, name="pictify_api_key") or None
            )
        check_url(self.base_url, "pictify_base_url", schemes=("http", "https"))
        if self.state_url is not None and self.state_url != MEMORY_STATE_URL:
            check_url(self.state_url, "pictify_state_url", schemes=tuple(REDIS_SCHEMES))
        for name in _POSITIVE:
            _check_positive(getattr(self, name), f"pictify_{name}")
        if not (finite(self.sweep_interval) and self.sweep_interval >= 0):
            raise ImproperlyConfigured(
                "pictify_sweep_interval must be 0 (to switch it off) or greater, a finite "
                f"number of seconds, got {self.sweep_interval!r}"
            )
        attempts = self.cancel_max_attempts
        if attempts is not None and (
            isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
        ):
            raise ImproperlyConfigured(
                "pictify_cancel_max_attempts must be unset (no cap) or at least 1, "
                f"got {attempts!r}"
            )
        if not _PREFIX.fullmatch(self.state_prefix):
            raise ImproperlyConfigured(
                "pictify_state_prefix must be 1 to 64 letters, digits, '.', '_', ':' or '-', "
                f"got {self.state_prefix!r}"
            )
        if self.rate_limit is not None and not isinstance(self.rate_limit, Rate):
            raise ImproperlyConfigured(
                f"pictify_rate_limit must be a Rate or unset, got {self.rate_limit!r}"
            )
        if self.state_cluster:
            _check_cluster_url(self.state_url)
        if not isinstance(self.revoke_scope, Scope):
            raise ImproperlyConfigured(
                f"pictify_revoke_scope must be a Scope, got {self.revoke_scope!r}"
            )
        if self.webhook_url is not None:
            check_url(self.webhook_url, "pictify_webhook_url", schemes=("http", "https"))
        object.__setattr__(self, "webhook_secret", webhook_secrets(self.webhook_secret))

    @property
    def lease_seconds(self) -> float:
        """How long a cancel's lease lasts: longer than one whole call, with room to spare."""
        return 2 * self.timeout + 5.0

    @property
    def wanted_ttl(self) -> int:
        """How long a wanted-cancel record is kept: the cancel's budget and an hour more."""
        return int(self.cancel_deadline) + 3600

    def describe(self) -> str:
        """One line for a worker's log: what it will use, with no secret in it.

        The key shows its kind and its last 4 characters (enough to tell two
        keys apart), the state store's URL no password.
        """
        state = _safe_url(self.state_url) if self.state_url else "in-process memory"
        return (
            f"base_url={self.base_url} state={state} prefix={self.state_prefix} "
            f"scope={self.revoke_scope.value} "
            f"listener={'on' if self.revoke_listener else 'off'} "
            f"sweep={f'{self.sweep_interval:g}s' if self.sweep_interval else 'off'} "
            f"deadline={self.cancel_deadline:g}s key={key_hint(self.api_key)}"
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
        reader = Reader(app.conf, os.environ if environ is None else environ)
        defaults = cls()
        state_url = reader.get("pictify_state_url", str, None)
        if state_url is None:
            state_url = redis_broker_url(app)
        values = {
            name: reader.get(f"pictify_{name}", convert, getattr(defaults, name))
            for name, convert in _CONVERTERS.items()
        }
        return cls(
            api_key=reader.get("pictify_api_key", str, None) or None,
            base_url=reader.get("pictify_base_url", str, DEFAULT_BASE_URL).rstrip("/"),
            state_url=state_url or None,
            state_prefix=reader.get("pictify_state_prefix", str, defaults.state_prefix),
            webhook_url=reader.get("pictify_webhook_url", str, None) or None,
            **values,
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


#: Every setting read the same way: ``pictify_<name>`` in the config, then the environment.
_PREFIX = re.compile(r"[A-Za-z0-9._:-]{1,64}")

_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "timeout": number,
    "cancel_max_attempts": whole_number,
    "cancel_deadline": number,
    "retry_backoff_base": number,
    "retry_backoff_max": number,
    "retry_after_max": number,
    "sweep_interval": number,
    "link_ttl": whole_number,
    "outcome_ttl": whole_number,
    "revoke_scope": scope,
    "revoke_listener": boolean,
    "cancel_on": parse_cancel_on,
    "webhook_secret": webhook_secrets,
    "webhook_poll_interval": number,
    "rate_limit": rate,
    "state_cluster": boolean,
}
#: The numbers that must be finite and greater than 0.
_POSITIVE = (
    "timeout",
    "cancel_deadline",
    "retry_backoff_base",
    "retry_backoff_max",
    "retry_after_max",
    "link_ttl",
    "outcome_ttl",
    "webhook_poll_interval",
)


def _check_positive(value: float, name: str) -> None:
    if not finite(value):
        raise ImproperlyConfigured(f"{name} must be a finite number, got {value!r}")
    if not value > 0:
        raise ImproperlyConfigured(f"{name} must be greater than 0, got {value!r}")


def check_url(url: str, name: str, *, schemes: tuple[str, ...]) -> None:
    """:class:`ImproperlyConfigured` naming ``name`` unless ``url`` is one of ``schemes``' URLs."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        parts = urlsplit("")
    if parts.scheme not in schemes or not (parts.netloc or parts.scheme == "unix"):
        raise ImproperlyConfigured(
            f"{name} must be a URL starting with one of {sorted(schemes)}://, "
            f"got {_safe_url(url)!r}"
        )


def _check_cluster_url(url: str | None) -> None:
    """A cluster needs a node's ``redis://`` or ``rediss://`` URL, and has only database 0."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("redis", "rediss"):
        raise ImproperlyConfigured(
            "pictify_state_cluster needs pictify_state_url to be a redis:// or rediss:// URL "
            f"of one of the cluster's nodes, got {_safe_url(url or '')!r}"
        )
    if parts.path.strip("/") not in ("", "0"):
        raise ImproperlyConfigured(
            "a Redis Cluster has only database 0: pictify_state_url must not name "
            f"another, got {_safe_url(url or '')!r}"
        )


def _safe_url(url: str) -> str:
    """A URL with any password replaced, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:  # unreadable: whatever it holds is not shown
        return "<a URL that cannot be parsed>"
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url
