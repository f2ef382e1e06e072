"""On-disk sizes of what an adapter saved, for ``memory_bytes`` and ``extra_stats``."""

from __future__ import annotations

from pathlib import Path


def tree_bytes(folder: Path, pattern: str = "*") -> int:
    """Total size of the files under ``folder`` whose names match ``pattern``."""
    return sum(p.stat().st_size for p in Path(folder).rglob(pattern) if p.is_file())
