"""``RemoteCollection.snapshot(dir)`` writes only a plain file name inside ``dir``, whatever
name the server returns (a fake server answers through httpx's MockTransport)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from quiver.client import Client, RemoteCollection

INFO = {"name": "docs", "dim": 4, "metric": "cosine", "id_type": "uint64"}


def fake_server(snapshot_name: str, requests: list[str]) -> Client:
    """A client whose server names its snapshot ``snapshot_name``."""

    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request.url.path)
        if request.method == "POST":
            meta = {"name": snapshot_name, "collection": "docs", "size": 3}
            return httpx.Response(200, json={"result": meta, "time": 0.0})
        return httpx.Response(200, content=b"tar")

    http = httpx.Client(base_url="http://server", transport=httpx.MockTransport(handle))
    return Client(http=http)


@pytest.mark.parametrize(
    "bad",
    [
        "../escape.snapshot",
        "../../home/user/.ssh/authorized_keys",
        "/etc/passwd",
        "sub/dir.snapshot",
        "back\\slash.snapshot",
        "",
        ".",
        "..",
        ".hidden.snapshot",
        "nul\0byte.snapshot",
        "docs.snapshot\n",
        "x" * 300 + ".snapshot",
    ],
)
def test_a_server_chosen_name_cannot_leave_the_directory(tmp_path: Path, bad: str) -> None:
    target = tmp_path / "downloads"
    target.mkdir()
    requests: list[str] = []
    coll = RemoteCollection(fake_server(bad, requests), INFO)
    with pytest.raises(ValueError, match="snapshot name"):
        coll.snapshot(target)
    assert list(tmp_path.rglob("*")) == [target]  # nothing written anywhere
    assert len(requests) == 1  # the download was not even requested


def test_a_plain_name_is_written_inside_the_directory(tmp_path: Path) -> None:
    requests: list[str] = []
    coll = RemoteCollection(fake_server("docs-20260101T000000Z.snapshot", requests), INFO)
    path = coll.snapshot(tmp_path)
    assert path == tmp_path / "docs-20260101T000000Z.snapshot"
    assert path.read_bytes() == b"tar"
    explicit = coll.snapshot(tmp_path / "mine.snapshot")  # a file path is the caller's choice
    assert explicit.read_bytes() == b"tar"
