"""The ``--plot`` figure: every metric per level with its interval, and F1 per chapter.

Drawn on matplotlib's own canvases (no display, no global pyplot state), in the format
named by the file's extension: PNG (raster, ``dpi``), SVG or PDF (vector).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from icdreward.evaluation._report import LEVEL_NAMES

__all__ = ["PLOT_FORMATS", "plot_report"]

PLOT_FORMATS: tuple[str, ...] = ("png", "svg", "pdf")

_SINGLE = (
    ("macro_f1", "macro F1"),
    ("micro_f1", "micro F1"),
    ("accuracy", "accuracy"),
    ("macro_precision", "macro precision"),
    ("macro_recall", "macro recall"),
)
_MULTI = (("micro_f1", "multi-label micro F1"), ("macro_f1", "multi-label macro F1"))
_RANGE = re.compile(r"\(([A-Z0-9]+-[A-Z0-9]+)\)\s*$")


def _bars(ax: Any, entries: list[tuple[str, str, dict[str, Any]]], title: str) -> bool:
    """Grouped bars, one group per level; returns whether any bar had an interval."""
    levels = list(reversed(LEVEL_NAMES))
    width = 0.8 / len(entries)
    any_interval = False
    for j, (key, label, source) in enumerate(entries):
        values = [float(source[level][key]) for level in levels]
        x = [i - 0.4 + width * (j + 0.5) for i in range(len(levels))]
        errors = None
        if all(f"{key}_ci" in source[level] for level in levels):
            any_interval = True
            lows = [source[level][f"{key}_ci"][0] for level in levels]
            highs = [source[level][f"{key}_ci"][1] for level in levels]
            errors = [
                [max(0.0, v - lo) for v, lo in zip(values, lows, strict=True)],
                [max(0.0, hi - v) for v, hi in zip(values, highs, strict=True)],
            ]
        ax.bar(x, values, width, yerr=errors, capsize=2, label=label, error_kw={"lw": 0.8})
        for xi, v in zip(x, values, strict=True):
            ax.text(xi, 0.01, f"{v:.2f}", ha="center", va="bottom", fontsize=5, rotation=90)
    ax.set_xticks(range(len(levels)), [name.replace("_", " ") for name in levels])
    # Headroom above 1 for the intervals' caps; the legend goes below the axes, where it
    # hides no bar (scores near 1 fill the top of the panel).
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel("score")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.07), fontsize=6, ncol=5, frameon=False)
    ax.grid(axis="y", lw=0.3, alpha=0.5)
    return any_interval


def plot_report(
    report: dict[str, Any],
    path: str | os.PathLike[str],
    *,
    dpi: int = 200,
    chapters: list[tuple[str, str]] | None = None,
) -> None:
    """Write the figure of an ``EvalReport.to_dict()`` to ``path`` (.png, .svg or .pdf).

    Left: macro/micro F1, accuracy, macro precision and recall at every level, each with
    its bootstrap interval as an error bar (the caption names the method, confidence and
    number of notes resampled); the multi-label metrics beside them when present. Right
    (with ``by_chapter``): F1 of every chapter as a class, labelled with its code range
    and number of gold rows; a chapter without any gold or predicted row is marked
    "no rows" instead of drawn as F1 = 0. ``chapters`` lists ``(number, title)`` of every
    chapter (default: those of the shipped code set).

    Raises:
        ValueError: the extension is not one of :data:`PLOT_FORMATS`.
        ImportError: matplotlib is not installed.
        OSError: ``path`` cannot be written.
    """
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in PLOT_FORMATS:
        raise ValueError(
            f"{path}: the figure's extension must be one of .{', .'.join(PLOT_FORMATS)}"
        )
    from matplotlib.figure import Figure

    per_chapter: list[dict[str, Any]] = report.get("by_chapter") or []
    multi = report.get("multilabel")
    panels = 1 + bool(multi) + bool(per_chapter)
    figure = Figure(figsize=(4.8 * panels + (1.5 if per_chapter else 0), 4.6), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    notes, samples = report.get("notes", report["n"]), report.get("samples", report["n"])
    mode = report.get("per_note", "first")
    has_ci = _bars(
        axes[0],
        [(key, label, report) for key, label in _SINGLE],
        f"{report['n']} rows evaluated: {notes} notes, {samples} samples (per note: {mode})",
    )
    if multi:
        _bars(
            axes[1],
            [(key, label, multi) for key, label in _MULTI],
            "multi-label over each note's gold set",
        )
    if per_chapter:
        _chapter_panel(axes[-1], per_chapter, chapters)
    boot = report.get("bootstrap")
    if boot and has_ci:
        method = "BCa" if boot.get("method", "percentile") == "bca" else "percentile"
        caption = (
            f"error bars: {boot['confidence']:.0%} {method} bootstrap intervals, "
            f"{boot['resamples']} resamples of the {notes} notes (seed {boot['seed']})"
        )
    else:
        caption = "no intervals (--bootstrap 0)"
    figure.suptitle(
        f"{report.get('input', '')}  ({report.get('config', '')})\n{caption}", fontsize=8
    )
    if fmt == "png":
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(figure).print_figure(os.fspath(path), dpi=dpi)
    elif fmt == "svg":
        from matplotlib.backends.backend_svg import FigureCanvasSVG

        FigureCanvasSVG(figure).print_figure(os.fspath(path))
    else:
        from matplotlib.backends.backend_pdf import FigureCanvasPdf

        FigureCanvasPdf(figure).print_figure(os.fspath(path))


def _chapter_panel(
    ax: Any, per_chapter: list[dict[str, Any]], chapters: list[tuple[str, str]] | None
) -> None:
    if chapters is None:
        from icdreward.codeset import load_codeset

        cs = load_codeset()
        chapters = [(c, cs.chapter_title(c)) for c in cs.chapters()]
    found = {str(c["chapter"]): c for c in per_chapter}
    listed = [number for number, _ in chapters]
    rows = [(number, title) for number, title in chapters]
    rows += [(c, found[c].get("title", "")) for c in found if c not in listed]
    labels, values = [], []
    for y, (number, title) in enumerate(rows):
        match = _RANGE.search(title or "")
        span = match.group(1) if match else "unknown category"
        entry = found.get(number)
        n = int(entry["n"]) if entry else 0
        labels.append(f"{number}  {span}  (n={n})")
        if entry is None or (entry["n"] == 0 and entry["predicted"] == 0):
            ax.text(0.01, y, "no rows", va="center", fontsize=6, color="0.45", style="italic")
            values.append(0.0)
            continue
        values.append(float(entry["f1"]))
        ax.barh(y, entry["f1"], color="tab:green", height=0.7)
        note = f"{entry['f1']:.2f}" + ("  (predicted only)" if entry["n"] == 0 else "")
        ax.text(entry["f1"] + 0.01, y, note, va="center", fontsize=6)
    ax.set_yticks(range(len(rows)), labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("F1 of the chapter as a class (chapter level)")
    ax.set_title("per chapter (n = gold rows)", fontsize=9)
    ax.grid(axis="x", lw=0.3, alpha=0.5)
