"""The three batch endpoints, reached once every middleware has let a request through."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from pictify_tasks.render_body import FieldError, render_body_errors
from pictify_tasks.testing.emulator.batches import BatchStore
from pictify_tasks.testing.emulator.messages import Request, Response, json_response, problem

ROUTE_RENDER = re.compile(r"(?:/v1)?/templates/([^/]+)/batch-render/?")
ROUTE_RESULTS = re.compile(r"(?:/v1)?/templates/batch/([^/]+)/results/?")
ROUTE_CANCEL = re.compile(r"(?:/v1)?/templates/batch/([^/]+)/cancel/?")

#: An endpoint: the id its path names (template or batch) and the request.
Endpoint = Callable[[str, Request], Response]


def cancelled_batch_id(method: str, target: str) -> str | None:
    """The batch a request to the cancel endpoint names, or ``None`` for other requests."""
    match = ROUTE_CANCEL.fullmatch(target.split("?", 1)[0])
    return match.group(1) if method == "POST" and match else None


class Router:
    """Picks the endpoint by path, answers 405 for the wrong method and 404 for no match.

    ``max_items`` is the plan limit on variable sets per batch: a rule of the
    API's, not of the body's shape, so it lives here and not in ``render_body``.
    """

    def __init__(self, store: BatchStore, max_items: int = 100) -> None:
        if max_items < 1:
            raise ValueError("max_items must be >= 1")
        self._store = store
        self._max_items = max_items
        self._routes: list[tuple[re.Pattern[str], str, Endpoint]] = [
            (ROUTE_RENDER, "POST", self._render),
            (ROUTE_RESULTS, "GET", self._results),
            (ROUTE_CANCEL, "POST", self._cancel),
        ]

    def __call__(self, request: Request) -> Response:
        path = request.path
        for pattern, allowed, endpoint in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if request.method != allowed:
                response = problem(
                    405, f"{request.method} is not allowed here; use {allowed}", path
                )
                response.headers["Allow"] = allowed
                return response
            return endpoint(match.group(1), request)
        return problem(404, f"No such endpoint: {request.method} {path}", path)

    def _render(self, template_uid: str, request: Request) -> Response:
        try:
            payload: Any = json.loads(request.body.decode("utf-8")) if request.body else None
        except ValueError:
            error = FieldError("body", "Request body must be valid JSON", "invalid_json")
            return problem(
                400, "The request body is not valid JSON", request.path, errors=[error.as_dict()]
            )
        errors = self._plan_errors(payload) + render_body_errors(payload)
        if errors:
            return problem(
                400,
                "The request body is invalid",
                request.path,
                errors=[error.as_dict() for error in errors],
            )
        total = len(payload["variableSets"])
        image_format = str(payload.get("format") or "png")
        webhook_url = payload.get("webhookUrl")
        batch_id = self._store.create(
            template_uid, total, "pending", image_format, webhook_url=webhook_url
        )
        return json_response(
            202,
            {
                "batchId": batch_id,
                "status": "pending",
                "totalItems": total,
                "message": f"Batch render started for {total} items",
            },
        )

    def _plan_errors(self, payload: Any) -> list[FieldError]:
        sets = payload.get("variableSets") if isinstance(payload, dict) else None
        if isinstance(sets, list) and len(sets) > self._max_items:
            message = f"variableSets allows at most {self._max_items} items"
            return [FieldError("variableSets", message, "too_big")]
        return []

    def _results(self, batch_id: str, request: Request) -> Response:
        data = self._store.public(batch_id)
        if data is None:
            return problem(404, f"Batch {batch_id} not found", request.path)
        return json_response(200, data)

    def _cancel(self, batch_id: str, request: Request) -> Response:
        result = self._store.cancel(batch_id)
        if result is None:
            return problem(404, f"Batch {batch_id} not found", request.path)
        outcome, status = result
        if outcome == "lagging":  # asked to stop, still running: the 200 says so
            return json_response(
                200, {"batchId": batch_id, "status": status, "message": "Cancellation requested"}
            )
        if outcome == "finished":
            return problem(
                409,
                f"Batch {batch_id} already finished with status {status}; it cannot be cancelled",
                request.path,
                batchStatus=status,
            )
        message = "Batch cancelled" if outcome == "cancelled" else "Batch was already cancelled"
        return json_response(200, {"batchId": batch_id, "status": "cancelled", "message": message})
