"""The exact float distances of the rerank compile to vector instructions.

Numba compiles a function marked ``inline="always"`` into its caller's IR with the caller's
flags: the float kernels were inlined that way, lost their ``fastmath`` and summed each row in
one serial chain (~310 ns per 384-d row instead of ~33 ns). The check reads the LLVM IR of a
fresh compile (an empty ``NUMBA_CACHE_DIR``, in a child process: a kernel loaded from the disk
cache carries no IR) and looks for fast-math float vector arithmetic.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

_RERANK_IR = """
import numpy as np
from numba.typed import List
from quiver.engine.rerank import rerank_top_k

rows = np.ones((5, 70), np.float32)
segments = List()
segments.append(rows)
out_ids = np.empty(2, np.int64)
out_dists = np.empty(2, np.float32)
rerank_top_k(np.ones(70, np.float32), np.arange(5, dtype=np.int64), 0, segments,
             np.array([0, 5], np.int64), np.arange(5, dtype=np.int64), out_ids, out_dists)
(ir,) = rerank_top_k.inspect_llvm().values()
print(ir)
"""

#: ``fmul fast <8 x float>`` and the like: a fast-math operation on a float vector
_FAST_VECTOR = re.compile(r"\b(f(?:mul|add|sub)) fast <\d+ x float>")


def test_rerank_distances_are_vectorised(tmp_path: Path) -> None:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    ir = subprocess.run(
        [sys.executable, "-c", _RERANK_IR],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
        env=env,
    ).stdout
    ops = {m.group(1) for m in _FAST_VECTOR.finditer(ir)}
    # fmul/fadd: the dot product (cosine, ip); fsub: the l2 difference
    assert ops >= {"fmul", "fadd", "fsub"}, f"fast vector float ops in the rerank IR: {ops}"
