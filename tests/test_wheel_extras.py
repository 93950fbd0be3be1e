"""The built wheel, installed in a fresh venv without ``openai``, names the extra to install.

Installing the core's dependencies from an index would take minutes, so the fresh venv
reuses this venv's site-packages through a ``.pth`` file, and a ``sitecustomize``
module in the fresh venv makes ``openai`` unimportable (as if ``icdreward`` had been
installed without the ``[generate]`` extra). ``icdreward`` itself comes from the wheel
installed in the fresh venv, which is first on ``sys.path``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_NOT_SOURCE = shutil.ignore_patterns(
    ".venv", ".git", ".tox", "*_cache", ".hypothesis", ".benchmarks", "__pycache__",
    "build", "dist", "*.egg-info", "*.so", "*.pyd",
)  # fmt: skip
_HIDE_OPENAI = """\
import importlib.abc
import sys


class _Hidden(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "openai" or name.startswith("openai."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _Hidden())
"""


def _run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=600, cwd=cwd, check=False
    )


@pytest.mark.slow
def test_generate_without_openai_names_the_generate_extra(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)
    built = _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "--wheel-dir", tmp_path / "dist", source,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("icdreward-*.whl")

    fresh = tmp_path / "fresh"
    made = _run(sys.executable, "-m", "venv", "--without-pip", fresh)
    assert made.returncode == 0, made.stderr
    python = fresh / "bin" / "python"
    installed = _run(
        sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
        wheel,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    found = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    site_packages = Path(found.stdout.strip())
    (site_packages / "_icdreward_host.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (site_packages / "sitecustomize.py").write_text(_HIDE_OPENAI)

    where = _run(python, "-c", "import icdreward, torch; print(icdreward.__file__)")
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(fresh)  # the wheel, not the checkout
    hidden = _run(python, "-c", "import openai")
    assert hidden.returncode != 0

    done = _run(
        fresh / "bin" / "icdreward", "generate", ROOT / "examples" / "notes.jsonl",
        "--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "-o", tmp_path / "out.jsonl",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    hint = [line for line in lines if line.startswith("icdreward: error:")]
    assert hint == [
        "icdreward: error: openai is not installed: "
        'pip install "icdreward[generate]" (needed by --endpoint)'
    ], lines
