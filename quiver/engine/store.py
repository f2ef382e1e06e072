"""On-disk layout of a saved index, written crash-safely.

A saved index is a directory::

    manifest.json               written last, via a temp file + fsync + rename; it names
                                every file below with its CRC-32
    vectors-g<gen>-<i>.arrow    float32 segments: Arrow IPC files, one FixedSizeList column
    codes-g<gen>.npy            2-bit codes (n, 2W) uint64         } the hot set,
    adjacency-g<gen>.npy        graph rows (n, R) int32, -1 padded } rewritten each save
    degrees-g<gen>.npy, labels-g<gen>.npy, live-g<gen>.npy, and center/rotation when used
    <key>-g<gen>.<ext>          files a caller attaches (the database's points-g<gen>.arrow)

The manifest carries ``manifest_crc32``, the CRC-32 of its own canonical JSON without that
field (:func:`seal`), checked on read; a manifest written before the field existed is read with
a logged warning (the structural checks of :mod:`quiver.engine.validate` still guard it).

Files are never overwritten: every save writes files of a new generation, then switches the
manifest, then deletes what the new manifest no longer names. A crash at any point leaves a
manifest whose files all exist. Segments are immutable once written, so later saves keep them
and only vectors added since the last save go to new segment files.
"""

from __future__ import annotations

import io
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
MANIFEST_CRC = "manifest_crc32"
VECTOR_COLUMN = "vector"
_OWNED_FILE = re.compile(r"^[a-z_]+-g\d+(-\d+)?\.(arrow|npy|parquet)$")  # <key>-g<generation>...


def fsync_dir(path: Path) -> None:
    """fsync a directory, making renames and new entries in it durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ChecksumWriter:
    """A binary file opened for writing that keeps the CRC-32 of what goes through it."""

    def __init__(self, path: Path) -> None:
        self._fh = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.crc = 0

    def write(self, data: Any) -> int:
        self.crc = zlib.crc32(data, self.crc)
        return self._fh.write(data)

    def tell(self) -> int:
        return self._fh.tell()

    def flush(self) -> None:
        self._fh.flush()

    @property
    def closed(self) -> bool:
        return self._fh.closed

    def close(self) -> None:
        """Flush, fsync (durable before a manifest names the file) and close."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()


def write_table(path: Path, table: pa.Table) -> int:
    """Write ``table`` as an Arrow IPC file, fsynced; return its CRC-32."""
    out = ChecksumWriter(path)
    try:
        with pa.ipc.new_file(out, table.schema) as writer:
            writer.write_table(table)
    finally:
        out.close()
    return out.crc


def write_segment(path: Path, vectors: np.ndarray) -> int:
    """Write float32 rows (n, D) as an Arrow IPC file with one FixedSizeList<float32> column;
    return its CRC-32."""
    n, dim = vectors.shape
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), type=pa.float32())
    column = pa.FixedSizeListArray.from_arrays(flat, dim)
    schema = pa.schema([pa.field(VECTOR_COLUMN, column.type, nullable=False)])
    return write_table(path, pa.Table.from_batches([pa.record_batch([column], schema=schema)]))


def file_checksum(path: Path, chunk: int = 8 << 20) -> int:
    """CRC-32 of a file's bytes, read in chunks."""
    crc = 0
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            crc = zlib.crc32(block, crc)
    return crc


def _missing(path: Path) -> CorruptIndexError:
    return CorruptIndexError(f"{path.parent}: file {path.name} named by the manifest is missing")


def _check(path: Path, expected: int | None, actual: int) -> None:
    if expected is not None and actual != expected:
        raise CorruptIndexError(
            f"{path}: checksum mismatch (expected {expected:#010x}, got {actual:#010x}): the file "
            "was altered or damaged after it was written"
        )


def verify_checksum(path: Path, expected: int | None) -> None:
    """Raise :class:`CorruptIndexError` unless ``path``'s CRC-32 is ``expected`` (None: skip)."""
    if expected is None:
        return
    if not path.is_file():
        raise _missing(path)
    _check(path, expected, file_checksum(path))


def open_segment(path: Path, dim: int) -> np.ndarray:
    """Memory-map a segment and return a read-only zero-copy (n, D) float32 view.

    Nothing is read into RAM here: pages are faulted in only when the rerank touches a row.
    """
    try:
        source = pa.memory_map(str(path), "r")
        reader = pa.ipc.open_file(source)
        if reader.num_record_batches != 1:
            raise CorruptIndexError(
                f"{path}: expected 1 record batch, got {reader.num_record_batches}"
            )
        batch = reader.get_batch(0)
        batch.validate()
    except (OSError, pa.ArrowInvalid) as exc:
        if isinstance(exc, CorruptIndexError):
            raise
        raise CorruptIndexError(f"{path}: not a readable vector segment: {exc}") from exc
    if batch.num_columns != 1:
        raise CorruptIndexError(f"{path}: expected 1 column, got {batch.num_columns}")
    column = batch.column(0)
    if (
        not pa.types.is_fixed_size_list(column.type)
        or column.type.list_size != dim
        or column.type.value_type != pa.float32()
        or column.null_count
    ):
        raise CorruptIndexError(
            f"{path}: expected FixedSizeList<float32>[{dim}], got {column.type}"
        )
    flat = column.flatten()
    # the float buffer viewed directly (zero-copy, read-only): Array.to_numpy would import
    # pandas where it is installed, 20 MB of anonymous memory on every open
    values = np.frombuffer(
        flat.buffers()[1], dtype=np.float32, count=len(flat), offset=flat.offset * 4
    )
    if values.shape[0] != len(column) * dim:
        raise CorruptIndexError(
            f"{path}: {len(column)} rows of {dim} need {len(column) * dim} values, got "
            f"{values.shape[0]}"
        )
    return values.reshape(len(column), dim)


def save_array(path: Path, array: np.ndarray) -> int:
    """``np.save``, fsynced before a manifest names the file; return its CRC-32."""
    out = ChecksumWriter(path)
    try:
        np.save(out, array, allow_pickle=False)
    finally:
        out.close()
    return out.crc


def load_array(path: Path, checksum: int | None = None) -> np.ndarray:
    """Load a saved ``.npy`` array into memory, checking its CRC-32 when one is given (the file
    is read once for both)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise _missing(path) from exc
    _check(path, checksum, zlib.crc32(data))
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # a damaged header fails in many ways (ValueError, SyntaxError...)
        raise CorruptIndexError(f"{path}: unreadable array file: {exc!r}") from exc


def _canonical_crc(doc: dict[str, Any]) -> int:
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return zlib.crc32(text.encode("ascii"))


def seal(doc: dict[str, Any], field: str) -> dict[str, Any]:
    """``doc`` plus ``field``: the CRC-32 of the canonical JSON of the rest."""
    rest = {k: v for k, v in doc.items() if k != field}
    return {**rest, field: _canonical_crc(rest)}


def unseal(doc: Any, field: str, path: Path) -> dict[str, Any]:
    """``doc`` without ``field`` after checking it (CorruptIndexError when it does not
    match); a document without the field (written by an older quiver) passes with a
    warning."""
    if not isinstance(doc, dict):
        raise CorruptIndexError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    rest = {k: v for k, v in doc.items() if k != field}
    if field not in doc:
        logger.warning("%s: no %s (written by an older quiver): not verified", path, field)
        return rest
    expected = doc[field]
    actual = _canonical_crc(rest)
    if expected != actual:
        raise CorruptIndexError(
            f"{path}: checksum mismatch (expected {expected!r}, got {actual:#010x}): the file "
            "was altered or damaged after it was written"
        )
    return rest


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Atomically publish ``manifest`` (sealed with its checksum): temp file, fsync, rename
    over the old one, fsync dir."""
    tmp = directory / (MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(seal(manifest, MANIFEST_CRC), fh, indent=2, sort_keys=True)
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
    manifest = unseal(manifest, MANIFEST_CRC, path)
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise FormatVersionError(
            f"{directory}: unsupported index format version {version!r}; this quiver reads "
            f"version {FORMAT_VERSION} (was it written by a newer quiver?)"
        )
    return manifest


def is_index_file(name: str) -> bool:
    """Whether ``name`` is a file a save writes (``<key>-g<generation>...``)."""
    return bool(_OWNED_FILE.match(name))


def remove_unreferenced(directory: Path, manifest: dict[str, Any]) -> None:
    """Delete index files of older generations that ``manifest`` no longer names."""
    keep = {seg["file"] for seg in manifest["segments"]} | set(manifest["files"].values())
    for entry in directory.iterdir():
        if _OWNED_FILE.match(entry.name) and entry.name not in keep:
            try:
                entry.unlink()
            except OSError as exc:  # a leftover file is harmless; the next save retries
                logger.warning("could not remove stale index file %s: %s", entry, exc)
