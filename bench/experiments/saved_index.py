"""The set's default index, built once and saved, shared by the A/B experiments."""

from __future__ import annotations

from pathlib import Path

import quiver
from bench.harness.datasets import AnnDataset, data_dir


def saved_default_index(name: str, ds: AnnDataset, path: Path | None = None) -> quiver.Index:
    """Open the default index of set ``name`` saved at ``path`` (default: under the data cache,
    ``cpu-ab-index/<name>``), building and saving it first if it is not there: every checkout
    and experiment then searches the very same graph."""
    path = path or data_dir() / "cpu-ab-index" / name
    if not path.exists():
        index = quiver.Index(ds.train.shape[1], "cosine", num_threads=2)
        index.add(ds.train)
        index.save(path)
    return quiver.Index.open(path)
