"""Starting (or finding) the cluster's actors on a Ray cluster: one data node per Ray node,
pinned to it, and one coordinator on the caller's node. All are detached and named, so they
outlive the process that started them and any later process finds them by name; Ray restarts
them when they die (``max_restarts=-1``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from quiver.cluster import calls
from quiver.cluster.coordinator import Coordinator
from quiver.cluster.node import Node

#: Concurrent calls one node actor serves (reads run beside a shard's write).
NODE_CONCURRENCY = 32


def connect(address: str | None, namespace: str) -> None:
    """Join the Ray cluster at ``address`` (None: the one this process already joined, or a
    new local one) unless this process is connected already."""
    if not ray.is_initialized():
        ray.init(address=address, namespace=namespace, logging_level="WARNING")


def ray_nodes() -> dict[str, str]:
    """The alive Ray nodes that offer CPUs: quiver node name -> Ray node id."""
    return {
        f"n{n['NodeID'][:12]}": n["NodeID"]
        for n in ray.nodes()
        if n["Alive"] and n.get("Resources", {}).get("CPU", 0) > 0
    }


def _pinned(node_id: str) -> NodeAffinitySchedulingStrategy:
    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)


def start_node(
    name: str, node_id: str, data_dir: Path, namespace: str, options: dict[str, Any]
) -> Any:
    """The data node actor ``name`` on Ray node ``node_id`` (created if it does not exist)."""
    return (
        ray.remote(Node)
        .options(
            name=calls.node_actor_name(name),
            namespace=namespace,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            max_concurrency=NODE_CONCURRENCY,
            num_cpus=0,
            scheduling_strategy=_pinned(node_id),
        )
        .remote(name, str(data_dir / name), namespace, **options)
    )


def start_coordinator(
    data_dir: Path,
    namespace: str,
    heartbeat_s: float,
    ping_timeout_s: float,
    niceness: int | None = 0,
) -> Any:
    """The coordinator actor (created on this process's node if it does not exist)."""
    return (
        ray.remote(Coordinator)
        .options(
            name=calls.COORDINATOR_NAME,
            namespace=namespace,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            max_concurrency=16,
            num_cpus=0,
            scheduling_strategy=_pinned(ray.get_runtime_context().get_node_id()),
        )
        .remote(str(data_dir / "coordinator"), namespace, heartbeat_s, ping_timeout_s, niceness)
    )
