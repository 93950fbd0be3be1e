"""Tests of the example plugin, written with icdreward's plugin test helpers."""

from __future__ import annotations

import pytest
import torch
from icdreward import ConfigError
from icdreward.plugin.testing import check_reward, engine_with_plugins, plugin_manager

import icdreward_example_plugin as plugin

# The trace names the code and two of the four key words of its description
# ("Intervertebral disc disorders with radiculopathy, lumbar region").
NAMES_IT = (
    "Disc herniation with lumbar radiculopathy; M51.16 fits.</think><diagnosis>M51.16</diagnosis>"
)
SILENT = "Back pain.</think><diagnosis>M51.16</diagnosis>"
LOWER_DOTLESS = "So m5116 it is.</think><diagnosis>M51.16</diagnosis>"
LONGER_CODE = "Not M51.169, not XM5116.</think><diagnosis>M51.16</diagnosis>"
NO_CODE = "I am not sure.</think><diagnosis>something</diagnosis>"


def test_registers_code_mentioned() -> None:
    registry = plugin_manager(("example", plugin), builtins=False).registry
    assert registry.rewards["code_mentioned"].cls is plugin.CodeMentioned
    assert registry.rewards["code_mentioned"].plugin == "example"


@pytest.mark.parametrize(
    "params",
    [
        None,
        {"code": 2.0, "keywords": 0.0},
        {"keywords": 1.0, "max_keywords": 1, "no_code": -1.0, "max_chars": 10},
    ],
)
def test_reward_contract(params: dict[str, object] | None) -> None:
    check_reward(plugin.CodeMentioned, params)


def test_values() -> None:
    engine = engine_with_plugins(plugin)  # every reward of the plugin, weight 1
    assert engine.names == ("code_mentioned",)
    result = engine.score([NAMES_IT, SILENT, LOWER_DOTLESS, LONGER_CODE, NO_CODE], ["M5116"] * 5)
    expected = [1.0 + 0.5 * 2 / 4, 0.0, 1.0, 0.0, 0.0]
    assert result.components["code_mentioned"].tolist() == pytest.approx(expected)


def test_params_from_config() -> None:
    config = {"rewards": {"code_mentioned": {"code": 3.0, "keywords": 0.0, "no_code": -1.0}}}
    engine = engine_with_plugins(plugin, config=config)
    result = engine.score([NAMES_IT, NO_CODE], ["M5116", "M5116"])
    assert result.total.tolist() == [3.0, -1.0]


def test_weighted_next_to_the_default_preset() -> None:
    engine = engine_with_plugins(
        plugin, preset="default", config={"rewards": {"code_mentioned": {"weight": 2.0}}}
    )
    assert engine.weights["code_mentioned"] == 2.0
    assert {"format", "hierarchy", "reasoning"} <= set(engine.names)
    result = engine.score([NAMES_IT, SILENT, NO_CODE], ["M5116"] * 3)
    weights = torch.tensor([result.weights[n] for n in result.names])
    assert torch.allclose(result.total, (result.matrix * weights).sum(dim=1))
    assert result.components["code_mentioned"][0] == pytest.approx(1.25)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"max_keywords": "four"}, "rewards.code_mentioned.max_keywords"),
        ({"max_keyword": 4}, "rewards.code_mentioned.max_keyword"),
        ({"max_keywords": 0}, "rewards.code_mentioned.max_keywords"),
    ],
)
def test_bad_params_name_the_field(params: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        engine_with_plugins(plugin, config={"rewards": {"code_mentioned": params}})
    assert info.value.field == field


def test_disabled_by_name() -> None:
    config = {"rewards": {"code_mentioned": {}}, "plugins": {"disable": ["example"]}}
    with pytest.raises(ConfigError, match="code_mentioned"):
        engine_with_plugins(("example", plugin), config=config)
