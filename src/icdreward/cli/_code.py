"""``icdreward code``: look an ICD-10-CM code up in the shipped code set."""

from __future__ import annotations

import argparse
import re
from typing import Any

from rich.markup import escape

from icdreward.cli import _render
from icdreward.cli._app import EXIT_FAILURE, EXIT_OK, Command
from icdreward.codeset import DEFAULT_YEAR, CodeSet, available_years, load_codeset

__all__ = ["COMMAND", "code_report"]

_DESCRIPTION = """\
Show what the shipped ICD-10-CM code set knows about CODE: the normalized code,
whether it is valid and billable, its description, chapter, block, category, parent and
ancestors. CODE may be written with or without the dot, in any case ("m51.16").

A code that does not exist prints what is known about it (its chapter, block, category
and the existing codes it starts with) and, for text such as "type 2 diabetes", the
closest code by description; the exit status is then 1.
"""

_CODE_SHAPE = re.compile(r"[A-Z][0-9][0-9A-Z]{1,5}")


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("code", metavar="CODE", help='an ICD-10-CM code such as "M51.16"')
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--year",
        type=int,
        choices=available_years(),
        default=DEFAULT_YEAR,
        help=f"code set year (default: {DEFAULT_YEAR})",
    )


def code_report(text: str, codeset: CodeSet | None = None) -> dict[str, Any]:
    """Everything known about ``text`` as a JSON-ready dict (``valid`` tells if it exists)."""
    cs = codeset if codeset is not None else load_codeset()
    code = cs.normalize(text)
    info = cs.lookup(code)
    levels = cs.hierarchy(code)
    report: dict[str, Any] = {
        "input": text,
        "code": code,
        "dotted": _render.dotted(code) if code else "",
        "year": cs.year,
        "valid": info is not None,
        "billable": info.billable if info is not None else False,
        "kind": info.kind if info is not None else None,
        "description": info.description if info is not None else None,
        "chapter": None,
        "block": None,
        "category": None,
        "parent": None,
        "ancestors": [],
    }
    if levels:
        chapter, block, *codes = levels
        report["chapter"] = {"id": chapter, "title": cs.chapter_title(chapter)}
        report["block"] = {"id": block, "title": cs.block_title(block)}
        category = codes[0] if codes else None
        if category is not None:
            report["category"] = {"code": category, "description": cs.describe(category)}
        # For an existing code the last level is the code itself; for a missing one,
        # every level exists and the deepest is the closest existing code.
        ancestors = list(levels[:-1]) if info is not None else list(levels)
        report["ancestors"] = ancestors
        if info is not None:
            report["parent"] = info.parent
        elif codes:
            report["parent"] = codes[-1]
    if info is None:
        report["text_match"] = _text_match(cs, text)
    return report


def _text_match(cs: CodeSet, text: str) -> dict[str, Any] | None:
    compact = "".join(text.split()).replace(".", "").upper()
    if _CODE_SHAPE.fullmatch(compact):
        return None  # shaped like a code: a missing code, not a description
    match = cs.match_text(text)
    if match is None:
        return None
    return {"code": match.code, "score": round(match.score, 1), "term": match.term}


def _run(args: argparse.Namespace) -> int:
    cs = load_codeset(args.year)
    report = code_report(args.code, cs)
    if args.json:
        _render.print_json(report)
    else:
        _print(report, cs)
    return EXIT_OK if report["valid"] else EXIT_FAILURE


def _describe(cs: CodeSet, level: str) -> str:
    """Title of a chapter, block or code id from a hierarchy."""
    if level.isdigit():
        return cs.chapter_title(level)
    if "-" in level:
        return cs.block_title(level)
    return cs.describe(level) or ""


def _print(report: dict[str, Any], cs: CodeSet) -> None:
    out = _render.console()
    code = report["code"]
    shaped = bool(_CODE_SHAPE.fullmatch(code))
    if report["valid"]:
        out.print(f"[bold]{report['dotted']}[/bold]  {_escape(report['description'])}")
    else:
        what = "an ICD-10-CM code" if not shaped else f"an ICD-10-CM {report['year']} code"
        out.print(f"[bold red]{_escape(report['input'])}[/bold red] is not {what}")
    rows: list[tuple[str, str]] = []
    if shaped:
        rows.append(("code", f"{code} ({report['dotted']})"))
    rows.append(("valid", _yes_no(report["valid"])))
    if report["valid"]:
        rows.append(("billable", _yes_no(report["billable"])))
        rows.append(("kind", report["kind"]))
    for key in ("chapter", "block"):
        entry = report[key]
        if entry is not None:
            rows.append((key, f"{entry['id']}  {entry['title']}"))
    category = report["category"]
    if category is not None:
        rows.append(("category", f"{category['code']}  {category['description'] or ''}"))
    parent = report["parent"]
    if parent:
        shown = parent if "-" in parent else _render.dotted(parent)
        label = "parent" if report["valid"] else "closest code"
        rows.append((label, f"{shown}  {_describe(cs, parent)}"))
    if report["ancestors"]:
        rows.append(("ancestors", " > ".join(report["ancestors"])))
    match = report.get("text_match")
    if match is not None:
        rows.append(
            (
                "text match",
                f"{_render.dotted(match['code'])}  {match['term']} (score {match['score']})",
            )
        )
    out.print(_render.key_value_lines(rows, indent=2), markup=False)


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _escape(text: str) -> str:
    return escape(text)


COMMAND = Command(
    name="code",
    help="look up an ICD-10-CM code: validity, billable, description, hierarchy",
    description=_DESCRIPTION,
    configure=_configure,
    run=_run,
    order=30,
)
