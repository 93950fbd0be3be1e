"""The hot string scans (the parser's fast rows, the trace counts) against plain statements.

The fast rows must be exactly what the parser's general path gives for the same text,
and the trace counts exactly what a straightforward character-by-character statement of
their definition gives.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from icdreward.codeset import CodeSet
from icdreward.components import ComponentContext
from icdreward_plugins._scan import trace_counts
from icdreward_plugins.format_parser import TagParser, TagParserParams


class Text(str):
    """A str subclass: the parser's fast path takes exact str only."""


# Whitespace of every kind str.strip() knows (ASCII, Latin-1, BMP) and characters of
# the three string widths, around and inside the tags of a well-formed completion.
_SPAN_CHARS = " \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u1680\u2028\u3000ab<>/é€😀"
_ENDINGS = st.sampled_from(
    ["</think><diagnosis>E11.9</diagnosis>", "</think>\n<diagnosis> M51.16 </diagnosis>\n",
     "</think>\u2028<diagnosis>junk</diagnosis>", "</think><diagnosis></diagnosis>",
     "</think> x <diagnosis>I10</diagnosis>", "<think>",
     "</think><diagnosis>" + "I10 " * 40 + "</diagnosis>"]
)  # fmt: skip
_COMPLETION = st.tuples(st.text(alphabet=st.sampled_from(_SPAN_CHARS), max_size=30), _ENDINGS)
_VALUE = st.one_of(
    _COMPLETION.map("".join),
    st.text(alphabet=st.sampled_from(_SPAN_CHARS), max_size=30),
    _COMPLETION.map("".join).map(Text),
    st.sampled_from([None, b" a</think><diagnosis>I10</diagnosis>", 3, {"content": "x"}]),
)


@pytest.fixture(scope="module")
def parser(codeset: CodeSet) -> TagParser:
    return TagParser(TagParserParams(), ComponentContext(codeset=codeset))


def _general_rows(parser: TagParser, values: Sequence[object]) -> list[object]:
    """The general path's row for each exact str (None for anything else)."""
    return [parser._parse_any(v, False) if type(v) is str else None for v in values]


@settings(max_examples=600, deadline=None)
@given(st.lists(_VALUE, max_size=8))
def test_fast_rows_are_the_general_rows(parser: TagParser, values: list[object]) -> None:
    general = _general_rows(parser, values)
    for _ in range(2):  # endings new to the memo, then memoized
        rows = parser._parse_well_formed(values)
        assert len(rows) == len(values)
        for value, row, expected in zip(values, rows, general, strict=True):
            if type(value) is not str:
                assert row is None
            elif row is not None:
                assert row == expected


def test_memoized_rows_equal_fresh_rows(parser: TagParser) -> None:
    texts = [
        " a trace\n</think><diagnosis>E11.9</diagnosis>",
        "b</think><diagnosis>I10</diagnosis>",
    ]
    first = parser._parse_well_formed(texts)  # memoizes both endings
    rows = parser._parse_well_formed(texts)
    assert rows == first == _general_rows(parser, texts)
    assert rows[0] is not None and rows[0][:5] == (1, 8, "E11.9", "E119", "E119")
    # an ending longer than the memo keeps is still read, the same way
    long = "c</think><diagnosis>" + "I10 " * 40 + "</diagnosis>"
    assert parser._parse_well_formed([long]) == _general_rows(parser, [long])


def test_rows_of_long_texts(parser: TagParser) -> None:
    values = ["\u3000" * 50_000 + "x" + " " * 50_000 + "</think><diagnosis>I10</diagnosis>",
              "x" * 100_000, "😀 " * 1000 + "</think><diagnosis>I10</diagnosis>"]  # fmt: skip
    rows = parser._parse_well_formed(values)
    assert rows[1] is None  # no tag at all: left to the general path
    assert [rows[0], rows[2]] == [_general_rows(parser, values)[i] for i in (0, 2)]


def test_rows_of_other_values(parser: TagParser) -> None:
    values: list[object] = ["a</think><diagnosis>I10</diagnosis>", None, "<think>", Text("b<")]
    rows = parser._parse_well_formed(values)
    assert rows[0] is not None and rows[0][2:5] == ("I10", "I10", "I10")
    assert rows[1:] == [None, None, None]


# -- the trace counts -------------------------------------------------------------------


def reference_counts(
    trace: str, notes: Sequence[str], codes: Sequence[str], sentence: int, tail: int
) -> tuple[int, int, int, int, int, int]:
    """The definition of :func:`trace_counts`, one character at a time."""
    blanks = sum(1 for c in trace if c in " \n")
    parts, current = [], []
    for c in trace:
        if c == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
    parts.append("".join(current))
    sentences = [p for p in parts if len(p) >= sentence]
    distinct = len({p.strip() for p in sentences})
    needle = trace[len(trace) - tail :] if tail < len(trace) else trace
    repeats, i = 0, 0
    if not needle:
        repeats = len(trace) + 1  # what str.count gives for an empty needle
    else:
        while i + len(needle) <= len(trace):
            if trace[i : i + len(needle)] == needle:
                repeats += 1
                i += len(needle)
            else:
                i += 1
    lower = trace.lower()

    def found(term: str) -> bool:
        return any(lower[j : j + len(term)] == term for j in range(len(lower) - len(term) + 1))

    return (
        blanks,
        len(sentences),
        distinct,
        repeats,
        sum(found(t) for t in notes),
        sum(found(t) for t in codes),
    )


_ASCII = "aAbBhHpPzZ@[`{ .\n\t\r\x0b\x0c\x1c\x1d\x1e\x1f\x00\x7f"
_CHUNK = st.one_of(
    st.text(alphabet=st.sampled_from(_ASCII + "éΣςİß\u2028\xa0"), max_size=40),
    st.sampled_from(
        ["The patient has lumbar pain", "the PATIENT has lumbar pain",
         " The patient has lumbar pain ", "Pneumonia. ", "...", "M51.16", "hyperglycaemia",
         "  \n", "x" * 12, "abab", "café. au lait"]
    ),
)  # fmt: skip
_TRACE = st.one_of(
    st.lists(_CHUNK, max_size=30).map("".join),
    st.tuples(_CHUNK, st.integers(1, 40)).map(lambda t: t[0] * t[1]),  # loops to the end
)
_TERM = st.one_of(
    st.text(alphabet=st.sampled_from("abhpz .@[`{\n\x00é"), max_size=7),
    st.sampled_from(
        ["lumbar", "patien", "pneumo", "hyperg", "abab", "p", "P", "Lumbar", "caf", ""]
    ),
)
_TERMS = st.lists(_TERM, max_size=12).map(tuple)


@settings(max_examples=1000, deadline=None)
@given(_TRACE, _TERMS, _TERMS, st.integers(0, 15), st.integers(1, 45))
def test_counts_are_the_definition(
    trace: str, notes: tuple[str, ...], codes: tuple[str, ...], sentence: int, tail: int
) -> None:
    expected = reference_counts(trace, notes, codes, sentence, tail)
    assert trace_counts(trace, notes, codes, sentence, tail) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("abcdefgh"), min_size=2, max_size=4), st.data())
def test_a_term_is_found_anywhere(term: str, data: st.DataObject) -> None:
    # at the very start, at the very end, split over a case change
    filler = data.draw(st.text(alphabet=st.sampled_from("xyz. "), max_size=20))
    for trace in (term + filler, filler + term, filler + term.upper() + filler, filler):
        got = trace_counts(trace, (term,), (term.upper(), term[:1]), 12, 40)
        assert got == reference_counts(trace, (term,), (term.upper(), term[:1]), 12, 40)
        assert got[4] == (term in trace.lower())


def test_more_than_64_terms_are_all_looked_for() -> None:
    words = [f"w{i:03d}" for i in range(150)]
    trace = " ".join(words[::3]).upper() + " padding"
    notes, codes = tuple(words[:100]), (*words[100:], "padding", "absent")
    assert trace_counts(trace, notes, codes, 12, 40)[4:] == (34, 17)


@pytest.mark.parametrize(
    "trace",
    [
        "",
        ".",
        "." * 2_000,
        "no dot at all " * 200,
        "".join(f"Sentence number {i} of the trace. " for i in range(300)),
        "The same sentence again. " * 200,
        "\x1c\x1d\x1e\x1f" * 3 + "." + " \t" * 8 + "." + "x" * 11,
    ],
    ids=["empty", "dot", "dots", "no-dots", "distinct", "repeated", "whitespace"],
)
def test_edge_traces(trace: str) -> None:
    terms = ("same", "sentence", "ber 1", "x"), ("trace", ".")
    assert trace_counts(trace, *terms, 12, 40) == reference_counts(trace, *terms, 12, 40)


def test_non_ascii_traces_are_folded_like_str_lower() -> None:
    for trace in ("café. café. au lait", "ΣΙΓΜΑ and a trace", "\x85 next line"):
        assert trace_counts(trace, ("caf", "σιγμα"), (), 12, 40)[4] == ("caf" in trace.lower()) + (
            "σιγμα" in trace.lower()
        )


def test_a_tail_below_one_is_an_error() -> None:
    with pytest.raises(ValueError, match="tail_chars"):
        trace_counts("a trace", (), (), 12, 0)
