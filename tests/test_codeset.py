"""Tests of the shipped ICD-10-CM code set (``icdreward.codeset``)."""

from __future__ import annotations

import gzip
import importlib.util
import pickle
import subprocess
import sys
from array import array
from importlib import resources
from pathlib import Path

import attrs
import pytest
import torch

from icdreward.codeset import (
    CODE_WIDTH,
    DEFAULT_YEAR,
    LEVELS,
    CodeInfo,
    CodeSet,
    available_years,
    load_codeset,
)

REPO = Path(__file__).resolve().parent.parent
DATA = resources.files("icdreward.codeset").joinpath("data")

#: Categories whose name holds a letter after the first character: string comparison or
#: range arithmetic puts them in the wrong block. Expected blocks and chapters as in the
#: CDC tabular list (e.g. Merkel cell carcinoma C4A in "Melanoma and other malignant
#: neoplasms of skin (C43-C44)", chronic gout M1A in "Inflammatory polyarthropathies").
LETTER_CATEGORIES = {
    "C4A": ("C43-C44", "2"),
    "C7A": ("C7A", "2"),
    "C7B": ("C7B", "2"),
    "D3A": ("D3A", "2"),
    "I1A": ("I10-I1A", "9"),
    "I5A": ("I30-I5A", "9"),
    "J4A": ("J40-J4A", "10"),
    "M1A": ("M05-M14", "13"),
    "O9A": ("O94-O9A", "15"),
    "QA0": ("QA0", "17"),
    "Z3A": ("Z30-Z39", "21"),
}


@pytest.fixture(scope="module")
def cs() -> CodeSet:
    return load_codeset()


def _raw_rows() -> list[list[str]]:
    """The shipped table as plain rows, read independently of the loader."""
    text = gzip.decompress(DATA.joinpath(f"icd10cm-{DEFAULT_YEAR}.tsv.gz").read_bytes())
    lines = text.decode("utf-8").splitlines()
    assert lines[0] == "code\tkind\tparent\tbillable\tdescription"
    return [line.split("\t") for line in lines[1:]]


# -- constants and loading --------------------------------------------------------------


def test_constants() -> None:
    assert DEFAULT_YEAR == 2026
    assert CODE_WIDTH == 7
    assert LEVELS == ("chapter", "block", "category", "sub4", "sub5", "sub6", "full")


def test_load_is_cached_per_year(cs: CodeSet) -> None:
    assert cs.year == 2026
    assert load_codeset() is cs
    assert load_codeset(2026) is cs
    assert load_codeset(year=2026) is cs
    assert 2026 in available_years()


def test_pickles_as_its_year(cs: CodeSet) -> None:
    data = pickle.dumps(cs)
    assert len(data) < 200
    assert pickle.loads(data) is cs


@pytest.mark.parametrize("year", [1999, 2019, "2026", None, 2026.0, True])
def test_unknown_year_lists_available(year: object) -> None:
    with pytest.raises(ValueError, match=r"available years: .*2026"):
        load_codeset(year)  # type: ignore[arg-type]


# -- normalize ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  m51.16 ", "M5116"),
        ("M51 .16", "M5116"),
        ("M51.16", "M5116"),
        ("M5116", "M5116"),
        ("e11.9\n", "E119"),
        ("s72.001a", "S72001A"),
        ("\tz3a", "Z3A"),
        ("", ""),
        ("   ", ""),
        ("...", ""),
        (None, ""),
        (b"M5116", ""),
        (5116, ""),
        (51.16, ""),
        (["M5116"], ""),
    ],
)
def test_normalize(raw: object, expected: str) -> None:
    assert CodeSet.normalize(raw) == expected


def test_normalize_is_a_staticmethod(cs: CodeSet) -> None:
    assert cs.normalize("m51.16") == CodeSet.normalize("m51.16") == "M5116"


# -- counts -------------------------------------------------------------------------------


def test_counts(cs: CodeSet) -> None:
    codes = list(cs.codes())
    assert len(list(cs.chapters())) == 22
    assert len(list(cs.blocks())) == 297
    assert sum(len(code) == 3 for code in codes) == 1918
    assert sum(cs.is_billable(code) for code in codes) == 74_719
    assert len(cs) == len(codes) == len(set(codes)) == 98_505 - 22 - 297


def test_raw_table_counts_and_order() -> None:
    rows = _raw_rows()
    kinds = [row[1] for row in rows]
    assert len(rows) == 98_505
    assert kinds.count("chapter") == 22
    assert kinds.count("block") == 297
    assert kinds.count("category") == 1918
    assert sum(row[3] == "1" for row in rows) == 74_719
    assert {row[3] for row in rows} == {"0", "1"}
    # Pre-order: every item comes after its parent.
    seen_codes: set[str] = set()
    seen_groups: set[str] = set()
    for code, kind, parent, _, _ in rows:
        if kind == "chapter":
            assert parent == ""
            seen_groups.add("chapter:" + code)
        elif kind == "block":
            assert "chapter:" + parent in seen_groups
            seen_groups.add("block:" + code)
        elif kind == "category":
            assert "block:" + parent in seen_groups
            seen_codes.add(code)
        else:
            assert kind == "subcategory"
            assert parent == ""  # derived on load: the nearest shorter code, listed earlier
            assert any(code[:n] in seen_codes for n in range(3, len(code)))
            seen_codes.add(code)


def test_parent_column_matches_lookup(cs: CodeSet) -> None:
    for code, kind, parent, billable, description in _raw_rows():
        if kind in ("chapter", "block"):
            # Not codes, unless a category shares the block's name (block B99 holds B99).
            assert (code in cs) == (kind == "block" and "-" not in code)
            continue
        info = cs.lookup(code)
        assert info is not None
        if kind == "subcategory":
            nearest = max((code[:n] for n in range(3, len(code)) if code[:n] in cs), key=len)
            assert info.parent == nearest
        else:
            assert info.parent == parent
        assert info.billable == (billable == "1")
        assert info.description == description
        assert info.kind == kind


# -- validity -----------------------------------------------------------------------------


def test_valid_and_billable(cs: CodeSet) -> None:
    assert cs.is_valid("M51.16")
    assert cs.is_billable("M51.16")
    assert cs.is_valid("M51")  # a category is valid ...
    assert not cs.is_billable("M51")  # ... but not billable
    assert cs.is_valid("M511")
    assert not cs.is_billable("M511")
    assert cs.is_billable("I10")  # a category without children is billable
    assert cs.is_billable("S72.001A")  # 7th character
    assert cs.is_valid("S72001")  # a subcategory ...
    assert not cs.is_billable("S72001")  # ... that needs its 7th character
    assert not cs.is_valid("M5119")
    assert not cs.is_valid("E11.9X")
    assert not cs.is_billable("nonsense")
    for bad in ("", None, b"I10", 10, "13", "M50-M54", "A00-A09", "1"):
        assert not cs.is_valid(bad)
        assert not cs.is_billable(bad)
        assert bad not in cs


def test_contains_equals_is_valid(cs: CodeSet) -> None:
    for code in ("m51.16", "M51", "M5119", "", "B99", "QA0", "13"):
        assert (code in cs) == cs.is_valid(code)


def test_validate_many(cs: CodeSet) -> None:
    codes = ["M5116", "m51.16", "M51", "M5119", "", "13", "Z3A", "z3a.1", "Z3A.7"]
    assert cs.validate_many(codes) == [cs.is_valid(code) for code in codes]
    expected = [True, True, True, False, False, False, True, True, False]
    assert cs.validate_many(codes) == expected
    assert cs.validate_many([]) == []
    mixed: list[object] = ["I10", None, 5, ["I10"], b"I10"]
    assert cs.validate_many(mixed) == [True, False, False, False, False]  # type: ignore[arg-type]
    assert cs.validate_many(tuple(codes)) == expected
    assert cs.validate_many(code for code in codes) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("category", sorted(LETTER_CATEGORIES))
def test_letter_categories(cs: CodeSet, category: str) -> None:
    block, chapter = LETTER_CATEGORIES[category]
    info = cs.lookup(category.lower())
    assert info is not None
    assert info.kind == "category"
    assert (info.block, info.chapter, info.parent) == (block, chapter, block)
    assert info.block_title == cs.block_title(block)
    assert info.chapter_title == cs.chapter_title(chapter)
    assert cs.hierarchy(category) == (chapter, block, category)


def test_letter_categories_are_all_known(cs: CodeSet) -> None:
    lettered = {code for code in cs.codes() if len(code) == 3 and not code[1:].isdigit()}
    assert lettered == set(LETTER_CATEGORIES)


def test_block_titles_name_their_range(cs: CodeSet) -> None:
    # Block titles end with their own range: "Other dorsopathies (M50-M54)".
    for block in cs.blocks():
        assert cs.block_title(block).endswith(f"({block})")


def test_block_and_category_namespaces(cs: CodeSet) -> None:
    # "B99" is both a block (holding one category) and that category.
    assert cs.block_title("B99") == "Other infectious diseases (B99)"
    assert cs.describe("B99") == "Other and unspecified infectious diseases"
    info = cs.lookup("B99")
    assert info is not None
    assert (info.kind, info.parent, info.block, info.chapter) == ("category", "B99", "B99", "1")
    assert cs.hierarchy("B99.9") == ("1", "B99", "B99", "B999")
    assert "B99" in set(cs.blocks())


def test_chapter_and_block_titles(cs: CodeSet) -> None:
    assert cs.chapter_title("13").startswith("Diseases of the musculoskeletal system")
    assert cs.chapter_title(" 13 ") == cs.chapter_title("13")
    assert cs.block_title("m50-m54") == "Other dorsopathies (M50-M54)"
    with pytest.raises(KeyError):
        cs.chapter_title("23")
    with pytest.raises(KeyError):
        cs.block_title("M51")  # a category, not a block


# -- descriptions -------------------------------------------------------------------------


def test_describe(cs: CodeSet) -> None:
    assert cs.describe("E11.9") == "Type 2 diabetes mellitus without complications"
    assert cs.describe("I10") == "Essential (primary) hypertension"
    assert cs.describe("M51") is not None
    assert cs.describe("M5119") is None
    assert cs.describe("13") is None
    assert cs.describe(None) is None


def test_descriptions_are_clean(cs: CodeSet) -> None:
    rows = _raw_rows()
    for row in rows:
        description = row[4]
        assert description
        assert description == description.strip()
        assert "\t" not in description
        assert "  " not in description
        assert "/\t" not in description
        assert not description.endswith("/")
    # The notes simple_icd_10_cm glues onto 7th-character titles are gone ...
    assert cs.describe("S52.501B") == (
        "Unspecified fracture of the lower end of right radius, "
        "initial encounter for open fracture type I or II"
    )
    assert cs.describe("H34.8112") == "Central retinal vein occlusion, right eye, stable"
    assert cs.describe("W08.XXXS") == "Fall from other furniture, sequela"
    # ... while real slashes stay.
    assert cs.describe("D57.20") == "Sickle-cell/Hb-C disease without crisis"
    descriptions = [row[4] for row in rows]
    assert sum("/" in description for description in descriptions) > 100


# -- hierarchy and lookup -----------------------------------------------------------------


def test_hierarchy(cs: CodeSet) -> None:
    assert cs.hierarchy("M51.16") == ("13", "M50-M54", "M51", "M511", "M5116")
    assert cs.hierarchy("M51") == ("13", "M50-M54", "M51")
    assert cs.hierarchy("S72.001A") == (
        "19",
        "S70-S79",
        "S72",
        "S720",
        "S7200",
        "S72001",
        "S72001A",
    )
    assert cs.hierarchy("T07.XXXA") == ("19", "T07", "T07", "T07XXXA")


def test_hierarchy_degrades(cs: CodeSet) -> None:
    # An invented older code: its category and M51.1 exist, M51.19 does not.
    assert cs.hierarchy("M51.19") == ("13", "M50-M54", "M51", "M511")
    assert cs.hierarchy("M51.19X") == ("13", "M50-M54", "M51", "M511")
    assert cs.hierarchy("XYZ") == ()
    assert cs.hierarchy("") == ()
    assert cs.hierarchy(None) == ()


def test_hierarchy_follows_parent_links(cs: CodeSet) -> None:
    # The prefix walk of hierarchy() equals the tree's parent links for every code.
    for code in cs.codes():
        info = cs.lookup(code)
        assert info is not None
        chain = [code]
        current = info
        while current.kind != "category":
            assert current.parent is not None
            chain.append(current.parent)
            parent_info = cs.lookup(current.parent)
            assert parent_info is not None
            current = parent_info
        assert current.parent == info.block
        expected = (info.chapter, info.block, *reversed(chain))
        assert cs.hierarchy(code) == expected
        assert (*info.ancestors, code) == expected


def test_lookup(cs: CodeSet) -> None:
    info = cs.lookup(" m51.16 ")
    assert info == CodeInfo(
        code="M5116",
        kind="subcategory",
        billable=True,
        description="Intervertebral disc disorders with radiculopathy, lumbar region",
        parent="M511",
        chapter="13",
        chapter_title=cs.chapter_title("13"),
        block="M50-M54",
        block_title="Other dorsopathies (M50-M54)",
        category="M51",
        ancestors=("13", "M50-M54", "M51", "M511"),
    )
    assert cs.lookup("M5119") is None
    assert cs.lookup("M50-M54") is None
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        info.code = "X"  # type: ignore[misc]


def test_codes_are_normalized(cs: CodeSet) -> None:
    for code in cs.codes():
        assert CodeSet.normalize(code) == code
        assert 3 <= len(code) <= CODE_WIDTH
        assert code.isascii()


# -- tensors ------------------------------------------------------------------------------


def test_encode(cs: CodeSet) -> None:
    codes = ["M5116", "", "S72001A", "I10", "TOOLONGCODE"]
    encoded = cs.encode(codes)
    assert encoded.dtype == torch.uint8
    assert encoded.shape == (5, CODE_WIDTH)
    decoded = [bytes(row.tolist()).rstrip(b"\0").decode("ascii") for row in encoded]
    assert decoded == ["M5116", "", "S72001A", "I10", "TOOLONG"]
    assert encoded[1].sum().item() == 0
    encoded[0, 0] = 0  # writable, and not shared with the memo
    assert cs.encode(["M5116"])[0, 0].item() == ord("M")
    assert cs.encode([]).shape == (0, CODE_WIDTH)
    odd = cs.encode(["É1", None, 5])  # type: ignore[list-item]
    assert odd[0].tolist() == [ord("?"), ord("1"), 0, 0, 0, 0, 0]
    assert odd[1:].sum().item() == 0


def test_encode_round_trips_every_code(cs: CodeSet) -> None:
    codes = list(cs.codes())
    encoded = cs.encode(codes)
    joined = bytes(encoded.flatten().tolist())
    rows = [joined[i : i + CODE_WIDTH].rstrip(b"\0").decode() for i in range(0, len(joined), 7)]
    assert rows == codes


def test_level_ids_shape_and_values(cs: CodeSet) -> None:
    ids = cs.level_ids(["M5116", "M5117", "M51", "", "M511"])
    assert ids.dtype == torch.int32
    assert ids.shape == (5, len(LEVELS))
    m5116, m5117, m51, empty, m511 = ids.tolist()
    assert empty == [-1] * 7
    assert m5116[:4] == m5117[:4]  # chapter, block, category, M51.1
    assert m5116[4] != m5117[4]
    assert m5116[5] == m5117[5] == -1  # no 6-character level
    assert m5116[6] == m5116[4] and m5117[6] == m5117[4]  # full == the 5-char node
    assert m51[:3] == m5116[:3] and m51[3:6] == [-1, -1, -1] and m51[6] == m51[2]
    assert m511[:4] == m5116[:4] and m511[4:6] == [-1, -1] and m511[6] == m511[3]
    assert min(min(row) for row in (m5116, m5117, m51, m511)) >= -1


def test_level_ids_columns_match_hierarchy(cs: CodeSet) -> None:
    # A column's id is -1 exactly when that level is missing, and one id names one node.
    codes = list(cs.codes())[::37]
    nodes: dict[tuple[int, int], str] = {}
    for code, row in zip(codes, cs.level_ids(codes).tolist(), strict=True):
        chain = cs.hierarchy(code)
        names = [chain[0], chain[1], code[:3], code[:4], code[:5], code[:6], code]
        for level, (node_id, name) in enumerate(zip(row, names, strict=True)):
            width = level + 1
            exists = level in (0, 1, 6) or (len(code) >= width and name in cs)
            assert (node_id >= 0) == exists, (code, LEVELS[level])
            if exists:
                assert nodes.setdefault((level, node_id), name) == name


def test_level_ids_of_the_whole_year_equal_the_per_code_reading(cs: CodeSet) -> None:
    # The year's rows are built per category on first use; each must be the row the
    # per-code reading (used for codes outside the year) gives.
    codes = list(cs.codes())
    rows = cs.level_ids(codes).tolist()
    fresh = CodeSet(cs._table)
    per_code = [list(array("i", fresh._level_row(code))) for code in codes]
    assert rows == per_code


def test_level_ids_degrade_for_unknown_codes(cs: CodeSet) -> None:
    known, older, garbage, other = cs.level_ids(["M5116", "M5119", "QQ1234", "M51.19XZ"]).tolist()
    # M51.19 (invented older code): category M51 and M51.1 exist, M51.19 does not.
    assert older[:4] == known[:4]
    assert older[4:] == [-1, -1, -1]
    assert garbage == [-1] * 7
    assert other[:4] == known[:4] and other[4:] == [-1, -1, -1]
    # Lower case / dotted input is normalized; memoized results stay right.
    assert cs.level_ids(["m51.16"]).tolist() == [known]
    assert cs.level_ids(["M5116", "M5116"]).tolist() == [known, known]
    assert cs.level_ids([]).shape == (0, len(LEVELS))
    assert cs.level_ids([None, 3]).tolist() == [[-1] * 7, [-1] * 7]  # type: ignore[list-item]


def test_level_ids_letter_categories(cs: CodeSet) -> None:
    ids = cs.level_ids(["M1A00X0", "M10", "C4A0", "C44"]).tolist()
    m1a, m10, c4a, c44 = ids
    assert m1a[:2] == m10[:2]  # M1A sits in block M05-M14 with M10
    assert c4a[:2] == c44[:2]  # C4A sits in block C43-C44 with C44
    assert m1a[2] != m10[2]


# -- generator ----------------------------------------------------------------------------


def test_generator_reproduces_shipped_files(tmp_path: Path) -> None:
    script = REPO / "scripts" / "generate_codeset.py"
    subprocess.run(
        [sys.executable, str(script), "--output-dir", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for name in ("icd10cm-2026.tsv.gz", "icd10cm-2026-terms.tsv.gz"):
        assert (tmp_path / name).read_bytes() == DATA.joinpath(name).read_bytes(), name


def test_generator_cleaning_helpers() -> None:
    spec = importlib.util.spec_from_file_location("gen", REPO / "scripts" / "generate_codeset.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.clean_text(" a \t b\n c ") == "a b c"
    parent = "Sickle-cell/Hb-C  disease"
    glued = parent + ", stable/Old occlusion"
    assert gen.clean_extension_title(glued, parent) == "Sickle-cell/Hb-C disease, stable"
    glued = "Fracture, initial encounter for open fracture type I or II/\tNOS"
    expected = "Fracture, initial encounter for open fracture type I or II"
    assert gen.clean_extension_title(glued, "Fracture") == expected


def test_parents_match_the_source_package(cs: CodeSet) -> None:
    """The derived parents agree with simple-icd-10-cm's own tree (every 50th code)."""
    import simple_icd_10_cm as cm

    for code in list(cs.codes())[::50]:
        info = cs.lookup(code)
        assert info is not None
        expected = cm.get_parent(cm.add_dot(code) if len(code) > 3 else code)
        assert info.parent == expected.replace(".", "")
