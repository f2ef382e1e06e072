"""A simulated Ray cluster on this machine (several Ray nodes in one box, every socket on
127.0.0.1) and the node-actor faults the cluster scripts and tests inject into it.

Ray resolves "this machine" to its outward address unless told otherwise: the head's GCS,
the raylets and the workers then listen on every interface. :func:`bind_loopback` (before
``ray`` is imported: Ray reads the setting at import) plus ``node_ip_address`` on every node
keep them on the loopback address.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
#: Ray's switch between "resolve the machine's address" (default on Linux) and loopback.
_RAY_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def bind_loopback() -> None:
    """Make Ray (this process and the ones it starts) use 127.0.0.1 for this machine.
    Must run before ``ray`` is imported; raises ``RuntimeError`` otherwise."""
    if "ray" in sys.modules and os.environ.get(_RAY_CLUSTER_ENV) != "0":
        raise RuntimeError("bind_loopback() must run before ray is imported")
    os.environ[_RAY_CLUSTER_ENV] = "0"


def start_ray(nodes: int, temp: Path, object_store_bytes: int = 80 << 20) -> Any:
    """A simulated Ray cluster of ``nodes`` one-CPU nodes on 127.0.0.1 (Ray's files under
    ``temp``: keep it short, socket paths live there), this process connected; returns the
    ``ray.cluster_utils.Cluster`` (its ``shutdown()`` stops every process)."""
    bind_loopback()
    os.environ["RAY_TMPDIR"] = str(temp)
    import ray
    from ray.cluster_utils import Cluster as RayCluster

    node_args = {
        "num_cpus": 1,
        "object_store_memory": object_store_bytes,
        "node_ip_address": LOOPBACK,
    }
    cluster = RayCluster(
        initialize_head=True, head_node_args={**node_args, "include_dashboard": False}
    )
    try:
        for _ in range(nodes - 1):
            cluster.add_node(**node_args)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    except BaseException:
        cluster.shutdown()
        raise
    return cluster


@contextmanager
def ray_session(
    nodes: int, temp: Path, namespace: str, object_store_bytes: int = 80 << 20
) -> Iterator[Any]:
    """:func:`start_ray` for a ``with`` block: yields the Ray cluster; on exit stops the
    quiver cluster of ``namespace`` (its actors), this process's Ray connection and every Ray
    process, and removes ``temp``."""
    ray_cluster = start_ray(nodes, temp, object_store_bytes)
    try:
        yield ray_cluster
    finally:
        import ray

        import quiver.cluster

        quiver.cluster.shutdown(namespace)
        ray.shutdown()
        ray_cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def kill_node(node: str, namespace: str) -> None:
    """Kill the data node actor of quiver node ``node`` (Ray restarts it)."""
    import ray

    from quiver.cluster.calls import node_actor_name

    ray.kill(ray.get_actor(node_actor_name(node), namespace=namespace), no_restart=False)


def kill_random_node(cluster: Any, rng: random.Random, namespace: str) -> str:
    """Kill a random data node actor of the quiver ``cluster``; returns its name."""
    victim = rng.choice(cluster.nodes)
    kill_node(victim, namespace)
    return victim


def all_replicas_serving(cluster: Any, name: str) -> bool:
    """Every node answers and every replica of ``name`` is in sync, readable and not behind
    (the map alone is not enough: a follower that is restarting stays in the in-sync set
    until it answers, as no write failed on it during a read load)."""
    cluster.repair()
    info = cluster.cluster_info()
    if not all(info["nodes"].values()):
        return False
    for shard in info["collections"][name]["shards"]:
        states = shard["replicas"]
        if sorted(shard["in_sync"]) != sorted(states) or shard["catching_up"]:
            return False
        if not all(s and s.get("readable") and s.get("lag") == 0 for s in states.values()):
            return False
    return True


def wait_in_sync(cluster: Any, name: str, timeout_s: float = 300.0) -> float:
    """Seconds until every replica of ``name`` serves again (:func:`all_replicas_serving`)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            if all_replicas_serving(cluster, name):
                return time.monotonic() - t0
        except Exception:  # noqa: BLE001 - an actor is restarting: ask again
            pass
        time.sleep(0.5)
    raise TimeoutError(f"replicas of {name} not in sync after {timeout_s} s")
