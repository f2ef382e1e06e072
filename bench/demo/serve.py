"""Serve the bundled WordNet slice over HTTP until Ctrl-C (``make serve``).

    python -m bench.demo.serve [--db-dir DIR] [--port 8333]

Loads the bundled 20k MiniLM vectors of WordNet glosses into ``DIR`` as the collection
``wordnet`` (once; later runs reuse it), then runs ``quiver serve`` on that directory and, once
it is ready, prints queries to paste. The demo data lives in the checkout, so this is a bench
script, not a command of the installed package.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from pathlib import Path

from quiver import Database
from quiver.client import Client
from quiver.server.cli import main as quiver_main

from .tour import COLLECTION, load_wordnet


def prepare(db_dir: Path) -> None:
    """Load the slice into ``db_dir`` unless it is there already."""
    with Database(db_dir) as db:
        if COLLECTION in db.list_collections():
            print(f"demo: collection {COLLECTION!r} already in {db_dir}", file=sys.stderr)
            return
        print(f"demo: loading the bundled WordNet slice into {db_dir} ...", file=sys.stderr)
        load_wordnet(db, COLLECTION, progress=True)


def print_hint(base: str) -> None:
    """Once the server at ``base`` is ready, print ready-to-paste queries."""
    with Client(base) as client:
        try:
            client.wait_ready(timeout=600)
        except TimeoutError:
            return
    url = f"{base}/collections/{COLLECTION}/points/query"
    print(
        f"\nquiver is serving the demo collection {COLLECTION!r} at {base} "
        f"(API docs: {base}/docs). Try:\n\n"
        f"  curl -s -H 'content-type: application/json' {url} \\\n"
        '    -d \'{"query_id": 0, "k": 5, "with_payload": ["text", "pos"]}\'\n\n'
        "  # only nouns, the second page of five:\n"
        f"  curl -s -H 'content-type: application/json' {url} \\\n"
        '    -d \'{"query_id": 0, "k": 5, "offset": 5, "with_payload": ["text"], "filter": '
        '{"must": [{"key": "pos", "match": {"value": "noun"}}]}}\'\n\n'
        "Ctrl-C stops the server.\n",
        file=sys.stderr,
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--db-dir", type=Path, default=Path(tempfile.gettempdir()) / "quiver-demo-db"
    )
    parser.add_argument("--port", type=int, default=8333)
    args = parser.parse_args()
    prepare(args.db_dir)
    base = f"http://127.0.0.1:{args.port}"
    threading.Thread(target=print_hint, args=(base,), daemon=True).start()
    sys.exit(quiver_main(["serve", "--db-dir", str(args.db_dir), "--port", str(args.port)]))


if __name__ == "__main__":
    main()
