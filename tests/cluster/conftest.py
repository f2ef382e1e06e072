"""One simulated 3-node Ray cluster per test module (startup takes seconds: shared).

Ray's sockets, logs and spill files go under a short temporary directory (``RAY_TMPDIR``),
removed on teardown with every process the cluster started.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

#: Object store of each simulated node: small, the tests move a few MB.
OBJECT_STORE_BYTES = 80 << 20


@pytest.fixture(scope="module")
def ray_cluster():
    """A head and two more simulated nodes on 127.0.0.1, one CPU each; yields the
    ``ray.cluster_utils.Cluster``, with this process connected to it."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster as RayCluster

    temp = Path(tempfile.mkdtemp(prefix="qr-"))  # short: Ray's socket paths live under it
    saved = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = str(temp)
    node_args = {"num_cpus": 1, "object_store_memory": OBJECT_STORE_BYTES}
    cluster = RayCluster(
        initialize_head=True,
        head_node_args={**node_args, "include_dashboard": False},
    )
    try:
        for _ in range(2):
            cluster.add_node(**node_args)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        if saved is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = saved
        shutil.rmtree(temp, ignore_errors=True)
