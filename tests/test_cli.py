"""The ``icdreward`` command line, run in-process through ``main`` and as the installed script."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import torch

import icdreward
from icdreward import ComponentFailure, RewardEngine
from icdreward.cli import main
from icdreward.cli._app import commands
from icdreward.groups import group_statistics
from icdreward.inputs import read_scoring_rows

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
COMPLETIONS = EXAMPLES / "completions.jsonl"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def direct_result(path: Path = COMPLETIONS, preset: str = "default") -> Any:
    rows = read_scoring_rows(path)
    with RewardEngine.from_preset(preset) as engine:
        return engine.score(rows.completions, rows.golds, rows.notes, rows.groups)


def expected_records(path: Path = COMPLETIONS) -> list[dict[str, Any]]:
    """The records ``score -o`` writes: each row's id/group/sample, then the result's."""
    identities = read_scoring_rows(path).identities()
    records = direct_result(path).to_records()
    return json.loads(json.dumps([{**i, **r} for i, r in zip(identities, records, strict=True)]))


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def broken_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Add an entry point of the icdreward group whose module does not exist."""
    original = metadata.entry_points
    broken = metadata.EntryPoint(
        name="broken", value="icdreward_test_no_such_module", group="icdreward"
    )

    def entry_points(**params: Any) -> Any:
        found = original(**params)
        if params.get("group") == "icdreward":
            return [*found, broken]
        return found

    monkeypatch.setattr(metadata, "entry_points", entry_points)


# -- the parser ---------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--version")
    assert code == 0
    assert out.strip() == f"icdreward {icdreward.__version__}"
    assert err == ""


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for name in ("score", "generate", "eval", "plugins", "audit", "code"):
        assert name in out
    names = [c.name for c in commands()][:6]
    assert names == ["score", "generate", "eval", "plugins", "audit", "code"]


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)
    assert code == 2
    assert out == ""
    assert "a command is required" in err


def test_score_help_says_where_records_go(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "score", "--help")
    assert code == 0
    assert "--output" in out
    assert "with --output -, those records go to stdout and the summary to stderr" in out


def test_unknown_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "score", str(COMPLETIONS), "--frobnicate")
    assert code == 2
    assert "unrecognized arguments: --frobnicate" in err


def test_preset_and_config_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys, "score", str(COMPLETIONS), "--preset", "default", "--config", "x.toml"
    )
    assert code == 2
    assert "not allowed with argument" in err


# -- score --------------------------------------------------------------------------


def test_score_prints_a_summary_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "score", str(COMPLETIONS))
    assert code == 0
    assert err == ""
    assert "21 rows scored with preset default" in out
    for name in ("score (total)", "format", "hierarchy", "exact", "reasoning"):
        assert name in out
    for label in ("parse failures", "invalid codes", "groups", "all-equal groups"):
        assert label in out
    assert "{" not in out  # no records on stdout by default


def test_score_json_summary_matches_direct_scoring(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "score", str(COMPLETIONS), "--json")
    assert code == 0
    report = json.loads(out)
    result = direct_result()
    assert report["rows"] == len(result) == 21
    assert report["config"] == "preset default"
    assert report["output"] is None
    names = [c["name"] for c in report["components"]]
    assert names == ["score", *result.names]
    total = report["components"][0]
    assert total["weight"] is None
    assert total["mean"] == pytest.approx(float(result.total.double().mean()), abs=1e-6)
    assert total["std"] == pytest.approx(float(result.total.double().std(correction=0)), abs=1e-6)
    assert total["min"] == pytest.approx(float(result.total.min()), abs=1e-6)
    assert total["max"] == pytest.approx(float(result.total.max()), abs=1e-6)
    by_name = {c["name"]: c for c in report["components"]}
    for entry in result.summary()[1:]:
        assert by_name[entry.name]["weight"] == entry.weight
        assert by_name[entry.name]["mean"] == pytest.approx(entry.mean, abs=1e-6)
        assert by_name[entry.name]["failed"] == entry.failed == 0
    assert report["parse_failures"] == int(result.parse_failure.sum()) == 2
    assert report["invalid_codes"] == int(result.invalid_code.sum()) == 1
    assert report["samples_with_failed_components"] == 0
    groups = report["groups"]
    assert groups["count"] == result.groups.n_groups == 4
    assert groups["rows"] == 21
    assert groups["all_equal_share"] == pytest.approx(result.groups.all_equal_share)
    assert groups["mean_std"] == pytest.approx(float(result.groups.std.double().mean()), abs=1e-6)


def test_score_output_file_holds_the_records(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out_path = tmp_path / "scores.jsonl"
    code, out, err = run(capsys, "score", str(COMPLETIONS), "--output", str(out_path))
    assert code == 0
    assert err == ""
    assert str(out_path) in out  # the summary names the records file
    records = read_records(out_path)
    assert records == expected_records()
    assert list(records[0]) == [
        "group",  # carried from the input row (the examples have no id or sample)
        "score",
        "format",
        "hierarchy",
        "exact",
        "reasoning",
        "integrity",
        "code",
        "parse_failure",
        "invalid_code",
        "gold_missing",
        "failed",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["scores.jsonl"]  # no partial file left


def test_score_output_dash_writes_only_records_to_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "score", str(COMPLETIONS), "--output", "-")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 21
    records = [json.loads(line) for line in lines]
    assert records == expected_records()
    assert "21 rows scored" in err  # the summary moved to stderr


def test_score_records_carry_id_group_and_sample(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = [json.loads(line) for line in COMPLETIONS.read_text(encoding="utf-8").splitlines()]
    rows = []
    for i, row in enumerate(source[:6]):
        row = {**row, "id": f"{row['group']}#{i % 2}", "sample": i % 2}
        if i == 3:  # a row without these fields gets none in its record
            del row["id"], row["sample"], row["group"]
        rows.append(row)
    rows.reverse()  # ids, not line order, identify the rows
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out_path = tmp_path / "rewards.jsonl"
    code, _, _ = run(capsys, "score", str(path), "-o", str(out_path), "--chunk-size", "2")
    assert code == 0
    records = read_records(out_path)
    assert len(records) == 6
    for row, record in zip(rows, records, strict=True):
        for field in ("id", "group", "sample"):
            assert record.get(field) == row.get(field), field
        if "id" in row:
            assert list(record)[:4] == ["id", "group", "sample", "score"]
        else:
            assert next(iter(record)) == "score"
    expected = [r["score"] for r in expected_records(path)]
    assert [r["score"] for r in records] == expected

    # CSV: the same fields come back as the cells hold them; empty cells are left out.
    csv_path = tmp_path / "samples.csv"
    with csv_path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "group", "sample", "completion", "gold", "note"])
        for row in rows:
            fields = [row.get("id", ""), row.get("group", ""), row.get("sample", "")]
            gold = row["gold"] if isinstance(row["gold"], str) else json.dumps(row["gold"])
            writer.writerow([*fields, row["completion"], gold, row["note"]])
    csv_out = tmp_path / "csv_rewards.jsonl"
    code, _, err = run(capsys, "score", str(csv_path), "-o", str(csv_out))
    assert code == 0, err
    csv_records = read_records(csv_out)
    for row, record in zip(rows, csv_records, strict=True):
        assert record.get("id") == row.get("id")
        assert record.get("sample") == (str(row["sample"]) if "sample" in row else None)
    assert [r["score"] for r in csv_records] == expected


def test_eval_best_reward_joins_score_records_by_id(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Two samples per note, rewards written by score -o, read back by eval --rewards:
    # the join is by id, so a rewards file in another order gives the same report.
    source = [json.loads(line) for line in COMPLETIONS.read_text(encoding="utf-8").splitlines()]
    rows = []
    for i, row in enumerate(source):
        for k, completion in enumerate((row["completion"], "no tags at all")):
            sample = (k + i) % 2  # the good sample is sometimes sample 0, sometimes 1
            rows.append(
                {
                    **row,
                    "completion": completion,
                    "id": f"n{i}#{sample}",
                    "group": f"n{i}",
                    "sample": sample,
                }
            )
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    rewards = tmp_path / "rewards.jsonl"
    assert run(capsys, "score", str(path), "-o", str(rewards))[0] == 0
    shuffled = tmp_path / "shuffled.jsonl"
    lines = rewards.read_text(encoding="utf-8").splitlines()
    shuffled.write_text("\n".join(reversed(lines)) + "\n", encoding="utf-8")
    reports = []
    for file in (rewards, shuffled):
        code, out, _ = run(
            capsys,
            "eval",
            str(path),
            "--per-note",
            "best-reward",
            "--rewards",
            str(file),
            "--bootstrap",
            "0",
            "--json",
        )
        assert code == 0
        reports.append(json.loads(out))
    assert reports[0] == reports[1]
    # The best-reward sample of every note is its original completion: the same
    # metrics as a file of those alone.
    single = tmp_path / "single.jsonl"
    single.write_text(
        "".join(json.dumps({**r, "group": f"n{i}"}) + "\n" for i, r in enumerate(source)),
        encoding="utf-8",
    )
    code, out, _ = run(capsys, "eval", str(single), "--bootstrap", "0", "--json")
    assert code == 0
    alone = json.loads(out)
    for level in ("full_code", "category", "chapter"):
        assert reports[0][level] == alone[level], level


def test_score_in_chunks_gives_the_same_records_and_summary(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    whole, chunked = tmp_path / "whole.jsonl", tmp_path / "chunked.jsonl"
    code, out_whole, _ = run(capsys, "score", str(COMPLETIONS), "-o", str(whole), "--json")
    assert code == 0
    code, out_chunked, _ = run(
        capsys, "score", str(COMPLETIONS), "-o", str(chunked), "--json", "--chunk-size", "2"
    )
    assert code == 0
    assert read_records(whole) == read_records(chunked)
    a, b = json.loads(out_whole), json.loads(out_chunked)
    # Monitors are statistics of each scored batch (a group's spread, the entropy of a
    # batch's chapters): only those that add up row by row are the same in chunks.
    monitors_a, monitors_b = a.pop("monitors"), b.pop("monitors")
    for name in ("parse_failure", "invalid_code", "non_billable", "unspecified", "trace_chars"):
        assert monitors_a[name] == pytest.approx(monitors_b[name]), name
    for report in (a, b):
        report.pop("output")
    assert a == b


def test_group_statistics_span_chunks(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # Groups interleave, so every chunk of 3 rows holds parts of several groups.
    good = "Lumbar radiculopathy from a disc.</think><diagnosis>M51.16</diagnosis>"
    rows = [
        {"completion": good, "gold": "M5116", "group": "a"},
        {"completion": good, "gold": "M5116", "group": "b"},
        {"completion": "", "gold": "M5116", "group": "a"},
        {"completion": good, "gold": "M5116", "group": "b"},
        {"completion": good, "gold": "M5116", "group": "c"},
        {"completion": good, "gold": "M5116"},  # no group: left out of group statistics
        {"completion": good, "gold": "M5116", "group": "c"},
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    code, out, _ = run(capsys, "score", str(path), "--json", "--chunk-size", "3")
    assert code == 0
    groups = json.loads(out)["groups"]
    result = direct_result(path)
    grouped = [0, 1, 2, 3, 4, 6]
    stats = group_statistics(result.total[grouped], torch.tensor([0, 1, 0, 1, 2, 2]))
    assert groups["count"] == 3
    assert groups["rows"] == 6
    assert groups["all_equal"] == int(stats.all_equal.sum()) == 2  # b and c; a differs
    assert groups["all_equal_share"] == pytest.approx(2 / 3)
    assert groups["mean_std"] == pytest.approx(float(stats.std.double().mean()), abs=1e-6)


def test_score_without_groups_has_no_group_statistics(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("completion,gold\nx</think><diagnosis>I10</diagnosis>,I10\n", encoding="utf-8")
    code, out, _ = run(capsys, "score", str(path), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["groups"] is None
    assert report["rows"] == 1
    code, out, _ = run(capsys, "score", str(path))
    assert code == 0
    assert "all-equal groups" not in out


def test_score_with_the_example_config(capsys: pytest.CaptureFixture[str]) -> None:
    config = EXAMPLES / "rewards.toml"
    code, out, _ = run(capsys, "score", str(COMPLETIONS), "--config", str(config), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["config"] == str(config)
    weights = {c["name"]: c["weight"] for c in report["components"][1:]}
    assert weights == {
        "format": 1.0, "hierarchy": 2.0, "exact": 0.0, "integrity": 1.0, "exact_any": 0.0
    }  # fmt: skip
    means = {c["name"]: c["mean"] for c in report["components"]}
    # A secondary gold code counts for exact_any only: it must be the larger rate.
    assert means["exact_any"] > means["exact"]


def test_score_with_another_preset(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_path = tmp_path / "scores.jsonl"
    code, _, _ = run(
        capsys, "score", str(COMPLETIONS), "--preset", "deepicd-r1", "-o", str(out_path)
    )
    assert code == 0
    records = read_records(out_path)
    assert records[0]["score"] == 76.0  # exact M51.16 against M5116, as published
    assert set(records[0]) >= {"outcome", "trace", "exact_match"}


def test_progress_bar_never_touches_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "score", str(COMPLETIONS), "-o", "-", "--chunk-size", "2", "--progress", "always"
    )
    assert code == 0
    assert len([json.loads(line) for line in out.splitlines()]) == 21


@pytest.mark.parametrize(
    ("content", "name", "expected"),
    [
        (
            '{"completion": "x", "gold": "M5116"}\n' * 6 + '{"completion": "x", gold}\n',
            "rows.jsonl",
            "row 7: invalid JSON",
        ),
        ("completion,label\nx,M5116\n", "rows.csv", "field 'gold': missing column 'gold'"),
        ('{"completion": "x", "gold": 5116}\n', "rows.jsonl", "(got 5116)"),
        ('{"completion": "x", "gold": {"a": 1}}\n', "rows.jsonl", "not an object"),
        ("x", "rows.txt", "unknown file type '.txt'"),
        ("", "rows.jsonl", "the file is empty"),
        ("not parquet", "rows.parquet", "cannot read parquet file"),
    ],
)
def test_a_bad_input_file_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, name: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    code, out, err = run(capsys, "score", str(path))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"icdreward: error: {path}")
    assert expected in err
    assert "Traceback" not in err


def test_a_bad_row_late_in_the_file_leaves_no_output(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "rows.jsonl"
    good = json.dumps({"completion": "x", "gold": "M5116"})
    path.write_text("\n".join([good] * 9 + ['{"completion": "x"}']) + "\n", encoding="utf-8")
    out_path = tmp_path / "scores.jsonl"
    code, _, err = run(capsys, "score", str(path), "-o", str(out_path), "--chunk-size", "2")
    assert code == 2
    assert "row 10, field 'gold'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]


def test_a_bad_config_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('preset = "default"\n[rewards.hierarchy]\nweight = "heavy"\n')
    code, out, err = run(capsys, "score", str(COMPLETIONS), "--config", str(config))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert str(config) in err
    assert "rewards.hierarchy.weight" in err
    assert "'heavy'" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('preset = "default"\n[rewards.hierarchy\n', "malformed toml file"),
        ('preset = "default"\n[rewards.nope]\n', "rewards.nope"),
        ('[parser]\nname = "tags"\n[rewards.format]\nwhat = 1\n', "rewards.format"),
    ],
)
def test_config_errors_of_every_kind_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, expected: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    code, _, err = run(capsys, "score", str(COMPLETIONS), "--config", str(config))
    assert code == 2
    assert err.count("\n") == 1
    assert expected in err


def test_unknown_preset_and_missing_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "score", str(COMPLETIONS), "--preset", "nope")
    assert code == 2
    assert "unknown preset" in err
    assert "deepicd-r1, default" in err
    code, _, err = run(capsys, "score", str(COMPLETIONS), "--config", "/no/such/config.toml")
    assert code == 2
    assert "/no/such/config.toml" in err


def test_output_cannot_be_written(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "scores.jsonl"
    code, _, err = run(capsys, "score", str(COMPLETIONS), "-o", str(target))
    assert code == 2
    assert str(target) in err
    assert "cannot write" in err


def test_output_must_not_overwrite_the_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "rows.jsonl"
    original = '{"completion": "x", "gold": "M5116"}\n'
    path.write_text(original)
    code, _, err = run(capsys, "score", str(path), "-o", str(path))
    assert code == 2
    assert "overwrite INPUT" in err
    assert path.read_text() == original


def test_a_raising_component_exits_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def fail(self: RewardEngine, *args: Any, **kwargs: Any) -> Any:
        raise ComponentFailure("judge", {3: "TimeoutError: no answer"})

    monkeypatch.setattr(RewardEngine, "score", fail)
    out_path = tmp_path / "scores.jsonl"
    code, _, err = run(capsys, "score", str(COMPLETIONS), "-o", str(out_path))
    assert code == 1
    assert err.count("\n") == 1
    assert "reward component 'judge' failed" in err
    assert not out_path.exists()


def test_a_broken_plugin_is_one_warning_line_while_scoring(
    capsys: pytest.CaptureFixture[str], broken_plugin: None
) -> None:
    code, out, err = run(capsys, "score", str(COMPLETIONS), "--json")
    assert code == 0
    assert json.loads(out)["rows"] == 21
    lines = err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("icdreward: warning: icdreward plugin 'broken'")
    assert "icdreward_test_no_such_module" in lines[0]


# -- plugins ------------------------------------------------------------------------


def test_plugins_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "plugins")
    assert code == 0
    assert err == ""
    for name in ("exact", "format", "hierarchy", "reasoning", "tags"):
        assert name in out
    assert "icdreward_plugins.format_parser" in out
    assert "failed" not in out


def test_plugins_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plugins", "--json")
    assert code == 0
    report = json.loads(out)
    by_name = {p["name"]: p for p in report["plugins"]}
    assert {"exact", "format", "hierarchy", "reasoning"} <= set(by_name)
    assert by_name["format"]["rewards"] == ["format"]
    assert by_name["format"]["parsers"] == ["tags"]
    assert by_name["hierarchy"]["distribution"] == "icdreward"
    assert by_name["hierarchy"]["version"] == icdreward.__version__
    assert report["failed"] == []


def test_plugins_lists_a_failed_plugin_once(
    capsys: pytest.CaptureFixture[str], broken_plugin: None
) -> None:
    code, out, err = run(capsys, "plugins", "--json")
    assert code == 1
    assert err == ""  # reported in the listing, not as a warning too
    failed = json.loads(out)["failed"]
    assert [f["name"] for f in failed] == ["broken"]
    assert "icdreward_test_no_such_module" in failed[0]["reason"]
    code, out, err = run(capsys, "plugins")
    assert code == 1
    assert err == ""
    assert "1 plugin failed to load" in out
    assert out.count("broken") == 1


# -- code ---------------------------------------------------------------------------


def test_code_valid(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "code", "m51.16")
    assert code == 0
    assert err == ""
    assert out.startswith("M51.16  Intervertebral disc disorders with radiculopathy, lumbar region")
    assert "billable   yes" in out
    assert "M50-M54  Other dorsopathies" in out
    assert "13 > M50-M54 > M51 > M511" in out


def test_code_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "code", "E11.9", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["code"] == "E119"
    assert report["dotted"] == "E11.9"
    assert report["valid"] is True
    assert report["billable"] is True
    assert report["description"] == "Type 2 diabetes mellitus without complications"
    assert report["chapter"]["id"] == "4"
    assert report["chapter"]["title"].startswith("Endocrine, nutritional and metabolic diseases")
    assert report["block"]["id"] == "E08-E13"
    assert report["category"]["code"] == "E11"
    assert report["parent"] == "E11"
    assert report["ancestors"] == ["4", "E08-E13", "E11"]


def test_code_category_is_valid_but_not_billable(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "code", "M51", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["valid"] is True
    assert report["billable"] is False
    assert report["kind"] == "category"
    assert report["parent"] == "M50-M54"


def test_unknown_code_prints_what_is_known(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "code", "M51.1X", "--json")
    assert code == 1
    report = json.loads(out)
    assert report["valid"] is False
    assert report["billable"] is False
    assert report["description"] is None
    assert report["category"]["code"] == "M51"
    assert report["block"]["id"] == "M50-M54"
    assert report["ancestors"] == ["13", "M50-M54", "M51", "M511"]
    assert report["parent"] == "M511"
    code, out, _ = run(capsys, "code", "M51.1X")
    assert code == 1
    assert "M51.1X is not an ICD-10-CM 2026 code" in out
    assert "closest code  M51.1" in out


def test_unknown_category(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "code", "T3A", "--json")
    assert code == 1
    report = json.loads(out)
    assert report["chapter"] is None
    assert report["category"] is None
    assert report["ancestors"] == []
    assert report["text_match"] is None


def test_free_text_suggests_a_code(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "code", "type 2 diabetes mellitus without complications", "--json")
    assert code == 1
    assert json.loads(out)["text_match"]["code"] == "E119"


# -- the installed script -----------------------------------------------------------


def script() -> str:
    path = Path(sys.executable).with_name("icdreward")
    assert path.exists(), f"console script not installed next to {sys.executable}"
    return str(path)


def test_installed_script(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "120"}
    done = subprocess.run(
        [script(), "score", str(COMPLETIONS), "--output", "-"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(records) == 21
    assert "21 rows scored" in done.stderr

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"completion": "x"}\n')
    done = subprocess.run(
        [script(), "score", str(bad)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == f"icdreward: error: {bad}, row 1, field 'gold': missing field 'gold'\n"

    done = subprocess.run(
        [script(), "--version"], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"icdreward {icdreward.__version__}"


def test_score_progress_in_a_log_file_is_plain_lines(tmp_path: Path) -> None:
    # stderr is a file, as under SLURM: no live bar, but timestamped lines.
    log = tmp_path / "job.err"
    out_path = tmp_path / "rewards.jsonl"
    command = [script(), "score", str(COMPLETIONS), "-o", str(out_path), "--chunk-size", "2"]
    with log.open("w", encoding="utf-8") as stderr:
        done = subprocess.run(
            [*command, "--progress", "always"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            timeout=300,
            check=False,
        )
    assert done.returncode == 0
    lines = log.read_text(encoding="utf-8").splitlines()
    assert "\x1b" not in "".join(lines)  # no cursor control or colour
    pattern = re.compile(
        r"icdreward score \[ *\d+\.\d s\] scored (\d+) rows \((\d+)% of "
        + re.escape(str(COMPLETIONS))
        + r"\)"
    )
    matches = [pattern.fullmatch(line) for line in lines]
    assert lines and all(matches), lines
    assert len(lines) >= 2  # the first chunk's line and the final one
    final = matches[-1]
    assert final is not None
    assert (final.group(1), final.group(2)) == ("21", "100")
    assert len(read_records(out_path)) == 21

    # auto: stderr is not a terminal, so nothing.
    with log.open("w", encoding="utf-8") as stderr:
        done = subprocess.run(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=300, check=False
        )
    assert done.returncode == 0
    assert log.read_text(encoding="utf-8") == ""
