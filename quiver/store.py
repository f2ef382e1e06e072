"""On-disk layout of a saved index, written crash-safely.

A saved index is a directory::

    manifest.json               written last, via a temp file + fsync + rename
    vectors-g<gen>-<i>.arrow    float32 segments: Arrow IPC files, one FixedSizeList column
    codes-g<gen>.npy            2-bit codes (n, 2W) uint64         } the hot set,
    adjacency-g<gen>.npy        graph rows (n, R) int32, -1 padded } rewritten each save
    degrees-g<gen>.npy, labels-g<gen>.npy

Files are never overwritten: every save writes files of a new generation, then switches the
manifest, then deletes what the new manifest no longer names. A crash at any point leaves a
manifest whose files all exist. Segments are immutable once written, so later saves keep them
and only vectors added since the last save go to new segment files.
"""

from __future__ import annotations

import json
import logging
import os
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from quiver.errors import CorruptIndexError, FormatVersionError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VECTOR_COLUMN = "vector"
_OWNED_FILE = re.compile(
    r"^(vectors|codes|adjacency|degrees|labels|live|points)-g\d+(-\d+)?\.(arrow|npy)$"
)


def fsync_dir(path: Path) -> None:
    """fsync a directory, making renames and new entries in it durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_segment(path: Path, vectors: np.ndarray) -> None:
    """Write float32 rows (n, D) as an Arrow IPC file with one FixedSizeList<float32> column."""
    n, dim = vectors.shape
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), type=pa.float32())
    column = pa.FixedSizeListArray.from_arrays(flat, dim)
    schema = pa.schema([pa.field(VECTOR_COLUMN, column.type, nullable=False)])
    batch = pa.record_batch([column], schema=schema)
    with open(path, "wb") as fh:
        with pa.ipc.new_file(fh, schema) as writer:
            writer.write_batch(batch)
        fh.flush()
        os.fsync(fh.fileno())


def file_checksum(path: Path, chunk: int = 8 << 20) -> int:
    """CRC-32 of a file's bytes, read in chunks."""
    crc = 0
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            crc = zlib.crc32(block, crc)
    return crc


def verify_checksum(path: Path, expected: int | None) -> None:
    """Raise :class:`CorruptIndexError` unless ``path``'s CRC-32 is ``expected`` (None: skip)."""
    if expected is None:
        return
    if not path.is_file():
        raise CorruptIndexError(f"{path.parent}: file {path.name} named by the manifest is missing")
    actual = file_checksum(path)
    if actual != expected:
        raise CorruptIndexError(
            f"{path}: checksum mismatch (expected {expected:#010x}, got {actual:#010x}): the file "
            "was altered or damaged after it was written"
        )


def open_segment(path: Path, dim: int) -> np.ndarray:
    """Memory-map a segment and return a read-only zero-copy (n, D) float32 view.

    Nothing is read into RAM here: pages are faulted in only when the rerank touches a row.
    """
    try:
        source = pa.memory_map(str(path), "r")
        reader = pa.ipc.open_file(source)
    except (OSError, pa.ArrowInvalid) as exc:
        raise CorruptIndexError(f"{path}: not a readable vector segment: {exc}") from exc
    if reader.num_record_batches != 1:
        raise CorruptIndexError(f"{path}: expected 1 record batch, got {reader.num_record_batches}")
    column = reader.get_batch(0).column(0)
    if not pa.types.is_fixed_size_list(column.type) or column.type.list_size != dim:
        raise CorruptIndexError(
            f"{path}: expected FixedSizeList<float32>[{dim}], got {column.type}"
        )
    values = column.values.to_numpy(zero_copy_only=True)
    return values.reshape(len(column), dim)


def save_array(path: Path, array: np.ndarray) -> None:
    """``np.save`` followed by fsync, so the bytes are durable before the manifest names them."""
    with open(path, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())


def load_array(path: Path) -> np.ndarray:
    """Load a saved ``.npy`` array into memory."""
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise CorruptIndexError(
            f"{path.parent}: file {path.name} named by the manifest is missing"
        ) from exc
    except (ValueError, EOFError, OSError) as exc:
        raise CorruptIndexError(f"{path}: unreadable array file: {exc}") from exc


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Atomically publish ``manifest``: temp file, fsync, rename over the old one, fsync dir."""
    tmp = directory / (MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, directory / MANIFEST)
    fsync_dir(directory)


def read_manifest(directory: Path) -> dict[str, Any]:
    """Read and check the manifest of a saved index."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no quiver index at {directory}: {MANIFEST} not found")
    try:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptIndexError(f"{path}: unreadable manifest: {exc}") from exc
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise FormatVersionError(
            f"{directory}: unsupported index format version {version!r}; this quiver reads "
            f"version {FORMAT_VERSION} (was it written by a newer quiver?)"
        )
    return manifest


def remove_unreferenced(directory: Path, manifest: dict[str, Any]) -> None:
    """Delete index files of older generations that ``manifest`` no longer names."""
    keep = {seg["file"] for seg in manifest["segments"]} | set(manifest["files"].values())
    for entry in directory.iterdir():
        if _OWNED_FILE.match(entry.name) and entry.name not in keep:
            try:
                entry.unlink()
            except OSError as exc:  # a leftover file is harmless; the next save retries
                logger.warning("could not remove stale index file %s: %s", entry, exc)
