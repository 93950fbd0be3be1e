"""The hot string scans (the parser's fast rows, the trace counts): C against Python.

The extension is part of the project's own build (setup.py), so it must be present
here; a machine without a C compiler installs without it and uses the Python counts.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from icdreward.codeset import CodeSet
from icdreward.components import ComponentContext
from icdreward_plugins import _scan, format_parser
from icdreward_plugins._scan import native_trace_counts, native_well_formed_rows, trace_counts
from icdreward_plugins.format_parser import _ENDING_CHARS, TagParser, TagParserParams

native = native_trace_counts


def test_the_extension_is_built_and_loaded() -> None:
    assert _scan.NATIVE
    assert native is not None and native_well_formed_rows is not None


def test_without_the_extension_the_python_statements_serve(
    monkeypatch: pytest.MonkeyPatch, parser: TagParser
) -> None:
    # What an install on a machine without a C compiler sees (setup.py marks the
    # extension optional): the module still imports and reports the missing extension,
    # and the parser builds every row in Python.
    monkeypatch.setitem(sys.modules, "icdreward_plugins._scan_native", None)
    fresh = importlib.reload(_scan)
    try:
        assert not fresh.NATIVE
        assert fresh.native_trace_counts is None and fresh.native_well_formed_rows is None
    finally:
        monkeypatch.undo()
        importlib.reload(_scan)
    assert _scan.NATIVE
    texts: list[object] = ["a</think><diagnosis>I10</diagnosis>", None, "<think>"]
    with monkeypatch.context() as patch:
        patch.setattr(format_parser, "native_well_formed_rows", None)
        rows = parser._parse_well_formed(texts)
    assert rows == parser._parse_well_formed(texts)
    assert (
        rows[0] is not None and rows[0][2:5] == ("I10", "I10", "I10") and rows[1:] == [None, None]
    )


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


@settings(max_examples=600, deadline=None)
@given(st.lists(_VALUE, max_size=8))
def test_native_rows_equal_the_python_rows(parser: TagParser, values: list[object]) -> None:
    assert native_well_formed_rows is not None
    python = [parser._well_formed_row(v) if type(v) is str else None for v in values]
    for _ in range(2):  # endings new to the memo, then memoized
        rows, misses = native_well_formed_rows(values, parser._endings, _ENDING_CHARS)
        assert all(type(values[i]) is str and rows[i] is None for i in misses)
        for i in misses:
            rows[i] = parser._well_formed_row(values[i])  # type: ignore[arg-type]
        assert rows == python
        assert parser._parse_well_formed(values) == python


def test_memoized_rows_come_from_c(parser: TagParser) -> None:
    texts = [
        " a trace\n</think><diagnosis>E11.9</diagnosis>",
        "b</think><diagnosis>I10</diagnosis>",
    ]
    assert native_well_formed_rows is not None
    parser._parse_well_formed(texts)  # memoizes both endings
    rows, misses = native_well_formed_rows(texts, parser._endings, _ENDING_CHARS)
    assert misses == []
    assert rows == [parser._well_formed_row(t) for t in texts]
    assert rows[0][:5] == (1, 8, "E11.9", "E119", "E119")
    # an ending longer than the memo keeps is left to Python
    long = "c</think><diagnosis>" + "I10 " * 40 + "</diagnosis>"
    assert native_well_formed_rows([long], parser._endings, _ENDING_CHARS)[1] == [0]


def test_rows_of_long_texts(parser: TagParser) -> None:
    values = ["\u3000" * 50_000 + "x" + " " * 50_000 + "</think><diagnosis>I10</diagnosis>",
              "x" * 100_000, "😀 " * 1000 + "</think><diagnosis>I10</diagnosis>"]  # fmt: skip
    assert native_well_formed_rows is not None
    python = [parser._well_formed_row(v) for v in values]
    rows, misses = native_well_formed_rows(values, parser._endings, _ENDING_CHARS)
    assert misses == [] and rows == python


def test_bad_rows_arguments() -> None:
    assert native_well_formed_rows is not None
    with pytest.raises(TypeError, match="iterable"):
        native_well_formed_rows(3, {}, 10)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dict"):
        native_well_formed_rows([], [], 10)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="6-tuples"):
        native_well_formed_rows(["a<b"], {"<b": ("x",)}, 10)
    with pytest.raises(TypeError, match="3 arguments"):
        native_well_formed_rows([], {})  # type: ignore[call-arg]
    # offsets past the ending would not fit the row's int32 spans
    for d0, d1 in ((2**31, 1), (2**63 - 1, 2**63 - 1), (0, 5), (-1, 1)):
        with pytest.raises(ValueError, match="offsets"):
            native_well_formed_rows(["ab<e"], {"<e": ("d", "c", "c", b"h", d0, d1)}, 10)


_COLLECTOR_LOOKS_AT_THE_ROWS = """
import gc
from icdreward_plugins._scan_native import well_formed_rows
texts = ["ab<e"] * 5000
seen = []
class Looks:
    def __del__(self):
        for o in gc.get_objects():
            if type(o) is list and len(o) == len(texts) and o is not texts:
                seen.append(repr(o[-1]))
gc.set_threshold(1)
for _ in range(3):
    cycle = Looks(); cycle.self = cycle; del cycle
    rows, misses = well_formed_rows(texts, {"<e": ("d", "c", "c", b"h", 0, 2)}, 128)
gc.set_threshold(700)
assert misses == [] and rows[-1][2] == "d"
print("ok")
"""


def test_rows_list_is_hidden_from_the_collector_while_filled() -> None:
    # A __del__ run by a collection inside the call may walk gc.get_objects(): the list
    # being filled must not be among them. In a child process: the failure is a crash.
    out = subprocess.run(
        [sys.executable, "-c", _COLLECTOR_LOOKS_AT_THE_ROWS], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# ASCII only (the extension declines anything else): letters of both cases, the
# separators the counts look at, every ASCII character str.strip() removes, and
# characters that sort next to the letters.
_ASCII = "aAbBhHpPzZ@[`{ .\n\t\r\x0b\x0c\x1c\x1d\x1e\x1f\x00\x7f"
_CHUNK = st.one_of(
    st.text(alphabet=st.sampled_from(_ASCII), max_size=40),
    st.sampled_from(
        ["The patient has lumbar pain", "the PATIENT has lumbar pain",
         " The patient has lumbar pain ", "Pneumonia. ", "...", "M51.16", "hyperglycaemia",
         "  \n", "x" * 12, "abab"]
    ),
)  # fmt: skip
_TRACE = st.one_of(
    st.lists(_CHUNK, max_size=30).map("".join),
    st.tuples(_CHUNK, st.integers(1, 40)).map(lambda t: t[0] * t[1]),  # loops to the end
)
_TERM = st.one_of(
    st.text(alphabet=st.sampled_from("abhpz .@[`{\n\x00"), max_size=7),
    st.sampled_from(["lumbar", "patien", "pneumo", "hyperg", "abab", "p", "P", "Lumbar", "é", ""]),
)
_TERMS = st.lists(_TERM, max_size=12).map(tuple)


def _both(trace: str, notes: tuple[str, ...], codes: tuple[str, ...], sentence: int, tail: int):
    assert native is not None
    return native(trace, notes, codes, sentence, tail), trace_counts(
        trace, notes, codes, sentence, tail
    )


@settings(max_examples=1500, deadline=None)
@given(_TRACE, _TERMS, _TERMS, st.integers(0, 15), st.integers(1, 45))
def test_native_counts_equal_the_python_counts(
    trace: str, notes: tuple[str, ...], codes: tuple[str, ...], sentence: int, tail: int
) -> None:
    got, expected = _both(trace, notes, codes, sentence, tail)
    assert got == expected


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("abcdefgh"), min_size=2, max_size=4), st.data())
def test_a_term_is_found_anywhere(term: str, data: st.DataObject) -> None:
    # at the very start, at the very end, split over a case change
    filler = data.draw(st.text(alphabet=st.sampled_from("xyz. "), max_size=20))
    for trace in (term + filler, filler + term, filler + term.upper() + filler, filler):
        got, expected = _both(trace, (term,), (term.upper(), term[:1]), 12, 40)
        assert got == expected


def test_a_term_running_past_the_end_is_not_found() -> None:
    # Python strings end in a NUL byte in memory: it must not complete a term.
    for term in ("abc\x00", "bc\x00", "abcd"):
        got, expected = _both("the end: abc", (term,), (), 12, 40)
        assert got == expected and got is not None and got[4] == 0


def test_terms_from_iterators_are_held_while_scanned() -> None:
    # Fresh strings that only the call's own copy holds, and a second group whose
    # generator empties the list of the first: the first group was taken before.
    trace = "the patient has lumbar pain"
    notes = ["".join(["lu", "mb"]), "".join(["pa", "ti"])]

    def codes() -> Iterator[str]:
        notes.clear()
        _ = ["".join(["zz", "zz"]) for _ in range(10_000)]  # reuse the freed memory
        yield "pain"

    def fresh() -> Iterator[str]:
        yield from ("".join([w[:2], w[2:]]) for w in ("lumb", "pati"))

    assert native is not None
    assert native(trace, notes, codes(), 12, 40) == (4, 1, 1, 1, 2, 1)
    assert native(trace, fresh(), fresh(), 12, 40) == trace_counts(
        trace, ["lumb", "pati"], ["lumb", "pati"], 12, 40
    )


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("abAB ."), min_size=17, max_size=40), st.data())
def test_long_terms_are_found_case_folded(term: str, data: st.DataObject) -> None:
    filler = data.draw(st.text(alphabet=st.sampled_from("abAB. x"), max_size=60))
    lowered = term.lower()
    for trace in (filler + term + filler, filler, term.upper(), filler + lowered[:-1]):
        got, expected = _both(trace, (lowered, lowered[1:]), (lowered + "a",), 12, 40)
        assert got == expected


def test_counts_of_a_long_repeated_term_stay_linear() -> None:
    # A term almost matching at every position: compared one position at a time, this
    # is quadratic; it must instead cost about one pass (not timed here: the call
    # returns, with the answer Python gives).
    trace = "a" * 200_000
    term = "a" * 100_000 + "b"
    got, expected = _both(trace, (term,), (term[1:],), 12, 40)
    assert got == expected and got is not None and got[4:] == (0, 0)


def test_integer_arguments_beyond_the_machine_word_clamp() -> None:
    for sentence, tail in ((2**63, 2**63), (-(2**70), 2**80), (0, 1)):
        got, expected = _both("abc. abc. abcdef", (), (), sentence, tail)
        assert got == expected


def test_more_than_64_terms_are_all_looked_for() -> None:
    words = [f"w{i:03d}" for i in range(150)]
    trace = " ".join(words[::3]).upper() + " padding"
    notes, codes = tuple(words[:100]), (*words[100:], "padding", "absent")
    got, expected = _both(trace, notes, codes, 12, 40)
    assert got == expected
    assert got is not None and got[4:] == (34, 17)


@pytest.mark.parametrize(
    "trace",
    [
        "",
        ".",
        "." * 100_000,
        "no dot at all " * 10_000,
        # many distinct sentences: the table outgrows its stack slots many times over
        "".join(f"Sentence number {i} of the trace. " for i in range(20_000)),
        # the same sentence many times, and a loop running to the end
        "The same sentence again. " * 20_000,
        "\x1c\x1d\x1e\x1f" * 3 + "." + " \t" * 8 + "." + "x" * 11,
    ],
    ids=["empty", "dot", "dots", "no-dots", "distinct", "repeated", "whitespace"],
)
def test_edge_traces(trace: str) -> None:
    got, expected = _both(trace, ("same", "sentence", "ber 1", "x"), ("trace", "."), 12, 40)
    assert got == expected


@pytest.mark.parametrize("trace", ["café. café. au lait", "ΣΙΓΜΑ and a trace", "\x85 next line"])
def test_other_traces_are_left_to_python(trace: str) -> None:
    assert native is not None
    assert native(trace, ("caf",), (), 12, 40) is None
    assert trace_counts(trace, ("caf",), (), 12, 40)[4] == ("caf" in trace.lower())


def test_bad_arguments_are_type_errors() -> None:
    assert native is not None
    with pytest.raises(TypeError, match="trace must be str"):
        native(b"bytes", (), (), 12, 40)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="terms must be str"):
        native("a trace", ("ok", 3), (), 12, 40)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="iterable"):
        native("a trace", 3, (), 12, 40)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="5 arguments"):
        native("a trace", (), ())  # type: ignore[call-arg]
    for counts in (native, trace_counts):
        with pytest.raises(ValueError, match="tail_chars"):
            counts("a trace", (), (), 12, 0)
