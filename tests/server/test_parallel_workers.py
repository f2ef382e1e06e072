"""``quiver serve`` lets the OpenMP workers of the Numba kernels sleep between parallel calls,
unless the environment already chose."""

from __future__ import annotations

import os

import pytest

from quiver.server.cli import quiet_parallel_workers


def test_workers_sleep_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    quiet_parallel_workers()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


@pytest.mark.parametrize("key,value", [("OMP_WAIT_POLICY", "ACTIVE"), ("GOMP_SPINCOUNT", "1000")])
def test_the_environment_wins(monkeypatch: pytest.MonkeyPatch, key: str, value: str) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.setenv(key, value)
    quiet_parallel_workers()
    assert os.environ[key] == value
    assert (key == "OMP_WAIT_POLICY") == ("OMP_WAIT_POLICY" in os.environ)
