"""``icdreward generate``: a real loopback OpenAI-compatible server and a tiny transformers LM.

The endpoint tests run the CLI against :class:`OpenAITestServer` through the official
``openai`` client (the judge's transport): the request body, the output format that
``score`` and ``eval`` read, resuming after an interruption, rows that fail after
their retries, 429 with ``Retry-After``, timeouts and the concurrency cap. The last
tests build a tiny Qwen2 and a BPE tokenizer offline with the functions of
``examples/trl_grpo_cpu.py``, save them, and generate with ``--hf-model``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from icdreward.cli import main
from icdreward.generation import (
    NoteRow,
    SamplingParams,
    prepare_output,
    read_note_rows,
    request_body,
    sample_records,
)
from icdreward.prompts import PROMPT_VERSION, build_messages

from _openai_server import OpenAITestServer, RecordedRequest, Reply

ROOT = Path(__file__).resolve().parents[1]
NOTES = ROOT / "examples" / "notes.jsonl"
EXAMPLE = ROOT / "examples" / "trl_grpo_cpu.py"
MODEL = "policy-model"
FAST = ["--backoff", "0.01", "--timeout", "5", "--retries", "2", "--quiet"]


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("trl_grpo_cpu", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def _notes() -> list[dict[str, Any]]:
    return [json.loads(line) for line in NOTES.read_text().splitlines() if line.strip()]


def _answer(request: RecordedRequest) -> Reply | None:
    """A correct completion: the gold code of the note found in the prompt."""
    for note in _notes():
        if note["note"] in request.text:
            code = note["codes"][0]
            seed = request.body.get("seed")
            return Reply(content=f" seed {seed}.</think>\n<diagnosis>{code}</diagnosis>")
    return Reply.error(400, "unknown note")


def _write_notes(path: Path, count: int) -> list[dict[str, Any]]:
    base = _notes()
    rows = [
        {"id": f"n{i}", "note": base[i % len(base)]["note"] + f" (case {i})", "codes": ["I10"]}
        for i in range(count)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def shared_server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer(lifetime=300, models=(MODEL,)) as server:
        yield server


@pytest.fixture
def server(shared_server: OpenAITestServer) -> Iterator[OpenAITestServer]:
    shared_server.reset()
    yield shared_server
    shared_server.reset()


def _generate(server: OpenAITestServer, *args: str) -> int:
    return main(["generate", *args, "--endpoint", server.url, "--model", MODEL, *FAST])


# -- endpoint ------------------------------------------------------------------------------


def test_endpoint_output_is_ready_for_score_and_eval(
    server: OpenAITestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.respond_with(_answer)
    out = tmp_path / "out.jsonl"
    args = [str(NOTES), "--output", str(out), "--n", "2", "--seed", "7", "--temperature", "0.7"]
    assert _generate(server, *args, "--top-p", "0.9", "--max-tokens", "64") == 0
    notes = _notes()
    lines = _lines(out)
    assert len(lines) == 2 * len(notes)
    by_id = {line["id"]: line for line in lines}
    for note in notes:
        for k in range(2):
            line = by_id[f"{note['id']}#{k}"]
            assert line["group"] == note["id"]
            assert line["sample"] == k
            assert line["gold"] == note["codes"]
            assert line["note"] == note["note"]
            assert line["completion"].startswith(f" seed {7 + k}.")
            assert line["sampling"] == {
                "model": MODEL,
                "temperature": 0.7,
                "top_p": 0.9,
                "max_tokens": 64,
                "seed": 7,
                "n": 2,
                "prompt_version": PROMPT_VERSION,
            }
    requests = server.completion_requests()
    assert len(requests) == 2 * len(notes)
    for request in requests:
        body = request.body
        assert request.path == "/v1/chat/completions"
        assert body["messages"] in [build_messages(n["note"]) for n in notes]
        assert body["messages"][-1] == {"role": "assistant", "content": "<think>"}
        assert body["continue_final_message"] is True
        assert body["add_generation_prompt"] is False
        assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.7, 0.9, 64)
    assert sorted(r.body["seed"] for r in requests) == sorted([7, 8] * len(notes))
    capsys.readouterr()
    assert main(["eval", str(out), "--json", "--bootstrap", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    # the two samples of a note are one note: first sample per note, pass@k over both
    assert (report["n"], report["notes"], report["samples"]) == (
        len(notes),
        len(notes),
        2 * len(notes),
    )
    assert report["full_code"]["accuracy"] == 1.0
    assert [p["k"] for p in report["pass_at_k"]] == [1, 2]
    scored = tmp_path / "scored.jsonl"
    assert main(["score", str(out), "--output", str(scored)]) == 0
    assert len(_lines(scored)) == 2 * len(notes)


def test_resume_skips_complete_rows_and_drops_torn_ones(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    server.respond_with(_answer)
    notes = tmp_path / "notes.jsonl"
    rows = _write_notes(notes, 10)
    out = tmp_path / "out.jsonl"
    assert _generate(server, str(notes), "--output", str(out), "--n", "2", "--limit", "4") == 0
    assert len(server.completion_requests()) == 8
    # An interruption while writing row n4: one whole sample line, then a torn one.
    params = SamplingParams(model=MODEL, n=2)
    row = NoteRow(id="n4", note=rows[4]["note"], gold=("I10",), row=5)
    torn = sample_records(row, ["a", "b"], params)
    with out.open("a") as f:
        f.write(json.dumps(torn[0]) + "\n" + json.dumps(torn[1])[:25])
    server.reset()
    server.respond_with(_answer)
    assert _generate(server, str(notes), "--output", str(out), "--n", "2") == 0
    asked = {r.text for r in server.completion_requests()}
    assert len(server.completion_requests()) == 12  # rows n4..n9, two samples each
    assert not any(rows[i]["note"] in text for i in range(4) for text in asked)
    lines = _lines(out)
    assert sorted(line["id"] for line in lines) == sorted(
        f"n{i}#{k}" for i in range(10) for k in range(2)
    )
    assert all(line["completion"] not in ("a", "b") for line in lines)
    # A third run has nothing left to do.
    server.reset()
    assert _generate(server, str(notes), "--output", str(out), "--n", "2") == 0
    assert server.completion_requests() == []


def test_row_failing_after_retries_is_left_out_and_retried_on_rerun(
    server: OpenAITestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.jsonl"
    rows = _write_notes(notes, 6)
    bad = rows[2]["note"]

    def responder(request: RecordedRequest) -> Reply | None:
        if bad in request.text:
            return Reply.error(500, "boom")
        return _answer(request)

    server.respond_with(responder)
    out = tmp_path / "out.jsonl"
    assert _generate(server, str(notes), "--output", str(out)) == 1
    err = capsys.readouterr().err
    assert "'n2'" in err and "HTTP 500" in err and "gave up after 3 attempts" in err
    assert sorted(line["id"] for line in _lines(out)) == ["n0", "n1", "n3", "n4", "n5"]
    assert sum(bad in r.text for r in server.completion_requests()) == 3
    server.reset()
    server.respond_with(_answer)
    assert _generate(server, str(notes), "--output", str(out)) == 0
    assert len(server.completion_requests()) == 1
    assert sorted(line["id"] for line in _lines(out)) == [f"n{i}" for i in range(6)]


def test_client_errors_are_not_retried(
    server: OpenAITestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.respond_with(lambda request: Reply.error(400, "context too long"))
    out = tmp_path / "out.jsonl"
    assert _generate(server, str(NOTES), "--output", str(out), "--limit", "1") == 1
    assert len(server.completion_requests()) == 1
    assert "HTTP 400" in capsys.readouterr().err
    assert out.read_text() == ""


def test_rate_limits_and_timeouts_are_retried(server: OpenAITestServer, tmp_path: Path) -> None:
    server.respond_with(_answer)
    server.configure(hang_seconds=0.6)
    server.script(Reply.rate_limited(0.05), Reply.hanging())
    out = tmp_path / "out.jsonl"
    started = time.monotonic()
    code = main(
        ["generate", str(NOTES), "--endpoint", server.url, "--model", MODEL, "--output", str(out),
         "--concurrency", "1", "--timeout", "0.3", "--retries", "2", "--backoff", "0.01",
         "--quiet"]
    )  # fmt: skip
    assert code == 0
    assert time.monotonic() - started >= 0.3  # the hanging request ran into its timeout
    stats = server.stats()
    assert stats["outcomes"]["429"] == 1
    assert stats["completions"] == len(_notes()) + 2  # one retry after the 429, one after the hang
    assert len(_lines(out)) == len(_notes())


def test_concurrency_is_capped_and_used(server: OpenAITestServer, tmp_path: Path) -> None:
    server.respond_with(_answer)
    server.configure(latency=0.1)
    notes = tmp_path / "notes.jsonl"
    _write_notes(notes, 32)
    out = tmp_path / "out.jsonl"
    lingering = server.stats()["active"]  # a hung request of an earlier test may still sleep
    started = time.monotonic()
    assert _generate(server, str(notes), "--output", str(out), "--concurrency", "8") == 0
    elapsed = time.monotonic() - started
    assert 8 <= server.stats()["max_active"] <= 8 + lingering
    assert elapsed < 4 * 0.1 + 1.0  # 4 waves of 8, not 32 requests one after the other
    assert len(_lines(out)) == 32


def test_stdout_output_and_progress_bar(
    server: OpenAITestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.respond_with(_answer)
    code = main(["generate", str(NOTES), "--endpoint", server.url, "--model", MODEL])
    assert code == 0
    captured = capsys.readouterr()
    assert len([json.loads(line) for line in captured.out.splitlines()]) == len(_notes())
    assert "generating" in captured.err and "4 rows (4 samples) written to stdout" in captured.err


def test_bad_arguments_and_inputs(
    server: OpenAITestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", str(NOTES), "--endpoint", server.url]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["generate", str(NOTES), "--model", MODEL]) == 2
    dup = tmp_path / "dup.jsonl"
    dup.write_text(
        '{"id": 1, "note": "a", "codes": "I10"}\n{"id": 1, "note": "b", "gold": "I10"}\n'
    )
    assert _generate(server, str(dup)) == 2
    assert "also the id of row 1" in capsys.readouterr().err
    nogold = tmp_path / "nogold.jsonl"
    nogold.write_text('{"note": "a"}\n')
    assert _generate(server, str(nogold)) == 2
    assert _generate(server, str(NOTES), "--output", str(NOTES)) == 2
    assert server.completion_requests() == []


def test_rows_from_csv_without_ids(tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_text('note,gold\n"chest pain, troponin up",I214\nhypertension,"[""I10""]"\n')
    rows = read_note_rows(path)
    assert [(r.id, r.gold) for r in rows] == [(2, ("I214",)), (3, ("I10",))]
    body = request_body(rows[0].note, SamplingParams(model="m", seed=None), 0)
    assert "seed" not in body and body["messages"] == build_messages("chest pain, troponin up")


def test_prepare_output_keeps_only_complete_rows(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    assert prepare_output(str(out), 2) == set()
    row = NoteRow(id=5, note="x", gold=("I10",), row=1)
    lines = [json.dumps(r) for r in sample_records(row, ["a", "b"], SamplingParams(model="m", n=2))]
    other = NoteRow(id="q", note="y", gold=("I10",), row=2)
    half = json.dumps(sample_records(other, ["c", "d"], SamplingParams(model="m", n=2))[0])
    out.write_text(f"{lines[0]}\nnot json\n{lines[1]}\n{half}\n")
    assert prepare_output(str(out), 2) == {"5"}
    assert out.read_text() == f"{lines[0]}\n{lines[1]}\n"


# -- transformers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    example = _load_example()
    notes = example.load_notes()
    tokenizer = example.build_tokenizer([n["note"] for n in notes], vocab_size=400)
    model = example.build_model(tokenizer, hidden_size=32, num_layers=1)
    path = tmp_path_factory.mktemp("tiny-lm")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_hf_model_generates_resumes_and_records_sampling(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.jsonl"
    args = ["generate", str(NOTES), "--hf-model", str(tiny_model), "--output", str(out),
            "--device", "cpu", "--max-tokens", "6", "--batch-size", "3", "--quiet"]  # fmt: skip
    assert main([*args, "--n", "2", "--temperature", "1.0", "--limit", "3"]) == 0
    lines = _lines(out)
    assert [line["id"] for line in lines] == [
        f"note-00{i}#{k}" for i in (1, 2, 3) for k in range(2)
    ]
    assert all(isinstance(line["completion"], str) for line in lines)
    assert lines[0]["sampling"] == {
        "model": str(tiny_model),
        "temperature": 1.0,
        "top_p": 1.0,
        "max_tokens": 6,
        "seed": 0,
        "n": 2,
        "prompt_version": PROMPT_VERSION,
    }
    # Resume: only the fourth note is generated, with the same recorded parameters.
    assert main([*args, "--n", "2", "--temperature", "1.0"]) == 0
    after = _lines(out)
    assert after[:6] == lines
    assert [line["group"] for line in after[6:]] == ["note-004", "note-004"]


def test_hf_greedy_is_deterministic_and_continues_the_prompt(tiny_model: Path) -> None:
    from icdreward.generation import generate_hf, load_hf
    from icdreward.prompts import render_prompt

    model, tokenizer, device = load_hf(str(tiny_model), "cpu")
    assert tokenizer.padding_side == "left"
    assert render_prompt(tokenizer, "x").endswith("<think>")
    rows = read_note_rows(NOTES)
    params = SamplingParams(model="tiny", max_tokens=5)
    runs: list[dict[str, list[str]]] = []
    for batch_size in (1, 4):
        got: dict[str, list[str]] = {}
        generate_hf(
            rows, params, model, tokenizer,
            lambda row, texts, got=got: got.__setitem__(row.id, texts),
            lambda row, reason: pytest.fail(reason),
            batch_size=batch_size, device=device,
        )  # fmt: skip
        runs.append(got)
    assert runs[0].keys() == {r.id for r in rows}
    assert runs[0] == runs[1]  # left padding: batching does not change greedy output
