"""A worker bootstep that hears every revoke the moment it is broadcast.

Celery's ``task_revoked`` signal fires only when a worker discards or
terminates a task it holds. Revokes travel as broadcasts on the control
exchange, so this step binds a queue of its own to that exchange and reads
``revoke``, ``revoke_by_stamped_headers`` and ``terminate`` commands whoever
they are addressed to, on a connection of its own, in a daemon thread: it
never touches the worker's connection or event loop, so it cannot stall
start-up (the Mingle pitfall) or task delivery.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kombu.entity import Queue
from kombu.messaging import Consumer

from pictify_tasks._guard import logged_not_raised
from pictify_tasks._runtime import runtime_for
from pictify_tasks._steps import ThreadStep
from pictify_tasks.backoff import backoff_delay
from pictify_tasks.revoke.links import Scope, stamp_link_id, stamp_link_ids
from pictify_tasks.triggers import Trigger

__all__ = ["RevokeListener", "RevokeNotice", "parse_control_message"]

logger = logging.getLogger("pictify_tasks.listener")

REVOKE_METHODS = frozenset({"revoke", "revoke_by_stamped_headers", "terminate"})
_FIRST_RECONNECT_DELAY = 0.5
_MAX_RECONNECT_DELAY = 10.0
#: As many handled ids as Celery keeps revoked ones: fewer, and every reconnect's
#: catch-up would hand the oldest of the worker's revoked ids over again.
_SEEN_LIMIT = 50_000  # celery.worker.state.REVOKES_MAX
#: How many of the worker's revoked ids the catch-up hands over at once (one store round trip).
CATCH_UP_CHUNK = 1000


@dataclass(frozen=True)
class RevokeNotice:
    """One revoke broadcast: the task ids or stamped headers it names."""

    task_ids: tuple[str, ...] = ()
    stamped_headers: tuple[tuple[str, str], ...] = ()

    def link_ids(self) -> list[str]:
        """The ids to look batches up under (stamps become their link ids)."""
        return [*self.task_ids, *stamp_link_ids(self.stamped_headers)]


def parse_control_message(body: Any) -> RevokeNotice | None:
    """A control message's revoke, or ``None`` for any other command.

    ``revoke`` and ``terminate`` carry ``task_id`` as a string or a list;
    ``revoke_by_stamped_headers`` carries ``headers`` as a mapping of header
    to value or list of values (or, from the command line, ``["k=v", ...]``).
    """
    method = body.get("method") if isinstance(body, Mapping) else None
    if not isinstance(method, str) or method not in REVOKE_METHODS:
        return None
    arguments = body.get("arguments") or {}
    if not isinstance(arguments, Mapping):
        return None
    if method == "revoke_by_stamped_headers":
        pairs = _stamp_pairs(arguments.get("headers"))
        return RevokeNotice(stamped_headers=pairs) if pairs else None
    ids = arguments.get("task_id")
    if isinstance(ids, str):
        ids = [ids]
    if not isinstance(ids, (list, tuple)):
        return None
    task_ids = tuple(i for i in ids if isinstance(i, str) and i)
    return RevokeNotice(task_ids=task_ids) if task_ids else None


def _stamp_pairs(headers: Any) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    if isinstance(headers, (list, tuple)):
        for item in headers:
            if isinstance(item, str) and "=" in item:
                name, value = item.split("=", 1)
                pairs.append((name, value))
    elif isinstance(headers, Mapping):
        for name, value in headers.items():
            values = value if isinstance(value, (list, tuple, set)) else [value]
            pairs.extend((str(name), str(item)) for item in values)
    return tuple(pairs)


class RevokeHandler(Protocol):
    """What the listener hands a revoke to (the fan-out's ``handle_revoke``)."""

    def __call__(
        self,
        ids: list[str],
        scope: Scope | None = None,
        remember: bool = True,
        reason: str | None = None,
    ) -> object:
        """Handle the revoke of ``ids`` now, or keep it to try again (never lose it silently)."""


class _SeenIds:
    """The task ids this listener has handled lately (bounded, oldest dropped first)."""

    def __init__(self, limit: int = _SEEN_LIMIT) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._limit = limit

    def add(self, ids: Iterable[str]) -> None:
        for task_id in ids:
            self._ids[task_id] = None
            self._ids.move_to_end(task_id)
        while len(self._ids) > self._limit:
            self._ids.popitem(last=False)

    def unseen(self, ids: Iterable[str]) -> list[str]:
        return [task_id for task_id in ids if task_id not in self._ids]


def _worker_revoked() -> list[tuple[str, str]]:
    """(link id, what names it) of each id and stamp this worker process knows as revoked.

    Task ids come from ``state.revoked`` (including those loaded from
    ``--statedb``), stamps from ``state.revoked_stamps``.
    """
    from celery.worker import state

    for _ in range(3):  # the worker's loop may change them while we copy them
        try:
            ids = [(i, i) for i in list(state.revoked) if isinstance(i, str) and i]
            stamps = list(state.revoked_stamps.items())
        except RuntimeError:
            continue
        for name, value in stamps:
            values = value if isinstance(value, (list, tuple, set)) else [value]
            ids.extend((stamp_link_id(name, v), f"stamp {name}={v}") for v in values)
        return ids
    return []


class _ListenerThread(threading.Thread):
    """Consumes the control exchange on its own connection; reconnects on errors.

    Broadcasts are not stored: one sent while this connection was down is
    lost to it. So on every (re)connect it also handles the ids and stamps
    the worker itself knows as revoked and it has not seen, which covers that
    gap and revokes loaded from the worker's ``--statedb``. The worker's state
    does not say how they were revoked (a revoke, an expiry), so each is
    handled in task scope and not remembered: the narrowest reading.
    """

    def __init__(self, app: Any, hostname: str, on_notice: RevokeHandler) -> None:
        super().__init__(name="pictify-revoke-listener", daemon=True)
        self._app = app
        self._hostname = hostname
        self._on_notice = on_notice
        self._seen = _SeenIds()
        self.stopping = threading.Event()

    def run(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            try:
                with self._app.connection_for_read() as connection:
                    connection.ensure_connection(max_retries=1)
                    self._consume(connection)
                    failures = 0
            except Exception as exc:
                if self.stopping.is_set():
                    break
                failures += 1
                delay = backoff_delay(
                    failures, base=_FIRST_RECONNECT_DELAY, cap=_MAX_RECONNECT_DELAY, jitter=0.0
                )
                logger.warning(
                    "revoke listener lost the broker (%r); reconnecting in %.1fs", exc, delay
                )
                self.stopping.wait(delay)

    def _consume(self, connection: Any) -> None:
        mailbox = self._app.control.mailbox(connection)
        # A fresh name per connection: an exclusive queue left by a dead
        # connection would otherwise be locked on RabbitMQ.
        queue = Queue(  # type: ignore[no-untyped-call]
            f"pictify.revokes.{self._hostname}.{uuid.uuid4().hex[:8]}",
            exchange=mailbox.exchange,
            durable=False,
            auto_delete=True,
            exclusive=True,
            expires=mailbox.queue_expires,
            message_ttl=mailbox.queue_ttl,
        )
        consumer = Consumer(  # type: ignore[no-untyped-call]
            connection.channel(),
            [queue],
            no_ack=True,
            accept=mailbox.accept,
            callbacks=[self._on_message],
        )
        with consumer:
            logger.info("revoke listener consuming %s", queue.name)
            self._catch_up()
            while not self.stopping.is_set():
                try:
                    connection.drain_events(timeout=1.0)
                except socket.timeout:
                    connection.heartbeat_check()

    def _catch_up(self) -> None:
        """Hand the unseen ids over in chunks: one store round trip each, not one per id.

        A worker may know tens of thousands of revoked ids (``--statedb``),
        and this runs before the thread reads its next broadcast.
        """
        known = dict(_worker_revoked())
        unseen = self._seen.unseen(known)
        for start in range(0, len(unseen), CATCH_UP_CHUNK):
            chunk = unseen[start : start + CATCH_UP_CHUNK]
            what = known[chunk[0]] + (f" and {len(chunk) - 1} more" if len(chunk) > 1 else "")
            with logged_not_raised(logger, f"catching up on {what}"):
                self._on_notice(chunk, Scope.TASK, False, f"catch-up: {what}")
                self._seen.add(chunk)

    def _on_message(self, body: Any, message: Any) -> None:
        with logged_not_raised(logger, "reading a control message"):
            notice = parse_control_message(body)
            if notice is not None:
                self._handle(notice)

    def _handle(self, notice: RevokeNotice) -> None:
        with logged_not_raised(logger, f"handling {notice}"):
            # Seen once handed over, even if kept for later (the store was
            # down): the fan-out retries it, so a catch-up after a reconnect
            # would only ask the store about it a second time.
            link_ids = notice.link_ids()
            self._on_notice(link_ids)
            self._seen.add(link_ids)


class RevokeListener(ThreadStep):
    """Consumer bootstep; starts after the Tasks step (so after Mingle).

    Like Celery's own ``Control`` step it is only included where it can work:
    when ``pictify_revoke_listener`` is on and the broker has fanout exchanges.
    """

    label = "pictify revoke listener"

    def include_if(self, parent: Any) -> bool:
        settings = runtime_for(parent.app).settings
        if Trigger.REVOKE not in settings.cancel_on:
            return False
        if not settings.revoke_listener:
            logger.info("revoke listener off (pictify_revoke_listener); the signal still works")
            return False
        return bool(parent.conninfo.supports_exchange_type("fanout"))

    def make_thread(self, parent: Any) -> threading.Thread:
        fanout = runtime_for(parent.app).fanout
        return _ListenerThread(parent.app, str(parent.hostname), fanout.handle_revoke)
