"""A local emulator of the Pictify batch endpoints, spoken to over real HTTP.

The real API cannot be reached from where this project is built and tested, so
the client, the tasks, the demo and their tests talk to this server instead.
It keeps what matters for cancelling batches (bearer auth, per-key rate limits,
idempotency keys, RFC 9457 problem details, batch progress) and adds what the
real API cannot give a test: a request log to assert on and injected faults
(error statuses, delays, dropped connections, lost responses, slow answers).
Batches started with a ``webhookUrl`` get signed ``batch.completed``
deliveries when they end, with faults of their own (late, repeated, lost,
badly signed, stale).

It needs the package installed (importing ``pictify_tasks`` imports Celery);
it shares the package's batch statuses, the body rules of the client
(``render_body``) and the receiver's event name and signing (``webhooks``),
so the two sides cannot drift apart. Run it by hand with
``python -m pictify_tasks.testing.emulator --port 8765``.

Inside: ``app`` (the :class:`PictifyEmulator` tests drive), ``middleware``
(the request path, one class per concern), ``routes`` (the endpoints),
``server`` (HTTP plumbing), ``webhooks`` (the deliveries' sender), and the
state each concern keeps (``batches``, ``faults``, ``ratelimit``,
``idempotency``, ``requestlog``).
"""

from pictify_tasks.statuses import BATCH_STATUSES, RUNNING_STATUSES, TERMINAL_STATUSES
from pictify_tasks.testing.emulator.app import DEFAULT_API_KEY, PictifyEmulator
from pictify_tasks.testing.emulator.cli import main
from pictify_tasks.testing.emulator.faults import Fault
from pictify_tasks.testing.emulator.requestlog import RecordedRequest
from pictify_tasks.testing.emulator.webhooks import DEFAULT_WEBHOOK_SECRET, Delivery, WebhookFault

__all__ = [
    "BATCH_STATUSES",
    "DEFAULT_API_KEY",
    "DEFAULT_WEBHOOK_SECRET",
    "RUNNING_STATUSES",
    "TERMINAL_STATUSES",
    "Delivery",
    "Fault",
    "PictifyEmulator",
    "RecordedRequest",
    "WebhookFault",
    "main",
]
