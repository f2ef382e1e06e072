"""One simulated 3-node Ray cluster per test module (startup takes seconds: shared).

Every Ray process listens on 127.0.0.1 only (:func:`bench.measure.ray_sim.bind_loopback`,
called here before any test module imports Ray). Ray's sockets, logs and spill files go under
a short temporary directory (``RAY_TMPDIR``), removed on teardown with every process the
cluster started.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from bench.measure.ray_sim import LOOPBACK, bind_loopback, start_ray

bind_loopback()

#: Object store of each simulated node: small, the tests move a few MB.
OBJECT_STORE_BYTES = 80 << 20


@pytest.fixture(scope="module")
def ray_cluster():
    """A head and two more simulated nodes on 127.0.0.1, one CPU each; yields the
    ``ray.cluster_utils.Cluster``, with this process connected to it."""
    ray = pytest.importorskip("ray")
    temp = Path(tempfile.mkdtemp(prefix="qr-"))  # short: Ray's socket paths live under it
    saved = os.environ.get("RAY_TMPDIR")
    try:
        cluster = start_ray(3, temp, OBJECT_STORE_BYTES)
        try:
            assert all(n["NodeManagerAddress"] == LOOPBACK for n in ray.nodes()), ray.nodes()
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()
    finally:
        if saved is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = saved
        shutil.rmtree(temp, ignore_errors=True)
