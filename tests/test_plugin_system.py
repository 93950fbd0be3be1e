"""The plugin system with real distributions, and the plugin test helpers.

The example plugin (``examples/plugin``) is built and installed with pip into a
directory of its own and used from a subprocess whose ``PYTHONPATH`` points there,
so ``importlib.metadata`` discovers it exactly as it would a distribution from
PyPI. Broken, failing and clashing plugins are throwaway distributions: a
``*.dist-info`` directory with ``METADATA`` and ``entry_points.txt`` next to a
module, on ``sys.path`` for one test.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import torch

from icdreward import (
    ConfigError,
    DuplicateComponentError,
    Feature,
    ParsedBatch,
    Parser,
    PluginLoadError,
    PluginWarning,
    Reward,
    RewardEngine,
    RewardOutput,
    ScoringBatch,
)
from icdreward.errors import UnknownComponentError
from icdreward.plugin import PluginManager, hookimpl
from icdreward.plugin.testing import (
    BUILTIN_PLUGINS,
    adversarial_battery,
    check_parser,
    check_reward,
    engine_with_plugins,
    plugin_manager,
)
from icdreward_plugins.exact import ExactReward
from icdreward_plugins.format_parser import FormatReward, TagParser
from icdreward_plugins.hierarchy import HierarchyReward
from icdreward_plugins.reasoning import ReasoningReward

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "plugin"
GOOD = (
    "Disc herniation with lumbar radiculopathy; M51.16 fits.</think><diagnosis>M51.16</diagnosis>"
)
COMPLETIONS = [
    GOOD,
    "Back pain.</think><diagnosis>M51.17</diagnosis>",
    "",
    "no tags at all",
    "Diabetes.</think><diagnosis>E11.9</diagnosis>",
]
GOLDS = ["M5116", "M5116", "M5116", "E119", "E119"]


# -- the example plugin, built and installed for real -----------------------------------

_SCRIPT = """
import json, sys, warnings
from importlib import metadata

warnings.simplefilter("error")  # any PluginWarning fails the run
from icdreward import ConfigError, RewardEngine

completions, golds = json.loads(sys.argv[1])
out = {}
out["entry_points"] = {
    ep.name: [ep.value, ep.dist.name, ep.dist.version]
    for ep in metadata.entry_points(group="icdreward")
}
config = {"preset": "default", "rewards": {"code_mentioned": {"weight": 2.0}}}
engine = RewardEngine.from_config(config)
out["plugins"] = {
    p.name: [p.distribution, p.version, p.module, list(p.rewards)]
    for p in engine.plugin_manager.plugins
}
out["file"] = sys.modules[type(engine.rewards["code_mentioned"]).__module__].__file__
result = engine.score(completions, golds)
out["names"] = list(result.names)
out["weights"] = result.weights
out["components"] = {k: v.tolist() for k, v in result.components.items()}
out["total"] = result.total.tolist()
from icdreward.audit import audit
out["audit"] = {
    s.name: [s.rows, s.exploits, list(s.paid_by)] for s in audit(engine).strategies
}
try:
    RewardEngine.from_config(dict(config, plugins={"disable": ["example"]}))
except ConfigError as exc:
    out["disabled"] = [type(exc).__name__, exc.field, str(exc)]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin pip-installed into a directory of its own."""
    work = tmp_path_factory.mktemp("example")
    source = work / "source"  # pip builds in the tree: build a copy, not the checkout
    shutil.copytree(
        EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    site = work / "site"
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation"]
    command += ["--no-index", "--disable-pip-version-check", "--quiet", "--target", str(site)]
    done = subprocess.run(
        [*command, str(source)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return site


@pytest.fixture(scope="module")
def example_run(example_site: Path) -> dict[str, Any]:
    """What a fresh interpreter that has the example plugin installed reports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(example_site)
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps([COMPLETIONS, GOLDS])],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=example_site.parent,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.slow
def test_installed_example_is_discovered(example_run: dict[str, Any], example_site: Path) -> None:
    value, dist, version = example_run["entry_points"]["example"]
    assert value == "icdreward_example_plugin"
    assert re.sub(r"[-_.]+", "-", dist).lower() == "icdreward-example-plugin"
    assert version == "0.1.0"
    assert example_run["plugins"]["example"] == [dist, "0.1.0", value, ["code_mentioned"]]
    assert Path(example_run["file"]).is_relative_to(example_site)  # not the source checkout
    for name in BUILTIN_PLUGINS:  # the built-ins come through the same group
        assert example_run["plugins"][name][0] == "icdreward"


@pytest.mark.slow
def test_installed_example_is_weighted_into_the_total(example_run: dict[str, Any]) -> None:
    names, weights = example_run["names"], example_run["weights"]
    assert names[-1] == "code_mentioned"
    assert {"format", "hierarchy", "exact", "reasoning"} <= set(names)
    assert weights["code_mentioned"] == 2.0
    components = example_run["components"]
    assert components["code_mentioned"] == pytest.approx([1.25, 0.0, 0.0, 0.0, 0.5 / 3])
    for i, total in enumerate(example_run["total"]):
        expected = sum(weights[n] * components[n][i] for n in names)
        assert total == pytest.approx(expected, abs=1e-6)
    assert example_run["total"][0] > 2.0  # the example's 2 x 1.25 is in there


@pytest.mark.slow
def test_installed_example_strategy_runs_in_the_audit(example_run: dict[str, Any]) -> None:
    audit = example_run["audit"]
    assert {"copy_note", "hedge", "name_the_code"} <= set(audit)  # built-ins and the plugin's
    rows, _, paid_by = audit["name_the_code"]
    assert rows > 0
    # A trace that only names the code is what code_mentioned overpays: the audit says so.
    assert "code_mentioned" in paid_by


@pytest.mark.slow
def test_disabled_example_is_an_unknown_component(example_run: dict[str, Any]) -> None:
    kind, field, message = example_run["disabled"]
    assert kind == UnknownComponentError.__name__
    assert field == "rewards.code_mentioned"
    assert "available: exact, format, hierarchy, integrity, judge, reasoning" in message


# -- throwaway distributions ------------------------------------------------------------

_REWARD_PLUGIN = """
import torch
from icdreward import Reward
from icdreward.plugin import hookimpl

class Component(Reward):
    name = {name!r}

    def score(self, batch):
        return torch.full((batch.size,), {value!r})

@hookimpl
def icdreward_register_rewards(register):
    register(Component)
"""

_PARSER_HOOK_RAISES = """
@hookimpl
def icdreward_register_parsers(register):
    raise ValueError("parser hook exploded")
"""

Site = Callable[..., None]


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """``site(dist, plugins)`` installs a throwaway distribution for this test only.

    ``plugins`` maps entry-point names to module sources; each module is written
    as ``<entry point name>_plugin.py``.
    """
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))

    def install(dist: str, plugins: dict[str, str], version: str = "1.0") -> None:
        info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        metadata_text = f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
        (info / "METADATA").write_text(metadata_text, encoding="utf-8")
        lines = [f"{name} = {name}_plugin" for name in plugins]
        (info / "entry_points.txt").write_text("[icdreward]\n" + "\n".join(lines) + "\n")
        for name, source in plugins.items():
            (root / f"{name}_plugin.py").write_text(textwrap.dedent(source), encoding="utf-8")

    yield install
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", "") or "").startswith(str(root)):
            del sys.modules[name]


def _reward(name: str, value: float = 1.0) -> str:
    return _REWARD_PLUGIN.format(name=name, value=value)


def test_plugin_failing_to_import_is_skipped_with_a_warning(site: Site) -> None:
    site("broken-plugin", {"broken": "raise RuntimeError('boom at import')"})
    with pytest.warns(PluginWarning) as record:
        engine = RewardEngine.from_preset("default")
    messages = [str(w.message) for w in record if issubclass(w.category, PluginWarning)]
    assert len(messages) == 1
    assert "plugin 'broken'" in messages[0]
    assert "distribution broken-plugin 1.0" in messages[0]
    assert "boom at import" in messages[0]
    assert [(f.name, f.distribution, f.version) for f in engine.plugin_manager.failed] == [
        ("broken", "broken-plugin", "1.0")
    ]
    result = engine.score(COMPLETIONS, GOLDS)  # the engine still works
    assert result.total.shape == (len(COMPLETIONS),)
    assert torch.isfinite(result.total).all()


def test_plugin_failing_to_import_raises_in_strict_mode(site: Site) -> None:
    site("broken-plugin", {"broken": "raise RuntimeError('boom at import')"})
    with pytest.raises(PluginLoadError, match=r"plugin 'broken' \(distribution broken-plugin"):
        RewardEngine.from_config({"preset": "default", "plugins": {"strict": True}})
    with pytest.raises(PluginLoadError, match="boom at import"):
        PluginManager(strict=True)


def test_disabled_plugin_is_not_even_imported(site: Site) -> None:
    site("broken-plugin", {"broken": "raise RuntimeError('boom at import')"})
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)
        engine = RewardEngine.from_config({"preset": "default", "plugins": {"disable": ["broken"]}})
    assert "broken_plugin" not in sys.modules
    assert engine.plugin_manager.failed == ()


def test_plugin_whose_hook_raises_loses_all_its_components(site: Site) -> None:
    site("hooky-plugin", {"hooky": _reward("hooky_reward") + _PARSER_HOOK_RAISES})
    site("good-plugin", {"good": _reward("good_reward", 0.5)})
    manager = PluginManager()  # imports the plugins; their hooks run on first use
    with pytest.warns(PluginWarning) as record:
        rewards = manager.registry.rewards
    (message,) = [str(w.message) for w in record if issubclass(w.category, PluginWarning)]
    assert "plugin 'hooky' (distribution hooky-plugin 1.0)" in message
    assert "icdreward_register_parsers raised ValueError('parser hook exploded')" in message
    # The reward it registered before its other hook failed is dropped too; the rest stays.
    assert "hooky_reward" not in rewards
    assert rewards["good_reward"].plugin == "good"
    assert set(BUILTIN_PLUGINS) <= {p.name for p in manager.plugins}
    assert "hooky" not in {p.name for p in manager.plugins}
    assert [f.name for f in manager.failed] == ["hooky"]

    with pytest.warns(PluginWarning, match="hooky"):
        engine = RewardEngine.from_config({"preset": "default", "rewards": {"good_reward": {}}})
    assert engine.score(COMPLETIONS, GOLDS).components["good_reward"].tolist() == [0.5] * 5
    with pytest.warns(PluginWarning), pytest.raises(ConfigError) as info:
        RewardEngine.from_config({"rewards": {"hooky_reward": {}}})
    assert info.value.field == "rewards.hooky_reward"


def test_plugin_whose_hook_raises_fails_in_strict_mode(site: Site) -> None:
    site("hooky-plugin", {"hooky": _reward("hooky_reward") + _PARSER_HOOK_RAISES})
    with pytest.raises(PluginLoadError, match="parser hook exploded"):
        RewardEngine.from_config({"preset": "default", "plugins": {"strict": True}})


def test_two_plugins_registering_one_name(site: Site) -> None:
    site("dup-a", {"dup_a": _reward("twin", 1.0)})
    site("dup-b", {"dup_b": _reward("twin", 2.0)})
    with pytest.raises(DuplicateComponentError) as info:
        RewardEngine.from_preset("default")
    assert set(info.value.plugins) == {"dup_a", "dup_b"}
    assert info.value.name == "twin"
    assert "'dup_a'" in str(info.value)
    assert "'dup_b'" in str(info.value)
    assert "plugins.disable" in str(info.value)  # the message says how to resolve it

    config = {"rewards": {"twin": {}}, "plugins": {"disable": ["dup_a"]}}
    engine = RewardEngine.from_config(config)
    assert engine.score(["x"], ["M5116"]).components["twin"].tolist() == [2.0]


def test_plugin_taking_a_builtin_name(site: Site) -> None:
    site("thief", {"thief": _reward("exact")})
    with pytest.raises(DuplicateComponentError) as info:
        RewardEngine.from_preset("default")
    assert set(info.value.plugins) == {"exact", "thief"}


def test_plugin_name_taken_by_another_distribution_is_reported(site: Site) -> None:
    site("fmt-thief", {"format": ""})  # comes first on sys.path, registers nothing
    with pytest.warns(PluginWarning, match="fmt-thief"):
        PluginManager()


def test_misspelt_hook_is_reported(site: Site) -> None:
    hook = "from icdreward.plugin import hookimpl\n@hookimpl\ndef icdreward_register_reward(r): 0\n"
    site("typo-plugin", {"typo": hook})
    with pytest.warns(PluginWarning, match="icdreward_register_reward"):
        _ = PluginManager().registry


def test_builtin_plugins_constant_matches_the_entry_points() -> None:
    installed = {
        ep.name: ep.value
        for ep in metadata.entry_points(group="icdreward")
        if ep.dist is not None and ep.dist.name == "icdreward"
    }
    # The built-in plugins are the plugins/ layer; the verl integration publishes an
    # entry point of the same group that only adds the ``prepare`` CLI command.
    plugins = {n: v for n, v in installed.items() if v.startswith("icdreward_plugins.")}
    assert plugins == dict(BUILTIN_PLUGINS)
    assert {n: v for n, v in installed.items() if n not in plugins} == {
        "verl": "icdreward_verl._cli"
    }


# -- icdreward.plugin.testing: engines ----------------------------------------------------


class Constant(Reward):
    name = "constant"

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        return torch.full((batch.size,), 0.25)


class ConstantPlugin:
    @hookimpl
    def icdreward_register_rewards(self, register: Any) -> None:
        register(Constant)


class RaisingPlugin:
    @hookimpl
    def icdreward_register_rewards(self, register: Any) -> None:
        raise RuntimeError("hook exploded")


def test_engine_with_a_bare_class_runs_only_its_rewards() -> None:
    engine = engine_with_plugins(Constant)
    assert engine.names == ("constant",)
    assert engine.score(COMPLETIONS, GOLDS).total.tolist() == [0.25] * 5


def test_engine_with_a_preset_and_config() -> None:
    engine = engine_with_plugins(
        ConstantPlugin(), preset="deepicd-r1", config={"rewards": {"constant": {"weight": 4.0}}}
    )
    assert engine.names[-1] == "constant"
    assert engine.weights["constant"] == 4.0
    reference = RewardEngine.from_preset("deepicd-r1").score(COMPLETIONS, GOLDS)
    result = engine.score(COMPLETIONS, GOLDS)
    assert torch.allclose(result.total, reference.total + 1.0)


def test_engine_with_a_named_plugin_honours_disable() -> None:
    config = {"rewards": {"constant": {}}, "plugins": {"disable": ["mine"]}}
    with pytest.raises(UnknownComponentError, match="available: exact, format"):
        engine_with_plugins(("mine", ConstantPlugin()), config=config)
    names = {p.name for p in plugin_manager(("mine", ConstantPlugin())).plugins}
    assert names == {"mine", *BUILTIN_PLUGINS}


def test_engine_without_builtins_has_no_parser() -> None:
    with pytest.raises(ConfigError) as info:
        engine_with_plugins(Constant, builtins=False)
    assert info.value.field == "parser.name"


def test_engine_with_entrypoints_registers_each_builtin_once() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine = engine_with_plugins(
            Constant, entrypoints=True, preset="default", config={"rewards": {"constant": {}}}
        )
    assert {"format", "exact", "constant"} <= set(engine.names)
    plugins = engine.plugin_manager.plugins
    assert sorted(p.name for p in plugins if p.name in BUILTIN_PLUGINS) == sorted(BUILTIN_PLUGINS)
    assert {p.distribution for p in plugins if p.name in BUILTIN_PLUGINS} == {"icdreward"}


def test_engine_from_a_config_file(tmp_path: Path) -> None:
    path = tmp_path / "reward.toml"
    path.write_text("[rewards.constant]\nweight = 2.0\n", encoding="utf-8")
    assert engine_with_plugins(Constant, config=path).weights == {"constant": 2.0}
    engine = engine_with_plugins(Constant, config=path, preset="default")
    assert engine.weights["constant"] == 2.0
    assert "hierarchy" in engine.names
    with pytest.raises(ValueError, match="contradicts"):
        engine_with_plugins(Constant, config={"preset": "default"}, preset="deepicd-r1")


def test_engine_with_a_broken_plugin_is_strict_by_default() -> None:
    with pytest.raises(PluginLoadError, match="hook exploded"):
        engine_with_plugins(RaisingPlugin(), Constant)
    with pytest.warns(PluginWarning, match="RaisingPlugin"):
        engine = engine_with_plugins(RaisingPlugin(), Constant, strict=False)
    assert engine.names == ("constant",)


def test_engine_without_rewards_asks_for_a_config() -> None:
    other_parser = type("OtherTags", (TagParser,), {"name": "other_tags"})
    with pytest.raises(ValueError, match="register no reward"):
        engine_with_plugins(other_parser)


# -- icdreward.plugin.testing: check_reward -----------------------------------------------


@pytest.mark.parametrize(
    ("reward", "params"),
    [
        (FormatReward, {"empty": -1.0, "well_formed": 0.1, "extra_block": -0.1}),
        (ReasoningReward, {"nonempty": 1.0, "min_words": 15, "max_words": 700}),
        (
            ReasoningReward,
            {"repetition_penalty": -0.3, "grounding": 0.1, "consistency": 0.1},
        ),
        (ExactReward, None),
        (HierarchyReward, {"mode": "levels"}),
        (HierarchyReward, {"mode": "prefix"}),
    ],
)
def test_builtin_rewards_meet_the_contract(
    reward: type[Reward], params: dict[str, Any] | None
) -> None:
    values = check_reward(reward, params)
    assert values.shape == (len(adversarial_battery()),)


def _reward_class(score: Callable[[Any, ScoringBatch], Any], **attributes: Any) -> type[Reward]:
    namespace: dict[str, Any] = {"name": "probe", "score": score, **attributes}
    return type("Probe", (Reward,), namespace)


def _counter() -> Callable[[Any, ScoringBatch], torch.Tensor]:
    calls = [0]

    def score(self: Any, batch: ScoringBatch) -> torch.Tensor:
        calls[0] += 1
        return torch.full((batch.size,), float(calls[0]))

    return score


def _nan_on_empty(self: Any, batch: ScoringBatch) -> torch.Tensor:
    return torch.where(batch.parsed.flag(Feature.EMPTY), float("nan"), 1.0)


def _raise_on_big(self: Any, batch: ScoringBatch) -> torch.Tensor:
    if any(len(t) > 100_000 for t in batch.parsed.texts):
        raise MemoryError("too big")
    return torch.zeros(batch.size)


def _mutate(self: Any, batch: ScoringBatch) -> torch.Tensor:
    batch.parsed.features[:, Feature.LENGTH] = 0
    return torch.zeros(batch.size)


def _short_reasons(self: Any, batch: ScoringBatch) -> RewardOutput:
    failed = torch.zeros(batch.size, dtype=torch.bool)
    return RewardOutput(torch.zeros(batch.size), failed, [None])


@pytest.mark.parametrize(
    ("score", "message"),
    [
        (_nan_on_empty, r"non-finite values for samples \[0, 1, 2"),
        (lambda self, b: torch.zeros(b.size, 1), "returned shape"),
        (lambda self, b: torch.zeros(b.size, dtype=torch.int64), "not a floating-point"),
        (lambda self, b: [0.0] * b.size, "not a torch.Tensor"),
        (lambda self, b: torch.rand(b.size), "a second call gave other values"),
        (_counter(), "a second call gave other values"),
        (lambda self, b: torch.arange(b.size, dtype=torch.float32), "order of the samples"),
        (_raise_on_big, "raised MemoryError"),
        (_mutate, "modified batch.parsed.features in place"),
        (_short_reasons, "reasons has 1 entries"),
    ],
)
def test_check_reward_catches_broken_rewards(
    score: Callable[[Any, ScoringBatch], Any], message: str
) -> None:
    with pytest.raises(AssertionError, match=message):
        check_reward(_reward_class(score))


def test_check_reward_accepts_reported_failures_and_nan_in_them() -> None:
    def score(self: Any, batch: ScoringBatch) -> RewardOutput:
        empty = batch.parsed.flag(Feature.EMPTY)
        values = torch.where(empty, float("nan"), 0.5)
        reasons = ["judge timed out" if e else None for e in empty.tolist()]
        return RewardOutput(values, empty, reasons)

    values = check_reward(_reward_class(score))
    assert values[adversarial_battery().labels.index("exact match")] == 0.5


def test_check_reward_runs_async_rewards_even_inside_a_running_loop() -> None:
    async def ascore(self: Any, batch: ScoringBatch) -> torch.Tensor:
        await asyncio.sleep(0)
        return torch.ones(batch.size)

    def score(self: Any, batch: ScoringBatch) -> torch.Tensor:
        raise AssertionError("the async path must be used")

    cls = _reward_class(score, ascore=ascore, is_async=True)

    async def inside_a_loop() -> torch.Tensor:
        return check_reward(cls)

    assert bool((asyncio.run(inside_a_loop()) == 1).all())


def test_check_reward_validates_params_like_the_engine() -> None:
    with pytest.raises(ConfigError) as info:
        check_reward(ReasoningReward, {"min_word": 3})
    assert info.value.field == "rewards.reasoning.min_word"
    with pytest.raises(AssertionError, match=r"not a subclass of icdreward\.Reward"):
        check_reward(TagParser)  # type: ignore[arg-type]


def test_check_reward_with_custom_samples_and_order_dependence_allowed() -> None:
    battery = adversarial_battery()
    cls = _reward_class(lambda self, b: torch.arange(b.size, dtype=torch.float32))
    values = check_reward(cls, battery=battery, order_independent=False)
    assert values.tolist() == list(range(len(battery)))


# -- icdreward.plugin.testing: check_parser -----------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        None,
        {"mode": "strict"},
        {"case_fold": False, "validate": "pattern", "find_code_in_text": False},
        {"validate": "none", "prefilled_think": False},
        {"free_text": True},
    ],
)
def test_builtin_parser_meets_the_contract(params: dict[str, Any] | None) -> None:
    parsed = check_parser(TagParser, params)
    assert len(parsed) == len(adversarial_battery())


def _parser_class(parse: Callable[[Any, Sequence[object]], ParsedBatch]) -> type[Parser]:
    return type("Probe", (Parser,), {"name": "probe", "parse": parse})


def _tags_parse(completions: Sequence[object]) -> ParsedBatch:
    from icdreward.codeset import load_codeset
    from icdreward.components import ComponentContext

    tags = TagParser(TagParser.Params(), ComponentContext(load_codeset()))
    return tags.parse(completions)


def _str_only(self: Any, completions: Sequence[object]) -> ParsedBatch:
    return _tags_parse([c.strip() for c in completions])  # type: ignore[attr-defined]


def _int64_features(self: Any, completions: Sequence[object]) -> ParsedBatch:
    parsed = _tags_parse(completions)
    return ParsedBatch(
        parsed.texts,
        parsed.think,
        parsed.diagnosis,
        parsed.candidates,
        parsed.codes,
        parsed.features.long(),
    )


def _codes_without_flag(self: Any, completions: Sequence[object]) -> ParsedBatch:
    parsed = _tags_parse(completions)
    features = parsed.features.clone()
    features[:, Feature.CODE_VALID] = 0
    return ParsedBatch(
        parsed.texts, parsed.think, parsed.diagnosis, parsed.candidates, parsed.codes, features
    )


@pytest.mark.parametrize(
    ("parse", "message"),
    [
        (_str_only, "raised on the battery: AttributeError"),
        (_int64_features, "features must be an int32 CPU tensor"),
        (_codes_without_flag, "exactly when CODE_VALID fails for rows 5 \\(chat message\\)"),
    ],
)
def test_check_parser_catches_broken_parsers(
    parse: Callable[[Any, Sequence[object]], ParsedBatch], message: str
) -> None:
    with pytest.raises(AssertionError, match=message):
        check_parser(_parser_class(parse))


def test_docs_show_the_example_plugin_in_full() -> None:
    docs = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    for name in (
        "pyproject.toml",
        "src/icdreward_example_plugin/__init__.py",
        "tests/test_plugin.py",
    ):
        assert (EXAMPLE / name).read_text(encoding="utf-8").strip() in docs, name
