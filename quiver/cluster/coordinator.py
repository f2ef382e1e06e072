"""The coordinator: owner of the shard map (:mod:`quiver.cluster.layout`).

It creates and drops sharded collections on the nodes, elects a new primary when one fails
(the in-sync replica with the highest seq: every acknowledged write is on all in-sync
replicas, so it has them all), drops followers the primary reports as failed, and in its
periodic :meth:`Coordinator.tick` finds dead primaries within about one heartbeat and brings
replicas that are out of sync (restarted, or dropped) back through their primary. The map is
saved atomically after every change and read back when the coordinator restarts.

Runs as a detached, named Ray actor (see :mod:`quiver.cluster.launch`); its calls to the
nodes go through :mod:`quiver.cluster.calls` with deadlines.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from quiver.cluster import calls
from quiver.cluster.layout import (
    CollectionLayout,
    ReplicaSet,
    load_layout,
    place_replicas,
    save_layout,
)
from quiver.cluster.priority import set_niceness
from quiver.cluster.replica import replica_name
from quiver.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    InvalidInputError,
    ShardUnavailableError,
)

logger = logging.getLogger(__name__)

LAYOUT_FILE = "layout.json"
#: Deadline of a health check of a node (default): a dead node is noticed within this.
PING_TIMEOUT_S = 1.0
#: Deadline of the coordinator's other calls to a node.
NODE_TIMEOUT_S = 30.0
#: Longest collection name (a replica is named <name>__s<shard>, at most 64 characters).
MAX_NAME = 56


class Coordinator:
    """The shard map's owner (see the module doc). ``directory``: where the map is saved;
    ``heartbeat_s``: period of the background :meth:`tick` (0: none, call it yourself);
    ``ping_timeout_s``: a node that does not answer a health check within it counts as down
    (raise it on an overloaded machine, where a live node may answer late)."""

    def __init__(
        self,
        directory: str,
        namespace: str = calls.DEFAULT_NAMESPACE,
        heartbeat_s: float = 0.5,
        ping_timeout_s: float = PING_TIMEOUT_S,
        niceness: int | None = 0,
    ) -> None:
        set_niceness(niceness)  # its heartbeat must not wait behind busy processes
        self._ping_timeout_s = float(ping_timeout_s)
        self._path = Path(directory) / LAYOUT_FILE
        self._namespace = namespace
        self._lock = threading.RLock()  # the map: held briefly, never across a call
        self._repair_lock = threading.RLock()  # one election or repair round at a time
        self._layout = load_layout(self._path)
        #: (collection, shard, node) replicas being added (:meth:`add_replica`)
        self._adding: set[tuple[str, int, str]] = set()
        self._stop = threading.Event()
        if heartbeat_s > 0:
            threading.Thread(
                target=self._heartbeat, args=(heartbeat_s,), name="tick", daemon=True
            ).start()
        logger.info("coordinator up: %d collections", len(self._layout.collections))

    # ------------------------------------------------------------------ map
    def layout(self) -> dict[str, Any]:
        """The shard map (what routers cache)."""
        with self._lock:
            return self._layout.to_dict()

    def _save(self) -> None:
        self._layout.version += 1
        save_layout(self._path, self._layout)

    def register_nodes(self, nodes: list[str]) -> list[str]:
        """Add data nodes (by name) to the cluster; returns all of them."""
        with self._lock:
            new = [n for n in nodes if n not in self._layout.nodes]
            if new:
                self._layout.nodes.extend(new)
                self._save()
            return list(self._layout.nodes)

    def _node(self, name: str) -> Any:
        return calls.actor(calls.node_actor_name(name), self._namespace)

    def _collection(self, name: str) -> CollectionLayout:
        try:
            return self._layout.collections[name]
        except KeyError:
            raise CollectionNotFoundError(f"no collection named {name!r}") from None

    # ------------------------------------------------------------------ collections
    def create_collection(
        self,
        name: str,
        dim: int,
        metric: str,
        id_type: str,
        build: dict[str, Any],
        shards: int,
        replicas: int,
    ) -> dict[str, Any]:
        """Create the replicas on the nodes, promote each shard's first replica and save."""
        with self._repair_lock, self._lock:
            if name in self._layout.collections:
                raise CollectionExistsError(f"collection {name!r} already exists")
            if not isinstance(name, str) or len(name) > MAX_NAME:
                raise InvalidInputError(
                    f"a cluster collection name has at most {MAX_NAME} characters, got {name!r}"
                )
            nodes = self._layout.nodes
            if not 1 <= replicas <= len(nodes):
                raise InvalidInputError(
                    f"replicas must be in [1, {len(nodes)}] (the number of nodes), got {replicas}"
                )
            if not 1 <= shards <= 4096:
                raise InvalidInputError(f"shards must be in [1, 4096], got {shards}")
            placement = place_replicas(nodes, shards, replicas)
            args = (dim, metric, id_type, build)
            refs, targets = [], []
            for s, members in enumerate(placement):
                for node in members:
                    refs.append(self._node(node).create_replica.remote(name, s, *args))
                    targets.append(node)
            self._raise_failures(calls.gather(refs, NODE_TIMEOUT_S, targets))
            sets = []
            for s, members in enumerate(placement):
                primary, followers = members[0], members[1:]
                synced = calls.call(
                    self._node(primary).promote.remote(name, s, 1, followers),
                    NODE_TIMEOUT_S,
                    primary,
                )
                sets.append(ReplicaSet(s, 1, primary, list(members), [primary, *synced]))
            layout = CollectionLayout(name, dim, metric, id_type, dict(build), sets, replicas)
            self._layout.collections[name] = layout
            self._save()
            logger.info("created %r: %d shards x %d replicas", name, shards, replicas)
            return self._layout.to_dict()

    @staticmethod
    def _raise_failures(results: list[Any]) -> None:
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def drop_collection(self, name: str) -> None:
        with self._repair_lock, self._lock:
            layout = self._collection(name)
            refs, targets = [], []
            for rs in layout.shards:
                for node in rs.replicas:
                    refs.append(self._node(node).drop_replica.remote(name, rs.shard))
                    targets.append(node)
            del self._layout.collections[name]
            self._save()
            for result in calls.gather(refs, NODE_TIMEOUT_S, targets):
                if isinstance(result, BaseException):
                    logger.warning("dropping %r: %s (its files stay on that node)", name, result)

    # ------------------------------------------------------------------ replica placement
    def add_replica(self, name: str, shard: int, node: str) -> dict[str, Any]:
        """Add a replica of ``shard`` of ``name`` on ``node`` while writes continue: created
        empty, filled by the primary from a snapshot plus the log after it, then in sync.
        Until then it is listed in the shard's replicas (not in sync, never read from).
        Returns the shard's replica set."""
        with self._repair_lock, self._lock:
            rs = self._replica_set(name, shard)
            if node not in self._layout.nodes:
                raise InvalidInputError(
                    f"node must be one of the cluster's nodes {self._layout.nodes}, got {node!r}"
                )
            if node in rs.replicas:
                raise InvalidInputError(f"node {node} already holds shard {shard} of {name!r}")
            layout = self._layout.collections[name]
            calls.call(
                self._node(node).create_replica.remote(
                    name, shard, layout.dim, layout.metric, layout.id_type, layout.build
                ),
                NODE_TIMEOUT_S,
                node,
            )
            rs.replicas.append(node)
            self._save()
            primary, epoch = rs.primary, rs.epoch
            self._adding.add((name, shard, node))  # the tick leaves it to this call
        try:  # the catch-up runs outside the repair lock: failure detection goes on meanwhile
            calls.call(
                self._node(primary).sync_follower.remote(name, shard, node, True),
                NODE_TIMEOUT_S * 20,
                primary,
            )
        finally:
            self._adding.discard((name, shard, node))
        with self._lock:
            if rs.primary == primary and rs.epoch == epoch and node not in rs.in_sync:
                rs.in_sync.append(node)  # (else the next tick brings it in sync)
                self._save()
            logger.info("shard %d of %r: replica added on %s", shard, name, node)
            return asdict(rs)

    def remove_replica(self, name: str, shard: int, node: str) -> dict[str, Any]:
        """Remove the replica of ``shard`` of ``name`` on ``node`` (a primary hands over to
        another in-sync replica first); refused when it is the shard's last in-sync replica.
        Returns the shard's replica set."""
        with self._repair_lock:
            with self._lock:
                rs = self._replica_set(name, shard)
                if node not in rs.replicas:
                    raise InvalidInputError(f"node {node} holds no replica of shard {shard}")
                if [n for n in rs.in_sync if n != node] == []:
                    raise InvalidInputError(
                        f"node {node} holds the last in-sync replica of shard {shard} of "
                        f"{name!r}: add another first"
                    )
            if rs.primary == node:
                self._elect(name, rs, exclude={node})
            calls.call(
                self._node(rs.primary).drop_follower.remote(name, shard, node),
                NODE_TIMEOUT_S,
                rs.primary,
            )
            with self._lock:
                rs.replicas = [n for n in rs.replicas if n != node]
                rs.in_sync = [n for n in rs.in_sync if n != node]
                self._save()
            try:
                calls.call(self._node(node).drop_replica.remote(name, shard), NODE_TIMEOUT_S, node)
            except Exception as exc:  # noqa: BLE001 - the map no longer names it
                logger.warning("shard %d of %r: replica on %s left: %s", shard, name, node, exc)
            logger.info("shard %d of %r: replica removed from %s", shard, name, node)
            return asdict(rs)

    def _replica_set(self, name: str, shard: int) -> ReplicaSet:
        shards = self._collection(name).shards
        if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < len(shards):
            raise InvalidInputError(f"shard must be in [0, {len(shards) - 1}], got {shard!r}")
        return shards[shard]

    # ------------------------------------------------------------------ failures
    def followers_dropped(self, name: str, shard: int, nodes: list[str], epoch: int) -> None:
        """(From a primary) ``nodes`` missed a write: no reads go to them until caught up."""
        with self._lock:
            rs = self._collection(name).shards[shard]
            if epoch != rs.epoch:
                return
            rs.in_sync = [n for n in rs.in_sync if n not in nodes]
            self._save()

    def primary_failed(self, name: str, shard: int, primary: str, epoch: int) -> dict[str, Any]:
        """(From a router) the primary did not answer: elect another unless that happened
        already. Returns the map."""
        with self._repair_lock:
            rs = self._collection(name).shards[shard]
            if rs.epoch == epoch and rs.primary == primary and not self._alive(primary):
                self._elect(name, rs, exclude={primary})
            return self.layout()

    def _alive(self, node: str) -> bool:
        try:
            calls.call(self._node(node).ping.remote(), self._ping_timeout_s, node)
            return True
        except calls.CallFailed:
            return False

    def _elect(self, name: str, rs: ReplicaSet, exclude: set[str]) -> None:
        """Promote the in-sync replica (not in ``exclude``) with the highest seq, at a new
        epoch; :class:`ShardUnavailableError` when none answers."""
        candidates = [n for n in rs.in_sync if n not in exclude]
        refs, targets = [], []
        for node in candidates:
            try:
                refs.append(self._node(node).status.remote(name, rs.shard))
                targets.append(node)
            except calls.CallFailed:
                continue
        seqs = {
            node: result["last_seq"]
            for node, result in zip(
                targets, calls.gather(refs, self._ping_timeout_s * 2, targets), strict=True
            )
            if not isinstance(result, BaseException)
        }
        if not seqs:
            raise ShardUnavailableError(
                f"shard {rs.shard} of {name!r}: no in-sync replica answers (primary {rs.primary})"
            )
        new = max(seqs, key=lambda n: (seqs[n], n == rs.primary))
        epoch = rs.epoch + 1
        followers = [n for n in seqs if n != new]
        synced = calls.call(
            self._node(new).promote.remote(name, rs.shard, epoch, followers), NODE_TIMEOUT_S, new
        )
        logger.warning(
            "shard %d of %r: primary %s -> %s at epoch %d", rs.shard, name, rs.primary, new, epoch
        )
        with self._lock:
            rs.primary, rs.epoch, rs.in_sync = new, epoch, [new, *synced]
            self._save()

    # ------------------------------------------------------------------ heartbeat
    def _heartbeat(self, period: float) -> None:
        while not self._stop.wait(period):
            try:
                self.tick()
            except Exception:  # a background thread has no caller to raise to
                logger.exception("coordinator tick failed")

    def stop(self) -> None:
        self._stop.set()

    def tick(self) -> dict[str, Any]:
        """One round of failure detection and repair: ask every node for its replicas' state
        (a node that misses the deadline counts as down); elect a primary where the current
        one is down or restarted without its role; take replicas that are not readable (a
        restart) out of the in-sync set; bring every live replica that is not in sync back
        through its primary. Returns what it did."""
        with self._repair_lock:
            health = self._health()
            done: dict[str, Any] = {"alive": sorted(health), "elected": [], "synced": []}
            with self._lock:
                sets = [(n, rs) for n, c in self._layout.collections.items() for rs in c.shards]
                for name, rs in sets:  # a restarted follower lost its place: catch up first
                    key = replica_name(name, rs.shard)
                    gone = [
                        n
                        for n in rs.in_sync
                        if n != rs.primary
                        and n in health
                        and not health[n].get(key, {}).get("readable")
                    ]
                    if gone:
                        rs.in_sync = [n for n in rs.in_sync if n not in gone]
                        self._save()
            for name, rs in sets:
                self._repair(name, rs, health, done)
            return done

    def _health(self) -> dict[str, dict[str, Any]]:
        """node -> its replicas' states, for the nodes that answer within the deadline."""
        refs, targets = [], []
        for node in list(self._layout.nodes):
            try:
                refs.append(self._node(node).statuses.remote())
                targets.append(node)
            except calls.CallFailed:
                continue
        results = calls.gather(refs, self._ping_timeout_s, targets)
        return {
            node: result
            for node, result in zip(targets, results, strict=True)
            if not isinstance(result, BaseException)
        }

    def _repair(self, name: str, rs: ReplicaSet, alive: dict[str, Any], done: dict) -> None:
        state = alive.get(rs.primary, {}).get(replica_name(name, rs.shard))
        primary_ok = bool(state and state["is_primary"] and state["epoch"] == rs.epoch)
        if not primary_ok:
            try:
                exclude = set() if rs.primary in alive else {rs.primary}
                self._elect(name, rs, exclude)
                done["elected"].append((name, rs.shard, rs.primary))
            except (ShardUnavailableError, calls.CallFailed) as exc:
                logger.warning("shard %d of %r unavailable: %s", rs.shard, name, exc)
                return
        for node in rs.replicas:
            if node in rs.in_sync or node not in alive or (name, rs.shard, node) in self._adding:
                continue
            try:
                calls.call(
                    self._node(rs.primary).sync_follower.remote(name, rs.shard, node),
                    NODE_TIMEOUT_S,
                    rs.primary,
                )
            except Exception as exc:  # noqa: BLE001 - retried at the next tick
                logger.warning("shard %d of %r: %s not synced: %s", rs.shard, name, node, exc)
                continue
            with self._lock:
                rs.in_sync.append(node)
                self._save()
            done["synced"].append((name, rs.shard, node))
