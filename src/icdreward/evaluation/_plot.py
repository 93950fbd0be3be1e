"""The ``--plot`` figure: F1 per level and, when present, per chapter (PNG, Agg)."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["plot_report"]


def plot_report(report: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a PNG of macro/micro F1 per level (and chapter F1) from ``EvalReport.to_dict()``.

    Uses matplotlib's Agg canvas directly: no display, no global pyplot state.

    Raises:
        ImportError: matplotlib is not installed.
        OSError: ``path`` cannot be written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from icdreward.evaluation._evaluate import LEVEL_NAMES

    chapters: list[dict[str, Any]] = report.get("by_chapter") or []
    figure = Figure(figsize=(11, 4.5) if chapters else (6, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2 if chapters else 1, squeeze=False)[0]
    levels = list(LEVEL_NAMES)
    macro = [report[name]["macro_f1"] for name in levels]
    micro = [report[name]["micro_f1"] for name in levels]
    ax = axes[0]
    x = list(range(len(levels)))
    width = 0.38
    errors: list[list[float]] | None = None
    if all("macro_f1_ci" in report[name] for name in levels):
        errors = [
            [
                max(0.0, m - report[name]["macro_f1_ci"][0])
                for m, name in zip(macro, levels, strict=True)
            ],
            [
                max(0.0, report[name]["macro_f1_ci"][1] - m)
                for m, name in zip(macro, levels, strict=True)
            ],
        ]
    ax.bar([i - width / 2 for i in x], macro, width, yerr=errors, capsize=3, label="macro F1")
    ax.bar([i + width / 2 for i in x], micro, width, label="micro F1")
    ax.set_xticks(x, [name.replace("_", " ") for name in levels])
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("F1")
    ax.set_title(f"F1 per level (n = {report['n']})")
    ax.legend(loc="upper right")
    if chapters:
        ax = axes[1]
        names = [str(c["chapter"]) for c in chapters]
        ax.bar(range(len(names)), [c["f1"] for c in chapters], color="tab:green")
        ax.set_xticks(range(len(names)), names, fontsize=7)
        ax.set_ylim(0.0, 1.0)
        ax.set_xlabel("chapter")
        ax.set_ylabel("F1 (chapter as a class)")
        ax.set_title("F1 per chapter")
    figure.savefig(os.fspath(path), format="png", dpi=100)
