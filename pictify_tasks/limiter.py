"""One rate limit for every worker using an API key, spent on cancels first.

Pictify counts requests per API key in fixed windows and says so on every
answer (``X-RateLimit-Limit``, ``-Remaining``, ``-Reset``). Celery's
``rate_limit`` is per worker process, so N workers send N times the budget
and meet 429s. Here every request of every process asks one limiter, kept in
the state store under a hash of the key (never the key), in one round trip.

**Two counters, the stricter wins.** ``pictify_rate_limit`` (``"300/m"``) is
counted in windows on the clock (every whole minute for ``/m``). The API's
own window is counted too, as soon as an answer has told its ``Limit``; its
end is the answer's ``Reset``, so the counter follows the API's windows
rather than guessing them, and ``Limit - Remaining`` raises the count when
someone else spends the key. A token needs room in both. A token taken in
the last moments of an API window (``guard``) also counts in the next one,
in case its request arrives after the API's window turned. A 429 holds
*every* process off until the reset (or ``Retry-After``), not only the one
that got it.

**Cancels first.** Each priority may use only part of a window: polls 80 %,
starts 90 %, cancels all of it, so a revoke in a window that polls have
spent still finds a fifth of it. And while requests of a higher priority are
waiting, a lower priority gets nothing: a waiting cancel books a place in its
queue (below), and a start or poll asking before that queue has drained
waits behind it. A poll never slows a cancel; polls slow down instead.

**Queues instead of a stampede.** A request told to wait does not come back
at the window's end with everyone else: it books the next place of its
priority's queue, which advances by ``window / share`` per booking (the
theoretical arrival time of GCRA), rounded down to the start of the window
that place falls in. So a window's share is booked for its start, the next
requests for the next window, and a backlog of 1,000 cancels on a 50/s key
comes back 50 at the start of each second, each asking once more. A booked
place is only a hint: whoever asks when there is room gets the token.

**Loans when there is room.** Asking the store for every cancel costs a
round trip per cancel, as much as the ledger's. So a cancel that finds the
window at most half spent, no 429 and nobody queued takes a block of
:data:`LOAN_SIZE` tokens at once, counted at once; its process spends the
rest without asking, for at most :data:`LOAN_MS` and never past the
window's end (or its last moments, ``guard``). The price: a borrower does
not hear another process's 429 from the store; it hears it from its own
next answer (the limit is the key's, so that answer is a 429 too), which
ends its loan at once: one request more per borrowing thread, within
:data:`LOAN_MS`. And a loan's unspent tokens are lost to that window (they
were taken while it was at most half spent). A nearly spent window seen by
the process itself ends its loan too.

The algorithm is written twice, in Python here (:class:`LimiterState`, used
in process memory) and in Lua (:mod:`pictify_tasks.store.redis_limiter`, one
script call per request); the same tests run on both.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from pictify_tasks.ratelimit import Priority, Rate, RateLimitInfo

__all__ = [
    "DEFAULT_API_WINDOW_MS",
    "LOAN_MS",
    "LOAN_SIZE",
    "RESERVED_SHARES",
    "LimiterConfig",
    "LimiterState",
    "MemoryLimiter",
    "Observation",
    "StoreLimiter",
    "bucket_for",
]

logger = logging.getLogger("pictify_tasks.limiter")

#: The share of every window a priority leaves to those before it (cancel, start, poll).
RESERVED_SHARES = (0.0, 0.1, 0.2)
#: The API's window until an answer shows how long it is (Pictify counts per minute).
DEFAULT_API_WINDOW_MS = 60_000.0
#: A token taken this close to the API window's end also counts in the next window.
MAX_GUARD_MS = 100.0
#: Added to every wait, so a request comes back just after its window turned.
SLACK = 0.01
#: A 429 without Retry-After or Reset holds everyone off this long.
DEFAULT_HOLD_MS = 1_000.0
#: No wait is longer than a day, whatever a header said.
MAX_WAIT_MS = 86_400_000.0
#: Tokens a cancel takes at once when the window has ample room (see "Loans").
LOAN_SIZE = 8
#: The longest a loan lasts (ms), which bounds how late its process hears a 429.
LOAN_MS = 100.0
#: A loan shorter than this (ms, the window is about to turn) is not worth making.
MIN_LOAN_MS = 10.0


def bucket_for(api_key: str) -> str:
    """The limiter's name for an API key: a hash, so the key never reaches the store."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


def cap(limit: int, priority: int) -> int:
    """How many of a window's ``limit`` tokens ``priority`` may take (at least one)."""
    return max(1, limit - math.floor(limit * RESERVED_SHARES[priority]))


@dataclass(frozen=True)
class LimiterConfig:
    """The configured rate (``limit`` 0: none), the cap on a 429's hold (ms), the clock.

    ``clock`` (Unix seconds) replaces the store's own clock, for tests; with
    ``None`` Redis uses its server's clock, one for every worker.
    """

    limit: int = 0
    window_ms: float = 1000.0
    hold_max_ms: float = 300_000.0
    clock: Callable[[], float] | None = None

    @classmethod
    def from_rate(
        cls, rate: Rate | None, hold_max: float, clock: Callable[[], float] | None = None
    ) -> LimiterConfig:
        """From ``pictify_rate_limit`` and ``pictify_retry_after_max`` (seconds)."""
        if rate is None:
            return cls(hold_max_ms=hold_max * 1000, clock=clock)
        return cls(rate.count, rate.per * 1000, hold_max * 1000, clock)


@dataclass(frozen=True)
class Observation:
    """What one answer said about the budget (times in ms on the Unix clock)."""

    status: int
    limit: int | None
    remaining: int | None
    reset_ms: float | None
    retry_after_ms: float | None

    @classmethod
    def from_info(cls, status: int, info: RateLimitInfo) -> Observation:
        return cls(
            status=status,
            limit=info.limit,
            remaining=info.remaining,
            reset_ms=None if info.reset is None else info.reset * 1000.0,
            retry_after_ms=None if info.retry_after is None else info.retry_after * 1000.0,
        )


@dataclass
class LimiterState:
    """One key's budget; every time is in ms on the Unix clock.

    The Lua script keeps the same fields in one Redis hash and does the same
    steps in the same order: read :meth:`hear` and :meth:`take` side by side
    with ``redis_limiter.ACQUIRE``.
    """

    hold: float = 0.0  # nobody sends before this (a 429)
    own_end: float = 0.0  # the configured rate's window
    own_used: int = 0
    api_limit: int = 0  # the API's X-RateLimit-Limit; 0 until an answer told it
    api_end: float = 0.0  # the API window's end: its Reset, or a guess until an answer
    api_used: int = 0
    api_carry: int = 0  # taken in the window's last moments: counted in the next one too
    api_window: float = 0.0  # the API window's length, as far as answers showed it
    queue: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # per priority

    def hear(self, seen: Observation, now: float, config: LimiterConfig) -> None:
        """Correct the API's counter with what an answer said."""
        if seen.limit is not None and seen.limit >= 1:
            self.api_limit = seen.limit
        reset = seen.reset_ms
        if self.api_limit and reset is not None and reset > now:
            # Whole seconds until the reset: never more than the window, and
            # exactly the window for an answer early in it; learnt afresh in
            # each window, so a window that became shorter is noticed.
            seen_window = math.ceil((reset - now) / 1000) * 1000.0
            if reset == self.api_end:
                seen_window = max(seen_window, self.api_window)
            if now >= self.api_end:  # the counted window is over: this answer's is new
                self.api_used, self.api_carry = self.api_carry, 0
            self.api_window = seen_window
            self.api_end = reset
            if seen.remaining is not None:
                self.api_used = max(self.api_used, self.api_limit - seen.remaining)
        if seen.status == 429:
            wait = max(
                seen.retry_after_ms or 0.0,
                reset - now if reset is not None and reset > now else 0.0,
            )
            hold = now + min(wait or DEFAULT_HOLD_MS, config.hold_max_ms)
            self.hold = max(self.hold, hold)

    def take(self, priority: int, now: float, config: LimiterConfig, want: int = 1) -> float:
        """Take a token (0.0) or book a place and return the ms until it.

        With ``want`` > 1, take that many tokens as a loan when the window has
        ample room: then the answer is negative, minus the loan's ms.
        """
        if config.limit and now >= self.own_end:
            self.own_end = (math.floor(now / config.window_ms) + 1) * config.window_ms
            self.own_used = 0
        api_window = self.api_window or DEFAULT_API_WINDOW_MS
        if now >= self.api_end:  # counted before the limit is known, for when it is
            self.api_end = now + api_window  # a guess, until the first answer's Reset
            self.api_used, self.api_carry = self.api_carry, 0
        own_room = not config.limit or self.own_used < cap(config.limit, priority)
        api_room = not self.api_limit or self.api_used < cap(self.api_limit, priority)
        ready = max([self.hold, *self.queue[:priority]])  # a 429, and higher queues
        if own_room and api_room and ready <= now:
            loan = self._loan(priority, now, config, want, api_window)
            if loan > 0:
                if config.limit:
                    self.own_used += want
                self.api_used += want
                return -loan
            if config.limit:
                self.own_used += 1
            self.api_used += 1
            if now >= self.api_end - min(MAX_GUARD_MS, api_window / 20):
                self.api_carry += 1
            return 0.0
        if not own_room:
            ready = max(ready, self.own_end)
        if not api_room:
            ready = max(ready, self.api_end)
        start = max(ready, self.queue[priority], now)
        # The stricter counter sets the pace and the windows the places fall in.
        spacing, boundary, window = 0.0, start, 0.0
        if config.limit:
            spacing = config.window_ms / cap(config.limit, priority)
            boundary, window = self.own_end, config.window_ms
        if self.api_limit and api_window / cap(self.api_limit, priority) > spacing:
            spacing = api_window / cap(self.api_limit, priority)
            boundary, window = self.api_end, api_window
        self.queue[priority] = start + spacing
        slot = start
        if window and start >= boundary:
            slot = boundary + math.floor((start - boundary) / window + 1e-9) * window
        return min(max(slot, ready) - now, MAX_WAIT_MS)

    def _loan(
        self, priority: int, now: float, config: LimiterConfig, want: int, api_window: float
    ) -> float:
        """How long a loan of ``want`` tokens may last (ms), or 0: no room to lend."""
        if want <= 1 or self.queue[priority] > now:
            return 0.0
        until = now + LOAN_MS
        if config.limit:
            if self.own_used + want > cap(config.limit, priority) // 2:
                return 0.0
            until = min(until, self.own_end)
        if self.api_limit:
            if self.api_used + want > cap(self.api_limit, priority) // 2:
                return 0.0
            until = min(until, self.api_end - min(MAX_GUARD_MS, api_window / 20))
        return until - now if until - now >= MIN_LOAN_MS else 0.0


class StoreLimiter(abc.ABC):
    """A limiter whose state lives in a store; one store call per :meth:`acquire`, or per loan.

    An answer's headers are kept and sent with this process's next store call
    (the same round trip); a 429 is sent at once, so that every process holds
    off. A store that fails raises its transient ``StateStoreError`` from
    :meth:`acquire`, which the task retries within its deadline: a request
    is never sent without the limiter's say. Cancels spend a loan's tokens
    (see "Loans" above) before asking the store again.
    """

    def __init__(self, config: LimiterConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._heard: Observation | None = None
        self._told = False  # this process's first answer is sent at once, like a 429
        self._loan = 0  # tokens of a loan left to this process
        self._loan_until = 0.0  # on :meth:`_local_now`'s clock
        self._loans_ended = 0  # times the API said to stop lending: a loan asked before is void

    def acquire(self, priority: Priority) -> float:
        want = LOAN_SIZE if priority == Priority.CANCEL else 1
        with self._lock:
            if want > 1 and self._loan > 0 and self._local_now() < self._loan_until:
                self._loan -= 1
                return 0.0
            heard, self._heard = self._heard, None
            ended = self._loans_ended
        asked = self._local_now()
        wait_ms = self._run(int(priority), heard, self._now_ms(), want)
        if wait_ms < 0:  # a loan: this token and want - 1 more, for -wait_ms from the ask
            with self._lock:
                # A 429 heard meanwhile (maybe by the store only after it lent) ends it.
                if self._loans_ended == ended:
                    self._loan, self._loan_until = want - 1, asked - wait_ms / 1000.0
            return 0.0
        return 0.0 if wait_ms == 0 else wait_ms / 1000.0 + SLACK

    def observe(self, status: int, info: RateLimitInfo) -> None:
        heard = Observation.from_info(status, info)
        with self._lock:
            if status == 429 or (info.remaining is not None and info.remaining < 2 * LOAN_SIZE):
                self._loan = 0  # the API says the window is (nearly) spent: ask again
                self._loans_ended += 1
            share_now = status == 429 or not self._told
            self._told = True
            if not share_now:
                self._heard = heard
                return
        try:
            self._run(None, heard, self._now_ms())
        except Exception as error:
            logger.warning("rate-limit headers not shared with the other workers: %s", error)

    def _local_now(self) -> float:
        """This process's clock for loans (seconds): the test clock, or the monotonic one."""
        clock = self.config.clock
        return clock() if clock is not None else time.monotonic()

    def _now_ms(self) -> float | None:
        """The caller's clock in ms, or ``None`` for the store's own (one clock for all)."""
        clock = self.config.clock
        return None if clock is None else clock() * 1000.0

    @abc.abstractmethod
    def _run(
        self, priority: int | None, heard: Observation | None, now_ms: float | None, want: int = 1
    ) -> float:
        """Apply ``heard``, then take a token for ``priority`` (if any): the ms to wait.

        ``want`` and a negative answer are :meth:`LimiterState.take`'s loan.
        """


class MemoryLimiter(StoreLimiter):
    """The limiter in process memory, for ``memory://`` state (one process only)."""

    def __init__(self, state: LimiterState, lock: threading.Lock, config: LimiterConfig) -> None:
        super().__init__(config)
        self._state = state
        self._state_lock = lock

    def _run(
        self, priority: int | None, heard: Observation | None, now_ms: float | None, want: int = 1
    ) -> float:
        now = now_ms if now_ms is not None else time.time() * 1000.0
        with self._state_lock:
            if heard is not None:
                self._state.hear(heard, now, self.config)
            if priority is None:
                return 0.0
            return self._state.take(priority, now, self.config, want)
