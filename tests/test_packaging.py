"""The wheel: its explicit package list must name every package in the source tree (and
may name folders of package data, which setuptools asks to see listed too), and it is
pure Python (one wheel for every platform, nothing compiled in it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

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


_NOT_SOURCE = shutil.ignore_patterns(
    ".venv", ".git", ".tox", "*_cache", ".hypothesis", ".benchmarks", "__pycache__",
    "build", "dist", "*.egg-info", "*.so", "*.pyd",
)  # fmt: skip


@pytest.mark.slow
def test_the_wheel_is_pure_python(tmp_path: Path) -> None:
    # Built from a copy of the tree, so that the build leaves nothing in the checkout;
    # without build isolation, so that it needs no network.
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("icdreward-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        tags = archive.read(next(n for n in names if n.endswith(".dist-info/WHEEL")))
    compiled = [n for n in names if n.endswith((".so", ".pyd", ".c", ".h", ".pyi"))]
    assert compiled == []
    assert b"Root-Is-Purelib: true" in tags
    assert "icdreward_plugins/format_parser.py" in names  # the plugins are in it
