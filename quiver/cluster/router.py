"""Sending a collection's calls to the right replicas, with deadlines, failover and retries.

Reads go to one in-sync replica per shard (rotating over them). A replica that fails or misses
the deadline is skipped for ``suspect_s`` seconds and the read goes to the next in-sync
replica; a read still unanswered after the shard's recent p95 latency is **hedged**: sent to a
second replica too, and the first answer wins. A shard none of whose in-sync replicas answers
before the deadline raises :class:`~quiver.errors.ShardUnavailableError`.

Writes go to each shard's primary, stamped with the epoch of the cached shard map. A primary
that refuses (a newer epoch, not primary) makes the router re-read the map and retry; one that
does not answer is reported to the coordinator (which elects another if it is really dead) and
the write is retried until ``write_timeout_s``. Retrying is safe: an upsert or delete by id
applied twice gives the same result.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import ray

from quiver.cluster import calls
from quiver.cluster.latency import LatencyWindow
from quiver.cluster.layout import ClusterLayout, CollectionLayout
from quiver.errors import (
    CollectionNotFoundError,
    QuiverError,
    ReplicaUnavailableError,
    ShardUnavailableError,
    StaleEpochError,
)

logger = logging.getLogger(__name__)


@dataclass
class RouterOptions:
    """Deadlines and failover knobs of a :class:`ShardRouter` (seconds)."""

    read_timeout_s: float = 10.0
    write_timeout_s: float = 60.0
    #: a replica that failed is not read from for this long
    suspect_s: float = 2.0
    #: the cached shard map is re-read after this long (and after any refused write)
    layout_ttl_s: float = 1.0
    #: hedge after the shard's p95 latency, never before this
    hedge_min_s: float = 0.02
    #: hedge delay while a shard has fewer than 20 latency samples
    hedge_default_s: float = 0.25
    #: a shard none of whose in-sync replicas answered is asked again (on a fresh map) for
    #: this long before the read fails or returns partial results: a replica that Ray
    #: reports as briefly unavailable, or a failover, is waited out
    unavailable_retry_s: float = 2.0
    #: how long a replica may take to calibrate for ``target_recall`` (outside the read
    #: deadline), and how often the router checks again that every replica is calibrated
    calibration_timeout_s: float = 600.0
    calibration_check_s: float = 30.0


@dataclass
class _ShardRead:
    shard: int
    candidates: list[str]
    inflight: dict[Any, tuple[str, float]] = field(default_factory=dict)
    result: Any = None
    done: bool = False
    hedged: bool = False
    errors: list[str] = field(default_factory=list)


class ShardRouter:
    """Routes calls of the cluster's collections (see the module doc)."""

    def __init__(self, coordinator: Any, namespace: str, options: RouterOptions) -> None:
        self._coordinator = coordinator
        self._namespace = namespace
        self.options = options
        self._layout: ClusterLayout | None = None
        self._fetched = 0.0
        self._handles: dict[str, Any] = {}
        self._suspect_until: dict[str, float] = {}
        self._latency: dict[tuple[str, int], LatencyWindow] = {}
        self._turn = 0
        self._prepared: dict[tuple[str, int], float] = {}

    # ------------------------------------------------------------------ the map
    def layout(self, refresh: bool = False) -> ClusterLayout:
        now = time.monotonic()
        if refresh or self._layout is None or now - self._fetched > self.options.layout_ttl_s:
            deadline = now + self.options.read_timeout_s
            while True:  # a read: retried while the coordinator restarts
                try:
                    data = calls.call(
                        self._coordinator.layout.remote(),
                        max(0.1, deadline - time.monotonic()),
                        "coordinator",
                    )
                    break
                except calls.CallFailed:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.2)
            self._layout, self._fetched = ClusterLayout.from_dict(data), now
        return self._layout

    def collection(self, name: str) -> CollectionLayout:
        for refresh in (False, True):
            found = self.layout(refresh).collections.get(name)
            if found is not None:
                return found
        raise CollectionNotFoundError(f"no collection named {name!r}")

    def node(self, name: str) -> Any:
        handle = self._handles.get(name)
        if handle is None:
            handle = self._handles[name] = calls.actor(calls.node_actor_name(name), self._namespace)
        return handle

    # ------------------------------------------------------------------ reads
    def _hedge_after(self, key: tuple[str, int]) -> float:
        window = self._latency.get(key)
        p95 = window.p95() if window is not None else None
        if p95 is None:
            return self.options.hedge_default_s
        return max(self.options.hedge_min_s, p95)

    def _order(self, names: list[str]) -> list[str]:
        """In-sync replicas to try, rotating, the ones under suspicion last."""
        now = time.monotonic()
        self._turn += 1
        k = self._turn % len(names)
        rotated = names[k:] + names[:k]
        return sorted(rotated, key=lambda n: self._suspect_until.get(n, 0.0) > now)

    def _launch(self, read: _ShardRead, coll: str, method: str, args: tuple) -> bool:
        while read.candidates:
            node = read.candidates.pop(0)
            try:
                ref = getattr(self.node(node), method).remote(coll, read.shard, *args)
            except calls.CallFailed as exc:
                read.errors.append(str(exc))
                continue
            read.inflight[ref] = (node, time.monotonic())
            return True
        return False

    def read(
        self, coll: str, method: str, per_shard: dict[int, tuple], partial: bool = False
    ) -> dict[int, Any]:
        """Call ``method(coll, shard, *args)`` on one in-sync replica of each shard in
        ``per_shard`` (shard -> args); returns shard -> result. Shards whose replicas all
        failed are tried again on a freshly read map (a failover may have changed it) for up
        to ``unavailable_retry_s``, within the deadline. Shards that still failed raise
        :class:`ShardUnavailableError`, or with ``partial`` are left out of the result (it
        raises only when no shard answered)."""
        start = time.monotonic()
        deadline = start + self.options.read_timeout_s
        retry_until = min(deadline, start + self.options.unavailable_retry_s)
        results, failed = self._read_round(coll, method, per_shard, deadline, refresh=False)
        pause = 0.02
        while failed and time.monotonic() < retry_until:
            time.sleep(min(pause, max(0.0, retry_until - time.monotonic())))
            pause = min(pause * 2, 0.2)
            retry = {r.shard: per_shard[r.shard] for r in failed}
            more, failed = self._read_round(coll, method, retry, deadline, refresh=True)
            results.update(more)
        if failed and partial and results:
            logger.warning(
                "collection %r: partial answer, shards %s unavailable",
                coll,
                sorted(r.shard for r in failed),
            )
            return results
        if failed:
            detail = "; ".join(
                f"shard {r.shard}: {', '.join(r.errors) or 'no replica'}" for r in failed
            )
            raise ShardUnavailableError(f"collection {coll!r}: {detail}")
        return results

    def _read_round(
        self, coll: str, method: str, per_shard: dict[int, tuple], deadline: float, refresh: bool
    ) -> tuple[dict[int, Any], list[_ShardRead]]:
        """One attempt at every shard of ``per_shard``: the results and the failed reads."""
        layout = self.layout(refresh).collections.get(coll) if refresh else None
        layout = layout or self.collection(coll)
        reads = {s: _ShardRead(s, self._order(layout.shards[s].readable())) for s in per_shard}
        for s, read in reads.items():
            self._launch(read, coll, method, per_shard[s])
        start = time.monotonic()
        while True:
            open_reads = [r for r in reads.values() if not r.done and r.inflight]
            if not open_reads:
                break
            now = time.monotonic()
            if now >= deadline:
                for r in open_reads:
                    for node, _ in r.inflight.values():
                        self._suspect(node)
                        r.errors.append(f"{node}: no answer within the deadline")
                break
            next_hedge = min(
                (start + self._hedge_after((coll, r.shard)) for r in open_reads if not r.hedged),
                default=deadline,
            )
            refs = [ref for r in open_reads for ref in r.inflight]
            wait = max(0.0, min(deadline, max(next_hedge, now)) - now)
            ready, _ = ray.wait(refs, num_returns=1, timeout=wait)
            for ref in ready:
                self._collect(coll, ref, reads, method, per_shard)
            now = time.monotonic()
            for r in reads.values():
                if (
                    not r.done
                    and not r.hedged
                    and now >= start + self._hedge_after((coll, r.shard))
                ):
                    r.hedged = True
                    self._launch(r, coll, method, per_shard[r.shard])
        done = {s: r.result for s, r in reads.items() if r.done}
        return done, [r for r in reads.values() if not r.done]

    def _collect(self, coll: str, ref: Any, reads: dict, method: str, per_shard: dict) -> None:
        read = next(r for r in reads.values() if ref in r.inflight)
        node, started = read.inflight.pop(ref)
        if read.done:
            return
        try:
            result = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - any failure sends the read elsewhere
            cause = calls.unwrap(exc)
            if isinstance(cause, QuiverError) and not isinstance(cause, ReplicaUnavailableError):
                raise cause from None  # the request itself is wrong: no retry helps
            self._suspect(node)
            read.errors.append(f"{node}: {type(cause).__name__}")
            if not read.inflight:
                self._launch(read, coll, method, per_shard[read.shard])
            return
        read.result, read.done = result, True
        window = self._latency.setdefault((coll, read.shard), LatencyWindow())
        window.add(time.monotonic() - started)

    def _suspect(self, node: str) -> None:
        self._suspect_until[node] = time.monotonic() + self.options.suspect_s
        self._handles.pop(node, None)

    def prepare_recall(self, coll: str, target: float, recall_k: int) -> None:
        """Have every in-sync replica of ``coll`` calibrated for ``recall_k`` results before a
        ``target_recall`` search for ``target``, without the read deadline (a first
        calibration takes seconds on a large shard); checked again after
        ``calibration_check_s`` (a calibration serves every target at its k). A replica that
        fails here is left to the read path (failover, suspicion)."""
        key = (coll, recall_k)
        now = time.monotonic()
        if now - self._prepared.get(key, -math.inf) < self.options.calibration_check_s:
            return
        layout = self.collection(coll)
        refs, targets = [], []
        for rs in layout.shards:
            for node in rs.readable():
                try:
                    ref = self.node(node).prepare_recall.remote(coll, rs.shard, target, recall_k)
                except calls.CallFailed:
                    continue
                refs.append(ref)
                targets.append(node)
        results = calls.gather(refs, self.options.calibration_timeout_s, targets)
        for node, result in zip(targets, results, strict=True):
            if isinstance(result, BaseException):
                logger.warning("replica %s of %r: no calibration for k=%d (%s)",
                               node, coll, recall_k, result)  # fmt: skip
        self._prepared[key] = time.monotonic()

    def read_one(self, node: str, method: str, *args: Any, timeout_s: float | None = None) -> Any:
        """``method(*args)`` on one named node, within ``timeout_s`` (the read deadline)."""
        ref = getattr(self.node(node), method).remote(*args)
        return calls.call(ref, timeout_s or self.options.read_timeout_s, node)

    # ------------------------------------------------------------------ writes
    def write(self, coll: str, method: str, per_shard: dict[int, tuple]) -> dict[int, Any]:
        """Call ``method(coll, shard, epoch, *args)`` on each shard's primary; retried (see
        the module doc) until it succeeds or ``write_timeout_s`` passes."""
        deadline = time.monotonic() + self.options.write_timeout_s
        layout = self.collection(coll)
        shards, refs, targets = [], [], []
        for s, args in per_shard.items():  # first attempt: every shard at once
            rs = layout.shards[s]
            try:
                refs.append(getattr(self.node(rs.primary), method).remote(coll, s, rs.epoch, *args))
            except calls.CallFailed:
                continue
            shards.append(s)
            targets.append(rs.primary)
        first = calls.gather(refs, self.options.write_timeout_s, targets)
        done = {
            s: result
            for s, result in zip(shards, first, strict=True)
            if not isinstance(result, BaseException)
        }
        for result in first:
            if isinstance(result, QuiverError) and not isinstance(
                result, StaleEpochError | ReplicaUnavailableError
            ):
                raise result  # the write itself is wrong: no retry helps
        for s, args in per_shard.items():  # then each failed shard with retries
            if s not in done:
                done[s] = self._write_shard(coll, s, method, args, deadline)
        return done

    def _write_shard(self, coll: str, shard: int, method: str, args: tuple, deadline: float) -> Any:
        attempt, last = 0, ""
        while True:
            rs = self.collection(coll).shards[shard]
            left = deadline - time.monotonic()
            if left <= 0:
                raise ShardUnavailableError(
                    f"collection {coll!r} shard {shard}: write not acknowledged within "
                    f"{self.options.write_timeout_s} s ({last})"
                )
            try:
                ref = getattr(self.node(rs.primary), method).remote(coll, shard, rs.epoch, *args)
                return calls.call(ref, left, rs.primary)
            except (StaleEpochError, ReplicaUnavailableError) as exc:
                last = str(exc)
            except calls.CallFailed as exc:
                last = str(exc)
                self._handles.pop(rs.primary, None)
                try:
                    calls.call(
                        self._coordinator.primary_failed.remote(coll, shard, rs.primary, rs.epoch),
                        max(0.1, deadline - time.monotonic()),
                        "coordinator",
                    )
                except (calls.CallFailed, ShardUnavailableError) as why:
                    last = f"{last}; {why}"
            attempt += 1
            time.sleep(min(0.05 * 2**attempt, 0.5))
            self.layout(refresh=True)
