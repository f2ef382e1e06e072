"""Reading float rows from disk ahead of the rerank: the RAM-budget mode of the float segments.

When the float vectors do not fit in the memory a process may use, the rerank's rows come from
disk. Faulting them in one at a time makes every query wait for its reads in series, and each
fault on a memory-mapped file also reads the pages around it (the kernel's read-around, up to
128 KB for a 1.5 KB row), which evicts the pages other queries need. This module does the two
things that fix it, with ``madvise`` on the mapped segments:

* ``MADV_RANDOM`` on each file-backed segment turns the read-around off, so a row costs its
  own pages only;
* ``MADV_WILLNEED`` on the pages of every candidate row of a group of queries starts all their
  reads at once (the kernel queues them asynchronously), before the rerank touches the rows; the
  device then serves them in parallel and the rerank finds them in the page cache.

Linux only (``madvise`` through ``ctypes``); elsewhere both calls do nothing and the rerank
faults rows in as before. Advice never changes results, only when pages are read.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PAGE = mmap.PAGESIZE
_NORMAL = getattr(mmap, "MADV_NORMAL", 0)
_RANDOM = getattr(mmap, "MADV_RANDOM", 1)
_WILLNEED = getattr(mmap, "MADV_WILLNEED", 3)


def _load_madvise():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):  # pragma: no cover - every Linux libc has it
        return None
    fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


_madvise = _load_madvise()

#: The advised mode is chosen automatically when the float files are larger than this share of
#: the memory the process may still use (see :func:`memory_available`).
AUTO_SHARE = 0.5


def supported() -> bool:
    """Whether advice reaches the kernel here (Linux)."""
    return _madvise is not None


def _advise(start: int, length: int, advice: int) -> bool:
    if _madvise is None or length <= 0:
        return False
    return _madvise(start, length, advice) == 0


def advise_random(view: np.ndarray, random: bool = True) -> bool:
    """Turn the kernel's read-around off (``random``) or back on for the pages of ``view`` (a
    memory-mapped segment)."""
    start = view.ctypes.data & ~(PAGE - 1)
    return _advise(start, view.ctypes.data + view.nbytes - start, _RANDOM if random else _NORMAL)


def row_pages(views: list[np.ndarray], starts: list[int], rows: np.ndarray) -> np.ndarray:
    """Start addresses of the distinct pages holding global ``rows`` (any order, -1 ignored) of
    the segments ``views`` whose first rows are ``starts`` (rows outside them are skipped)."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    rows = rows[rows >= 0]
    firsts, lasts = [], []
    for view, first in zip(views, starts, strict=True):
        mine = rows[(rows >= first) & (rows < first + view.shape[0])] - first
        if mine.size == 0:
            continue
        row_bytes = view.strides[0]
        addr = view.ctypes.data + mine * row_bytes
        firsts.append(addr & ~(PAGE - 1))
        lasts.append((addr + row_bytes - 1) & ~(PAGE - 1))
    if not firsts:
        return np.zeros(0, dtype=np.int64)
    first_pages = np.concatenate(firsts)
    last_pages = np.concatenate(lasts)
    spans = (last_pages - first_pages) // PAGE + 1  # a row may straddle a page boundary
    pages = np.repeat(first_pages, spans) + PAGE * (
        np.arange(spans.sum()) - np.repeat(np.cumsum(spans) - spans, spans)
    )
    return np.unique(pages)


def will_need(views: list[np.ndarray], starts: list[int], rows: np.ndarray) -> int:
    """Start reading the pages of ``rows`` (see :func:`row_pages`); runs of adjacent pages go
    in one call. Returns the number of pages advised (0 where advice is not supported)."""
    if _madvise is None:
        return 0
    pages = row_pages(views, starts, rows)
    if pages.size == 0:
        return 0
    breaks = np.flatnonzero(np.diff(pages) != PAGE) + 1
    run_starts = np.concatenate(([0], breaks))
    run_ends = np.concatenate((breaks, [pages.size]))
    for lo, hi in zip(run_starts.tolist(), run_ends.tolist(), strict=True):
        _madvise(int(pages[lo]), (hi - lo) * PAGE, _WILLNEED)
    return int(pages.size)


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_dir(root: Path, rel: str, name: str) -> Path | None:
    """The folder of a cgroup named ``rel`` under the mount ``root``: inside a container the
    mount may show only the tail of the path that ``/proc/self/cgroup`` names."""
    parts = [p for p in rel.split("/") if p]
    for i in range(len(parts) + 1):
        base = root.joinpath(*parts[i:])
        if (base / name).is_file():
            return base
    return None


def _cgroup_limit() -> int | None:
    """The memory limit of this process's cgroup (v2 ``memory.max`` or v1
    ``memory.limit_in_bytes``) minus what it already uses, or None when unlimited/unknown."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    best = None
    for line in lines:
        _, controllers, rel = line.split(":", 2)
        if controllers == "":
            root, names = Path("/sys/fs/cgroup"), ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            root = Path("/sys/fs/cgroup/memory")
            names = ("memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        base = _cgroup_dir(root, rel, names[0])
        if base is None:
            continue
        limit, used = _read_int(base / names[0]), _read_int(base / names[1])
        if limit is None or limit >= 1 << 60:
            continue
        free = limit - (used or 0)
        best = free if best is None else min(best, free)
    return best


def memory_available() -> int | None:
    """Bytes this process may still fill: the lesser of ``MemAvailable`` and its cgroup's
    limit minus its usage (None when neither can be read)."""
    meminfo = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                meminfo = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    limits = [v for v in (meminfo, _cgroup_limit()) if v is not None]
    return min(limits) if limits else None


def floats_exceed_memory(file_bytes: int) -> bool:
    """The ``"auto"`` rule: advise when the float files take more than :data:`AUTO_SHARE` of
    the memory available (a page cache that cannot hold them will fault rows from disk)."""
    available = memory_available()
    return supported() and available is not None and file_bytes > AUTO_SHARE * available
