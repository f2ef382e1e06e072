"""A sharded, replicated collection with the verbs of :class:`quiver.Collection`.

Writes are validated here (nothing is sent if any of a batch is wrong), split by
``shard_of(id, S)`` and acknowledged once every in-sync replica of every shard they touch has
them durably; a batch that spans shards is atomic per shard, not across shards. Reads go to
one in-sync replica per shard and are merged (:mod:`quiver.cluster.merge`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from quiver.cluster.batching import QueryBatcher
from quiver.cluster.hashing import group_by_shard
from quiver.cluster.layout import CollectionLayout
from quiver.cluster.merge import (
    RECALL_K,
    Hits,
    expand_hits,
    merge_compact,
    merge_hits,
    merge_pages,
    shard_options,
)
from quiver.cluster.router import ShardRouter
from quiver.cluster.snapshots import write_cluster_snapshot
from quiver.db.filters import parse_filter
from quiver.db.ids import check_id, check_ids
from quiver.db.payloads import check_payloads, keys_removed, payload_change
from quiver.db.request import SearchRequest, payload_selection
from quiver.db.wal import OP_UPSERT
from quiver.errors import InvalidInputError, PointNotFoundError
from quiver.types import CompactHits, Point
from quiver.validation import as_matrix, positive_int

#: the batcher's option key of a search that allows partial results
_PARTIAL = "allow_partial"


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidInputError(f"allow_partial must be true or false, got {value!r}")
    return value


class ClusterCollection:
    """One collection of a :class:`quiver.Cluster` (obtain it from the cluster).
    ``ef_exponent``: the per-shard ef rule (:func:`quiver.cluster.merge.shard_ef`);
    ``batch_window_s``, ``max_batch``: micro-batching of concurrent single searches
    (:mod:`quiver.cluster.batching`; a window of 0 turns it off)."""

    def __init__(
        self,
        router: ShardRouter,
        layout: CollectionLayout,
        ef_exponent: float,
        batch_window_s: float = 0.001,
        max_batch: int = 64,
    ) -> None:
        self._router = router
        self.name = layout.name
        self.dim = layout.dim
        self.metric = layout.metric
        self.id_type = layout.id_type
        self.shards = layout.n_shards
        self.replicas = layout.replicas
        self._ef_exponent = ef_exponent
        self.batcher = QueryBatcher(self._run_batch, batch_window_s, max_batch)

    def __repr__(self) -> str:
        return (
            f"ClusterCollection({self.name!r}, dim={self.dim}, metric={self.metric!r}, "
            f"shards={self.shards}, replicas={self.replicas})"
        )

    def __len__(self) -> int:
        return self.count()

    def _all(self, *args: Any) -> dict[int, tuple]:
        return dict.fromkeys(range(self.shards), args)

    # ------------------------------------------------------------------ writes
    def upsert(self, ids: Any, vectors: Any, payloads: Any = None) -> int:
        """Insert or replace points (as :meth:`quiver.Collection.upsert`); returns how many."""
        x = as_matrix(vectors, self.dim)
        pids = check_ids(self.id_type, ids, x.shape[0])
        check_payloads(payloads, x.shape[0])
        per_shard = {}
        for shard, rows in group_by_shard(pids, self.shards).items():
            part = None if payloads is None else [payloads[r] for r in rows]
            per_shard[shard] = (OP_UPSERT, [pids[r] for r in rows], x[rows], part)
        self._router.write(self.name, "write", per_shard)
        return len(pids)

    def delete(self, ids: Any) -> int:
        """Delete points by id; returns how many existed."""
        pids = check_ids(self.id_type, ids)
        per_shard = {
            s: ([pids[r] for r in rows],) for s, rows in group_by_shard(pids, self.shards).items()
        }
        done = self._router.write(self.name, "delete_ids", per_shard)
        return sum(r["changed"] for r in done.values())

    def delete_by_filter(self, filter: Any) -> int:  # noqa: A002 - the API's word
        """Delete every point matching ``filter``; returns how many."""
        parse_filter(filter)
        done = self._router.write(self.name, "delete_matching", self._all(filter))
        return sum(r["changed"] for r in done.values())

    def set_payload(
        self,
        payload: Any,
        *,
        ids: Any = None,
        filter: Any = None,
        overwrite: bool = False,  # noqa: A002
    ) -> int:
        """Merge ``payload`` into (or with ``overwrite`` replace) the payloads of ``ids`` or
        of the points matching ``filter``; returns how many changed."""
        payload_change(payload, overwrite)
        return self._update_payloads({"set": payload, "overwrite": bool(overwrite)}, ids, filter)

    def delete_payload(self, keys: Any = None, *, ids: Any = None, filter: Any = None) -> int:  # noqa: A002
        """Remove payload ``keys`` (all when None) from ``ids`` or the points matching
        ``filter``; returns how many changed."""
        keys_removed(keys)
        return self._update_payloads({"remove": keys}, ids, filter)

    def _update_payloads(self, change: dict[str, Any], ids: Any, filter: Any) -> int:  # noqa: A002
        if (ids is None) == (filter is None):
            raise InvalidInputError("give exactly one of ids and filter")
        if ids is None:
            parse_filter(filter)
            per_shard = self._all(change, None, filter)
        else:
            pids = check_ids(self.id_type, ids)
            per_shard = {
                s: (change, [pids[r] for r in rows], None)
                for s, rows in group_by_shard(pids, self.shards).items()
            }
        done = self._router.write(self.name, "update_payloads", per_shard)
        return sum(r["changed"] for r in done.values())

    # ------------------------------------------------------------------ point reads
    def get(self, id: Any, *, with_payload: Any = True, with_vector: bool = False) -> Point:  # noqa: A002
        """The point with this id; :class:`PointNotFoundError` if there is none."""
        pid = check_id(self.id_type, id)
        found = self.retrieve([pid], with_payload=with_payload, with_vector=with_vector)
        if not found:
            raise PointNotFoundError(f"no point with id {pid!r} in collection {self.name!r}")
        return found[0]

    def retrieve(
        self, ids: Any, *, with_payload: Any = True, with_vector: bool = False
    ) -> list[Point]:
        """The points with these ids, in the order asked; missing ids are skipped."""
        pids = check_ids(self.id_type, ids)
        selection = payload_selection(with_payload)
        groups = group_by_shard(pids, self.shards)
        per_shard = {
            s: ([pids[r] for r in rows], selection, with_vector) for s, rows in groups.items()
        }
        found = {
            p.id: p
            for points in self._router.read(self.name, "get_points", per_shard).values()
            for p in points
        }
        return [found[p] for p in pids if p in found]

    def count(self, filter: Any = None) -> int:  # noqa: A002
        """Number of live points, or of those matching ``filter``."""
        parse_filter(filter)
        return sum(self._router.read(self.name, "count", self._all(filter)).values())

    def scroll(
        self,
        *,
        limit: int = 100,
        offset: Any = None,
        filter: Any = None,  # noqa: A002
        with_payload: Any = True,
        with_vector: bool = False,
    ) -> tuple[list[Point], Any]:
        """One page of points in id order from id ``offset`` (see
        :meth:`quiver.Collection.scroll`); returns ``(points, next_offset)``."""
        limit = positive_int(limit, "limit")
        parse_filter(filter)
        start = None if offset is None else check_id(self.id_type, offset, "offset")
        options = {
            "limit": limit, "offset": start, "filter": filter,
            "with_payload": payload_selection(with_payload), "with_vector": with_vector,
        }  # fmt: skip
        pages = self._router.read(self.name, "scroll", self._all(options))
        return merge_pages(list(pages.values()), limit)

    # ------------------------------------------------------------------ search
    def search(
        self,
        vector: Any = None,
        *,
        query_id: Any = None,
        allow_partial: bool = False,
        **options: Any,
    ) -> Hits:
        """The ``k`` nearest points to ``vector`` or to the stored point ``query_id`` (the
        options of :class:`~quiver.db.request.SearchRequest`). ``allow_partial``: when a whole
        shard is down, the hits of the others (their ``coverage`` says how many answered)
        instead of :class:`~quiver.errors.ShardUnavailableError`."""
        if (vector is None) == (query_id is None):
            raise InvalidInputError("give exactly one of vector and query_id")
        partial = _flag(allow_partial)
        if query_id is not None:
            return self.query(SearchRequest(ids=[query_id], **options), allow_partial=partial)[0]
        request = SearchRequest(vectors=vector, **options)
        if request.vectors.shape[0] != 1:
            raise InvalidInputError(
                f"vector must be one vector, got {request.vectors.shape[0]} rows"
            )
        if request.vectors.shape[1] != self.dim or self.batcher.window_s <= 0:
            return self.query(request, allow_partial=partial)[0]  # (a wrong dimension raises)
        options = request.options()
        if partial:  # only searches with the same options share a batch
            options[_PARTIAL] = True
        return self.batcher.search(request.vectors[0], options)

    def _run_batch(self, vectors: np.ndarray, options: dict[str, Any]) -> list[Hits]:
        options = dict(options)
        partial = options.pop(_PARTIAL, False)
        return self.query(SearchRequest(vectors=vectors, **options), allow_partial=partial)

    def search_batch(
        self, vectors: Any, *, allow_partial: bool = False, **options: Any
    ) -> list[Hits]:
        """:meth:`search` for many query vectors at once (one call per shard)."""
        request = SearchRequest(vectors=vectors, **options)
        return self.query(request, allow_partial=_flag(allow_partial))

    def query(self, request: SearchRequest, *, allow_partial: bool = False) -> list[Hits]:
        """Run a :class:`~quiver.db.request.SearchRequest` over every shard and merge.
        ``allow_partial``: see :meth:`search`; every hit list has the ``coverage``."""
        partial = _flag(allow_partial)
        exclude: list[Any] = [None] * request.n_queries
        if request.ids is not None:
            exclude = [check_id(self.id_type, i, "query_id") for i in request.ids]
            points = self.retrieve(exclude, with_payload=False, with_vector=True)
            if len(points) != len(exclude):
                missing = next(i for i in exclude if i not in {p.id for p in points})
                raise PointNotFoundError(
                    f"no point with id {missing!r} in collection {self.name!r}"
                )
            vectors = np.array([p.vector for p in points], dtype=np.float32)
        else:
            vectors = request.vectors
            if vectors.shape[1] != self.dim:
                raise InvalidInputError(
                    f"vectors dimension mismatch: expected {self.dim}, got {vectors.shape[1]}"
                )
        options = shard_options(request, self.shards, self._ef_exponent)
        if RECALL_K in options:  # calibrate outside the read deadline
            self._router.prepare_recall(self.name, options["target_recall"], options[RECALL_K])
        options["vectors"] = vectors
        answers = self._router.read(self.name, "search", self._all(options), partial)
        higher = self.metric != "l2"
        parts = [answers[s] for s in sorted(answers)]
        if all(isinstance(part, CompactHits) for part in parts):
            return merge_compact(parts, request.k, request.offset, higher, exclude, self.shards)
        parts = [expand_hits(part) for part in parts]
        return [
            merge_hits(
                [part[q] for part in parts],
                request.k,
                request.offset,
                higher,
                exclude[q],
                self.shards,
            )  # fmt: skip
            for q in range(len(vectors))
        ]

    # ------------------------------------------------------------------ info
    def info(self) -> dict[str, Any]:
        """The collection's shards: each replica's count, seq, epoch and state."""
        layout = self._router.collection(self.name)
        shards = []
        for rs in layout.shards:
            replicas = {}
            for node in rs.replicas:
                try:
                    replicas[node] = self._router.read_one(node, "info", self.name, rs.shard)
                except Exception as exc:  # noqa: BLE001 - info reports, never fails
                    replicas[node] = {"error": f"{type(exc).__name__}: {exc}"}
            shards.append({
                "shard": rs.shard, "epoch": rs.epoch, "primary": rs.primary,
                "in_sync": rs.in_sync, "replicas": replicas,
            })  # fmt: skip
        readable = all(len(s["in_sync"]) > 0 for s in shards)
        indexes = {
            key
            for s in shards
            for r in s["replicas"].values()
            for key in r.get("payload_indexes", ())
        }
        return {
            "name": self.name, "dim": self.dim, "metric": self.metric, "id_type": self.id_type,
            "status": "green" if readable else "degraded", "count": self.count(),
            "params": dict(layout.build), "payload_indexes": sorted(indexes), "shards": shards,
        }  # fmt: skip

    def create_payload_index(self, key: str) -> None:
        """Build the column of payload field ``key`` now on every replica (otherwise the first
        filter on it builds it there); a replica added later builds it on first use."""
        layout = self._router.collection(self.name)
        for rs in layout.shards:
            for node in rs.replicas:
                self._router.read_one(node, "create_payload_index", self.name, rs.shard, key)

    def snapshot(self, path: Any) -> Path:
        """Write a snapshot of every shard (from its primary) and a manifest to one file at
        ``path`` (:mod:`quiver.cluster.snapshots`: each shard a consistent cut, not one cut
        across shards); restore with :meth:`quiver.Cluster.restore_snapshot`."""
        layout = self._router.collection(self.name)
        timeout_s = self._router.options.write_timeout_s
        parts, seqs = [], []
        for rs in layout.shards:
            data, seq = self._router.read_one(
                rs.primary, "snapshot_replica", self.name, rs.shard, timeout_s=timeout_s
            )
            parts.append(data)
            seqs.append(seq)
        manifest = {
            "collection": self.name, "dim": self.dim, "metric": self.metric,
            "id_type": self.id_type, "build": dict(layout.build), "shards": self.shards,
            "replicas": self.replicas, "seqs": seqs,
        }  # fmt: skip
        return write_cluster_snapshot(Path(path), manifest, parts)
