"""The ``quiver`` command: help, create/load/query/info/snapshot on a directory and a server."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from server_testing import vectors

from quiver.server.cli import build_parser, main
from quiver.server.process import running_server

N, DIM = 400, 12
HAS_DIAGNOSE = importlib.util.find_spec("quiver.quality.diagnose") is not None
#: Options of `quiver load` for the Parquet file with string ids and named columns.
LOAD_DOCS = (
    *("--create", "--id-type", "string"),
    *("--vector-column", "embedding", "--id-column", "doc", "--quiet"),
)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same vectors as .npy, Parquet (string ids + payload), Arrow and HDF5."""
    root = tmp_path_factory.mktemp("files")
    x = vectors(N, DIM, seed=2)
    np.save(root / "v.npy", x)
    table = pa.table(
        {
            "doc": [f"d{i}" for i in range(N)],
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), DIM),
            "lang": ["en", "de"] * (N // 2),
            "n": list(range(N)),
        }
    )
    pq.write_table(table, root / "v.parquet", row_group_size=128)
    feather.write_feather(
        table.rename_columns(["id", "vector", "lang", "n"]).drop(["id"]), root / "v.arrow"
    )
    with h5py.File(root / "v.hdf5", "w") as f:
        f["train"] = x
        f["ids"] = np.arange(N, dtype=np.uint64) + 10_000
    return {
        "npy": root / "v.npy",
        "parquet": root / "v.parquet",
        "arrow": root / "v.arrow",
        "hdf5": root / "v.hdf5",
        "x": root / "v.npy",
    }


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_help_explains_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    text = parser.format_help()
    for command in ("serve", "create", "load", "query", "info", "snapshot"):
        assert command in text
    assert ("diagnose" in text) == HAS_DIAGNOSE
    for command in ("serve", "create", "load", "query", "info", "snapshot"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: quiver " + command in capsys.readouterr().out


def test_embedded_workflow(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db-dir", str(tmp_path / "db")]
    out = run(capsys, "create", "plain", "--dim", str(DIM), "--metric", "l2", *db)
    assert json.loads(out)["metric"] == "l2"
    assert "loaded 400 points" in run(capsys, "load", "plain", str(files["npy"]), "--quiet", *db)
    out = run(capsys, "load", "docs", str(files["parquet"]), *LOAD_DOCS, *db)
    assert "has 400" in out
    run(capsys, "load", "arrowed", str(files["arrow"]), "--create", "--quiet", *db)
    run(capsys, "load", "h5", str(files["hdf5"]), "--create", "--id-column", "ids", "--quiet", *db)

    listing = run(capsys, "info", *db)
    assert all(f"{c}\t400 points" in listing for c in ("plain", "docs", "arrowed", "h5"))
    info = json.loads(run(capsys, "info", "h5", *db))
    assert info["count"] == N and info["dim"] == DIM

    out = run(
        capsys,
        "query",
        "docs",
        "--id",
        "d3",
        "-k",
        "3",
        "--with-payload",
        "--filter",
        '{"must": [{"key": "lang", "match": {"value": "de"}}]}',
        *db,
    )
    rows = out.strip().splitlines()
    assert len(rows) == 3 and all('"lang": "de"' in r for r in rows)
    top3 = json.loads(run(capsys, "query", "docs", "--id", "d3", "-k", "3", "--json", *db))
    page = run(
        capsys, "query", "docs", "--id", "d3", "-k", "2", "--offset", "1",
        "--with-payload", "lang", "--json", *db,
    )  # fmt: skip
    hits = json.loads(page)
    assert [h["id"] for h in hits] == [h["id"] for h in top3[1:]]
    assert all(set(h["payload"]) == {"lang"} for h in hits)
    x = np.load(files["npy"])
    out = run(capsys, "query", "plain", "--vector", json.dumps(x[7].tolist()), "--json", *db)
    assert json.loads(out)[0]["id"] == 7
    np.save(tmp_path / "q.npy", x[:2])
    out = run(capsys, "query", "h5", "--vector-file", str(tmp_path / "q.npy"), "-k", "1", *db)
    assert "query 1:" in out and "10001" in out

    snap = tmp_path / "docs.snapshot"
    assert "wrote" in run(capsys, "snapshot", "create", "docs", "-o", str(snap), *db)
    assert "400 points" in run(capsys, "snapshot", "restore", str(snap), "docs2", *db)


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "missing", "--db-dir", str(tmp_path / "db")]) == 1
    assert "CollectionNotFoundError" in capsys.readouterr().err
    bad = tmp_path / "v.csv"
    bad.write_text("1,2\n")
    assert main(["load", "x", str(bad), "--db-dir", str(tmp_path / "db")]) == 2
    assert "unknown file type" in capsys.readouterr().err


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI expecting failure: a non-zero status and one line on stderr, no traceback."""
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_connection_refused_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    err = one_line_error(capsys, ["info", "--url", url])
    assert url in err and "cannot reach" in err


def test_missing_input_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--db-dir", str(tmp_path / "db")]
    missing = tmp_path / "missing.npy"
    err = one_line_error(capsys, ["load", "x", str(missing), "--create", *db])
    assert str(missing) in err and "no such file" in err
    err = one_line_error(capsys, ["snapshot", "restore", str(tmp_path / "gone.snapshot"), "y", *db])
    assert "no such file" in err
    run(capsys, "create", "c", "--dim", "2", *db)
    err = one_line_error(capsys, ["query", "c", "--vector-file", str(missing), *db])
    assert "no such file" in err


def test_malformed_json_option_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db-dir", str(tmp_path / "db")]
    run(capsys, "create", "c", "--dim", "2", *db)
    err = one_line_error(capsys, ["query", "c", "--id", "1", "--filter", "{bad", *db])
    assert "--filter" in err and "JSON" in err
    err = one_line_error(capsys, ["query", "c", "--vector", "[1, 2", *db])
    assert "--vector" in err and "JSON" in err


@pytest.mark.skipif(not HAS_DIAGNOSE, reason="quiver.quality.diagnose is not in this tree")
def test_diagnose(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = run(capsys, "diagnose", str(files["npy"]), "--no-navigation", "--json")
    assert "predicted" in out or "recall" in out


@pytest.mark.slow
def test_remote_workflow_and_installed_entry_point(files: dict[str, Path], tmp_path: Path) -> None:
    quiver_bin = Path(sys.executable).parent / "quiver"
    assert quiver_bin.is_file(), "the `quiver` console script is not installed"
    with running_server(tmp_path / "db", tmp_path / "server.log") as server:
        url = ["--url", server.url]

        def cli(*argv: str) -> str:
            result = subprocess.run(
                [str(quiver_bin), *argv], capture_output=True, text=True, cwd=tmp_path, timeout=120
            )
            assert result.returncode == 0, result.stderr
            return result.stdout

        cli("load", "docs", str(files["parquet"]), *LOAD_DOCS, *url)
        assert "docs\t400 points" in cli("info", *url)
        assert "d5" in cli("query", "docs", "--id", "d4", "-k", "400", *url)
        top = json.loads(cli("query", "docs", "--id", "d4", "-k", "3", "--json", *url))
        page = cli(
            "query", "docs", "--id", "d4", "-k", "2", "--offset", "1", "--with-payload", "lang",
            "--json", *url,
        )  # fmt: skip
        hits = json.loads(page)
        assert [h["id"] for h in hits] == [h["id"] for h in top[1:]]
        assert all(set(h["payload"]) == {"lang"} for h in hits)
        cli("snapshot", "create", "docs", "-o", str(tmp_path), *url)
        assert list(tmp_path.glob("docs-*.snapshot"))
