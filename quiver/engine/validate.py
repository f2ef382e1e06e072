"""Structural checks of a loaded index, run before any kernel sees its arrays.

Checksums only prove that files are what their writer wrote; a crafted snapshot carries
checksums its author computed. The search kernels index arrays without bounds checks (the hot
loop stays free of them), so everything read from disk is checked here first, vectorised:
shapes and dtypes against the manifest and each other, every adjacency entry in range with -1
only as padding past its row's degree, degrees within the max degree, the entry point in
range, labels unique and below ``next_id``, live flags 0/1, segment rows summing to the count.
A failure raises :class:`CorruptIndexError` naming the expected and the actual value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from quiver.engine import bq
from quiver.errors import CorruptIndexError

#: Adjacency rows checked per block (bounds the temporaries to ~ block x R bytes).
_BLOCK_ROWS = 1 << 16


def _fail(directory: Path, what: str) -> CorruptIndexError:
    return CorruptIndexError(f"{directory}: corrupt index: {what}")


def manifest_int(directory: Path, manifest: dict[str, Any], key: str, low: int) -> int:
    """``manifest[key]`` as an int >= ``low`` (not a bool, not a float), or raise."""
    value = manifest.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _fail(directory, f"manifest {key} must be an integer >= {low}, got {value!r}")
    return value


def check_array(
    directory: Path, name: str, array: np.ndarray, dtype: Any, shape: tuple[int, ...]
) -> np.ndarray:
    """``array`` if it has exactly ``dtype`` (native byte order) and ``shape``, as a
    C-contiguous array; else raise."""
    if array.dtype != np.dtype(dtype) or array.shape != shape:
        raise _fail(
            directory,
            f"{name} must be {np.dtype(dtype).name} {shape}, got {array.dtype.str} {array.shape}",
        )
    return np.ascontiguousarray(array)


def check_graph(
    directory: Path, adjacency: np.ndarray, degrees: np.ndarray, count: int, max_degree: int
) -> None:
    """Degrees in [0, max_degree]; adjacency ids in [0, count) before each row's degree and
    -1 after it."""
    if count and (degrees.min() < 0 or degrees.max() > max_degree):
        row = int(np.flatnonzero((degrees < 0) | (degrees > max_degree))[0])
        raise _fail(directory, f"degree of row {row} is {degrees[row]}, expected 0..{max_degree}")
    slots = np.arange(adjacency.shape[1], dtype=np.int32)
    for start in range(0, count, _BLOCK_ROWS):
        block = adjacency[start : start + _BLOCK_ROWS]
        inside = slots[None, :] < degrees[start : start + block.shape[0], None]
        ok = np.where(inside, (block >= 0) & (block < count), block == -1)
        if not ok.all():
            r, j = np.argwhere(~ok)[0]
            expected = f"a row in [0, {count})" if inside[r, j] else "-1 (padding)"
            raise _fail(
                directory,
                f"adjacency[{start + r}, {j}] is {block[r, j]}, expected {expected}",
            )


def check_labels(directory: Path, labels: np.ndarray, next_id: int) -> None:
    """Labels in [0, next_id) and unique."""
    if labels.shape[0] == 0:
        return
    if labels.min() < 0 or labels.max() >= next_id:
        raise _fail(
            directory,
            f"labels must be in [0, next_id={next_id}), got {labels.min()}..{labels.max()}",
        )
    if np.all(labels[1:] > labels[:-1]):  # the usual case: ascending, hence unique
        return
    ordered = np.sort(labels)
    dup = np.flatnonzero(ordered[1:] == ordered[:-1])
    if dup.size:
        raise _fail(directory, f"label {ordered[dup[0]]} is used by more than one row")


def check_hot_arrays(
    directory: Path, manifest: dict[str, Any], arrays: dict[str, np.ndarray], max_degree: int
) -> dict[str, np.ndarray]:
    """Check the hot arrays of a saved index against its manifest and each other; return them
    as C-contiguous arrays ready for the kernels."""
    dim = manifest_int(directory, manifest, "dim", 1)
    count = manifest_int(directory, manifest, "count", 0)
    next_id = manifest_int(directory, manifest, "next_id", 0)
    entry = manifest.get("entry_point")
    if isinstance(entry, bool) or not isinstance(entry, int):
        raise _fail(directory, f"manifest entry_point must be an integer, got {entry!r}")
    if (count == 0 and entry != -1) or (count > 0 and not 0 <= entry < count):
        expected = "-1 (empty index)" if count == 0 else f"a row in [0, {count})"
        raise _fail(directory, f"entry_point is {entry}, expected {expected}")
    words = 2 * bq.words_per_plane(dim)
    out = {
        "codes": check_array(directory, "codes", arrays["codes"], np.uint64, (count, words)),
        "adjacency": check_array(
            directory, "adjacency", arrays["adjacency"], np.int32, (count, max_degree)
        ),
        "degrees": check_array(directory, "degrees", arrays["degrees"], np.int32, (count,)),
        "labels": check_array(directory, "labels", arrays["labels"], np.int64, (count,)),
        "live": check_array(directory, "live", arrays["live"], np.uint8, (count,)),
    }
    if count and out["live"].max() > 1:
        raise _fail(directory, f"live flags must be 0 or 1, got {int(out['live'].max())}")
    check_graph(directory, out["adjacency"], out["degrees"], count, max_degree)
    check_labels(directory, out["labels"], next_id)
    for key, shape in (("center", (dim,)), ("rotation", (dim, dim))):
        if key in arrays:
            out[key] = check_array(directory, key, arrays[key], np.float32, shape)
            if not np.isfinite(out[key]).all():
                raise _fail(directory, f"{key} holds non-finite values")
    return out


def check_segments(
    directory: Path, manifest: dict[str, Any], views: list[np.ndarray], count: int
) -> None:
    """Every segment holds the rows the manifest says, and together ``count`` rows."""
    for seg, view in zip(manifest["segments"], views, strict=True):
        if seg.get("rows") != view.shape[0]:
            raise _fail(
                directory,
                f"segment {seg.get('file')!r} holds {view.shape[0]} rows, the manifest says "
                f"{seg.get('rows')!r}",
            )
    total = sum(v.shape[0] for v in views)
    if total != count:
        raise _fail(directory, f"manifest count {count} disagrees with {total} stored vectors")
