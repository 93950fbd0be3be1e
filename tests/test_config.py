"""Configuration: files, presets, validation messages that name file, field and value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icdreward import ConfigError, RewardEngine, load_config
from icdreward.errors import UnknownComponentError


def test_dict_over_preset_merges_and_overrides() -> None:
    cfg = load_config(
        {"preset": "default", "rewards": {"hierarchy": {"weight": 2.0}, "reasoning": False}}
    )
    keys = [r.key for r in cfg.rewards]
    assert keys == ["format", "hierarchy", "exact", "integrity"]
    hierarchy = next(r for r in cfg.rewards if r.key == "hierarchy")
    assert hierarchy.weight == 2.0
    assert hierarchy.params["mode"] == "levels"  # kept from the preset
    assert cfg.preset == "default"


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".json"])
def test_files_of_every_format(tmp_path: Path, suffix: str) -> None:
    data = {"preset": "deepicd-r1", "rewards": {"trace": {"enabled": False}}}
    path = tmp_path / f"rewards{suffix}"
    if suffix == ".toml":
        path.write_text('preset = "deepicd-r1"\n[rewards.trace]\nenabled = false\n')
    elif suffix == ".yaml":
        path.write_text("preset: deepicd-r1\nrewards:\n  trace:\n    enabled: false\n")
    else:
        path.write_text(json.dumps(data))
    engine = RewardEngine.from_config(path)
    assert engine.names == ("format", "outcome", "exact_match")
    assert engine.config.source == str(path)


def test_engine_from_config_scores_like_the_preset(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text('preset = "deepicd-r1"\n')
    engine = RewardEngine.from_config(path)
    text = "trace</think><diagnosis>M5117</diagnosis>"
    assert engine.score([text], ["M5116"]).total.tolist() == [43.0]


def _error(config: object, tmp_path: Path | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        RewardEngine.from_config(config)  # type: ignore[arg-type]
    return info.value


@pytest.mark.parametrize(
    ("config", "field", "needle"),
    [
        ({"preset": "nope"}, "preset", "unknown preset"),
        ({"presets": "default"}, "presets", "did you mean 'preset'"),
        ({"preset": "default", "rewards": {"hierarchy": {"weight": "2"}}},
         "rewards.hierarchy.weight", "expected a number"),
        ({"preset": "default", "rewards": {"hierarchy": {"wieght": 2}}},
         "rewards.hierarchy.wieght", "unknown parameter; did you mean 'weight'"),
        ({"preset": "default", "rewards": {"hierarchy": {"mode": "tree"}}},
         "rewards.hierarchy.mode", "must be one of 'levels', 'prefix'"),
        ({"preset": "default", "rewards": {"hierarchy": {"credit": {"chapter": "x"}}}},
         "rewards.hierarchy.credit.chapter", "expected a number"),
        ({"preset": "default", "rewards": {"hierarchy": {"credit": {"chapters": 1}}}},
         "rewards.hierarchy.credit", "unknown level"),
        ({"preset": "default", "rewards": {"reasoning": {"min_words": -1}}},
         "rewards.reasoning.min_words", "must be >= 0: -1 (got -1)"),
        ({"preset": "default", "rewards": {"score": {"component": "exact"}}},
         "rewards.score", "is a key of every result record"),
        ({"preset": "default", "failure": {"policy": "ignore"}}, "failure.policy",
         "must be one of"),
        ({"preset": "default", "plugins": {"disable": "format"}}, "plugins.disable",
         "list of plugin names"),
        ({"rewards": {}}, "rewards", "no reward component is enabled"),
        ({"rewards": {"exact": {}}, "parser": {"mode": "loose"}}, "parser.mode", "must be one of"),
        ({"preset": "default", "codeset": {"year": "2026"}}, "codeset.year", "expected a year"),
        ({"preset": "default", "rewards": {"exact": {"weight": float("nan")}}},
         "rewards.exact.weight", "finite"),
    ],
)  # fmt: skip
def test_errors_name_the_field_and_value(config: dict, field: str, needle: str) -> None:
    err = _error(config)
    assert err.field == field
    assert needle in str(err)
    assert "<dict>" in str(err)


def test_unknown_component_lists_the_available_ones() -> None:
    with pytest.raises(UnknownComponentError) as info:
        RewardEngine.from_config({"rewards": {"mystery": {"weight": 1.0}}})
    assert info.value.field == "rewards.mystery"
    assert "(available: exact, format, hierarchy, integrity, judge, reasoning)" in str(info.value)


def test_alias_with_component_key() -> None:
    engine = RewardEngine.from_config(
        {"rewards": {"strict_exact": {"component": "exact", "match": 2.0}, "exact": {}}}
    )
    text = "t</think><diagnosis>E119</diagnosis>"
    result = engine.score([text], ["E119"])
    assert result.components["strict_exact"].tolist() == [2.0]
    assert result.components["exact"].tolist() == [1.0]


def test_malformed_files_name_the_file(tmp_path: Path) -> None:
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("preset = \n")
    err = _error(bad_toml)
    assert str(bad_toml) in str(err) and "malformed toml" in str(err)

    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("- just\n- a list\n")
    assert "top level must be a table" in str(_error(bad_yaml))

    missing = tmp_path / "missing.toml"
    assert "cannot read file" in str(_error(missing))

    other = tmp_path / "rewards.ini"
    other.write_text("[x]")
    assert "unknown file type" in str(_error(other))


def test_error_in_file_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text('preset = "default"\n[rewards.hierarchy]\nweight = "heavy"\n')
    err = _error(path)
    assert str(err).startswith(f"{path}: field 'rewards.hierarchy.weight'")
    assert "'heavy'" in str(err)


def test_presets_are_data_the_config_module_loads() -> None:
    # config imports presets; presets importing icdreward back would be a cycle.
    import ast

    import icdreward.presets

    tree = ast.parse(Path(icdreward.presets.__file__).read_text(encoding="utf-8"))
    imported: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            imported.append(node.module or "")
    assert imported and not [m for m in imported if m.split(".")[0] == "icdreward"]


def test_a_preset_copy_does_not_change_the_preset() -> None:
    from icdreward.presets import preset_config

    first = preset_config("default")
    first["rewards"]["hierarchy"]["credit"]["full"] = -1.0
    assert preset_config("default")["rewards"]["hierarchy"]["credit"]["full"] == 1.0


@pytest.mark.parametrize(
    ("table", "field", "needle"),
    [
        ({"limits": {"time_limit": 0}}, "limits.time_limit", "greater than 0 (false: no time"),
        ({"limits": {"time_limit": -2.5}}, "limits.time_limit", "greater than 0"),
        ({"limits": {"time_limit": "10s"}}, "limits.time_limit", "expected seconds"),
        ({"limits": {"time_limit": True}}, "limits.time_limit", "expected seconds"),
        ({"limits": {"time_limit": float("inf")}}, "limits.time_limit", "greater than 0"),
        ({"limits": {"timeout": 10}}, "limits.timeout", "unknown setting (allowed: time_limit)"),
        ({"limits": 10}, "limits", "expected a table"),
        ({"rewards": {"exact": {"time_limit": 0.0}}}, "rewards.exact.time_limit", "greater than 0"),
        ({"rewards": {"exact": {"time_limit": [1]}}}, "rewards.exact.time_limit", "expected"),
    ],
)
def test_time_limit_errors_name_file_field_and_value(
    tmp_path: Path, table: dict, field: str, needle: str
) -> None:
    path = tmp_path / "limits.json"
    path.write_text(json.dumps({"preset": "default", **table}), encoding="utf-8")
    err = _error(path)
    assert err.field == field
    assert needle in str(err)
    assert str(err).startswith(f"{path}: field {field!r}")


def test_time_limits_default_engine_wide_per_component_and_off(tmp_path: Path) -> None:
    from icdreward.config import DEFAULT_TIME_LIMIT

    assert load_config({"preset": "default"}).limits.time_limit == DEFAULT_TIME_LIMIT
    path = tmp_path / "r.toml"
    path.write_text(
        'preset = "default"\n[limits]\ntime_limit = 30\n'
        "[rewards.hierarchy]\ntime_limit = 2.5\n[rewards.exact]\ntime_limit = false\n",
        encoding="utf-8",
    )
    cfg = load_config(path)
    assert cfg.limits.time_limit == 30.0
    limits = {r.key: r.time_limit for r in cfg.rewards}
    assert limits == {
        "format": None, "hierarchy": 2.5, "exact": False, "reasoning": None, "integrity": None
    }  # fmt: skip
    assert "time_limit" not in next(r for r in cfg.rewards if r.key == "hierarchy").params
    off = load_config({"preset": "default", "limits": {"time_limit": False}})
    assert off.limits.time_limit is None
