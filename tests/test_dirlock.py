"""The data-directory lock where ``fcntl`` is missing (Windows): ``import quiver`` works and
the lock stays exclusive, through ``msvcrt`` (here a stand-in built on the real flock, with
Windows' error for a locked file), in a subprocess that blocks ``fcntl`` before importing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from quiver.db import dirlock

SCRIPT = textwrap.dedent(
    """
    import errno, os, sys, types
    import fcntl as real_fcntl

    backend, path = sys.argv[1], sys.argv[2]
    if backend == "msvcrt":
        fake = types.ModuleType("msvcrt")
        fake.LK_UNLCK, fake.LK_NBLCK = 0, 2

        def locking(fd, mode, nbytes):
            assert os.lseek(fd, 0, os.SEEK_CUR) == 0 and nbytes >= 1  # locks from byte 0
            op = real_fcntl.LOCK_UN if mode == fake.LK_UNLCK else real_fcntl.LOCK_EX
            try:
                real_fcntl.flock(fd, op | real_fcntl.LOCK_NB)
            except BlockingIOError:
                raise OSError(errno.EACCES, "Permission denied") from None

        fake.locking = locking
        sys.modules["msvcrt"] = fake
    sys.modules["fcntl"] = None  # `import fcntl` raises ImportError, as on Windows

    import quiver
    from quiver.db import dirlock

    assert dirlock.fcntl is None
    try:
        first = quiver.Database(path)
    except OSError as exc:
        print("no lock:", exc)
        raise SystemExit(0)
    try:
        quiver.Database(path)
        print("second writer admitted")
    except quiver.DatabaseLockedError:
        print("second writer refused")
    first.close()
    quiver.Database(path).close()
    print("released on close")
    """
)


def run_without_fcntl(backend: str, path: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, backend, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_lock_through_msvcrt_when_fcntl_is_missing(tmp_path: Path) -> None:
    out = run_without_fcntl("msvcrt", tmp_path / "db")
    assert out.splitlines() == ["second writer refused", "released on close"]


def test_import_works_without_any_lock_module(tmp_path: Path) -> None:
    out = run_without_fcntl("none", tmp_path / "db")
    assert out.startswith("no lock:") and "neither fcntl nor msvcrt" in out


@pytest.fixture
def fds(tmp_path: Path) -> Iterator[list[int]]:
    """Three descriptors of one file, closed after the test."""
    path = tmp_path / "lockfile"
    path.touch()
    opened = [os.open(path, os.O_RDWR) for _ in range(3)]
    yield opened
    for fd in opened:
        os.close(fd)


def test_the_lock_is_exclusive_within_one_process(fds: list[int]) -> None:
    dirlock.try_lock(fds[0])
    with pytest.raises(BlockingIOError):
        dirlock.try_lock(fds[1])
    with pytest.raises(BlockingIOError):
        dirlock.try_lock(fds[2], shared=True)
    dirlock.unlock(fds[0])
    dirlock.try_lock(fds[1])


def test_shared_locks_coexist_and_keep_a_writer_out(fds: list[int]) -> None:
    dirlock.try_lock(fds[0], shared=True)
    dirlock.try_lock(fds[1], shared=True)
    with pytest.raises(BlockingIOError):
        dirlock.try_lock(fds[2])
    dirlock.unlock(fds[0])
    dirlock.unlock(fds[1])
    dirlock.try_lock(fds[2])
