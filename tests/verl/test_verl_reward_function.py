"""The custom reward function, called the ways verl's own managers call it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import torch
import verl
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from transformers import AutoTokenizer

from icdreward import RewardEngine
from icdreward.errors import ConfigError
from icdreward_verl._records import FLAG_KEYS
from icdreward_verl.reward_function import compute_score, compute_score_batch

from _texts import completion
from _verl_batch import rollout_batch, valid_lengths

ROOT = Path(__file__).resolve().parents[2]
VERL_CONFIG = Path(verl.__file__).parent / "trainer" / "config"
FUNCTION_FILE = ROOT / "integrations" / "verl" / "icdreward_verl" / "reward_function.py"


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


def verl_config(tokenizer_dir: Path, path: str, *overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(VERL_CONFIG), version_base=None):
        return compose(
            "ppo_trainer",
            overrides=[
                f"actor_rollout_ref.model.path={tokenizer_dir}",
                f"reward.custom_reward_function.path={path}",
                *overrides,
            ],
        )


def test_published_numbers_per_sample_with_the_same_keys_for_every_sample(
    deepicd: RewardEngine,
) -> None:
    predictions = ["M51.16", "M51.17", "M51.1", "M51", "M99", "Z00"]
    outs = [compute_score("icd10cm", completion(p), ["M5116"], {}) for p in predictions]
    outs.append(compute_score("icd10cm", "", "M5116"))
    assert [o["score"] for o in outs] == [76, 43, 43, 25, 4, 0, -6]
    assert {tuple(o) for o in outs} == {("score", *deepicd.names, *FLAG_KEYS)}
    assert all(type(v) is float for o in outs for v in o.values())
    assert outs[-1]["parse_failure"] == 1.0 and outs[0]["exact_match"] == 1.0


def test_the_note_in_extra_info_reaches_the_grounding_reward(default_engine: RewardEngine) -> None:
    note = "Lumbar disc extrusion compressing the L5 root with radiculopathy."
    text = completion("M51.16", "Lumbar disc extrusion compressing the L5 root.")
    grounded = compute_score("x", text, "M5116", {"note": note}, preset="default")
    assert (
        grounded
        == compute_score_batch(
            solution_strs=[text],
            ground_truths=["M5116"],
            extra_infos=[{"note": note}],
            preset="default",
        )[0]
    )
    expected = default_engine.score([text], ["M5116"], notes=[note]).total.item()
    assert grounded["score"] == pytest.approx(expected)
    ungrounded = default_engine.score([text], ["M5116"], notes=[None]).total.item()
    assert expected != pytest.approx(ungrounded)


def test_bad_responses_and_labels_are_scores_not_exceptions() -> None:
    outs = compute_score_batch(
        data_sources=["x"] * 5,
        solution_strs=[None, b"\xff\xfe", "\n" * 100_000, "<think>" * 5_000, 42],  # type: ignore[list-item]
        ground_truths=["M5116", None, ["E119"], "not a code", 3.5],
        extra_infos=[None, {"note": 7}, {}, {"note": "x"}, "not a dict"],  # type: ignore[list-item]
    )
    assert len(outs) == 5
    scores = torch.tensor([o["score"] for o in outs])
    assert torch.isfinite(scores).all()
    assert outs[1]["gold_missing"] == 1.0 and outs[0]["gold_missing"] == 0.0


def test_settings_errors_name_the_field_and_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"field 'presett'.*did you mean 'preset'"):
        compute_score("x", "", "M5116", presett="default")
    with pytest.raises(ConfigError, match=r"unknown preset.*'nope'"):
        compute_score("x", "", "M5116", preset="nope")
    config = tmp_path / "rewards.toml"
    config.write_text('preset = "default"\n')
    with pytest.raises(ConfigError, match=r"either preset \('default'\) or config, not both"):
        compute_score("x", "", "M5116", preset="default", config=str(config))
    with pytest.raises(ConfigError, match=rf"{tmp_path / 'missing.toml'}.*cannot read"):
        compute_score("x", "", "M5116", config=str(tmp_path / "missing.toml"))
    with pytest.raises(ValueError, match="2 solution_strs, 1 ground_truths"):
        compute_score_batch(solution_strs=["", ""], ground_truths=["M5116"])
    assert compute_score("x", "", "M5116", config=str(config))["score"] == pytest.approx(
        compute_score("x", "", "M5116", preset="default")["score"]
    )


@pytest.mark.parametrize("path", ["pkg://icdreward_verl.reward_function", str(FUNCTION_FILE)])
def test_verls_default_manager_calls_it_per_sample(
    path: str,
    tokenizer_dir: Path,
    tokenizer: Any,
    example_completions: list[dict[str, Any]],
    default_engine: RewardEngine,
) -> None:
    from verl.trainer.ppo.reward import load_reward_manager

    config = verl_config(
        tokenizer_dir, path, "+reward.custom_reward_function.reward_kwargs.preset=default"
    )
    manager = load_reward_manager(config, tokenizer)
    assert type(manager).__name__ == "NaiveRewardManager"
    batch = rollout_batch(tokenizer, example_completions)

    async def main() -> list[dict[str, Any]]:
        return await asyncio.gather(
            *(manager.run_single(batch[i : i + 1]) for i in range(len(batch)))
        )

    # The manager runs its executor calls on the loop it was built with, as in a worker.
    outs = manager.loop.run_until_complete(main())
    rows = example_completions
    expected = default_engine.score(
        [r["completion"] for r in rows], [r["gold"] for r in rows], notes=[r["note"] for r in rows]
    ).total
    assert torch.allclose(torch.tensor([o["reward_score"] for o in outs]), expected, atol=1e-6)
    assert {tuple(o["reward_extra_info"]) for o in outs} == {
        ("score", *default_engine.names, *FLAG_KEYS)
    }


def test_verls_batch_manager_calls_it_with_lists(
    tokenizer: Any, example_completions: list[dict[str, Any]], deepicd: RewardEngine
) -> None:
    # verl < 0.7's trainer used this manager; 0.9.1 still ships the class.
    from verl.workers.reward_manager.batch import BatchRewardManager

    manager = BatchRewardManager(tokenizer, num_examine=0, compute_score=compute_score)
    batch = rollout_batch(tokenizer, example_completions)
    out = manager(batch, return_dict=True)
    rows = example_completions
    expected = deepicd.score(
        [r["completion"] for r in rows], [r["gold"] for r in rows], notes=[r["note"] for r in rows]
    ).total
    tensor = out["reward_tensor"]
    lengths = valid_lengths(batch)
    assert torch.allclose(tensor[torch.arange(len(batch)), lengths - 1], expected)
    assert torch.count_nonzero(tensor) == torch.count_nonzero(expected)
    assert set(out["reward_extra_info"]) == {"score", *deepicd.names, *FLAG_KEYS}
