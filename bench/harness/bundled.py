"""Load the small real-data slices committed under ``bench/data/``.

Needs only numpy and pyarrow, so tests and CI can use real embeddings without torch,
h5py or any download. The slices are made by ``python -m bench.harness.datasets slice``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.paths import DATA_DIR

WORDNET_SLICE = DATA_DIR / "minilm-wordnet-21k"


@dataclass(frozen=True, eq=False)
class WordnetSlice:
    """MiniLM vectors of WordNet glosses with exact cosine ground truth.

    ``train``/``test`` are float32 (upcast from the stored float16); ``neighbors`` (int64) and
    ``distances`` (float32, 1 - cos, ascending) are the exact top-100 of each test row among
    ``train``. ``metadata`` has one row per vector, train rows first, then test rows.
    """

    train: np.ndarray
    test: np.ndarray
    neighbors: np.ndarray
    distances: np.ndarray
    train_texts: list[str]
    test_texts: list[str]
    metadata: pa.Table

    metric = "cosine"


def load_wordnet_slice(path: Path = WORDNET_SLICE) -> WordnetSlice:
    """Load the committed ``minilm-wordnet-21k`` slice (20000 train, 1000 queries, 384-d)."""
    with np.load(path / "vectors.npz", allow_pickle=False) as z:
        train = z["train"].astype(np.float32)
        test = z["test"].astype(np.float32)
        neighbors = z["neighbors"].astype(np.int64, copy=False)
        distances = z["distances"].astype(np.float32, copy=False)
    metadata = pq.read_table(path / "glosses.parquet")
    return WordnetSlice(
        train=train,
        test=test,
        neighbors=neighbors,
        distances=distances,
        train_texts=_split_texts(metadata, "train"),
        test_texts=_split_texts(metadata, "test"),
        metadata=metadata,
    )


def _split_texts(metadata: pa.Table, split: str) -> list[str]:
    """Texts of one split, ordered by their ``row`` column."""
    part = metadata.filter(pc.equal(metadata.column("split"), split))
    part = part.sort_by("row")
    return part.column("text").to_pylist()
