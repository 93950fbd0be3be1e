"""The TRL adapter: TRL's calling convention, abstaining, one scoring per batch, a GRPO run.

The last tests build a tiny Qwen2 and a byte-level BPE tokenizer offline (no hub), with
the functions of ``examples/trl_grpo_cpu.py``, and run real ``GRPOTrainer`` steps on CPU.
TRL is a test dependency: these tests run, never skip.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
import trl
from packaging.version import Version

from icdreward import Reward, RewardEngine, RewardOutput, ScoringBatch, load_config
from icdreward.monitors import MONITORS
from icdreward.plugin import PluginManager, hookimpl
from icdreward_plugins.judge import JudgeReward, JudgeStats
from icdreward_trl import SAMPLE_COLUMNS, TRLRewards, completion_text, group_ids, render_prompt

from _openai_server import OpenAITestServer
from _texts import completion

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "trl_grpo_cpu.py"


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("trl_grpo_cpu", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


example = _load_example()


class JudgeStub(Reward):
    """Like a judge that cannot judge a completion without a code: abstains there."""

    name = "judge_stub"

    def score(self, batch: ScoringBatch) -> RewardOutput:
        failed = torch.tensor([not code for code in batch.parsed.codes], dtype=torch.bool)
        reasons = ["no code to judge" if f else None for f in failed.tolist()]
        return RewardOutput(values=torch.full((batch.size,), 2.0), failed=failed, reasons=reasons)


class _StubPlugin:
    @hookimpl
    def icdreward_register_rewards(self, register: Any) -> None:
        register(JudgeStub)


@pytest.fixture(scope="module")
def judged() -> RewardEngine:
    """deepicd-r1 plus a component that abstains on completions without a code."""
    manager = PluginManager()
    manager.register(_StubPlugin(), name="stub-plugin")
    config = {
        "preset": "deepicd-r1",
        "rewards": {"judge_stub": {"weight": 0.5, "on_failure": "abstain"}},
    }
    return RewardEngine(load_config(config), plugin_manager=manager)


GOOD = completion("M51.16")
NEAR = completion("M51.17")
BAD = "I am not sure."
NOTE = "58-year-old man with low back pain radiating down the left leg."


class _Logs:
    def __init__(self) -> None:
        self.metrics: dict[str, list[float]] = {}
        self.extra: dict[str, list[Any]] = {}

    def log_metric(self, name: str, value: float) -> None:
        self.metrics.setdefault(name, []).append(value)

    def log_extra(self, column: str, values: list[Any]) -> None:
        self.extra.setdefault(column, []).extend(values)


def trl_kwargs(
    completions: list[Any], prompts: list[Any], logs: _Logs | None = None, **columns: Any
) -> dict[str, Any]:
    """Keyword arguments exactly as GRPOTrainer._calculate_rewards passes them (TRL 1.16)."""
    logs = logs or _Logs()
    kwargs: dict[str, Any] = {
        "prompts": prompts,
        "completions": completions,
        "completion_ids": [[1, 2, 3]] * len(completions),
    }
    kwargs.update({k: list(v) for k, v in columns.items()})
    kwargs.update(trainer_state=object(), log_extra=logs.log_extra, log_metric=logs.log_metric)
    return kwargs


def call_all(functions: list[Callable[..., list[float | None]]], kwargs: dict[str, Any]) -> list:
    return [f(**kwargs) for f in functions]


# -- the adapter with TRL's calling convention -----------------------------------------


def test_functions_are_named_after_components_with_the_engine_weights(judged: RewardEngine) -> None:
    rewards = TRLRewards(judged)
    assert rewards.names == ["format", "outcome", "trace", "exact_match", "judge_stub"]
    assert [f.__name__ for f in rewards.functions] == rewards.names
    assert [trl.trainer.utils.get_callable_name(f) for f in rewards.functions] == rewards.names
    assert rewards.weights == [1.0, 1.0, 1.0, 0.0, 0.5]
    assert trl.trainer.utils.get_callable_name(rewards.total) == "icdreward"
    prefixed = TRLRewards(judged, prefix="icd_", total_name="icd_total")
    assert prefixed.names[0] == "icd_format" and prefixed.total.__name__ == "icd_total"


def test_string_completions_give_components_and_none_where_abstaining(
    judged: RewardEngine,
) -> None:
    rewards = TRLRewards(judged)
    texts = [GOOD, NEAR, BAD, ""]
    kwargs = trl_kwargs(texts, ["p"] * 4, codes=[["M5116"]] * 4, note=[NOTE] * 4)
    format_, outcome, trace, exact, judge = call_all(rewards.functions, kwargs)
    expected = judged.score(texts, [["M5116"]] * 4, notes=[NOTE] * 4)
    assert outcome == pytest.approx(expected.components["outcome"].tolist())
    assert outcome[:2] == [75.0, 42.0] and exact[:3] == [1.0, 0.0, 0.0]
    assert format_[3] == -5.0  # the empty completion
    assert judge == [2.0, 2.0, None, None]  # abstains where there is no code
    # TRL's weighted sum of these (None as NaN, nansum) is the engine's total.
    matrix = torch.tensor([[math.nan if v is None else v for v in col] for col in
                           (format_, outcome, trace, exact, judge)]).T  # fmt: skip
    total = (matrix * torch.tensor(rewards.weights)).nansum(dim=1)
    assert total.tolist() == pytest.approx(expected.total.tolist())
    assert rewards.total(**kwargs) == pytest.approx(expected.total.tolist())


def test_chat_completions_score_like_their_assistant_content(judged: RewardEngine) -> None:
    texts = [GOOD, NEAR, BAD]
    chats = [[{"role": "assistant", "content": t}] for t in texts]
    parts = [{"role": "assistant", "content": [{"type": "text", "text": t}]} for t in texts]
    prompts = [[{"role": "user", "content": "note"}]] * 3
    plain = call_all(TRLRewards(judged).functions, trl_kwargs(texts, ["p"] * 3, gold=["M5116"] * 3))
    for form in (chats, parts):
        got = call_all(TRLRewards(judged).functions, trl_kwargs(form, prompts, gold=["M5116"] * 3))
        assert got == plain
    assert completion_text(chats[0]) == GOOD and completion_text(None) is None


def test_a_batch_is_scored_once_across_the_component_functions(
    judged: RewardEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    rewards = TRLRewards(judged)
    calls: list[int] = []
    score = judged.score

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[0]))
        return score(*args, **kwargs)

    monkeypatch.setattr(judged, "score", counting)
    kwargs = trl_kwargs([GOOD, BAD] * 4, ["a"] * 4 + ["b"] * 4, codes=["M5116"] * 8)
    first = call_all(rewards.functions, kwargs)
    assert calls == [8] and rewards.scorings == 1 and rewards.calls == 5
    # The next step's batch is scored again, even when it is equal to the last one ...
    assert call_all(rewards.functions, dict(kwargs)) == first
    assert calls == [8, 8]
    # ... and so is a different batch: the cache never serves a stale result.
    changed = trl_kwargs([NEAR, BAD] * 4, ["a"] * 4 + ["b"] * 4, codes=["M5116"] * 8)
    assert rewards.functions[0](**changed) is not None
    assert rewards.functions[1](**changed)[0] == 42.0
    other_gold = trl_kwargs([NEAR, BAD] * 4, ["a"] * 4 + ["b"] * 4, codes=["M5117"] * 8)
    assert rewards.functions[2](**other_gold) is not None
    assert rewards.functions[1](**other_gold)[0] == 75.0  # exact against M5117
    assert len(calls) == 4


def test_gold_columns_as_numpy_arrays_are_scored_once(judged: RewardEngine) -> None:
    # A dataset formatted as numpy hands over arrays; comparing them must not break caching.
    rewards = TRLRewards(judged)
    golds = [np.array(["M5116"]), np.array(["M5117", "I10"])]
    out = call_all(rewards.functions, trl_kwargs([GOOD, GOOD], ["p", "p"], codes=golds))
    assert out[1] == [75.0, 42.0] and rewards.scorings == 1


def test_group_ids_come_from_identical_prompts(judged: RewardEngine) -> None:
    chat_a = [{"role": "user", "content": "a"}]
    assert group_ids([chat_a, list(chat_a), [{"role": "user", "content": "b"}]]) == [0, 0, 1]
    rewards = TRLRewards(judged)
    rewards.total(**trl_kwargs([GOOD, GOOD, GOOD, BAD], ["x", "x", "y", "y"], gold=["M5116"] * 4))
    result = rewards.last_result
    assert result is not None and result.groups is not None
    assert result.groups.n_groups == 2 and result.groups.all_equal.tolist() == [True, False]


def test_every_batch_reports_monitors_failures_and_sample_flags(judged: RewardEngine) -> None:
    logs = _Logs()
    rewards = TRLRewards(judged)
    texts = [GOOD, BAD, completion("M5117"), completion("XYZ")]  # XYZ: not a code
    kwargs = trl_kwargs(texts, ["p", "p", "q", "q"], logs, codes=["M5116"] * 4, note=[NOTE] * 4)
    call_all(rewards.functions, kwargs)
    expected = judged.score(texts, ["M5116"] * 4, notes=[NOTE] * 4, group_ids=[0, 0, 1, 1])
    assert set(expected.monitors) == set(MONITORS)  # notes and groups: every monitor
    # Once per batch, not once per function: every value is a list of one.
    for name, value in expected.monitors.items():
        assert logs.metrics[f"icdreward/monitor/{name}"] == [pytest.approx(value)], name
    assert logs.metrics["icdreward/monitor/parse_failure"] == [0.25]
    assert logs.metrics["icdreward/monitor/invalid_code"] == [0.25]
    assert logs.metrics["icdreward/monitor/group_distinct_codes"] == [2.0]
    assert logs.metrics["icdreward/failed/judge_stub"] == [0.5]  # abstains without a code
    for name in ("format", "outcome", "trace", "exact_match", "score"):
        assert logs.metrics[f"icdreward/failed/{name}"] == [0.0], name
    assert logs.metrics["icdreward/failed"] == [pytest.approx(2 / 20)]
    assert logs.metrics["icdreward/all_equal_groups"] == [0.0]
    assert not any(k.endswith("/mean") for k in logs.metrics)  # TRL logs the components
    assert list(logs.extra) == list(SAMPLE_COLUMNS)
    assert logs.extra["icd_code"] == ["M5116", "", "M5117", ""]
    assert logs.extra["icd_parse_failure"] == [False, True, False, False]
    assert logs.extra["icd_invalid_code"] == [False, False, False, True]
    assert logs.extra["icd_failed"] == ["", "judge_stub", "", "judge_stub"]
    assert all(math.isfinite(v) for values in logs.metrics.values() for v in values)
    logs = _Logs()
    rewards.total(**trl_kwargs([GOOD, BAD], ["p", "p"], logs, codes=["M5116"] * 2))
    assert logs.metrics["icdreward/outcome/mean"] == [pytest.approx((75.0 - 1.0) / 2)]
    assert logs.metrics["icdreward/judge_stub/mean"] == [2.0]  # over the included sample only
    assert logs.metrics["icdreward/monitor/parse_failure"] == [0.5]
    assert "icdreward/monitor/note_copy" not in logs.metrics  # no notes, no copy monitor
    assert len(logs.extra["icd_failed"]) == 2


def test_flags_are_reported_with_the_monitors_turned_off() -> None:
    logs = _Logs()
    rewards = TRLRewards(RewardEngine(load_config({"preset": "deepicd-r1", "monitors": False})))
    rewards.total(**trl_kwargs([GOOD, BAD, ""], ["p"] * 3, logs, gold=["M5116"] * 3))
    monitors = {k for k in logs.metrics if k.startswith("icdreward/monitor/")}
    assert monitors == {"icdreward/monitor/parse_failure", "icdreward/monitor/invalid_code"}
    assert logs.metrics["icdreward/monitor/parse_failure"] == [pytest.approx(2 / 3)]
    assert logs.extra["icd_parse_failure"] == [False, True, True]


class Huge(Reward):
    """Finite in float32, but twice it is not: the weighted total overflows."""

    name = "huge"

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        return torch.tensor([3e38 if code else 0.0 for code in batch.parsed.codes])


class _HugePlugin:
    @hookimpl
    def icdreward_register_rewards(self, register: Any) -> None:
        register(Huge)
        register(JudgeStub)


def test_a_total_that_cannot_be_computed_is_reported_per_batch_and_per_sample() -> None:
    manager = PluginManager()
    manager.register(_HugePlugin(), name="huge-plugin")
    config = {
        "rewards": {"huge": {"weight": 2.0}, "judge_stub": {"on_failure": "abstain"}},
        "failure": {"policy": "abstain"},
    }
    rewards = TRLRewards(RewardEngine(load_config(config), plugin_manager=manager))
    logs = _Logs()
    out = rewards.total(**trl_kwargs([GOOD, BAD, NEAR], ["p"] * 3, logs, gold=["M5116"] * 3))
    assert out == [None, 0.0, None]
    assert logs.metrics["icdreward/failed/score"] == [pytest.approx(2 / 3)]
    assert logs.metrics["icdreward/failed/judge_stub"] == [pytest.approx(1 / 3)]
    assert logs.metrics["icdreward/failed/huge"] == [0.0]
    assert logs.extra["icd_failed"] == ["score", "judge_stub", "score"]


@pytest.fixture(scope="module")
def judge_server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer(lifetime=300, verdict=4) as server:
        yield server


def test_judge_counters_are_logged_as_per_batch_deltas(judge_server: OpenAITestServer) -> None:
    table = {"base_url": judge_server.url, "model": "judge-model", "timeout": 2.0, "retries": 1}
    engine = RewardEngine(load_config({"preset": "default", "rewards": {"judge": table}}))
    try:
        judge = engine.rewards["judge"]
        assert isinstance(judge, JudgeReward)
        rewards = TRLRewards(engine)
        assert rewards._counters.components == ("judge",)
        texts = [completion("M51.16", f"Radiculopathy, variant {i}.") for i in range(3)]
        logs = _Logs()
        for _ in range(2):  # the same batch twice: the second is answered from the cache
            kwargs = trl_kwargs(
                [*texts, BAD], ["p"] * 4, logs, codes=["M5116"] * 4, note=[NOTE] * 4
            )
            call_all(rewards.functions, kwargs)
        assert rewards.scorings == 2
        assert logs.metrics["icdreward/judge/requests"] == [3.0, 0.0]
        assert logs.metrics["icdreward/judge/verdicts"] == [3.0, 0.0]
        assert logs.metrics["icdreward/judge/cache_hits"] == [0.0, 3.0]
        assert logs.metrics["icdreward/judge/samples"] == [4.0, 4.0]
        assert logs.metrics["icdreward/judge/not_sent"] == [1.0, 1.0]  # BAD has no code
        assert logs.metrics["icdreward/judge/failures"] == [0.0, 0.0]
        assert logs.metrics["icdreward/failed/judge"] == [0.0, 0.0]
        assert set(JudgeStats().as_dict()) == {
            k.removeprefix("icdreward/judge/")
            for k in logs.metrics
            if k.startswith("icdreward/judge/")
        } - {"mean"}
        # Counters reset meanwhile: the delta is what was counted since the reset.
        judge.reset_stats()
        logs = _Logs()
        fresh = [completion("M51.16", "A new trace."), GOOD]
        call_all(
            rewards.functions,
            trl_kwargs(fresh, ["p"] * 2, logs, codes=["M5116"] * 2, note=[NOTE] * 2),
        )
        assert logs.metrics["icdreward/judge/requests"] == [2.0]
        assert logs.metrics["icdreward/judge/samples"] == [2.0]
    finally:
        engine.close()


def test_total_abstains_only_where_every_component_abstains() -> None:
    manager = PluginManager()
    manager.register(_StubPlugin(), name="stub-plugin")
    engine = RewardEngine(
        load_config({"rewards": {"judge_stub": {"on_failure": "abstain"}}}),
        plugin_manager=manager,
    )
    rewards = TRLRewards(engine)
    kwargs = trl_kwargs([GOOD, BAD], ["p", "p"], gold=["M5116"] * 2)
    assert rewards.total(**kwargs) == [2.0, None]
    assert rewards.functions[0](**kwargs) == [2.0, None]


def test_columns_are_configurable_and_a_missing_gold_column_is_named(
    judged: RewardEngine, caplog: pytest.LogCaptureFixture
) -> None:
    rewards = TRLRewards(judged, gold_column="label", note_column="admission")
    kwargs = trl_kwargs([GOOD], ["p"], label=["M5116"], admission=[NOTE])
    assert rewards.functions[1](**kwargs) == [75.0]
    with pytest.raises(KeyError, match=r"'label'.*\(admission, codes\)"):
        rewards.functions[1](**trl_kwargs([GOOD], ["p"], codes=["M5116"], admission=[NOTE]))
    with caplog.at_level(logging.WARNING, logger="icdreward_trl"):
        TRLRewards(judged).total(**trl_kwargs([GOOD], ["p"], gold=["M5116"]))
    assert "no note column 'note'" in caplog.text


def test_bad_batches_never_raise_into_the_trainer(
    judged: RewardEngine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rewards = TRLRewards(judged)
    junk: list[Any] = [None, 42, b"\xff", "", "<diagnosis>" * 1000, [{"content": None}], []]
    kwargs = trl_kwargs(junk, ["p"] * 7, gold=["M5116", None, "", ["X"], 7, "M5116", "M5116"])
    for values in call_all(rewards.functions, kwargs):
        assert len(values) == 7 and all(v is None or math.isfinite(v) for v in values)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("engine bug")

    monkeypatch.setattr(judged, "score", broken)
    logs = _Logs()
    with caplog.at_level(logging.ERROR, logger="icdreward_trl"):
        out = call_all(
            rewards.functions, trl_kwargs([GOOD, BAD], ["p"] * 2, logs, gold=["M5116"] * 2)
        )
    assert out == [[None, None]] * 5 and rewards.scorings == 2
    # No metric for a batch that was not scored, but the table's rows keep their columns.
    assert logs.metrics == {} and logs.extra == {c: [None, None] for c in SAMPLE_COLUMNS}
    assert "could not score a batch of 2" in caplog.text and "engine bug" in caplog.text
    with pytest.raises(RuntimeError, match="engine bug"):
        TRLRewards(judged, on_error="raise").total(**trl_kwargs([GOOD], ["p"], gold=["M5116"]))


def test_render_prompt_continues_the_prefilled_think(tiny_tokenizer: Any) -> None:
    text = render_prompt(tiny_tokenizer, NOTE)
    assert text.endswith("<|im_start|>assistant\n<think>") and NOTE in text
    assert render_prompt(tiny_tokenizer, NOTE, prefill_think=False).endswith("assistant\n")


# -- real GRPOTrainer ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_tokenizer() -> Any:
    notes = example.load_notes()
    corpus = [n["note"] for n in notes] + [e["completion"] for e in example.load_completions()]
    return example.build_tokenizer(corpus)


def test_trl_version_is_the_one_the_adapter_was_checked_against() -> None:
    # The facts the adapter and the example rely on (keyword-only calls, None as NaN,
    # conversational prompts rendered with add_generation_prompt=True) were read in 1.16.
    assert Version(trl.__version__) >= Version("1.16")


def test_trainer_calls_the_functions_with_its_real_convention(
    judged: RewardEngine, tiny_tokenizer: Any, tmp_path: Path
) -> None:
    """GRPOTrainer._calculate_rewards itself: NaN where a component abstained, one scoring."""
    rewards = TRLRewards(judged)
    notes = example.load_notes()[:2]
    trainer = trl.GRPOTrainer(
        model=example.build_model(tiny_tokenizer),
        reward_funcs=rewards.functions,
        args=example.build_config(tmp_path, steps=1, reward_weights=rewards.weights),
        train_dataset=example.build_dataset(tiny_tokenizer, notes, repeat=1),
        processing_class=tiny_tokenizer,
    )
    assert trainer.reward_func_names == rewards.names
    rows = [dict(trainer.train_dataset[i]) for i in (0, 0, 1, 1)]
    prompts = [r["prompt"] for r in rows]
    texts = [GOOD, BAD, completion("E11.65"), completion("E11.9")]
    for completions in (texts, [[{"role": "assistant", "content": t}] for t in texts]):
        before = rewards.scorings
        matrix = trainer._calculate_rewards(rows, prompts, completions, [[1]] * 4)
        assert rewards.scorings == before + 1  # one engine call for the five functions
        expected = judged.score(texts, [r["codes"] for r in rows])
        judge = matrix[:, rewards.names.index("judge_stub")]
        assert torch.isnan(judge).tolist() == [False, True, False, False]
        outcome = matrix[:, rewards.names.index("outcome")]
        assert torch.equal(outcome, expected.components["outcome"])
        weighted = (matrix * trainer.reward_weights).nansum(dim=1)
        assert torch.allclose(weighted, expected.total)
    assert trainer._pending_extra_logs["icd_code"][:4] == ["M5116", "", "E1165", "E119"]
    for column in SAMPLE_COLUMNS:  # two batches of four, once each
        assert len(trainer._pending_extra_logs[column]) == 8, column
    assert trainer._pending_extra_logs["icd_failed"][:2] == ["", "judge_stub"]
    pending = trainer._pending_metrics
    assert pending["icdreward/monitor/parse_failure"] == [0.25, 0.25]
    assert pending["icdreward/failed/judge_stub"] == [0.25, 0.25]


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_grpo_steps_on_cpu_log_every_component_and_move_the_weights(tmp_path: Path) -> None:
    steps = 3
    trainer, rewards = example.build_trainer(tmp_path, steps=steps, preset="default")
    before = _params(trainer.model)
    trainer.train()

    assert trainer.state.global_step == steps
    history = [e for e in trainer.state.log_history if "reward" in e]
    assert len(history) == steps
    for entry in history:
        for name in rewards.names:  # format, hierarchy, exact, reasoning
            for stat in ("mean", "std"):
                assert math.isfinite(entry[f"rewards/{name}/{stat}"]), (name, entry)
        assert math.isfinite(entry["reward"])
        # Every monitor, as TRL logged it: notes and GRPO groups are there, so all of them.
        for name in MONITORS:
            assert math.isfinite(entry[f"icdreward/monitor/{name}"]), (name, entry)
        assert 0.0 <= entry["icdreward/monitor/parse_failure"] <= 1.0
        assert 1.0 <= entry["icdreward/monitor/group_distinct_codes"] <= 4.0
        for name in [*rewards.names, "score"]:  # no component fails on rule rewards
            assert entry[f"icdreward/failed/{name}"] == 0.0, (name, entry)
    # One engine scoring per generation batch, although TRL called four functions.
    assert rewards.scorings == steps and rewards.calls == steps * len(rewards.names)
    # What TRL logged is what icdreward computed for the last batch.
    last = rewards.last_result
    assert last is not None
    for name in rewards.names:
        assert history[-1][f"rewards/{name}/mean"] == pytest.approx(
            float(last.components[name].mean()), abs=1e-5
        )
    assert history[-1]["reward"] == pytest.approx(float(last.total.mean()), abs=1e-5)
    for name, value in last.monitors.items():
        assert history[-1][f"icdreward/monitor/{name}"] == pytest.approx(value, abs=1e-6)
    # The per-sample flags reached the completions table, one value per completion.
    table = trainer._logs["extra"]
    assert set(SAMPLE_COLUMNS) <= set(table)
    assert list(table["icd_code"])[-len(last) :] == list(last.parsed.codes)
    assert len({len(table[c]) for c in SAMPLE_COLUMNS}) == 1
    # The rewards differed within some group (else every advantage is 0 and nothing
    # is learned), and the GRPO update moved the weights.
    assert min(e["frac_reward_zero_std"] for e in history) < 1.0
    assert max(abs(e["grad_norm"]) for e in history) > 0.0
    after = _params(trainer.model)
    changed = [n for n in before if not torch.equal(before[n], after[n])]
    assert changed, "no parameter changed"
    assert sum(float((after[n] - before[n]).abs().sum()) for n in changed) > 0.0


def test_example_script_runs_the_total_form(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--output-dir", str(tmp_path), "--steps", "1", "--total", "--preset", "deepicd-r1"]
    assert example.main(argv) == 0
    out = capsys.readouterr().out
    assert "icdreward (weight 1)" in out and "engine scorings: 1 for 1" in out
    history = json.loads((tmp_path / "log_history.json").read_text())
    step = next(e for e in history if "reward" in e)
    assert math.isfinite(step["rewards/icdreward/mean"])
    for name in ("format", "outcome", "trace", "exact_match"):
        assert math.isfinite(step[f"icdreward/{name}/mean"])
        assert step[f"icdreward/failed/{name}"] == 0.0
    assert "icdreward/monitor/chapter_entropy: " in out  # the script prints the monitors
    assert all(math.isfinite(step[f"icdreward/monitor/{name}"]) for name in MONITORS)


class ReadsDifficulty(Reward):
    """Reads a dataset column that is neither the gold nor the note."""

    name = "reads_difficulty"

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        return torch.tensor([float(d) for d in batch.extras["difficulty"]])


class _ColumnPlugin:
    @hookimpl
    def icdreward_register_rewards(self, register: Any) -> None:
        register(ReadsDifficulty)


def test_dataset_columns_reach_the_components() -> None:
    manager = PluginManager()
    manager.register(_ColumnPlugin(), name="column-plugin")
    config = {"rewards": {"reads_difficulty": {}}}
    rewards = TRLRewards(RewardEngine(load_config(config), plugin_manager=manager))
    (function,) = rewards.functions
    batch = {"prompts": ["p", "p"], "completions": [GOOD, BAD], "codes": [["M5116"]] * 2}
    assert function(**batch, difficulty=[1, 3]) == [1.0, 3.0]
    # A batch that differs only in another column is a new batch, not the cached one.
    assert function(**batch, difficulty=[2, 2]) == [2.0, 2.0]
