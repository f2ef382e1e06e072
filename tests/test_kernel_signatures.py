"""Each Numba kernel compiles for one signature on the serving path: warm-up, upserts,
searches (one vector, a batch, filtered, with vectors), deletes and a checkpoint add none.
A second signature would be a second compile at start-up (minutes with a cold cache) and a
second entry in the docker image's warmed cache. Checked in a fresh process: other tests call
kernels in their own ways."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_SERVING = """
import json, sys
import numpy as np
from numba.core.registry import CPUDispatcher
import quiver

quiver.warmup()
rng = np.random.default_rng(0)
x = rng.standard_normal((600, 24)).astype(np.float32)
with quiver.Database(sys.argv[1]) as db:
    coll = db.create_collection("c", 24, "cosine")
    coll.upsert(list(range(600)), x, [{"pos": "noun" if i % 2 else "verb"} for i in range(600)])
    coll.search(x[0], k=10, ef=64)
    coll.search(x[0], k=5, filter={"must": [{"key": "pos", "match": {"value": "noun"}}]})
    coll.search_batch(x[:4], k=3)
    coll.search(x[1], k=3, with_vector=True)
    coll.delete([1, 2])
    coll.upsert([1], x[1:2])
    coll.checkpoint()
signatures = {}
for name, module in list(sys.modules.items()):
    if name == "quiver" or name.startswith("quiver."):
        for value in vars(module).values():
            if isinstance(value, CPUDispatcher):
                key = value.py_func.__module__ + "." + value.py_func.__qualname__
                signatures[key] = [str(s) for s in value.signatures]
print(json.dumps(signatures))
"""


def test_serving_compiles_each_kernel_once(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _SERVING, str(tmp_path / "db")],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    signatures = json.loads(out.strip().splitlines()[-1])
    compiled = {name for name, s in signatures.items() if s}
    # the serving path's entry kernels were found (kernels they call compile inside them)
    entries = {"quiver.engine.search.search_serial", "quiver.engine.graph.link_batch"}
    assert entries <= compiled, compiled
    several = {name: s for name, s in signatures.items() if len(s) > 1}
    assert not several, several
