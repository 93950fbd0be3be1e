"""The DeepICD-R1 launch recipe against verl 0.9.1's own configuration code, on CPU.

Every configuration here is composed by Hydra from verl's ``trainer/config`` and
checked by verl's ``validate_config``; nothing of verl is mocked. Composing is the
slow part, so the recipe's configuration is composed once per module.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from icdreward.errors import ConfigError
from icdreward_verl import recipe
from icdreward_verl._recipe_hydra import hydra_value, override
from icdreward_verl.recipe import CARD_SETTINGS, RecipeError, RecipeOptions

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "integrations" / "verl" / "run_deepicd_r1_grpo.sh"
MODEL = "Qwen/Qwen2.5-7B-Instruct"
JUDGE_URL = "http://127.0.0.1:8001/v1"
JUDGE_MODEL = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory whose name needs quoting in Hydra (space, comma, quote)."""
    folder = tmp_path_factory.mktemp("recipe") / "notes v1, 'mimic'"
    folder.mkdir()
    # The dry run checks that they exist and counts their rows (one batch at least).
    write_rows(folder / "train.parquet", 64)
    write_rows(folder / "val.parquet", 4)
    return folder


def write_rows(path: Path, rows: int) -> Path:
    """A parquet file of ``rows`` rows (only the row count matters before training)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"data_source": ["icdreward/icd10cm"] * rows}), path)
    return path


@pytest.fixture(scope="module")
def options(data: Path) -> RecipeOptions:
    return RecipeOptions(
        model=MODEL,
        train_files=data / "train.parquet",
        val_files=data / "val.parquet",
        output_dir=data / "out [run 1]",
    )


@pytest.fixture(scope="module")
def composed(options: RecipeOptions) -> DictConfig:
    return recipe.compose(recipe.overrides(options))


def _args(data: Path) -> list[str]:
    return [
        "--model",
        MODEL,
        "--train",
        str(data / "train.parquet"),
        "--val",
        str(data / "val.parquet"),
        "--output",
        str(data / "out"),
    ]


# -- 1. the recipe composes, validates and holds the model card --------------------


def test_the_card_hyperparameters_sit_at_verl_keys(composed: DictConfig) -> None:
    cfg = composed
    actor, rollout = cfg.actor_rollout_ref.actor, cfg.actor_rollout_ref.rollout
    assert cfg.algorithm.adv_estimator == "grpo"
    assert cfg.actor_rollout_ref.model.path == MODEL
    assert cfg.data.train_batch_size == 64
    assert actor.ppo_mini_batch_size == 64
    assert actor.ppo_micro_batch_size_per_gpu == 16
    assert rollout.log_prob_micro_batch_size_per_gpu == 16
    assert cfg.actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu == 16
    assert actor.optim.lr == 1e-6 and isinstance(actor.optim.lr, float)
    assert actor.optim.lr_warmup_steps == 80
    assert cfg.trainer.total_epochs == 1
    assert cfg.data.max_prompt_length == 2048
    assert cfg.data.max_response_length == 1024
    assert cfg.data.filter_overlong_prompts is True
    assert cfg.data.truncation == "error"
    assert rollout.name == "vllm"
    assert rollout.n == 8
    assert rollout.temperature == 0.9
    assert rollout.top_k == -1
    assert rollout.dtype == "bfloat16"
    assert actor.fsdp_config.dtype == "bfloat16"
    assert rollout.tensor_model_parallel_size == 1
    assert rollout.gpu_memory_utilization == 0.4
    assert actor.entropy_coeff == 0.001
    assert cfg.algorithm.kl_ctrl.kl_coef == 0.001
    assert cfg.algorithm.use_kl_in_reward is False
    assert actor.use_kl_loss is False
    assert cfg.actor_rollout_ref.model.enable_gradient_checkpointing is True
    assert actor.use_torch_compile is True
    assert actor.fsdp_config.use_torch_compile is True
    assert actor.fsdp_config.param_offload is False
    assert actor.fsdp_config.optimizer_offload is False
    assert cfg.actor_rollout_ref.ref.fsdp_config.param_offload is False
    assert cfg.trainer.n_gpus_per_node == 4
    assert cfg.trainer.nnodes == 1
    # Interpolations that follow the card's values.
    assert rollout.prompt_length == 2048 and rollout.response_length == 1024
    assert rollout.n_gpus_per_node == 4
    assert actor.rollout_n == 8


def test_every_card_setting_is_composed_and_documented(composed: DictConfig) -> None:
    assert recipe.__doc__ is not None
    for setting in CARD_SETTINGS:
        value = OmegaConf.select(composed, setting.key, throw_on_missing=True)
        assert value == setting.value, setting
        assert type(value) is type(setting.value), setting
        assert override(setting.key, setting.value) in recipe.__doc__, setting


def test_the_reward_is_our_manager_under_verl_09_keys(composed: DictConfig) -> None:
    reward = composed.reward
    assert reward.reward_manager.source == "importlib"
    assert reward.reward_manager.name == "IcdRewardManager"
    assert reward.reward_manager.module.path == "pkg://icdreward_verl.reward_manager"
    assert OmegaConf.to_container(reward.reward_kwargs) == {"preset": "deepicd-r1"}
    assert reward.custom_reward_function.path is None


def test_no_legacy_reward_key_is_set(composed: DictConfig, options: RecipeOptions) -> None:
    # 0.9.1 still composes the legacy sections (all null) but main_ppo never reads them.
    assert composed.custom_reward_function.path is None
    assert composed.custom_reward_function.name is None
    assert composed.reward_model.reward_manager is None
    assert composed.reward_model.reward_loop_source is None
    legacy = ("custom_reward_function", "reward_model", "sandbox_fusion")
    assert not [o for o in recipe.overrides(options) if o.lstrip("+~").startswith(legacy)]


def test_paths_needing_quotes_reach_verl_unchanged(composed: DictConfig, data: Path) -> None:
    assert composed.data.train_files == str(data / "train.parquet")
    assert composed.data.val_files == str(data / "val.parquet")
    assert composed.trainer.default_local_dir == str(data / "out [run 1]")
    assert OmegaConf.to_container(composed.trainer.logger) == ["console"]


def test_verl_resolves_the_reward_manager_class(composed: DictConfig) -> None:
    from verl.trainer.ppo.reward import resolve_reward_manager_cls

    from icdreward_verl.reward_manager import IcdRewardManager

    assert resolve_reward_manager_cls(composed) is IcdRewardManager


def test_overrides_and_command(options: RecipeOptions) -> None:
    written = recipe.overrides(options)
    assert written[-6:] == [
        *recipe.REWARD_MANAGER_OVERRIDES,
        *recipe.SAMPLER_OVERRIDES,
        "+reward.reward_kwargs.preset=deepicd-r1",
    ]
    assert "trainer.logger=[console]" in written
    assert "actor_rollout_ref.rollout.n=8" in written
    assert recipe.command(options) == [sys.executable, "-m", "verl.trainer.main_ppo", *written]


# -- 2. and 3. what verl rejects, named ---------------------------------------------


def test_a_misspelt_key_is_named_with_a_suggestion(options: RecipeOptions) -> None:
    bad = "actor_rollout_ref.rollout.nn=8"
    with pytest.raises(RecipeError) as caught:
        recipe.compose([*recipe.overrides(options), bad])
    error = caught.value
    assert isinstance(error, ConfigError)
    assert error.field == "actor_rollout_ref.rollout.nn"
    assert error.overrides == (bad,)
    assert f"'{bad}'" in str(error)
    assert "did you mean 'actor_rollout_ref.rollout.n'?" in str(error)


def test_bad_override_syntax_is_named() -> None:
    with pytest.raises(RecipeError, match=r"'trainer.logger=\[console' is not valid Hydra syntax"):
        recipe.compose(["trainer.logger=[console"])


def test_gpus_that_do_not_divide_the_batch_fail_in_validate_config(data: Path) -> None:
    three = RecipeOptions(MODEL, data / "train.parquet", data / "val.parquet", data / "o", n_gpus=3)
    with pytest.raises(RecipeError) as caught:
        recipe.compose(recipe.overrides(three))
    error = caught.value
    assert "validate_config" in str(error)
    divisible = "real_train_batch_size (512) must be divisible by minimal possible batch size (3)"
    assert divisible in str(error)
    assert "trainer.n_gpus_per_node=3" in error.overrides
    # The message is verl's own: it comes from verl.utils.config.validate_config.
    cause = error.__cause__
    assert isinstance(cause, AssertionError)
    assert cause.__traceback__ is not None
    frames = []
    tb = cause.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame.f_code.co_filename, tb.tb_frame.f_code.co_name))
        tb = tb.tb_next
    assert any(f.endswith(os.path.join("verl", "utils", "config.py")) for f, _ in frames)
    assert frames[-1][1] == "validate_config"


def test_a_batch_smaller_than_the_mini_batch_fails_in_validate_config(
    options: RecipeOptions,
) -> None:
    with pytest.raises(RecipeError) as caught:
        recipe.compose([*recipe.overrides(options), "data.train_batch_size=32"])
    assert "train_batch_size (32) must be >= actor.ppo_mini_batch_size (64)" in str(caught.value)
    assert caught.value.overrides == (
        "data.train_batch_size=32",
        "actor_rollout_ref.actor.ppo_mini_batch_size=64",
    )


# -- 4. reward options --------------------------------------------------------------


def test_the_judge_options_become_reward_kwargs(data: Path) -> None:
    judged = RecipeOptions(
        MODEL,
        data / "train.parquet",
        data / "val.parquet",
        data / "o",
        preset="default",
        judge_base_url=JUDGE_URL,
        judge_model=JUDGE_MODEL,
    )
    written = recipe.overrides(judged)
    assert written[-3:] == [
        "+reward.reward_kwargs.preset=default",
        f"+reward.reward_kwargs.judge_base_url={JUDGE_URL}",
        f"+reward.reward_kwargs.judge_model={JUDGE_MODEL}",
    ]
    cfg = recipe.compose(written)
    assert OmegaConf.to_container(cfg.reward.reward_kwargs) == {
        "preset": "default",
        "judge_base_url": JUDGE_URL,
        "judge_model": JUDGE_MODEL,
    }


def test_a_reward_config_file_replaces_the_preset(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(data)
    configured = RecipeOptions(MODEL, "train.parquet", "val.parquet", "o", config="rewards.toml")
    assert configured.config == str(data / "rewards.toml")
    assert configured.reward_preset is None
    assert configured.train_files == (str(data / "train.parquet"),)
    written = recipe.overrides(configured)
    assert written[-1] == "+reward.reward_kwargs.config=" + hydra_value(str(data / "rewards.toml"))
    assert not [o for o in written if "reward_kwargs.preset" in o]


def test_preset_and_config_are_exclusive(data: Path) -> None:
    with pytest.raises(
        RecipeError, match=r"either preset \('default'\) or config, not both"
    ) as caught:
        RecipeOptions(
            MODEL, data / "t.parquet", data / "v.parquet", data, preset="default", config="r.toml"
        )
    assert caught.value.field == "config"


@pytest.mark.parametrize(
    ("judge", "missing"),
    [
        ({"judge_base_url": JUDGE_URL}, "judge_model"),
        ({"judge_model": JUDGE_MODEL}, "judge_base_url"),
    ],
)
def test_the_judge_needs_url_and_model(data: Path, judge: dict[str, str], missing: str) -> None:
    with pytest.raises(RecipeError, match=f"so {missing} is needed") as caught:
        RecipeOptions(MODEL, data / "t.parquet", data / "v.parquet", data, **judge)  # type: ignore[arg-type]
    assert caught.value.field == missing


@pytest.mark.parametrize(
    ("change", "field", "shown"),
    [
        ({"n_gpus": 0}, "n_gpus", "got 0"),
        ({"nnodes": True}, "nnodes", "got True"),
        ({"train_files": ()}, "train_files", "at least one"),
        ({"val_files": "notes.csv"}, "val_files", "notes.csv"),
        ({"preset": "deepicd"}, "preset", "available: deepicd-r1, default"),
        ({"judge_base_url": "127.0.0.1:8001", "judge_model": "m"}, "judge_base_url", "http://"),
        ({"experiment_name": "run-${now:}"}, "experiment_name", "interpolation"),
        ({"extra_overrides": ["reward_model.reward_manager=batch"]}, "extra_overrides", "legacy"),
        ({"extra_overrides": ["trainer.val_only"]}, "extra_overrides", "key=value"),
    ],
)
def test_option_errors_name_the_option_and_value(
    data: Path, change: dict[str, Any], field: str, shown: str
) -> None:
    base: dict[str, Any] = {
        "model": MODEL,
        "train_files": data / "train.parquet",
        "val_files": data / "val.parquet",
        "output_dir": data / "o",
    }
    with pytest.raises(RecipeError) as caught:
        RecipeOptions(**{**base, **change})
    assert caught.value.field == field
    assert str(caught.value).startswith(f"recipe option {field}: ")
    assert shown in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "plain",
        "/abs/path/train.parquet",
        "pkg://icdreward_verl.reward_manager",
        "with space",
        "a,b",
        "[bracket",
        "quote'inside",
        'double"quote',
        "back\\slash",
        "ends\\",
        "\\'",
        "key=value",
        "true",
        "Null",
        "1e-6",
        "-1",
        "",
        "é ü",
    ],
)
def test_strings_round_trip_through_hydras_parser(text: str) -> None:
    parsed = OverridesParser.create().parse_override(override("k", text)).value()
    assert parsed == text and isinstance(parsed, str)
    listed = OverridesParser.create().parse_override(override("k", [text, "x"])).value()
    assert listed == [text, "x"]


def test_an_interpolation_in_a_value_is_refused() -> None:
    with pytest.raises(ValueError, match="interpolation"):
        hydra_value("${oc.env:HOME}")


# -- 5. the command line and the shell script ---------------------------------------


def test_main_dry_run_prints_the_checked_configuration(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert recipe.main(["--dry-run", *_args(data), "--", "trainer.logger=[console,file]"]) == 0
    out = capsys.readouterr().out
    assert "-m verl.trainer.main_ppo" in out
    assert "    actor_rollout_ref.rollout.n=8 \\\n" in out
    assert "'trainer.logger=[console,file]'" in out  # the extra override, shell-quoted
    assert "  actor_rollout_ref.rollout.n: 8\n" in out  # the composed value
    assert "    name: IcdRewardManager\n" in out
    assert "  reward_kwargs:\n    preset: deepicd-r1\n" in out
    assert "  logger:\n  - console\n  - file\n" in out


def test_main_reports_a_bad_extra_override(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--dry-run", *_args(data), "--", "actor_rollout_ref.rollout.nn=8"]
    assert recipe.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: verl override 'actor_rollout_ref.rollout.nn=8'")


def test_the_dry_run_builds_the_reward_engine_the_workers_will_build(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A misspelt component only fails when an engine is built: the dry run builds one.
    config = data / "bad rewards.toml"
    config.write_text('preset = "default"\n[rewards.outline]\ncomponent = "hierachy"\n')
    assert recipe.main(["--dry-run", *_args(data), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "rewards.outline.component" in err and "'hierachy'" in err


def test_launching_checks_the_data_first(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started: list[list[str]] = []

    def execv(path: str, argv: list[str]) -> None:  # stands in for replacing the process
        started.append(argv)
        raise SystemExit(0)

    monkeypatch.setattr(recipe.os, "execv", execv)
    missing = [*_args(data), "--train", str(tmp_path / "missing.parquet")]
    assert recipe.main(missing) == 2
    assert "data.train_files: no such file or directory" in capsys.readouterr().err
    assert started == []

    with pytest.raises(SystemExit):
        recipe.main(_args(data))
    expected = recipe.command(
        RecipeOptions(MODEL, data / "train.parquet", data / "val.parquet", data / "out")
    )
    assert started == [expected]
    assert "verl.trainer.main_ppo" in capsys.readouterr().out


def test_the_shell_script_runs_a_dry_run(data: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", str(SCRIPT), *_args(data), "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "-m verl.trainer.main_ppo" in done.stdout
    assert "  actor_rollout_ref.actor.optim.lr: 1.0e-06\n" in done.stdout
