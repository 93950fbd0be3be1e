"""``icdreward.records``: the one reader of row files that every input reader uses."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from icdreward.errors import InputFileError
from icdreward.evaluation import read_eval_rows
from icdreward.generation import read_note_rows
from icdreward.inputs import ScoringReader, read_scoring_rows
from icdreward.records import RecordReader, iter_records


def test_every_reader_names_a_value_type_the_same_way(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text("[1, 2]\n")
    for read in (
        read_scoring_rows,
        read_eval_rows,
        read_note_rows,
        lambda p: list(iter_records(p)),
    ):
        with pytest.raises(InputFileError) as info:
            read(path)
        assert "row 1" in str(info.value)
        assert "expected a JSON object, not a list" in str(info.value)


def test_progress_is_bytes_for_text_and_rows_for_parquet(tmp_path: Path) -> None:
    text = tmp_path / "rows.tsv"
    text.write_text("note\tcodes\tid\na\tI10\t1\n\nb\tE119\t2\n")
    reader = RecordReader(text, columns=("codes", "note", "missing"))
    assert reader.format == "tsv" and reader.total == text.stat().st_size
    records = list(reader)
    assert records == [(2, {"codes": "I10", "note": "a"}), (4, {"codes": "E119", "note": "b"})]
    assert reader.position == reader.total
    assert list(reader) == records  # iterating again reads the file again

    table = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"note": ["a", "b", "c"], "codes": [["I10"], ["E119"], []]}), table)
    reader = RecordReader(table, batch_size=2)
    assert reader.total == 3
    assert [n for n, _ in reader] == [1, 2, 3]
    assert reader.position == 3


def test_the_column_check_runs_before_any_record(tmp_path: Path) -> None:
    seen: list[tuple[list[str], int | None]] = []

    def check(columns: list[str], row: int | None) -> None:
        seen.append((columns, row))
        if "gold" not in columns:
            raise InputFileError(str(tmp_path), "missing column 'gold'", row=row, field="gold")

    table = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"completion": ["x"]}), table)
    with pytest.raises(InputFileError, match="missing column 'gold'"):
        RecordReader(table, check_columns=check)  # parquet: checked when opened
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text("completion\nx\n")
    records = iter_records(csv_file, check_columns=check)
    with pytest.raises(InputFileError, match="missing column 'gold'"):
        next(records)
    assert seen == [(["completion"], None), (["completion"], 1)]


def test_the_scoring_reader_keeps_its_rules_on_top(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("completion,gold,note,group,extra\na,I10,,,z\nb,E119,text,2,z\n")
    (chunk,) = list(ScoringReader(path))
    assert chunk.notes == (None, "text")  # an empty CSV cell is no note
    assert chunk.groups == (None, "2")
    assert chunk.rows == (2, 3)
