"""Reward-hacking monitors (``ScoreResult.monitors``) against direct computations."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from icdreward import ConfigError, RewardEngine
from icdreward.codeset import load_codeset
from icdreward.monitors import MONITORS

NOTE = (
    "72-year-old woman with fever, rigors and confusion. Blood pressure 84/50 despite two "
    "litres of fluid, lactate 4.1 mmol/L, white cell count 19. Urine dipstick positive for "
    "nitrites; cultures pending. No other source of infection found on examination."
)


def answer(code: str, think: str = "Septic shock from a urinary source.") -> str:
    return f"{think}</think>\n<diagnosis>{code}</diagnosis>"


@pytest.fixture(scope="module")
def engine() -> RewardEngine:
    return RewardEngine.from_preset("default")


def test_answer_shares_match_a_direct_count(engine: RewardEngine) -> None:
    codeset = load_codeset()
    completions = [
        answer("A41.9"),  # billable, "unspecified organism"
        answer("A41.51"),  # billable, specific
        answer("A41"),  # a category: valid, not billable
        answer("A41.5"),  # a subcategory: valid, not billable
        answer("Z99.999"),  # no such code
        "no tags at all",
        answer("N39.0"),  # "site not specified": not the word "unspecified"
        answer("I10"),
    ]
    result = engine.score(completions, ["A419"] * len(completions))
    m = result.monitors
    assert set(m) == {"parse_failure", "invalid_code", "non_billable", "unspecified",
                      "trace_chars", "chapter_entropy"}  # fmt: skip
    codes = result.parsed.codes
    size = len(codes)
    valid = [bool(c) and codeset.is_valid(c) for c in codes]
    assert m["parse_failure"] == pytest.approx(float(result.parsed.parse_failure.float().mean()))
    assert m["invalid_code"] == pytest.approx(float(result.parsed.invalid_code.float().mean()))
    assert m["non_billable"] == pytest.approx(
        sum(v and not codeset.is_billable(c) for c, v in zip(codes, valid, strict=True)) / size
    )
    assert m["non_billable"] == pytest.approx(2 / 8)
    assert m["unspecified"] == pytest.approx(
        sum(v and "unspecified" in (codeset.describe(c) or "").lower()
            for c, v in zip(codes, valid, strict=True)) / size
    )  # fmt: skip
    assert m["trace_chars"] == pytest.approx(sum(map(len, result.parsed.think)) / size)


def test_chapter_entropy(engine: RewardEngine) -> None:
    one = engine.score([answer("A41.9"), answer("A41.51")], ["A419", "A419"])
    assert one.monitors["chapter_entropy"] == 0.0
    two = engine.score([answer("A41.9"), answer("I10")], ["A419", "A419"])
    assert two.monitors["chapter_entropy"] == pytest.approx(1.0)
    rng = random.Random(3)
    codes = rng.sample(sorted(load_codeset().codes()), 300)
    result = engine.score([answer(c) for c in codes], ["A419"] * len(codes))
    chapters = Counter(load_codeset().hierarchy(c)[0] for c in codes)
    expected = -sum(n / 300 * math.log2(n / 300) for n in chapters.values())
    assert result.monitors["chapter_entropy"] == pytest.approx(expected)


def test_group_spread(engine: RewardEngine) -> None:
    groups = ["a", "a", "a", "b", "b", "c", "c", "d"]
    codes = ["A41.9", "A41.9", "A41.9", "I10", "N39.0", "I10", "garbage", "I10"]
    completions = [answer(c) if c != "garbage" else "garbage" for c in codes]
    result = engine.score(completions, ["A419"] * 8, group_ids=groups)
    m = result.monitors
    per_group: dict[str, set[str]] = {}
    for g, c in zip(groups, result.parsed.codes, strict=True):
        per_group.setdefault(g, set()).add(c)
    assert m["group_distinct_codes"] == pytest.approx(
        sum(map(len, per_group.values())) / len(per_group)
    )
    # a collapsed onto one code; b and c spread; d has one sample and does not count.
    assert m["group_collapsed"] == pytest.approx(1 / 3)


def test_note_copy_counts_copies_not_quotes(engine: RewardEngine) -> None:
    honest = (
        "Hypotension despite fluids with a lactate of 4.1 means septic shock; positive "
        "nitrites point to a urinary source. Organism not yet known, so sepsis, unspecified "
        "organism, with the shock coded separately if required."
    )
    quoting = honest + " The note says: Blood pressure 84/50 despite two litres of fluid."
    completions = [answer("A41.9", NOTE), answer("A41.9", honest), answer("A41.9", quoting),
                   answer("A41.9", NOTE + " Sepsis, unspecified organism.")]  # fmt: skip
    result = engine.score(completions, ["A419"] * 4, notes=[NOTE] * 4)
    assert result.monitors["note_copy"] == pytest.approx(2 / 4)


def test_note_copy_on_a_large_batch_is_estimated_from_a_sample(engine: RewardEngine) -> None:
    honest = "Sepsis with hypotension after fluids and a urinary source; no organism yet."
    completions = [answer("A41.9", NOTE if k % 4 == 0 else honest) for k in range(2048)]
    result = engine.score(completions, ["A419"] * 2048, notes=[NOTE] * 2048)
    assert result.monitors["note_copy"] == pytest.approx(0.25, abs=0.07)
    everything = engine.score([answer("A41.9", NOTE)] * 2048, ["A419"] * 2048, notes=[NOTE] * 2048)
    assert everything.monitors["note_copy"] == 1.0


def test_monitors_are_named_and_can_be_switched_off() -> None:
    engine = RewardEngine.from_config({"preset": "default", "monitors": False})
    result = engine.score([answer("A41.9")], ["A419"], notes=[NOTE], group_ids=[1])
    assert result.monitors == {}
    on = RewardEngine.from_preset("default").score(
        [answer("A41.9")], ["A419"], notes=[NOTE], group_ids=[1]
    )
    assert tuple(on.monitors) == MONITORS
    assert all(math.isfinite(v) for v in on.monitors.values())


def test_monitors_setting_is_checked() -> None:
    with pytest.raises(ConfigError, match="monitors") as info:
        RewardEngine.from_config({"preset": "default", "monitors": "yes"})
    assert info.value.field == "monitors"


def test_empty_batch_has_no_monitors(engine: RewardEngine) -> None:
    assert engine.score([], []).monitors == {}


def test_score_summary_reports_the_monitors(capsys: pytest.CaptureFixture[str]) -> None:
    import json
    from pathlib import Path

    from icdreward.cli import main

    examples = Path(__file__).resolve().parents[1] / "examples" / "completions.jsonl"
    assert main(["score", str(examples), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    monitors = report["monitors"]
    assert tuple(monitors) == MONITORS  # the examples have notes and groups
    rows = [json.loads(line) for line in examples.read_text(encoding="utf-8").splitlines()]
    failures = sum(1 for r in rows if "</diagnosis>" not in r["completion"]) / len(rows)
    assert monitors["parse_failure"] <= failures + 1e-9
    assert main(["score", str(examples)]) == 0
    assert "monitor group_collapsed" in capsys.readouterr().out


def test_chapter_entropy_counts_unlisted_codes_by_their_category() -> None:
    # The published preset accepts any well-shaped code: M51.19 is not a code of the
    # year, but its category M51 is, so it answers chapter 13 like M51.16.
    engine = RewardEngine.from_preset("deepicd-r1")
    same = engine.score([answer("M51.19"), answer("M51.16")], ["M5116"] * 2)
    assert same.parsed.codes == ("M5119", "M5116")
    assert same.monitors["chapter_entropy"] == 0.0
    apart = engine.score([answer("M51.19"), answer("I10"), answer("U99.99")], ["M5116"] * 3)
    assert apart.parsed.codes[2] == "U9999"  # no category U99: no chapter, left out
    assert apart.monitors["chapter_entropy"] == pytest.approx(1.0)
