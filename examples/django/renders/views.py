"""Start a render, cancel a render (its whole workflow), cancel one batch."""

from __future__ import annotations

import json

from celery.result import AsyncResult
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST
from mysite.celery import app

from pictify_tasks import InvalidBatchIdError, cancel_batch, revoke_workflow
from renders.tasks import render


@require_POST
def start_render(request: HttpRequest) -> JsonResponse:
    rows = json.loads(request.body)["rows"]
    return JsonResponse({"workflow_id": render(rows).id}, status=202)


@require_POST
def cancel_render(request: HttpRequest, workflow_id: str) -> JsonResponse:
    """Revoke the workflow; its batches are cancelled (the ids are returned)."""
    batches = revoke_workflow(AsyncResult(workflow_id, app=app), app=app)
    return JsonResponse({"cancelling": batches}, status=202)


@require_POST
def cancel_batch_view(request: HttpRequest, batch_id: str) -> JsonResponse:
    try:
        task = cancel_batch.delay(batch_id, reason="cancelled from the web")
    except InvalidBatchIdError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"task_id": task.id}, status=202)
