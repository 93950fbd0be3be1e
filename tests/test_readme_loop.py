"""The README's after-training loop (generate -> score -> eval) runs as written.

The block is read from README.md, its ``icdreward`` commands are run by the installed
script in a shell, in a directory holding a copy of the bundled examples, against the
loopback OpenAI-compatible server: only the endpoint URL is replaced. Lines that
install packages or start vLLM are what a user runs beforehand, so they are left out.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from _openai_server import OpenAITestServer, RecordedRequest, Reply

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
HEADING = "## After training: generate, score, evaluate"
README_URL = "http://127.0.0.1:8000/v1"


def loop_block() -> str:
    """The first bash block after the README's after-training heading."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(HEADING) :]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match is not None, "no bash block under the after-training heading"
    return match.group(1)


def icdreward_commands(block: str) -> list[str]:
    """The block's ``icdreward`` commands, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.strip() for line in joined.splitlines() if line.startswith("icdreward ")]


def notes() -> list[dict[str, Any]]:
    lines = (ROOT / "examples" / "notes.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def answer(request: RecordedRequest) -> Reply | None:
    """The gold code for even seeds, a sibling code for odd ones (so samples differ)."""
    for note in notes():
        if note["note"] in request.text:
            code = note["codes"][0]
            if int(request.body.get("seed") or 0) % 2:
                code = code[:3]
            return Reply(content=f" Reading the note.</think>\n<diagnosis>{code}</diagnosis>")
    return Reply.error(400, "unknown note")


def test_the_readme_loop_runs_as_written(tmp_path: Path) -> None:
    commands = icdreward_commands(loop_block())
    assert [c.split()[1] for c in commands] == ["generate", "score", "eval"]
    assert README_URL in commands[0]
    model = re.search(r"--model (\S+)", commands[0])
    assert model is not None
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    script = Path(sys.executable).with_name("icdreward")
    with OpenAITestServer(lifetime=300, models=(model.group(1),)) as server:
        server.respond_with(answer)
        for command in commands:
            line = command.replace(README_URL, server.url).replace("icdreward ", f"{script} ", 1)
            done = subprocess.run(
                ["bash", "-c", line],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert done.returncode == 0, f"{command}\n{done.stderr}"
        requests = server.completion_requests()

    samples = int(re.search(r"--n (\d+)", commands[0]).group(1))  # type: ignore[union-attr]
    expected = len(notes()) * samples
    assert len(requests) == expected
    completions = [json.loads(x) for x in (tmp_path / "completions.jsonl").read_text().splitlines()]
    rewards = [json.loads(x) for x in (tmp_path / "rewards.jsonl").read_text().splitlines()]
    assert len(completions) == len(rewards) == expected
    # score's records carry the ids of generate's lines, row for row.
    assert [r["id"] for r in rewards] == [c["id"] for c in completions]
    assert [r["group"] for r in rewards] == [c["group"] for c in completions]
    assert all(r["parse_failure"] is False for r in rewards)

    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["notes"] == len(notes())
    assert report["samples"] == expected
    # --per-note first: sample 0 was sent seed 0 (even), so every answer is the gold.
    assert report["full_code"]["accuracy"] == 1.0
    assert "pass_at_k" in report
    figure = re.search(r"--plot (\S+)", commands[2])
    assert figure is not None
    assert (tmp_path / figure.group(1)).read_bytes()[:5] in (b"%PDF-", b"\x89PNG\r", b"<?xml")
