"""Test helpers for plugin authors.

Three helpers cover what a plugin's test suite needs, without pytest (failures are
plain :class:`AssertionError` exceptions, which every test runner reports):

:func:`engine_with_plugins`
    a :class:`~icdreward.RewardEngine` built from plugins *in this process*
    (modules, objects with ``@hookimpl`` functions, or bare component classes),
    together with the built-in plugins and without the installed ones, so a test
    sees exactly the plugins it names.
:func:`check_reward`
    runs a reward component on a battery of adversarial completions (``None``,
    bytes, numbers, dicts, empty and 1 MB texts, unclosed and repeated tags, mixed
    unicode, valid and near-miss codes) under both shipped parser configurations,
    and asserts the reward contract: a floating-point CPU tensor of shape ``[B]``
    (or a :class:`~icdreward.RewardOutput`), finite, deterministic, independent
    of the order of the samples, no exception, the batch left untouched.
:func:`check_parser`
    the same for an output parser: it never raises, and its
    :class:`~icdreward.ParsedBatch` is consistent (lengths, dtypes, flags, spans).

Example, the test module of a plugin ``my_plugin`` that registers ``mentions_code``::

    import my_plugin
    from icdreward.plugin.testing import check_reward, engine_with_plugins

    def test_contract():
        check_reward(my_plugin.MentionsCode, {"bonus": 2.0})

    def test_in_an_engine():
        engine = engine_with_plugins(
            my_plugin, preset="default", config={"rewards": {"mentions_code": {"weight": 2.0}}}
        )
        result = engine.score(["M51.16 fits.</think><diagnosis>M51.16</diagnosis>"], ["M5116"])
        assert result.weights["mentions_code"] == 2.0

A runnable version with a bare component class:

>>> import torch
>>> from icdreward import Reward
>>> class Constant(Reward):
...     name = "constant"
...     def score(self, batch):
...         return torch.ones(batch.size)
>>> values = check_reward(Constant)
>>> values.shape == (len(adversarial_battery().completions),)
True
>>> engine = engine_with_plugins(Constant)
>>> engine.score(["<diagnosis>M51.16</diagnosis>"], ["M5116"]).total.tolist()
[1.0]
"""

from __future__ import annotations

import functools
import os
import types
from collections.abc import Iterable, Mapping, Sequence
from importlib import import_module, metadata
from pathlib import Path
from typing import Any, Final

import attrs
import torch

from icdreward._params import structure_params
from icdreward.batch import Feature, ParsedBatch, ScoringBatch
from icdreward.codeset import CodeSet, load_codeset
from icdreward.components import ComponentContext, Parser, Reward, RewardOutput
from icdreward.config import EngineConfig, load_config, read_config_file
from icdreward.engine import RewardEngine
from icdreward.golds import gold_codes
from icdreward.loop import LoopThread
from icdreward.plugin._manager import PluginManager
from icdreward.plugin._registry import Register
from icdreward.plugin._spec import PROJECT_NAME, hookimpl
from icdreward.presets import available_presets, preset_config

__all__ = [
    "BUILTIN_PLUGINS",
    "Battery",
    "adversarial_battery",
    "check_parser",
    "check_reward",
    "engine_with_plugins",
    "plugin_manager",
]


def _builtin_plugins() -> Mapping[str, str]:
    # The entry points that icdreward's pyproject.toml declares, as installed: the one
    # list of built-in plugins, read back instead of repeated here.
    try:
        dist = metadata.distribution(PROJECT_NAME)
    except metadata.PackageNotFoundError:
        raise ImportError(
            f"icdreward.plugin.testing reads the built-in plugins from the entry points of "
            f"the installed {PROJECT_NAME!r} distribution, which is not installed "
            f"(install it, e.g. pip install -e .)"
        ) from None
    # Integrations publish in the same group (the verl integration's CLI command): the
    # built-in plugins are the ones in the icdreward_plugins package.
    found = {
        ep.name: ep.value
        for ep in dist.entry_points
        if ep.group == PROJECT_NAME and ep.value.split(".")[0] == "icdreward_plugins"
    }
    return types.MappingProxyType(dict(sorted(found.items())))


BUILTIN_PLUGINS: Final[Mapping[str, str]] = _builtin_plugins()
"""The built-in plugins: entry-point name -> module, read from the entry points of the
installed ``icdreward`` distribution (declared in its ``pyproject.toml``)."""

_SOURCE = "icdreward.plugin.testing"
_MEGABYTE = 1_000_000
_FLAG_COLUMNS: Final = tuple(Feature)[: Feature.FROM_FREE_TEXT + 1]
_SPAN_COLUMNS: Final = (
    Feature.THINK_START,
    Feature.THINK_END,
    Feature.DIAGNOSIS_START,
    Feature.DIAGNOSIS_END,
)


# -- plugin managers and engines ------------------------------------------------------


def plugin_manager(
    *plugins: object,
    builtins: bool = True,
    entrypoints: bool = False,
    disable: Iterable[str] = (),
    strict: bool = True,
) -> PluginManager:
    """A :class:`~icdreward.plugin.PluginManager` holding the given in-process plugins.

    Args:
        plugins: each one of

            * a module or object with ``@hookimpl`` functions, registered under its
              ``__name__`` (a module's dotted name);
            * a ``(name, plugin)`` pair, registered under ``name`` (the name that
              ``disable`` and messages use, like an entry-point name);
            * a :class:`~icdreward.Reward` or :class:`~icdreward.Parser` subclass,
              wrapped in a plugin of its own named ``"module.QualName"``.
        builtins: also register the built-in plugins (:data:`BUILTIN_PLUGINS`) under
            their entry-point names; they provide the ``tags`` parser that the presets
            use. With ``entrypoints=True`` a built-in that is installed as an entry
            point is loaded from there instead.
        entrypoints: also load every installed plugin of the ``icdreward``
            entry-point group, as a real engine does. Off by default so that a test
            does not depend on what else is installed (and so that a plugin given here
            that is also installed is not registered twice, which is an error).
        disable: plugin names to skip (like ``plugins.disable`` in a configuration).
        strict: raise :class:`~icdreward.errors.PluginLoadError` for a plugin that
            fails to register instead of warning (the default here: in a test, a
            broken plugin should fail loudly).

    Returns:
        The manager; its :attr:`~icdreward.plugin.PluginManager.registry` is built on
        first use (which is when registration hooks run).
    """
    manager = PluginManager(disable=disable, strict=strict, entrypoints=entrypoints)
    if builtins:
        installed: set[str] = set()
        if entrypoints:
            installed = {ep.name for ep in metadata.entry_points(group=PROJECT_NAME)}
        for name, module in BUILTIN_PLUGINS.items():
            if name not in installed:
                manager.register(import_module(module), name=name)
    for plugin in plugins:
        name, obj = _plugin_entry(plugin)
        manager.register(obj, name=name)
    return manager


def engine_with_plugins(
    *plugins: object,
    config: str | os.PathLike[str] | Mapping[str, Any] | EngineConfig | None = None,
    preset: str | None = None,
    builtins: bool = True,
    entrypoints: bool = False,
    strict: bool = True,
    codeset: CodeSet | None = None,
) -> RewardEngine:
    """A :class:`~icdreward.RewardEngine` over the given in-process plugins.

    Args:
        plugins: modules, objects, ``(name, plugin)`` pairs or component classes, as
            for :func:`plugin_manager`.
        config: the engine configuration: a mapping, a TOML/YAML/JSON file or an
            :class:`~icdreward.EngineConfig`. Its ``plugins.disable`` and
            ``plugins.strict`` apply to the plugins here.
        preset: a shipped preset (``"default"``, ``"deepicd-r1"``) that ``config`` is
            merged over, as with ``preset = "..."`` inside the configuration.
        builtins: also register the built-in plugins (see :func:`plugin_manager`).
        entrypoints: also load the installed plugins of the ``icdreward`` group.
        strict: a plugin that fails to load raises instead of warning.
        codeset: the code set (default: the shipped year of the configuration).

    With neither ``config`` nor ``preset``, the engine runs every reward that the
    given ``plugins`` (not the built-ins) register, with weight 1 and default
    parameters, after the default ``tags`` parser.

    Raises:
        ValueError: ``preset`` contradicts the configuration's own preset, or no
            configuration was given and the plugins register no reward.
        ConfigError: the configuration is invalid, or names an unknown component
            (the message lists the available ones) or a bad parameter.
        DuplicateComponentError: two plugins register the same component name.
        PluginLoadError: a plugin failed to load (with ``strict``).
    """
    engine_config = _load(config, preset)
    disable: tuple[str, ...] = ()
    if engine_config is not None:
        disable = engine_config.plugins.disable
        strict = strict or engine_config.plugins.strict
    entries = [_plugin_entry(p) for p in plugins]
    manager = plugin_manager(
        *entries, builtins=builtins, entrypoints=entrypoints, disable=disable, strict=strict
    )
    if engine_config is None:
        mine = {name for name, _ in entries}
        rewards = [r for p in manager.plugins if p.name in mine for r in p.rewards]
        if not rewards:
            raise ValueError(
                "the given plugins register no reward component; pass config= or preset="
            )
        engine_config = load_config({"rewards": dict.fromkeys(rewards, True)}, source=_SOURCE)
    return RewardEngine(engine_config, plugin_manager=manager, codeset=codeset)


def _load(
    config: str | os.PathLike[str] | Mapping[str, Any] | EngineConfig | None, preset: str | None
) -> EngineConfig | None:
    if isinstance(config, EngineConfig):
        if preset is not None:
            raise ValueError("preset= cannot be combined with an already loaded EngineConfig")
        return config
    if config is None and preset is None:
        return None
    source = "<dict>"
    raw: dict[str, Any]
    if config is None:
        raw = {}
    elif isinstance(config, Mapping):
        raw = dict(config)
    else:
        if preset is None:
            return load_config(Path(config))
        source = os.fspath(config)
        raw = read_config_file(Path(config))
    if preset is not None:
        if raw.get("preset", preset) != preset:
            raise ValueError(
                f"preset={preset!r} contradicts the configuration's preset {raw['preset']!r}"
            )
        raw["preset"] = preset
        if source == "<dict>" and not raw.keys() - {"preset"}:
            source = f"preset {preset!r}"
    return load_config(raw, source=source)


def _plugin_entry(plugin: object) -> tuple[str, object]:
    if isinstance(plugin, tuple) and len(plugin) == 2 and isinstance(plugin[0], str):
        return plugin[0], plugin[1]
    if isinstance(plugin, type) and issubclass(plugin, (Reward, Parser)):
        return f"{plugin.__module__}.{plugin.__qualname__}", _ComponentPlugin(plugin)
    name = getattr(plugin, "__name__", None)
    return (name if isinstance(name, str) else type(plugin).__qualname__), plugin


class _ComponentPlugin:
    """A plugin registering one component class (what a bare class passed in becomes)."""

    def __init__(self, cls: type[Reward] | type[Parser]) -> None:
        self.cls = cls

    @hookimpl
    def icdreward_register_rewards(self, register: Register) -> None:
        if issubclass(self.cls, Reward):
            register(self.cls)

    @hookimpl
    def icdreward_register_parsers(self, register: Register) -> None:
        if issubclass(self.cls, Parser):
            register(self.cls)


# -- the adversarial battery ------------------------------------------------------------


@attrs.frozen
class Battery:
    """A batch of hostile and ordinary samples, aligned row by row.

    Attributes:
        completions: raw completions, as a trainer might hand them over.
        golds: per sample, the gold code(s) in raw form (a code, a list, or nothing).
        notes: per sample, the admission note (empty, short, long or odd).
        group_ids: per sample, its GRPO group (groups of four consecutive samples).
        labels: per sample, a short description used in failure messages.
    """

    completions: tuple[object, ...]
    golds: tuple[object, ...]
    notes: tuple[str, ...]
    group_ids: tuple[int, ...]
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.completions)


def adversarial_battery() -> Battery:
    """The samples :func:`check_reward` and :func:`check_parser` run on (a fresh copy).

    About forty rows: non-text completions (``None``, numbers, NaN, dicts, a list
    that is not a chat), bytes (valid and invalid UTF-8), chat messages, empty and
    whitespace-only text, four texts of about 1 MB (a long trace, no tags at all,
    thousands of unclosed ``<think>`` and ``<diagnosis>`` tags), unclosed, empty,
    reversed and repeated blocks, text outside the blocks, mixed unicode (CJK,
    emoji, right-to-left marks, NUL, a lone surrogate, full-width digits), and
    codes that match the gold exactly, differ in the last character, stop at the
    category, sit in another chapter, are lower case, malformed, ICD-9 style,
    embedded in a sentence or given as free text. Golds include a missing one,
    several codes, an unknown code and a category that ends in a letter.

    >>> battery = adversarial_battery()
    >>> len(battery.completions) == len(battery.golds) == len(battery.notes)
    True
    """
    trace = "Low back pain radiating down the left leg; MRI shows L5-S1 disc herniation."
    good = f"{trace}</think><diagnosis>M51.16</diagnosis>"
    note = (
        "58-year-old man with low back pain radiating to the left leg for three weeks. "
        "MRI: L5-S1 disc herniation compressing the S1 nerve root. Type 2 diabetes."
    )
    rows: list[tuple[str, object, object, str]] = [
        ("None", None, "M5116", ""),
        ("int", 42, "M5116", note),
        ("float", 3.25, "E119", ""),
        ("NaN", float("nan"), "E119", ""),
        ("dict without content", {"unexpected": 1}, "M5116", note),
        ("chat message", {"role": "assistant", "content": good}, "M5116", note),
        (
            "chat transcript",
            [{"role": "user", "content": "Code this."}, {"role": "assistant", "content": good}],
            "M5116",
            note,
        ),
        ("list of strings", ["<diagnosis>M51.16</diagnosis>", "x"], "M5116", ""),
        ("bytes", good.encode(), "M5116", note),
        ("invalid UTF-8 bytes", b"\xff\xfe<diagnosis>\x80M51.16</diagnosis>", "M5116", ""),
        ("empty", "", "M5116", note),
        ("whitespace", " \n\t\r\n ", "M5116", ""),
        ("exact match", good, "M5116", note),
        ("exact match, dotless", f"{trace}</think><diagnosis>M5116</diagnosis>", "M51.16", ""),
        ("sibling code", f"{trace}</think><diagnosis>M51.17</diagnosis>", "M5116", note),
        ("category only", f"{trace}</think><diagnosis>M51</diagnosis>", "M5116", note),
        ("other chapter", f"{trace}</think><diagnosis>Z00.00</diagnosis>", "M5116", note),
        ("lower case", f"{trace}</think><diagnosis>m51.16</diagnosis>", "M5116", note),
        ("malformed code", f"{trace}</think><diagnosis>M51.1X6Z9Q</diagnosis>", "M5116", ""),
        ("ICD-9 code", f"{trace}</think><diagnosis>722.10</diagnosis>", "M5116", ""),
        (
            "code in a sentence",
            f"{trace}</think><diagnosis>M51.16 (lumbar radiculopathy)</diagnosis>",
            "M5116",
            note,
        ),
        (
            "free text",
            "Long-standing diabetes.</think><diagnosis>type 2 diabetes mellitus without "
            "complications</diagnosis>",
            "E119",
            note,
        ),
        ("several golds", good, ["E11.9", "M51.16"], note),
        ("missing gold", good, None, note),
        ("unknown gold", good, "Q99.999", ""),
        ("letter category gold", f"{trace}</think><diagnosis>C4A.9</diagnosis>", "C4A9", ""),
        ("unclosed think", trace, "M5116", note),
        ("unclosed diagnosis", f"{trace}</think><diagnosis>M51.16", "M5116", note),
        ("empty diagnosis", f"{trace}</think><diagnosis></diagnosis>", "M5116", ""),
        ("empty think", "</think><diagnosis>M51.16</diagnosis>", "M5116", ""),
        ("reversed tags", "</diagnosis>M51.16<diagnosis></think><think>", "M5116", ""),
        (
            "extra blocks",
            f"{good}<think>second thoughts</think><diagnosis>Z00.00</diagnosis>",
            "M5116",
            note,
        ),
        ("text outside", f"Sure! <think>{good} Hope this helps.", "M5116", note),
        (
            "mixed unicode",
            "患者 😷 с болью в спине \u200f\u202eالتشخيص\u202c naïve \x00 \ud800"
            "</think><diagnosis>Ｍ５１．１６</diagnosis>",
            "M5116",
            "Patiënt 患者 😷 \u200b\x00",
        ),
        (
            "repetition loop",
            "the pain radiates to the leg. " * 400 + "</think><diagnosis>M51.16</diagnosis>",
            "M5116",
            note,
        ),
        (
            "1 MB trace",
            "lumbar radiculopathy with disc herniation " * (_MEGABYTE // 42)
            + "</think><diagnosis>M51.16</diagnosis>",
            "M5116",
            note * 600,
        ),
        ("1 MB without tags", "x" * _MEGABYTE, "M5116", ""),
        ("1 MB of unclosed <think>", "<think>" * (_MEGABYTE // 7), "M5116", ""),
        ("1 MB of unclosed <diagnosis>", "<diagnosis>M51.16" * (_MEGABYTE // 17), "M5116", ""),
        ("1 MB of blocks", good * (_MEGABYTE // len(good)), "M5116", note),
    ]
    return Battery(
        completions=tuple(r[1] for r in rows),
        golds=tuple(r[2] for r in rows),
        notes=tuple(r[3] for r in rows),
        group_ids=tuple(i // 4 for i in range(len(rows))),
        labels=tuple(r[0] for r in rows),
    )


# -- checks -----------------------------------------------------------------------------


def check_reward(
    reward_cls: type[Reward],
    params: object = None,
    *,
    codeset: CodeSet | None = None,
    parser: Parser | None = None,
    battery: Battery | None = None,
    order_independent: bool = True,
) -> torch.Tensor:
    """Run a reward component on the adversarial battery and assert its contract.

    The reward is built like the engine builds it (``params`` validated into its
    ``Params`` class) and run on :func:`adversarial_battery` as parsed by the
    built-in ``tags`` parser in the configuration of each shipped preset, with and
    without group ids, and on an empty batch. For every run it asserts that:

    * ``score`` (or ``ascore`` when ``is_async``) raises nothing;
    * it returns a floating-point CPU tensor of shape ``[B]``, or a
      :class:`~icdreward.RewardOutput` whose ``values`` are one and whose
      ``failed`` is a ``bool`` tensor ``[B]`` with ``B`` reasons;
    * every value that is not flagged as failed is finite;
    * a second call, and a freshly built instance, give the same values;
    * with ``order_independent``, scoring the batch in reverse order gives the
      values in reverse order (the engine scores sub-batches when it isolates a
      failing sample, so a sample's value must not depend on where it sits);
    * the parsed batch (its feature tensor) is left unchanged.

    Args:
        reward_cls: the :class:`~icdreward.Reward` subclass.
        params: its parameters as a configuration table (a mapping, validated like
            ``[rewards.NAME]`` keys), an instance of its ``Params`` class, or None
            for the defaults.
        codeset: the code set (default: the shipped one).
        parser: parse with this parser instead of the two ``tags`` configurations.
        battery: samples to use instead of :func:`adversarial_battery`.
        order_independent: check that the values follow the samples when the batch
            is reordered (switch off for a reward that looks at batch neighbours
            other than through :attr:`~icdreward.ScoringBatch.group_ids`).

    Returns:
        ``float [B]``: the values of the first run (``tags`` parser of the default
        preset, group ids given), aligned with the battery's rows.

    Raises:
        AssertionError: the contract is broken; the message names the reward, the
            run and the offending samples.
        ConfigError: ``params`` does not validate against the reward's ``Params``.
    """
    _check_class(reward_cls, Reward)
    name = reward_cls.name
    codeset = codeset or load_codeset()
    context = ComponentContext(codeset=codeset, config_source=_SOURCE)
    built = _params(reward_cls, params, f"rewards.{name}")
    battery = battery or adversarial_battery()
    labels = battery.labels
    golds = [gold_codes(g, codeset.normalize) for g in battery.golds]
    group_ids = torch.tensor(battery.group_ids, dtype=torch.int64)
    parsings = list(_parsings(battery, parser, context))
    runner = _Runner()
    reward = reward_cls(built, context)
    first: torch.Tensor | None = None
    try:
        for label, parsed in parsings:
            for ids in (group_ids, None):
                where = f"reward {name!r} ({label}, group ids {'None' if ids is None else 'given'})"
                # A new ScoringBatch per call: its lazily computed tensors start afresh.
                make = functools.partial(
                    ScoringBatch, parsed, golds, codeset, notes=battery.notes, group_ids=ids
                )
                features = parsed.features.clone()
                out = runner.check(reward, make(), where)
                if not torch.equal(parsed.features, features):
                    raise AssertionError(f"{where} modified batch.parsed.features in place")
                again = runner.check(reward, make(), where)
                _same(out, again, f"{where}: a second call gave other values", labels)
                fresh = reward_cls(built, context)
                try:
                    again = runner.check(fresh, make(), where)
                finally:
                    fresh.close()
                _same(out, again, f"{where}: a fresh instance gave other values", labels)
                if order_independent:
                    order = list(range(len(parsed) - 1, -1, -1))
                    _same(
                        _Checked(out.values[order], out.failed[order]),
                        runner.check(reward, make().subset(order), where),
                        f"{where}: the values depend on the order of the samples",
                        [labels[i] for i in order],
                    )
                if first is None:
                    first = out.values
        where = f"reward {name!r} (empty batch)"
        runner.check(reward, ScoringBatch(parsings[0][1].subset([]), [], codeset), where)
    finally:
        reward.close()
        runner.close()
    if first is None:  # pragma: no cover - _parsings yields at least one batch
        raise AssertionError("no parsed batch to score")
    return first


def check_parser(
    parser_cls: type[Parser],
    params: object = None,
    *,
    codeset: CodeSet | None = None,
    battery: Battery | None = None,
) -> ParsedBatch:
    """Run an output parser on the adversarial battery and assert its contract.

    Asserts that ``parse`` raises nothing and returns a :class:`~icdreward.ParsedBatch`
    with one row per completion: ``texts``, ``think``, ``diagnosis``, ``candidates``
    and ``codes`` tuples of ``str``; ``features`` an ``int32`` CPU tensor
    ``[B, len(Feature)]`` whose flag columns hold 0 or 1, counts are not negative,
    spans lie in ``[-1, LENGTH]``, ``LENGTH`` is the length of ``texts[i]`` and
    ``THINK_CHARS`` that of ``think[i]``; a
    code is set exactly when ``CODE_VALID`` is, equals the candidate, and is in the
    code set when ``CODE_KNOWN`` is; a candidate is set exactly when ``CODE_FOUND``
    is; completions that are not text (``None``, numbers, a dict without content)
    are flagged ``BAD_TYPE`` and ``EMPTY`` and give no code. Parsing again, parsing
    in reverse order and parsing an empty list must agree with the first parse, and
    the codes must encode (:attr:`ScoringBatch.pred_chars`, ``pred_levels``).

    Args:
        parser_cls: the :class:`~icdreward.Parser` subclass.
        params: its parameters (a mapping validated like ``[parser]`` keys, an
            instance of its ``Params`` class, or None for the defaults).
        codeset: the code set (default: the shipped one).
        battery: samples to use instead of :func:`adversarial_battery`.

    Returns:
        The parsed battery, for further assertions of the caller's own.

    Raises:
        AssertionError: the contract is broken; the message names the parser, the
            check and the offending rows.

    >>> from icdreward_plugins.format_parser import TagParser
    >>> parsed = check_parser(TagParser, {"mode": "strict"})
    >>> parsed.codes[adversarial_battery().labels.index("exact match")]
    'M5116'
    """
    _check_class(parser_cls, Parser)
    name = parser_cls.name
    codeset = codeset or load_codeset()
    context = ComponentContext(codeset=codeset, config_source=_SOURCE)
    parser = parser_cls(_params(parser_cls, params, "parser"), context)
    battery = battery or adversarial_battery()
    completions = list(battery.completions)
    where = f"parser {name!r}"
    parsed = _parse(parser, completions, where)
    _check_parsed(parsed, completions, codeset, where, battery.labels)
    _same_parse(parsed, _parse(parser, completions, where), f"{where}: a second parse differs")
    order = list(range(len(completions) - 1, -1, -1))
    flipped = _parse(parser, [completions[i] for i in order], where)
    _same_parse(
        parsed.subset(order), flipped, f"{where}: rows depend on the order of the completions"
    )
    empty = _parse(parser, [], where)
    _check_parsed(empty, [], codeset, f"{where} on an empty batch", ())
    batch = ScoringBatch(parsed, [() for _ in completions], codeset)
    try:
        _ = batch.pred_chars, batch.pred_levels
    except Exception as exc:
        raise AssertionError(f"{where}: the codes cannot be encoded: {exc!r}") from exc
    return parsed


# -- internals --------------------------------------------------------------------------


@attrs.frozen(eq=False)
class _Checked:
    values: torch.Tensor
    failed: torch.Tensor


def _check_class(cls: object, base: type[Any]) -> None:
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise AssertionError(f"{cls!r} is not a subclass of icdreward.{base.__name__}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise AssertionError(f"{cls.__name__} has no name: set the class attribute 'name'")
    params = getattr(cls, "Params", None)
    if not (isinstance(params, type) and attrs.has(params)):
        raise AssertionError(f"{cls.__name__}.Params must be an attrs class, got {params!r}")
    if not isinstance(getattr(cls, "is_async", False), bool):
        raise AssertionError(f"{cls.__name__}.is_async must be a bool")


def _params(cls: type[Reward] | type[Parser], params: object, field: str) -> Any:
    if params is None:
        params = {}
    if isinstance(params, cls.Params):
        return params
    if isinstance(params, Mapping):
        return structure_params(cls.Params, params, source=_SOURCE, field=field)
    raise TypeError(f"params must be a mapping or a {cls.Params.__name__} instance, got {params!r}")


def _preset_parsers() -> list[tuple[str, Mapping[str, Any]]]:
    names = sorted(available_presets(), key=lambda n: n != "default")
    out: list[tuple[str, Mapping[str, Any]]] = []
    for preset in names:
        table = dict(preset_config(preset).get("parser", {}))
        if table.pop("name", "tags") == "tags":
            out.append((f"'tags' parser of preset {preset!r}", table))
    return out


def _parsings(
    battery: Battery, parser: Parser | None, context: ComponentContext
) -> Iterable[tuple[str, ParsedBatch]]:
    completions = list(battery.completions)
    if parser is not None:
        where = f"parser {type(parser).name!r}"
        yield where, _parse(parser, completions, where)
        return
    tags: type[Parser] = import_module(BUILTIN_PLUGINS["format"]).TagParser
    for label, table in _preset_parsers() or [("'tags' parser", {})]:
        params = structure_params(tags.Params, table, source=_SOURCE, field="parser")
        yield label, _parse(tags(params, context), completions, label)


def _parse(parser: Parser, completions: Sequence[object], where: str) -> ParsedBatch:
    try:
        parsed = parser.parse(completions)
    except Exception as exc:
        raise AssertionError(f"{where} raised on the battery: {exc!r}") from exc
    if not isinstance(parsed, ParsedBatch):
        raise AssertionError(f"{where} returned {type(parsed).__name__}, not a ParsedBatch")
    return parsed


def _rows(labels: Sequence[str], rows: Iterable[int]) -> str:
    shown = [f"{i} ({labels[i]})" if i < len(labels) else str(i) for i in list(rows)[:5]]
    return ", ".join(shown)


def _check_output(out: object, size: int, where: str) -> _Checked:
    failed: torch.Tensor
    values: object
    if isinstance(out, RewardOutput):
        values = out.values
        failed = out.failed
        if not isinstance(failed, torch.Tensor) or failed.dtype != torch.bool:
            raise AssertionError(f"{where}: RewardOutput.failed must be a bool tensor")
        if tuple(failed.shape) != (size,):
            raise AssertionError(
                f"{where}: RewardOutput.failed has shape {tuple(failed.shape)}, expected ({size},)"
            )
        if len(out.reasons) != size:
            raise AssertionError(
                f"{where}: RewardOutput.reasons has {len(out.reasons)} entries for {size} samples"
            )
    else:
        values = out
        failed = torch.zeros(size, dtype=torch.bool)
    if not isinstance(values, torch.Tensor):
        raise AssertionError(f"{where} returned {type(values).__name__}, not a torch.Tensor")
    if not values.is_floating_point():
        raise AssertionError(f"{where} returned dtype {values.dtype}, not a floating-point one")
    if tuple(values.shape) != (size,):
        raise AssertionError(f"{where} returned shape {tuple(values.shape)} for a batch of {size}")
    if values.device.type != "cpu":
        raise AssertionError(f"{where} returned a tensor on {values.device}; return it on the CPU")
    bad = ~torch.isfinite(values) & ~failed.to(values.device)
    if bool(bad.any()):
        rows = bad.nonzero().flatten().tolist()
        raise AssertionError(f"{where} returned non-finite values for samples {rows[:10]}")
    return _Checked(values.detach(), failed)


def _same(a: _Checked, b: _Checked, message: str, labels: Sequence[str]) -> None:
    if not torch.equal(a.failed, b.failed):
        rows = (a.failed != b.failed).nonzero().flatten().tolist()
        raise AssertionError(f"{message} (failure flags of samples {_rows(labels, rows)})")
    ok = a.failed | torch.isclose(a.values.double(), b.values.double(), rtol=1e-5, atol=1e-6)
    if not bool(ok.all()):
        rows = (~ok).nonzero().flatten().tolist()
        shown = [(a.values[i].item(), b.values[i].item()) for i in rows[:3]]
        raise AssertionError(f"{message} for samples {_rows(labels, rows)}: {shown}")


def _same_parse(a: ParsedBatch, b: ParsedBatch, message: str) -> None:
    for field in ("texts", "think", "diagnosis", "candidates", "codes"):
        if getattr(a, field) != getattr(b, field):
            raise AssertionError(f"{message} in {field!r}")
    if not torch.equal(a.features, b.features):
        raise AssertionError(f"{message} in 'features'")


def _check_parsed(
    parsed: ParsedBatch,
    completions: Sequence[object],
    codeset: CodeSet,
    where: str,
    labels: Sequence[str],
) -> None:
    size = len(completions)
    for field in ("texts", "think", "diagnosis", "candidates", "codes"):
        column = getattr(parsed, field)
        if not isinstance(column, tuple) or len(column) != size:
            raise AssertionError(f"{where}: {field!r} must be a tuple of {size} strings")
        wrong = [i for i, v in enumerate(column) if not isinstance(v, str)]
        if wrong:
            raise AssertionError(f"{where}: {field!r} holds non-strings at {_rows(labels, wrong)}")
    f = parsed.features
    if not isinstance(f, torch.Tensor) or f.dtype != torch.int32 or f.device.type != "cpu":
        raise AssertionError(f"{where}: features must be an int32 CPU tensor")
    if tuple(f.shape) != (size, len(Feature)):
        raise AssertionError(
            f"{where}: features has shape {tuple(f.shape)}, expected ({size}, {len(Feature)})"
        )

    def check(condition: torch.Tensor, what: str) -> None:
        if not bool(condition.all()):
            rows = (~condition).nonzero().flatten().tolist()
            raise AssertionError(f"{where}: {what} fails for rows {_rows(labels, rows)}")

    for column in _FLAG_COLUMNS:
        check((f[:, column] == 0) | (f[:, column] == 1), f"{column.name} is 0 or 1")
    check(f[:, Feature.EXTRA_BLOCKS] >= 0, "EXTRA_BLOCKS >= 0")
    check(f[:, Feature.OUTSIDE_CHARS] >= 0, "OUTSIDE_CHARS >= 0")
    lengths = torch.tensor([len(t) for t in parsed.texts], dtype=torch.int32)
    check(f[:, Feature.LENGTH] == lengths, "LENGTH == len(texts[i])")
    think_chars = torch.tensor([len(t) for t in parsed.think], dtype=torch.int32)
    check(f[:, Feature.THINK_CHARS] == think_chars, "THINK_CHARS == len(think[i])")
    for column in _SPAN_COLUMNS:
        span = f[:, column]
        check((span >= -1) & (span <= lengths), f"-1 <= {column.name} <= LENGTH")
    flag = parsed.flag
    has_code = torch.tensor([bool(c) for c in parsed.codes], dtype=torch.bool)
    has_candidate = torch.tensor([bool(c) for c in parsed.candidates], dtype=torch.bool)
    same = torch.tensor(
        [not c or c == k for c, k in zip(parsed.codes, parsed.candidates, strict=True)],
        dtype=torch.bool,
    )
    known = torch.tensor([not c or c in codeset for c in parsed.codes], dtype=torch.bool)
    check(has_code == flag(Feature.CODE_VALID), "codes[i] != '' exactly when CODE_VALID")
    check(has_candidate == flag(Feature.CODE_FOUND), "candidates[i] != '' exactly when CODE_FOUND")
    check(same, "a code equals its candidate")
    check(~flag(Feature.CODE_KNOWN) | known, "a CODE_KNOWN code is in the code set")
    check(~flag(Feature.CODE_KNOWN) | flag(Feature.CODE_VALID), "CODE_KNOWN implies CODE_VALID")
    check(~flag(Feature.FROM_FREE_TEXT) | flag(Feature.CODE_VALID), "FROM_FREE_TEXT implies a code")
    check(~flag(Feature.BAD_TYPE) | flag(Feature.EMPTY), "BAD_TYPE implies EMPTY")
    not_text = torch.tensor([_not_text(c) for c in completions], dtype=torch.bool)
    check(~not_text | (flag(Feature.BAD_TYPE) & ~has_code), "a non-text completion is BAD_TYPE")


def _not_text(completion: object) -> bool:
    """Completions that hold no text in any reading: every parser must flag them."""
    if isinstance(completion, Mapping):
        return not isinstance(completion.get("content"), str)
    return completion is None or isinstance(completion, (int, float))


class _Runner:
    """Runs ``score``, or ``ascore`` on one private event loop for the whole check."""

    def __init__(self) -> None:
        # A thread of its own, so that this works inside a running loop (async tests).
        self._loop = LoopThread("icdreward-check")

    def check(self, reward: Reward, batch: ScoringBatch, where: str) -> _Checked:
        """Score ``batch`` and check the output's type, shape and values."""
        out: object
        try:
            out = self._loop.run(reward.ascore(batch)) if reward.is_async else reward.score(batch)
        except Exception as exc:
            raise AssertionError(f"{where} raised {exc!r}") from exc
        return _check_output(out, len(batch), where)

    def close(self) -> None:
        self._loop.stop()
