"""The receiver as a Django view (Django is imported when the view is made, not before).

    # urls.py
    from pictify_tasks.webhooks.django import webhook_view
    from proj.celery import app

    urlpatterns = [path("pictify/webhook", webhook_view(app))]

The view is exempt from CSRF (Pictify signs its deliveries instead) and reads
the raw body, which the signature covers, and no more of it than a delivery
can be: a larger body is refused (413) after one byte past the limit (Django's
``request.body`` would read up to ``DATA_UPLOAD_MAX_MEMORY_SIZE``, 2.5 MB by
default).
"""

from __future__ import annotations

from typing import Any, Callable

from pictify_tasks.webhooks.receiver import WebhookReceiver, read_bounded

__all__ = ["webhook_view"]


def webhook_view(celery_app: Any) -> Callable[[Any], Any]:
    """A Django view receiving Pictify's deliveries for ``celery_app``."""
    from django.http import HttpResponse
    from django.views.decorators.csrf import csrf_exempt

    receiver = WebhookReceiver(celery_app)

    def pictify_webhook(request: Any) -> Any:
        headers = {name.lower(): value for name, value in request.headers.items()}
        # The request as a file: read from its stream (or from the body, if
        # a middleware read it already).
        answer = receiver.handle(request.method or "", read_bounded(request), headers)
        response = HttpResponse(answer.body, status=answer.status)
        for name, value in answer.headers:
            response[name] = value
        return response

    view: Callable[[Any], Any] = csrf_exempt(pictify_webhook)
    return view
