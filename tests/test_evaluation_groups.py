"""Several samples per note, pass@k, multi-label metrics and intervals, each against an
independent computation (plain Python, scikit-learn, scipy.stats.bootstrap)."""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score
from sklearn.preprocessing import MultiLabelBinarizer

from icdreward.codeset import load_codeset
from icdreward.evaluation import LEVEL_NAMES, evaluate_codes

CS = load_codeset()


def _data(seed: int, notes: int, max_samples: int) -> dict[str, list]:
    rng = random.Random(seed)
    pool = rng.sample(sorted(CS.codes()), 25)
    rows: dict[str, list] = {"gold": [], "pred": [], "note": [], "sample": [], "reward": []}
    for i in range(notes):
        gold = rng.choice(pool)
        n = rng.randint(1, max_samples)
        for k in rng.sample(range(n), n):  # samples out of order in the file
            roll = rng.random()
            pred = gold if roll < 0.35 else (None if roll < 0.45 else rng.choice(pool))
            rows["gold"].append(gold)
            rows["pred"].append(pred)
            rows["note"].append(f"n{i}")
            rows["sample"].append(k)
            rows["reward"].append(rng.choice([0.0, 0.5, 1.0, None]))
    return rows


def _valid(code: object) -> str:
    normalized = CS.normalize(code)
    return normalized if normalized and CS.is_valid(normalized) else ""


def _pick(rows: dict[str, list], mode: str) -> list[int]:
    """The row of each note, by the documented rules, in plain Python."""
    by_note: dict[str, list[int]] = {}
    for i, note in enumerate(rows["note"]):
        by_note.setdefault(note, []).append(i)
    picked = []
    for members in by_note.values():
        ordered = sorted(members, key=lambda i: (rows["sample"][i], i))
        if mode == "first":
            picked.append(ordered[0])
        elif mode == "best-reward":
            best = max(
                ordered, key=lambda i: -math.inf if rows["reward"][i] is None else rows["reward"][i]
            )
            picked.append(best)
        else:
            votes = Counter(_valid(rows["pred"][i]) for i in ordered if _valid(rows["pred"][i]))
            if not votes:
                picked.append(ordered[0])
                continue
            top = max(votes.values())
            winner = next(
                _valid(rows["pred"][i])
                for i in ordered
                if votes.get(_valid(rows["pred"][i])) == top
            )
            picked.append(next(i for i in ordered if _valid(rows["pred"][i]) == winner))
    return picked


@pytest.mark.parametrize("mode", ["first", "majority", "best-reward"])
@pytest.mark.parametrize("seed", range(3))
def test_per_note_modes_match_an_independent_pick(mode: str, seed: int) -> None:
    rows = _data(seed, notes=60, max_samples=5)
    report = evaluate_codes(
        rows["gold"],
        rows["pred"],
        note_ids=rows["note"],
        samples=rows["sample"],
        rewards=rows["reward"],
        per_note=mode,
    )
    picked = _pick(rows, mode)
    expected = evaluate_codes([rows["gold"][i] for i in picked], [rows["pred"][i] for i in picked])
    assert report.n == report.notes == 60 and report.samples == len(rows["gold"])
    for level in LEVEL_NAMES:
        got, want = report.levels[level].to_dict(), expected.levels[level].to_dict()
        assert got == pytest.approx(want, abs=1e-12), level  # class order: last bits


def test_all_mode_pools_samples_but_counts_notes() -> None:
    rows = _data(4, notes=30, max_samples=4)
    report = evaluate_codes(rows["gold"], rows["pred"], note_ids=rows["note"], per_note="all")
    pooled = evaluate_codes(rows["gold"], rows["pred"])
    assert report.levels == pooled.levels
    assert (report.n, report.notes) == (len(rows["gold"]), 30)


def _level(code: str, level: str) -> str:
    if level == "full_code":
        return code
    if level == "category":
        return code[:3]
    path = CS.hierarchy(code[:3])
    return "?" if not path else (path[0] if level == "chapter" else path[1])


@pytest.mark.parametrize("seed", range(3))
def test_pass_at_k_and_any_of_k_match_an_independent_computation(seed: int) -> None:
    rows = _data(10 + seed, notes=80, max_samples=6)
    report = evaluate_codes(
        rows["gold"], rows["pred"], note_ids=rows["note"], samples=rows["sample"]
    )
    by_note: dict[str, list[int]] = {}
    for i, note in enumerate(rows["note"]):
        by_note.setdefault(note, []).append(i)
    ks = [entry.k for entry in report.pass_at_k]
    assert ks == [1, 2, 4, 6]
    for entry in report.pass_at_k:
        for level in LEVEL_NAMES:
            passes, anys = [], []
            for members in by_note.values():
                if len(members) < entry.k:
                    continue
                right = [
                    bool(_valid(rows["pred"][i]))
                    and _level(_valid(rows["pred"][i]), level) == _level(rows["gold"][i], level)
                    for i in sorted(members, key=lambda i: rows["sample"][i])
                ]
                n, c = len(right), sum(right)
                passes.append(1 - math.comb(n - c, entry.k) / math.comb(n, entry.k))
                anys.append(any(right[: entry.k]))
            assert entry.notes == len(passes)
            assert entry.pass_at_k[level] == pytest.approx(sum(passes) / len(passes), abs=1e-12)
            assert entry.any_of_k[level] == pytest.approx(sum(anys) / len(anys), abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_multilabel_metrics_match_scikit_learn(seed: int) -> None:
    rng = random.Random(seed)
    pool = rng.sample(sorted(CS.codes()), 30)
    golds = [rng.sample(pool, rng.randint(1, 4)) for _ in range(150)]
    preds: list[object] = [
        rng.choice([g[0], rng.choice(g), rng.choice(pool), None, "XYZ99"]) for g in golds
    ]
    report = evaluate_codes(golds, preds, multilabel=True)
    for level in LEVEL_NAMES:
        y_true = [{_level(CS.normalize(c), level) for c in g} for g in golds]
        y_pred = [{_level(_valid(p), level)} if _valid(p) else set() for p in preds]
        binarizer = MultiLabelBinarizer().fit(y_true + y_pred)
        t, p = binarizer.transform(y_true), binarizer.transform(y_pred)
        got = report.multilabel[level]
        assert got["micro_f1"] == pytest.approx(f1_score(t, p, average="micro"), abs=1e-12)
        assert got["macro_f1"] == pytest.approx(
            f1_score(t, p, average="macro", zero_division=0), abs=1e-12
        )
        assert got["n_labels"] == len(binarizer.classes_)


def _macro_f1(gold: list[str], pred: list[str]) -> float:
    labels = {*gold, *(p for p in pred if p)}
    total = 0.0
    for label in labels:
        tp = sum(1 for g, p in zip(gold, pred, strict=True) if g == p == label)
        both = sum(1 for g in gold if g == label) + sum(1 for p in pred if p == label)
        total += 2 * tp / both if both else 0.0
    return total / len(labels)


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_intervals_agree_with_scipy_bootstrap(method: str) -> None:
    rng = random.Random(21)
    pool = rng.sample(sorted(CS.codes()), 12)
    n = 80
    golds = [rng.choice(pool) for _ in range(n)]
    preds = [g if rng.random() < 0.5 else rng.choice([*pool, ""]) for g in golds]
    report = evaluate_codes(golds, preds, bootstrap=4000, seed=3, interval=method, confidence=0.9)
    full_pred = [_valid(p) for p in preds]

    def statistic(index: np.ndarray) -> float:
        rows = index.astype(int).tolist()
        return _macro_f1([golds[i] for i in rows], [full_pred[i] for i in rows])

    reference = stats.bootstrap(
        (np.arange(n, dtype=float),),
        statistic,
        n_resamples=4000,
        vectorized=False,
        confidence_level=0.9,
        method="BCa" if method == "bca" else "percentile",
        random_state=np.random.default_rng(8),
    ).confidence_interval
    low, high = report.intervals["full_code"]["macro_f1"]
    # two independent Monte Carlo runs of 4000 resamples: endpoints agree to about 0.02
    assert low == pytest.approx(reference.low, abs=0.025)
    assert high == pytest.approx(reference.high, abs=0.025)
    point = report.levels["full_code"].macro_f1
    assert low <= point <= high


def test_bootstrap_resamples_notes_not_samples() -> None:
    # 20 notes with 10 identical samples each: resampling samples would make the
    # interval ~3x too narrow; resampling notes gives the interval of the 20 notes
    rng = random.Random(5)
    pool = rng.sample(sorted(CS.codes()), 5)
    golds = [rng.choice(pool) for _ in range(20)]
    preds = [g if rng.random() < 0.5 else rng.choice(pool) for g in golds]
    one = evaluate_codes(golds, preds, bootstrap=2000, seed=1, interval="percentile")
    repeated = evaluate_codes(
        [g for g in golds for _ in range(10)],
        [p for p in preds for _ in range(10)],
        note_ids=[i for i in range(20) for _ in range(10)],
        per_note="all",
        bootstrap=2000,
        seed=1,
        interval="percentile",
    )
    width = one.intervals["full_code"]["accuracy"][1] - one.intervals["full_code"]["accuracy"][0]
    again = repeated.intervals["full_code"]["accuracy"]
    assert again[1] - again[0] == pytest.approx(width, abs=0.05)
    assert width > 0.3


def test_swapped_arguments_are_caught() -> None:
    with pytest.raises(TypeError, match="golds, predictions"):
        evaluate_codes(["M5116", "E119"], [["M5116"], ["E119"]])
