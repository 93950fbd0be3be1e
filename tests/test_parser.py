"""The tag parser: structure, code extraction, odd inputs, and fast path == general path."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from icdreward import Feature, ParsedBatch
from icdreward.codeset import CodeSet
from icdreward.components import ComponentContext
from icdreward_plugins.format_parser import TagParser, TagParserParams, coerce_text


def make(codeset: CodeSet, **params: object) -> TagParser:
    return TagParser(TagParserParams(**params), ComponentContext(codeset=codeset))  # type: ignore[arg-type]


def one(parser: TagParser, text: object) -> tuple[ParsedBatch, dict[str, int]]:
    parsed = parser.parse([text])
    row = {f.name: int(parsed.features[0, f]) for f in Feature}
    return parsed, row


@pytest.fixture(scope="module")
def lenient(codeset: CodeSet) -> TagParser:
    return make(codeset)


def test_well_formed_prefilled(lenient: TagParser) -> None:
    text = "Reasoning here.</think>\n<diagnosis>M51.16</diagnosis>\n"
    parsed, f = one(lenient, text)
    assert parsed.think == ("Reasoning here.",)
    assert parsed.diagnosis == ("M51.16",)
    assert parsed.codes == ("M5116",)
    assert f["WELL_FORMED"] == f["CODE_VALID"] == f["CODE_KNOWN"] == 1
    assert f["THINK_START"] == 0 and f["THINK_END"] == text.index("</think>")
    assert text[f["DIAGNOSIS_START"] : f["DIAGNOSIS_END"]] == "<diagnosis>M51.16"
    assert f["THINK_CHARS"] == len("Reasoning here.")


def test_model_repeating_the_think_tag(lenient: TagParser) -> None:
    parsed, f = one(lenient, "<think>trace</think><diagnosis>E119</diagnosis>")
    assert parsed.think == ("trace",)
    assert f["WELL_FORMED"] == 1


def test_not_prefilled_without_think(codeset: CodeSet) -> None:
    parser = make(codeset, prefilled_think=False)
    parsed, f = one(parser, "<diagnosis>E119</diagnosis>")
    assert f["HAS_THINK"] == 0 and f["WELL_FORMED"] == 0
    assert parsed.codes == ("E119",)


def test_unclosed_think_still_finds_the_diagnosis(lenient: TagParser) -> None:
    parsed, f = one(lenient, "thinking... <diagnosis>E119</diagnosis>")
    assert f["THINK_CLOSED"] == 0 and f["WELL_FORMED"] == 0
    assert parsed.think == ("thinking...",)
    assert parsed.codes == ("E119",)


def test_unclosed_diagnosis_reads_to_the_end_of_line(lenient: TagParser) -> None:
    parsed, f = one(lenient, "t</think><diagnosis>E11.9\nsome more text")
    assert f["DIAGNOSIS_CLOSED"] == 0
    assert parsed.codes == ("E119",)


def test_extra_blocks_and_outside_text(lenient: TagParser) -> None:
    text = "t</think>junk<diagnosis>E119</diagnosis><think>b</think><diagnosis>X</diagnosis>"
    _, f = one(lenient, text)
    assert f["EXTRA_BLOCKS"] == 1
    assert f["OUTSIDE_CHARS"] == len("junk") + len("<think>b</think><diagnosis>X</diagnosis>")
    assert f["WELL_FORMED"] == 0


def test_strict_mode_rejects_anything_but_the_exact_format(codeset: CodeSet) -> None:
    strict = make(codeset, mode="strict")
    ok, f_ok = one(strict, "t</think><diagnosis>E119</diagnosis>")
    bad, f_bad = one(strict, "t</think>note<diagnosis>E119</diagnosis>")
    assert ok.codes == ("E119",) and f_ok["WELL_FORMED"] == 1
    assert bad.codes == ("",) and f_bad["CODE_FOUND"] == 0


def test_nested_tags_take_the_first_code_token(lenient: TagParser) -> None:
    parsed, _ = one(lenient, "t</think><diagnosis><diagnosis>I10</diagnosis></diagnosis>")
    assert parsed.codes == ("I10",)


def test_invalid_code_is_flagged_not_raised(lenient: TagParser) -> None:
    parsed, f = one(lenient, "t</think><diagnosis>Q99.99.99</diagnosis>")
    assert parsed.codes == ("",)
    assert f["CODE_FOUND"] == 1 and f["CODE_VALID"] == 0
    assert parsed.invalid_code.tolist() == [True]
    assert parsed.parse_failure.tolist() == [False]


def test_pattern_validation_accepts_unlisted_well_shaped_codes(codeset: CodeSet) -> None:
    parser = make(codeset, validate="pattern", case_fold=False, find_code_in_text=False)
    parsed, f = one(parser, "t</think><diagnosis>M51.99</diagnosis>")
    assert parsed.codes == ("M5199",)
    assert f["CODE_VALID"] == 1 and f["CODE_KNOWN"] == 0


def test_free_text_is_mapped_when_enabled(codeset: CodeSet) -> None:
    on = make(codeset, free_text=True)
    off = make(codeset, free_text=False)
    text = "t</think><diagnosis>Essential (primary) hypertension</diagnosis>"
    parsed_on, f_on = one(on, text)
    parsed_off, _ = one(off, text)
    assert parsed_on.codes == ("I10",) and f_on["FROM_FREE_TEXT"] == 1
    assert parsed_off.codes == ("",)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text", "text"),
        (b"bytes \xff", "bytes \ufffd"),
        ({"role": "assistant", "content": "c"}, "c"),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "a"),
        (None, None),
        (42, None),
        (3.5, None),
        ({"no": "content"}, None),
        ([1, 2], None),
    ],
)
def test_coerce_text(value: object, expected: str | None) -> None:
    assert coerce_text(value) == expected


@pytest.mark.parametrize("value", [None, 42, 3.5, {"a": 1}, [1, 2], object(), b"\xff\xfe"])
def test_non_text_completions_are_empty_not_errors(lenient: TagParser, value: object) -> None:
    parsed, f = one(lenient, value)
    assert parsed.codes == ("",)
    if not isinstance(value, bytes):
        assert f["BAD_TYPE"] == 1 and f["EMPTY"] == 1


def test_adversarial_inputs_parse(lenient: TagParser) -> None:
    inputs = [
        "\n" * 100_000,
        "<think>" * 5_000 + "<diagnosis>" * 5_000,
        "</think><diagnosis>" * 10_000,
        "x" * 10_000_000,
        "é漢字🙂" * 1000 + "</think><diagnosis>I10</diagnosis>",
        "<think>a</think>" + "\n" * 4000 + "<diagnosis>I10",
    ]
    parsed = lenient.parse(inputs)
    assert parsed.features.shape == (len(inputs), len(Feature))
    assert parsed.codes[4] == "I10"
    assert parsed.codes[5] == "I10"


# -- the fast path must agree with the general path on everything -------------------

_PIECES = st.sampled_from(
    ["<think>", "</think>", "<diagnosis>", "</diagnosis>", " ", "\n", "M51.16", "E119", "x",
     "<", "junk", "I10 text", "<diag", ""]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=12).map("".join))
def test_fast_path_equals_general_path(codeset: CodeSet, text: str) -> None:
    parser = make(codeset)
    fast = parser._parse_well_formed([text])[0]
    if fast is not None:
        assert fast == parser._parse_any(text, False)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_PIECES, st.text(max_size=8)), max_size=16).map("".join))
def test_any_text_parses_with_consistent_flags(codeset: CodeSet, text: str) -> None:
    parsed = make(codeset).parse([text])
    f = parsed.features[0]
    assert bool(f[Feature.CODE_VALID]) == bool(parsed.codes[0])
    assert not (f[Feature.WELL_FORMED] and f[Feature.EXTRA_BLOCKS])
    assert int(f[Feature.LENGTH]) == len(text)
    assert torch.all(f[[Feature.EXTRA_BLOCKS, Feature.OUTSIDE_CHARS]] >= 0)


def test_fast_path_memo_gives_what_the_general_path_gives(codeset: CodeSet) -> None:
    # The fast path memoizes each diagnosis block's content: a blank block, one padded
    # with spaces, and the same code in two layouts must read the same on the second
    # batch (memo hits) as on the first and as the general path.
    parser = make(codeset)
    texts = [
        "Disc disorder.</think>\n<diagnosis> M51.16 </diagnosis>",
        "Disc disorder.</think><diagnosis>M51.16</diagnosis>\n",
        "  Padded trace.  </think>\n<diagnosis>   </diagnosis>",
        "Sepsis.</think> <diagnosis>not a code</diagnosis>",
    ]
    first = [parser._parse_well_formed([t])[0] for t in texts]
    again = [parser._parse_well_formed([t])[0] for t in texts]
    assert first == again
    assert first[2] is None  # a blank block is left to the general path
    for text, row in zip(texts, first, strict=True):
        if row is not None:
            assert row == parser._parse_any(text, False)
    assert first[0] is not None and first[0][2:5] == ("M51.16", "M5116", "M5116")


@pytest.mark.parametrize("settings", [{}, {"case_fold": False, "validate": "pattern"}])
def test_codes_of_the_year_read_from_the_table_as_the_general_path_reads_them(
    codeset: CodeSet, settings: dict[str, object]
) -> None:
    # Every code of the year, dotted or not, is read once into a table shared by
    # parsers of the same settings; a row read through it is the general path's row.
    parser = make(codeset, **settings)
    codes = sorted(codeset.codes())[::40]
    written = [w for c in codes for w in (c, f"{c[:3]}.{c[3:]}", c.lower())]
    texts = [f"Reasoning about {w}.</think>\n<diagnosis>{w}</diagnosis>" for w in written]
    rows = parser._parse_well_formed(texts)
    assert codes[7] in parser._written
    assert make(codeset, **settings)._written_codes() is parser._written  # built once
    for text, row in zip(texts, rows, strict=True):
        assert row == parser._parse_any(text, False)
