"""The receiver as a Flask view (Flask is imported when the view is made, not before).

    from pictify_tasks.webhooks.flask import webhook_view

    flask_app.add_url_rule(
        "/pictify/webhook", view_func=webhook_view(celery_app), methods=["POST"]
    )

The view reads the raw body, which the signature covers, and no more of it
than a delivery can be: a larger body is refused (413) after one byte past
the limit, whatever its length says (Flask's ``get_data`` would read it all).
"""

from __future__ import annotations

from typing import Any, Callable

from pictify_tasks.webhooks.receiver import WebhookReceiver, read_bounded

__all__ = ["webhook_view"]


def webhook_view(celery_app: Any) -> Callable[[], Any]:
    """A Flask view function receiving Pictify's deliveries for ``celery_app``."""
    import flask

    receiver = WebhookReceiver(celery_app)

    def pictify_webhook() -> Any:
        request = flask.request
        headers = {name.lower(): value for name, value in request.headers.items()}
        answer = receiver.handle(request.method, read_bounded(request.stream), headers)
        return flask.Response(answer.body, status=answer.status, headers=list(answer.headers))

    return pictify_webhook
