"""2-bit sign-magnitude codes and the code distance against a plain-numpy reference."""

from __future__ import annotations

import re

import numba
import numpy as np
import pytest

from quiver.engine import bq
from quiver.engine.kernels import code_distance_kernel, code_distance_matrix, code_distances_to

DIMS = [1, 3, 63, 64, 65, 97, 384, 768, 3072]


def _special_rows(dim: int, rng: np.random.Generator) -> np.ndarray:
    """Random rows plus zero, constant, negated, duplicated and tied rows."""
    x = rng.standard_normal((24, dim)).astype(np.float32)
    x[0] = 0.0
    x[1] = 1.0
    x[2] = -3.0
    x[3] = x[4]
    x[5] = -x[6]
    x[7] = 2.0 * x[8]  # same code as row 8 (scale invariance)
    x[9] = np.sign(x[10])  # all equal magnitudes: no strong bits
    return x


@pytest.mark.parametrize("dim", DIMS)
def test_code_distance_matches_numpy_reference(dim: int) -> None:
    rng = np.random.default_rng(dim)
    codes = bq.encode(_special_rows(dim, rng))
    got = code_distance_matrix(codes, codes, dim)
    want = bq.reference_distance(codes, codes, dim)
    np.testing.assert_array_equal(got, want)
    assert got.min() >= 0 and got.max() <= 8 * dim
    np.testing.assert_array_equal(got, got.T)  # symmetric


@pytest.mark.parametrize("dim", [3, 97, 384])
def test_code_distances_to_rows(dim: int) -> None:
    rng = np.random.default_rng(1)
    codes = bq.encode(rng.standard_normal((50, dim)).astype(np.float32))
    rows = rng.integers(0, 50, 30).astype(np.int32)
    out = np.empty(30, dtype=np.int64)
    code_distances_to(codes[7], codes, rows, dim, out)
    np.testing.assert_array_equal(out, bq.reference_distance(codes[7:8], codes[rows], dim)[0])


def test_encoding_follows_the_definition() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((10, 130)).astype(np.float32)
    x[0, :5] = 0.0
    values = bq.code_values(bq.encode(x), 130)
    tau = np.abs(x).mean(axis=1, keepdims=True)
    sign = np.where(x > 0, 1, -1)
    magnitude = np.where(np.abs(x) > tau, 2, 1)
    np.testing.assert_array_equal(values, sign * magnitude)
    assert (values[0, :5] == -1).all()  # zero counts as negative, weak


def test_tail_bits_are_zero_and_layout_is_two_planes() -> None:
    x = np.ones((1, 65), dtype=np.float32)
    x[0, 64] = 5.0
    codes = bq.encode(x)
    assert codes.shape == (1, 4) and codes.dtype == np.uint64
    pos, strong = codes[0, :2], codes[0, 2:]
    assert pos[0] == np.uint64(2**64 - 1) and pos[1] == 1  # dim 64 is bit 0 of word 1
    assert strong[0] == 0 and strong[1] == 1  # only dim 64 exceeds tau
    assert bq.code_bytes(384) == 96 and bq.code_bytes(768) == 192


def test_zero_vector_is_all_negative_weak_and_self_distance_is_3d() -> None:
    codes = bq.encode(np.zeros((1, 100), dtype=np.float32))
    assert not codes.any()
    assert code_distance_matrix(codes, codes, 100)[0, 0] == 3 * 100


def test_chunked_encoding_equals_one_shot(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(3).standard_normal((1000, 77)).astype(np.float32)
    whole = bq.encode(x)
    monkeypatch.setattr(bq, "_ENCODE_CHUNK_ROWS", 64)
    np.testing.assert_array_equal(bq.encode(x), whole)


def test_distance_kernel_uses_hardware_popcount() -> None:
    codes = bq.encode(np.random.default_rng(4).standard_normal((2, 384)).astype(np.float32))
    # a fresh, uncached dispatcher of the same kernel: Numba cannot inspect cached machine code
    kernel = numba.njit(nogil=True)(code_distance_kernel.py_func)
    assert kernel(codes[0], codes[1], 6, 384) == code_distance_kernel(codes[0], codes[1], 6, 384)
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        has_popcnt = " popcnt" in fh.read()
    if not has_popcnt:
        pytest.skip("this CPU has no POPCNT instruction")
    asm = "\n".join(kernel.inspect_asm().values())
    assert re.search(r"\bv?popcnt[qwl]?\b", asm), (
        "no popcnt instruction in the kernel's machine code"
    )


def _query_levels(planes: np.ndarray, dim: int) -> np.ndarray:
    """The integer levels u_i (q, dim) held in query bit-planes, decoded with plain numpy."""
    levels = np.zeros((planes.shape[0], dim), dtype=np.int64)
    for j in range(bq.QUERY_BITS):
        plane = bq.query_bit_plane(planes, j).astype("<u8")
        bits = np.unpackbits(plane.view(np.uint8), axis=1, bitorder="little")[:, :dim]
        levels += bits.astype(np.int64) << j
    return levels


@pytest.mark.parametrize("dim", [1, 3, 64, 97, 384])
def test_query_encoding_kernel_matches_numpy_and_bounds_the_error(dim: int) -> None:
    from quiver.engine.kernels import encode_query

    x = np.random.default_rng(dim).standard_normal((20, dim)).astype(np.float32)
    x[0] = 0.5  # constant query: delta falls back to 1
    planes, params = bq.encode_queries(x)
    for i in range(20):
        got_planes = np.empty(planes.shape[1], dtype=np.uint64)
        got_params = np.empty(3)
        encode_query(x[i], got_planes, got_params)
        np.testing.assert_array_equal(got_planes, planes[i])
        np.testing.assert_allclose(got_params, params[i], rtol=1e-12)
    # dequantised values are within half a step of the originals
    u = _query_levels(planes, dim)
    approx = params[:, :1] + params[:, 1:2] * u
    assert np.all(np.abs(approx - x) <= params[:, 1:2] / 2 + 1e-6)


def test_asymmetric_distance_matches_its_definition() -> None:
    from quiver.engine.kernels import query_code_distance

    rng = np.random.default_rng(5)
    dim = 130
    x = rng.standard_normal((40, dim)).astype(np.float32)
    q = rng.standard_normal((3, dim)).astype(np.float32)
    codes = bq.encode(x)
    planes, params = bq.encode_queries(q)
    words = bq.words_per_plane(dim)
    values = bq.code_values(codes, dim).astype(np.float64)
    weights = np.sign(values) * np.where(np.abs(values) == 2, bq.STRONG_WEIGHT, 1)
    u = _query_levels(planes, dim)
    dequantised = params[:, :1] + params[:, 1:2] * u
    want = -(dequantised @ weights.T)
    for i in range(3):
        for r in range(40):
            got = query_code_distance(planes[i], params[i], codes[r], words)
            assert got == pytest.approx(want[i, r], rel=1e-9, abs=1e-9)


def test_normalize_rows_matches_numpy_and_keeps_zero_rows() -> None:
    from quiver.engine.kernels import normalize_rows

    rng = np.random.default_rng(11)
    x = rng.standard_normal((50, 97)).astype(np.float32)
    x[3] = 0.0  # a zero vector stays zero (cosine of it is defined as 0 by the search)
    x[7] *= 1e30  # large but finite: the sum of squares is taken in float64
    x[9] *= 1e-30
    want = x / np.where((n := np.linalg.norm(x.astype(np.float64), axis=1)) == 0, 1, n)[:, None]
    got = x.copy()
    normalize_rows(got)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert not got[3].any()
