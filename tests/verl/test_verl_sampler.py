"""icdreward's sampler inside verl's real v1 training step: the components reach the step metrics.

The step runs in a subprocess (``_verl_v1_step.py``) with a hard time limit: it starts
a local Ray cluster and TransferQueue, and a test run must never hang on them. What is
real and what stands in for the GPU parts is listed in that script's docstring.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from icdreward_verl.reward_manager import MONITOR_PREFIX, SAMPLE_MONITORS

HERE = Path(__file__).resolve().parent
STEP_LIMIT_S = 420


@pytest.fixture(scope="module")
def step(
    tokenizer_dir: Path,
    example_completions: list[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    completions = tmp_path_factory.mktemp("v1") / "completions.json"
    completions.write_text(json.dumps(example_completions))
    env = {**os.environ, "RAY_DEDUP_LOGS": "0", "TOKENIZERS_PARALLELISM": "false"}
    try:
        done = subprocess.run(
            [sys.executable, str(HERE / "_verl_v1_step.py"), str(tokenizer_dir), str(completions)],
            capture_output=True,
            text=True,
            timeout=STEP_LIMIT_S,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"verl's v1 step did not finish in {STEP_LIMIT_S} s: {exc.stderr!r}"[-4000:])
    assert done.returncode == 0, done.stderr[-4000:]
    line = done.stdout.strip().splitlines()[-1]
    result: dict[str, Any] = json.loads(line)
    return result


@pytest.mark.timeout(STEP_LIMIT_S + 60)
def test_verl_loads_the_sampler_and_its_metrics_reach_the_step_metrics(
    step: dict[str, Any],
) -> None:
    assert step["sampler"] == "IcdRewardReplayBuffer"
    metrics, records = step["metrics"], step["records"]
    assert step["keys"] == len(records) == 8  # 2 prompts x 4 responses
    for key in ("score", "format", "outcome", "trace", "exact_match", "parse_failure"):
        values = [r[key] for r in records if np.isfinite(r[key])]
        assert metrics[f"icdreward/{key}"] == pytest.approx(np.mean(values)), key
    for name in SAMPLE_MONITORS:
        assert f"icdreward/{MONITOR_PREFIX}{name}" in metrics
    # One NaN was planted in the first response's exact_match: skipped and counted.
    assert metrics["icdreward/malformed"] == 1
    assert metrics["icdreward/samples"] == 8


@pytest.mark.timeout(STEP_LIMIT_S + 60)
def test_all_equal_groups_are_a_share_of_whole_groups(step: dict[str, Any]) -> None:
    groups: dict[str, list[float]] = {}
    for record in step["records"]:
        groups.setdefault(record["uid"], []).append(record["score"])
    equal = sum(1 for scores in groups.values() if len(set(scores)) == 1)
    assert step["metrics"]["icdreward/group/all_equal"] == pytest.approx(equal / len(groups))
