"""verl's own configuration, composed and validated on CPU, with errors that name overrides.

``verl.trainer.main_ppo`` composes ``ppo_trainer.yaml`` with Hydra and then runs
``verl.utils.config.validate_config`` before it starts Ray. Doing the same here, in the
launching process, turns a misspelt key or batch sizes that do not divide into one
error naming the override, in seconds and without a GPU.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import re
import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icdreward.errors import ConfigError
from icdreward_verl._recipe_hydra import override_key

if TYPE_CHECKING:
    from omegaconf import DictConfig

__all__ = ["CONFIG_NAME", "RecipeError", "compose", "verl_config_dir"]

CONFIG_NAME = "ppo_trainer"
"""The config ``verl.trainer.main_ppo`` composes (its ``@hydra.main(config_name=...)``)."""

# Names in validate_config's messages that are not configuration keys, mapped to the
# leaves of the keys they are computed from.
_DERIVED = {
    "n_gpus": ("n_gpus_per_node", "nnodes"),
    "real_train_batch_size": ("train_batch_size", "n", "n_gpus_per_node", "nnodes"),
    "minimal_bsz": ("n_gpus_per_node", "nnodes"),
}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


class RecipeError(ConfigError):
    """A recipe option, or a verl override, that verl's configuration rejects.

    Attributes:
        field: the option name (``"n_gpus"``) or the dotted verl key
            (``"actor_rollout_ref.rollout.n"``) at fault; ``""`` when none is known.
        value: the offending value or override text (``None`` when none is known).
        overrides: the overrides involved, in the order given (may be empty).
        reason: the message without the location.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str = "",
        value: Any = None,
        overrides: Iterable[str] = (),
    ) -> None:
        # ConfigError's own __init__ appends "(got ...)"; the message here already
        # shows the override, so only the attributes are shared.
        ValueError.__init__(self, message)
        self.source = "verl recipe"
        self.field = field
        self.value = value
        self.reason = message
        self.overrides = tuple(overrides)


def verl_config_dir() -> Path:
    """The directory of verl's trainer configs (``<verl>/trainer/config``)."""
    import verl

    return Path(verl.__file__).resolve().parent / "trainer" / "config"


def compose(overrides: Sequence[str]) -> DictConfig:
    """verl's ``ppo_trainer`` configuration with ``overrides``, checked as ``main_ppo`` does.

    Composes with Hydra from verl's own config directory, then calls verl's
    ``validate_config(config, use_reference_policy=need_reference_policy(config),
    use_critic=need_critic(config))``. What ``validate_config`` prints goes to stderr.

    Raises:
        RecipeError: an override that is not valid Hydra syntax, names a key verl's
            configuration lacks or otherwise fails to compose (``field`` is its key),
            or a configuration that ``validate_config`` rejects (``overrides`` lists
            those the message points at).
    """
    items = [str(item) for item in overrides]
    for item in items:
        _check_syntax(item)
    config = _compose(items)
    _validate(config, items)
    return config


def _check_syntax(item: str) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        OverridesParser.create().parse_override(item)
    except HydraException as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RecipeError(
            f"verl override {item!r} is not valid Hydra syntax ({detail}); quote a value "
            "holding spaces, commas, brackets or quotes: key='a value'",
            field=override_key(item),
            value=item,
            overrides=(item,),
        ) from exc


def _compose(items: list[str]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(verl_config_dir()), version_base=None):
            config: DictConfig = hydra_compose(CONFIG_NAME, overrides=items)
    except (HydraException, OmegaConfBaseException) as exc:
        raise _composition_error(exc, items) from exc
    return config


def _composition_error(exc: BaseException, items: list[str]) -> RecipeError:
    text = str(exc)
    culprit = _culprit(text, items)
    if culprit is None:
        return RecipeError(f"verl's configuration does not compose: {text}", overrides=())
    key = override_key(culprit)
    cause = exc.__cause__
    if cause is not None and "not in struct" in str(cause):
        hint = _suggestion(key)
        return RecipeError(
            f"verl override {culprit!r}: verl's configuration has no key {key!r}{hint}; "
            "a key outside verl's schema needs a leading '+'",
            field=key,
            value=culprit,
            overrides=(culprit,),
        )
    # Hydra's advice ("add a second +", the available options) is worth keeping;
    # the config search path that follows it is not.
    advice = " ".join(text.split("Config search path:")[0].split()) or type(exc).__name__
    return RecipeError(
        f"verl override {culprit!r} does not compose: {advice}",
        field=key,
        value=culprit,
        overrides=(culprit,),
    )


def _culprit(text: str, items: list[str]) -> str | None:
    # Hydra quotes the whole override in some messages and only its key in others;
    # the last override wins a tie, as it is the one that failed to apply.
    for item in reversed(items):
        if item in text:
            return item
    # The longest key first, so 'a.b' does not claim a message about 'a.b.c'.
    by_length = sorted(
        enumerate(items), key=lambda pair: (len(override_key(pair[1])), pair[0]), reverse=True
    )
    for _, item in by_length:
        key = override_key(item)
        if key and re.search(rf"(?<![\w.]){re.escape(key)}(?![\w.])", text):
            return item
    return None


def _suggestion(key: str) -> str:
    parent, _, leaf = key.rpartition(".")
    node = _defaults().get(parent) if parent else _defaults().get("")
    if not node:
        return ""
    close = difflib.get_close_matches(leaf, node, n=1, cutoff=0.6)
    if not close:
        return ""
    return f" (did you mean {(parent + '.' if parent else '') + close[0]!r}?)"


@functools.cache
def _defaults() -> dict[str, tuple[str, ...]]:
    # Every section of the default configuration and its keys, for "did you mean".
    from omegaconf import OmegaConf

    sections: dict[str, tuple[str, ...]] = {}

    def walk(node: dict[Any, Any], path: str) -> None:
        sections[path] = tuple(str(k) for k in node)
        for name, child in node.items():
            if isinstance(child, dict):
                walk(child, f"{path}.{name}" if path else str(name))

    tree = OmegaConf.to_container(_compose([]), resolve=False)
    assert isinstance(tree, dict)
    walk(tree, "")
    return sections


def _validate(config: DictConfig, items: list[str]) -> None:
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            # need_critic warns that GRPO runs without a critic, which is the point.
            warnings.filterwarnings("ignore", message="Disabled critic", category=UserWarning)
            validate_config(
                config=config,
                use_reference_policy=need_reference_policy(config),
                use_critic=need_critic(config),
            )
    except Exception as exc:
        text = str(exc).strip() or type(exc).__name__
        involved = _involved(text, items)
        shown = f" [overrides involved: {', '.join(involved)}]" if involved else ""
        raise RecipeError(
            f"verl's validate_config rejected the configuration: {text}{shown}",
            field=override_key(involved[0]) if involved else "",
            value=involved[0] if involved else None,
            overrides=involved,
        ) from exc


def _involved(text: str, items: list[str]) -> list[str]:
    leaves: set[str] = set()
    for name in _NAME.findall(text):
        leaf = name.rsplit(".", 1)[-1]
        leaves.add(leaf)
        leaves.update(_DERIVED.get(leaf, ()))
    # Of several overrides of one key only the last one counts.
    last: dict[str, str] = {}
    for item in items:
        last[override_key(item)] = item
    return [item for key, item in last.items() if key.rsplit(".", 1)[-1] in leaves]
