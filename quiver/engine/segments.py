"""The float32 vectors of an index: memory-mapped Arrow segments plus an in-memory tail.

The hot path never reads them; the rerank does, through the typed list of read-only views
that :meth:`FloatSegments.typed` hands to the kernels. Rows are numbered across segments in
order (``starts[i]`` is the first row of segment ``i``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numba.typed import List as TypedList

from quiver.engine import readahead


class FloatSegments:
    """Segments on disk (each with its file) followed by at most one in-memory tail segment.

    Owned by one writer; readers only see what :meth:`typed` and :attr:`starts` returned at a
    publish (the views stay valid when the writer replaces them).
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.views: list[np.ndarray] = []  # read-only float views, file-backed first
        self.files: list[Path | None] = []  # None = in memory (the tail)
        self._tail = np.zeros((0, dim), dtype=np.float32)
        self._tail_count = 0
        self.typed: Any = None  # numba typed List of the views, or None when empty
        self.starts = np.zeros(1, dtype=np.int64)
        self.advised = False  # RAM-budget mode: file segments read through readahead advice

    @property
    def file_bytes(self) -> int:
        """Bytes of the file-backed (memory-mapped) segments."""
        return sum(v.nbytes for v, f in zip(self.views, self.files, strict=True) if f is not None)

    def set_advised(self, advised: bool) -> None:
        """Switch the RAM-budget mode: read-around off on the file segments, and
        :meth:`advised_views` handed to searches so that they read rerank rows ahead."""
        if advised != self.advised:
            self.advised = advised
            self._advise_files(advised)

    def _advise_files(self, random: bool) -> None:
        """Read-around off (``random``) or back on for every file-backed segment."""
        for view, file in zip(self.views, self.files, strict=True):
            if file is not None:
                readahead.advise_random(view, random)

    def advised_views(self) -> tuple[tuple[np.ndarray, int], ...]:
        """``(view, first row)`` of each file segment in the RAM-budget mode, else ``()``."""
        if not self.advised:
            return ()
        return tuple(
            (v, int(self.starts[i]))
            for i, (v, f) in enumerate(zip(self.views, self.files, strict=True))
            if f is not None
        )

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self.views)

    def append(self, x: np.ndarray) -> None:
        """Append rows to the in-memory tail (grown amortised x1.5).

        ``x`` must be a private array (``as_matrix`` copies): the first batch is adopted as the
        tail without another copy.
        """
        need = self._tail_count + x.shape[0]
        if self._tail_count == 0:
            self._tail = x
        else:
            if need > self._tail.shape[0]:
                grown = max(need, int(self._tail.shape[0] * 1.5) + 16)
                tail = np.empty((grown, self.dim), np.float32)
                tail[: self._tail_count] = self._tail[: self._tail_count]
                self._tail = tail
            self._tail[self._tail_count : need] = x
        self._tail_count = need
        self.refresh()

    def add_file(self, view: np.ndarray, file: Path) -> None:
        """Append a memory-mapped segment read from ``file`` (used when opening an index)."""
        self.views.append(view)
        self.files.append(file)

    def replace_with(self, floats: np.ndarray) -> None:
        """Drop every segment and keep ``floats`` as the only (in-memory) one."""
        self.views, self.files = [], []
        self._tail = floats
        self._tail_count = floats.shape[0]
        self.refresh()

    def mark_written(self, written: list[tuple[int, np.ndarray, Path]]) -> None:
        """Swap in-memory segments for the memory-mapped files a save wrote them to."""
        for i, view, file in written:
            self.views[i] = view
            self.files[i] = file
        if self._tail_count and self.files and self.files[-1] is not None:
            self._tail = np.zeros((0, self.dim), dtype=np.float32)
            self._tail_count = 0
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the view list handed to the kernels (file segments + tail)."""
        views = [v for v, f in zip(self.views, self.files, strict=True) if f is not None]
        files: list[Path | None] = [f for f in self.files if f is not None]
        if self._tail_count:
            tail = self._tail[: self._tail_count]
            tail.flags.writeable = False
            views.append(tail)
            files.append(None)
        self.views, self.files = views, files
        if self.advised:  # segments mapped since the mode was set
            self._advise_files(True)
        starts = np.zeros(len(views) + 1, dtype=np.int64)
        starts[1:] = np.cumsum([v.shape[0] for v in views])
        self.starts = starts
        typed = TypedList()
        for v in views:
            typed.append(v)
        self.typed = typed if views else None


def gather_rows(segments: Any, starts: np.ndarray, rows: Any, dim: int) -> np.ndarray:
    """Float rows ``rows`` (any order) of a published segment list, as a new (m, dim) array."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    out = np.empty((rows.shape[0], dim), dtype=np.float32)
    for i, segment in enumerate([] if segments is None else segments):
        lo, hi = np.searchsorted(ordered, [starts[i], starts[i + 1]])
        out[order[lo:hi]] = segment[ordered[lo:hi] - starts[i]]
    return out
