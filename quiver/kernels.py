"""Numba kernels: popcount, the 2-bit code distance and exact float32 distances.

All kernels are module-level ``@njit(cache=True, nogil=True)`` functions over plain arrays, so
they compile once, are cached on disk and release the GIL.

Code distance (DESIGN.md section 1). With ``v_i = (2 pos_i - 1)(1 + strong_i)`` and
``dist(a, b) = 4 D - sum_i v_a,i v_b,i``, writing ``m = 1 + s`` for the magnitudes gives
``m_a m_b = 1 + s_a + s_b + s_a s_b``, hence with ``diff = pos_a ^ pos_b`` and ``PC`` a popcount
over all words::

    dist = 3 D - S_a - S_b - PC(s_a & s_b)
           + 2 PC(diff) + 2 PC((s_a ^ s_b) & diff) + 6 PC(s_a & s_b & diff)

where ``S_x = PC(s_x)``. Zero tail bits cancel exactly (they add 0 to every term), so the value
is the true ``4 D - sum v_a v_b`` with no offset to subtract.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from quiver.metrics import Metric

METRIC_COSINE = int(Metric.COSINE)
METRIC_IP = int(Metric.IP)
METRIC_L2 = int(Metric.L2)


@intrinsic
def popcount(typingctx, x):  # noqa: ARG001 - numba intrinsic signature
    """Population count of a uint64 through LLVM's ``ctpop`` (the hardware POPCNT)."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.int64(types.uint64), codegen


@njit(cache=True, nogil=True, inline="always")
def strong_count(code: np.ndarray, words: int) -> int:
    """Number of strong (magnitude) bits of one code row."""
    total = 0
    for w in range(words):
        total += popcount(code[words + w])
    return total


@njit(cache=True, nogil=True, inline="always")
def code_distance(a: np.ndarray, b: np.ndarray, words: int, dim: int) -> int:
    """``4 D - sum v_a v_b`` between two code rows of length ``2 * words`` (uint64)."""
    s = 0
    for w in range(words):
        sa = a[words + w]
        sb = b[words + w]
        diff = a[w] ^ b[w]
        both = sa & sb
        s += popcount(sa) + popcount(sb) + popcount(both)
        s -= 2 * popcount(diff) + 2 * popcount((sa ^ sb) & diff) + 6 * popcount(both & diff)
    return 3 * dim - s


@njit(cache=True, nogil=True)
def code_distance_kernel(a: np.ndarray, b: np.ndarray, words: int, dim: int) -> int:
    """Non-inlined entry point of :func:`code_distance` (tests, ``inspect_asm``)."""
    return code_distance(a, b, words, dim)


@njit(cache=True, nogil=True)
def code_distances_to(
    query: np.ndarray, codes: np.ndarray, rows: np.ndarray, dim: int, out: np.ndarray
) -> None:
    """Distances from one code row to ``codes[rows]``, written to ``out`` (int32/int64)."""
    words = codes.shape[1] // 2
    for i in range(rows.shape[0]):
        out[i] = code_distance(query, codes[rows[i]], words, dim)


@njit(cache=True, nogil=True)
def code_distance_matrix(a: np.ndarray, b: np.ndarray, dim: int) -> np.ndarray:
    """All-pairs code distances (len(a), len(b)) as int64."""
    words = a.shape[1] // 2
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.int64)
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            out[i, j] = code_distance(a[i], b[j], words, dim)
    return out


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def dot_f32(q: np.ndarray, x: np.ndarray) -> float:
    """Dot product of two float32 vectors (accumulated in float32, vectorised)."""
    acc = np.float32(0.0)
    for i in range(q.shape[0]):
        acc += q[i] * x[i]
    return acc


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def l2sq_f32(q: np.ndarray, x: np.ndarray) -> float:
    """Squared Euclidean distance of two float32 vectors."""
    acc = np.float32(0.0)
    for i in range(q.shape[0]):
        t = q[i] - x[i]
        acc += t * t
    return acc


@njit(cache=True, nogil=True, inline="always")
def float_distance(metric: int, q: np.ndarray, x: np.ndarray) -> float:
    """Exact user-facing distance: cosine ``1 - q.x`` (unit vectors), ip ``-q.x``, l2 squared."""
    if metric == METRIC_L2:
        return l2sq_f32(q, x)
    if metric == METRIC_IP:
        return -dot_f32(q, x)
    return np.float32(1.0) - dot_f32(q, x)
