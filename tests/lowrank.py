"""Seeded synthetic data shared by the tests (a module of its own: test folders each have a
conftest.py, so importing from ``conftest`` is ambiguous)."""

from __future__ import annotations

import numpy as np


def low_rank_data(n: int, dim: int, rank: int = 16, seed: int = 0) -> np.ndarray:
    """Seeded low-rank Gaussian data plus small noise: structured enough for 2-bit codes."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((rank, dim)).astype(np.float32)
    x = rng.standard_normal((n, rank)).astype(np.float32) @ basis
    return (x + 0.1 * rng.standard_normal((n, dim))).astype(np.float32)
