"""What the recipe's dry run prints: the command and the composed sections it sets."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omegaconf import DictConfig

__all__ = ["report", "shell_lines"]

# Inside double quotes these still mean something to the shell.
_DOUBLE_QUOTE_SPECIAL = frozenset('"$`\\!')
_REWARD_KEYS = ("num_workers", "reward_manager", "reward_kwargs", "custom_reward_function")


def shell_lines(argv: Sequence[str]) -> str:
    """``argv`` as a shell command, one override per line, ready to paste.

    >>> print(shell_lines(["python", "-m", "verl.trainer.main_ppo", "a=1", "b='x y'"]))
    python -m verl.trainer.main_ppo \\
        a=1 \\
        "b='x y'"
    """
    head = " ".join(_quote(item) for item in argv[:3])
    rest = [_quote(item) for item in argv[3:]]
    return " \\\n    ".join([head, *rest])


def _quote(item: str) -> str:
    # Hydra quotes values with single quotes; double quotes around those read better
    # than shlex's '"'"' splicing, and mean the same where nothing else is special.
    quoted = shlex.quote(item)
    if quoted != item and "'" in item and not _DOUBLE_QUOTE_SPECIAL.intersection(item):
        return f'"{item}"'
    return quoted


def report(config: DictConfig, argv: Sequence[str], keys: Iterable[str]) -> str:
    """The dry run's output: the command, then YAML of the composed values it set.

    ``keys`` are the dotted keys listed under ``hyperparameters`` with their composed
    values; then come the ``reward`` keys the recipe sets, and the whole ``data`` and
    ``trainer`` sections, all with interpolations resolved.
    """
    from omegaconf import OmegaConf

    def plain(node: Any) -> Any:
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node

    shown = {
        "hyperparameters": {key: plain(OmegaConf.select(config, key)) for key in keys},
        "reward": {key: plain(config.reward.get(key)) for key in _REWARD_KEYS},
        "data": plain(config.data),
        "trainer": plain(config.trainer),
    }
    return (
        "# verl command (dry run: not started)\n"
        f"{shell_lines(argv)}\n"
        "# verl composed this configuration and its validate_config accepted it\n"
        f"{OmegaConf.to_yaml(OmegaConf.create(shown))}"
    )
