"""Which ids a batch is found under, and which ids a revoke names. Pure: no I/O.

A revoke may name a task, its root, its group, a chain's tail, a chord, a
stamp; a batch is linked under every id that may be named for it, per
:class:`Scope`. The same request, result tree or stamp always gives the same
ids, whichever path (signal, listener, helper) asks.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from celery.result import AsyncResult, GroupResult, ResultBase

__all__ = [
    "LINEAGE_HEADER",
    "MAX_LINEAGE",
    "BatchLinks",
    "Scope",
    "lineage_for_child",
    "links_from_request",
    "request_group",
    "result_ids",
    "stamp_link_id",
    "stamp_link_ids",
]

#: Message header carrying a task's ancestors (oldest first), set on publish.
LINEAGE_HEADER = "pictify_lineage"
MAX_LINEAGE = 32
_MAX_SIGNATURE_DEPTH = 8


class Scope(str, enum.Enum):
    """How far a revoke reaches (``pictify_revoke_scope``).

    ``WORKFLOW``: revoking any linked id of a workflow cancels all its batches.
    ``TASK``: only the batches of the revoked task, its descendants and its stamps.
    """

    WORKFLOW = "workflow"
    TASK = "task"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class BatchLinks:
    """The ids under which one batch is found, per revoke scope.

    ``root_id`` and ``started_by`` say where the batch came from (its
    workflow's root, the task that started it), so that a cancel caused by a
    revoke can be published inside that workflow.
    """

    workflow: frozenset[str]
    task: frozenset[str]
    root_id: str | None = None
    started_by: str | None = None

    def pairs(self) -> list[tuple[Scope, str]]:
        """Every (scope, id) the batch is linked under, in a stable order."""
        return [(Scope.WORKFLOW, i) for i in sorted(self.workflow)] + [
            (Scope.TASK, i) for i in sorted(self.task)
        ]

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> BatchLinks:
        """The links of :meth:`pairs` (as a record stores them) back as a value."""
        pairs = list(pairs)
        workflow = frozenset(i for scope, i in pairs if scope == Scope.WORKFLOW.value)
        task = frozenset(i for scope, i in pairs if scope == Scope.TASK.value)
        return cls(workflow, task)

    def plus(self, ids: Iterable[str]) -> BatchLinks:
        """These links and ``ids`` in both scopes."""
        extra = frozenset(ids)
        return dataclasses.replace(self, workflow=self.workflow | extra, task=self.task | extra)


def stamp_link_id(name: str, value: Any) -> str:
    """The link id of one stamped header value (hashed: values are free text)."""
    encoded = json.dumps([str(name), str(value)], separators=(",", ":"))
    digest = hashlib.sha256(encoded.encode()).hexdigest()[:32]
    return f"stamp:{digest}"


def stamp_link_ids(stamps: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> list[str]:
    """Link ids for every value of every stamped header, in order, without repeats.

    ``stamps`` maps a header to a value or a list of values, or is a sequence
    of ``(header, value)`` pairs (how a revoke broadcast names them).
    """
    items = stamps.items() if isinstance(stamps, Mapping) else stamps
    ids: dict[str, None] = {}
    for name, value in items:
        values = value if isinstance(value, (list, tuple, set)) else [value]
        for item in values:
            ids[stamp_link_id(name, item)] = None
    return list(ids)


def request_group(request: Any) -> str | None:
    """The group a task belongs to (``group``, or ``group_id`` on older requests)."""
    for name in ("group", "group_id"):
        value = _request_value(request, name)
        if isinstance(value, str) and value:
            return value
    return None


def links_from_request(request: Any) -> BatchLinks:
    """The ids under which a batch started by the task of ``request`` is found.

    Scope ``workflow``: the task's own id, root, parent, group, lineage, the
    pre-assigned ids of the rest of its chain, its callbacks and chord body,
    and its stamps. Scope ``task``: its own id, its ancestors and its stamps.
    """
    own = str(request.id)
    ancestors = {
        value
        for value in (_request_value(request, "root_id"), _request_value(request, "parent_id"))
        if isinstance(value, str) and value
    }
    lineage = _request_value(request, LINEAGE_HEADER)
    if isinstance(lineage, (list, tuple)):
        ancestors.update(item for item in lineage if isinstance(item, str) and item)
    stamps = _request_value(request, "stamps")
    stamp_ids = set(stamp_link_ids(stamps)) if isinstance(stamps, Mapping) else set()
    related: set[str] = set()
    group = request_group(request)
    if group:
        related.add(group)
    for name in ("chain", "callbacks", "chord"):
        related |= _signature_ids(_request_value(request, name))
    task_ids = {own, *ancestors, *stamp_ids}
    root = _request_value(request, "root_id")
    return BatchLinks(
        workflow=frozenset(task_ids | related),
        task=frozenset(task_ids),
        root_id=root if isinstance(root, str) and root else own,
        started_by=own,
    )


def lineage_for_child(request: Any, child_id: Any) -> list[str]:
    """The lineage header of a message published by the task of ``request``.

    A child gets its parent's lineage plus the parent; a retry or replacement
    (the same id) keeps its own ancestry.
    """
    lineage = [i for i in (_request_value(request, LINEAGE_HEADER) or ()) if isinstance(i, str)]
    if child_id != request.id:
        lineage.append(request.id)
    return lineage[-MAX_LINEAGE:]


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
    """A field of a Celery request, a Context, a namespace or a mapping."""
    value = getattr(request, name, None)
    if value is None and hasattr(request, "get"):
        value = request.get(name)
    return value
