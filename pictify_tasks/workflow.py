"""Link batches to the workflows that started them, and cancel them on revoke.

Every way of noticing a revoke (the ``task_revoked`` signal, the control
listener, :func:`revoke_workflow`, the ``pictify.cancel_workflow`` task) ends
in :func:`cancel_ids`: one pipelined round trip to the store, then one
``pictify.cancel_batch`` published per running batch. The ledger makes the
cancels exactly one per batch, however many paths fire.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from celery import current_app, current_task
from celery.result import AsyncResult, GroupResult, ResultBase

from pictify_tasks._runtime import runtime_for
from pictify_tasks.ids import validate_id
from pictify_tasks.store.base import BatchLinks

__all__ = [
    "LINEAGE_HEADER",
    "cancel_ids",
    "cancel_workflow",
    "links_from_request",
    "result_ids",
    "revoke_workflow",
    "stamp_link_id",
    "track_batch",
]

logger = logging.getLogger("pictify_tasks.workflow")

#: Message header carrying a task's ancestors (oldest first), set on publish.
LINEAGE_HEADER = "pictify_lineage"
MAX_LINEAGE = 32
_MAX_SIGNATURE_DEPTH = 8


def stamp_link_id(name: str, value: Any) -> str:
    """The link id of one stamped header value (hashed: values are free text)."""
    encoded = json.dumps([str(name), str(value)], separators=(",", ":"))
    digest = hashlib.sha256(encoded.encode()).hexdigest()[:32]
    return f"stamp:{digest}"


def stamp_link_ids(stamps: Mapping[str, Any]) -> set[str]:
    """Link ids for every value of every stamped header (a value may be a list)."""
    ids: set[str] = set()
    for name, value in stamps.items():
        values = value if isinstance(value, (list, tuple, set)) else [value]
        ids.update(stamp_link_id(name, item) for item in values)
    return ids


def _signature_ids(signature: Any, depth: int = 0) -> set[str]:
    """Pre-assigned task and group ids inside a serialized signature (chain, chord, group)."""
    ids: set[str] = set()
    if depth > _MAX_SIGNATURE_DEPTH:
        return ids
    if isinstance(signature, (list, tuple)):
        for item in signature:
            ids |= _signature_ids(item, depth + 1)
        return ids
    if not isinstance(signature, Mapping):
        return ids
    options = signature.get("options") or {}
    if isinstance(options, Mapping):
        for name in ("task_id", "group_id"):
            value = options.get(name)
            if isinstance(value, str) and value:
                ids.add(value)
        for name in ("chord", "link", "chain"):
            ids |= _signature_ids(options.get(name), depth + 1)
    kwargs = signature.get("kwargs") or {}
    if isinstance(kwargs, Mapping):
        for name in ("tasks", "header", "body"):
            ids |= _signature_ids(kwargs.get(name), depth + 1)
    return ids


def _request_value(request: Any, name: str) -> Any:
    value = getattr(request, name, None)
    if value is None and hasattr(request, "get"):
        value = request.get(name)
    return value


def links_from_request(request: Any) -> BatchLinks:
    """The ids under which a batch started by the task of ``request`` is found.

    Scope ``workflow``: the task's own id, root, parent, group, lineage, the
    pre-assigned ids of the rest of its chain, its callbacks and chord body,
    and its stamps. Scope ``task``: its own id, its ancestors and its stamps.
    """
    own = str(request.id)
    ancestors = {
        value for value in (request.root_id, request.parent_id) if isinstance(value, str) and value
    }
    lineage = _request_value(request, LINEAGE_HEADER)
    if isinstance(lineage, (list, tuple)):
        ancestors.update(item for item in lineage if isinstance(item, str) and item)
    stamps = _request_value(request, "stamps")
    stamp_ids = stamp_link_ids(stamps) if isinstance(stamps, Mapping) else set()
    related: set[str] = set()
    group = _request_value(request, "group")
    if isinstance(group, str) and group:
        related.add(group)
    for name in ("chain", "callbacks", "chord"):
        related |= _signature_ids(_request_value(request, name))
    task_ids = {own, *ancestors, *stamp_ids}
    return BatchLinks(workflow=frozenset(task_ids | related), task=frozenset(task_ids))


def track_batch(batch_id: str, *, workflow_id: str | None = None, app: Any = None) -> BatchLinks:
    """Link ``batch_id`` to the running task's workflow, so a revoke cancels it.

    Inside a task the links come from the task's request; outside one,
    ``workflow_id=`` names the id whose revoke must cancel the batch. If any
    linked id was revoked already, the batch is cancelled at once.
    """
    batch_id = validate_id(batch_id)
    if workflow_id is not None:
        workflow_id = validate_id(workflow_id, kind="workflow id")
    extra = frozenset({workflow_id} if workflow_id else ())
    task = current_task._get_current_object() if current_task else None
    request = getattr(task, "request", None)
    if task is not None and request is not None and request.id:
        links = links_from_request(request)
        links = BatchLinks(links.workflow | extra, links.task | extra)
        app = app or task.app
    elif workflow_id is None:
        raise RuntimeError(
            "track_batch() was called outside a running Celery task: "
            "pass workflow_id= to say which id's revoke must cancel the batch"
        )
    else:
        links = BatchLinks(extra, extra)
    app = app or current_app._get_current_object()
    runtime = runtime_for(app)
    revoked = runtime.store.link_batch(batch_id, links, runtime.settings.link_ttl)
    if revoked:
        logger.info(
            "batch %s was linked after %s had been revoked: cancelling it now",
            batch_id,
            ", ".join(revoked),
        )
        runtime.enqueue_cancels([batch_id])
    return links


def cancel_ids(app: Any, ids: Iterable[str], *, scope: str | None = None) -> list[str]:
    """Cancel the running batches linked under any of ``ids``; return their ids.

    The ids are remembered as revoked for ``pictify_link_ttl``, so a batch
    linked under one of them later is cancelled as soon as it is linked.
    """
    runtime = runtime_for(app)
    settings = runtime.settings
    unique = list(dict.fromkeys(i for i in ids if isinstance(i, str) and i))
    if not unique:
        return []
    batches = runtime.store.revoke_ids(unique, scope or settings.revoke_scope, settings.link_ttl)
    if batches:
        runtime.enqueue_cancels(batches)
    return batches


def cancel_workflow(workflow_id_or_task_id: str, *, app: Any = None) -> list[str]:
    """Cancel every running batch linked to a workflow or task id; return their ids.

    The same as the ``pictify.cancel_workflow`` task, run in this process.
    """
    target = validate_id(workflow_id_or_task_id, kind="workflow or task id")
    return cancel_ids(app or current_app._get_current_object(), [target])


def result_ids(result: ResultBase) -> list[str]:
    """Every task and group id in a result tree: parents, group members, children."""
    seen: dict[str, None] = {}
    pending: list[Any] = [result]
    while pending:
        node = pending.pop()
        if node is None:
            continue
        node_id = getattr(node, "id", None)
        if not isinstance(node_id, str) or node_id in seen:
            continue
        seen[node_id] = None
        pending.append(getattr(node, "parent", None))
        if isinstance(node, GroupResult):
            pending.extend(node.results or ())
        elif isinstance(node, AsyncResult):
            cache = getattr(node, "_cache", None)
            if isinstance(cache, Mapping):
                pending.extend(cache.get("children") or ())
    return list(seen)


def revoke_workflow(
    result: ResultBase, *, terminate: bool = False, signal: str | None = None, app: Any = None
) -> list[str]:
    """Revoke every task in a result tree and cancel its batches from this process.

    ``result`` is what the caller holds: a chain's tail, a ``GroupResult``, a
    chord's result. Returns the ids of the batches whose cancel was enqueued.
    """
    app = app or getattr(result, "app", None) or current_app._get_current_object()
    ids = result_ids(result)
    if not ids:
        return []
    options: dict[str, Any] = {"terminate": terminate}
    if signal is not None:
        options["signal"] = signal
    app.control.revoke(ids, **options)
    return cancel_ids(app, ids)
