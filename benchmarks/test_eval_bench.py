"""Evaluation speed (pytest-benchmark).

Targets (issue #5): the metrics of 1,000,000 random already-extracted codes across all
four levels in <= 2 s (label encoding from strings included, no bootstrap); the whole
``icdreward eval`` command on 100,000 raw completions is recorded (with the default
1000 bootstrap resamples). Issue #13: 1,000,000 rows (250,000 notes x 4 samples), the
first sample per note, pass@k, and 1,000 BCa bootstrap resamples of the notes in <= 10 s.

Run: ``pytest benchmarks/test_eval_bench.py --benchmark-only``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from icdreward.cli import main
from icdreward.codeset import load_codeset
from icdreward.evaluation import evaluate_codes

from _corpus import completions

TARGET_S = 2.0


@pytest.fixture(scope="module")
def million() -> tuple[list[str], list[str]]:
    rng = random.Random(0)
    pool = sorted(load_codeset().codes())
    golds = rng.choices(pool, k=1_000_000)
    preds = [g if rng.random() < 0.4 else rng.choice(pool) for g in golds]
    for i in range(0, len(preds), 20):
        preds[i] = "" if i % 40 else "XYZ123"  # unparseable and invalid predictions
    return preds, golds


def test_metrics_one_million_codes(benchmark: Any, million: tuple[list[str], list[str]]) -> None:
    preds, golds = million
    cs = load_codeset()
    evaluate_codes(golds[:1000], preds[:1000], codeset=cs)  # warm the code set
    report = benchmark.pedantic(
        evaluate_codes, args=(golds, preds), kwargs={"codeset": cs}, rounds=3, iterations=1
    )
    assert report.n == 1_000_000
    best = benchmark.stats.stats.min
    benchmark.extra_info["seconds_min"] = round(best, 3)
    assert best <= TARGET_S


GROUPED_TARGET_S = 10.0


def test_bootstrap_over_250k_notes_of_4_samples(benchmark: Any) -> None:
    rng = random.Random(1)
    # a realistic label distribution: Zipf-like over 5,000 codes; wrong answers mostly
    # near misses (a code of the same category), the rest anywhere
    pool = sorted(load_codeset().codes())
    common = rng.sample(pool, 5000)
    weights = [1.0 / (rank + 1) for rank in range(len(common))]
    by_category: dict[str, list[str]] = {}
    for code in pool:
        by_category.setdefault(code[:3], []).append(code)
    note_golds = rng.choices(common, weights=weights, k=250_000)
    golds, preds, notes, samples = [], [], [], []
    for i, gold in enumerate(note_golds):
        for k in range(4):
            roll = rng.random()
            if roll < 0.45:
                pred = gold
            elif roll < 0.8:
                pred = rng.choice(by_category[gold[:3]])
            elif roll < 0.95:
                pred = rng.choices(common, weights=weights)[0]
            else:
                pred = ""
            golds.append(gold)
            preds.append(pred)
            notes.append(i)
            samples.append(k)
    cs = load_codeset()
    report = benchmark.pedantic(
        evaluate_codes,
        args=(golds, preds),
        kwargs={
            "codeset": cs,
            "note_ids": notes,
            "samples": samples,
            "bootstrap": 1000,
            "seed": 0,
        },
        rounds=1,
        iterations=1,
    )
    assert (report.notes, report.samples, report.n) == (250_000, 1_000_000, 250_000)
    # (no claim that the interval holds the estimate: with 41,000 mostly rare classes
    # every resample's macro F1 lies above it; see docs/evaluation.md)
    seconds = benchmark.stats.stats.min
    benchmark.extra_info["seconds"] = round(seconds, 3)
    assert seconds <= GROUPED_TARGET_S


def test_command_on_100k_completions(
    benchmark: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    texts, golds, _ = completions(100_000)
    path = Path(tmp_path_factory.mktemp("eval")) / "completions.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for text, gold in zip(texts, golds, strict=True):
            handle.write(json.dumps({"completion": text, "gold": gold}) + "\n")
    status = benchmark.pedantic(main, args=(["eval", str(path), "--json"],), rounds=1, iterations=1)
    assert status == 0
    benchmark.extra_info["seconds"] = round(benchmark.stats.stats.min, 3)
