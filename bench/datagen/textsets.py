"""Real text passages from Debian documentation packages, for the large MiniLM text set.

Each package is fetched with ``apt-get download`` (no root, no install) and unpacked with
``dpkg-deb -x`` into a cache folder. Its files are cut into plain-text passages:

- ``dict-gcide`` (1913 Webster + supplements): every definition, note or quotation block of
  ``usr/share/dictd/gcide.dict.dz``, with pronunciations, etymologies, accent codes, cross
  reference braces and author attributions removed;
- ``linux-doc-6.1`` (``*.rst``, ``*.rst.gz``) and ``python3.11-doc``
  (``html/_sources/**/*.rst.txt``): reStructuredText paragraphs and list items, without
  titles, tables, comments, code and literal blocks, inline markup reduced to its text;
- ``perl-doc`` (``*.pod``): ordinary POD paragraphs and headings, formatting codes reduced
  to their text, verbatim (code) paragraphs dropped;
- ``fortunes``: the entries of every fortune file (split on lines holding ``%``).

Every passage then has its whitespace collapsed; passages longer than :data:`MAX_CHARS` are
split at sentence ends (MiniLM reads at most 256 word pieces, about 1000 characters), and
pieces shorter than :data:`MIN_CHARS` or not mostly letters (code, ASCII art) are dropped.
"""

from __future__ import annotations

import gzip
import html
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.datagen.debian import fetch_deb

log = logging.getLogger(__name__)

MIN_CHARS = 20
MAX_CHARS = 1000
MIN_WORDS = 3
MIN_LETTER_FRACTION = 0.6

GCIDE = "dict-gcide"
LINUX_DOC = "linux-doc-6.1"
PYTHON_DOC = "python3.11-doc"
PERL_DOC = "perl-doc"
FORTUNES = "fortunes"
SOURCES = (GCIDE, LINUX_DOC, PYTHON_DOC, PERL_DOC, FORTUNES)


@dataclass(frozen=True)
class Passage:
    """One distinct passage and the Debian package it came from."""

    text: str
    source: str


# --------------------------------------------------------------------------- packages


# --------------------------------------------------------------------------- common cleanup

_WS = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9])")


def collapse_ws(text: str) -> str:
    """Replace every run of whitespace with one space and strip the ends."""
    return _WS.sub(" ", text).strip()


def split_long(text: str, max_chars: int = MAX_CHARS) -> list[str]:
    """Cut ``text`` into pieces of at most ``max_chars``, packing whole sentences greedily.

    A single sentence longer than ``max_chars`` is cut at word boundaries.
    """
    if len(text) <= max_chars:
        return [text]
    parts: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        if len(sentence) > max_chars:
            parts.extend(_pack(sentence.split(" "), max_chars))
        else:
            parts.append(sentence)
    return _pack(parts, max_chars)


def _pack(parts: Iterable[str], max_chars: int) -> list[str]:
    """Join consecutive ``parts`` with spaces into pieces of at most ``max_chars``.

    A part longer than ``max_chars`` stays whole, as a piece of its own.
    """
    pieces: list[str] = []
    current = ""
    for part in parts:
        if current and len(current) + 1 + len(part) > max_chars:
            pieces.append(current)
            current = part
        else:
            current = f"{current} {part}" if current else part
    if current:
        pieces.append(current)
    return pieces


def is_prose(text: str) -> bool:
    """True when ``text`` looks like natural language: enough words, mostly letters.

    Drops code lines, ASCII art, tables of numbers and similar non-prose leftovers.
    """
    if len(text) < MIN_CHARS or len(text.split()) < MIN_WORDS:
        return False
    visible = [c for c in text if not c.isspace()]
    letters = sum(c.isalpha() for c in visible)
    return letters >= MIN_LETTER_FRACTION * len(visible)


def to_passages(raw: Iterable[str], max_chars: int = MAX_CHARS) -> Iterator[str]:
    """Normalise raw passages: collapse whitespace, split long ones, keep prose pieces."""
    for text in raw:
        for piece in split_long(collapse_ws(text), max_chars):
            if is_prose(piece):
                yield piece


def _blocks(lines: Iterable[str]) -> Iterator[list[str]]:
    """Group lines into blocks separated by blank lines."""
    block: list[str] = []
    for line in lines:
        if line.strip():
            block.append(line)
        elif block:
            yield block
            block = []
    if block:
        yield block


# --------------------------------------------------------------------------- dict-gcide

GCIDE_DICT = Path("usr/share/dictd/gcide.dict.dz")
GCIDE_INDEX = Path("usr/share/dictd/gcide.index")
_B64 = {
    c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
}
_GCIDE_TAG_LINE = re.compile(r"^\s*\[[^\[\]]*\]\s*$")
_GCIDE_PRON = re.compile(r"\\[^\\]*\\")
_GCIDE_PRON_PAREN = re.compile(r"^\s*\([^()]*\)")
_GCIDE_ACCENT = re.compile(r"\[([=^~'`\":,]?[A-Za-z]{1,2}[=^~'`\":,]?)\]")
_GCIDE_BRACKET = re.compile(r"\[[^\[\]]*\]")
_GCIDE_BRACE = re.compile(r"\{([^{}]*)\}")
_GCIDE_ATTRIBUTION = re.compile(r"--[A-Z][\w'&.]*(?:\s+(?:[A-Z][\w'&.]*|[ivxlc]+\.|\d+\.))*")
_GCIDE_POS = re.compile(r"^(?:(?:[a-z]{1,5}\.|&|,|;)\s*)+")
_SENSE_NUMBER = re.compile(r"^(?:\d+\.|\([a-z]\))\s*")


def decode_dict_number(code: str) -> int:
    """Decode a dictd index number (base-64 digits, most significant first)."""
    value = 0
    for ch in code:
        value = value * 64 + _B64[ch]
    return value


def gcide_entries(dict_text: bytes, index_text: str) -> Iterator[str]:
    """Yield each distinct dictionary entry's text, in file order, skipping the header entries.

    The index maps headwords to byte (offset, length) in the uncompressed dictionary;
    several headwords may share one entry.
    """
    spans: set[tuple[int, int]] = set()
    for line in index_text.splitlines():
        fields = line.split("\t")
        if len(fields) == 3:
            spans.add((decode_dict_number(fields[1]), decode_dict_number(fields[2])))
    for offset, length in sorted(spans):
        entry = dict_text[offset : offset + length].decode("cp1252", errors="replace")
        if not entry.startswith("00-database"):  # also indexed as "00databaseinfo" etc.
            yield entry


def clean_gcide_text(text: str) -> str:
    """Strip GCIDE markup from a block of text that has no headword line."""
    text = collapse_ws(text)
    text = _GCIDE_ACCENT.sub(lambda m: re.sub(r"[^A-Za-z]", "", m.group(1)), text)
    text = _GCIDE_PRON.sub("", text)
    while True:
        stripped = _GCIDE_BRACKET.sub("", text)
        if stripped == text:
            break
        text = stripped
    text = _GCIDE_BRACE.sub(lambda m: re.sub(r"[*\"`]", "", m.group(1)), text)
    text = _GCIDE_ATTRIBUTION.sub("", text)
    text = collapse_ws(text)
    return _SENSE_NUMBER.sub("", text).strip()


def split_gcide_head(first_line: str) -> str:
    """Return what follows the headword, pronunciations and pronunciation key on a head line."""
    end = first_line.rfind("\\")
    if end < 0:
        return ""
    return _GCIDE_PRON_PAREN.sub("", first_line[end + 1 :])


def gcide_entry_passages(entry: str) -> Iterator[str]:
    """Yield the cleaned definition, note and quotation blocks of one GCIDE entry.

    Blocks end at a blank line or at a source tag line such as ``[1913 Webster]``. The head
    block loses its headword, pronunciation, part of speech and etymology. Synonym lists
    (``Syn:``) are skipped.
    """
    lines = [ln for ln in entry.splitlines() if not _GCIDE_TAG_LINE.match(ln)]
    for i, block in enumerate(_blocks(lines)):
        if i == 0:
            block = [split_gcide_head(block[0]), *block[1:]]
        text = clean_gcide_text("\n".join(block))
        if i == 0:
            text = _SENSE_NUMBER.sub("", _GCIDE_POS.sub("", text)).strip()
        if text and not text.startswith("Syn"):
            yield text


def iter_gcide(root: Path) -> Iterator[str]:
    """Raw passages of the GCIDE dictionary unpacked under ``root``."""
    with gzip.open(root / GCIDE_DICT, "rb") as fh:
        dict_text = fh.read()
    index_text = (root / GCIDE_INDEX).read_text(encoding="utf-8", errors="replace")
    for entry in gcide_entries(dict_text, index_text):
        yield from gcide_entry_passages(entry)


# --------------------------------------------------------------------------- fortunes

FORTUNE_DIR = Path("usr/share/games/fortunes")
_OVERSTRIKE = re.compile(r".\x08")


def split_fortunes(text: str) -> list[str]:
    """Split a fortune file into its entries (separated by lines holding only ``%``)."""
    entries: list[str] = []
    current: list[str] = []
    for line in _OVERSTRIKE.sub("", text).splitlines():
        if line.strip() == "%":
            entries.append("\n".join(current))
            current = []
        else:
            current.append(line)
    entries.append("\n".join(current))
    return [e for e in entries if e.strip()]


def iter_fortunes(root: Path) -> Iterator[str]:
    """Raw passages of every fortune file (not the ``.dat`` indexes or ``.u8`` links)."""
    for path in sorted((root / FORTUNE_DIR).iterdir()):
        if path.suffix or path.is_symlink() or not path.is_file():
            continue
        yield from split_fortunes(path.read_text(encoding="utf-8", errors="replace"))


# --------------------------------------------------------------------------- reStructuredText

# directives whose body is code, data or navigation rather than prose
RST_SKIP_DIRECTIVES = frozenset(
    {
        "code-block",
        "code",
        "sourcecode",
        "literalinclude",
        "kernel-doc",
        "kernel-include",
        "kernel-feat",
        "kernel-abi",
        "kernel-figure",
        "kernel-render",
        "toctree",
        "highlight",
        "doctest",
        "testcode",
        "testsetup",
        "testcleanup",
        "testoutput",
        "productionlist",
        "raw",
        "include",
        "image",
        "figure",
        "csv-table",
        "list-table",
        "flat-table",
        "table",
        "graphviz",
        "math",
        "parsed-literal",
        "index",
        "tabularcolumns",
        "only",
        "ifconfig",
        "moduleauthor",
        "sectionauthor",
        "opcode",
        "availability",
        "impl-detail",
    }
)
# directives whose argument on the directive line is prose
RST_PROSE_ARGUMENT = frozenset(
    {
        "note",
        "warning",
        "attention",
        "caution",
        "danger",
        "error",
        "hint",
        "important",
        "tip",
        "seealso",
        "admonition",
        "deprecated",
        "versionadded",
        "versionchanged",
    }
)
_RST_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([\w:.-]+)::\s*(.*)$")
_RST_COMMENT = re.compile(r"^(\s*)\.\.(?:\s|$)")
_RST_UNDERLINE = re.compile(r"^\s*([=\-~^\"'`#*+.:_<>])\1{2,}\s*$")
_RST_TABLE = re.compile(r"^\s*(?:\+[-=+]{3,}|=+(?:\s+=+)+\s*$|\|.*\|\s*$)")
_RST_FIELD = re.compile(r"^\s*:[\w .-]+:(?:\s|$)")
_RST_BULLET = re.compile(r"^\s*(?:[-*+\u2022]|\d+[.)]|#\.|\([a-zA-Z0-9]+\))\s+")
_RST_LITERAL = re.compile(r"``(.+?)``")
_RST_ROLE = re.compile(r"(?::[\w:.+-]+:)?`([^`]+)`(?::[\w:.+-]+:)?_{0,2}")
_RST_STRONG = re.compile(r"\*\*(.+?)\*\*")
_RST_EMPHASIS = re.compile(r"(?<![\w*])\*(\S(?:.*?\S)?)\*(?![\w*])")
_RST_SUBSTITUTION = re.compile(r"\|(\w[\w -]*)\|")
_RST_FOOTNOTE = re.compile(r"\s?\[(?:#\w*|\*|\d+)\]_")
_RST_ESCAPE = re.compile(r"\\([*_`|\\])")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _role_text(match: re.Match[str]) -> str:
    """Visible text of an interpreted-text role or hyperlink reference."""
    inner = match.group(1)
    if inner.endswith(">") and "<" in inner:
        label = inner[: inner.rfind("<")].strip()
        inner = label or inner[inner.rfind("<") + 1 : -1]
    inner = inner.lstrip("!")
    if inner.startswith("~"):
        inner = inner[1:].rsplit(".", 1)[-1]
    return inner


def clean_rst_inline(text: str) -> str:
    """Reduce reStructuredText inline markup to its visible text."""
    text = _RST_LITERAL.sub(r"\1", text)
    text = _RST_ROLE.sub(_role_text, text)
    text = _RST_STRONG.sub(r"\1", text)
    text = _RST_EMPHASIS.sub(r"\1", text)
    text = _RST_SUBSTITUTION.sub(r"\1", text)
    text = _RST_FOOTNOTE.sub("", text)
    text = _RST_ESCAPE.sub(r"\1", text)
    if text.endswith(" ::") or text == "::":
        text = text[:-2]
    elif text.endswith("::"):
        text = text[:-1]
    return text.strip()


def rst_paragraphs(text: str) -> Iterator[str]:
    """Yield the prose paragraphs and list items of a reStructuredText document (raw markup).

    Skipped: section titles, tables, comments, field lists, doctest blocks, the bodies of
    code-like directives and the literal block after a paragraph ending in ``::``.
    """
    paragraph: list[str] = []
    skip_above: int | None = None  # skip lines indented deeper than this (-1: to a blank)
    literal_pending: int | None = None  # indent of a paragraph that ended with "::"

    def flush() -> Iterator[str]:
        nonlocal literal_pending
        if paragraph:
            joined = " ".join(ln.strip() for ln in paragraph)
            if joined.endswith("::"):
                literal_pending = _indent(paragraph[0])
            if not (_RST_FIELD.match(paragraph[0]) or joined.startswith(">>>")):
                yield joined
            paragraph.clear()

    for line in text.splitlines():
        if skip_above is not None:
            if skip_above < 0 and line.strip():
                continue
            if skip_above >= 0 and (not line.strip() or _indent(line) > skip_above):
                continue
            skip_above = None
        if not line.strip():
            yield from flush()
            continue
        if literal_pending is not None:
            if _indent(line) > literal_pending:
                skip_above = literal_pending
                literal_pending = None
                continue
            literal_pending = None
        directive = _RST_DIRECTIVE.match(line)
        if directive or _RST_COMMENT.match(line):
            yield from flush()
            name = directive.group(2) if directive else ""
            if not directive or name in RST_SKIP_DIRECTIVES:
                skip_above = _indent(line)
            elif name in RST_PROSE_ARGUMENT and directive.group(3):
                paragraph.append(directive.group(3))
            continue
        if _RST_UNDERLINE.match(line):
            paragraph.clear()  # the title above an underline, or an overline
            continue
        if _RST_TABLE.match(line):
            paragraph.clear()  # a table runs to the next blank line
            skip_above = -1
            continue
        bullet = _RST_BULLET.match(line)
        if bullet:
            yield from flush()
            line = line[bullet.end() :]
        paragraph.append(line)
    yield from flush()


def iter_rst(text: str) -> Iterator[str]:
    """Raw passages of one reStructuredText document: paragraphs with inline markup removed."""
    for paragraph in rst_paragraphs(text):
        yield clean_rst_inline(paragraph)


def _read_maybe_gz(path: Path) -> str:
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as fh:
            return fh.read().decode("utf-8", errors="replace")
    return path.read_text(encoding="utf-8", errors="replace")


def iter_linux_doc(root: Path) -> Iterator[str]:
    """Raw passages of the kernel documentation sources (``*.rst`` and ``*.rst.gz``).

    The ``translations`` tree (Chinese, Japanese, Korean, Italian, Spanish) is left out:
    the model is English-only.
    """
    base = root / "usr/share/doc/linux-doc-6.1"
    paths = sorted([*base.rglob("*.rst"), *base.rglob("*.rst.gz")])
    for path in paths:
        if "translations" in path.relative_to(base).parts:
            continue
        yield from iter_rst(_read_maybe_gz(path))


def iter_python_doc(root: Path) -> Iterator[str]:
    """Raw passages of the Python documentation sources (``html/_sources/**/*.rst.txt``)."""
    base = root / "usr/share/doc/python3.11/html/_sources"
    for path in sorted(base.rglob("*.rst.txt")):
        yield from iter_rst(path.read_text(encoding="utf-8", errors="replace"))


# --------------------------------------------------------------------------- POD

_POD_DOUBLE = re.compile(r"([A-Z])<{2,}\s+(.*?)\s+>{2,}", re.DOTALL)
_POD_SINGLE = re.compile(r"([A-Z])<([^<>]*)>")
_POD_ESCAPES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/"}


def _pod_code(code: str, content: str) -> str:
    """Visible text of one POD formatting code."""
    if code == "E":
        if content.isdigit():
            return chr(int(content))
        return _POD_ESCAPES.get(content, html.unescape(f"&{content};"))
    if code in "XZ":
        return ""
    if code == "L":
        if "|" in content:
            return content.split("|", 1)[0]
        return content.replace('"', "").replace("/", ": ").strip(": ")
    return content


def clean_pod_inline(text: str) -> str:
    """Reduce POD formatting codes (``B<>``, ``C<< >>``, ``L<>``, ``E<>``...) to their text."""
    text = _POD_DOUBLE.sub(lambda m: _pod_code(m.group(1), m.group(2)), text)
    while True:
        reduced = _POD_SINGLE.sub(lambda m: _pod_code(m.group(1), m.group(2)), text)
        if reduced == text:
            return text
        text = reduced


def pod_paragraphs(text: str) -> Iterator[str]:
    """Yield the ordinary paragraphs and ``=head2``+ headings of a POD document (raw codes).

    Skipped: verbatim (indented) paragraphs, ``=item``/``=head1`` and other commands,
    ``=begin``...``=end`` and ``=for`` blocks, and text after ``=cut``.
    """
    in_pod = True
    in_begin = False
    for block in _blocks(text.splitlines()):
        first = block[0]
        if first.startswith("="):
            command = first.split(None, 1)[0]
            in_pod = command != "=cut"
            if command == "=begin":
                in_begin = True
            elif command == "=end":
                in_begin = False
            elif command in ("=head2", "=head3", "=head4") and not in_begin:
                yield " ".join(block)[len(command) :]
            continue
        if in_pod and not in_begin and not first[:1].isspace():
            yield " ".join(block)


def iter_pod(text: str) -> Iterator[str]:
    """Raw passages of one POD document, formatting codes removed."""
    for paragraph in pod_paragraphs(text):
        yield clean_pod_inline(paragraph)


def iter_perl_doc(root: Path) -> Iterator[str]:
    """Raw passages of every ``*.pod`` file of the Perl documentation."""
    for path in sorted((root / "usr/share/perl").rglob("*.pod")):
        yield from iter_pod(path.read_text(encoding="utf-8", errors="replace"))


# --------------------------------------------------------------------------- corpus

EXTRACTORS: dict[str, Callable[[Path], Iterator[str]]] = {
    GCIDE: iter_gcide,
    LINUX_DOC: iter_linux_doc,
    PYTHON_DOC: iter_python_doc,
    PERL_DOC: iter_perl_doc,
    FORTUNES: iter_fortunes,
}


def load_passages(
    cache_dir: Path, exclude: Iterable[str] = (), sources: Iterable[str] = SOURCES
) -> list[Passage]:
    """All distinct passages of ``sources`` (first occurrence wins), in a deterministic order.

    Texts in ``exclude`` (for example the WordNet glosses that are embedded already) are
    left out.
    """
    seen = set(exclude)
    out: list[Passage] = []
    for source in sources:
        root = fetch_deb(source, cache_dir / source)
        before = len(out)
        for text in to_passages(EXTRACTORS[source](root)):
            if text not in seen:
                seen.add(text)
                out.append(Passage(text=text, source=source))
        log.info("%s: %d distinct new passages", source, len(out) - before)
    return out


if __name__ == "__main__":
    import argparse
    from collections import Counter

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(description="Extract passages and print counts.")
    parser.add_argument("cache_dir", type=Path)
    parser.add_argument("--source", action="append", choices=SOURCES)
    parser.add_argument("--sample", type=int, default=0, help="print this many random passages")
    args = parser.parse_args()
    passages = load_passages(args.cache_dir, sources=args.source or SOURCES)
    print(Counter(p.source for p in passages))
    if args.sample:
        import random

        for p in random.Random(0).sample(passages, args.sample):
            print(f"[{p.source}] {p.text}")
