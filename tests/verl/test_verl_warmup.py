"""The reward manager warms its engine as verl builds it, so the first batch is not slower."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from icdreward_verl._settings import RewardSettings, build_engine
from icdreward_verl._warmup import warm_engine
from icdreward_verl.reward_manager import IcdRewardManager

FIRST_BATCH = Path(__file__).resolve().parents[2] / "benchmarks" / "_verl_first_batch.py"


def _config(tokenizer_dir: Path, **kwargs: Any) -> Any:
    from icdreward_verl import recipe

    options = recipe.RecipeOptions(
        str(tokenizer_dir), "t.parquet", "v.parquet", "o", extra_overrides=()
    )
    config = recipe.compose(recipe.overrides(options))
    config.reward.reward_kwargs = OmegaConf.create(kwargs)
    return config


def test_the_first_batch_after_the_warm_up_costs_what_later_ones_do(tokenizer_dir: Path) -> None:
    # A fresh process, as a fresh verl reward worker is: in this one the shared code
    # set's free-text index may already have been built by earlier tests.
    done = subprocess.run(
        [sys.executable, str(FIRST_BATCH), str(tokenizer_dir), "warm"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["warmup_s"] > 0.3, figures  # the default preset's free-text index
    # Without the warm-up the first batch pays it: first ~ later + warmup_s.
    assert figures["first_s"] < figures["later_s"] + figures["warmup_s"] / 2, figures


def test_an_engine_is_warmed_once(tokenizer_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = _config(tokenizer_dir, preset="default", max_batch_size=64, max_wait_ms=7)
    manager = IcdRewardManager(config, tokenizer, None)
    assert manager.warmup.result(timeout=120) >= 0.0
    assert warm_engine(manager.engine) == 0.0


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
