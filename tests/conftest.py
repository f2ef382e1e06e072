"""Shared fixtures: the bundled real-data slice (synthetic data: tests/lowrank.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def wordnet():
    """The committed MiniLM-on-WordNet slice (20k train, 1k held-out queries, 384-d)."""
    from bench.harness.bundled import load_wordnet_slice

    return load_wordnet_slice()
