"""save/open: identical results across processes, mmap'd floats, crash safety, versions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from lowrank import low_rank_data

import quiver
from quiver import CorruptIndexError, FormatVersionError
from quiver.engine import store

REPO = Path(__file__).resolve().parents[1]


def _run_python(code: str, *args: str, timeout: float = 300) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def saved_wordnet(wordnet, tmp_path_factory):
    path = tmp_path_factory.mktemp("idx") / "wordnet"
    index = quiver.Index(384, "cosine")
    index.add(wordnet.train, ids=np.arange(wordnet.train.shape[0]) * 3)
    index.save(path)
    return index, path


def test_open_in_a_fresh_process_gives_identical_results(wordnet, saved_wordnet, tmp_path) -> None:
    index, path = saved_wordnet
    np.save(tmp_path / "q.npy", wordnet.test[:200])
    _run_python(
        """
        import sys, numpy as np, quiver
        index = quiver.Index.open(sys.argv[1])
        ids, dists = index.search(np.load(sys.argv[2]), k=10, ef=64)
        np.save(sys.argv[3], ids); np.save(sys.argv[4], dists)
        """,
        str(path),
        str(tmp_path / "q.npy"),
        str(tmp_path / "i.npy"),
        str(tmp_path / "d.npy"),
    )
    ids, dists = index.search(wordnet.test[:200], k=10, ef=64)
    np.testing.assert_array_equal(np.load(tmp_path / "i.npy"), ids)
    np.testing.assert_array_equal(np.load(tmp_path / "d.npy"), dists)


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")
def test_open_does_not_read_the_float_file_into_memory(saved_wordnet) -> None:
    _, path = saved_wordnet
    out = _run_python(
        """
        import sys, quiver
        from bench.harness.memory import mapped_file_rss, rss_breakdown
        quiver.warmup()  # import + JIT cache load before measuring
        before = rss_breakdown()["anon"]
        index = quiver.Index.open(sys.argv[1])
        print(rss_breakdown()["anon"] - before, mapped_file_rss("/vectors-"),
              index.stats()["hot_bytes"], index.stats()["cold_bytes"])
        """,
        str(path),
    )
    anon_growth, float_resident, hot, cold = map(int, out.split())
    print(
        f"open: anon RSS +{anon_growth / 1e6:.1f} MB (hot set {hot / 1e6:.1f} MB), "
        f"float file resident {float_resident / 1e6:.1f} of {cold / 1e6:.1f} MB"
    )
    assert float_resident <= 2 * 2**20  # at most the pages of the Arrow header and footer
    assert anon_growth < hot + cold // 4


def test_floats_are_memory_mapped_read_only_views(saved_wordnet) -> None:
    _, path = saved_wordnet
    index = quiver.Index.open(path)
    assert index.stats()["segments"] == 1
    view = index.segments.views[0]
    assert not view.flags.writeable and not view.flags.owndata


def test_add_after_open_writes_a_new_segment(tmp_path) -> None:
    x = low_rank_data(1200, 20, rank=6)
    index = quiver.Index(20, "l2")
    index.add(x[:800])
    index.save(tmp_path / "i")
    reopened = quiver.Index.open(tmp_path / "i")
    reopened.add(x[800:1000])
    reopened.save(tmp_path / "i")
    reopened.add(x[1000:])
    reopened.save(tmp_path / "i")
    final = quiver.Index.open(tmp_path / "i")
    assert len(final) == 1200 and final.stats()["segments"] == 3
    ids, dists = final.search(x[[5, 900, 1100]], k=1, ef=32)
    assert ids[:, 0].tolist() == [5, 900, 1100]
    np.testing.assert_allclose(dists, 0.0, atol=1e-4)
    names = sorted(p.name for p in (tmp_path / "i").iterdir())
    assert len([n for n in names if n.startswith("codes-")]) == 1  # old generations removed
    final.save(tmp_path / "copy")  # saving elsewhere copies the segments
    assert len(quiver.Index.open(tmp_path / "copy")) == 1200


def test_unknown_format_version_is_a_clear_error(tmp_path) -> None:
    index = quiver.Index(4)
    index.add(np.eye(4))
    index.save(tmp_path / "i")
    manifest = json.loads((tmp_path / "i" / "manifest.json").read_text())
    manifest["format_version"] = 99
    (tmp_path / "i" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptIndexError, match="checksum mismatch"):  # edited, not resealed
        quiver.Index.open(tmp_path / "i")
    store.write_manifest(tmp_path / "i", manifest)  # resealed: the version is what fails
    with pytest.raises(FormatVersionError, match="version 99.*reads version 1"):
        quiver.Index.open(tmp_path / "i")


def test_missing_files_are_reported(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no quiver index"):
        quiver.Index.open(tmp_path / "nothing")
    index = quiver.Index(4)
    index.add(np.eye(4))
    index.save(tmp_path / "i")
    next((tmp_path / "i").glob("codes-*.npy")).unlink()
    with pytest.raises(CorruptIndexError, match="missing"):
        quiver.Index.open(tmp_path / "i")


@pytest.mark.slow
def test_sigkill_during_save_leaves_the_previous_index_readable(tmp_path) -> None:
    path = tmp_path / "i"
    base = low_rank_data(6000, 64, rank=12)
    first = quiver.Index(64, "l2")
    first.add(base[:3000])
    first.save(path)
    writer = textwrap.dedent(
        """
        import sys, numpy as np, quiver
        sys.path.insert(0, "tests")
        from lowrank import low_rank_data
        x = low_rank_data(6000, 64, rank=12)
        index = quiver.Index.open(sys.argv[1])
        start = len(index)
        print("ready", flush=True)
        while start < 6000:
            index.add(x[start:start + 300])
            start += 300
            index.save(sys.argv[1])
        print("finished", flush=True)
        """
    )
    valid_counts = set(range(3000, 6001, 300))
    rng = np.random.default_rng(0)
    for trial in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", writer, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.05, 0.6)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        index = quiver.Index.open(path)
        assert len(index) in valid_counts, (trial, len(index))
        ids, _ = index.search(base[:5], k=1, ef=32)
        assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]
