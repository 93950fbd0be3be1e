"""The built-in reward components, one at a time."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from icdreward import RewardEngine
from icdreward_plugins._scan import trace_counts
from icdreward_plugins.reasoning import _SENTENCE_CHARS, _TAIL, _repetition, _terms

from _texts import completion


def only(component: str, **params: Any) -> RewardEngine:
    return RewardEngine.from_config({"rewards": {component: params}})


def test_exact_primary_secondary_invalid() -> None:
    engine = only("exact", match=1.0, secondary_match=0.25, no_match=-0.5, invalid=-1.0)
    texts = [completion(c) for c in ["E119", "I10", "J189", "ZZZ"]]
    result = engine.score(texts, [["E119", "I10"]] * 4)
    assert result.components["exact"].tolist() == [1.0, 0.25, -0.5, -1.0]


def test_hierarchy_levels_follow_the_code_set_not_string_ranges() -> None:
    engine = only("hierarchy", credit={"chapter": 0.1, "block": 0.2, "category": 0.5})
    # C4A (Merkel cell carcinoma) sits in block C43-C44 of chapter 2, with C44 but not C45.
    texts = [completion(c) for c in ["C4400", "C450", "D010"]]
    result = engine.score(texts, ["C4A0"] * 3)
    assert result.components["hierarchy"].tolist() == pytest.approx([0.2, 0.1, 0.1])


def test_hierarchy_block_that_shares_its_id_with_a_category() -> None:
    engine = only("hierarchy", credit={"chapter": 0.1, "block": 0.2, "category": 0.5})
    # B99 is both a block (B99) and a category; B97 sits in block B95-B97.
    result = engine.score([completion("B998"), completion("B9789")], ["B999"] * 2)
    assert result.components["hierarchy"].tolist() == pytest.approx([0.5, 0.1])


def test_hierarchy_prefix_mode_matches_published_numbers() -> None:
    engine = only("hierarchy", mode="prefix", scale=15.0, mismatch=-1.0, invalid=-1.0)
    texts = [completion(c) for c in ["M5116", "M5117", "M51", "Z00", "bad"]]
    result = engine.score(texts, ["M5116"] * 5)
    assert result.components["hierarchy"].tolist() == [75.0, 42.0, 24.0, -1.0, -1.0]


@pytest.mark.parametrize("mode", ["levels", "prefix"])
def test_hierarchy_memo_gives_what_the_formula_gives_in_any_order_of_batches(mode: str) -> None:
    # The memo learns some batches and skips others (varied batches are mostly new);
    # whatever it holds, every batch scores as a fresh component scores it alone.
    codes = ["M5116", "M5117", "M511", "M51", "E119", "I10", "J189", "C4A0", "bad", ""]
    golds = ["M5116", "E119", ["I10", "M5117"], "C4A0"]
    batches = []
    for k in range(40):
        # Runs of repeated batches (served from the memo) between new combinations.
        seed = k // 3 if k % 5 else 100 + k
        pairs = [(codes[(seed * 7 + j) % len(codes)], golds[(seed + j * 3) % len(golds)])
                 for j in range(24 + seed % 5)]  # fmt: skip
        batches.append(([completion(c) for c, _ in pairs], [g for _, g in pairs]))
    kept = only("hierarchy", mode=mode, mismatch=-0.5, invalid=-1.0)
    for texts, gold in batches:
        fresh = only("hierarchy", mode=mode, mismatch=-0.5, invalid=-1.0)
        got = kept.score(texts, gold).components["hierarchy"]
        assert torch.equal(got, fresh.score(texts, gold).components["hierarchy"])
    # It learned, and served some of the repeated batches without the formula.
    assert 0 < kept.rewards["hierarchy"]._batches < len(batches)


def test_format_reward_terms() -> None:
    engine = only(
        "format", empty=-1.0, well_formed=0.5, malformed=-0.2, extra_block=-0.1,
        max_extra_blocks=2, outside_text=-0.05,
    )  # fmt: skip
    extra = completion("I10") + "<think>a</think><diagnosis>I10</diagnosis>" * 5
    # With the prefilled <think>, text without tags is an unclosed trace, not outside text.
    texts = ["", completion("I10"), "no tags at all", extra, "x</think>junk"]
    result = engine.score(texts, ["I10"] * 5)
    expected = [-1.0, 0.5, -0.2, -0.2 - 0.2 - 0.05, -0.2 - 0.05]
    assert result.components["format"].tolist() == pytest.approx(expected)


def test_reasoning_nonempty_requires_a_closed_trace_by_default() -> None:
    engine = only("reasoning", nonempty=1.0)
    texts = [completion("I10"), "unclosed trace <diagnosis>I10</diagnosis>", completion("I10", "")]
    result = engine.score(texts, ["I10"] * 3)
    assert result.components["reasoning"].tolist() == [1.0, 0.0, 0.0]


def test_reasoning_length_window() -> None:
    engine = only("reasoning", min_words=10, max_words=20, length_penalty=-1.0)
    short = completion("I10", "two words")
    fine = completion("I10", " ".join(["word"] * 15))
    long = completion("I10", " ".join(["word"] * 40))
    result = engine.score([short, fine, long], ["I10"] * 3)
    assert result.components["reasoning"].tolist() == pytest.approx([-0.8, 0.0, -1.0])


def test_an_empty_trace_never_beats_a_short_one(default_engine: RewardEngine) -> None:
    texts = [completion("E119", ""), completion("E119", "Fever."),
             completion("E119", "Polyuria, polydipsia and a high glucose: diabetes.")]  # fmt: skip
    result = default_engine.score(texts, ["E119"] * 3)
    empty, short, longer = result.total.tolist()
    assert empty < short < longer


def repetition(trace: str) -> float:
    _, sentences, distinct, tail_repeats, _, _ = trace_counts(trace, (), (), _SENTENCE_CHARS, _TAIL)
    return _repetition(len(trace), sentences, distinct, tail_repeats)


def test_repetition_detects_loops_and_repeated_sentences() -> None:
    natural = (
        "The patient presents with chest pain. Troponin is raised. ECG shows ST depression. "
        "This points to a non-ST elevation myocardial infarction rather than angina."
    )
    looped = natural + " I am not sure" * 200
    repeated = " ".join(["Troponin is raised."] * 10)
    assert repetition(natural) == 0.0
    assert repetition(looped) > 0.8
    assert repetition(repeated) > 0.8
    assert repetition("Hmm... fever... cough... so pneumonia... or maybe not, M51.16.") == 0.0


def test_reasoning_grounding_and_consistency_reward_relevant_traces() -> None:
    engine = only("reasoning", grounding=1.0, consistency=1.0)
    note = "Admitted with crushing chest pain, diaphoresis; troponin elevated; ECG ST depression."
    trace = (
        "Chest pain with diaphoresis, elevated troponin and ST depression: "
        "a non-ST elevation myocardial infarction."
    )
    grounded = completion("I214", trace)
    unrelated = completion("I214", "The weather is nice and the cafeteria food was good today.")
    result = engine.score([grounded, unrelated], ["I214"] * 2, notes=[note, note])
    good, bad = result.components["reasoning"].tolist()
    # 6 of the note's 8 terms and 3 of the description's 4 (non-ST elevation MI)
    assert good == pytest.approx(6 / 8 + 3 / 4)
    assert bad == 0.0


def test_terms_prefer_specific_words() -> None:
    terms = _terms("The patient has severe hyperkalaemia and a history of the flu", 3)
    assert terms[0] == "hyperk"
    assert "patient"[:6] not in terms and "history"[:6] not in terms


def test_reasoning_code_terms_table_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # A policy may answer endless invented codes: the table of code terms is cleared at
    # its bound, and values stay what a fresh component gives.
    from icdreward_plugins import reasoning

    monkeypatch.setattr(reasoning, "_CODE_CACHE_SIZE", 8)
    params = {"consistency": 0.5, "nonempty": 0.1}
    kept = RewardEngine.from_config(
        {"parser": {"validate": "pattern"}, "rewards": {"reasoning": params}}
    )
    codes = [f"M5{k:02d}9" for k in range(30)] + ["M5116", "E119", "I10"] * 3
    trace = "Lumbar disc disorder with radiculopathy; type 2 diabetes; essential hypertension"
    for code in codes:
        text = completion(code, trace)
        got = kept.score([text], [code]).components["reasoning"]
        fresh = (
            RewardEngine.from_config(
                {"parser": {"validate": "pattern"}, "rewards": {"reasoning": params}}
            )
            .score([text], [code])
            .components["reasoning"]
        )
        assert torch.equal(got, fresh)
    assert 0 < len(kept.rewards["reasoning"]._code_terms) <= 8
