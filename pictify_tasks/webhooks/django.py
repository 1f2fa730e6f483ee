"""The receiver as a Django view (Django is imported when the view is made, not before).

    # urls.py
    from pictify_tasks.webhooks.django import webhook_view
    from proj.celery import app

    urlpatterns = [path("pictify/webhook", webhook_view(app))]

The view is exempt from CSRF (Pictify signs its deliveries instead) and reads
the raw body, which the signature covers.
"""

from __future__ import annotations

from typing import Any, Callable

from pictify_tasks.webhooks.receiver import WebhookReceiver

__all__ = ["webhook_view"]


def webhook_view(celery_app: Any) -> Callable[[Any], Any]:
    """A Django view receiving Pictify's deliveries for ``celery_app``."""
    from django.http import HttpResponse
    from django.views.decorators.csrf import csrf_exempt

    receiver = WebhookReceiver(celery_app)

    def pictify_webhook(request: Any) -> Any:
        headers = {name.lower(): value for name, value in request.headers.items()}
        answer = receiver.handle(request.method or "", request.body, headers)
        response = HttpResponse(answer.body, status=answer.status)
        for name, value in answer.headers:
            response[name] = value
        return response

    view: Callable[[Any], Any] = csrf_exempt(pictify_webhook)
    return view
