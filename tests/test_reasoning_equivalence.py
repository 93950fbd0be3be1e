"""The faster reasoning reward and tag parser against their earlier, plainer statements.

The references below are the code the optimised versions replaced (word count with two
counts, each trace copied out by the parser, ``term in lower`` in a generator, the fast
path as a chain of ``find`` calls). Every score, flag and span must agree bit for bit.
"""

from __future__ import annotations

import struct

import attrs
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from icdreward import Feature, RewardEngine
from icdreward.codeset import CodeSet
from icdreward.components import ComponentContext
from icdreward_plugins._scan import _newlines
from icdreward_plugins.format_parser import TagParser, TagParserParams, _strip_span
from icdreward_plugins.reasoning import (
    _PUNCTUATION,
    _STEM,
    _STOPWORDS,
    ReasoningParams,
    ReasoningReward,
    _terms,
)

# -- references -----------------------------------------------------------------------


def reference_terms(text: str, limit: int) -> tuple[str, ...]:
    words = {w for w in text.lower().translate(_PUNCTUATION).split() if len(w) >= 4}
    content = sorted(
        (w for w in words if w not in _STOPWORDS and not w.isdigit()), key=lambda w: (-len(w), w)
    )
    stems = dict.fromkeys(w[:_STEM] for w in content[: limit * 2])
    return tuple(stems)[:limit]


def reference_repetition(trace: str) -> float:
    n = len(trace)
    if n < 80:
        return 0.0
    sentences = [part.strip() for part in trace.split(".") if len(part) >= 12]
    duplicates = (len(sentences) - len(set(sentences))) / len(sentences) if sentences else 0.0
    tail = trace[-40:]
    loop = (trace.count(tail) - 1) * 40 / n
    return min(1.0, max(duplicates, loop))


def reference_text_score(
    reward: ReasoningReward, p: ReasoningParams, trace: str, note: str, code: str
) -> float:
    value = 0.0
    if p.min_words or p.max_words:
        words = trace.count(" ") + trace.count("\n") + 1
        if p.min_words and words < p.min_words:
            value += p.length_penalty * (1.0 - words / p.min_words)
        elif p.max_words and words > p.max_words:
            value += p.length_penalty * min(1.0, (words - p.max_words) / p.max_words)
    if p.repetition_penalty:
        rep = reference_repetition(trace)
        if rep > p.repetition_floor:
            value += p.repetition_penalty * (rep - p.repetition_floor) / (1 - p.repetition_floor)
    if p.grounding or p.consistency:
        lower = trace.lower()
        if p.grounding and note:
            terms = reward._terms_of_note(note)
            if terms:
                value += p.grounding * sum(t in lower for t in terms) / len(terms)
        if p.consistency and code:
            terms = reward._terms_of_code(code)
            if terms:
                value += p.consistency * sum(t in lower for t in terms) / len(terms)
    return value


def reference_fast_path(parser: TagParser, text: str) -> tuple[object, ...] | None:
    """The fast path as it was: (think, diagnosis, candidate, code, features) or None."""
    t1 = text.find("<")
    if t1 <= 0 or not text.startswith("</think>", t1):
        return None
    d0 = t1 + 8
    if not text.startswith("<diagnosis>", d0):
        d0 = text.find("<", d0)
        if d0 < 0 or not text.startswith("<diagnosis>", d0) or not text[t1 + 8 : d0].isspace():
            return None
    d1 = text.find("</diagnosis>", d0 + 11)
    if d1 < 0:
        return None
    length = len(text)
    if d1 + 12 != length and not text[d1 + 12 :].isspace():
        return None
    diagnosis = text[d0 + 11 : d1].strip()
    if not diagnosis:
        return None
    think = text[:t1].strip()
    candidate, code, found, valid, known, free = parser._code_of(diagnosis)
    row = (False, False, True, True, True, True, True, found, valid, known, free,
           0, 0, 0, t1, d0, d1, length, len(think))  # fmt: skip
    return think, diagnosis, candidate, code, struct.pack(f"={len(Feature)}i", *row)


# -- inputs ---------------------------------------------------------------------------

# Whitespace that str.strip removes beyond the ASCII kind, and letters whose case
# mapping is unusual (final sigma, dotted capital I, a ligature).
_ODD = " \t\n\r\x0b\x0c\x1c\x85\xa0\u2028\u3000ΣσςİßﬁÉé"
_SENTENCES = [
    "The patient has lumbar disc disorder with radiculopathy",
    "Pneumonia is likely given the consolidation",
    "the patient has lumbar disc disorder with radiculopathy",
    "  The patient has lumbar disc disorder with radiculopathy  ",
    "Type 2 diabetes mellitus without complications",
    "M51.16",
    "...",
    "short",
    "\n\n",
    "ΣΙΓΜΑ ΟΔΟΣ and İstanbul",
]
_PIECE = st.one_of(
    st.sampled_from(_SENTENCES),
    st.sampled_from([". ", ".", "\n", " ", "  ", ".\n"]),
    st.text(alphabet=st.sampled_from("abcdefgh .\n" + _ODD), max_size=30),
)
_TRACE = st.one_of(
    st.lists(_PIECE, max_size=40).map("".join),
    # a loop running to the end
    st.tuples(st.sampled_from(_SENTENCES), st.integers(1, 30)).map(lambda t: (t[0] + ". ") * t[1]),
    st.text(max_size=300),
)
_NOTE = (
    "Admission note: a 67 year old man with lumbar disc disorder, radiculopathy, "
    "type 2 diabetes mellitus and pneumonia; ΣΟΦΙΑ reviewed the İmaging."
)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from("ab<>/\n" + _ODD)), data=st.data())
def test_strip_span_is_strip(text: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    a, b = _strip_span(text, start, end)
    assert text[a:b] == text[start:end].strip()
    assert start <= a <= b <= end


_WORDY = st.text(
    alphabet=st.sampled_from("abcdeABCDE0123 .,;-'\n\t\x1c\x1d\x1e\x1f\x00\x7f" + _ODD + "²½"),
    max_size=200,
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(_WORDY, st.lists(st.sampled_from([*_SENTENCES, _NOTE]), max_size=8).map(" ".join),
                 st.text(max_size=100)), st.integers(1, 10))  # fmt: skip
def test_terms_are_the_reference(text: str, limit: int) -> None:
    assert _terms(text, limit) == reference_terms(text, limit)
    ascii_text = text.encode("ascii", "ignore").decode("ascii")  # the bytes path
    assert _terms(ascii_text, limit) == reference_terms(ascii_text, limit)


@given(st.text(alphabet=st.sampled_from("a\n" + _ODD)))
def test_newlines_is_count(text: str) -> None:
    assert _newlines(text) == text.count("\n")


_TAGS = st.sampled_from(
    ["</think>", "<diagnosis>", "</diagnosis>", "<think>", "<", "<diag", "M51.16", "E119",
     "I10 text", " ", "\n", "\u2028", "\xa0", "x", ""]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.tuples(_TRACE, st.lists(_TAGS, max_size=10).map("".join)).map("".join))
def test_fast_path_matches_the_reference(codeset: CodeSet, text: str) -> None:
    parser = TagParser(TagParserParams(), ComponentContext(codeset=codeset))
    expected = reference_fast_path(parser, text)
    fast = parser._parse_well_formed([text])[0]
    parsed = parser.parse([text])
    if fast is not None:
        start, end, *rest = fast
        assert expected == (text[start:end], *rest)
    if expected is not None:
        think, diagnosis, candidate, code, features = expected
        assert parsed.think == (think,)
        assert (parsed.diagnosis, parsed.candidates, parsed.codes) == (
            (diagnosis,), (candidate,), (code,),
        )  # fmt: skip
        assert parsed.features[0].numpy().tobytes() == features


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(_TRACE, st.sampled_from(["E119", "M51.16", "J18.9", "junk", ""])), max_size=6
    )
)
def test_reasoning_matches_the_reference(
    default_engine: RewardEngine, rows: list[tuple[str, str]]
) -> None:
    texts = [f"{trace}</think>\n<diagnosis>{code}</diagnosis>" for trace, code in rows]
    texts += [trace for trace, _ in rows]  # unclosed traces take the general path
    params = ReasoningParams(
        nonempty=0.05, require_closed=False, min_words=15, max_words=60, length_penalty=-0.1,
        repetition_penalty=-0.3, grounding=0.1, consistency=0.1, max_chars=150,
    )  # fmt: skip
    reward = ReasoningReward(params, ComponentContext(codeset=default_engine.codeset))
    notes = [_NOTE if i % 3 else "" for i in range(len(texts))]
    batch = default_engine._prepare(texts, ["E119"] * len(texts), notes, None)
    got = reward.score(batch)

    parsed = batch.parsed
    ok = (parsed.feature(Feature.THINK_CHARS) > 0).tolist()
    extra = [
        reference_text_score(reward, params, think[: params.max_chars], note, code) if t else 0.0
        for think, note, code, t in zip(parsed.think, notes, parsed.codes, ok, strict=True)
    ]
    base = torch.where(
        parsed.feature(Feature.THINK_CHARS) > 0, params.nonempty, params.length_penalty
    )
    expected = base + torch.tensor(extra, dtype=torch.float32)
    assert torch.equal(got.view(torch.int32), expected.view(torch.int32))


def test_reasoning_on_long_repetitive_traces(default_engine: RewardEngine) -> None:
    loop = "the answer is M51.16. " * 400
    texts = [
        f"{loop}</think><diagnosis>M51.16</diagnosis>",
        f"{'x' * 30_000}. {loop}</think><diagnosis>E119</diagnosis>",
        f"\n\n  {loop}\u2028</think>\n<diagnosis>M51.16</diagnosis>",
    ]
    result = default_engine.score(texts, ["M5116"] * 3, [_NOTE] * 3)
    reward = default_engine.rewards["reasoning"]
    p: ReasoningParams = reward.params
    parsed = result.parsed
    extra = [
        reference_text_score(reward, p, think[: p.max_chars], _NOTE, code)
        for think, code in zip(parsed.think, parsed.codes, strict=True)
    ]
    expected = torch.full((3,), p.nonempty) + torch.tensor(extra, dtype=torch.float32)
    got = result.components["reasoning"]
    assert torch.equal(got.view(torch.int32), expected.view(torch.int32))


def test_think_is_sliced_on_first_read(default_engine: RewardEngine) -> None:
    texts = ["  a trace. \n</think><diagnosis>E119</diagnosis>", "<think>b</think> c", "", "\n"]
    parsed = default_engine.parser.parse(texts)
    sources, starts, ends = parsed.think_slices()
    expected = tuple(s[a:b] for s, a, b in zip(sources, starts, ends, strict=True))
    assert parsed.think == expected == ("a trace.", "b", "", "")
    assert parsed.think is parsed.think  # computed once
    assert [len(t) for t in parsed.think] == parsed.feature(Feature.THINK_CHARS).tolist()
    assert parsed.subset([1, 0]).think == ("b", "a trace.")


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["M5116", "M5117", "M511", "M51", "M99", "Z00", "m51.16", "", "X"]),
            st.sampled_from(["M5116", "M511", "E119", "C4A9", "", "\x00"]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_prefix_lookups_give_the_formula(
    deepicd: RewardEngine, rows: list[tuple[str, str]]
) -> None:
    texts = [f"t</think><diagnosis>{code}</diagnosis>" for code, _ in rows]
    batch = deepicd._prepare(texts, [gold for _, gold in rows], None, None)
    reward = deepicd.rewards["outcome"]
    fresh = type(reward)(reward.params, reward.context)
    expected = fresh._prefix(batch).view(torch.int32)
    for _ in range(2):  # the formula, then the lookups
        assert torch.equal(fresh.score(batch).view(torch.int32), expected)


_GOLDS = st.lists(st.sampled_from(["M5116", "M511", "E119", "C4A9", "I10", "\x00"]), max_size=3)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                ["M5116", "M5117", "M51", "E11.9", "C4A.9", "I10", "junk", "",
                 "type 2 diabetes mellitus without complications"]
            ),
            _GOLDS,
        ),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from(
        [
            {},
            {"secondary": 0.5, "free_text": 0.8},
            {"secondary": -1.0, "free_text": -2.0, "credit": {"chapter": -0.5}, "mismatch": 0.25},
        ]
    ),
)  # fmt: skip
def test_levels_lookups_give_the_formula(
    default_engine: RewardEngine, rows: list[tuple[str, list[str]]], params: dict[str, object]
) -> None:
    texts = [f"t</think><diagnosis>{code}</diagnosis>" for code, _ in rows]
    golds = [gold for _, gold in rows]
    reward = default_engine.rewards["hierarchy"]
    fresh = type(reward)(attrs.evolve(reward.params, **params), reward.context)
    for width in (3, 1, 3):  # batches of other widths share the memo
        batch = default_engine._prepare(texts, [gold[:width] for gold in golds], None, None)
        expected = fresh._levels(batch).view(torch.int32)
        for _ in range(2):  # the formula (when new), then the lookups
            assert torch.equal(fresh.score(batch).view(torch.int32), expected)


def test_levels_lookups_tell_free_text_and_gold_width_apart(default_engine: RewardEngine) -> None:
    # A free-text code and a written one, and a batch with a second gold slot: the lookups
    # must not mix them up (with these odd weights the values differ).
    reward = default_engine.rewards["hierarchy"]
    params = attrs.evolve(reward.params, credit={"full": -1.0}, secondary=0.5, free_text=-2.0)
    fresh = type(reward)(params, reward.context)
    free_text = "t</think><diagnosis>type 2 diabetes mellitus without complications</diagnosis>"
    written = "t</think><diagnosis>E11.9</diagnosis>"
    batches = [
        ([free_text, written], ["E119", "E119"]),
        ([free_text, written], ["E119", ["E119", "I10"]]),
    ]
    seen = []
    for texts, golds in batches * 2:
        batch = default_engine._prepare(texts, golds, None, None)
        assert batch.parsed.flag(Feature.FROM_FREE_TEXT).tolist() == [True, False]
        expected = fresh._levels(batch)
        got = fresh.score(batch)
        assert torch.equal(got.view(torch.int32), expected.view(torch.int32))
        seen.append(got.tolist())
    assert seen[0] != seen[1]  # the case is a real one
