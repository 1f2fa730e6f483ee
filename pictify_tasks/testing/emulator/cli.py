"""``python -m pictify_tasks.testing.emulator``: serve the emulator by hand.

Kept apart from ``__main__.py`` so the package can export :func:`main`
without importing ``__main__`` (runpy would warn that it ran a module that
was already imported).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from pictify_tasks.redaction import key_hint
from pictify_tasks.testing.emulator.app import DEFAULT_API_KEY, PictifyEmulator
from pictify_tasks.testing.emulator.webhooks import DEFAULT_WEBHOOK_SECRET


def _key_hint(key: str) -> str:
    """Show the default test key whole; only a hint of a key someone chose."""
    return key if key == DEFAULT_API_KEY else key_hint(key)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pictify_tasks.testing.emulator",
        description="Local emulator of the Pictify batch endpoints.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one")
    parser.add_argument(
        "--api-key", default=DEFAULT_API_KEY, metavar="KEY", help="the key clients must send"
    )
    parser.add_argument(
        "--items-per-second",
        type=float,
        default=2.0,
        metavar="N",
        help="render rate of new batches; 0 freezes them",
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=1000,
        metavar="N",
        help="requests per key and window; 0 means unlimited",
    )
    parser.add_argument(
        "--rate-window", type=float, default=60.0, metavar="SECONDS", help="rate-limit window"
    )
    parser.add_argument(
        "--max-items",
        type=int,
        default=100,
        metavar="N",
        help="the plan's limit on variable sets per batch",
    )
    parser.add_argument(
        "--webhook-secret",
        default=DEFAULT_WEBHOOK_SECRET,
        metavar="SECRET",
        help="what batch.completed deliveries to a batch's webhookUrl are signed with",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="do not log a line per request to stderr"
    )
    return parser


def _log_line(line: str) -> None:
    """One access-log line to stderr; a closed stderr must not cost the client its answer."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the emulator until Ctrl-C or SIGTERM, for demos and manual poking."""
    args = _parser().parse_args(argv)
    emulator = PictifyEmulator(
        args.api_key,
        host=args.host,
        port=args.port,
        rate_limit=args.rate_limit or None,
        rate_window=args.rate_window,
        items_per_second=args.items_per_second,
        max_items=args.max_items,
        access_log=None if args.quiet else _log_line,
        webhook_secret=args.webhook_secret,
    )
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    emulator.start()
    try:
        print(
            f"Pictify emulator listening on {emulator.base_url} "
            f"(api key: {_key_hint(emulator.api_key)}); Ctrl-C to stop",
            flush=True,
        )
        while not done.wait(1.0):
            pass
    finally:
        emulator.stop()
    return 0
