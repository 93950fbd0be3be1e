"""The layers point one way: core <- built-in plugins <- integrations.

``lint-imports`` (contracts in pyproject.toml, run by ``tox -e lint`` and ``.ci/run``)
checks every static import. What it cannot see is an import by name at run time, so
these tests look for those in the core, and check that importing the core's public
modules loads no module of an upper layer.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "src" / "icdreward"
UPPER = re.compile(r"^(icdreward_plugins|icdreward_verl|icdreward_trl)(\.|$)")
DYNAMIC = {"import_module", "__import__", "find_spec", "spec_from_file_location"}


def _leading_text(node: ast.expr) -> str | None:
    """The text a string argument starts with (a plain or an f-string), if known."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


def dynamic_upward_imports(source: str) -> list[int]:
    """Line numbers of calls that import an upper layer's module by name."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        text = _leading_text(node.args[0])
        if name in DYNAMIC and text is not None and UPPER.match(text):
            lines.append(node.lineno)
    return lines


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ('importlib.import_module("icdreward_plugins.judge._transport")', [1]),
        ('import_module(f"icdreward_plugins.judge.{name}")', [1]),
        ('__import__("icdreward_verl")', [1]),
        ('importlib.util.find_spec("icdreward_trl")', [1]),
        ('importlib.import_module("icdreward.cli._score")', []),
        ('print("icdreward_plugins.judge")', []),
    ],
)
def test_the_scan_finds_imports_by_name(source: str, found: list[int]) -> None:
    assert dynamic_upward_imports(source) == found


def test_the_core_imports_no_upper_layer_by_name() -> None:
    offenders = {
        str(path.relative_to(CORE)): lines
        for path in sorted(CORE.rglob("*.py"))
        if (lines := dynamic_upward_imports(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


def test_importing_the_core_loads_no_plugin_and_no_integration() -> None:
    code = (
        "import sys\n"
        "import icdreward, icdreward.cli, icdreward.cli.command, icdreward.generation\n"
        "import icdreward.openai_client, icdreward.params, icdreward.inputs\n"
        "import icdreward.records, icdreward.evaluation, icdreward.plugin\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'icdreward_plugins', 'icdreward_verl', 'icdreward_trl'}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
