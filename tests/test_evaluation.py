"""Evaluation metrics against an independent pure-Python computation (sklearn's definitions)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import pytest
import torch

from icdreward.codeset import load_codeset
from icdreward.evaluation import (
    LEVEL_NAMES,
    UNKNOWN,
    evaluate,
    evaluate_codes,
    extract_codes,
    scores,
)

CS = load_codeset()
INVALID = object()


def reference(gold: Sequence[object], pred: Sequence[object]) -> dict[str, float]:
    """sklearn's f1/precision/recall (zero_division=0, labels = union of gold and
    predicted labels except the invalid prediction) and accuracy, written plainly."""
    labels = sorted({*gold, *(p for p in pred if p is not INVALID)}, key=repr)
    per: list[tuple[float, float, float]] = []
    total_tp = total_pred = total_gold = 0
    for label in labels:
        tp = sum(1 for g, p in zip(gold, pred, strict=True) if g == label and p == label)
        fp = sum(1 for g, p in zip(gold, pred, strict=True) if g != label and p == label)
        fn = sum(1 for g, p in zip(gold, pred, strict=True) if g == label and p != label)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per.append((precision, recall, f1))
        total_tp, total_pred, total_gold = total_tp + tp, total_pred + tp + fp, total_gold + tp + fn
    micro_p = total_tp / total_pred if total_pred else 0.0
    micro_r = total_tp / total_gold if total_gold else 0.0
    k = len(labels)
    return {
        "macro_precision": sum(p for p, _, _ in per) / k,
        "macro_recall": sum(r for _, r, _ in per) / k,
        "macro_f1": sum(f for _, _, f in per) / k,
        "micro_f1": 2 * micro_p * micro_r / (micro_p + micro_r) if micro_p + micro_r else 0.0,
        "accuracy": sum(1 for g, p in zip(gold, pred, strict=True) if g == p) / len(gold),
        "n_classes": k,
    }


def level_label(code: str, level: str) -> str:
    """The label of a code at a level, from ``hierarchy`` (independent of level ids)."""
    if level == "full_code":
        return code
    if level == "category":
        return code[:3]
    path = CS.hierarchy(code[:3])
    if not path:
        return UNKNOWN
    return path[0] if level == "chapter" else path[1]


def check(report_levels: dict[str, object], golds: list[str], preds: list[object]) -> None:
    for level in LEVEL_NAMES:
        gold = [level_label(CS.normalize(g), level) for g in golds]
        pred: list[object] = []
        for p in preds:
            code = CS.normalize(p)
            pred.append(level_label(code, level) if code and CS.is_valid(code) else INVALID)
        expected = reference(gold, pred)
        got = report_levels[level].to_dict()  # type: ignore[attr-defined]
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, abs=1e-12), (level, key)


@pytest.mark.parametrize("seed", range(6))
def test_random_codes_match_reference(seed: int) -> None:
    rng = random.Random(seed)
    pool = rng.sample(sorted(CS.codes()), 40)  # few classes: many shared, some one-sided
    gold_only = pool[:8]
    pred_only = pool[8:16]
    shared = pool[16:]
    n = rng.randint(1, 300)
    golds = [rng.choice(shared + gold_only) for _ in range(n)]
    preds: list[object] = []
    for g in golds:
        roll = rng.random()
        if roll < 0.3:
            preds.append(g)
        elif roll < 0.4:
            preds.append(g[:3] + "9ZZ")  # same category, invalid code
        elif roll < 0.45:
            preds.append(None)
        elif roll < 0.5:
            preds.append(rng.choice(["", "not a code", 42]))
        elif roll < 0.7:
            preds.append(rng.choice(pred_only))
        else:
            preds.append(rng.choice(shared))
    report = evaluate_codes(golds, preds)
    check(report.levels, golds, preds)
    assert report.n == n
    assert report.unparseable == sum(1 for p in preds if not CS.normalize(p))
    assert report.invalid == sum(
        1 for p in preds if CS.normalize(p) and not CS.is_valid(CS.normalize(p))
    )


def test_classes_only_in_gold_or_only_in_predictions() -> None:
    golds = ["M5116", "M5116", "E119"]
    preds = ["M5116", "I10", "I10"]  # E119 only in gold, I10 only predicted
    full = evaluate_codes(golds, preds).levels["full_code"]
    assert full.n_classes == 3
    # M5116: P=1, R=1/2, F1=2/3; E119: 0; I10: 0
    assert full.macro_f1 == pytest.approx((2 / 3) / 3)
    assert full.macro_precision == pytest.approx(1 / 3)
    assert full.macro_recall == pytest.approx(0.5 / 3)
    assert full.accuracy == pytest.approx(1 / 3)
    assert full.micro_f1 == pytest.approx(1 / 3)


def test_invalid_predictions_are_wrong_not_classes() -> None:
    report = evaluate_codes(["M5116", "M5116", "M5116"], ["XYZ99", None, "M5116"])
    full = report.levels["full_code"]
    assert report.n == 3 and report.invalid == 1 and report.unparseable == 1
    assert full.n_classes == 1  # the invalid prediction is not a class
    assert full.accuracy == pytest.approx(1 / 3)
    assert full.macro_recall == pytest.approx(1 / 3)
    assert full.macro_precision == pytest.approx(1.0)
    # micro F1 = 2 TP / (valid predictions + rows), as sklearn with labels=classes
    assert full.micro_f1 == pytest.approx(2 / (1 + 3))
    shares = report.to_dict()
    assert shares["invalid_share"] == pytest.approx(1 / 3)
    assert shares["unparseable_share"] == pytest.approx(1 / 3)


def test_older_year_and_unknown_gold_codes_degrade() -> None:
    # M511X: category M51 exists, the code does not; U99 and ZZ1: no such category
    golds = ["M511X", "U999", "ZZ1", "E119", "M5116;E119", ["I10", "E119"], '["E119"]']
    preds = ["M5116", "E119", "E119", "E119", "M5116", "I10", "E11.9"]
    report = evaluate_codes(golds, preds, by_chapter=True)
    primary = ["M511X", "U999", "ZZ1", "E119", "M5116", "I10", "E119"]
    check(report.levels, primary, preds)
    assert report.levels["category"].accuracy == pytest.approx(5 / 7)
    chapters = {c.chapter: c for c in report.chapters}
    assert UNKNOWN in chapters and chapters[UNKNOWN].title == ""


def test_empty_input_and_bad_arguments() -> None:
    with pytest.raises(ValueError, match="no rows"):
        evaluate_codes([], [])
    with pytest.raises(ValueError, match="gold"):
        evaluate_codes([""], ["M5116"])
    with pytest.raises(ValueError, match="predictions but"):
        evaluate_codes(["M5116", "E119"], ["M5116"])


def test_by_chapter_counts() -> None:
    golds = ["M5116", "M5117", "E119", "E1165"]
    preds = ["M5116", "E119", "E119", None]
    report = evaluate_codes(golds, preds, by_chapter=True)
    chapters = {c.chapter: c for c in report.chapters}
    assert list(chapters) == ["4", "13"]  # sorted by chapter number
    e, m = chapters["4"], chapters["13"]
    assert (e.n, e.predicted, m.n, m.predicted) == (2, 2, 2, 1)
    assert e.precision == pytest.approx(0.5) and e.recall == pytest.approx(0.5)
    assert m.precision == pytest.approx(1.0) and m.recall == pytest.approx(0.5)
    assert m.f1 == pytest.approx(2 / 3)
    assert e.full_code_accuracy == pytest.approx(0.5) and m.category_accuracy == 0.5


def test_scores_on_ids_match_reference() -> None:
    gen = torch.Generator().manual_seed(1)
    gold = torch.randint(0, 30, (500,), generator=gen)
    pred = torch.randint(0, 36, (500,), generator=gen)  # 30..34 predicted only, 35 invalid
    pred[pred == 35] = 35
    got = scores(gold, pred, 35).to_dict()
    ref = reference(gold.tolist(), [INVALID if p == 35 else p for p in pred.tolist()])
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_intervals_in_report() -> None:
    rng = random.Random(3)
    pool = sorted(CS.codes())[:50]
    golds = [rng.choice(pool) for _ in range(200)]
    preds = [g if rng.random() < 0.6 else rng.choice(pool) for g in golds]
    report = evaluate_codes(golds, preds, bootstrap=200, seed=1)
    same = evaluate_codes(golds, preds, bootstrap=200, seed=1)
    assert report.intervals == same.intervals
    data = report.to_dict()
    assert list(data)[:5] == ["full_code", "category", "block", "chapter", "n"]
    for level in LEVEL_NAMES:
        low, high = data[level]["macro_f1_ci"]
        assert 0.0 <= low <= high <= 1.0
        for metric in ("accuracy", "micro_f1", "macro_precision", "macro_recall"):
            low, high = data[level][f"{metric}_ci"]
            assert low <= data[level][metric] <= high
    assert data["bootstrap"] == {
        "resamples": 200,
        "seed": 1,
        "confidence": 0.95,
        "method": "bca",
        "unit": "note",
    }
    assert evaluate_codes(golds, preds).to_dict()["bootstrap"] is None


def test_extract_codes_flags() -> None:
    p = extract_codes(["m51.16", "", None, "XYZ", "M51.1X"], CS)
    assert p.codes == ("M5116", "", "", "", "")
    assert p.unparseable.tolist() == [False, True, True, False, False]
    assert p.invalid.tolist() == [False, False, False, True, True]


def test_factorize_keeps_first_occurrence_order_on_every_path() -> None:
    from icdreward.evaluation._factorize import factorize

    rng = random.Random(4)
    strings = [rng.choice(["E119", "M5116", "I10", "", "A00"]) for _ in range(500)]
    for values in (
        strings,  # Arrow, joined and split
        [*strings, None],  # Arrow, with nulls
        [*strings, "E1\x0019", "E1\x0019"],  # Arrow: a value holds the separator
        [*strings, "E1\ud80019"],  # a dict: a lone surrogate is no UTF-8
        [*strings, 42, b"E119"],  # a dict: not all str
        [(s,) for s in strings],  # a dict: tuples
    ):
        distinct, rows = factorize(values)
        assert distinct == list(dict.fromkeys(values))
        assert rows.dtype == torch.int64
        assert [distinct[i] for i in rows.tolist()] == values
    with pytest.raises(TypeError):
        factorize([["E119"], ["E119"]])


def _spellings(code: str, rng: random.Random) -> str:
    """One of the ways a code may be written (all normalize to ``code``)."""
    dotted = code[:3] + "." + code[3:] if len(code) > 3 else code
    return rng.choice([code, code.lower(), dotted, f" {dotted.lower()} "])


@pytest.mark.parametrize("distinct", [False, True])
def test_duplicate_heavy_and_all_distinct_inputs_match_reference(distinct: bool) -> None:
    rng = random.Random(11)
    codes = sorted(CS.codes())
    if distinct:  # every row its own gold and prediction strings
        golds = rng.sample(codes, 400)
        preds: list[object] = [
            g if rng.random() < 0.3 else c
            for g, c in zip(golds, rng.sample(codes, 400), strict=True)
        ]
    else:  # 5000 rows over 30 codes, each written several ways
        pool = rng.sample(codes, 30)
        golds = [_spellings(rng.choice(pool), rng) for _ in range(5000)]
        preds = [
            _spellings(CS.normalize(g), rng)
            if rng.random() < 0.5
            else _spellings(rng.choice(pool), rng)
            for g in golds
        ]
        for i in range(0, 5000, 17):
            preds[i] = rng.choice([None, "", "XYZ99", pool[0][:3] + "9ZZ"])
    report = evaluate_codes(golds, preds, by_chapter=True)
    check(report.levels, golds, preds)
    assert report.n == len(golds)
    assert report.unparseable == sum(1 for p in preds if not CS.normalize(p))
    assert report.invalid == sum(
        1 for p in preds if CS.normalize(p) and not CS.is_valid(CS.normalize(p))
    )


def test_every_input_form_gives_the_same_report_bit_for_bit() -> None:
    # strings take Arrow's dictionary encoding, tuples a dict, lists one label per row
    rng = random.Random(12)
    pool = rng.sample(sorted(CS.codes()), 60)
    golds = [rng.choice(pool) for _ in range(3000)]
    preds: list[object] = [g if rng.random() < 0.4 else rng.choice(pool) for g in golds]
    preds[::13] = [None] * len(preds[::13])
    expected = evaluate_codes(golds, preds, bootstrap=30, seed=2, by_chapter=True).to_dict()
    odd_preds = [b"M5116" if p is None else p for p in preds]  # bytes: unparseable too
    for p, g in (
        (preds, [(c, "E119") for c in golds]),
        (preds, [[c] for c in golds]),
        (odd_preds, golds),
        (odd_preds, [[c] for c in golds]),
    ):
        assert evaluate_codes(g, p, bootstrap=30, seed=2, by_chapter=True).to_dict() == expected
    extracted = extract_codes(preds, CS)
    assert extracted.codes == extract_codes(odd_preds, CS).codes
    assert evaluate(golds, extracted, bootstrap=30, seed=2, by_chapter=True).to_dict() == expected


@pytest.mark.parametrize("wrap", [str, lambda c: [c] if c else []])  # Arrow; one label per row
def test_first_gold_without_code_is_named(wrap: Callable[[str], object]) -> None:
    golds = [wrap(c) for c in ["M5116", "E119", "", "M5116", ""]]
    with pytest.raises(ValueError, match=r"^row 2: gold holds no code"):
        evaluate_codes(golds, ["M5116"] * 5)
