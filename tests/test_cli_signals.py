"""Termination signals leave no half-written file behind.

``icdreward score --output FILE`` runs as a real child process whose judge waits on
a slow loopback server, so it is still writing ``.FILE.PID.partial`` when SIGTERM
(what schedulers send) or SIGINT arrives; the file must be gone and the exit status
conventional. The handler itself is also tested in this process with real signals.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from icdreward.cli._signals import terminating_cleanly
from icdreward.generation import _output

from _openai_server import OpenAITestServer
from _texts import completion

# The child runs the CLI's main with Python's own SIGINT handler, whatever the
# disposition it inherited (a shell's background job starts with SIGINT ignored).
CHILD = (
    "import signal, sys\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "from icdreward.cli import run\n"
    "run(sys.argv[1:])\n"
)


@pytest.fixture(scope="module")
def slow_judge() -> Iterator[OpenAITestServer]:
    with OpenAITestServer(lifetime=300, verdict=3, latency=0.4) as server:
        yield server


def start_scoring(tmp_path: Path, server: OpenAITestServer) -> tuple[subprocess.Popen[str], Path]:
    rows = tmp_path / "rows.jsonl"
    with rows.open("w", encoding="utf-8") as out:
        for i in range(100):
            trace = f"L5-S1 herniation with radiculopathy, case {i}."
            record = {"completion": completion("M51.16", trace), "gold": "M5116", "note": "pain"}
            out.write(json.dumps(record) + "\n")
    config = tmp_path / "judged.toml"
    config.write_text(
        'preset = "default"\n'
        "[rewards.judge]\n"
        "weight = 0.5\n"
        f'base_url = "{server.url}"\n'
        'model = "judge-model"\n'
        "timeout = 10.0\n"
    )
    target = tmp_path / "scores.jsonl"
    command = [sys.executable, "-c", CHILD, "score", str(rows), "--config", str(config)]
    command += ["--output", str(target), "--chunk-size", "1", "--progress", "never"]
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    return child, target


def wait_for_partial(child: subprocess.Popen[str], target: Path, server: OpenAITestServer) -> Path:
    """The child's partial file, once it exists and the judge has answered for a row.

    (The rows sit in the file's write buffer, so its size says nothing yet.)
    """
    partial = target.with_name(f".{target.name}.{child.pid}.partial")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if child.poll() is not None:
            _, err = child.communicate()
            pytest.fail(f"the child ended early ({child.returncode}): {err}")
        if partial.exists() and len(server.completion_requests()) >= 2:
            return partial
        time.sleep(0.05)
    child.kill()
    pytest.fail("the child never wrote its partial file")


@pytest.mark.parametrize(
    ("signum", "status", "message"),
    [
        (signal.SIGTERM, 143, "icdreward: terminated by SIGTERM"),
        (signal.SIGINT, 130, "icdreward: interrupted"),
    ],
)
def test_a_signal_while_scoring_removes_the_partial_file(
    tmp_path: Path, slow_judge: OpenAITestServer, signum: int, status: int, message: str
) -> None:
    slow_judge.reset()
    child, target = start_scoring(tmp_path, slow_judge)
    partial = wait_for_partial(child, target, slow_judge)
    child.send_signal(signum)
    out, err = child.communicate(timeout=120)
    assert child.returncode == status, err
    # The line is printed when the signal arrives; a batch still in flight may log
    # after it that its judge was closed under it.
    assert message in err.splitlines()
    assert not partial.exists()
    assert not target.exists()  # an interrupted run never publishes its records
    assert list(tmp_path.glob(".*")) == []
    assert out == ""
    assert len(slow_judge.completion_requests()) < 100  # it was stopped, not finished


# -- the handler, with real signals to this process ---------------------------------------


def signalled_while_writing(signum: int, *paths: Path) -> None:
    """Write ``paths`` inside nested contexts and send this process ``signum``."""
    with contextlib.ExitStack() as stack:
        for path in paths:
            stack.enter_context(terminating_cleanly(path))
            path.write_text("half")
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler runs (and raises) at the next bytecode


def test_sigterm_deletes_the_files_and_exits_with_143(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    first, second = tmp_path / "a.partial", tmp_path / "b.partial"
    with pytest.raises(SystemExit) as stopped:
        signalled_while_writing(signal.SIGTERM, first, second)
    assert stopped.value.code == 143
    assert not first.exists() and not second.exists()
    assert signal.getsignal(signal.SIGTERM) == before  # restored by the outermost


def test_sigint_deletes_the_files_then_interrupts(tmp_path: Path) -> None:
    path = tmp_path / "c.partial"
    with pytest.raises(KeyboardInterrupt):
        signalled_while_writing(signal.SIGINT, path)
    assert not path.exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_signal_stays_ignored() -> None:
    term = signal.getsignal(signal.SIGTERM)
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with terminating_cleanly():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) != term
        assert signal.getsignal(signal.SIGTERM) == term
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_importing_the_cli_installs_no_handler() -> None:
    probe = (
        "import signal, icdreward.cli, icdreward.cli._score, icdreward.cli._signals\n"
        "print(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True
    )
    assert done.stdout.strip() == "True"


def test_outside_the_main_thread_it_does_nothing(tmp_path: Path) -> None:
    seen: list[object] = []
    before = signal.getsignal(signal.SIGTERM)

    def work() -> None:
        with terminating_cleanly(tmp_path / "d.partial"):
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(10)
    assert seen == [before]


def test_an_interrupted_rewrite_of_a_generation_output_leaves_no_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "samples.jsonl"
    good = {"id": "r1", "completion": "x", "group": "r1", "sample": 0}
    out.write_text(json.dumps(good) + "\n" + '{"id": "r2", "compl')  # a torn last row

    def interrupted(src: object, dst: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_output.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _output.prepare_output(str(out), 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.jsonl"]
    assert out.read_text().endswith('"compl')  # untouched: resumed next time
