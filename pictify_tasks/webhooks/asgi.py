"""The receiver as an ASGI app (Starlette, FastAPI, Django's ASGI, any ASGI server).

    from pictify_tasks.webhooks.asgi import asgi_app

    app.mount("/pictify/webhook", asgi_app(celery_app))  # Starlette / FastAPI

The store round trip and the publish block, so they run in a thread, off the
event loop. No dependency: ASGI is a calling convention.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, MutableMapping
from typing import Any, Callable

from pictify_tasks.webhooks.receiver import MAX_BODY, WebhookReceiver

__all__ = ["asgi_app"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


def asgi_app(celery_app: Any) -> App:
    """An ASGI app receiving Pictify's deliveries for ``celery_app``."""
    receiver = WebhookReceiver(celery_app)

    async def pictify_webhook(
        scope: MutableMapping[str, Any], receive: Receive, send: Send
    ) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method = str(scope.get("method", "GET")).upper()
        body = await _body(receive) if method == "POST" else b""
        headers = {
            bytes(name).decode("latin-1").lower(): bytes(value).decode("latin-1")
            for name, value in scope.get("headers", ())
        }
        # ``handle`` refuses a body over the limit (413) before anything else.
        answer = await asyncio.to_thread(receiver.handle, method, body, headers)
        raw = [(name.lower().encode(), value.encode()) for name, value in answer.headers]
        raw.append((b"content-length", str(len(answer.body)).encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": raw})
        await send({"type": "http.response.body", "body": answer.body})

    return pictify_webhook


async def _body(receive: Receive) -> bytes:
    """The request body, read no further than one byte past the limit."""
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_BODY:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = bytes(message.get("body", b""))
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop: say so when the server asks."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
