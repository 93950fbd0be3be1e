"""The batching reward manager, alone and inside verl's own reward loop on Ray (CPU)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import verl
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict
from transformers import AutoTokenizer

from icdreward import RewardEngine
from icdreward.errors import ComponentFailure, ConfigError
from icdreward_verl._batcher import MicroBatcher
from icdreward_verl._records import FLAG_KEYS
from icdreward_verl.reward_manager import MONITOR_PREFIX, SAMPLE_MONITORS, IcdRewardManager

from _verl_batch import agent_loop_request, rollout_batch, valid_lengths

ROOT = Path(__file__).resolve().parents[2]
VERL_CONFIG = Path(verl.__file__).parent / "trainer" / "config"
MANAGER = [
    "reward.reward_manager.source=importlib",
    "reward.reward_manager.name=IcdRewardManager",
    "reward.reward_manager.module.path=pkg://icdreward_verl.reward_manager",
]

MONITOR_KEYS = tuple(MONITOR_PREFIX + name for name in SAMPLE_MONITORS)


def verl_config(tokenizer_dir: Path, *overrides: str) -> DictConfig:
    """verl's own trainer configuration, composed with ``overrides``."""
    with initialize_config_dir(config_dir=str(VERL_CONFIG), version_base=None):
        return compose(
            "ppo_trainer",
            overrides=[f"actor_rollout_ref.model.path={tokenizer_dir}", *MANAGER, *overrides],
        )


@pytest.fixture(scope="module")
def base_config(tokenizer_dir: Path) -> DictConfig:
    return verl_config(tokenizer_dir, "+reward.reward_kwargs.preset=deepicd-r1")


def with_kwargs(base: DictConfig, /, **kwargs: Any) -> DictConfig:
    config = base.copy()
    with open_dict(config):
        config.reward.reward_kwargs = kwargs
    return config


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


@pytest.fixture(scope="module")
def samples(example_completions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return example_completions


def engine_scores(engine: RewardEngine, batch: Any, tokenizer: Any) -> list[float]:
    """What the engine gives the decoded responses, scored on their own."""
    lengths = valid_lengths(batch).tolist()
    texts = [
        tokenizer.decode(batch.batch["responses"][i, :n], skip_special_tokens=True)
        for i, n in enumerate(lengths)
    ]
    golds = [r["ground_truth"] for r in batch.non_tensor_batch["reward_model"]]
    notes = [e["note"] for e in batch.non_tensor_batch["extra_info"]]
    return engine.score(texts, golds, notes=notes).total.tolist()


# -- the micro-batcher -------------------------------------------------------------------


class Recorder:
    """A scorer that records the batches it is given."""

    def __init__(self, fail_on: object = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_on = fail_on

    async def __call__(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        await asyncio.sleep(0)
        if self.fail_on == "batch" and 13 in items:
            raise RuntimeError("the whole batch failed")
        return [ValueError(f"bad {i}") if i == self.fail_on else i * 10 for i in items]


def test_full_batches_are_scored_at_once_and_the_rest_after_the_wait() -> None:
    recorder = Recorder()

    async def main() -> list[int]:
        batcher = MicroBatcher(recorder, max_size=8, max_wait=0.05)
        return await asyncio.gather(*(batcher.submit(i) for i in range(20)))

    assert asyncio.run(main()) == [i * 10 for i in range(20)]
    assert [len(b) for b in recorder.batches] == [8, 8, 4]
    assert sorted(i for b in recorder.batches for i in b) == list(range(20))


def test_staggered_items_wait_at_most_the_window() -> None:
    recorder = Recorder()

    async def main() -> float:
        loop = asyncio.get_running_loop()
        batcher = MicroBatcher(recorder, max_size=1000, max_wait=0.02)
        start = loop.time()
        first = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0.005)
        second = asyncio.ensure_future(batcher.submit(2))
        await asyncio.gather(first, second)
        return loop.time() - start

    elapsed = asyncio.run(main())
    # Both rode in one batch that started when the window of the first one closed.
    assert recorder.batches == [[1, 2]]
    assert 0.02 <= elapsed < 0.5


def test_an_item_that_fails_fails_alone_and_a_failed_batch_fails_only_itself() -> None:
    async def main(recorder: Recorder, items: range) -> list[object]:
        batcher = MicroBatcher(recorder, max_size=4, max_wait=0.0)
        return await asyncio.gather(*(batcher.submit(i) for i in items), return_exceptions=True)

    out = asyncio.run(main(Recorder(fail_on=3), range(6)))
    assert [o for i, o in enumerate(out) if i != 3] == [0, 10, 20, 40, 50]
    assert isinstance(out[3], ValueError)

    out = asyncio.run(main(Recorder(fail_on="batch"), range(10, 18)))
    assert all(isinstance(o, RuntimeError) for o in out[:4])  # 10..13: the failed batch
    assert out[4:] == [140, 150, 160, 170]


def test_a_batcher_outlives_an_event_loop_that_ended_with_items_waiting() -> None:
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_size=100, max_wait=0.05)

    async def abandoned() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(batcher.submit(1), timeout=0.001)

    async def later() -> list[int]:
        return await asyncio.wait_for(
            asyncio.gather(batcher.submit(2), batcher.submit(3)), timeout=5
        )

    asyncio.run(abandoned())
    assert asyncio.run(later()) == [20, 30]


def test_a_cancelled_batch_cancels_its_callers() -> None:
    async def slow(items: list[int]) -> list[int]:
        await asyncio.sleep(10)
        return items

    async def main() -> None:
        batcher = MicroBatcher(slow, max_size=2, max_wait=0.0)
        calls = [asyncio.ensure_future(batcher.submit(i)) for i in range(2)]
        await asyncio.sleep(0.01)
        for task in list(batcher._running):
            task.cancel()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)

    asyncio.run(main())


def test_batcher_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="max_size"):
        MicroBatcher(Recorder(), max_size=0, max_wait=0.1)
    with pytest.raises(ValueError, match="max_wait"):
        MicroBatcher(Recorder(), max_size=1, max_wait=-1)


# -- the manager on its own ---------------------------------------------------------------


def run_all(manager: IcdRewardManager, batch: Any) -> list[dict[str, Any]]:
    async def main() -> list[dict[str, Any]]:
        return await asyncio.gather(
            *(manager.run_single(batch[i : i + 1]) for i in range(len(batch)))
        )

    return asyncio.run(main())


def test_concurrent_calls_are_scored_in_batches_with_the_engine_scores(
    base_config: DictConfig, tokenizer: Any, samples: list[dict[str, Any]]
) -> None:
    config = with_kwargs(base_config, preset="deepicd-r1", max_batch_size=16, max_wait_ms=50)
    manager = IcdRewardManager(config, tokenizer, None)
    calls: list[int] = []
    score = manager.engine.score

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[0]))
        return score(*args, **kwargs)

    manager.engine.score = counting  # type: ignore[method-assign]
    try:
        batch = rollout_batch(tokenizer, samples * 3)
        out = run_all(manager, batch)
    finally:
        del manager.engine.score
    assert sum(calls) == len(batch) and max(calls) == 16 and len(calls) == -(-len(batch) // 16)
    assert [o["reward_score"] for o in out] == pytest.approx(
        engine_scores(manager.engine, batch, tokenizer)
    )
    keys = {tuple(o["reward_extra_info"]) for o in out}
    # No judge, so no counters: the monitors of the batch follow the flags.
    assert keys == {("score", *manager.engine.names, *FLAG_KEYS, *MONITOR_KEYS)}
    published = {o["reward_score"] for o in out}
    assert {76.0, 43.0, -6.0} <= published  # exact, near miss, empty completion


def test_an_undecodable_response_scores_as_empty_and_the_others_are_untouched(
    base_config: DictConfig, tokenizer: Any, samples: list[dict[str, Any]]
) -> None:
    manager = IcdRewardManager(with_kwargs(base_config, max_wait_ms=20), tokenizer, None)
    batch = rollout_batch(tokenizer, samples[:4])
    expected = engine_scores(manager.engine, batch, tokenizer)
    batch.batch["responses"][2, 0] = -7  # not a token id: the tokenizer raises on it
    out = run_all(manager, batch)
    empty = manager.engine.score([None], [samples[2]["gold"]]).total.item()
    assert [o["reward_score"] for o in out] == pytest.approx(
        [expected[0], expected[1], empty, expected[3]]
    )


def test_a_response_whose_scoring_raises_gets_the_unscored_record_alone(
    base_config: DictConfig, tokenizer: Any, samples: list[dict[str, Any]]
) -> None:
    # A stand-in for an engine bug that one completion triggers: the real engine turns
    # every bad completion into a score, so the fault is injected around it.
    manager = IcdRewardManager(with_kwargs(base_config, max_wait_ms=20), tokenizer, None)
    rows = [dict(s) for s in samples[:4]]
    rows[1]["completion"] = "POISON"
    batch = rollout_batch(tokenizer, rows)
    expected = engine_scores(manager.engine, batch, tokenizer)
    score = manager.engine.score

    def buggy(completions: list[object], *args: Any, **kwargs: Any) -> Any:
        if any(c == "POISON" for c in completions):
            raise RuntimeError("a bug")
        return score(completions, *args, **kwargs)

    manager.engine.score = buggy  # type: ignore[method-assign]
    try:
        out = run_all(manager, batch)
        manager.engine.score = lambda *a, **k: (_ for _ in ()).throw(  # type: ignore[method-assign]
            ComponentFailure("judge", {0: "down"})
        )
        with pytest.raises(ComponentFailure):
            run_all(manager, batch)
    finally:
        del manager.engine.score
    assert [o["reward_score"] for o in out] == pytest.approx(
        [expected[0], 0.0, expected[2], expected[3]]
    )
    unscored = out[1]["reward_extra_info"]
    assert unscored["failed"] == len(manager.engine.names)
    assert list(unscored) == list(out[0]["reward_extra_info"])


def test_the_agent_loop_layout_through_verls_reward_loop_worker(
    tokenizer_dir: Path, tokenizer: Any, samples: list[dict[str, Any]], deepicd: RewardEngine
) -> None:
    # verl 0.9's trainer scores inside the agent loop: one unpadded response per call,
    # an all-ones attention mask, the dataset row's fields as arrays of one, sent to
    # RewardLoopWorker.compute_score. Run that worker's own code in-process.
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    config = verl_config(tokenizer_dir, "+reward.reward_kwargs.preset=deepicd-r1")
    worker = RewardLoopWorker(OmegaConf.create(OmegaConf.to_container(config)))
    requests = [agent_loop_request(tokenizer, s) for s in samples]

    async def main() -> list[dict[str, Any]]:
        return await asyncio.gather(*(worker.compute_score(r) for r in requests))

    out = worker.loop.run_until_complete(main())
    expected = deepicd.score(
        [s["completion"] for s in samples], [s["gold"] for s in samples],
        notes=[s["note"] for s in samples],
    ).total  # fmt: skip
    got = torch.tensor([o["reward_score"] for o in out])
    # The tokenizer round trip is exact for these texts, so the scores are too.
    assert torch.allclose(got, expected)
    assert all(set(o["reward_extra_info"]) == set(out[0]["reward_extra_info"]) for o in out)


def test_settings_are_checked_when_verl_builds_the_manager(
    base_config: DictConfig, tokenizer: Any
) -> None:
    with pytest.raises(ConfigError, match=r"reward\.reward_kwargs: field 'max_batch_sise'"):
        IcdRewardManager(with_kwargs(base_config, max_batch_sise=8), tokenizer, None)
    with pytest.raises(ConfigError, match="max_batch_size must be greater than 0"):
        IcdRewardManager(with_kwargs(base_config, max_batch_size=0), tokenizer, None)
    with pytest.raises(ConfigError, match="judge_model"):
        IcdRewardManager(
            with_kwargs(base_config, judge_base_url="http://127.0.0.1:9/v1"), tokenizer, None
        )


def test_a_config_file_is_read_and_named_in_its_errors(
    base_config: DictConfig, tokenizer: Any, tmp_path: Path
) -> None:
    good = tmp_path / "rewards.toml"
    good.write_text('preset = "default"\n[rewards.reasoning]\nenabled = false\n')
    manager = IcdRewardManager(with_kwargs(base_config, config=str(good)), tokenizer, None)
    assert "reasoning" not in manager.engine.names and "hierarchy" in manager.engine.names
    bad = tmp_path / "bad.toml"
    bad.write_text('preset = "default"\n[rewards.hierarchy]\nwieght = 2\n')
    with pytest.raises(ConfigError, match=rf"{bad}.*rewards\.hierarchy\.wieght"):
        IcdRewardManager(with_kwargs(base_config, config=str(bad)), tokenizer, None)


# -- verl's RewardLoopManager on a local Ray cluster ------------------------------------


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}},
    )
    try:
        yield
    finally:
        ray.shutdown()


def test_reward_loop_manager_puts_each_engine_score_on_the_last_response_token(
    ray_cluster: None,
    tokenizer_dir: Path,
    tokenizer: Any,
    samples: list[dict[str, Any]],
    deepicd: RewardEngine,
) -> None:
    from verl.experimental.reward_loop.reward_loop import RewardLoopManager

    config = verl_config(
        tokenizer_dir,
        "reward.num_workers=2",
        "+reward.reward_kwargs.preset=deepicd-r1",
        "+reward.reward_kwargs.max_wait_ms=20",
    )
    # 64 prompts x 8 responses, as in the recipe's GRPO step.
    rows = [dict(samples[(p * 8 + k) % len(samples)], group=p) for p in range(64) for k in range(8)]
    batch = rollout_batch(tokenizer, rows, response_length=256)
    manager = RewardLoopManager(OmegaConf.create(OmegaConf.to_container(config)))
    out = manager.compute_rm_score(batch)

    rm_scores = out.batch["rm_scores"]
    assert rm_scores.shape == batch.batch["responses"].shape
    lengths = valid_lengths(batch)
    expected = torch.tensor(engine_scores(deepicd, batch, tokenizer))
    last = rm_scores[torch.arange(len(batch)), lengths - 1]
    assert torch.allclose(last, expected)
    # Nothing but the last valid token carries reward.
    assert torch.count_nonzero(rm_scores) == torch.count_nonzero(expected)
    keys = out.meta_info["reward_extra_keys"]
    assert keys == ["score", *deepicd.names, *FLAG_KEYS, *MONITOR_KEYS]
    assert np.allclose(out.non_tensor_batch["score"].astype(float), expected.numpy())
    assert out.non_tensor_batch["exact_match"].astype(float).sum() > 0


def test_verls_gdpo_reads_the_components_of_the_reward_loop_output(
    ray_cluster: None, tokenizer_dir: Path, tokenizer: Any, samples: list[dict[str, Any]]
) -> None:
    # The legacy trainer (trainer.use_v1=false) merges the reward loop's output into the
    # batch and hands it to compute_advantage: verl's own GDPO then normalises each named
    # component within its GRPO group. (The v1 trainer does not pass them: docs/verl.md.)
    from verl.experimental.reward_loop.reward_loop import RewardLoopManager
    from verl.trainer.config import AlgoConfig
    from verl.trainer.ppo.core_algos import AdvantageEstimator
    from verl.trainer.ppo.ray_trainer import compute_advantage

    config = verl_config(
        tokenizer_dir, "reward.num_workers=1", "+reward.reward_kwargs.preset=deepicd-r1"
    )
    rows = [dict(samples[(p * 4 + k) % len(samples)], group=p) for p in range(8) for k in range(4)]
    batch = rollout_batch(tokenizer, rows, response_length=128)
    batch = batch.union(
        RewardLoopManager(OmegaConf.create(OmegaConf.to_container(config))).compute_rm_score(batch)
    )
    batch.batch["token_level_rewards"] = batch.batch["rm_scores"]
    keys = ["outcome", "trace"]
    out = compute_advantage(
        batch, AdvantageEstimator.GDPO, config=AlgoConfig(gdpo_reward_keys=keys)
    )
    advantages = out.batch["advantages"]
    assert advantages.shape == batch.batch["responses"].shape
    assert torch.isfinite(advantages).all()
    # Each sample's advantage sits on its response tokens, and it follows its outcome
    # within the group: a better outcome than a group mate never gets a lower advantage
    # when the trace terms agree.
    mask = out.batch["response_mask"].bool()
    per_sample = (advantages * mask).sum(dim=1) / mask.sum(dim=1)
    outcome = batch.non_tensor_batch["outcome"].astype(float)
    trace = batch.non_tensor_batch["trace"].astype(float)
    uid = batch.non_tensor_batch["uid"]
    compared = 0
    for i in range(len(rows)):
        for j in range(len(rows)):
            if uid[i] == uid[j] and trace[i] == trace[j] and outcome[i] > outcome[j]:
                assert per_sample[i] > per_sample[j]
                compared += 1
    assert compared > 0


def test_the_manager_module_loads_from_a_file_path_too(tokenizer_dir: Path) -> None:
    from verl.trainer.ppo.reward import resolve_reward_manager_cls

    module_file = ROOT / "integrations" / "verl" / "icdreward_verl" / "reward_manager.py"
    config = verl_config(tokenizer_dir, f"reward.reward_manager.module.path={module_file}")
    cls = resolve_reward_manager_cls(config)
    assert cls.__name__ == "IcdRewardManager" and hasattr(cls, "run_single")
