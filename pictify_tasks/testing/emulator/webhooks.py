"""Webhooks: a signed ``batch.completed`` to a batch's ``webhookUrl`` when it ends.

Progress is a function of time, so nothing notices a batch ending by itself;
one sender thread sleeps until the next batch with a webhook URL is due to
end (or until a batch is made, forced or cancelled), then sends what ended.
Deliveries are signed as Pictify documents, by the receiver's own
:func:`pictify_tasks.webhooks.signature.sign`, the body written compactly as
JavaScript writes it. Faults make deliveries late, repeated, lost, badly
signed or stale. A reset emulator (:meth:`WebhookSender.clear`) starts a new
generation: nothing scheduled before it is sent or recorded after it.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

from pictify_tasks.testing.emulator.batches import BatchStore
from pictify_tasks.testing.emulator.faults import Uses
from pictify_tasks.testing.emulator.messages import encode_json
from pictify_tasks.testing.emulator.requestlog import wait_for_count
from pictify_tasks.webhooks.receiver import EVENT
from pictify_tasks.webhooks.signature import sign

__all__ = ["DEFAULT_WEBHOOK_SECRET", "Delivery", "WebhookFault", "WebhookSender"]

DEFAULT_WEBHOOK_SECRET = "whsec_emulator_0123456789abcdef"


@dataclass
class WebhookFault:
    """What goes wrong with the next ``times`` deliveries (of ``batch_id``, or any).

    ``late``: seconds each is held back. ``copies``: the same delivery (same
    id) is sent that many times. ``lost``: never sent. ``bad_signature``:
    signed with another secret. ``stale``: its timestamp lies that many
    seconds in the past.
    """

    late: float = 0.0
    copies: int = 1
    lost: bool = False
    bad_signature: bool = False
    stale: float = 0.0
    times: int | None = 1
    batch_id: str | None = None
    uses: Uses = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.late < 0 or self.stale < 0:
            raise ValueError("late and stale must be >= 0")
        if self.copies < 1:
            raise ValueError("copies must be >= 1")
        self.uses = Uses(self.times)

    @property
    def hits(self) -> int:
        """Deliveries it was applied to so far."""
        return self.uses.hits

    def takes(self, batch_id: str) -> bool:
        """Whether it applies to this delivery (counted as used if so)."""
        if self.batch_id not in (None, batch_id) or self.uses.spent:
            return False
        self.uses.use()
        return True


@dataclass(frozen=True)
class Delivery:
    """One POST the emulator sent, and what came back (``status`` ``None``: no answer)."""

    batch_id: str
    delivery_id: str
    url: str
    body: bytes
    headers: dict[str, str]
    sent_at: float
    status: int | None
    error: str | None = None
    #: Seconds from sending it to the receiver's answer (or to the failure).
    elapsed: float = 0.0


@dataclass(order=True)
class _Pending:
    due: float
    order: int
    batch_id: str = field(compare=False)
    delivery_id: str = field(compare=False)
    url: str = field(compare=False)
    body: bytes = field(compare=False)
    fault: WebhookFault | None = field(compare=False)
    #: The sender's generation when it was scheduled: a reset makes it stale.
    generation: int = field(compare=False)


class WebhookSender:
    """The thread that tells ended batches' webhook URLs, and what it sent."""

    def __init__(self, batches: BatchStore, secret: str, *, timeout: float = 5.0) -> None:
        if not secret:
            raise ValueError("the webhook secret must not be empty")
        self.secret = secret
        self._batches = batches
        self._timeout = timeout
        self._lock = threading.Condition()
        self._faults: list[WebhookFault] = []
        self._pending: list[_Pending] = []
        self._sent: list[Delivery] = []
        self._order = itertools.count()
        self._generation = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Loopback receivers: never through a proxy from the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pictify-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        self._batches.changed.set()
        thread.join()

    def inject(self, fault: WebhookFault) -> WebhookFault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def deliveries(self, batch_id: str | None = None) -> list[Delivery]:
        with self._lock:
            return [d for d in self._sent if batch_id in (None, d.batch_id)]

    def wait_for(self, count: int, batch_id: str | None, timeout: float) -> list[Delivery]:
        """Block until ``count`` deliveries (of ``batch_id``) were answered or failed."""
        found = wait_for_count(self._lock, lambda: self.deliveries(batch_id), count, timeout)
        if len(found) < count:
            raise TimeoutError(f"{len(found)} of {count} webhook deliveries in {timeout}s")
        return found

    def clear(self) -> None:
        """Forget faults, pending and sent deliveries; one in flight is not recorded."""
        with self._lock:
            self._generation += 1
            self._faults.clear()
            self._pending.clear()
            self._sent.clear()

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        changed = self._batches.changed
        while not self._stop.is_set():
            changed.clear()
            with self._lock:
                generation = self._generation
            ended, next_end = self._batches.take_ended(time.monotonic())
            for url, data in ended:
                self._schedule(url, data, generation)
            self._send_due()
            with self._lock:
                first = self._pending[0].due if self._pending else None
            due = [t for t in (next_end, first) if t is not None]
            changed.wait(max(0.001, min(due) - time.monotonic()) if due else None)

    def _schedule(self, url: str, data: dict[str, Any], generation: int) -> None:
        batch_id = str(data["batchId"])
        body = encode_json({"event": EVENT, "data": data})
        delivery_id = "dlv_" + uuid.uuid4().hex
        with self._lock:
            if generation != self._generation:
                return  # the batch ended before a reset
            fault = next((f for f in self._faults if f.takes(batch_id)), None)
            if fault is not None and fault.lost:
                return
            due = time.monotonic() + (fault.late if fault else 0.0)
            for _ in range(fault.copies if fault else 1):
                order = next(self._order)
                args = (batch_id, delivery_id, url, body, fault, generation)
                heapq.heappush(self._pending, _Pending(due, order, *args))

    def _send_due(self) -> None:
        while True:
            with self._lock:
                if not self._pending or self._pending[0].due > time.monotonic():
                    return
                pending = heapq.heappop(self._pending)
            delivery = self._send(pending)
            with self._lock:
                if pending.generation == self._generation:  # else: reset while in flight
                    self._sent.append(delivery)
                    self._lock.notify_all()

    def _send(self, pending: _Pending) -> Delivery:
        """POST one delivery; any failure is recorded on it, never raised.

        Raising would end the sender's thread, and with it every later delivery.
        """
        fault = pending.fault
        stamp = int(time.time() - (fault.stale if fault else 0.0))
        key = self.secret + ("-not-it" if fault and fault.bad_signature else "")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "PictifyEmulator/1.0",
            "X-Pictify-Event": EVENT,
            "X-Pictify-Delivery-Id": pending.delivery_id,
            "X-Pictify-Signature": sign(pending.body, key, stamp),
        }
        request = urllib.request.Request(pending.url, pending.body, headers, method="POST")
        sent_at, began = time.time(), time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            with self._opener.open(request, timeout=self._timeout) as answer:
                status = int(answer.status)
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except Exception as exc:  # a bad answer (http.client.BadStatusLine...), a refusal
            error = f"{type(exc).__name__}: {exc}"
        args = (pending.batch_id, pending.delivery_id, pending.url, pending.body, headers)
        return Delivery(*args, sent_at, status, error, time.monotonic() - began)
