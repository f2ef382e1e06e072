"""``quiver.Cluster``: the database's verbs over a Ray cluster of quiver nodes.

``Cluster(address, data_dir=...)`` joins the Ray cluster at ``address`` (``None``: this
process's Ray, or a new local one; ``"auto"``; ``"ray://host:port"``), starts (or finds, by
name) one data node actor per Ray node and the coordinator, and gives the same collection verbs
as :class:`quiver.Database`: code written for ``Database(path)`` runs on
``Cluster(address, data_dir=path)`` by changing the constructor. ``create_collection`` takes
``shards`` and ``replicas`` besides the database's arguments. docs/SCALING.md has the design
and the guarantees.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import ray

from quiver.cluster import calls, launch
from quiver.cluster.collection import ClusterCollection
from quiver.cluster.merge import DEFAULT_EF_EXPONENT
from quiver.cluster.router import RouterOptions, ShardRouter
from quiver.cluster.snapshots import read_cluster_snapshot
from quiver.errors import InvalidInputError
from quiver.params import BuildParams

logger = logging.getLogger(__name__)


class Cluster:
    """Sharded, replicated collections on a Ray cluster (see the module doc).

    Parameters
    ----------
    address : the Ray cluster to join (see the module doc).
    data_dir : each node's data directory (``<data_dir>/<node name>`` on that node's local
        disk) and the coordinator's (``<data_dir>/coordinator`` on the caller's node).
    namespace : the Ray namespace of the cluster's named actors (two clusters on one Ray
        cluster use two namespaces).
    fsync, num_threads : the nodes' :class:`quiver.Database` options.
    node_niceness : the niceness of the data node and coordinator processes (Ray starts its
        workers at 15, below every normal process; a database server should not be; None:
        leave Ray's).
    heartbeat_s : the coordinator's failure-detection period (0: only on :meth:`repair`).
    ping_timeout_s : a node that misses a health check's deadline counts as down.
    ef_exponent : the per-shard ef rule, ``ceil(ef / S ** ef_exponent)``.
    batch_window_s, max_batch : micro-batching of concurrent single searches from this
        process's threads (:mod:`quiver.cluster.batching`; ``batch_window_s=0``: off).
    shards, replicas : what :meth:`create_collection` uses when not told (a program or a
        server written for :class:`quiver.Database` creates sharded collections unchanged).
    options : deadlines and failover knobs (:class:`~quiver.cluster.router.RouterOptions`).
    start_timeout_s : how long to wait for the node actors to start (a first start compiles
        the kernels).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        data_dir: str | Path,
        namespace: str = calls.DEFAULT_NAMESPACE,
        fsync: str = "batch",
        num_threads: int | None = None,
        node_niceness: int | None = 0,
        heartbeat_s: float = 0.5,
        ping_timeout_s: float = 1.0,
        ef_exponent: float = DEFAULT_EF_EXPONENT,
        batch_window_s: float = 0.001,
        max_batch: int = 64,
        shards: int = 1,
        replicas: int = 1,
        options: RouterOptions | None = None,
        start_timeout_s: float = 300.0,
    ) -> None:
        launch.connect(address, namespace)
        self._data_dir = Path(data_dir)
        self._namespace = namespace
        self._ef_exponent = float(ef_exponent)
        self._batching = (float(batch_window_s), int(max_batch))
        self._defaults = {"shards": shards, "replicas": replicas}
        self._collections: dict[str, ClusterCollection] = {}
        self._coordinator = launch.start_coordinator(
            self._data_dir, namespace, heartbeat_s, ping_timeout_s, node_niceness
        )
        self._options = options or RouterOptions()
        node_options = {"fsync": fsync, "num_threads": num_threads, "niceness": node_niceness}
        self._nodes = {
            name: launch.start_node(name, node_id, self._data_dir, namespace, node_options)
            for name, node_id in launch.ray_nodes().items()
        }
        for name, handle in self._nodes.items():  # each node has opened its database
            calls.call(handle.ping.remote(), start_timeout_s, name)
        calls.call(
            self._coordinator.register_nodes.remote(sorted(self._nodes)),
            self._options.write_timeout_s,
            "coordinator",
        )
        self._router = ShardRouter(self._coordinator, namespace, self._options)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Cluster(nodes={len(self._nodes)}, collections={self.list_collections()})"

    def _coordinator_call(self, method: str, *args: Any, timeout_s: float | None = None) -> Any:
        ref = getattr(self._coordinator, method).remote(*args)
        return calls.call(ref, timeout_s or self._options.write_timeout_s, "coordinator")

    @property
    def nodes(self) -> list[str]:
        """The data nodes' names."""
        return sorted(self._nodes)

    # ------------------------------------------------------------------ collections
    def create_collection(
        self,
        name: str,
        dim: int,
        metric: str = "cosine",
        *,
        id_type: str = "uint64",
        max_degree: int = BuildParams.max_degree,
        build_list_size: int = BuildParams.build_list_size,
        alpha: float = BuildParams.alpha,
        seed: int = 0,
        shards: int | None = None,
        replicas: int | None = None,
    ) -> ClusterCollection:
        """Create an empty collection of ``shards`` shards, each on ``replicas`` nodes (the
        cluster's defaults when None); :class:`CollectionExistsError` if the name is taken."""
        shards = self._defaults["shards"] if shards is None else shards
        replicas = self._defaults["replicas"] if replicas is None else replicas
        build = BuildParams(max_degree, build_list_size, alpha, seed).to_dict()
        self._coordinator_call(
            "create_collection", name, dim, metric, id_type, build, shards, replicas
        )
        return self.get_collection(name)

    def get_collection(self, name: str) -> ClusterCollection:
        """The collection ``name``; :class:`CollectionNotFoundError` if none."""
        layout = self._router.collection(name)
        known = self._collections.get(name)
        if known is None or known.shards != layout.n_shards or known.dim != layout.dim:
            known = ClusterCollection(self._router, layout, self._ef_exponent, *self._batching)
            self._collections[name] = known  # one batcher per collection and process
        return known

    def restore_snapshot(
        self, file: str | Path, name: str, *, replace: bool = False, replicas: int | None = None
    ) -> ClusterCollection:
        """Create collection ``name`` from a file written by
        :meth:`ClusterCollection.snapshot <quiver.cluster.collection.ClusterCollection.snapshot>`:
        the same parameters and shard count, ``replicas`` per shard (the snapshot's when None),
        every replica restored from its shard's snapshot. The checksums are checked first;
        writes to ``name`` before this returns may be lost. ``replace`` is not supported on a
        cluster (drop the collection first)."""
        if replace:
            raise InvalidInputError("restore_snapshot(replace=True) is not supported on a cluster")
        manifest, parts = read_cluster_snapshot(file)
        build = manifest["build"]
        coll = self.create_collection(
            name, manifest["dim"], manifest["metric"], id_type=manifest["id_type"],
            max_degree=build["max_degree"], build_list_size=build["build_list_size"],
            alpha=build["alpha"], seed=build["seed"], shards=manifest["shards"],
            replicas=manifest["replicas"] if replicas is None else replicas,
        )  # fmt: skip
        try:
            for rs in self._router.collection(name).shards:
                data, seq = parts[rs.shard], manifest["seqs"][rs.shard]
                for node in rs.replicas:
                    self._router.read_one(
                        node, "restore_replica", name, rs.shard, data, seq,
                        timeout_s=self._options.write_timeout_s,
                    )  # fmt: skip
        except BaseException:
            self.drop_collection(name)
            raise
        return coll

    def failed_collections(self) -> dict[str, str]:
        """As :meth:`quiver.Database.failed_collections`: none (a shard that cannot serve
        raises :class:`ShardUnavailableError` when used)."""
        return {}

    def list_collections(self) -> list[str]:
        return sorted(self._router.layout(refresh=True).collections)

    def drop_collection(self, name: str) -> None:
        """Delete a collection on every node."""
        self._coordinator_call("drop_collection", name)
        self._collections.pop(name, None)
        self._router.layout(refresh=True)

    # ------------------------------------------------------------------ operations
    def repair(self) -> dict[str, Any]:
        """One round of the coordinator's failure detection and catch-up, now."""
        done = self._coordinator_call("tick")
        self._router.layout(refresh=True)
        return done

    def add_replica(self, collection: str, shard: int, node: str) -> dict[str, Any]:
        """Add a replica of ``shard`` of ``collection`` on ``node`` while writes continue: the
        primary sends a snapshot and then the writes logged after it, without holding the
        shard's writes except for the last few (docs/SCALING.md). Returns the shard's replica
        set once the new replica is in sync."""
        done = self._coordinator_call(
            "add_replica", collection, shard, node, timeout_s=self._options.write_timeout_s * 20
        )
        self._router.layout(refresh=True)
        return done

    def remove_replica(self, collection: str, shard: int, node: str) -> dict[str, Any]:
        """Remove the replica of ``shard`` of ``collection`` on ``node`` (a primary hands over
        first); refused for the shard's last in-sync replica. Returns the shard's replica set."""
        done = self._coordinator_call("remove_replica", collection, shard, node)
        self._router.layout(refresh=True)
        return done

    def move_replica(
        self, collection: str, shard: int, from_node: str, to_node: str
    ) -> dict[str, Any]:
        """Move a replica of ``shard`` of ``collection`` from ``from_node`` to ``to_node``:
        :meth:`add_replica` on ``to_node``, then :meth:`remove_replica` on ``from_node``
        (the shard has one replica more meanwhile). Returns the shard's replica set."""
        if from_node == to_node:
            raise InvalidInputError(f"from_node and to_node are the same node {from_node!r}")
        self.add_replica(collection, shard, to_node)
        return self.remove_replica(collection, shard, from_node)

    def cluster_info(self) -> dict[str, Any]:
        """Nodes (alive or not) and every shard: epoch, primary, in-sync replicas, the
        replicas not in sync yet (``catching_up``: restarted, or being added) and each
        replica's seq, lag (writes behind its primary) and count."""
        layout = self._router.layout(refresh=True)
        statuses = {}
        for node in layout.nodes:
            try:
                statuses[node] = self._router.read_one(node, "statuses")
            except Exception as exc:  # noqa: BLE001 - info reports, never fails
                statuses[node] = {"error": f"{type(exc).__name__}: {exc}"}
        collections = {}
        for name, coll in layout.collections.items():
            shards = []
            for rs in coll.shards:
                key = f"{name}__s{rs.shard}"
                states = {n: statuses.get(n, {}).get(key) for n in rs.replicas}
                head = (states.get(rs.primary) or {}).get("last_seq")
                for state in states.values():
                    if state and head is not None:
                        state["lag"] = head - state["last_seq"]
                shards.append({
                    "shard": rs.shard, "epoch": rs.epoch, "primary": rs.primary,
                    "in_sync": rs.in_sync, "replicas": states,
                    "catching_up": [n for n in rs.replicas if n not in rs.in_sync],
                })  # fmt: skip
            collections[name] = {"shards": shards, "replicas": coll.replicas}
        alive = {n: "error" not in s for n, s in statuses.items()}
        return {"nodes": alive, "version": layout.version, "collections": collections}

    def close(self) -> None:
        """Forget this process's handles; the actors keep running (they are the cluster).
        :func:`quiver.cluster.shutdown` stops them."""
        self._nodes = {}


def shutdown(namespace: str = calls.DEFAULT_NAMESPACE) -> None:
    """Stop the cluster's actors (nodes and coordinator) in ``namespace``; their data stays."""
    for info in ray.util.list_named_actors(all_namespaces=True):
        if info["namespace"] == namespace and info["name"].startswith("quiver-"):
            try:
                ray.kill(ray.get_actor(info["name"], namespace=namespace), no_restart=True)
            except ValueError:
                continue
