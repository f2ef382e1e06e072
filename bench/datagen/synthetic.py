"""Synthetic vector sets generated from a seed (numpy only), for the applicability boundary.

The paper reports that 2-bit navigation collapses on uniform random data (0.4 % recall@10 at
ef=64) and is poor on a low-rank synthetic set (42 %); these generators give the project its
own versions of both regimes.

Every generator draws from independent streams of ``np.random.SeedSequence(seed).spawn(3)``:
stream 0 for shared structure (the low-rank basis), stream 1 for the train rows, stream 2 for
the query rows. Rows are filled in order, so the first ``m`` train rows do not depend on how
many rows were asked for, and queries come from the same distribution as train rows but are
never among them.
"""

from __future__ import annotations

import numpy as np

DIM = 384
SEED = 0
LOWRANK_RANK = 32
LOWRANK_NOISE = 0.1


def _streams(seed: int) -> list[np.random.Generator]:
    """Three independent generators: structure, train rows, query rows."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Scale every row to unit L2 norm, as float32."""
    x = np.asarray(x, dtype=np.float64)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def random_sphere(
    n_train: int, n_test: int, dim: int = DIM, seed: int = SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform points on the unit sphere S^(dim-1): i.i.d. N(0, 1) rows, normalised.

    Returns ``(train, test)``, float32 of shapes (n_train, dim) and (n_test, dim). This is
    the "uniform random" regime: no structure for any index to exploit.
    """
    _, rng_train, rng_test = _streams(seed)
    train = _unit_rows(rng_train.standard_normal((n_train, dim)))
    test = _unit_rows(rng_test.standard_normal((n_test, dim)))
    return train, test


def lowrank_basis(dim: int = DIM, rank: int = LOWRANK_RANK, seed: int = SEED) -> np.ndarray:
    """A random orthonormal basis of a ``rank``-dimensional subspace: float64 (rank, dim).

    The QR factor of a (dim, rank) N(0, 1) matrix drawn from the structure stream, with the
    signs fixed so that R has a positive diagonal (a unique, Haar-distributed basis).
    """
    rng, _, _ = _streams(seed)
    q, r = np.linalg.qr(rng.standard_normal((dim, rank)))
    return (q * np.sign(np.diag(r))).T


def _lowrank_rows(rng: np.random.Generator, n: int, basis: np.ndarray, noise: float) -> np.ndarray:
    """``n`` unit rows: N(0, I_rank) coefficients times ``basis`` plus isotropic noise."""
    rank, dim = basis.shape
    coeffs = rng.standard_normal((n, rank))
    # per-coordinate noise std so that E|noise|^2 = noise^2 * E|signal|^2 = noise^2 * rank
    sigma = noise * np.sqrt(rank / dim)
    x = coeffs @ basis + sigma * rng.standard_normal((n, dim))
    return _unit_rows(x)


def lowrank(
    n_train: int,
    n_test: int,
    dim: int = DIM,
    rank: int = LOWRANK_RANK,
    noise: float = LOWRANK_NOISE,
    seed: int = SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """Low-rank Gaussian data in ``dim`` dimensions, unit-normalised (for cosine search).

    Each row is ``c @ B + e``, normalised to unit length, where ``B`` is
    :func:`lowrank_basis` (``rank`` orthonormal rows of length ``dim``, shared by train and
    queries), ``c ~ N(0, I_rank)`` and ``e ~ N(0, sigma^2 I_dim)`` with
    ``sigma = noise * sqrt(rank / dim)``, so the noise carries ``noise^2`` of the signal's
    energy (defaults: rank 32, noise 0.1, i.e. 1 %). Returns ``(train, test)`` float32.
    """
    basis = lowrank_basis(dim, rank, seed)
    _, rng_train, rng_test = _streams(seed)
    train = _lowrank_rows(rng_train, n_train, basis, noise)
    test = _lowrank_rows(rng_test, n_test, basis, noise)
    return train, test
