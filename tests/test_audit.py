"""``icdreward.audit`` and ``icdreward audit``: degenerate strategies against honest rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from icdreward import Reward, RewardEngine, ScoringBatch
from icdreward.audit import AuditRow, HonestRow, Strategy, audit, bundled_rows
from icdreward.cli import main
from icdreward.codeset import load_codeset
from icdreward.plugin import Register, hookimpl
from icdreward.plugin.testing import engine_with_plugins
from icdreward_plugins.strategies import BUILTIN_STRATEGIES

HACKABLE = 'preset = "default"\n\n[rewards.reasoning]\nweight = 10.0\n'


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def default_engine() -> RewardEngine:
    return RewardEngine.from_preset("default")


@pytest.fixture(scope="module")
def row() -> AuditRow:
    think = "Disc extrusion at L4-L5 with an L5 radiculopathy."
    honest = think + "</think>\n<diagnosis>M51.16</diagnosis>"
    return AuditRow(
        note="Back pain radiating to the left leg; MRI shows an L4-L5 disc extrusion.",
        golds=("M5116",),
        completion=honest,
        think=think,
        answer="M51.16",
        code="M5116",
        codeset=load_codeset(),
    )


# -- the rows and the strategies ---------------------------------------------------------


def test_bundled_rows_are_honest_and_parse(default_engine: RewardEngine) -> None:
    rows = bundled_rows()
    assert len(rows) >= 10
    assert all(r.note and r.gold and "</diagnosis>" in r.completion for r in rows)
    report = audit(default_engine, rows, only=["empty_trace"])
    assert (report.rows, report.skipped) == (len(rows), 0)


def test_other_codes_are_valid_neighbours(row: AuditRow) -> None:
    others = row.other_codes(5)
    assert len(others) == 5
    codeset = row.codeset
    assert all(codeset.is_valid(c) for c in others)
    assert "M51.16" not in others and len(set(others)) == 5
    assert codeset.normalize(others[0]).startswith("M511")  # the same subcategory first


def test_every_builtin_strategy_keeps_the_honest_code(
    default_engine: RewardEngine, row: AuditRow
) -> None:
    for cls in BUILTIN_STRATEGIES:
        text = cls().build(row)
        assert text is not None, cls.name
        assert text != row.completion, cls.name
        parsed = default_engine.parser.parse([text])
        # Whatever it games, the answer still starts with the honest code (or the
        # parser rejects it): no strategy wins by answering a better code.
        assert parsed.codes[0] in ("M5116", ""), (cls.name, parsed.codes[0])


def test_strategies_are_deterministic(row: AuditRow) -> None:
    for cls in BUILTIN_STRATEGIES:
        assert cls().build(row) == cls().build(row), cls.name


def test_completion_shape_follows_the_honest_completion(row: AuditRow) -> None:
    opened = AuditRow(
        row.note, row.golds, "<think>" + row.completion, row.think, row.answer, row.code,
        row.codeset,
    )  # fmt: skip
    assert opened.completion_with().startswith("<think>")
    assert not row.completion_with().startswith("<think>")


# -- the report ----------------------------------------------------------------------------


def test_report_counts_margins_and_payers(default_engine: RewardEngine) -> None:
    rows = bundled_rows()
    report = audit(default_engine, rows)
    honest = default_engine.score(
        [r.completion for r in rows], [r.gold for r in rows], [r.note for r in rows]
    )
    assert report.honest_mean == pytest.approx(float(honest.total.double().mean()))
    names = [s.name for s in report.strategies]
    assert names[: len(BUILTIN_STRATEGIES)] == [c.name for c in BUILTIN_STRATEGIES]
    by_name = {s.name: s for s in report.strategies}
    # Recompute one strategy's figures independently.
    copy = by_name["copy_note"]
    built = [r.completion.replace(r.completion.split("</think>")[0], r.note, 1) for r in rows]
    scored = default_engine.score(built, [r.gold for r in rows], [r.note for r in rows])
    margin = scored.total.double() - honest.total.double()
    assert copy.rows == len(rows)
    assert copy.mean_margin == pytest.approx(float(margin.mean()), abs=1e-6)
    assert copy.reach_share == pytest.approx(float((margin >= -1e-6).double().mean()))
    assert copy.worst_margin == pytest.approx(float(margin.max()), abs=1e-6)
    # No reasoning at all is paid less than reasoning, by both the total and the report.
    empty = by_name["empty_trace"]
    assert empty.mean_margin < 0 and not empty.exploits and empty.paid_by == {}
    json.dumps(report.to_dict())  # JSON-ready


def test_hackable_config_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "hackable.toml"
    config.write_text(HACKABLE, encoding="utf-8")
    code, out, _ = run(capsys, "audit", "--config", str(config), "--json")
    assert code == 1
    report = json.loads(out)
    assert not report["passed"]
    copied = next(s for s in report["strategies"] if s["name"] == "copy_note_descriptions")
    assert copied["exploits"] and copied["reach_share"] > 0
    assert next(iter(copied["paid_by"])) == "reasoning"  # the component that pays it most


def test_table_names_the_exploits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "hackable.toml"
    config.write_text(HACKABLE, encoding="utf-8")
    code, out, _ = run(capsys, "audit", "--config", str(config))
    assert code == 1
    assert "copy_note !" in out and "reach the honest score" in out
    assert "reasoning +" in out


def test_a_battery_honesty_beats_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["audit", "--preset", "default", "--json"]
    for name in ("empty_trace", "extra_pair", "repeat_trace"):
        argv += ["--strategy", name]
    code, out, _ = run(capsys, *argv)
    report = json.loads(out)
    assert code == 0 and report["passed"]
    assert [s["name"] for s in report["strategies"]] == [
        "empty_trace",
        "extra_pair",
        "repeat_trace",
    ]
    assert all(s["mean_margin"] < 0 for s in report["strategies"])


def test_deepicd_r1_ties_are_reported_as_exploits(capsys: pytest.CaptureFixture[str]) -> None:
    # The published reward pays any non-empty trace the same: copying the note ties with
    # honest reasoning, margin exactly 0. The audit must call that an exploit.
    code, out, _ = run(
        capsys, "audit", "--preset", "deepicd-r1", "--json", "--strategy", "copy_note"
    )
    report = json.loads(out)
    assert code == 1
    (copy,) = report["strategies"]
    assert copy["worst_margin"] == 0.0 and copy["reach_share"] == 1.0
    assert report["skipped"] > 0  # lower-case codes fail the published pattern


def test_unknown_strategy_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "audit", "--strategy", "copy_notes")
    assert code == 2
    assert "copy_notes" in err and "copy_note" in err


def test_malformed_input_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "rows.jsonl"
    bad.write_text('{"completion": "x", "gold": "M5116"}\n{not json\n', encoding="utf-8")
    code, _, err = run(capsys, "audit", str(bad))
    assert code == 2
    assert "rows.jsonl" in err


def test_rows_without_a_valid_code_are_skipped(default_engine: RewardEngine) -> None:
    rows = [*bundled_rows()[:3], HonestRow("A note.", ("M5116",), "no tags, no code")]
    report = audit(default_engine, rows, only=["copy_note"])
    assert (report.rows, report.skipped) == (3, 1)


# -- strategies from plugins ---------------------------------------------------------------


class _Mirror(Reward):
    """Pays 1 for a trace that repeats the note word for word: a deliberately bad reward."""

    name = "mirror"

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        notes = batch.notes or [""] * len(batch)
        think = batch.parsed.think
        return torch.tensor([float(bool(n) and n in t) for n, t in zip(notes, think, strict=True)])


class _Shout(Strategy):
    name = "shout"
    description = "the honest trace in capitals"

    def build(self, row: AuditRow) -> str | None:
        return row.completion_with(think=row.think.upper())


class _Broken(Strategy):
    name = "broken"
    description = "raises on every second row"

    def build(self, row: AuditRow) -> str | None:
        if row.index % 2:
            raise RuntimeError("no luck")
        return row.completion_with(think="short")


class _Plugin:
    @hookimpl
    def icdreward_register_rewards(self, register: Register) -> None:
        register(_Mirror)

    @hookimpl
    def icdreward_register_strategies(self, register: Register) -> None:
        register(_Shout)
        register(_Broken)


def _plugin_engine(**rewards: Any) -> RewardEngine:
    config = {"preset": "default", "rewards": rewards}
    return engine_with_plugins(("audit-test", _Plugin()), config=config)


def test_registered_strategies_run_and_a_plugin_reward_is_named() -> None:
    engine = _plugin_engine(mirror={"weight": 1.0})
    report = audit(engine)
    by_name = {s.name: s for s in report.strategies}
    assert {"shout", "broken", "copy_note"} <= set(by_name)
    copy = by_name["copy_note"]
    assert copy.exploits and "mirror" in copy.paid_by and copy.paid_by["mirror"] > 0.9
    broken = by_name["broken"]
    assert broken.errors == report.rows // 2 and "no luck" in (broken.first_error or "")
    assert broken.rows == report.rows - broken.errors


def test_plugin_manager_lists_strategies() -> None:
    engine = _plugin_engine()
    plugins = {p.name: p for p in engine.plugin_manager.plugins}
    assert plugins["audit-test"].strategies == ("shout", "broken")
    assert "copy_note" in plugins["strategies"].strategies


def test_registering_a_non_strategy_is_refused() -> None:
    class _Bad:
        @hookimpl
        def icdreward_register_strategies(self, register: Register) -> None:
            register(dict)

    with pytest.raises(Exception, match=r"icdreward\.audit\.Strategy"):
        _ = engine_with_plugins(("bad", _Bad()), preset="default").plugin_manager.registry


class _ChangesCode(Strategy):
    name = "changes_code"
    description = "answers another code (a broken strategy)"

    def build(self, row: AuditRow) -> str | None:
        return row.completion_with(answer=row.other_codes(1)[0])


def test_a_strategy_that_changes_the_code_is_left_out(default_engine: RewardEngine) -> None:
    report = audit(default_engine, strategies=[_ChangesCode()])
    (changed,) = report.strategies
    assert changed.changed_code == report.rows and changed.rows == 0
    assert not changed.exploits


def test_no_usable_row_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"completion": "no tags", "gold": "M5116", "note": "x"}\n', encoding="utf-8")
    code, _, err = run(capsys, "audit", str(rows))
    assert code == 2
    assert "rows.jsonl" in err and "valid code" in err


def test_plugins_command_lists_the_strategies(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plugins", "--json")
    assert code == 0
    entry = next(p for p in json.loads(out)["plugins"] if p["name"] == "strategies")
    assert entry["strategies"] == [cls.name for cls in BUILTIN_STRATEGIES]
