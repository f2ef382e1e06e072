"""Run ``quiver serve`` as a child process on a free loopback port (tests, benchmarks, tour)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """A running server: its base URL, process and log file."""

    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's log (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")[-chars:]

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush (crash tests)."""
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait: the graceful shutdown that closes the database."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        return self.proc.returncode


def start_server(
    db_dir: str | Path,
    log_path: str | Path,
    *,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    ready_timeout: float = 300.0,
) -> ServerProcess:
    """Start ``python -m quiver.server.cli serve`` on 127.0.0.1 (a free port); wait for /readyz."""
    import httpx

    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "quiver.server.cli",
        "serve",
        "--db-dir",
        str(db_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *args,
    ]
    log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 (the child keeps writing to it)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ | (env or {}))
    log.close()
    server = ServerProcess(f"http://127.0.0.1:{port}", proc, Path(log_path))
    deadline = time.monotonic() + ready_timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            r = httpx.get(server.url + "/readyz", timeout=2)
            if r.status_code == 200:
                return server
            if r.json().get("status") == "failed":
                server.stop()
                raise RuntimeError(f"server start-up failed:\n{server.log_tail()}")
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise TimeoutError(
                f"server not ready after {ready_timeout:.0f} s:\n{server.log_tail()}"
            )
        time.sleep(0.1)


@contextmanager
def running_server(
    db_dir: str | Path,
    log_path: str | Path,
    *,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Iterator[ServerProcess]:
    """``start_server`` as a context manager that stops the server (SIGTERM) on exit."""
    server = start_server(db_dir, log_path, args=args, env=env)
    try:
        yield server
    finally:
        server.stop()
