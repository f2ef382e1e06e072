"""A non-blocking lock on an open file, on POSIX (``fcntl.flock``) and Windows (``msvcrt``).

The database holds it on ``<data dir>/.lock`` for as long as it is open. Either backend locks
per open file, so a second open of the same file, in this process or another, is refused; the
operating system drops the lock when the process dies (no stale lock files). Imported where
neither module exists, this module still imports (so does ``quiver``); taking a lock there raises
``OSError``.
"""

from __future__ import annotations

import os

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

try:
    import msvcrt
except ImportError:  # POSIX
    msvcrt = None  # type: ignore[assignment]

#: msvcrt locks a byte range: the first byte of the file (it need not exist).
_WINDOWS_LOCK_BYTES = 1


def try_lock(fd: int, *, shared: bool = False) -> None:
    """Lock ``fd`` without waiting; ``BlockingIOError`` when a conflicting lock is held.

    Exclusive by default (one writer). ``shared=True`` admits other shared holders and refuses
    an exclusive one (readers); msvcrt has no shared mode, so there it locks exclusively.
    """
    if fcntl is not None:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    elif msvcrt is not None:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, _WINDOWS_LOCK_BYTES)
        except OSError as exc:  # EACCES / EDEADLOCK: locked by another handle
            raise BlockingIOError(exc.errno, "the file is locked") from exc
    else:
        raise OSError("no file locking on this platform (neither fcntl nor msvcrt)")


def unlock(fd: int) -> None:
    """Release the lock :func:`try_lock` took on ``fd`` (closing ``fd`` releases it too)."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    elif msvcrt is not None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, _WINDOWS_LOCK_BYTES)
