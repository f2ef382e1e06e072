"""Training-free 2-bit sign-magnitude (SM) codes.

Each vector ``x`` of dimension ``D`` becomes two bit-planes of ``W = ceil(D / 64)`` uint64 words:

* threshold ``tau = mean_i |x_i|`` (per vector, no training);
* sign plane:      bit ``pos_i = 1`` if ``x_i > 0`` (zero counts as negative);
* magnitude plane: bit ``strong_i = 1`` if ``|x_i| > tau``.

Bit ``j`` of word ``w`` holds dimension ``64 * w + j``; bits past ``D`` (the tail) are zero.
A code row is ``[pos words | strong words]``: ``2 * W`` uint64, i.e. ``D / 4`` bytes rounded up
to whole words, 1/16 of the float32 vector. Equivalently each coordinate becomes
``v_i = (2 * pos_i - 1) * (1 + strong_i)`` in ``{-2, -1, +1, +2}``.

>>> import numpy as np
>>> codes = encode(np.array([[0.5, -2.0, 0.1]], dtype=np.float32))
>>> tau = (0.5 + 2.0 + 0.1) / 3          # 0.8667: only |-2.0| is strong
>>> int(codes[0, 0]), int(codes[0, 1])   # pos plane: dims 0 and 2 -> 0b101; strong: dim 1 -> 0b010
(5, 2)
>>> code_values(codes, 3).tolist()
[[1, -2, 1]]
"""

from __future__ import annotations

import functools

import numpy as np

WORD_BITS = 64
_ENCODE_CHUNK_ROWS = 4096


def words_per_plane(dim: int) -> int:
    """Number of uint64 words in one bit-plane of a ``dim``-dimensional code."""
    return (dim + WORD_BITS - 1) // WORD_BITS


def code_bytes(dim: int) -> int:
    """Bytes of one stored code (both planes)."""
    return 2 * 8 * words_per_plane(dim)


def _pack_plane(bits: np.ndarray, words: int) -> np.ndarray:
    """Pack a boolean (m, D) plane into (m, words) uint64, bit j of word w = dim 64w + j."""
    m, dim = bits.shape
    padded = np.zeros((m, words * WORD_BITS), dtype=bool)
    padded[:, :dim] = bits
    packed = np.packbits(padded, axis=1, bitorder="little")
    return packed.view("<u8").astype(np.uint64, copy=False)


def random_rotation(dim: int, seed: int = 0) -> np.ndarray:
    """A seeded random orthogonal (dim, dim) float32 matrix (QR of a Gaussian, signs fixed).

    Rotating centred data before encoding spreads each direction's variance over all
    coordinates, so that skewed, sparse or unevenly scaled coordinates (SIFT) still give
    informative sign and magnitude bits. Distances are unchanged by it; only the codes are.
    Cached per ``(dim, seed)``; the returned array is read-only.
    """
    return _rotation(int(dim), int(seed))


@functools.lru_cache(maxsize=8)
def _rotation(dim: int, seed: int) -> np.ndarray:
    g = np.random.default_rng([seed, dim]).standard_normal((dim, dim), dtype=np.float32)
    q, r = np.linalg.qr(g)
    out = (q * np.where(np.diag(r) < 0, -1.0, 1.0).astype(np.float32)).astype(np.float32)
    out.flags.writeable = False
    return out


def transform(
    x: np.ndarray, center: np.ndarray | None = None, rotation: np.ndarray | None = None
) -> np.ndarray:
    """``(x - center) @ rotation`` (either step skipped when None), float32: the vectors that
    data-adaptive codes and navigation queries are made of."""
    y = np.asarray(x, dtype=np.float32)
    if center is not None:
        y = y - center
    if rotation is not None:
        y = y @ rotation
    return np.ascontiguousarray(y, dtype=np.float32)


def encode(
    vectors: np.ndarray,
    out: np.ndarray | None = None,
    center: np.ndarray | None = None,
    rotation: np.ndarray | None = None,
) -> np.ndarray:
    """Encode float vectors (n, D) into 2-bit SM codes (n, 2 * W) uint64.

    Works in chunks of rows so that temporary memory stays a small constant multiple of one
    chunk, not of the whole input: encoding 1M x 768 needs a few tens of MB beyond the output.
    ``out`` may be a preallocated (n, 2 * W) uint64 array to fill in place. With ``center``
    (D,) and/or ``rotation`` (D, D) the codes are those of :func:`transform` ``(x)``
    (data-adaptive coding for offset or non-negative data, see :mod:`quiver.quality.diagnose`).
    """
    x = np.asarray(vectors)
    n, dim = x.shape
    words = words_per_plane(dim)
    if out is None:
        out = np.empty((n, 2 * words), dtype=np.uint64)
    for start in range(0, n, _ENCODE_CHUNK_ROWS):
        chunk = transform(x[start : start + _ENCODE_CHUNK_ROWS], center, rotation)
        magnitude = np.abs(chunk)
        tau = magnitude.mean(axis=1, keepdims=True)
        stop = start + chunk.shape[0]
        out[start:stop, :words] = _pack_plane(chunk > 0, words)
        out[start:stop, words:] = _pack_plane(magnitude > tau, words)
    return out


def code_values(codes: np.ndarray, dim: int) -> np.ndarray:
    """Decode codes (n, 2 * W) to their coordinate values in {-2, -1, 1, 2}, shape (n, dim) int8.

    A reference/debugging view (plain numpy, not a hot path).
    """
    codes = np.ascontiguousarray(codes, dtype=np.uint64)
    words = codes.shape[1] // 2

    def unpack(plane: np.ndarray) -> np.ndarray:
        as_bytes = plane.astype("<u8").view(np.uint8)
        return np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :dim].astype(np.int8)

    pos = unpack(codes[:, :words])
    strong = unpack(codes[:, words:])
    return ((2 * pos - 1) * (1 + strong)).astype(np.int8)


def reference_distance(a: np.ndarray, b: np.ndarray, dim: int) -> np.ndarray:
    """Plain-numpy ``4 * D - sum_i v_a,i * v_b,i`` for every pair of rows (len(a), len(b))."""
    va = code_values(a, dim).astype(np.int64)
    vb = code_values(b, dim).astype(np.int64)
    return 4 * dim - va @ vb.T


#: Bits per coordinate of the quantised query used for asymmetric navigation.
QUERY_BITS = 4
#: Magnitude of a strong coordinate relative to a weak one in the asymmetric estimate. For a
#: Gaussian-like coordinate, E[|x| | |x| > tau] / E[|x| | |x| <= tau] is about 3.8 with
#: tau = mean |x|; 3 ranked best on MiniLM (bench notes in bench/results/PERF.md).
STRONG_WEIGHT = 3


def encode_queries(queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantise float queries (q, D) to ``QUERY_BITS``-bit bit-planes for asymmetric distances.

    The plain-numpy reference of the search kernel's ``kernels.encode_query`` (tests compare
    the two); the search itself encodes inside the kernel to avoid per-call overhead.

    Each query is mapped affinely to integers ``u_i in [0, 2**QUERY_BITS - 1]`` with
    ``x_i ~ lo + delta * u_i``; bit-plane ``j`` holds bit ``j`` of every ``u_i`` (same word and bit
    layout as the codes), and the planes are interleaved by word: ``planes[:, w * QUERY_BITS + j]``
    is word ``w`` of plane ``j``, so that the distance kernel reads one word's planes together
    (see :func:`query_bit_plane`). Returns ``planes`` (q, QUERY_BITS * W) uint64 and ``params``
    (q, 3) float64 holding ``lo``, ``delta`` and ``sum_i x_i`` (of the dequantised values).
    """
    q = np.asarray(queries, dtype=np.float32)
    n, dim = q.shape
    words = words_per_plane(dim)
    levels = 2**QUERY_BITS - 1
    lo = q.min(axis=1).astype(np.float64)
    span = q.max(axis=1).astype(np.float64) - lo
    delta = np.where(span > 0, span / levels, 1.0)
    u = np.rint((q - lo[:, None]) / delta[:, None]).astype(np.uint8)
    planes = np.empty((n, words, QUERY_BITS), dtype=np.uint64)
    for j in range(QUERY_BITS):
        planes[:, :, j] = _pack_plane(((u >> j) & 1).astype(bool), words)
    total = lo * dim + delta * u.sum(axis=1, dtype=np.int64)
    return planes.reshape(n, words * QUERY_BITS), np.stack([lo, delta, total], axis=1)


def query_bit_plane(planes: np.ndarray, j: int) -> np.ndarray:
    """Bit-plane ``j`` (q, W) of query planes from :func:`encode_queries`, words in order."""
    return np.ascontiguousarray(planes.reshape(planes.shape[0], -1, QUERY_BITS)[:, :, j])
