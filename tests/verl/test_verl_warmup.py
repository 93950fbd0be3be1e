"""The reward manager warms its engine as verl builds it, so the first batch is not slower."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from icdreward_verl._settings import RewardSettings, build_engine
from icdreward_verl._warmup import warm_engine
from icdreward_verl.reward_manager import IcdRewardManager

from _verl_batch import agent_loop_request


def _config(tokenizer_dir: Path, **kwargs: Any) -> Any:
    from icdreward_verl import recipe

    options = recipe.RecipeOptions(
        str(tokenizer_dir), "t.parquet", "v.parquet", "o", extra_overrides=()
    )
    config = recipe.compose(recipe.overrides(options))
    config.reward.reward_kwargs = OmegaConf.create(kwargs)
    return config


def test_the_first_batch_after_the_warm_up_costs_what_later_ones_do(
    tokenizer_dir: Path, example_completions: list[dict[str, Any]]
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    # Settings of their own, so this process builds a fresh engine for them.
    config = _config(tokenizer_dir, preset="default", max_batch_size=64, max_wait_ms=7)
    manager = IcdRewardManager(config, tokenizer, None)
    warm_s = manager.warmup.result(timeout=120)
    assert warm_s > 0.3  # the default preset's free-text index was built
    requests = [agent_loop_request(tokenizer, s) for s in example_completions * 4]

    async def batch() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(manager.run_single(r) for r in requests))
        return time.perf_counter() - started

    first, later = asyncio.run(batch()), asyncio.run(batch())
    assert first < later + warm_s / 2, (first, later, warm_s)
    assert warm_engine(manager.engine) == 0.0  # warmed once per engine


def test_a_failing_warm_up_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    engine = build_engine(RewardSettings(preset="deepicd-r1"))

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(engine, "score", broken)
    assert warm_engine(engine) >= 0.0
    assert "warming the reward engine failed" in caplog.text
    engine.close()
