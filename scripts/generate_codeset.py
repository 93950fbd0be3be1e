#!/usr/bin/env python
"""Generate the compact ICD-10-CM tables that ``icdreward.codeset`` ships as package data.

Importing ``simple_icd_10_cm`` parses a 9.7 MB XML file (about 1.8 s and 200 MB), which
is far too slow for a reward function that is imported by every training worker. This
script runs that parse once, at build time, and writes two small gzip'd TSV files:

``icd10cm-<year>.tsv.gz``
    one row per item of the tabular list, in tabular (pre-order) order, with the
    columns ``code  kind  parent  billable  description``:

    * ``code`` is the code without its dot, upper case. Chapters keep their number
      (``"13"``) and blocks their range (``"M50-M54"``; a block that holds a single
      category is named like it, e.g. block ``"B99"`` next to category ``"B99"``).
    * ``kind`` is ``chapter``, ``block``, ``category`` or ``subcategory``.
    * ``parent`` is the parent item of a category (a block) or a block (a chapter),
      read from the tree, never computed from ranges: eleven categories end in a letter
      (``C4A``, ``M1A`` ...) and would be misplaced by range arithmetic. It is empty for
      chapters and for subcategories, whose parent is always the nearest shorter code
      that exists (checked here); leaving it out saves a fifth of the file.
    * ``billable`` is ``1`` for leaves of the tree (the codes valid on a claim).
    * ``description`` is cleaned: whitespace collapsed, and the notes that
      ``simple_icd_10_cm`` glues onto 7th-character titles with a ``"/"`` (and often a
      tab) are dropped, so the title matches the CDC's long description.

``icd10cm-<year>-terms.tsv.gz``
    ``code  term`` rows: the inclusion terms and "includes" notes of categories and
    subcategories. Only the free-text matcher reads it, lazily.

Both files are deterministic (gzip ``mtime=0``, no file name in the header, stable row
order), so regenerating them from the same source gives byte-identical files.

Usage::

    pip install "simple-icd-10-cm==1.5.0"       # ships the April 2026 (FY2026) files
    python scripts/generate_codeset.py                       # year 2026
    python scripts/generate_codeset.py --year 2027 \\
        --tabular-xml icd10cm-tabular-2027.xml --code-list codes-2027.txt

For a newer year either install the ``simple-icd-10-cm`` release that ships it, or pass
the CDC tabular XML and the package's code list for that year explicitly.
"""

from __future__ import annotations

import argparse
import gzip
import io
import re
import sys
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

DEFAULT_YEAR = 2026
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "src" / "icdreward" / "codeset" / "data"
HEADER = ("code", "kind", "parent", "billable", "description")
TERMS_HEADER = ("code", "term")

#: Counts published for each year's tabular list; generation fails if they differ, so a
#: wrong source file or a parsing bug cannot slip into the shipped table silently.
EXPECTED_COUNTS: dict[int, dict[str, int]] = {
    2026: {"chapter": 22, "block": 297, "category": 1918, "billable": 74719, "items": 98505},
}

#: The data file names inside the simple_icd_10_cm package, per fiscal year.
BUNDLED_SOURCES: dict[int, str] = {
    2026: "icd10c-tabular-April-1-2026.xml",
}

#: Inclusion "terms" that are really coding instructions, not names of a condition.
_INSTRUCTION = re.compile(
    r"^(this (code|category)|the following|undetermined intent|use additional"
    r"|code (to|also|first))",
    re.IGNORECASE,
)


class Row(NamedTuple):
    code: str
    kind: str
    parent: str
    billable: bool
    description: str


def clean_text(text: str) -> str:
    """Collapse every run of whitespace (tabs, newlines, double spaces) into one space."""
    return " ".join(text.split())


def clean_extension_title(description: str, parent_description: str) -> str:
    """Rebuild a 7th-character code's title without the notes glued on with ``"/"``.

    simple_icd_10_cm titles such a code ``parent title + ", " + extension title`` and
    appends every ``<note>`` of the extension definition as ``"/" + note`` (the notes
    often start with a tab): ``"..., initial encounter for open fracture type I or
    II/\\tinitial encounter for open fracture NOS"``. No extension title of the CDC
    file contains a "/" itself, so everything after the first "/" of the suffix is a
    note. Slashes inside the parent title ("Sickle-cell/Hb-C disease") are kept.
    """
    prefix = parent_description + ", "
    if not description.startswith(prefix):
        return clean_text(description)
    suffix = description[len(prefix) :].split("/", 1)[0]
    return clean_text(prefix + suffix)


def _select_source(year: int, tabular_xml: Path | None, code_list: Path | None) -> Any:
    """Import simple_icd_10_cm and make sure it holds the requested year's data."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import simple_icd_10_cm as cm
        from simple_icd_10_cm import simple_icd_10_cm as impl

    if tabular_xml is not None or code_list is not None:
        if tabular_xml is None or code_list is None:
            raise SystemExit("--tabular-xml and --code-list must be given together")
        cm.change_version(str(code_list), str(tabular_xml), suppress_warnings=True)
        return cm
    bundled = getattr(impl, "_classification_data_package_file_name", "")
    expected = BUNDLED_SOURCES.get(year)
    if expected is None or bundled != expected:
        raise SystemExit(
            f"the installed simple_icd_10_cm ships {bundled!r}, not the {year} tabular list; "
            "install the matching release or pass --tabular-xml and --code-list"
        )
    return cm


def _walk(cm: Any) -> Iterator[tuple[Row, list[str]]]:
    """Yield every item of the tabular list in pre-order, with its inclusion terms.

    Only public simple_icd_10_cm functions are used. The one trap is the shared
    namespace: ``"B99"`` names both a block and the category inside it, and the
    package's lookups return the category unless ``prioritize_blocks=True``. Walking
    the tree level by level tells us which of the two each name is.
    """
    chapters = [code for code in cm.get_all_codes(True) if cm.is_chapter(code)]
    for chapter in chapters:
        yield Row(chapter, "chapter", "", False, clean_text(cm.get_description(chapter))), []
        for block in cm.get_children(chapter):
            title = clean_text(cm.get_description(block, prioritize_blocks=True))
            yield Row(block, "block", chapter, False, title), []
            for category in cm.get_children(block, prioritize_blocks=True):
                if not cm.is_category(category):
                    raise SystemExit(f"block {block} holds {category!r}, not a category")
                yield from _walk_code(cm, category, block, "")


def _walk_code(
    cm: Any, code: str, parent: str, parent_description: str
) -> Iterator[tuple[Row, list[str]]]:
    raw_description = cm.get_description(code)
    if cm.is_extended_subcategory(code):
        description = clean_extension_title(raw_description, parent_description)
    else:
        description = clean_text(raw_description)
    kind = "category" if cm.is_category(code) else "subcategory"
    children = cm.get_children(code)
    terms = [*cm.get_inclusion_term(code), *cm.get_includes(code)]
    plain = code.replace(".", "")
    yield Row(plain, kind, parent, not children, description), terms
    for child in children:
        yield from _walk_code(cm, child, plain, raw_description)


def build_rows(cm: Any) -> tuple[list[Row], list[tuple[str, str]]]:
    """Return the table rows and the (code, term) pairs, both in tabular order."""
    rows: list[Row] = []
    terms: list[tuple[str, str]] = []
    for row, raw_terms in _walk(cm):
        rows.append(row)
        seen: set[str] = set()
        for raw in raw_terms:
            term = clean_text(raw)
            key = term.casefold()
            if term and key not in seen and not _INSTRUCTION.match(term):
                seen.add(key)
                terms.append((row.code, term))
    return rows, terms


def check_rows(rows: list[Row], year: int) -> dict[str, int]:
    """Fail loudly on anything the runtime loader relies on; return the counts."""
    kinds = Counter(row.kind for row in rows)
    counts = {
        "chapter": kinds["chapter"],
        "block": kinds["block"],
        "category": kinds["category"],
        "billable": sum(row.billable for row in rows),
        "items": len(rows),
    }
    expected = EXPECTED_COUNTS.get(year)
    if expected is not None and counts != expected:
        raise SystemExit(f"counts for {year} differ from the published ones: {counts}")

    kind_of = {row.code: row.kind for row in rows if row.kind in ("category", "subcategory")}
    namespaces = {
        "chapter": {row.code for row in rows if row.kind == "chapter"},
        "block": {row.code for row in rows if row.kind == "block"},
    }
    parent_kind = {"chapter": None, "block": "chapter", "category": "block"}
    for row in rows:
        if "\t" in row.description or "\n" in row.description or not row.description:
            raise SystemExit(f"{row.code}: bad description {row.description!r}")
        wanted = parent_kind.get(row.kind, "code")
        if wanted is None:
            if row.parent:
                raise SystemExit(f"chapter {row.code} has a parent")
        elif wanted == "code":
            if kind_of.get(row.parent) is None:
                raise SystemExit(f"{row.code}: parent {row.parent} is not a code")
        elif row.parent not in namespaces[wanted]:
            raise SystemExit(f"{row.code}: parent {row.parent} is not a {wanted}")
        if row.kind in ("category", "subcategory"):
            _check_code(row, kind_of)
    return counts


def _check_code(row: Row, kind_of: dict[str, str]) -> None:
    """The loader finds ancestors by prefix: check that this equals the parent links."""
    code = row.code
    if not (3 <= len(code) <= 7 and code.isascii() and code.isalnum() and code.isupper()):
        raise SystemExit(f"unexpected code shape {code!r}")
    if row.kind == "category" and len(code) != 3:
        raise SystemExit(f"category {code} is not 3 characters long")
    if row.kind == "subcategory":
        prefixes = [code[:n] for n in range(len(code) - 1, 2, -1) if code[:n] in kind_of]
        if not prefixes or prefixes[0] != row.parent:
            raise SystemExit(f"{code}: nearest existing prefix {prefixes[:1]} != parent")


def write_tsv_gz(path: Path, header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> int:
    """Write rows as UTF-8 TSV, gzip'd reproducibly (no name, mtime 0); return bytes."""
    lines = ["\t".join(header)]
    for row in rows:
        if any("\t" in field or "\n" in field for field in row):
            raise SystemExit(f"field with a tab or newline in {row!r}")
        lines.append("\t".join(row))
    text = "\n".join(lines) + "\n"
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as gz:
        gz.write(text.encode("utf-8"))
    data = buffer.getvalue()
    path.write_bytes(data)
    return len(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--year", type=int, default=DEFAULT_YEAR, help="fiscal year (2026)")
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="where to write the tables (default: the package's data folder)",
    )
    parser.add_argument("--tabular-xml", type=Path, help="CDC tabular XML of another year")
    parser.add_argument("--code-list", type=Path, help="simple_icd_10_cm code list file")
    args = parser.parse_args(argv)

    cm = _select_source(args.year, args.tabular_xml, args.code_list)
    rows, terms = build_rows(cm)
    counts = check_rows(rows, args.year)

    args.output_dir.mkdir(parents=True, exist_ok=True)
    table_path = args.output_dir / f"icd10cm-{args.year}.tsv.gz"
    terms_path = args.output_dir / f"icd10cm-{args.year}-terms.tsv.gz"
    table_rows = [
        (
            row.code,
            row.kind,
            "" if row.kind == "subcategory" else row.parent,
            "1" if row.billable else "0",
            row.description,
        )
        for row in rows
    ]
    size_table = write_tsv_gz(table_path, HEADER, table_rows)
    size_terms = write_tsv_gz(terms_path, TERMS_HEADER, terms)
    print(f"{table_path}: {len(rows)} rows, {size_table / 1e6:.3f} MB", file=sys.stderr)
    print(f"{terms_path}: {len(terms)} terms, {size_terms / 1e6:.3f} MB", file=sys.stderr)
    print(f"counts: {counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
