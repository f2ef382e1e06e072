"""The data node: one long-lived process per machine holding one quiver :class:`Database` with
one collection per shard replica it hosts (one process per node, not per shard: an idle
database costs a few hundred MB).

Run as a detached, named Ray actor pinned to its node (see :mod:`quiver.cluster.launch`) that
Ray restarts when it dies; the class itself only needs Ray to reach the other nodes and the
coordinator (:mod:`quiver.cluster.calls`). Layout of its directory::

    <dir>/db/                     the node's quiver database (collection <name>__s<shard>)
    <dir>/replog/<name>__s<shard>/       the replica's replication log
    <dir>/replog/<name>__s<shard>.json   its fencing state (quiver.cluster.replica)

Roles: a replica is the shard's primary only after the coordinator promoted it (in this
process's lifetime), and serves reads only once the coordinator (through the primary) has
confirmed that it holds every acknowledged write. After a restart every replica is neither.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from quiver.cluster import calls
from quiver.cluster.merge import resolve_target_recall
from quiver.cluster.priority import set_niceness
from quiver.cluster.replica import Op, ReplicaGapError, ShardReplica, replica_name
from quiver.db.database import Database
from quiver.db.payloads import keys_removed, payload_change
from quiver.db.query import answers_compact
from quiver.db.request import SearchRequest
from quiver.db.wal import OP_DELETE, OP_UPSERT
from quiver.errors import (
    CollectionNotFoundError,
    ReplicaUnavailableError,
    StaleEpochError,
)
from quiver.index import warmup
from quiver.params import BuildParams
from quiver.types import CompactHits, Point, ScoredPoint

logger = logging.getLogger(__name__)

#: Deadline of one forwarded write or catch-up step to a follower.
FORWARD_TIMEOUT_S = 5.0
#: Deadline of the primary's report of dropped followers to the coordinator.
REPORT_TIMEOUT_S = 5.0
#: A catch-up sends the log without the shard's lock until the follower is at most this many
#: writes behind (or after ``CATCH_UP_ROUNDS`` rounds); the rest is sent under the lock.
CATCH_UP_SLACK = 64
CATCH_UP_ROUNDS = 20


class Node:
    """A data node's replicas (see the module doc). ``name``: the node's name in the shard map;
    ``directory``: its local data directory; ``namespace``: the Ray namespace of the cluster."""

    def __init__(
        self,
        name: str,
        directory: str,
        namespace: str = calls.DEFAULT_NAMESPACE,
        fsync: str = "batch",
        num_threads: int | None = None,
        niceness: int | None = 0,
    ) -> None:
        set_niceness(niceness)
        self.name = name
        self._dir = Path(directory)
        self._namespace = namespace
        self._incarnation = uuid.uuid4().hex[:12]  # changes with every (re)start
        warmup()  # compiled (or loaded) kernels before the first call has a deadline
        self._db = Database(self._dir / "db", fsync=fsync, num_threads=num_threads)
        self._replicas: dict[str, ShardReplica] = {}
        #: (replica, follower) catch-ups in progress, as primary
        self._catching_up: set[tuple[str, str]] = set()
        #: replicas removed from this node in its lifetime (reads still routed here by a
        #: router's cached map fail over instead of reporting a missing collection)
        self._removed: set[str] = set()
        for cname in self._db.list_collections():
            self._replicas[cname] = ShardReplica(
                self._db, self._db.get_collection(cname), self._log_dir(cname)
            )
        logger.info("node %s started with %d replicas", name, len(self._replicas))

    def _log_dir(self, cname: str) -> Path:
        return self._dir / "replog" / cname

    # ------------------------------------------------------------------ lifecycle
    def ping(self) -> dict[str, Any]:
        return {
            "name": self.name, "pid": os.getpid(), "incarnation": self._incarnation,
            "niceness": os.getpriority(os.PRIO_PROCESS, 0),
        }  # fmt: skip

    def create_replica(
        self,
        collection: str,
        shard: int,
        dim: int,
        metric: str,
        id_type: str,
        build: dict[str, Any],
    ) -> None:
        """Create the (empty) replica of ``shard`` of ``collection`` unless it exists."""
        cname = replica_name(collection, shard)
        if cname in self._replicas:
            return
        self._removed.discard(cname)
        coll = self._db.create_collection(
            cname, dim, metric, id_type=id_type, **BuildParams(**build).to_dict()
        )
        self._replicas[cname] = ShardReplica(self._db, coll, self._log_dir(cname))

    def drop_replica(self, collection: str, shard: int) -> None:
        cname = replica_name(collection, shard)
        replica = self._replicas.pop(cname, None)
        if replica is None:
            return
        self._removed.add(cname)
        replica.close()
        self._db.drop_collection(cname)
        log_dir = self._log_dir(cname)
        log_dir.with_name(log_dir.name + ".json").unlink(missing_ok=True)
        shutil.rmtree(log_dir, ignore_errors=True)

    def _replica(self, collection: str, shard: int) -> ShardReplica:
        cname = replica_name(collection, shard)
        try:
            return self._replicas[cname]
        except KeyError:
            if cname in self._removed:
                raise ReplicaUnavailableError(
                    f"node {self.name} no longer holds shard {shard} of {collection!r} (moved)"
                ) from None
            raise CollectionNotFoundError(
                f"node {self.name} holds no replica of shard {shard} of {collection!r}"
            ) from None

    def status(self, collection: str, shard: int) -> dict[str, Any]:
        return {**self._replica(collection, shard).status(), "incarnation": self._incarnation}

    def statuses(self) -> dict[str, dict[str, Any]]:
        """Every replica's status, by replica name."""
        return {name: r.status() for name, r in self._replicas.items()}

    def close(self) -> None:
        for replica in self._replicas.values():
            replica.close()
        self._db.close()

    # ------------------------------------------------------------------ roles
    def promote(self, collection: str, shard: int, epoch: int, followers: list[str]) -> list[str]:
        """Become the shard's primary at ``epoch``; bring each of ``followers`` in sync.
        Returns the followers now in sync (the others are left to a later catch-up)."""
        replica = self._replica(collection, shard)
        with replica.lock:
            replica.observe_epoch(epoch)
            replica.is_primary = True
            replica.readable = True
            replica.followers = []
        return [f for f in followers if self._sync_quietly(collection, shard, f)]

    def step_down(self, collection: str, shard: int, epoch: int) -> None:
        """Stop acting as primary (another replica was elected at ``epoch``)."""
        replica = self._replica(collection, shard)
        with replica.lock:
            replica.observe_epoch(epoch)
            replica.is_primary = False
            replica.followers = []

    def set_readable(self, collection: str, shard: int, readable: bool) -> None:
        self._replica(collection, shard).readable = bool(readable)

    def _sync_quietly(self, collection: str, shard: int, follower: str) -> bool:
        try:
            self.sync_follower(collection, shard, follower)
            return True
        except (calls.CallFailed, ReplicaGapError, StaleEpochError, ReplicaUnavailableError) as exc:
            logger.warning("%s shard %d: %s not synced: %s", collection, shard, follower, exc)
            return False

    def sync_follower(
        self, collection: str, shard: int, follower: str, snapshot: bool = False
    ) -> str:
        """(Primary) bring ``follower`` up to date and add it to the forwarding set, while
        writes continue.

        From a snapshot (when ``snapshot``, when the follower's last write is not one of this
        replica's, or when it is no longer retained) or from the follower's last write, the
        follower is sent the retained log after it in rounds, without the shard's lock, until
        it is at most ``CATCH_UP_SLACK`` writes behind; the last round holds the lock (writes
        wait only for that), so the follower has every write when it joins. Returns
        "snapshot" or "log". One catch-up of a follower at a time
        (:class:`ReplicaUnavailableError` for a second).
        """
        replica = self._replica(collection, shard)
        key = (replica_name(collection, shard), follower)
        with replica.lock:
            if key in self._catching_up:
                raise ReplicaUnavailableError(f"{follower} is already catching up on {key[0]}")
            self._catching_up.add(key)
        try:
            return self._catch_up(replica, collection, shard, follower, snapshot)
        finally:
            self._catching_up.discard(key)

    def _catch_up(
        self, replica: ShardReplica, collection: str, shard: int, follower: str, snapshot: bool
    ) -> str:
        handle = calls.actor(calls.node_actor_name(follower), self._namespace)
        self._require_primary(replica, shard)
        state = calls.call(handle.status.remote(collection, shard), FORWARD_TIMEOUT_S, follower)
        seq, how = state["last_seq"], "log"
        with replica.lock:  # (the snapshot is taken under the lock: a consistent cut)
            replica.followers = [f for f in replica.followers if f != follower]
            epoch = replica.epoch
            if snapshot or replica.epoch_at(seq) != state["last_epoch"]:
                data, seq, last_epoch = replica.snapshot_bytes()
                how = "snapshot"
        if how == "snapshot":
            calls.call(
                handle.install_snapshot.remote(collection, shard, data, seq, last_epoch),
                FORWARD_TIMEOUT_S * 6,
                follower,
            )
        sent = 0
        for _ in range(CATCH_UP_ROUNDS):  # without the lock: writes go on meanwhile
            with replica.lock:
                self._require_primary(replica, shard)
                if replica.last_seq - seq <= CATCH_UP_SLACK:
                    break
                if replica.epoch_at(seq) is None:
                    raise ReplicaGapError(f"{follower}: seq {seq} is no longer retained")
                ops = replica.ops_after(seq)
            seq = self._send_ops(handle, collection, shard, follower, ops, epoch)
            sent += len(ops)
        with replica.lock:  # the last writes: the shard's writes wait for these only
            self._require_primary(replica, shard)
            ops = replica.ops_after(seq)
            self._send_ops(handle, collection, shard, follower, ops, replica.epoch)
            calls.call(
                handle.set_readable.remote(collection, shard, True), FORWARD_TIMEOUT_S, follower
            )
            if follower not in replica.followers:
                replica.followers.append(follower)
        logger.info(
            "%s shard %d: %s in sync by %s (%d writes)", collection, shard, follower, how,
            sent + len(ops),
        )  # fmt: skip
        return how

    def _require_primary(self, replica: ShardReplica, shard: int) -> None:
        if not replica.is_primary:
            raise ReplicaUnavailableError(f"{self.name} is not primary of shard {shard}")

    @staticmethod
    def _send_ops(
        handle: Any, collection: str, shard: int, follower: str, ops: list[Op], epoch: int
    ) -> int:
        """Apply ``ops`` on the follower; returns its last seq."""
        ref = handle.apply_ops.remote(collection, shard, ops, epoch)
        return calls.call(ref, FORWARD_TIMEOUT_S * 6, follower)

    def drop_follower(self, collection: str, shard: int, follower: str) -> None:
        """(Primary) stop forwarding writes to ``follower`` (its replica is being removed)."""
        replica = self._replica(collection, shard)
        with replica.lock:
            replica.followers = [f for f in replica.followers if f != follower]

    # ------------------------------------------------------------------ follower side
    def apply_ops(self, collection: str, shard: int, ops: list[Op], epoch: int) -> int:
        """Apply replicated writes in order (a catch-up or one forwarded write); the
        replica adopts ``epoch``. Returns its last seq."""
        replica = self._replica(collection, shard)
        with replica.lock:
            replica.observe_epoch(epoch)
            for op in ops:
                replica.apply(op, epoch)
            return replica.last_seq

    def install_snapshot(
        self, collection: str, shard: int, data: bytes, seq: int, epoch: int
    ) -> None:
        replica = self._replica(collection, shard)
        with replica.lock:
            replica.readable = False
            replica.install_snapshot(data, seq, epoch)

    # ------------------------------------------------------------------ primary writes
    def write(
        self,
        collection: str,
        shard: int,
        epoch: int,
        kind: int,
        ids: list[Any],
        vectors: Any = None,
        payloads: Any = None,
    ) -> dict[str, Any]:
        """(Primary) log, apply and replicate one write; return once every in-sync replica
        has it durably: ``{"seq", "replicas"}``."""
        replica = self._replica(collection, shard)
        with replica.lock:
            self._check_primary(replica, collection, shard, epoch)
            op = replica.next_op(kind, ids, vectors, payloads)
            replica.apply(op)
            replicated = self._forward(replica, collection, shard, op)
            return {"seq": op.seq, "replicas": 1 + replicated}

    def _check_primary(
        self, replica: ShardReplica, collection: str, shard: int, epoch: int
    ) -> None:
        replica.observe_epoch(epoch)
        if not replica.is_primary or epoch != replica.epoch:
            raise ReplicaUnavailableError(
                f"node {self.name} is not the primary of shard {shard} of {collection!r} at "
                f"epoch {epoch}"
            )

    def _forward(self, replica: ShardReplica, collection: str, shard: int, op: Op) -> int:
        """Send ``op`` to every follower; drop (and report) those that fail; a follower at a
        newer epoch means this replica was deposed: step down and refuse the write."""
        followers = list(replica.followers)
        refs, targets = [], []
        for follower in followers:
            try:
                handle = calls.actor(calls.node_actor_name(follower), self._namespace)
            except calls.CallFailed:
                continue
            refs.append(handle.apply_ops.remote(collection, shard, [op], op.epoch))
            targets.append(follower)
        results = calls.gather(refs, FORWARD_TIMEOUT_S, targets)
        failed = [f for f in followers if f not in targets]
        for follower, result in zip(targets, results, strict=True):
            if isinstance(result, StaleEpochError):
                replica.is_primary = False
                replica.followers = []
                raise result
            if isinstance(result, BaseException):
                logger.warning(
                    "%s shard %d: follower %s dropped: %s", collection, shard, follower, result
                )
                failed.append(follower)
        if failed:
            replica.followers = [f for f in followers if f not in failed]
            coordinator = calls.actor(calls.COORDINATOR_NAME, self._namespace)
            calls.call(
                coordinator.followers_dropped.remote(collection, shard, failed, op.epoch),
                REPORT_TIMEOUT_S,
                calls.COORDINATOR_NAME,
            )
        return len(followers) - len(failed)

    def delete_matching(
        self,
        collection: str,
        shard: int,
        epoch: int,
        filter: Any,  # noqa: A002
    ) -> dict[str, Any]:
        """(Primary) delete the points matching ``filter``: resolved to ids here, logged and
        replicated as a delete of those ids."""
        replica = self._replica(collection, shard)
        with replica.lock:
            self._check_primary(replica, collection, shard, epoch)
            ids = self._matching_ids(replica, filter)
            if not ids:
                return {"seq": replica.last_seq, "replicas": 0, "changed": 0}
            return {**self.write(collection, shard, epoch, OP_DELETE, ids), "changed": len(ids)}

    def delete_ids(self, collection: str, shard: int, epoch: int, ids: list[Any]) -> dict[str, Any]:
        """(Primary) delete the ``ids`` that exist (logged only if one does)."""
        replica = self._replica(collection, shard)
        with replica.lock:
            self._check_primary(replica, collection, shard, epoch)
            present = [p.id for p in replica.collection.retrieve(ids, with_payload=False)]
            if not present:
                return {"seq": replica.last_seq, "replicas": 0, "changed": 0}
            out = self.write(collection, shard, epoch, OP_DELETE, present)
            return {**out, "changed": len(present)}

    def update_payloads(
        self,
        collection: str,
        shard: int,
        epoch: int,
        change: dict[str, Any],
        ids: list[Any] | None,
        filter: Any,  # noqa: A002
    ) -> dict[str, Any]:
        """(Primary) rewrite the payloads of ``ids`` (or the points matching ``filter``):
        ``change`` is ``{"set": payload, "overwrite": bool}`` or ``{"remove": keys}``.
        Logged and replicated as an upsert of the changed points with their stored vectors."""
        update = (
            payload_change(change["set"], change.get("overwrite", False))
            if "set" in change
            else keys_removed(change.get("remove"))
        )
        replica = self._replica(collection, shard)
        with replica.lock:
            self._check_primary(replica, collection, shard, epoch)
            pids = self._matching_ids(replica, filter) if ids is None else ids
            points = replica.collection.retrieve(pids, with_payload=True, with_vector=True)
            changed = [(p, update(p.payload)) for p in points if update(p.payload) != p.payload]
            if not changed:
                return {"seq": replica.last_seq, "replicas": 0, "changed": 0}
            out = self.write(
                collection, shard, epoch, OP_UPSERT,
                [p.id for p, _ in changed],
                np.array([p.vector for p, _ in changed], dtype=np.float32),
                [new for _, new in changed],
            )  # fmt: skip
            return {**out, "changed": len(changed)}

    @staticmethod
    def _matching_ids(replica: ShardReplica, filter: Any) -> list[Any]:  # noqa: A002
        ids, offset = [], None
        while True:
            page, offset = replica.collection.scroll(
                limit=10_000, offset=offset, filter=filter, with_payload=False
            )
            ids += [p.id for p in page]
            if offset is None:
                return ids

    # ------------------------------------------------------------------ reads
    def _readable(self, collection: str, shard: int) -> ShardReplica:
        replica = self._replica(collection, shard)
        if not replica.readable:
            raise ReplicaUnavailableError(
                f"node {self.name}: shard {shard} of {collection!r} is catching up"
            )
        return replica

    def search(
        self, collection: str, shard: int, options: dict[str, Any]
    ) -> list[list[ScoredPoint]] | CompactHits:
        """Run a search request (``SearchRequest`` keyword arguments, a ``target_recall``
        resolved by :func:`~quiver.cluster.merge.resolve_target_recall`) on this replica;
        without payloads or vectors, of integer ids, the hits as :class:`CompactHits`."""
        replica = self._readable(collection, shard)
        options = resolve_target_recall(options, replica.collection.ef_for_recall)
        request = SearchRequest(**options)
        if answers_compact(replica.collection.id_type, request):
            return replica.collection.query_compact(request)  # no per-hit objects to pickle
        return replica.collection.query(request)

    def prepare_recall(self, collection: str, shard: int, target: float, recall_k: int) -> int:
        """The ef this replica searches ``target`` recall at ``recall_k`` results with,
        calibrating first if it has no calibration for ``recall_k`` (seconds on a large
        shard). The router calls it without the read deadline before a ``target_recall``
        search, so a first search does not spend its deadline calibrating."""
        return self._readable(collection, shard).collection.ef_for_recall(target, recall_k)

    def get_points(
        self, collection: str, shard: int, ids: list[Any], with_payload: Any, with_vector: bool
    ) -> list[Point]:
        replica = self._readable(collection, shard)
        return replica.collection.retrieve(ids, with_payload=with_payload, with_vector=with_vector)

    def count(self, collection: str, shard: int, filter: Any) -> int:  # noqa: A002
        return self._readable(collection, shard).collection.count(filter)

    def scroll(
        self, collection: str, shard: int, options: dict[str, Any]
    ) -> tuple[list[Point], Any]:
        return self._readable(collection, shard).collection.scroll(**options)

    def info(self, collection: str, shard: int) -> dict[str, Any]:
        replica = self._replica(collection, shard)
        info = replica.collection.info()
        info.pop("path", None)
        return {**info, **replica.status()}

    def snapshot_replica(self, collection: str, shard: int) -> tuple[bytes, int]:
        """(Primary) a snapshot of the shard (a consistent cut) and the seq it holds every
        write up to."""
        replica = self._replica(collection, shard)
        self._require_primary(replica, shard)
        data, seq, _ = replica.snapshot_bytes()
        return data, seq

    def restore_replica(self, collection: str, shard: int, data: bytes, seq: int) -> None:
        """Replace this replica by a shard snapshot holding the writes up to ``seq`` (the
        restore of a cluster snapshot: every replica of the shard gets the same one, at epoch 0)
        and serve reads."""
        replica = self._replica(collection, shard)
        with replica.lock:
            replica.install_snapshot(data, seq, 0)
            replica.readable = True

    def create_payload_index(self, collection: str, shard: int, key: str) -> None:
        self._replica(collection, shard).collection.create_payload_index(key)

    def checkpoint(self, collection: str, shard: int) -> None:
        self._replica(collection, shard).checkpoint()
