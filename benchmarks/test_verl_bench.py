"""One GRPO step's reward traffic through verl's real reward loop, on CPU (issue #4).

512 responses (64 prompts x 8, realistic ~2.3 KB completions) reach verl's
``RewardLoopManager`` workers on a local Ray cluster the way the rollout sends them:
one ``compute_score`` call per response as each generation finishes, staggered by
``STAGGER_S``. Measured, for icdreward's batching manager and for verl's default
(``naive``) manager calling the per-sample reward function with the same scoring:

- the reward latency added after the last response arrives (target <= 50 ms for the
  batching manager, asserted on the fastest round);
- the throughput when the whole step arrives at once (responses per second), which
  on this machine is mostly Ray's cost per call;
- the same step scored in-process by the manager alone (512 concurrent ``run_single``
  calls on one event loop): the reward computation without Ray.

Rule-based components only (the ``default`` preset). Run:
``pytest benchmarks/test_verl_bench.py --benchmark-only``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import verl
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from _corpus import completions

ROOT = Path(__file__).resolve().parents[1]
# The DataProto layout helper and the offline tokenizer are the tests' own.
sys.path.insert(0, str(ROOT / "tests" / "verl"))
sys.path.insert(0, str(ROOT / "examples"))

from _verl_batch import rollout_batch  # noqa: E402

# Far denser than a real rollout (512 responses of a 7B model finish over tens of
# seconds), and still slower than Ray's per-call cost on 2 cores, so that the figure
# is the reward's latency, not a queue of Ray calls.
STAGGER_S = 0.005
TARGET_ADDED_MS = 50.0
PROMPTS, SAMPLES = 64, 8

MANAGERS = {
    "icdreward": [
        "reward.reward_manager.source=importlib",
        "reward.reward_manager.name=IcdRewardManager",
        "reward.reward_manager.module.path=pkg://icdreward_verl.reward_manager",
        "+reward.reward_kwargs.preset=default",
    ],
    "verl-naive": [
        "reward.custom_reward_function.path=pkg://icdreward_verl.reward_function",
        "+reward.custom_reward_function.reward_kwargs.preset=default",
    ],
}


@pytest.fixture(scope="module")
def step(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A saved tokenizer and one GRPO step of rollout output (512 responses)."""
    import trl_grpo_cpu

    texts, golds, notes = completions(PROMPTS * SAMPLES)
    tokenizer = trl_grpo_cpu.build_tokenizer([*texts[:64], *notes[:64]])
    path = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(str(path))
    rows = [
        {"completion": t, "gold": g, "note": n, "group": i // SAMPLES}
        for i, (t, g, n) in enumerate(zip(texts, golds, notes, strict=True))
    ]
    return path, rollout_batch(tokenizer, rows)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module", params=list(MANAGERS))
def workers(request: pytest.FixtureRequest, step: tuple[Path, Any], ray_cluster: None) -> Any:
    from verl.experimental.reward_loop.reward_loop import RewardLoopManager

    tokenizer_dir, batch = step
    with initialize_config_dir(
        config_dir=str(Path(verl.__file__).parent / "trainer" / "config"), version_base=None
    ):
        config = compose(
            "ppo_trainer",
            overrides=[
                f"actor_rollout_ref.model.path={tokenizer_dir}",
                "reward.num_workers=2",
                *MANAGERS[request.param],
            ],
        )
    manager = RewardLoopManager(OmegaConf.create(OmegaConf.to_container(config)))
    handles = manager.reward_loop_workers
    _replay(handles, batch, 0.0)  # warm: engines built, code set loaded, tokenizers ready
    return request.param, handles


def _replay(handles: list[Any], batch: Any, stagger: float) -> tuple[float, float]:
    """Send every response as its own call; returns (added latency, total) in seconds."""
    import ray

    items = [batch[i : i + 1] for i in range(len(batch))]
    start = time.perf_counter()
    refs = []
    for i, item in enumerate(items):
        due = start + i * stagger
        while (now := time.perf_counter()) < due:
            time.sleep(min(due - now, 0.0005))
        refs.append(handles[i % len(handles)].compute_score.remote(item))
    last = time.perf_counter()
    results = ray.get(refs)
    done = time.perf_counter()
    assert len(results) == len(items) and all("reward_score" in r for r in results)
    return done - last, done - start


def test_reward_latency_after_the_last_response(benchmark: Any, workers: Any, step: Any) -> None:
    name, handles = workers
    added: list[float] = []

    def run() -> None:
        added.append(_replay(handles, step[1], STAGGER_S)[0])

    benchmark.pedantic(run, rounds=5, iterations=1)
    best = min(added) * 1e3
    benchmark.extra_info["manager"] = name
    benchmark.extra_info["added_ms_min"] = round(best, 2)
    benchmark.extra_info["added_ms_median"] = round(sorted(added)[len(added) // 2] * 1e3, 2)
    if name == "icdreward":
        assert best <= TARGET_ADDED_MS, f"{best:.1f} ms after the last response"


def test_throughput_of_a_whole_step(benchmark: Any, workers: Any, step: Any) -> None:
    name, handles = workers
    totals: list[float] = []

    def run() -> None:
        totals.append(_replay(handles, step[1], 0.0)[1])

    benchmark.pedantic(run, rounds=5, iterations=1)
    benchmark.extra_info["manager"] = name
    benchmark.extra_info["responses_per_second"] = round(len(step[1]) / min(totals))


@pytest.fixture(scope="module", params=list(MANAGERS))
def in_process(request: pytest.FixtureRequest, step: tuple[Path, Any]) -> Any:
    from transformers import AutoTokenizer
    from verl.trainer.ppo.reward import load_reward_manager

    tokenizer_dir, _ = step
    with initialize_config_dir(
        config_dir=str(Path(verl.__file__).parent / "trainer" / "config"), version_base=None
    ):
        config = compose(
            "ppo_trainer",
            overrides=[f"actor_rollout_ref.model.path={tokenizer_dir}", *MANAGERS[request.param]],
        )
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    return request.param, load_reward_manager(config, tokenizer)


def test_in_process_step(benchmark: Any, in_process: Any, step: Any) -> None:
    import asyncio

    name, manager = in_process
    batch = step[1]
    items = [batch[i : i + 1] for i in range(len(batch))]

    async def score_all() -> list[Any]:
        return await asyncio.gather(*(manager.run_single(item) for item in items))

    def run() -> list[Any]:
        # verl's managers run their executor calls on the loop they were built with.
        return manager.loop.run_until_complete(score_all())

    results = benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    assert len(results) == len(items)
    best = benchmark.stats.stats.min
    benchmark.extra_info["manager"] = name
    benchmark.extra_info["us_per_response"] = round(best / len(items) * 1e6, 1)
    benchmark.extra_info["responses_per_second"] = round(len(items) / best)


@pytest.mark.parametrize("mode", ["cold", "warm"])
def test_first_batch_on_a_fresh_manager(benchmark: Any, step: tuple[Path, Any], mode: str) -> None:
    """First vs later batch of 256 responses on a fresh manager (issue #11, item 4).

    Each round is a fresh process (``_verl_first_batch.py``): ``cold`` skips the
    warm-up the manager starts on its scoring thread, ``warm`` waits for it first.
    """
    import json
    import subprocess

    script = Path(__file__).resolve().parent / "_verl_first_batch.py"

    def run() -> dict[str, float]:
        done = subprocess.run(
            [sys.executable, str(script), str(step[0]), mode],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
        return figures

    figures = benchmark.pedantic(run, rounds=1, iterations=1)
    for key in ("warmup_s", "first_s", "later_s"):
        benchmark.extra_info[key] = round(figures[key], 3)
    if mode == "warm":
        assert figures["first_s"] < figures["later_s"] + 0.5
