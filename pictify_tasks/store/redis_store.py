"""The store on Redis: one Lua script per ledger step, pipelines for the rest.

The keys and what the parts share are in :mod:`pictify_tasks.store.redis_keys`;
the upkeep (wanted cancels, the sweep, deadlines) in
:mod:`pictify_tasks.store.redis_upkeep`. It works on Redis Cluster too
(``redis.cluster.RedisCluster``): there a pipeline is split by node and sent
to each in parallel, and a script cannot be queued in one: it goes first, on
its own, then the pipeline (two round trips where one Redis needs one).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any, Callable

import redis
from redis.cluster import RedisCluster

from pictify_tasks.limiter import LimiterConfig, StoreLimiter
from pictify_tasks.revoke.links import BatchLinks, Scope
from pictify_tasks.store import redis_scripts
from pictify_tasks.store.base import (
    START_PREFIX,
    CancelBegin,
    CancelState,
    RevokedWork,
    StateStore,
    link_value,
    revoked_work,
)
from pictify_tasks.store.records import (
    FailureRecord,
    OutcomeRecord,
    StartMade,
    StartRequest,
)
from pictify_tasks.store.redis_ends import RedisBatchEnds
from pictify_tasks.store.redis_keys import (
    RedisClient,
    load,
    pair,
    progress,
    progress_value,
    text,
    transient,
)
from pictify_tasks.store.redis_limiter import RedisLimiter
from pictify_tasks.store.redis_upkeep import RedisUpkeep

__all__ = ["RedisStore"]


class RedisStore(RedisUpkeep, RedisBatchEnds, StateStore):
    """The state in Redis; safe across worker processes and machines."""

    def __init__(self, client: RedisClient, *, prefix: str = "pictify") -> None:
        super().__init__(client, prefix=prefix)
        self._cluster = isinstance(client, RedisCluster)
        self._begin = client.register_script(redis_scripts.BEGIN)
        self._finish = client.register_script(redis_scripts.FINISH)
        self._fail = client.register_script(redis_scripts.FAIL)
        self._keep_lease = client.register_script(redis_scripts.KEEP_LEASE)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "pictify", cluster: bool = False) -> RedisStore:
        """The store on the Redis at ``url``; ``cluster``: a node of a Redis Cluster."""
        options: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
        if cluster:
            return cls(RedisCluster.from_url(url, **options), prefix=prefix)
        return cls(redis.Redis.from_url(url, health_check_interval=30, **options), prefix=prefix)

    # -- the ledger ----------------------------------------------------------------------

    @transient
    def begin_cancel(
        self, batch_id: str, owner: str, lease_seconds: float, asked_at: float
    ) -> CancelBegin:
        parts = ("outcome", "lease", "attempts", "links", "failed", "progress", "fresh")
        keys = [self.batch_key(batch_id, part) for part in parts]
        lease_ms = max(1, int(lease_seconds * 1000))
        reply = self._begin(keys=keys, args=[owner, lease_ms, repr(asked_at)])
        kind = text(reply[0])
        if kind == "done":
            return CancelBegin(outcome=OutcomeRecord.from_json(load(reply[1])))
        if kind == "failed":
            return CancelBegin(failure=FailureRecord.from_json(load(reply[1])))
        if kind == "busy":
            return CancelBegin(lease_remaining=max(0, int(text(reply[1]))) / 1000.0)
        links = tuple(pair(member) for member in reply[2])
        return CancelBegin(
            acquired=True,
            attempt=int(text(reply[1])),
            links=links,
            progress=progress(text(reply[3])),
            fresh_keys=bool(reply[4]),
        )

    @transient
    def finish_cancel(
        self,
        owner: str,
        outcome: OutcomeRecord,
        ttl: int,
        links: Sequence[tuple[str, str]],
        workflow_id: str | None = None,
    ) -> OutcomeRecord:
        batch_id = outcome.batch_id
        parts = ("outcome", "lease", "attempts", "failure", "wanted", "failed", "fresh")

        def then(pipe: Any) -> None:
            self._mark_finished(pipe, batch_id, links, ttl)
            pipe.zrem(self._wanted_index(), batch_id)
            if workflow_id and outcome.items_not_rendered:
                # Per batch, first one wins (like the outcome): a replay counts once.
                saved = self.link_key(workflow_id, "saved")
                pipe.hsetnx(saved, batch_id, outcome.items_not_rendered)
                pipe.expire(saved, int(ttl))

        recorded = self._script_then(
            self._finish,
            [self.batch_key(batch_id, part) for part in parts],
            [owner, json.dumps(outcome.to_json()), int(ttl)],
            then,
        )
        return OutcomeRecord.from_json(load(recorded))

    @transient
    def fail_cancel(self, owner: str, failure: FailureRecord, ttl: int, keep_lease: float) -> None:
        parts = ("lease", "attempts", "failure", "wanted", "failed", "fresh")
        keys = [self.batch_key(failure.batch_id, part) for part in parts]
        keep_ms = max(0, int(keep_lease * 1000))
        record = json.dumps(failure.to_json())
        args: list[str | int] = [
            owner,
            record,
            int(ttl),
            keep_ms,
            int(failure.final),
            repr(failure.at),
            int(failure.unconfirmed),
        ]
        if not failure.final:
            self._fail(keys=keys, args=args)
            return
        self._script_then(
            self._fail, keys, args, lambda pipe: pipe.zrem(self._wanted_index(), failure.batch_id)
        )

    @transient
    def keep_lease(self, batch_id: str, owner: str, seconds: float) -> bool:
        ms = max(1, int(seconds * 1000))
        return bool(self._keep_lease(keys=[self.batch_key(batch_id, "lease")], args=[owner, ms]))

    @transient
    def cancel_state(self, batch_id: str) -> CancelState:
        outcome, failure = self._redis.mget(
            [self.batch_key(batch_id, "outcome"), self.batch_key(batch_id, "failure")]
        )
        return CancelState(
            None if outcome is None else OutcomeRecord.from_json(load(outcome)),
            None if failure is None else FailureRecord.from_json(load(failure)),
        )

    # -- links and starts ----------------------------------------------------------------

    @transient
    def link_batch(
        self, batch_id: str, links: BatchLinks, ttl: int, *, deadline: float | None = None
    ) -> list[str]:
        pipe = self._redis.pipeline(transaction=False)
        if deadline is not None:
            self._queue_deadline(pipe, batch_id, deadline, ttl)
        return self._link(batch_id, links, ttl, replace=None, pipe=pipe)

    @transient
    def finish_batch(self, batch_id: str, ttl: int) -> None:
        members = self._redis.smembers(self.batch_key(batch_id, "links"))
        pipe = self._redis.pipeline(transaction=False)
        self._mark_finished(pipe, batch_id, [pair(m) for m in members], ttl)
        pipe.execute()

    @transient
    def revoke_ids(self, ids: list[str], scope: Scope, ttl: int | None) -> RevokedWork:
        pipe = self._redis.pipeline(transaction=False)
        for link_id in ids:
            if ttl:
                pipe.set(self.link_key(link_id, f"revoked:{scope}"), 1, ex=int(ttl))
            pipe.hgetall(self.link_key(link_id, scope))
        entries: dict[str, str] = {}
        for reply in pipe.execute():
            if isinstance(reply, dict):
                for key, value in reply.items():
                    entries.setdefault(text(key), text(value))
        return revoked_work(entries)

    @transient
    def revoked_among(self, links: BatchLinks) -> list[str]:
        pairs = links.pairs()
        if not pairs:
            return []
        pipe = self._redis.pipeline(transaction=False)
        self._ask_revoked(pipe, pairs)
        return _revoked_ids(pairs, pipe.execute())

    @transient
    def begin_start(self, start: StartRequest, links: BatchLinks, ttl: int) -> list[str]:
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(self._start_key(start.start_id), json.dumps(start.to_json()), ex=int(ttl))
        return self._link(START_PREFIX + start.start_id, links, ttl, replace=None, pipe=pipe)

    @transient
    def finish_start(self, made: StartMade, links: BatchLinks, ttl: int) -> list[str]:
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(self._start_key(made.start_id, "batch"), made.batch_id, ex=int(ttl))
        if made.total_items is not None:
            started = progress_value(0, made.total_items)
            pipe.set(self.batch_key(made.batch_id, "progress"), started, ex=int(ttl))
        if made.deadline is not None:
            self._queue_deadline(pipe, made.batch_id, made.deadline, ttl)
        if made.webhook is not None:
            pipe.set(self.batch_key(made.batch_id, "webhook"), int(made.webhook), ex=int(ttl))
        start = START_PREFIX + made.start_id
        return self._link(made.batch_id, links, ttl, replace=start, pipe=pipe)

    @transient
    def start_request(self, start_id: str) -> StartRequest | None:
        start, batch_id = self._redis.mget(
            [self._start_key(start_id), self._start_key(start_id, "batch")]
        )
        if start is None:
            return None
        recorded = StartRequest.from_json(load(start))
        if batch_id is None:
            return recorded
        return dataclasses.replace(recorded, batch_id=text(batch_id))

    def rate_limiter(self, bucket: str, config: LimiterConfig) -> StoreLimiter:
        key = f"{self._prefix}:{{rl:{bucket}}}:limiter"
        return RedisLimiter(self._redis, key, config)

    def close(self) -> None:
        self._redis.close()

    # -- plumbing ------------------------------------------------------------------------

    def _script_then(
        self, script: Any, keys: list[str], args: list[Any], then: Callable[[Any], object]
    ) -> Any:
        """Run ``script``, then what ``then`` queues on a pipeline; return the script's reply.

        One round trip on one Redis: the script goes by its SHA (``redis-py``
        would ask ``SCRIPT EXISTS`` first, a round trip more), and is loaded
        only when the server says it does not know it; what ``then`` queues
        is idempotent, so that pipeline is simply sent again. A cluster
        refuses scripts in pipelines: there the script runs first on its
        own, then the pipeline.
        """
        if self._cluster:
            reply = script(keys=keys, args=args)
            pipe = self._redis.pipeline(transaction=False)
            then(pipe)
            pipe.execute()
            return reply

        def send() -> Any:
            pipe = self._redis.pipeline(transaction=False)
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            then(pipe)
            return pipe.execute()[0]

        try:
            return send()
        except redis.exceptions.NoScriptError:
            self._redis.script_load(script.script)
            return send()

    def _link(
        self,
        entry: str,
        links: BatchLinks,
        ttl: int,
        *,
        replace: str | None,
        pipe: Any = None,
    ) -> list[str]:
        """Link ``entry`` (a batch id or a start) under its ids, in one pipeline.

        ``replace`` is an entry it takes the place of (a start that made the
        batch). Returns the ids among the links that were revoked already: a
        revoke is remembered per scope, so under "task" a chain successor's
        revoke does not reach a batch its predecessor links later.
        """
        pairs = links.pairs()
        pipe = pipe if pipe is not None else self._redis.pipeline(transaction=False)
        for scope, link_id in pairs:
            key = self.link_key(link_id, scope)
            if replace is not None:
                pipe.hdel(key, replace)
            pipe.hsetnx(key, entry, link_value(links))
            pipe.expire(key, ttl)
        if pairs and not entry.startswith(START_PREFIX):
            own = self.batch_key(entry, "links")
            pipe.sadd(own, *[f"{scope}\x00{link_id}" for scope, link_id in pairs])
            pipe.expire(own, ttl)
        self._ask_revoked(pipe, pairs)
        return _revoked_ids(pairs, pipe.execute())

    def _ask_revoked(self, pipe: Any, pairs: Sequence[tuple[Scope, str]]) -> None:
        """Queue one look per (scope, id): is it remembered as revoked? (:func:`_revoked_ids`)."""
        for scope, link_id in pairs:
            pipe.exists(self.link_key(link_id, f"revoked:{scope}"))

    def _mark_finished(
        self, pipe: Any, batch_id: str, links: Sequence[tuple[str, str]], ttl: int
    ) -> None:
        """Mark a batch finished in its links; it no longer has a deadline either."""
        pipe.zrem(self._deadlines(), batch_id)
        for scope, link_id in links:
            key = self.link_key(link_id, scope)
            pipe.hset(key, batch_id, "finished")
            pipe.expire(key, ttl)

    # -- for operators -------------------------------------------------------------------


def _revoked_ids(pairs: Sequence[tuple[Scope, str]], replies: list[Any]) -> list[str]:
    """The ids whose look, the last ``len(pairs)`` replies, found them revoked."""
    flags = replies[len(replies) - len(pairs) :]
    return sorted({link_id for (_, link_id), flag in zip(pairs, flags) if flag})
