"""WordNet 3.0 gloss text, taken from the Debian package ``wordnet-base``.

The package is fetched with ``apt-get download`` (no root, no install) and unpacked with
``dpkg-deb -x`` into a cache folder. Each synset gloss is split into definitions and quoted
example sentences; the distinct texts are the corpus that the MiniLM data sets embed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.datagen.debian import fetch_deb

log = logging.getLogger(__name__)

PACKAGE = "wordnet-base"
POS_FILES = ("noun", "verb", "adj", "adv")
WORDNET_SUBDIR = Path("usr/share/wordnet")
COPYRIGHT_FILE = Path("usr/share/doc/wordnet-base/copyright")

# Lexicographer file numbers -> names, as documented in WordNet's lexnames(5).
LEXNAMES: dict[int, str] = {
    0: "adj.all",
    1: "adj.pert",
    2: "adv.all",
    3: "noun.Tops",
    4: "noun.act",
    5: "noun.animal",
    6: "noun.artifact",
    7: "noun.attribute",
    8: "noun.body",
    9: "noun.cognition",
    10: "noun.communication",
    11: "noun.event",
    12: "noun.feeling",
    13: "noun.food",
    14: "noun.group",
    15: "noun.location",
    16: "noun.motive",
    17: "noun.object",
    18: "noun.person",
    19: "noun.phenomenon",
    20: "noun.plant",
    21: "noun.possession",
    22: "noun.process",
    23: "noun.quantity",
    24: "noun.relation",
    25: "noun.shape",
    26: "noun.state",
    27: "noun.substance",
    28: "noun.time",
    29: "verb.body",
    30: "verb.change",
    31: "verb.cognition",
    32: "verb.communication",
    33: "verb.competition",
    34: "verb.consumption",
    35: "verb.contact",
    36: "verb.creation",
    37: "verb.emotion",
    38: "verb.motion",
    39: "verb.perception",
    40: "verb.possession",
    41: "verb.social",
    42: "verb.stative",
    43: "verb.weather",
    44: "adj.ppl",
}


@dataclass(frozen=True)
class Gloss:
    """One distinct gloss text with the synset it was first seen in."""

    text: str
    kind: str  # "definition" or "example"
    pos: str  # "noun", "verb", "adj" or "adv"
    lexfile: str  # e.g. "noun.Tops"
    synset_offset: int


def fetch_package(cache_dir: Path) -> Path:
    """Download and unpack ``wordnet-base`` into ``cache_dir``; return the unpacked root."""
    return fetch_deb(PACKAGE, cache_dir)


def license_text(root: Path) -> str:
    """The package's copyright file, verbatim: it carries the WordNet 3.0 licence notice."""
    return (root / COPYRIGHT_FILE).read_text(encoding="utf-8")


def split_gloss(gloss: str) -> list[str]:
    """Split a gloss on ``;`` that lie outside double quotes.

    Quote-aware so that an example sentence holding a ``;`` stays whole. A gloss with an odd
    number of quotes (about 20 in WordNet 3.0) is split on every ``;`` instead.
    """
    if gloss.count('"') % 2:
        return gloss.split(";")
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in gloss:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def classify_part(part: str) -> tuple[str, str] | None:
    """Return ``(kind, text)`` for one gloss part, or None when it is empty.

    A part opening with a double quote is an example: its text is what lies between that
    quote and the last one (a trailing attribution such as ``--Shakespeare`` is dropped).
    Anything else is a definition. Stray unmatched quotes at the edges are removed.
    """
    part = part.strip()
    if part.startswith('"'):
        end = part.rfind('"')
        text = part[1:end] if end > 0 else part[1:]
        kind = "example"
    else:
        text = part
        kind = "definition"
    text = text.strip().strip('"').strip()
    return (kind, text) if text else None


def parse_data_line(line: str, pos: str) -> Iterator[Gloss]:
    """Yield the gloss parts of one ``data.<pos>`` synset line."""
    fields, sep, gloss = line.partition("|")
    if not sep:
        return
    head = fields.split()
    offset, lex_num = int(head[0]), int(head[1])
    lexfile = LEXNAMES[lex_num]
    for part in split_gloss(gloss.strip()):
        parsed = classify_part(part)
        if parsed is not None:
            kind, text = parsed
            yield Gloss(text=text, kind=kind, pos=pos, lexfile=lexfile, synset_offset=offset)


def iter_data_file(path: Path, pos: str) -> Iterator[Gloss]:
    """Yield every gloss part of one data file, skipping the licence header."""
    with path.open(encoding="latin-1") as fh:
        for line in fh:
            if line.startswith("  ") or not line.strip():
                continue
            yield from parse_data_line(line, pos)


def load_glosses(cache_dir: Path) -> list[Gloss]:
    """All distinct WordNet gloss texts (first occurrence wins), in file order.

    Files are read in the order noun, verb, adj, adv; the result is deterministic.
    """
    root = fetch_package(cache_dir)
    seen: set[str] = set()
    out: list[Gloss] = []
    for pos in POS_FILES:
        for gloss in iter_data_file(root / WORDNET_SUBDIR / f"data.{pos}", pos):
            if gloss.text not in seen:
                seen.add(gloss.text)
                out.append(gloss)
    n_def = sum(g.kind == "definition" for g in out)
    log.info(
        "WordNet: %d distinct texts (%d definitions, %d examples)",
        len(out),
        n_def,
        len(out) - n_def,
    )
    return out


if __name__ == "__main__":
    import argparse

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(description="Parse WordNet glosses and print counts.")
    parser.add_argument("cache_dir", type=Path)
    args = parser.parse_args()
    glosses = load_glosses(args.cache_dir)
    kinds = [g.kind for g in glosses]
    print(
        f"definitions={kinds.count('definition')} examples={kinds.count('example')} "
        f"total={len(glosses)}"
    )
