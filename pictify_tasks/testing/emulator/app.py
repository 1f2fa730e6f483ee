"""The emulator as tests use it: start and stop it, shape its state, inspect its log.

The request path itself is the middleware list built in
:meth:`PictifyEmulator._request_path`; this module only wires the pieces.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from pictify_tasks.testing.emulator.batches import BatchStore
from pictify_tasks.testing.emulator.faults import Fault, FaultList, JsonBody
from pictify_tasks.testing.emulator.idempotency import IdempotencyCache
from pictify_tasks.testing.emulator.middleware import (
    AccessLog,
    AnswerErrors,
    ApiKeys,
    Authenticate,
    Handler,
    Idempotency,
    InjectFaults,
    Middleware,
    RateLimit,
    RecordRequest,
    compose,
)
from pictify_tasks.testing.emulator.ratelimit import RateLimiter
from pictify_tasks.testing.emulator.requestlog import RecordedRequest, RequestLog
from pictify_tasks.testing.emulator.routes import Router, cancelled_batch_id
from pictify_tasks.testing.emulator.server import Server
from pictify_tasks.testing.emulator.webhooks import (
    DEFAULT_WEBHOOK_SECRET,
    Delivery,
    WebhookFault,
    WebhookSender,
)

DEFAULT_API_KEY = "pk_test_emulator"


class PictifyEmulator:
    """An in-process Pictify API (batch endpoints) on a loopback port.

    ``with PictifyEmulator() as emu:`` starts it; point a client at
    ``emu.base_url`` with ``emu.api_key``. Batches progress with wall time at
    ``items_per_second`` (0 freezes them), so tests control timing by rate and
    :meth:`set_batch_status` rather than by sleeping. ``max_items`` is the
    plan's limit on variable sets per batch; ``access_log``, if given, is
    called with one line per request (method, path, status, milliseconds).
    A batch started with a ``webhookUrl`` gets a ``batch.completed`` there
    when it ends, signed with ``webhook_secret``.

    Two counts of cancels, on purpose: ``batch(id)["cancelRequests"]`` (JSON,
    as the API would name it) counts the cancels the API *executed*, while
    :meth:`cancel_requests` (Python) lists every POST that *reached* the
    cancel endpoint, including idempotent replays and those stopped by a
    fault, auth or the rate limit. Assert "cancelled once" on the first, "what
    was on the wire" on the second.
    """

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit: int | None = 1000,
        rate_window: float = 60.0,
        items_per_second: float = 2.0,
        max_items: int = 100,
        access_log: Callable[[str], None] | None = None,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        self._api_key = api_key
        self._host = host
        self._port = port
        self._keys = ApiKeys([api_key])
        self._store = BatchStore(items_per_second)
        self._limiter = RateLimiter(rate_limit, rate_window)
        self._idempotency = IdempotencyCache()
        self._faults = FaultList()
        self._log = RequestLog()
        self._stopping = threading.Event()
        self._webhooks = WebhookSender(self._store, webhook_secret)
        self._app = self._request_path(Router(self._store, max_items), access_log)
        self._lifecycle_lock = threading.Lock()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._bound_port: int | None = None

    def _request_path(self, router: Handler, access_log: Callable[[str], None] | None) -> Handler:
        """Every request meets these in order; faults come before auth, as a proxy's would."""
        layers: list[Middleware] = [] if access_log is None else [AccessLog(access_log)]
        layers += [
            RecordRequest(self._log),
            AnswerErrors(),
            InjectFaults(self._faults, self._stopping),
            RateLimit(self._limiter, self._keys),
            Authenticate(self._keys),
            Idempotency(self._idempotency),
        ]
        return compose(layers, router)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> PictifyEmulator:
        """Bind and serve in a daemon thread; a restart reuses the first port."""
        with self._lifecycle_lock:
            if self._server is not None:
                return self
            port = self._bound_port if self._bound_port is not None else self._port
            server = Server((self._host, port), self._app, self._stopping)
            self._bound_port = int(server.server_address[1])
            self._stopping.clear()
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"pictify-emulator:{self._bound_port}",
                daemon=True,
            )
            thread.start()
            self._server, self._thread = server, thread
            self._webhooks.start()
            return self

    def stop(self) -> None:
        """Stop serving, close the socket and open connections; safe to call twice."""
        with self._lifecycle_lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            if server is None:
                return
            self._webhooks.stop()
            self._stopping.set()  # wakes requests in an injected delay or trickle
            server.shutdown()
            server.server_close()
            server.close_connections()
            if thread is not None:
                thread.join()

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self) -> PictifyEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://host:port`` without a trailing slash (needs :meth:`start`)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("the emulator has not been started")
        return self._bound_port

    # ------------------------------------------------------------------ settings

    @property
    def api_key(self) -> str:
        return self._api_key

    def add_api_key(self, key: str) -> None:
        """Accept another key; each key gets its own rate-limit window."""
        if not key:
            raise ValueError("key must not be empty")
        self._keys.add(key)

    @property
    def items_per_second(self) -> float:
        """Default render rate for batches created from now on."""
        return self._store.items_per_second

    @items_per_second.setter
    def items_per_second(self, value: float) -> None:
        self._store.items_per_second = value

    @property
    def cancel_lag(self) -> float:
        """Seconds a cancel takes to stop a running batch (the "cancel lags" fault mode).

        0 (the default): a cancel stops it at once. Above 0, a cancel's 200
        still says ``processing`` (``Cancellation requested``) and a GET that
        long after says ``cancelled``.
        """
        return self._store.cancel_lag

    @cancel_lag.setter
    def cancel_lag(self, seconds: float) -> None:
        if not (seconds >= 0 and seconds != float("inf")):
            raise ValueError(f"cancel_lag must be a finite number of seconds >= 0, got {seconds!r}")
        self._store.cancel_lag = float(seconds)

    def set_rate_limit(self, limit: int | None, window: float | None = None) -> None:
        """Change the limit (``None``: unlimited) and start fresh windows."""
        self._limiter.configure(limit, self._limiter.window if window is None else window)

    def reset(self) -> None:
        """Forget batches, requests, faults, idempotency keys and rate windows.

        Accepted API keys and settings stay.
        """
        self._store.clear()
        self._log.clear()
        self._faults.clear()
        self._idempotency.clear()
        self._limiter.clear()
        self._webhooks.clear()

    # ------------------------------------------------------------------ batches

    def create_batch(
        self,
        total_items: int = 10,
        status: str = "processing",
        items_per_second: float | None = None,
        template_uid: str = "tpl_emulator",
        webhook_url: str | None = None,
    ) -> str:
        """Make a batch without HTTP and return its id.

        Running statuses progress at ``items_per_second`` (default: the
        emulator's; 0: never); terminal statuses stay as given. With
        ``webhook_url`` its end is told there (at once if it is terminal).
        """
        return self._store.create(
            template_uid, total_items, status, "png", items_per_second, webhook_url
        )

    def set_batch_status(self, batch_id: str, status: str) -> None:
        """Force a status; ``pending``/``processing`` resume progress from now."""
        self._store.force(batch_id, status)

    def batch(self, batch_id: str) -> dict[str, Any]:
        """Results-endpoint fields plus ``cancelRequests`` and ``effectiveCancels``.

        Both count cancel requests the API executed for this batch; idempotent
        replays and requests stopped by faults, auth or rate limits are not
        executed (see :meth:`cancel_requests` for what was on the wire).
        Raises ``KeyError`` for an unknown batch.
        """
        return self._store.snapshot(batch_id)

    def batches(self) -> list[str]:
        """Batch ids in creation order."""
        return self._store.ids()

    # ------------------------------------------------------------------ request log

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the request log, oldest first."""
        return self._log.snapshot()

    def requests_matching(
        self, method: str | None = None, path_contains: str | None = None
    ) -> list[RecordedRequest]:
        return self._log.matching(method, path_contains)

    def cancel_requests(self, batch_id: str | None = None) -> list[RecordedRequest]:
        """POSTs that reached the cancel endpoint (whatever became of them)."""
        found = []
        for record in self._log.snapshot():
            named = cancelled_batch_id(record.method, record.path)
            if named is not None and batch_id in (None, named):
                found.append(record)
        return found

    def clear_requests(self) -> None:
        self._log.clear()

    def wait_for_requests(
        self,
        count: int,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        timeout: float = 10.0,
    ) -> list[RecordedRequest]:
        """Block until ``count`` matching requests have arrived; ``TimeoutError`` if not.

        Requests are logged on arrival, so one still held by a delay counts
        (with ``status`` still ``None``).
        """
        return self._log.wait_for(count, method, path_contains, timeout)

    # ------------------------------------------------------------------ faults

    def inject(
        self,
        *,
        status: int | None = None,
        body: JsonBody = None,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        drop: bool = False,
        drop_after_handling: bool = False,
        trickle: float = 0.0,
        times: int | None = 1,
        every: int = 1,
        method: str | None = None,
        path_contains: str | None = None,
    ) -> Fault:
        """Make the next matching requests misbehave, before auth and rate limits.

        ``status``: answer it with ``body`` (mapping/list/number → JSON,
        str/bytes → raw, ``None`` → problem details) and ``headers``, leaving
        state alone. ``drop``: close the connection without answering, leaving
        state alone. ``drop_after_handling``: handle normally, then close
        without answering. ``delay``: sleep first (alone: then handle
        normally). ``trickle``: send the answer (head and body) in small
        pieces spread over that many seconds, so every read gets a byte soon
        but the whole answer is slow. Applies to ``times`` matching requests
        (``None``: for ever), and with ``every=n`` only to every n-th of them
        (``every=10``: a tenth of the requests).
        """
        fault = Fault(
            status=status,
            body=body,
            headers=headers,
            delay=delay,
            drop=drop,
            drop_after_handling=drop_after_handling,
            trickle=trickle,
            times=times,
            every=every,
            method=method,
            path_contains=path_contains,
        )
        self._faults.add(fault)
        return fault

    def clear_faults(self) -> None:
        self._faults.clear()

    # ------------------------------------------------------------------ webhooks

    @property
    def webhook_secret(self) -> str:
        """The secret deliveries are signed with (a receiver's ``pictify_webhook_secret``)."""
        return self._webhooks.secret

    def inject_webhook(
        self,
        *,
        late: float = 0.0,
        copies: int = 1,
        lost: bool = False,
        bad_signature: bool = False,
        stale: float = 0.0,
        times: int | None = 1,
        batch_id: str | None = None,
    ) -> WebhookFault:
        """Spoil the next ``times`` deliveries (of ``batch_id``, or any; ``None``: for ever).

        ``late``: held back that many seconds. ``copies``: the same delivery
        (one delivery id) sent that many times. ``lost``: never sent.
        ``bad_signature``: signed with another secret. ``stale``: the
        timestamp that many seconds in the past.
        """
        fault = WebhookFault(late, copies, lost, bad_signature, stale, times, batch_id)
        return self._webhooks.inject(fault)

    def webhook_deliveries(self, batch_id: str | None = None) -> list[Delivery]:
        """The deliveries sent so far (of ``batch_id``), with the receiver's answers."""
        return self._webhooks.deliveries(batch_id)

    def wait_for_webhook_deliveries(
        self, count: int, batch_id: str | None = None, *, timeout: float = 10.0
    ) -> list[Delivery]:
        """Block until ``count`` deliveries (of ``batch_id``) were sent; ``TimeoutError`` if not."""
        return self._webhooks.wait_for(count, batch_id, timeout)
