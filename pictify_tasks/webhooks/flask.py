"""The receiver as a Flask view (Flask is imported when the view is made, not before).

    from pictify_tasks.webhooks.flask import webhook_view

    flask_app.add_url_rule(
        "/pictify/webhook", view_func=webhook_view(celery_app), methods=["POST"]
    )

The view reads the raw body, which the signature covers.
"""

from __future__ import annotations

from typing import Any, Callable

from pictify_tasks.webhooks.receiver import WebhookReceiver

__all__ = ["webhook_view"]


def webhook_view(celery_app: Any) -> Callable[[], Any]:
    """A Flask view function receiving Pictify's deliveries for ``celery_app``."""
    import flask

    receiver = WebhookReceiver(celery_app)

    def pictify_webhook() -> Any:
        request = flask.request
        headers = {name.lower(): value for name, value in request.headers.items()}
        answer = receiver.handle(request.method, request.get_data(cache=False), headers)
        return flask.Response(answer.body, status=answer.status, headers=list(answer.headers))

    return pictify_webhook
