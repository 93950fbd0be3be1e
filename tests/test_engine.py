"""The engine: combining components, failure policies, async components, groups, bad input."""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

import attrs
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from icdreward import (
    ComponentFailure,
    Reward,
    RewardEngine,
    RewardOutput,
    ScoringBatch,
    load_config,
)
from icdreward.plugin import PluginManager, hookimpl

from _texts import completion

GOLD = "M5116"


@attrs.frozen
class _TriggerParams:
    trigger: str = "E119"


class Exploding(Reward):
    """Raises whenever the batch holds the trigger code: isolates per sample."""

    name = "exploding"
    Params = _TriggerParams

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        if self.params.trigger in batch.parsed.codes:
            raise RuntimeError("boom")
        return torch.ones(batch.size)


class ExplodingAsync(Exploding):
    """:class:`Exploding` as an async component: isolated by the same routine."""

    name = "exploding_async"
    is_async = True

    async def ascore(self, batch: ScoringBatch) -> torch.Tensor:
        await asyncio.sleep(0)
        return self.score(batch)


@attrs.frozen
class _HugeParams:
    value: float = 3e38
    negative_on: str = ""  # samples with this code get -value


class Huge(Reward):
    """Finite float32 values at the edge of float32's range."""

    name = "huge"
    Params = _HugeParams

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        sign = [-1.0 if c == self.params.negative_on else 1.0 for c in batch.parsed.codes]
        return torch.tensor(sign, dtype=torch.float32) * self.params.value


class NotANumber(Reward):
    name = "nan"

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        out = torch.ones(batch.size)
        out[0] = math.nan
        return out


class WrongShape(Reward):
    name = "wrong_shape"

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        return torch.ones(batch.size + 1)


class Flaky(Reward):
    """Reports an infrastructure failure on odd samples, like a judge timing out."""

    name = "flaky"

    def score(self, batch: ScoringBatch) -> RewardOutput:
        failed = torch.arange(batch.size) % 2 == 1
        reasons = ["timeout" if f else None for f in failed.tolist()]
        return RewardOutput(values=torch.full((batch.size,), 2.0), failed=failed, reasons=reasons)


class SlowAsync(Reward):
    name = "slow_async"
    is_async = True

    async def ascore(self, batch: ScoringBatch) -> torch.Tensor:
        await asyncio.sleep(0.01)
        return torch.full((batch.size,), 0.5)


class AlwaysFails(Reward):
    """Fails on every sample, like a component during an outage; counts its calls."""

    name = "always_fails"
    calls = 0

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        type(self).calls += 1
        raise ConnectionError("service down")


class OtherDevice(Reward):
    """Returns a tensor that needs a gradient on another device (meta stands in for CUDA)."""

    name = "other_device"

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        values = torch.ones(batch.size, requires_grad=True) * 2
        assert values.requires_grad
        return values


class Blocking(Reward):
    """An async component that waits until released (to close the engine meanwhile)."""

    name = "blocking"
    is_async = True
    started = threading.Event()

    async def ascore(self, batch: ScoringBatch) -> torch.Tensor:
        type(self).started.set()
        await asyncio.sleep(30)
        return torch.zeros(batch.size)


class ReadsExtras(Reward):
    name = "reads_extras"

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        return torch.tensor([float(x) for x in batch.extras["difficulty"]])


class _TestPlugin:
    @hookimpl
    def icdreward_register_rewards(self, register: Any) -> None:
        for cls in (Exploding, ExplodingAsync, NotANumber, WrongShape, Flaky, SlowAsync,
                    AlwaysFails, OtherDevice, Blocking, ReadsExtras, Huge):  # fmt: skip
            register(cls)


def engine(config: dict[str, Any]) -> RewardEngine:
    manager = PluginManager()
    manager.register(_TestPlugin(), name="test-plugin")
    return RewardEngine(load_config(config), plugin_manager=manager)


def test_result_shapes_records_and_weighted_total(default_engine: RewardEngine) -> None:
    texts = [completion("M5116"), completion("M5117"), "", None]
    result = default_engine.score(texts, [GOLD] * 4)
    assert result.total.dtype == torch.float32 and result.total.shape == (4,)
    assert result.matrix.shape == (4, len(default_engine.names))
    weights = torch.tensor([default_engine.weights[n] for n in result.names])
    assert torch.allclose(result.total, (result.matrix * weights).sum(1))
    records = result.to_records()
    assert [r["score"] for r in records] == pytest.approx(result.total.tolist(), abs=1e-6)
    assert set(records[0]) == {"score", *default_engine.names, "code", "parse_failure",
                               "invalid_code", "gold_missing", "failed"}  # fmt: skip
    assert records[2]["parse_failure"] is True and records[0]["code"] == "M5116"


def test_one_failing_sample_is_isolated_and_flagged() -> None:
    e = engine({"rewards": {"exploding": {}}})
    texts = [completion(c) for c in ["M5116", "E119", "I10", "E119", "J189"]]
    result = e.score(texts, [GOLD] * 5)
    assert result.failed["exploding"].tolist() == [False, True, False, True, False]
    assert result.components["exploding"].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert result.failure_reasons["exploding"][1] == "RuntimeError: boom"
    assert result.to_records()[1]["failed"] == ["exploding"]


def test_sync_and_async_components_isolate_the_same_samples() -> None:
    e = engine({"rewards": {"exploding": {}, "exploding_async": {}}})
    codes = ["I10", "E119", "I10", "I10", "E119", "J189", "I10"]
    result = e.score([completion(c) for c in codes], [GOLD] * len(codes))
    expected = [c == "E119" for c in codes]
    assert result.failed["exploding"].tolist() == expected
    assert result.failed["exploding_async"].tolist() == expected
    assert result.failure_reasons["exploding_async"][1] == "RuntimeError: boom"
    assert result.total.tolist() == [0.0 if bad else 2.0 for bad in expected]


def test_abstain_policy_leaves_the_component_out() -> None:
    e = engine({"rewards": {"flaky": {"on_failure": "abstain"}, "exploding": {"weight": 3.0}}})
    result = e.score([completion("I10")] * 4, [GOLD] * 4)
    assert result.total.tolist() == [5.0, 3.0, 5.0, 3.0]
    assert result.included[:, 0].tolist() == [True, False, True, False]
    assert [r["flaky"] for r in result.to_records()] == [2.0, None, 2.0, None]


def test_fallback_policy_uses_the_fallback_value() -> None:
    e = engine({"failure": {"policy": "fallback", "fallback": -0.5}, "rewards": {"flaky": {}}})
    result = e.score([completion("I10")] * 2, [GOLD] * 2)
    assert result.total.tolist() == [2.0, -0.5]
    assert result.failed["flaky"].tolist() == [False, True]


def test_raise_policy_raises_naming_component_and_sample() -> None:
    e = engine({"failure": {"policy": "raise"}, "rewards": {"flaky": {}}})
    with pytest.raises(ComponentFailure, match=r"'flaky' failed on 1 sample.*sample 1: timeout"):
        e.score([completion("I10")] * 2, [GOLD] * 2)


def test_nan_and_wrong_shapes_never_reach_the_total() -> None:
    e = engine({"rewards": {"nan": {}, "wrong_shape": {}}})
    result = e.score([completion("I10")] * 3, [GOLD] * 3)
    assert torch.isfinite(result.total).all()
    assert result.failed["nan"].tolist() == [True, False, False]
    assert result.failure_reasons["nan"][0] == "returned a non-finite value"
    assert result.failed["wrong_shape"].all()
    assert result.total.tolist() == [0.0, 1.0, 1.0]


def test_async_components_from_sync_code_threads_and_running_loops() -> None:
    e = engine({"rewards": {"slow_async": {}, "exploding": {}}})
    texts, golds = [completion("I10")] * 3, [GOLD] * 3
    assert e.score(texts, golds).total.tolist() == [1.5] * 3

    results: list[list[float]] = []
    threads = [threading.Thread(target=lambda: results.append(e.score(texts, golds).total.tolist()))
               for _ in range(4)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [[1.5] * 3] * 4

    async def inside_a_loop() -> list[float]:
        sync_result = e.score(texts, golds)  # a sync call from inside a running loop
        async_result = await e.ascore(texts, golds)
        assert sync_result.total.tolist() == async_result.total.tolist()
        return async_result.total.tolist()

    assert asyncio.run(inside_a_loop()) == [1.5] * 3
    e.close()


def test_group_statistics(default_engine: RewardEngine) -> None:
    texts = [completion("M5116"), completion("M5116"), completion("M5116"), completion("J189")]
    result = default_engine.score(texts, [GOLD] * 4, group_ids=["a", "a", "b", "b"])
    groups = result.groups
    assert groups is not None and groups.n_groups == 2
    totals = result.total.tolist()
    assert groups.mean.tolist() == pytest.approx([sum(totals[:2]) / 2, sum(totals[2:]) / 2])
    assert groups.std.tolist() == pytest.approx(
        [float(np.std(totals[:2], ddof=1)), float(np.std(totals[2:], ddof=1))], abs=1e-5
    )
    assert groups.all_equal.tolist() == [True, False]
    assert groups.all_equal_share == 0.5


@pytest.mark.parametrize(
    ("gold", "expected"),
    [
        ("M51.16", ("M5116",)),
        (["m5116", "E11.9"], ("M5116", "E119")),
        ("M5116; E119", ("M5116", "E119")),
        (np.array(["M5116", "E119"]), ("M5116", "E119")),
        (None, ()),
        (42, ()),
        ({"code": "M5116"}, ()),
    ],
)
def test_gold_formats(
    default_engine: RewardEngine, gold: object, expected: tuple[str, ...]
) -> None:
    assert default_engine._gold_codes(gold) == expected


def test_missing_gold_scores_without_error(default_engine: RewardEngine) -> None:
    result = default_engine.score([completion("M5116")], [None])
    assert result.components["hierarchy"].tolist() == [0.0]


def test_length_mismatch_is_a_clear_error(default_engine: RewardEngine) -> None:
    with pytest.raises(ValueError, match="golds has 1 entries for 2 completions"):
        default_engine.score(["a", "b"], ["M5116"])
    with pytest.raises(ValueError, match="notes has 1 entries"):
        default_engine.score(["a", "b"], ["M5116"] * 2, notes=["n"])


def test_empty_batch(default_engine: RewardEngine, caplog: pytest.LogCaptureFixture) -> None:
    result = default_engine.score([], [], group_ids=[])
    assert result.total.shape == (0,)
    assert result.to_records() == []
    assert caplog.records == []  # no component failed on the empty batch


_ANYTHING = st.one_of(
    st.none(), st.integers(), st.floats(), st.binary(max_size=64), st.text(max_size=200),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
    st.lists(st.text(max_size=5), max_size=3),
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.lists(_ANYTHING, min_size=1, max_size=6))
def test_any_completion_gets_a_finite_score(
    default_engine: RewardEngine, values: list[Any]
) -> None:
    for engine_ in (default_engine,):
        result = engine_.score(values, [GOLD] * len(values), notes=["note"] * len(values))
        assert torch.isfinite(result.total).all()
        assert len(result.to_records()) == len(values)


def test_huge_and_pathological_completions(deepicd: RewardEngine) -> None:
    texts = ["x" * 10_000_000, "\n" * 100_000, "<think>" * 20_000, "</think><diagnosis>" * 5000]
    result = deepicd.score(texts, [GOLD] * 4)
    assert torch.isfinite(result.total).all()
    assert result.parse_failure.tolist()[0] is True


def test_an_outage_costs_a_bounded_number_of_calls() -> None:
    e = engine({"rewards": {"always_fails": {}}})
    AlwaysFails.calls = 0
    result = e.score([completion("I10")] * 4096, [GOLD] * 4096)
    assert result.failed["always_fails"].all()
    assert result.failure_reasons["always_fails"][0] == "ConnectionError: service down"
    assert AlwaysFails.calls <= 1 + 64  # not 2B - 1 = 8191


def test_component_tensors_are_detached_and_moved_to_the_cpu() -> None:
    e = engine({"rewards": {"other_device": {}}})
    result = e.score([completion("I10")] * 2, [GOLD] * 2)
    assert result.total.tolist() == [2.0, 2.0]
    assert not result.total.requires_grad


def test_closing_the_engine_during_a_score_fails_that_score_cleanly() -> None:
    e = engine({"rewards": {"blocking": {}}})
    errors: list[BaseException] = []

    def run() -> None:
        try:
            e.score([completion("I10")], [GOLD])
        except BaseException as exc:  # the test inspects it
            errors.append(exc)

    Blocking.started.clear()
    worker = threading.Thread(target=run)
    worker.start()
    assert Blocking.started.wait(5)
    e.close()
    worker.join(5)
    assert not worker.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert "closed while this batch was being scored" in str(errors[0])


def test_a_dropped_engine_does_not_leave_its_loop_thread() -> None:
    import gc

    def loops() -> int:
        return sum(t.name == "icdreward-loop" for t in threading.enumerate())

    before = loops()
    e = engine({"rewards": {"slow_async": {}}})
    e.score([completion("I10")], [GOLD])
    assert loops() == before + 1
    del e
    gc.collect()
    assert loops() == before


def test_missing_golds_are_flagged_and_logged(
    default_engine: RewardEngine, caplog: pytest.LogCaptureFixture
) -> None:
    golds: list[object] = ["M5116", None, "", "not a code at all", 42]
    result = default_engine.score([completion("M5116")] * 5, golds)
    assert result.gold_missing.tolist() == [False, True, True, False, True]
    assert [r["gold_missing"] for r in result.to_records()] == result.gold_missing.tolist()
    assert "3 of 5 samples have no readable gold code" in caplog.text


def test_a_json_list_gold_means_the_same_as_in_input_files(default_engine: RewardEngine) -> None:
    result = default_engine.score([completion("E119")], ['["M5116", "E11.9"]'])
    assert result.components["hierarchy"].tolist() == [pytest.approx(0.5)]  # secondary gold


@pytest.mark.parametrize(
    "group_ids",
    [
        [0.2, 0.2, 0.7, 0.7],
        torch.tensor([0.2, 0.2, 0.7, 0.7]),
        [2**70, 2**70, 5, 5],
        [("a", 1), ("a", 1), ["unhashable"], ["unhashable"]],
    ],
)
def test_group_ids_of_any_kind(default_engine: RewardEngine, group_ids: Any) -> None:
    texts = [completion("M5116"), completion("M5116"), completion("M5116"), completion("J189")]
    result = default_engine.score(texts, [GOLD] * 4, group_ids=group_ids)
    assert result.groups is not None
    assert result.groups.n_groups == 2
    assert result.groups.all_equal.tolist() == [True, False]


def test_extras_reach_components_and_survive_isolation() -> None:
    e = engine({"rewards": {"reads_extras": {}, "exploding": {}}})
    texts = [completion(c) for c in ["I10", "E119", "I10"]]
    result = e.score(texts, [GOLD] * 3, extras={"difficulty": [1, 2, 3]})
    assert result.components["reads_extras"].tolist() == [1.0, 2.0, 3.0]
    assert result.failed["exploding"].tolist() == [False, True, False]
    with pytest.raises(ValueError, match=r"extras\['difficulty'\] has 1 entries"):
        e.score(texts, [GOLD] * 3, extras={"difficulty": [1]})


def _overflowing(failure: dict[str, Any] | None = None) -> RewardEngine:
    rewards = {"a": {"component": "huge"}, "b": {"component": "huge"}, "exact": {}}
    return engine({"rewards": rewards, "failure": failure or {}})


def test_an_overflowing_total_is_a_flagged_failure_not_a_silent_zero(
    caplog: pytest.LogCaptureFixture,
) -> None:
    result = _overflowing({"fallback": -2.0}).score([completion("M5116")] * 2, [GOLD] * 2)
    assert result.components["a"].tolist() == [pytest.approx(3e38)] * 2  # finite components
    assert result.total.tolist() == [-2.0, -2.0]  # the engine-wide fallback
    assert result.total_failed.tolist() == [True, True]
    assert result.total_reasons[0] == "the weighted total of the components does not fit float32"
    assert [r["failed"] for r in result.to_records()] == [["score"], ["score"]]
    assert "the weighted total of 2 of 2 samples does not fit float32" in caplog.text
    assert result.summary()[0].failed == 2


def test_a_huge_weight_overflows_like_huge_values() -> None:
    e = engine({"rewards": {"huge": {"value": 10.0, "weight": 1e38}, "exact": {}}})
    result = e.score([completion("M5116"), completion("I10")], [GOLD] * 2)
    assert result.total_failed.tolist() == [True, True]
    assert result.total.tolist() == [0.0, 0.0]


def test_totals_are_summed_in_float64() -> None:
    # 3e38 + 3e38 - 3e38 overflows float32 half-way; in float64 the total is 3e38.
    rewards = {
        "a": {"component": "huge"},
        "b": {"component": "huge"},
        "c": {"component": "huge", "negative_on": "M5116"},
    }
    result = engine({"rewards": rewards}).score([completion("M5116")], [GOLD])
    assert result.total.tolist() == [pytest.approx(3e38)]
    assert not result.total_failed.any()


def test_an_overflowing_total_abstains_or_raises_by_policy() -> None:
    texts = [completion("M5116"), completion("I10")]
    abstained = _overflowing({"policy": "abstain"}).score(texts, [GOLD] * 2)
    assert abstained.total_included.tolist() == [False, False]
    assert [r["score"] for r in abstained.to_records()] == [None, None]
    assert math.isnan(abstained.summary()[0].mean)  # no total to average, not a 0
    with pytest.raises(ComponentFailure, match=r"'score'.*does not fit float32"):
        _overflowing({"policy": "raise"}).score(texts, [GOLD] * 2)


def test_group_statistics_that_do_not_fit_float32_are_flagged() -> None:
    from icdreward.groups import group_statistics

    total = torch.tensor([3e38, -3e38, 1.0, 1.0, 5.0])
    stats = group_statistics(total, torch.tensor([0, 0, 1, 1, 2]))
    assert stats.failed.tolist() == [True, False, False]  # std of group 0 overflows
    assert stats.mean.tolist()[0] == 0.0 and stats.std.tolist()[0] == 0.0
    assert stats.all_equal.tolist() == [False, True, True]
    assert stats.all_equal_share == 1.0  # of the groups with statistics
    advantages = stats.advantages(total, torch.tensor([0, 0, 1, 1, 2]))
    assert torch.isfinite(advantages).all() and advantages[:2].tolist() == [0.0, 0.0]
    valid = torch.tensor([True, True, True, True, False])
    only = group_statistics(total, torch.tensor([0, 0, 1, 1, 2]), valid=valid)
    assert only.failed.tolist() == [True, False, True]  # group 2 has no total left
    assert only.size.tolist() == [2, 2, 1]


def test_abstained_totals_are_left_out_of_their_group() -> None:
    rewards = {
        "a": {"component": "huge", "negative_on": "I10"},
        "b": {"component": "huge"},
        "exact": {},
    }
    e = engine({"rewards": rewards, "failure": {"policy": "abstain"}})
    texts = [completion(c) for c in ["M5116", "I10", "M5116", "M5116"]]
    result = e.score(texts, [GOLD] * 4, group_ids=[0, 0, 1, 1])
    assert result.total_included.tolist() == [False, True, False, False]
    assert result.groups is not None
    assert result.groups.failed.tolist() == [False, True]
    assert result.groups.mean.tolist() == [0.0, 0.0]  # group 0: only the I10 sample, total 0


def test_trl_gets_none_where_the_total_abstained() -> None:
    from icdreward_trl import TRLRewards

    rewards = TRLRewards(_overflowing({"policy": "abstain"}))
    texts = [completion("M5116")]
    assert rewards.total(prompts=["p"], completions=texts, codes=[[GOLD]]) == [None]
