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
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

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


@intrinsic
def prefetch(typingctx, array, row, col):  # noqa: ARG001 - numba intrinsic signature
    """Hint the CPU to load ``array[row, col]``'s cache line (LLVM ``llvm.prefetch``, read,
    keep in all cache levels). Never faults, whatever the address."""
    if not isinstance(array, types.Array) or array.ndim != 2:
        return None

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        arr = context.make_array(array_type)(context, builder, args[0])
        row_i = context.cast(builder, args[1], signature.args[1], types.intp)
        col_i = context.cast(builder, args[2], signature.args[2], types.intp)
        ptr = cgutils.get_item_pointer(context, builder, array_type, arr, [row_i, col_i])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(array, row, col), codegen


@njit(cache=True, nogil=True, inline="always")
def prefetch_row(array: np.ndarray, row: int) -> None:
    """Prefetch every 64-byte cache line of ``array[row]``."""
    last = array.shape[1] - 1
    step = max(1, 64 // array.itemsize)
    for col in range(0, last, step):
        prefetch(array, row, col)
    prefetch(array, row, last)


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


@njit(cache=True, nogil=True, inline="always")
def query_code_distance(planes: np.ndarray, params: np.ndarray, b: np.ndarray, words: int) -> float:
    """Asymmetric distance ``-sum_i x_i * v_i`` of a quantised query to a code row.

    ``planes`` (QUERY_BITS * words,) and ``params`` ``(lo, delta, sum x)`` come from
    :func:`quiver.engine.bq.encode_queries`; ``v_i = s_i m_i`` with ``s_i`` the sign and ``m_i`` 1
    (weak) or ``STRONG_WEIGHT = 3`` (strong). The four values of ``v`` are ``-1 + 4 p - 2 t``
    with ``p`` the sign bit and ``t = p ^ strong``, so two masks suffice:
    ``sum_i x_i v_i = -X(all) + 4 X(p) - 2 X(t)`` with
    ``X(mask) = lo * |mask| + delta * sum_j 2^j PC(mask & plane_j)``: 10 popcounts per word
    (the three-mask form, with ``X(strong)`` and ``X(p & strong)``, took 15). ``planes`` are
    interleaved by word (``planes[4 w + j]``), four planes (``QUERY_BITS``) assumed.
    """
    count = 0  # 2 PC(p) - PC(t)
    weighted = 0  # sum_j 2^j (2 PC(p & plane_j) - PC(t & plane_j))
    for w in range(words):
        pos = b[w]
        flip = pos ^ b[words + w]
        count += 2 * popcount(pos) - popcount(flip)
        # the four planes of word w, unrolled: LLVM turns them into vector popcounts
        p0 = planes[4 * w]
        p1 = planes[4 * w + 1]
        p2 = planes[4 * w + 2]
        p3 = planes[4 * w + 3]
        weighted += 2 * popcount(pos & p0) - popcount(flip & p0)
        weighted += 4 * popcount(pos & p1) - 2 * popcount(flip & p1)
        weighted += 8 * popcount(pos & p2) - 4 * popcount(flip & p2)
        weighted += 16 * popcount(pos & p3) - 8 * popcount(flip & p3)
    return params[2] - 2.0 * (params[0] * count + params[1] * weighted)


@njit(cache=True, nogil=True)
def encode_query(x: np.ndarray, planes: np.ndarray, params: np.ndarray) -> None:
    """Kernel form of :func:`quiver.engine.bq.encode_queries` for one query (same values, no
    Python overhead): fills ``planes`` (QUERY_BITS * W,) uint64 and ``params`` (3,) float64.

    Each word's four planes are built in registers and stored once: setting bits in the
    array one by one took 7 us per 384-d query, this takes 0.5 us (bench/results/PERF.md)."""
    dim = x.shape[0]
    lo = x[0]
    hi = x[0]
    for i in range(dim):
        lo = min(lo, x[i])
        hi = max(hi, x[i])
    lo64 = np.float64(lo)
    delta = (np.float64(hi) - lo64) / 15.0 if hi > lo else 1.0
    total = 0
    for w in range(planes.shape[0] // 4):
        p0 = np.uint64(0)
        p1 = np.uint64(0)
        p2 = np.uint64(0)
        p3 = np.uint64(0)
        base = w * 64
        for b in range(min(64, dim - base)):
            u = np.int64(np.rint((np.float64(x[base + b]) - lo64) / delta))
            total += u
            bit = np.uint64(b)
            p0 |= np.uint64(u & 1) << bit
            p1 |= np.uint64((u >> 1) & 1) << bit
            p2 |= np.uint64((u >> 2) & 1) << bit
            p3 |= np.uint64((u >> 3) & 1) << bit
        planes[4 * w] = p0
        planes[4 * w + 1] = p1
        planes[4 * w + 2] = p2
        planes[4 * w + 3] = p3
    params[0] = lo64
    params[1] = delta
    params[2] = lo64 * dim + delta * total


def navigation_distance(query, row, words, dim):  # noqa: ARG001 - typed by the overload below
    """Distance used to navigate the graph, chosen by the query's type at compile time.

    A code row (uint64 array) gives the symmetric code distance (graph construction); a
    ``(planes, params)`` tuple from ``encode_queries`` gives the asymmetric query distance.
    Only callable from jitted code.
    """
    raise NotImplementedError


@overload(navigation_distance)
def _navigation_distance(query, row, words, dim):  # noqa: ARG001
    if isinstance(query, types.Array):

        def symmetric(query, row, words, dim):
            return code_distance(query, row, words, dim)

        return symmetric
    if isinstance(query, types.BaseTuple):

        def asymmetric(query, row, words, dim):
            return query_code_distance(query[0], query[1], row, words)

        return asymmetric
    return None


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


@njit(cache=True, nogil=True)
def normalize_rows(x: np.ndarray) -> None:
    """Scale each float32 row of ``x`` to unit length in place (sum of squares in float64);
    all-zero rows stay zero. One call costs under 1 us for a single query, against ~3.5 us
    for ``x / np.linalg.norm(x, axis=1, keepdims=True)``: it is on every cosine query's path."""
    for i in range(x.shape[0]):
        total = 0.0
        for j in range(x.shape[1]):
            total += np.float64(x[i, j]) * np.float64(x[i, j])
        if total > 0.0:
            scale = np.float32(1.0 / np.sqrt(total))
            for j in range(x.shape[1]):
                x[i, j] *= scale


# The float kernels below are not ``inline="always"``: Numba inlines such a function into its
# caller's IR and compiles it with the caller's flags, so without the caller's ``fastmath`` the
# sum became one serial chain of float adds (~310 ns per 384-d row in the rerank instead of
# ~33 ns, bench/results/PERF.md). Left to LLVM's own inlining, their instructions keep the
# fast-math flags that let the loop vectorise.
@njit(cache=True, nogil=True, fastmath=True)
def dot_f32(q: np.ndarray, x: np.ndarray) -> float:
    """Dot product of two float32 vectors (accumulated in float32, vectorised)."""
    acc = np.float32(0.0)
    for i in range(q.shape[0]):
        acc += q[i] * x[i]
    return acc


@njit(cache=True, nogil=True, fastmath=True)
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
