"""Fetch Debian packages' files for the data generators: download and unpack, no install."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)


def fetch_deb(package: str, base: Path) -> Path:
    """Download (``apt-get download``) and unpack (``dpkg-deb -x``) the Debian ``package`` into
    ``base``; return the unpacked root, ``base / "root"``.

    Needs neither root nor an install. Reuses an earlier unpack, so each package is downloaded
    once per folder.
    """
    root = base / "root"
    if root.is_dir():
        return root
    deb_dir = base / "deb"
    deb_dir.mkdir(parents=True, exist_ok=True)
    debs = sorted(deb_dir.glob(f"{package}_*.deb"))
    if not debs:
        log.info("downloading %s with apt-get into %s", package, deb_dir)
        _apt_download(package, deb_dir)
        debs = sorted(deb_dir.glob(f"{package}_*.deb"))
    if not debs:
        raise FileNotFoundError(f"apt-get download left no {package} .deb in {deb_dir}")
    tmp = base / "root.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(tmp)], check=True)
    tmp.rename(root)
    log.info("unpacked %s into %s", debs[-1].name, root)
    return root


def _apt_download(package: str, deb_dir: Path) -> None:
    """Run ``apt-get download``, refreshing the package lists once if it fails."""
    cmd = ["apt-get", "download", package]
    try:
        subprocess.run(cmd, check=True, cwd=deb_dir)
    except subprocess.CalledProcessError:
        log.info("apt-get download failed; running apt-get update and retrying")
        subprocess.run(["apt-get", "update"], check=True)
        subprocess.run(cmd, check=True, cwd=deb_dir)
