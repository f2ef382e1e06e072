"""Process memory as Linux reports it: anonymous vs file-backed RSS, and per mapped file.

Memory-mapped float vectors show up as file-backed pages of the page cache (shared, evictable),
not as anonymous memory, so the two must be reported apart. Linux only (``/proc/self``).
"""

from __future__ import annotations

import re

_MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")


def status_bytes(*fields: str) -> dict[str, int]:
    """``kB`` fields of ``/proc/self/status`` (``VmRSS``, ``VmHWM``, ``RssAnon``...) in bytes."""
    out = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in fields:
                out[key] = int(value.split()[0]) * 1024
    missing = set(fields) - set(out)
    if missing:
        raise RuntimeError(f"/proc/self/status has no {sorted(missing)} field")
    return out


def rss_breakdown() -> dict[str, int]:
    """Bytes of resident memory: ``anon`` (heap, arrays), ``file`` (mapped files), ``total``."""
    raw = status_bytes("RssAnon", "RssFile", "VmRSS")
    return {"anon": raw["RssAnon"], "file": raw["RssFile"], "total": raw["VmRSS"]}


def mapped_file_rss(name_part: str) -> int:
    """Resident bytes of every mapping whose file path contains ``name_part``."""
    total = 0
    current = ""
    with open("/proc/self/smaps", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if _MAPPING.match(line):
                parts = line.split(maxsplit=5)
                current = parts[5].strip() if len(parts) > 5 else ""
            elif line.startswith("Rss:") and name_part in current:
                total += int(line.split()[1]) * 1024
    return total
