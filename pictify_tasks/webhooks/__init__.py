"""Pictify's webhooks: a receiver to mount in the web app you already run.

``wsgi_app(celery_app)`` is a plain WSGI app; :mod:`~pictify_tasks.webhooks.django`,
:mod:`~pictify_tasks.webhooks.flask` and :mod:`~pictify_tasks.webhooks.asgi`
wrap the same receiver (they import their framework only when used). Each
reads the signing secret(s), the state store and the broker from the Celery
app's settings, as its workers do. See docs/webhooks.md.
"""

from __future__ import annotations

from typing import Any

from pictify_tasks.webhooks.receiver import Answer, WebhookReceiver
from pictify_tasks.webhooks.signature import SignatureError, sign, verify

__all__ = ["Answer", "SignatureError", "WebhookReceiver", "sign", "verify", "wsgi_app"]


def wsgi_app(celery_app: Any) -> WebhookReceiver:
    """A WSGI app that receives Pictify's deliveries for ``celery_app``."""
    return WebhookReceiver(celery_app)
