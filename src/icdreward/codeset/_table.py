"""Reading the code set tables shipped as package data.

The tables are generated at build time by ``scripts/generate_codeset.py`` from the
``simple_icd_10_cm`` package, whose import alone takes about 1.8 s and 200 MB. Parsing
our compact gzip'd TSV instead takes a fraction of that, which matters because every
training worker loads the code set.

Only the main table is read eagerly. The inclusion terms are needed by the free-text
matcher alone and are read on its first use (:func:`read_terms`).
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
from array import array
from collections.abc import Iterator
from importlib import resources
from importlib.resources.abc import Traversable

import attrs

__all__ = ["Table", "available_years", "read_table", "read_terms"]

_PACKAGE = "icdreward.codeset"
_PREFIX = "icd10cm-"
_SUFFIX = ".tsv.gz"
_HEADER = "code\tkind\tparent\tbillable\tdescription"
_TERMS_HEADER = "code\tterm"


@attrs.frozen(eq=False)
class Table:
    """The parsed main table of one year, in the shapes the lookups need.

    Codes (categories and subcategories, billable or not) are numbered by their row
    order in the table; that number is their id in :meth:`CodeSet.level_ids`. Chapters
    and blocks live in their own dictionaries because their names collide with codes
    (block ``"B99"`` holds category ``"B99"``).

    Attributes:
        year: fiscal year of the code set.
        codes: every category/subcategory code, in tabular order.
        index: code -> position in ``codes``.
        descriptions: description of ``codes[i]``.
        parents: position in ``codes`` of the parent of ``codes[i]``; -1 for categories,
            whose parent is a block (an int array: 4 bytes a row, not a string each).
        billable: ``billable[i]`` is 1 when ``codes[i]`` is billable.
        category_blocks: category -> the block holding it (read from the table, never
            computed from ranges: ``C4A`` or ``M1A`` would sort into the wrong block).
        chapters: chapter id (``"13"``) -> (position, title).
        blocks: block id (``"M50-M54"``) -> (position, title, chapter id).
    """

    year: int
    codes: list[str]
    index: dict[str, int]
    descriptions: list[str]
    parents: array[int]
    billable: bytearray
    category_blocks: dict[str, str]
    chapters: dict[str, tuple[int, str]]
    blocks: dict[str, tuple[int, str, str]]


def _data_dir() -> Traversable:
    return resources.files(_PACKAGE).joinpath("data")


@functools.cache
def available_years() -> tuple[int, ...]:
    """Years whose table is shipped, ascending (the data folder is listed once).

    >>> 2026 in available_years()
    True
    """
    years = []
    for entry in _data_dir().iterdir():
        name = entry.name
        if name.startswith(_PREFIX) and name.endswith(_SUFFIX):
            stem = name[len(_PREFIX) : -len(_SUFFIX)]
            if stem.isdigit():
                years.append(int(stem))
    return tuple(sorted(years))


@contextlib.contextmanager
def _open_lines(name: str, header: str) -> Iterator[Iterator[str]]:
    """Yield the lines of a shipped gzip'd TSV after checking its header.

    The text is streamed: holding the whole decompressed table (10 MB) and its list of
    lines at once would double the peak memory of loading the code set.
    """
    with (
        _data_dir().joinpath(name).open("rb") as raw,
        gzip.GzipFile(fileobj=raw, mode="rb") as unzipped,
        io.TextIOWrapper(unzipped, encoding="utf-8", newline="\n") as text,
    ):
        first = text.readline().rstrip("\n")
        if first != header:
            raise ValueError(f"{name}: unexpected header {first[:80]!r}, expected {header!r}")
        yield (line.rstrip("\n") for line in text)


def _nearest_prefix(code: str, index: dict[str, int]) -> int:
    for length in range(len(code) - 1, 2, -1):
        position = index.get(code[:length])
        if position is not None:
            return position
    raise ValueError(f"code {code!r} has no parent in the table")


def read_table(year: int) -> Table:
    """Parse the main table of ``year`` (which must be in :func:`available_years`)."""
    codes: list[str] = []
    index: dict[str, int] = {}
    descriptions: list[str] = []
    parents = array("i")
    flags = bytearray()
    category_blocks: dict[str, str] = {}
    chapters: dict[str, tuple[int, str]] = {}
    blocks: dict[str, tuple[int, str, str]] = {}
    with _open_lines(f"{_PREFIX}{year}{_SUFFIX}", _HEADER) as lines:
        for number, line in enumerate(lines, start=2):
            code, kind, parent, billable, description = line.split("\t")
            if kind == "subcategory":
                # Not stored: the parent is the nearest shorter code, listed earlier
                # (nearly always the code less its last character).
                parent_position = index.get(code[:-1])
                if parent_position is None:
                    parent_position = _nearest_prefix(code, index)
                parents.append(parent_position)
            elif kind == "category":
                parents.append(-1)
                category_blocks[code] = parent
            elif kind == "block":
                blocks[code] = (len(blocks), description, parent)
                continue
            elif kind == "chapter":
                chapters[code] = (len(chapters), description)
                continue
            else:
                raise ValueError(f"table {year}, line {number}: unknown kind {kind!r}")
            index[code] = len(codes)
            codes.append(code)
            descriptions.append(description)
            flags.append(billable == "1")
    return Table(
        year=year,
        codes=codes,
        index=index,
        descriptions=descriptions,
        parents=parents,
        billable=flags,
        category_blocks=category_blocks,
        chapters=chapters,
        blocks=blocks,
    )


def read_terms(year: int) -> list[tuple[str, str]]:
    """Return the (code, inclusion term) pairs of ``year``, or ``[]`` if none are shipped."""
    name = f"{_PREFIX}{year}-terms{_SUFFIX}"
    if not _data_dir().joinpath(name).is_file():
        return []
    with _open_lines(name, _TERMS_HEADER) as lines:
        return [(code, term) for code, term in (line.split("\t") for line in lines)]
