"""The wheel's explicit package list must name every package in the source tree (and
may name folders of package data, which setuptools asks to see listed too)."""

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


_ROOTS = {
    "icdreward": ROOT / "src" / "icdreward",
    "icdreward_plugins": ROOT / "plugins" / "icdreward_plugins",
    "icdreward_verl": ROOT / "integrations" / "verl" / "icdreward_verl",
    "icdreward_trl": ROOT / "integrations" / "trl" / "icdreward_trl",
}


def test_every_package_is_listed_for_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = config["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = set().union(*(_packages_in(folder, name) for name, folder in _ROOTS.items()))
    assert found <= listed, found - listed
    for package in listed - found:  # a folder of data only: it must exist and ship its data
        top, *parts = package.split(".")
        assert _ROOTS[top].joinpath(*parts).is_dir(), package
        assert setuptools["package-data"].get(package), package
