"""What ``celery pictify`` commands share: exit codes, error mapping, and the views they print.

Kept apart from :mod:`pictify_tasks.cli` so that the commands read as what
they do, and so that the mapping from an error to an exit code is one table.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable, TypeVar

import click
from kombu.exceptions import OperationalError

from pictify_tasks.client import PictifyClient
from pictify_tasks.errors import (
    AuthenticationError,
    BatchNotFoundError,
    ImproperlyConfigured,
    InvalidBatchIdError,
    PictifyError,
)
from pictify_tasks.ratelimit import Priority, RateLimiter
from pictify_tasks.retry import NoTokenInTimeError
from pictify_tasks.revoke.links import Scope
from pictify_tasks.settings import PictifySettings, _safe_url
from pictify_tasks.store import MemoryStore, StateStore, StateStoreError
from pictify_tasks.store.base import CancelState

__all__ = ["CliError", "ExitCode", "Report", "cli_errors"]

T = TypeVar("T")


class ExitCode(enum.IntEnum):
    """What ``celery pictify`` exits with; one code per kind of problem."""

    OK = 0
    #: A cancel failed or timed out, or a check found a problem not listed below.
    FAILED = 1
    #: Click's own: an unknown option, a missing argument.
    USAGE = 2
    BAD_ID = 3
    #: No API key is set, or the API refused it.
    NO_KEY = 4
    STORE = 5
    BROKER = 6
    #: The API cannot be reached or answers with errors.
    API = 7
    #: A setting is invalid, or ``install(app)`` was not called.
    CONFIG = 8


class CliError(click.ClickException):
    """One line on stderr (``Error: ...``) and the exit code of its kind."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.exit_code = int(code)  # type: ignore[misc]  # click reads it per instance


def classify(error: BaseException) -> tuple[ExitCode, str] | None:
    """The exit code and message for an error a command may meet, or ``None``."""
    if isinstance(error, InvalidBatchIdError):
        return ExitCode.BAD_ID, str(error)
    if isinstance(error, ImproperlyConfigured):
        return ExitCode.CONFIG, str(error)
    if isinstance(error, AuthenticationError):
        return ExitCode.NO_KEY, f"the API refused the key: {error}"
    if isinstance(error, StateStoreError):
        return ExitCode.STORE, f"the state store is unreachable: {error}"
    if isinstance(error, PictifyError):
        return ExitCode.API, f"the API: {type(error).__name__}: {error}"
    if isinstance(error, (OperationalError, ConnectionError)):
        return ExitCode.BROKER, f"the broker is unreachable: {error}"
    return None


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn the errors :func:`classify` knows into a :class:`CliError`."""
    try:
        yield
    except Exception as exc:
        known = classify(exc)
        if known is None:
            raise
        raise CliError(*known) from None


class Report:
    """A command's findings, one line each; exits with the first problem's code."""

    def __init__(self) -> None:
        self.code = ExitCode.OK

    def fail(self, label: str, code: ExitCode, message: str) -> None:
        click.echo(f"FAIL  {label}: {message}", err=True)
        if self.code == ExitCode.OK:
            self.code = code

    def run(self, label: str, view: Callable[[], T]) -> T | None:
        """``view()``, or ``None`` with a FAIL line when it raises a known error.

        A view returning a ``str`` is echoed as an ``ok`` line (what ``check`` prints).
        """
        try:
            value = view()
        except Exception as exc:
            known = classify(exc)
            if known is None:
                raise
            self.fail(label, *known)
            return None
        if isinstance(value, str):
            click.echo(f"ok    {label}: {value}")
        return value

    def check(self, label: str, ok: bool, detail: str, code: ExitCode, problem: str) -> bool:
        if ok:
            click.echo(f"ok    {label}: {detail}")
        else:
            self.fail(label, code, problem)
        return ok

    def exit(self) -> None:
        """Exit with the first problem's code, if there was one."""
        if self.code != ExitCode.OK:
            raise click.exceptions.Exit(int(self.code))


# -- views: what the commands print, as plain data --------------------------------------


#: The longest a command waits for a request token from the workers' limiter.
TOKEN_WAIT = 30.0


def take_token(
    limiter: RateLimiter,
    what: str,
    *,
    within: float = TOKEN_WAIT,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Take a request token from the limiter the workers share, as a poll takes one.

    An operator's look spends the key's budget like any request, at the
    lowest priority: never before a waiting cancel, never into a 429. A
    command may wait (it is no worker); past ``within`` seconds it gives up
    with :class:`~pictify_tasks.retry.NoTokenInTimeError`. A state store that
    does not answer does not stop one look (the command reports the store on
    a line of its own).
    """
    deadline = clock() + within
    while True:
        try:
            wait = limiter.acquire(Priority.POLL)
        except StateStoreError:
            return
        if wait <= 0:
            return
        left = deadline - clock()
        if wait > left:
            raise NoTokenInTimeError(
                f"{what}: the API key's rate limit has no request for this command "
                f"for {wait:.1f}s (the workers' cancels go first); try again later",
                retry_after=wait,
            )
        sleep(wait)


def api_view(
    client: PictifyClient, batch_id: str, limiter: RateLimiter, *, check: bool = False
) -> Any:
    """A batch as the API sees it; with ``check``, whether the API accepted the key.

    Asking for a batch needs a valid key: a 404 means the key was accepted.
    The request takes a token from ``limiter`` first (:func:`take_token`).
    """
    take_token(limiter, "the key check" if check else f"status of batch {batch_id}")
    try:
        info = client.get_batch(batch_id)
    except BatchNotFoundError:
        return f"{client.base_url} accepted the key" if check else {"found": False}
    if check:
        return f"{client.base_url} accepted the key"
    return {"found": True, **info.as_dict()}


def ledger_view(state: CancelState) -> dict[str, Any]:
    """The ledger's record of a batch's cancel, as JSON-ready data."""
    return {
        "outcome": None if state.outcome is None else state.outcome.to_json(),
        "failure": None if state.failure is None else state.failure.to_json(),
    }


def store_view(store: StateStore, settings: PictifySettings) -> str:
    """One read from the state store: it answers, or :class:`StateStoreError`."""
    store.linked("pictify-check", Scope.WORKFLOW)
    if isinstance(store, MemoryStore):
        return (
            "process memory: duplicates merge within one process only "
            "(set pictify_state_url to a Redis URL)"
        )
    return f"{_safe_url(settings.state_url or '')} answers"


def broker_view(app: Any) -> str:
    """Connect to the broker once (a few seconds at most)."""
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=5)
        return f"{connection.as_uri()} answers"
