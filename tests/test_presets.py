"""The two shipped presets: deepicd-r1 reproduces the published reward, default behaves."""

from __future__ import annotations

import random
import re

import pytest

from icdreward import RewardEngine
from icdreward.presets import available_presets, preset_config

from _texts import completion

GOLD = "M5116"


def published_reward(completion_text: str, gold: str) -> float:
    """An independent re-statement of the published DeepICD-R1 reward (judge off).

    Written from the formula in DESIGN.md, not from icdreward's code: regexes over
    ``"<think>" + completion``, the code pattern widened to accept C4A-style categories.
    """
    text = "<think>" + completion_text
    empty = -5.0 if not completion_text.strip() else 0.0
    pairs = re.findall(r"<think>(.*?)</think>\s*<diagnosis>(.*?)</diagnosis>", text, re.S)
    score = empty
    if pairs:
        score -= len(pairs) - 1
        trace, diagnosis = pairs[0]
        if trace.strip():
            score += 1.0
        code = "".join(diagnosis.strip().split(".")).strip()
    else:
        code = ""
    if not re.fullmatch(r"[A-Z][0-9][0-9A-Z][0-9A-Z]{0,4}", code):
        return score - 1.0
    common = 0
    for a, b in zip(code, gold, strict=False):
        if a != b:
            break
        common += 1
    if code == gold:
        return score + 15.0 * len(gold)
    if code[0] == gold[0]:
        return score + 15.0 * (common / len(gold) + max(0, common - 2))
    return score - 1.0


def test_presets_are_listed() -> None:
    assert available_presets() == ("deepicd-r1", "default")
    with pytest.raises(KeyError):
        preset_config("nope")


@pytest.mark.parametrize(
    ("predicted", "expected"),
    [("M5116", 76.0), ("M51.16", 76.0), ("M5117", 43.0), ("M511", 43.0), ("M51", 25.0),
     ("M99", 4.0), ("Z00", 0.0)],
)  # fmt: skip
def test_deepicd_worked_examples(deepicd: RewardEngine, predicted: str, expected: float) -> None:
    result = deepicd.score([completion(predicted)], [GOLD])
    assert result.total.tolist() == [expected]


def test_deepicd_empty_completion_is_minus_six(deepicd: RewardEngine) -> None:
    result = deepicd.score(["", "   \n"], [GOLD, GOLD])
    assert result.total.tolist() == [-6.0, -6.0]
    assert result.components["format"].tolist() == [-5.0, -5.0]


def test_deepicd_components_add_up(deepicd: RewardEngine) -> None:
    result = deepicd.score([completion("M5117")], [GOLD])
    (record,) = result.to_records()
    assert record["outcome"] == 42.0
    assert record["trace"] == 1.0
    assert record["format"] == 0.0
    assert record["exact_match"] == 0.0  # weight 0: logged, not added
    assert record["score"] == 43.0


def test_deepicd_every_extra_pair_costs_one(deepicd: RewardEngine) -> None:
    one_line = completion("M5116") + "<think>again</think><diagnosis>M5117</diagnosis>"
    two_lines = (
        completion("M5116")
        + "\n<think>again</think>\n<diagnosis>M5117</diagnosis>"
        + "\n<think>more</think>\n<diagnosis>M5118</diagnosis>"
    )
    result = deepicd.score([one_line, two_lines], [GOLD, GOLD])
    # A second block on the same line no longer escapes the penalty.
    assert result.total.tolist() == [75.0, 74.0]


def test_deepicd_accepts_categories_ending_in_a_letter(deepicd: RewardEngine) -> None:
    result = deepicd.score([completion("C4A0"), completion("Z3A.01")], ["C4A0", "Z3A01"])
    assert result.total.tolist() == [61.0, 76.0]


def test_deepicd_keeps_case_like_the_published_code(deepicd: RewardEngine) -> None:
    result = deepicd.score([completion("m5116")], [GOLD])
    assert result.total.tolist() == [0.0]  # -1 invalid code, +1 trace
    assert result.invalid_code.tolist() == [True]


def test_deepicd_empty_trace_earns_no_trace_reward(deepicd: RewardEngine) -> None:
    result = deepicd.score([completion("M5116", trace="  ")], [GOLD])
    assert result.total.tolist() == [75.0]


def _random_completion(rng: random.Random) -> tuple[str, str]:
    codes = [
        "M5116",
        "M5117",
        "M511",
        "M51",
        "M99",
        "Z00",
        "A000",
        "M4806",
        "E119",
        "C4A0",
        "S52521A",
        "M5",
        "X",
        "m5116",
        "",
    ]
    gold = rng.choice(["M5116", "E119", "S52521A", "C4A0", "A00"])
    code = rng.choice(codes)
    if rng.random() < 0.3 and len(code) > 3:
        code = code[:3] + "." + code[3:]
    trace = rng.choice(["", "Reasoning about the note.", "Line one.\nLine two with detail."])
    text = f"{trace}</think>{rng.choice(['', chr(10), ' '])}<diagnosis>{code}</diagnosis>"
    for _ in range(rng.choice([0, 0, 0, 1, 2])):
        text += f"{rng.choice(['', chr(10)])}<think>more</think><diagnosis>{code}</diagnosis>"
    return text, gold


_FRAGMENTS = [
    "reasoning. ", "</think>", "<think>", "<diagnosis>", "</diagnosis>", "\n", " ", "junk",
    "M5116", "M51.17", "E119", "m5116", "<diagnosis>M5116</diagnosis>", "</think>\n<diagnosis>",
    "<think>more</think><diagnosis>M51</diagnosis>", "",
]  # fmt: skip


def test_deepicd_matches_the_published_formula_on_random_malformed_inputs(
    deepicd: RewardEngine,
) -> None:
    """Missing or stray tags, text between blocks, unclosed blocks: still the published rule.

    One deliberate difference is left out: a completion that repeats the prefilled
    ``<think>`` is read as that tag, where the published code counts the tag itself as
    trace text (+1 for ``"<think></think>..."``).
    """
    rng = random.Random(99)
    texts = ["".join(rng.choices(_FRAGMENTS, k=rng.randint(0, 9))) for _ in range(4000)]
    texts = [t for t in texts if not t.lstrip().startswith("<think>")]
    assert len(texts) > 3000
    golds = [rng.choice(["M5116", "E119", "M51"]) for _ in texts]
    result = deepicd.score(texts, golds)
    expected = [published_reward(text, gold) for text, gold in zip(texts, golds, strict=True)]
    assert result.total.tolist() == pytest.approx(expected, abs=1e-4)


def test_deepicd_without_a_pair_scores_like_the_published_code(deepicd: RewardEngine) -> None:
    texts = [
        "Lumbar.<diagnosis>M5116</diagnosis>",  # no </think>
        "r</think><diagnosis>M5116",  # unclosed diagnosis
        "r</think>junk<diagnosis>M5116</diagnosis>",  # text between the blocks
        "a</think>b</think>\n<diagnosis>M5116</diagnosis>",  # the think block runs on
    ]
    result = deepicd.score(texts, [GOLD] * 4)
    assert result.total.tolist() == [-1.0, -1.0, -1.0, 76.0]


def test_deepicd_extra_pair_penalty_is_capped(deepicd: RewardEngine) -> None:
    many = completion("M5116") + "<think>x</think><diagnosis>M5116</diagnosis>" * 50
    stray = "r</think><diagnosis>M5116</diagnosis>" + "<diagnosis>" * 50
    result = deepicd.score([many, stray], [GOLD, GOLD])
    assert result.total.tolist() == [76.0 - 5.0, 76.0]


def test_deepicd_matches_the_published_formula_on_random_well_formed_inputs(
    deepicd: RewardEngine,
) -> None:
    rng = random.Random(1234)
    pairs = [_random_completion(rng) for _ in range(600)]
    result = deepicd.score([p[0] for p in pairs], [p[1] for p in pairs])
    expected = [published_reward(text, gold) for text, gold in pairs]
    assert result.total.tolist() == pytest.approx(expected, abs=1e-4)


def test_default_orders_partial_credit_by_depth(default_engine: RewardEngine) -> None:
    # gold M51.16: exact, 4-char sibling, category, block M50-M54, chapter 13, other chapter
    predicted = ["M5116", "M5117", "M5106", "M5020", "M4806", "J189"]
    result = default_engine.score([completion(c) for c in predicted], [GOLD] * len(predicted))
    hierarchy = result.components["hierarchy"].tolist()
    assert hierarchy == sorted(hierarchy, reverse=True)
    assert hierarchy[0] == 1.0
    assert hierarchy[-1] == 0.0
    assert len(set(hierarchy)) == len(hierarchy)


def test_default_folds_case_and_finds_codes_in_sentences(default_engine: RewardEngine) -> None:
    texts = [completion("m51.16"), completion("M51.16 (lumbar radiculopathy)")]
    result = default_engine.score(texts, [GOLD, GOLD])
    assert list(result.parsed.codes) == ["M5116", "M5116"]
    assert result.components["exact"].tolist() == [1.0, 1.0]


def test_default_maps_free_text_with_reduced_credit(default_engine: RewardEngine) -> None:
    text = completion("Type 2 diabetes mellitus without complications")
    result = default_engine.score([text, completion("E119")], ["E119", "E119"])
    assert result.parsed.codes[0] == "E119"
    free, coded = result.components["hierarchy"].tolist()
    assert coded == 1.0
    assert free == pytest.approx(0.8)


def test_default_secondary_gold_earns_part_of_the_credit(default_engine: RewardEngine) -> None:
    result = default_engine.score([completion("E119")], [["M5116", "E119"]])
    assert result.components["hierarchy"].tolist() == [pytest.approx(0.5)]


def test_default_rejects_codes_outside_the_code_set(default_engine: RewardEngine) -> None:
    result = default_engine.score([completion("M5199")], [GOLD])
    assert result.invalid_code.tolist() == [True]
    assert result.components["hierarchy"].tolist() == [0.0]


def test_default_gold_from_an_older_year_still_scores_by_hierarchy(
    default_engine: RewardEngine, codeset
) -> None:
    old_gold = "M51169"  # not a code of the shipped year; its category M51 is
    assert old_gold not in codeset
    result = default_engine.score([completion("M5116"), completion("M511")], [old_gold] * 2)
    hierarchy = result.components["hierarchy"].tolist()
    assert hierarchy[0] > 0.5  # shares the 5-character subcategory
    assert hierarchy[1] > 0.0


def test_default_total_range_is_as_documented(default_engine: RewardEngine) -> None:
    note = "Low back pain radiating to the left leg with numbness; MRI shows disc herniation."
    trace = (
        "The note describes low back pain radiating to the left leg, numbness and an MRI with "
        "disc herniation, which indicates an intervertebral disc disorder with radiculopathy "
        "in the lumbar region."
    )
    best = default_engine.score([completion("M5116", trace)], [GOLD], notes=[note])
    worst = default_engine.score([""], [GOLD], notes=[note])
    assert 1.0 < best.total.item() < 1.5
    # -1 empty, -0.3 no trace at all (the full length penalty: no reasoning is the
    # shortest reasoning).
    assert worst.total.item() == pytest.approx(-1.3)
