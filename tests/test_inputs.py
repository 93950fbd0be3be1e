"""Reading scoring input files: JSONL, CSV/TSV and parquet, and their errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from icdreward.codeset import load_codeset
from icdreward.errors import InputFileError
from icdreward.inputs import ScoringReader, ScoringRows, parse_gold, read_scoring_rows

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# -- reading ------------------------------------------------------------------------


def test_jsonl_reads_every_field(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "rows.jsonl",
        [
            {
                "completion": "a</think><diagnosis>M51.16</diagnosis>",
                "gold": "M5116",
                "note": "n1",
                "group": 7,
                "id": "extra keys are ignored",
            },
            {"completion": "b", "gold": ["E1165", "I10"], "group": 7},
        ],
    )
    rows = read_scoring_rows(path)
    assert isinstance(rows, ScoringRows)
    assert len(rows) == 2
    assert rows.path == str(path)
    assert rows.completions == ("a</think><diagnosis>M51.16</diagnosis>", "b")
    assert rows.golds == (("M5116",), ("E1165", "I10"))
    assert rows.notes == ("n1", None)
    assert rows.groups == (7, 7)
    assert rows.rows == (1, 2)


def test_jsonl_without_notes_or_groups_gives_none(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "rows.jsonl", [{"completion": "a", "gold": "M5116"}])
    rows = read_scoring_rows(path)
    assert rows.notes is None
    assert rows.groups is None


def test_jsonl_blank_lines_are_skipped_and_rows_are_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(
        '\n{"completion": "a", "gold": "M5116"}\n   \n{"completion": "b", "gold": "E119"}\n\n',
        encoding="utf-8",
    )
    rows = read_scoring_rows(path)
    assert rows.completions == ("a", "b")
    assert rows.rows == (2, 4)


@pytest.mark.parametrize("completion", [None, 42, 3.5, True, {"content": "x"}, [], ""])
def test_a_completion_of_any_type_is_not_an_input_error(tmp_path: Path, completion: Any) -> None:
    path = write_jsonl(tmp_path / "rows.jsonl", [{"completion": completion, "gold": "M5116"}])
    assert read_scoring_rows(path).completions == (completion,)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("M5116", ("M5116",)),
        (" m51.16 ", ("m51.16",)),
        ("M5116;E119", ("M5116", "E119")),
        ("M5116; E119 ;", ("M5116", "E119")),
        ("M5116|E119,I10", ("M5116", "E119", "I10")),
        ('["M5116","E119"]', ("M5116", "E119")),
        (' [ "M5116" ] ', ("M5116",)),
        (["M5116", "E119"], ("M5116", "E119")),
        (("I10",), ("I10",)),
    ],
)
def test_parse_gold_forms(value: Any, expected: tuple[str, ...]) -> None:
    assert parse_gold(value) == expected


def test_csv_gold_forms_notes_and_groups(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text(
        "completion,gold,note,group\n"
        "plain,M5116,a note,g1\n"
        '"json list","[""M5116"",""E119""]",,g1\n'
        '"semi, colon",M5116;E119,"multi\nline note",\n',
        encoding="utf-8",
    )
    rows = read_scoring_rows(path)
    assert rows.completions == ("plain", "json list", "semi, colon")
    assert rows.golds == (("M5116",), ("M5116", "E119"), ("M5116", "E119"))
    assert rows.notes == ("a note", None, "multi\nline note")
    assert rows.groups == ("g1", "g1", None)
    # Line numbers as an editor shows them: the header is line 1.
    assert rows.rows == (2, 3, 4)


def test_csv_with_byte_order_mark_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes("\ufeffcompletion,gold\r\nx,E11.9\r\n".encode())
    rows = read_scoring_rows(path)
    assert rows.completions == ("x",)
    assert rows.golds == (("E11.9",),)


def test_csv_reads_a_completion_longer_than_the_default_field_limit(tmp_path: Path) -> None:
    long = "word " * 60_000  # 300 kB, beyond csv's default 128 KiB field limit
    path = tmp_path / "rows.csv"
    path.write_text(f'completion,gold\n"{long}",M5116\n', encoding="utf-8")
    assert read_scoring_rows(path).completions == (long,)


def test_tsv(tmp_path: Path) -> None:
    path = tmp_path / "rows.tsv"
    path.write_text("gold\tcompletion\nM5116\ta, b\n", encoding="utf-8")
    rows = read_scoring_rows(path)
    assert rows.completions == ("a, b",)
    assert rows.golds == (("M5116",),)


def test_parquet_with_list_and_string_golds(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    table = pa.table(
        {
            "completion": ["a", None, "c"],
            "gold": [["M5116"], ["E1165", "I10"], ["I214"]],
            "group": [1, 1, 2],
        }
    )
    pq.write_table(table, path)
    rows = read_scoring_rows(path)
    assert rows.completions == ("a", None, "c")
    assert rows.golds == (("M5116",), ("E1165", "I10"), ("I214",))
    assert rows.groups == (1, 1, 2)
    assert rows.notes is None
    assert rows.rows == (1, 2, 3)

    string_path = tmp_path / "strings.pq"
    pq.write_table(
        pa.table({"completion": ["a"], "gold": ["M5116;E119"], "note": ["n"]}), string_path
    )
    rows = read_scoring_rows(string_path)
    assert rows.golds == (("M5116", "E119"),)
    assert rows.notes == ("n",)


# -- chunks -------------------------------------------------------------------------


def test_chunks_cover_the_file_in_order(tmp_path: Path) -> None:
    data = [{"completion": f"c{i}", "gold": "M5116"} for i in range(10)]
    path = write_jsonl(tmp_path / "rows.jsonl", data)
    reader = ScoringReader(path, chunk_size=3)
    chunks = list(reader)
    assert [len(c) for c in chunks] == [3, 3, 3, 1]
    assert [x for c in chunks for x in c.completions] == [f"c{i}" for i in range(10)]
    assert reader.rows_read == 10
    assert reader.position == reader.total == path.stat().st_size
    assert ScoringRows.concat(chunks).completions == read_scoring_rows(path).completions


def test_a_chunk_does_not_split_a_group(tmp_path: Path) -> None:
    groups = [0, 0, 0, 1, 1, 1, 2, 2]
    data = [{"completion": "x", "gold": "M5116", "group": g} for g in groups]
    path = write_jsonl(tmp_path / "rows.jsonl", data)
    chunks = list(ScoringReader(path, chunk_size=2))
    assert [c.groups for c in chunks] == [(0, 0, 0), (1, 1, 1), (2, 2)]


def test_a_huge_group_is_still_split_eventually(tmp_path: Path) -> None:
    data = [{"completion": "x", "gold": "M5116", "group": "same"} for _ in range(20)]
    path = write_jsonl(tmp_path / "rows.jsonl", data)
    sizes = [len(c) for c in ScoringReader(path, chunk_size=2)]
    assert max(sizes) == 8  # four times the chunk size
    assert sum(sizes) == 20


def test_parquet_progress_counts_rows(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"completion": ["a"] * 5, "gold": ["M5116"] * 5}), path)
    reader = ScoringReader(path, chunk_size=2)
    assert reader.total == 5
    assert [len(c) for c in reader] == [2, 2, 1]
    assert reader.position == 5


# -- errors -------------------------------------------------------------------------


def expect_error(path: Path, *, row: int | None, field: str | None, text: str) -> InputFileError:
    with pytest.raises(InputFileError) as info:
        read_scoring_rows(path)
    error = info.value
    assert error.path == str(path)
    assert error.row == row
    assert error.field == field
    message = str(error)
    assert str(path) in message
    assert text in message
    if row is not None:
        assert f"row {row}" in message
    if field is not None:
        assert repr(field) in message
    return error


def test_bad_json_names_the_line(tmp_path: Path) -> None:
    lines = [json.dumps({"completion": "x", "gold": "M5116"})] * 6 + ['{"completion": "x", gold}']
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    error = expect_error(path, row=7, field=None, text="invalid JSON")
    assert error.value == '{"completion": "x", gold}'


def test_a_json_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "rows.jsonl", [["x", "M5116"]])
    expect_error(path, row=1, field=None, text="expected a JSON object, not a list")


def test_missing_gold_key(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "rows.jsonl",
        [{"completion": "x", "gold": "M5116"}, {"completion": "x", "golds": "M5116"}],
    )
    expect_error(path, row=2, field="gold", text="missing field 'gold'")


def test_missing_completion_key(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "rows.jsonl", [{"gold": "M5116", "text": "x"}])
    expect_error(path, row=1, field="completion", text="missing field 'completion'")


@pytest.mark.parametrize(
    ("gold", "text"),
    [
        (5116, "not a number"),
        (51.16, "not a number"),
        ({"code": "M5116"}, "not an object"),
        (True, "not a boolean"),
        (None, "gold is missing"),
        ("", "gold holds no code"),
        ([], "gold holds no code"),
        (["M5116", 7], "gold codes must be strings, not a number"),
        ('["M5116", ', "gold looks like a JSON list"),
    ],
)
def test_a_gold_that_is_not_codes(tmp_path: Path, gold: Any, text: str) -> None:
    path = write_jsonl(tmp_path / "rows.jsonl", [{"completion": "x", "gold": gold}])
    error = expect_error(path, row=1, field="gold", text=text)
    if gold is not None:
        assert error.value == gold


def test_a_note_that_is_not_text(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "rows.jsonl", [{"completion": "x", "gold": "I10", "note": 3}])
    expect_error(path, row=1, field="note", text="note must be text, not a number")


def test_csv_missing_gold_column(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("completion,code\nx,M5116\n", encoding="utf-8")
    expect_error(
        path, row=1, field="gold", text="missing column 'gold' (columns: completion, code)"
    )


def test_csv_row_with_the_wrong_number_of_fields(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("completion,gold\nx,M5116\ny,M5116,extra\n", encoding="utf-8")
    expect_error(path, row=3, field=None, text="the row has 3 fields but the header has 2")


def test_csv_header_only_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("completion,gold\n", encoding="utf-8")
    expect_error(path, row=None, field=None, text="holds no rows")


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.csv", "rows.parquet"])
def test_an_empty_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    expect_error(path, row=None, field=None, text="the file is empty")


def test_a_jsonl_file_of_blank_lines_holds_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text("\n  \n\n", encoding="utf-8")
    expect_error(path, row=None, field=None, text="holds no rows")


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "rows.txt"
    path.write_text('{"completion": "x", "gold": "M5116"}\n', encoding="utf-8")
    with pytest.raises(
        InputFileError, match=r"unknown file type '\.txt'.*\.jsonl.*\.csv.*\.parquet"
    ):
        ScoringReader(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="cannot read file"):
        ScoringReader(tmp_path / "missing.jsonl")
    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    with pytest.raises(InputFileError, match="is a directory"):
        ScoringReader(folder)


def test_unreadable_parquet(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    path.write_bytes(b"this is not a parquet file at all")
    expect_error(path, row=None, field=None, text="cannot read parquet file")


def test_parquet_missing_gold_column(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"completion": ["x"], "label": ["M5116"]}), path)
    expect_error(path, row=None, field="gold", text="missing column 'gold'")


def test_parquet_numeric_gold(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"completion": ["x", "y"], "gold": [5116, 119]}), path)
    error = expect_error(path, row=1, field="gold", text="not a number")
    assert error.value == 5116


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(
        b'{"completion": "x", "gold": "M5116"}\n{"completion": "\xff", "gold": "I10"}\n'
    )
    expect_error(path, row=2, field=None, text="not valid UTF-8")


def test_a_bad_row_is_raised_when_its_chunk_is_reached(tmp_path: Path) -> None:
    # A chunk is handed out once the row after it is read (to keep groups whole), so
    # rows 1-4 arrive as two chunks and the chunk of rows 5-6 meets the bad row 7.
    data: list[Any] = [{"completion": "x", "gold": "M5116"}] * 6 + [{"completion": "x"}]
    path = write_jsonl(tmp_path / "rows.jsonl", data)
    chunks = iter(ScoringReader(path, chunk_size=2))
    assert len(next(chunks)) == 2
    assert len(next(chunks)) == 2
    with pytest.raises(InputFileError, match="row 7"):
        next(chunks)


# -- the shipped examples -----------------------------------------------------------


def test_the_example_completions() -> None:
    rows = read_scoring_rows(EXAMPLES / "completions.jsonl")
    codeset = load_codeset()
    assert 16 <= len(rows) <= 24
    assert rows.groups is not None
    assert rows.notes is not None
    assert all(isinstance(n, str) and len(n) > 200 for n in rows.notes)
    group_sizes = {g: rows.groups.count(g) for g in rows.groups}
    assert len(group_sizes) >= 3
    assert all(size >= 4 for size in group_sizes.values())
    for completion, golds in zip(rows.completions, rows.golds, strict=True):
        assert isinstance(completion, str)
        # The prompt is prefilled with <think>; completions must not repeat it.
        assert not completion.lstrip().startswith("<think>")
        assert all(codeset.is_billable(code) for code in golds)
    assert "" in rows.completions


def test_the_example_notes_match_the_completions() -> None:
    notes = [json.loads(line) for line in (EXAMPLES / "notes.jsonl").read_text().splitlines()]
    rows = read_scoring_rows(EXAMPLES / "completions.jsonl")
    assert rows.groups is not None
    assert rows.notes is not None
    codeset = load_codeset()
    by_id = {n["id"]: n for n in notes}
    assert set(by_id) == set(rows.groups)
    for group, note, golds in zip(rows.groups, rows.notes, rows.golds, strict=True):
        assert by_id[group]["note"] == note
        assert [codeset.normalize(c) for c in by_id[group]["codes"]] == list(golds)
