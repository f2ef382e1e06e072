"""Fixtures of the server tests (helpers live in server_testing.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from server_testing import make_settings, next_name, open_client


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One ready server per test module, no API key."""
    yield from open_client(make_settings(tmp_path_factory.mktemp("server")))


@pytest.fixture
def name() -> str:
    """A collection name no other test uses."""
    return next_name()
