"""``icdreward eval`` run in-process through ``main``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icdreward.cli import main
from icdreward.engine import RewardEngine
from icdreward.evaluation import evaluate, parse_completions
from icdreward.inputs import read_scoring_rows

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
COMPLETIONS = EXAMPLES / "completions.jsonl"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_json_matches_the_engine_parser(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "eval", str(COMPLETIONS), "--json", "--bootstrap", "50", "--per-note", "all"
    )
    assert code == 0, err
    data = json.loads(out)
    assert list(data)[:5] == ["full_code", "category", "block", "chapter", "n"]
    assert (data["notes"], data["samples"], data["per_note"]) == (4, 21, "all")
    rows = read_scoring_rows(COMPLETIONS)
    engine = RewardEngine.from_preset("default")
    with engine:
        scored = engine.score(rows.completions, rows.golds)
        expected = evaluate(
            rows.golds, parse_completions(rows.completions, engine.parser), codeset=engine.codeset
        ).to_dict()
    assert data["n"] == len(rows)
    # eval and reward agree on what is unparseable and invalid
    assert data["unparseable"] == int(scored.parse_failure.sum())
    assert data["invalid"] == int(scored.invalid_code.sum())
    for level in ("full_code", "category", "block", "chapter"):
        for key in ("macro_f1", "micro_f1", "accuracy", "macro_precision", "macro_recall"):
            assert data[level][key] == pytest.approx(expected[level][key])
        assert len(data[level]["macro_f1_ci"]) == 2
    assert data["bootstrap"]["resamples"] == 50
    again = json.loads(
        run(capsys, "eval", str(COMPLETIONS), "--json", "--bootstrap", "50", "--per-note", "all")[1]
    )
    assert again == data  # seeded


def test_table_plot_and_by_chapter(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    plot = tmp_path / "f1.png"
    code, out, err = run(
        capsys, "eval", str(COMPLETIONS), "--by-chapter", "--plot", str(plot), "--bootstrap", "20"
    )
    assert code == 0, err
    assert "full code" in out and "chapter" in out and "per chapter" in out
    assert "Diseases of the musculoskeletal" in out
    assert plot.read_bytes()[:8] == PNG_MAGIC
    assert plot.stat().st_size > 1000


def test_json_by_chapter_and_plot(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    plot = tmp_path / "levels.png"
    code, out, _ = run(
        capsys, "eval", str(COMPLETIONS), "--json", "--by-chapter", "--bootstrap", "0",
        "--plot", str(plot),
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert data["bootstrap"] is None and "macro_f1_ci" not in data["full_code"]
    chapters = data["by_chapter"]
    assert sum(c["n"] for c in chapters) == data["n"]
    assert {"chapter", "title", "n", "f1", "precision", "recall"} <= set(chapters[0])
    assert plot.read_bytes()[:8] == PNG_MAGIC


def test_extracted_predictions_csv_and_mixed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    csv_file = tmp_path / "pred.csv"
    csv_file.write_text(
        'prediction,gold\nM51.16,M5116\n,E119\nXYZ,I10\nE11.9,"E119;I10"\n', encoding="utf-8"
    )
    code, out, err = run(capsys, "eval", str(csv_file), "--json", "--bootstrap", "0")
    assert code == 0, err
    data = json.loads(out)
    assert (data["n"], data["unparseable"], data["invalid"]) == (4, 1, 1)
    assert data["full_code"]["accuracy"] == pytest.approx(0.5)
    mixed = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"code": "M51.16", "gold": "M5116"},
            {"completion": "<think>x</think><diagnosis>E11.9</diagnosis>", "gold": "E119"},
            {"completion": "no diagnosis", "gold": ["I10"]},
        ],
    )
    data = json.loads(run(capsys, "eval", str(mixed), "--json", "--bootstrap", "0")[1])
    assert data["n"] == 3 and data["unparseable"] == 1
    assert data["full_code"]["accuracy"] == pytest.approx(2 / 3)


def test_parquet_predictions(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "pred.parquet"
    table = pa.table({"prediction": ["M5116", None, "E119"], "gold": ["M5116", "I10", "E1165"]})
    pq.write_table(table, path)
    data = json.loads(run(capsys, "eval", str(path), "--json", "--bootstrap", "0")[1])
    assert data["n"] == 3 and data["unparseable"] == 1
    assert data["category"]["accuracy"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the file is empty"),
        ("\n\n", "the file holds no rows"),
        ('{"gold": "M5116"}\n', "missing field 'completion'"),
        ('{"completion": "x"}\n', "missing field 'gold'"),
        ("not json\n", "invalid JSON"),
        ('{"completion": "x", "gold": 5}\n', "gold"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(content, encoding="utf-8")
    code, out, err = run(capsys, "eval", str(path))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("icdreward: error:")
    assert message in err


def test_missing_file_and_bad_suffix(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "eval", str(tmp_path / "nope.jsonl"))
    assert code == 2 and "cannot read file" in err
    other = tmp_path / "x.txt"
    other.write_text("a", encoding="utf-8")
    code, _, err = run(capsys, "eval", str(other))
    assert code == 2 and "unknown file type" in err
    code, _, err = run(capsys, "eval", str(COMPLETIONS), "--bootstrap", "-1")
    assert code == 2


def test_help_lists_eval(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "eval" in out
