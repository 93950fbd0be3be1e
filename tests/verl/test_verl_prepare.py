"""``icdreward prepare``: notes with codes to verl parquet, read back by verl's own RLHFDataset.

Real files throughout (JSONL, CSV, parquet written with pyarrow), the real tokenizer
of the session fixture, and verl 0.9.1's ``RLHFDataset`` on the written parquet.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from icdreward.cli import main
from icdreward.codeset import CodeSet
from icdreward.errors import ConfigError, InputFileError
from icdreward.prompts import PROMPT_VERSION, build_messages
from icdreward_verl.data import (
    DEFAULT_ABILITY,
    DEFAULT_DATA_SOURCE,
    PrepareOptions,
    assign_split,
    prepare_dataset,
    prompt_too_long,
)

ROOT = Path(__file__).resolve().parents[2]
NOTES = ROOT / "examples" / "notes.jsonl"


# -- helpers -------------------------------------------------------------------------


def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _write_csv(path: Path, header: list[str], rows: Iterable[list[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _rows(path: Path) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist()


def _synthetic(n: int) -> list[dict[str, Any]]:
    return [
        {"id": f"adm-{k}", "note": f"Patient {k} admitted with chest pain.", "codes": ["I21.4"]}
        for k in range(n)
    ]


def _splits(out: Path) -> dict[str, str]:
    return {
        row["extra_info"]["id"]: row["extra_info"]["split"]
        for name in ("train", "val")
        for row in _rows(out / f"{name}.parquet")
    }


def _run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- the example notes ---------------------------------------------------------------


def test_api_writes_verl_rows_for_the_example_notes(
    tmp_path: Path, example_notes: list[dict[str, Any]]
) -> None:
    report = prepare_dataset(NOTES, tmp_path, PrepareOptions(val_fraction=0))

    assert report.rows_read == len(example_notes)
    assert report.written == {"train": len(example_notes)}
    assert report.dropped == {} and report.dropped_rows == {}
    assert report.files == {"train": str(tmp_path / "train.parquet")}
    assert not (tmp_path / "val.parquet").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.parquet"]  # no temp files

    schema = pq.read_schema(tmp_path / "train.parquet")
    assert schema.names == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    assert schema.field("prompt").type == pa.list_(message)
    assert schema.field("reward_model").type == pa.struct(
        [("style", pa.string()), ("ground_truth", pa.list_(pa.string()))]
    )
    extra = schema.field("extra_info").type
    assert [extra.field(k).name for k in range(extra.num_fields)] == [
        "split",
        "index",
        "note",
        "id",
        "row",
        "prompt_version",
    ]
    assert extra.field("index").type == pa.int64()

    rows = _rows(tmp_path / "train.parquet")
    for index, (row, note) in enumerate(zip(rows, example_notes, strict=True)):
        assert row["data_source"] == DEFAULT_DATA_SOURCE
        assert row["ability"] == DEFAULT_ABILITY
        assert row["prompt"] == build_messages(note["note"], prefill_think=False)
        assert row["reward_model"] == {
            "style": "rule",
            "ground_truth": [CodeSet.normalize(c) for c in note["codes"]],
        }
        assert row["extra_info"] == {
            "split": "train",
            "index": index,
            "note": note["note"],
            "id": note["id"],
            "row": index + 1,
            "prompt_version": PROMPT_VERSION,
        }
    assert rows[1]["reward_model"]["ground_truth"] == ["E1165", "I10"]  # primary first


def test_cli_writes_both_splits_and_prints_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], example_notes: list[dict[str, Any]]
) -> None:
    out = tmp_path / "data"
    code, stdout, _ = _run(capsys, "prepare", NOTES, "-o", out, "--val-fraction", "0.5")
    assert code == 0
    n = len(example_notes)
    assert f"{n} rows read, {n} written, 0 dropped" in stdout
    assert str(out / "train.parquet") in stdout and str(out / "val.parquet") in stdout

    code, stdout, _ = _run(capsys, "prepare", NOTES, "-o", out, "--val-fraction", "0.5", "--json")
    assert code == 0
    report = json.loads(stdout)
    assert report["rows_read"] == n and sum(report["written"].values()) == n
    for split in ("train", "val"):
        rows = _rows(out / f"{split}.parquet")
        assert len(rows) == report["written"][split]
        assert [r["extra_info"]["index"] for r in rows] == list(range(len(rows)))
        for r in rows:
            assert r["extra_info"]["split"] == split
            assert assign_split(r["extra_info"]["id"], seed=0, val_fraction=0.5) == split


def test_verl_rlhf_dataset_reads_the_parquet_and_filters_like_prepare(
    tmp_path: Path, tokenizer_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    datasets = pytest.importorskip("datasets")
    from omegaconf import DictConfig
    from verl.utils import hf_tokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    full = prepare_dataset(
        NOTES, tmp_path / "full", PrepareOptions(val_fraction=0, tokenizer=tokenizer_dir)
    )
    assert full.longest_prompt is not None
    limit = full.longest_prompt - 1
    cut = prepare_dataset(
        NOTES,
        tmp_path / "cut",
        PrepareOptions(val_fraction=0, tokenizer=tokenizer_dir, max_prompt_tokens=limit),
    )
    assert cut.dropped == {prompt_too_long(limit): 1}

    def dataset(path: Path, max_length: int) -> Any:
        config = DictConfig(
            {
                "cache_dir": str(tmp_path / "verl-cache"),
                "prompt_key": "prompt",
                "max_prompt_length": max_length,
                "filter_overlong_prompts": True,
                "filter_overlong_prompts_workers": 1,
                "truncation": "error",
                "return_raw_chat": True,
            }
        )
        return RLHFDataset(
            data_files=[str(path)], tokenizer=hf_tokenizer(tokenizer_dir), config=config
        )

    written = _rows(tmp_path / "full" / "train.parquet")
    verl_full = dataset(tmp_path / "full" / "train.parquet", full.longest_prompt)
    assert len(verl_full) == len(written)
    for k, row in enumerate(written):
        item = verl_full[k]
        assert item["raw_prompt"] == row["prompt"]
        assert item["reward_model"]["ground_truth"] == row["reward_model"]["ground_truth"]
        assert item["extra_info"]["note"] == row["extra_info"]["note"]
        assert item["index"] == row["extra_info"]["index"]
        assert item["data_source"] == DEFAULT_DATA_SOURCE

    # verl's own length filter, at the same limit, keeps exactly the rows prepare kept
    verl_cut = dataset(tmp_path / "full" / "train.parquet", limit)
    kept = [verl_cut[k]["extra_info"]["id"] for k in range(len(verl_cut))]
    assert kept == [r["extra_info"]["id"] for r in _rows(tmp_path / "cut" / "train.parquet")]


# -- the split -----------------------------------------------------------------------


def test_split_is_independent_of_row_order_and_of_other_rows(tmp_path: Path) -> None:
    rows = _synthetic(400)
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    options = PrepareOptions(val_fraction=0.2, seed=11)
    prepare_dataset(_write_jsonl(tmp_path / "a.jsonl", rows), tmp_path / "a", options)
    prepare_dataset(_write_jsonl(tmp_path / "b.jsonl", shuffled), tmp_path / "b", options)
    prepare_dataset(_write_jsonl(tmp_path / "c.jsonl", rows[:150]), tmp_path / "c", options)

    first = _splits(tmp_path / "a")
    assert _splits(tmp_path / "b") == first
    assert _splits(tmp_path / "c") == {k: first[k] for k in _splits(tmp_path / "c")}
    share = sum(split == "val" for split in first.values()) / len(first)
    assert 0.14 <= share <= 0.26  # binomial(400, 0.2): 5 standard deviations wide

    other = PrepareOptions(val_fraction=0.2, seed=12)
    report = prepare_dataset(tmp_path / "a.jsonl", tmp_path / "d", other)
    assert _splits(tmp_path / "d") != first
    assert report.written["train"] + report.written["val"] == 400


def test_rows_without_ids_are_split_by_their_note(tmp_path: Path) -> None:
    rows = [{"note": r["note"], "codes": r["codes"]} for r in _synthetic(120)]
    options = PrepareOptions(val_fraction=0.3)
    prepare_dataset(_write_jsonl(tmp_path / "a.jsonl", rows), tmp_path / "a", options)
    prepare_dataset(_write_jsonl(tmp_path / "b.jsonl", rows[::-1]), tmp_path / "b", options)

    def by_note(out: Path) -> dict[str, str]:
        found = {}
        for name in ("train", "val"):
            for row in _rows(out / f"{name}.parquet"):
                assert row["extra_info"]["id"] == ""
                found[row["extra_info"]["note"]] = name
        return found

    assert by_note(tmp_path / "a") == by_note(tmp_path / "b")
    assert set(by_note(tmp_path / "a").values()) == {"train", "val"}


def test_val_fraction_zero_writes_no_validation_file_and_removes_a_stale_one(
    tmp_path: Path,
) -> None:
    prepare_dataset(NOTES, tmp_path, PrepareOptions(val_fraction=0.5))
    assert (tmp_path / "val.parquet").exists()
    report = prepare_dataset(NOTES, tmp_path, PrepareOptions(val_fraction=0, limit=2))
    assert not (tmp_path / "val.parquet").exists()
    assert report.rows_read == 2 and report.written == {"train": 2}


# -- input layouts -------------------------------------------------------------------


def test_csv_with_custom_column_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_csv(
        tmp_path / "notes.csv",
        ["hadm_id", "discharge", "icd", "other"],
        [
            ["20001", "Acute low back pain with sciatica.", "m51.16; E11.9", "x"],
            ["20002", "Community acquired pneumonia.", '["J18.9"]', "y"],
        ],
    )
    argv: list[str | Path] = ["prepare", path, "-o", tmp_path / "out", "--val-fraction", "0"]
    argv += ["--note-column", "discharge", "--codes-column", "icd", "--id-column", "hadm_id"]
    code, _, err = _run(capsys, *argv)
    assert code == 0, err
    rows = _rows(tmp_path / "out" / "train.parquet")
    assert [r["reward_model"]["ground_truth"] for r in rows] == [["M5116", "E119"], ["J189"]]
    assert [r["extra_info"]["id"] for r in rows] == ["20001", "20002"]
    assert [r["extra_info"]["row"] for r in rows] == [2, 3]  # CSV line numbers
    assert rows[1]["prompt"] == build_messages("Community acquired pneumonia.", prefill_think=False)


def test_mimic_like_parquet_and_csv(tmp_path: Path) -> None:
    # MIMIC-IV-Note calls the note "text"; codes come as a list (older years kept).
    table = pa.table(
        {
            "note_id": pa.array([101, 102, 103], pa.int64()),
            "text": ["Note one.", "Note two.", "Note three."],
            "icd_codes": pa.array(
                [["i21.4", "I25.10", "i21.4"], ["E11.9"], ["R52.1"]], pa.list_(pa.string())
            ),
            "subject_id": [1, 2, 3],
        }
    )
    pq.write_table(table, tmp_path / "mimic.parquet")
    options = PrepareOptions(val_fraction=0, codes_column="icd_codes", id_column="note_id")
    report = prepare_dataset(tmp_path / "mimic.parquet", tmp_path / "pq", options)
    rows = _rows(tmp_path / "pq" / "train.parquet")
    assert report.written == {"train": 3}
    assert [r["reward_model"]["ground_truth"] for r in rows] == [
        ["I214", "I2510"],  # repeats removed, primary first
        ["E119"],
        ["R521"],  # R52.1 was deleted in FY2017: not in the FY2026 set, kept
    ]
    assert [r["extra_info"]["id"] for r in rows] == ["101", "102", "103"]
    assert rows[0]["extra_info"]["note"] == "Note one."

    path = _write_csv(
        tmp_path / "mimic.csv",
        ["note_id", "text", "icd_codes"],
        [["n1", "Note one.", '["I21.4", "I25.10"]'], ["n2", "Note two.", "[]"]],
    )
    report = prepare_dataset(path, tmp_path / "csv", options)
    assert report.written == {"train": 1} and report.dropped == {"no gold code": 1}
    assert _rows(tmp_path / "csv" / "train.parquet")[0]["reward_model"]["ground_truth"] == [
        "I214",
        "I2510",
    ]


# -- dropped rows and errors ---------------------------------------------------------


def test_dropped_rows_are_counted_with_their_reason(
    tmp_path: Path, tokenizer_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long_note = " ".join(["Patient with chest pain radiating to the left arm."] * 60)
    rows: list[dict[str, Any]] = [
        {"id": "a", "note": "Chest pain.", "codes": ["I21.4"]},  # 1 kept
        {"id": "b", "note": "", "codes": ["I21.4"]},  # 2 empty note
        {"id": "c", "note": None, "codes": ["I21.4"]},  # 3 empty note
        {"id": "d", "note": "   \n", "codes": ["I21.4"]},  # 4 empty note
        {"id": "e", "note": "Cough.", "codes": []},  # 5 no gold code
        {"id": "f", "note": "Cough.", "codes": None},  # 6 no gold code
        {"id": "g", "note": "Cough.", "codes": " ; "},  # 7 no gold code
        {"id": "h", "note": "Hypertension.", "codes": "401.9"},  # 8 ICD-9
        {"id": "a", "note": "Chest pain again.", "codes": ["I21.4"]},  # 9 duplicate id
        {"id": "i", "note": long_note, "codes": ["I21.4"]},  # 10 too long
        {"id": "j", "note": "Fever.", "codes": ["R50.9", "4019"]},  # 11 kept
    ]
    path = _write_jsonl(tmp_path / "notes.jsonl", rows)
    options = PrepareOptions(val_fraction=0, tokenizer=tokenizer_dir, max_prompt_tokens=300)
    report = prepare_dataset(path, tmp_path / "out", options)

    assert report.rows_read == 11 and report.written == {"train": 2}
    assert report.dropped == {
        "duplicate id": 1,
        "empty note": 3,
        "no gold code": 3,
        "primary code is not ICD-10-CM": 1,
        prompt_too_long(300): 1,
    }
    assert report.dropped_rows["empty note"] == (2, 3, 4)
    assert report.dropped_rows[prompt_too_long(300)] == (10,)
    kept = _rows(tmp_path / "out" / "train.parquet")
    assert [r["extra_info"]["id"] for r in kept] == ["a", "j"]
    assert kept[1]["reward_model"]["ground_truth"] == ["R509", "4019"]  # secondary kept
    assert report.longest_prompt is not None and report.longest_prompt <= 300

    argv: list[str | Path] = ["prepare", path, "-o", tmp_path / "cli", "--val-fraction", "0"]
    code, out, _ = _run(capsys, *argv, "--tokenizer", tokenizer_dir, "--max-prompt-tokens", "300")
    assert code == 0
    assert "11 rows read, 2 written, 9 dropped" in out
    assert "empty note" in out and "2, 3, 4" in out and "longest prompt" in out


def test_a_dropped_row_does_not_claim_its_id(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "note": "", "codes": ["I21.4"]},  # dropped: empty note
        {"id": "a", "note": "Chest pain.", "codes": ["I21.4"]},  # kept: nothing written had "a"
        {"id": "a", "note": "Chest pain again.", "codes": ["I21.4"]},  # duplicate of row 2
    ]
    path = _write_jsonl(tmp_path / "notes.jsonl", rows)
    report = prepare_dataset(path, tmp_path / "out", PrepareOptions(val_fraction=0))
    assert report.dropped == {"empty note": 1, "duplicate id": 1}
    assert report.dropped_rows["duplicate id"] == (3,)
    assert [r["extra_info"]["row"] for r in _rows(tmp_path / "out" / "train.parquet")] == [2]


@pytest.mark.parametrize(
    ("name", "content", "options", "expected"),
    [
        ("a.csv", "id,note\n1,x\n", {}, "a.csv, row 1, field 'codes': missing column 'codes'"),
        ("b.jsonl", '{"note": "x", "codes": "I10"}\n{"note": 5, "codes": "I10"}\n', {},
         "b.jsonl, row 2, field 'note': the note must be text, not a number (got 5)"),
        ("c.jsonl", '{"note": "x", "codes": {"a": 1}}\n', {},
         "c.jsonl, row 1, field 'codes': gold must be a code or a list of codes, not an object"),
        ("d.csv", 'note,codes\nx,"[""I10"""\n', {},
         "d.csv, row 2, field 'codes': gold looks like a JSON list but is not"),
        ("e.jsonl", '{"note": "x", "codes": "I10", "id": [1]}\n', {},
         "e.jsonl, row 1, field 'id': the id must be text or a whole number, not a list"),
        ("f.jsonl", '{"codes": "I10"}\n', {},
         "f.jsonl, row 1, field 'note': missing field 'note' (or 'text')"),
        ("g.csv", "note,codes\nx,I10\n", {"id_column": "hadm_id"},
         "g.csv, row 1, field 'hadm_id': missing column 'hadm_id'"),
        ("h.csv", "note,codes\n", {}, "h.csv: the file holds no rows"),
    ],
)  # fmt: skip
def test_structural_errors_name_file_row_and_field_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: str,
    options: dict[str, Any],
    expected: str,
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    prepare_dataset(NOTES, out, PrepareOptions(val_fraction=0))
    before = (out / "train.parquet").read_bytes()

    with pytest.raises(InputFileError) as caught:
        prepare_dataset(path, out, PrepareOptions(val_fraction=0, **options))
    assert str(caught.value).startswith(str(tmp_path / expected))

    flags = [
        f"--{k.replace('_', '-')}" if i % 2 == 0 else v for k, v in options.items() for i in (0, 1)
    ]
    code, stdout, err = _run(capsys, "prepare", path, "-o", out, "--val-fraction", "0", *flags)
    assert code == 2 and stdout == ""
    assert err.startswith("icdreward: error: ") and err.count("\n") == 1
    assert expected in err
    # nothing written: the earlier output is intact and no temporary file is left
    assert (out / "train.parquet").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["train.parquet"]


def test_bad_options_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tokenizer_dir: Path
) -> None:
    out = tmp_path / "out"
    code, _, err = _run(capsys, "prepare", NOTES, "-o", out, "--max-prompt-tokens", "10")
    assert code == 2 and "--max-prompt-tokens needs --tokenizer" in err
    code, _, err = _run(capsys, "prepare", NOTES, "-o", out, "--tokenizer", tmp_path / "nope")
    assert code == 2 and "field 'tokenizer'" in err and "not a directory" in err
    code, _, err = _run(capsys, "prepare", NOTES, "-o", out, "--val-fraction", "1")
    assert code == 2 and "below 1" in err
    code, _, err = _run(capsys, "prepare", NOTES)
    assert code == 2 and "--output-dir" in err
    assert not out.exists()

    with pytest.raises(ConfigError, match="val_fraction"):
        PrepareOptions(val_fraction=1.5)
    with pytest.raises(ConfigError, match=r"max_prompt_tokens.*needs a tokenizer"):
        prepare_dataset(NOTES, out, PrepareOptions(max_prompt_tokens=10))
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="output_dir"):
        prepare_dataset(NOTES, tmp_path / "file" / "sub")
