"""The wheel's explicit package list must name every package in the source tree."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _packages_in(directory: Path, name: str) -> set[str]:
    return {
        ".".join((name, *init.parent.relative_to(directory).parts))
        for init in directory.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }


def test_every_package_is_listed_for_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    found = (
        _packages_in(ROOT / "src" / "icdreward", "icdreward")
        | _packages_in(ROOT / "plugins", "icdreward_plugins")
        | _packages_in(ROOT / "integrations" / "verl" / "icdreward_verl", "icdreward_verl")
    )
    assert found == listed
