"""``icdreward generate``: completions for admission notes, with the training prompt."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from icdreward.cli._app import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Command, error
from icdreward.cli._arguments import count, positive_int
from icdreward.cli._signals import terminating_cleanly
from icdreward.generation import (
    EndpointOptions,
    NoteRow,
    RowWriter,
    SamplingParams,
    generate_endpoint,
    generate_hf,
    load_hf,
    prepare_output,
    read_note_rows,
    row_key,
    sample_records,
)
from icdreward.inputs import FORMATS
from icdreward.openai_client import OpenAIMissingError

__all__ = ["COMMAND", "GROUP_TEMPERATURE"]

GROUP_TEMPERATURE = 0.9
"""The default temperature with ``--n > 1``: the rollout temperature of the DeepICD-R1 recipe."""

_DESCRIPTION = f"""\
Generate completions for the admission notes in INPUT with the prompt of training
(icdreward.prompts.build_messages, the assistant turn prefilled with an opened
<think> that the model continues), and write them ready for 'icdreward score' and
'icdreward eval'.

INPUT is a JSONL, CSV/TSV or parquet file ({", ".join(FORMATS)}) whose rows hold the
"note", its gold code(s) in "codes" or "gold", and optionally a unique "id" (default:
the row number).

Back ends:
  --endpoint URL --model NAME   an OpenAI-compatible server (vllm serve MODEL), asked
                                with continue_final_message; --concurrency, --timeout
                                and --retries as for the LLM judge
  --hf-model PATH               a local transformers model, batched generate on
                                --device (default: cuda when available, else cpu)

Every output line is one sample: {{"id", "completion", "gold", "note", "group" (the row
id), "sample", "sampling": {{model, temperature, top_p, max_tokens, seed, n,
prompt_version}}}}. A row's samples are written together and flushed; rerunning the
same command on the same OUT skips the rows already complete there (an interrupted
run resumes). A row that still fails after its retries is reported on stderr and left
out of OUT, so a rerun tries it again. See docs/generation.md.

Exit status: 0 when every row is in OUT; 1 when some rows failed; 2 when INPUT, OUT or
the arguments are bad (one line on stderr).
"""


def _number(low: float, high: float | None = None, *, open_low: bool = False) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value != value or (value <= low if open_low else value < low):
            raise argparse.ArgumentTypeError(f"must be {'>' if open_low else '>='} {low}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}")
        return value

    return parse


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="JSONL, CSV, TSV or parquet file of notes")
    backend = parser.add_mutually_exclusive_group(required=True)
    backend.add_argument("--endpoint", metavar="URL", help="OpenAI-compatible base URL (.../v1)")
    backend.add_argument("--hf-model", metavar="PATH", help="local transformers model directory")
    parser.add_argument("--model", metavar="NAME", help="served model name (with --endpoint)")
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT.jsonl",
        default="-",
        help="JSONL output, resumed (default: stdout)",
    )
    sampling = parser.add_argument_group("sampling (recorded in every output line)")
    sampling.add_argument(
        "--max-tokens", type=positive_int, default=1024, metavar="N", help="default: 1024"
    )
    sampling.add_argument(
        "--temperature",
        type=_number(0.0),
        default=None,
        metavar="T",
        help=f"default: 0 (greedy) with --n 1, {GROUP_TEMPERATURE} with --n > 1 (distinct samples)",
    )
    sampling.add_argument(
        "--top-p",
        type=_number(0.0, 1.0, open_low=True),
        default=1.0,
        metavar="P",
        help="default: 1",
    )
    sampling.add_argument(
        "--n", type=positive_int, default=1, metavar="N", help="samples per note (default: 1)"
    )
    sampling.add_argument(
        "--seed",
        type=count,
        default=0,
        metavar="S",
        help="base seed; sample k is drawn with S+k (default: 0)",
    )
    endpoint = parser.add_argument_group("endpoint")
    endpoint.add_argument(
        "--concurrency",
        type=positive_int,
        default=32,
        metavar="N",
        help="requests in flight (default: 32)",
    )
    endpoint.add_argument(
        "--timeout",
        type=_number(0.0, open_low=True),
        default=600.0,
        metavar="S",
        help="seconds per request (default: 600)",
    )
    endpoint.add_argument(
        "--retries",
        type=count,
        default=3,
        metavar="N",
        help="retries per request after the first attempt (default: 3)",
    )
    endpoint.add_argument(
        "--backoff",
        type=_number(0.0),
        default=0.5,
        metavar="S",
        help="first retry delay, doubled each retry, with jitter (default: 0.5)",
    )
    endpoint.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        metavar="VAR",
        help="environment variable holding the API key (default: OPENAI_API_KEY; unset: EMPTY)",
    )
    hf = parser.add_argument_group("transformers")
    hf.add_argument("--device", metavar="DEV", help="cpu, cuda, cuda:1 ... (default: auto)")
    hf.add_argument(
        "--batch-size",
        type=positive_int,
        default=8,
        metavar="N",
        help="notes per generate call (default: 8)",
    )
    parser.add_argument(
        "--limit", type=positive_int, metavar="N", help="only the first N rows of INPUT"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def _run(args: argparse.Namespace) -> int:
    if args.endpoint is not None and not args.model:
        error("--endpoint needs --model NAME (the served model name)")
        return EXIT_USAGE
    if args.endpoint is not None and not args.endpoint.startswith(("http://", "https://")):
        error(f"--endpoint: {args.endpoint!r} is not an http:// or https:// URL")
        return EXIT_USAGE
    if args.output != "-" and _same_file(args.output, args.input):
        error(f"{args.output}: --output would overwrite INPUT")
        return EXIT_USAGE
    rows = read_note_rows(args.input, limit=args.limit)
    model = args.model if args.endpoint is not None else (args.model or args.hf_model)
    temperature = args.temperature
    if temperature is None:
        # greedy samples of one note are all alike: groups of them carry no signal
        temperature = 0.0 if args.n == 1 else GROUP_TEMPERATURE
    params = SamplingParams(
        model=model,
        temperature=temperature,
        top_p=args.top_p,
        max_tokens=args.max_tokens,
        seed=args.seed,
        n=args.n,
    )
    with terminating_cleanly():  # SIGTERM while the file is rewritten: no copy left
        done = prepare_output(args.output, params.n) if args.output != "-" else set()
    todo = [row for row in rows if row_key(row.id) not in done]
    skipped = len(rows) - len(todo)
    try:
        writer = RowWriter(args.output)
    except OSError as exc:
        error(f"{args.output}: cannot write: {exc.strerror or exc}")
        return EXIT_USAGE
    failed: list[NoteRow] = []
    started = time.monotonic()
    with writer, _Progress(len(rows), skipped, quiet=args.quiet) as progress:

        def on_done(row: NoteRow, completions: list[str]) -> None:
            writer.write(sample_records(row, completions, params))
            progress.advance()

        def on_failed(row: NoteRow, reason: str) -> None:
            failed.append(row)
            progress.log(f"icdreward: error: row {row.row} (id {row.id!r}): {reason}")
            progress.advance()

        if todo:
            try:
                _backend(args, params)(todo, on_done, on_failed)
            except (ModuleNotFoundError, OpenAIMissingError) as exc:
                # The shared client reports a missing openai as its own error, whose
                # hint names the judge's extra: generate names its own.
                extra = "generate" if args.endpoint is not None else "hf"
                missing = "openai" if isinstance(exc, OpenAIMissingError) else exc.name
                error(
                    f"{missing or 'a module'} is not installed: "
                    f'pip install "icdreward[{extra}]" (needed by --'
                    f"{'endpoint' if args.endpoint is not None else 'hf-model'})"
                )
                return EXIT_USAGE
    if not args.quiet:
        elapsed = time.monotonic() - started
        written = len(todo) - len(failed)
        print(
            f"icdreward: {written} rows ({written * params.n} samples) written to "
            f"{'stdout' if args.output == '-' else args.output} in {elapsed:.1f} s; "
            f"{skipped} already done, {len(failed)} failed",
            file=sys.stderr,
        )
    return EXIT_FAILURE if failed else EXIT_OK


Runner = Callable[
    [list[NoteRow], Callable[[NoteRow, list[str]], None], Callable[[NoteRow, str], None]], None
]


def _backend(args: argparse.Namespace, params: SamplingParams) -> Runner:
    if args.endpoint is not None:
        options = EndpointOptions(
            url=args.endpoint,
            api_key=os.environ.get(args.api_key_env) or "EMPTY",
            concurrency=args.concurrency,
            timeout=args.timeout,
            retries=args.retries,
            backoff=args.backoff,
        )

        def run_endpoint(
            rows: list[NoteRow],
            on_done: Callable[[NoteRow, list[str]], None],
            on_failed: Callable[[NoteRow, str], None],
        ) -> None:
            generate_endpoint(rows, params, options, on_done, on_failed)

        return run_endpoint

    model, tokenizer, device = load_hf(args.hf_model, args.device)

    def run_hf(
        rows: list[NoteRow],
        on_done: Callable[[NoteRow, list[str]], None],
        on_failed: Callable[[NoteRow, str], None],
    ) -> None:
        generate_hf(
            rows,
            params,
            model,
            tokenizer,
            on_done,
            on_failed,
            batch_size=args.batch_size,
            device=device,
        )

    return run_hf


class _Progress:
    """A rich progress bar on stderr (nothing with ``quiet``)."""

    def __init__(self, total: int, completed: int, *, quiet: bool) -> None:
        self._bar: Any = None
        self._task: Any = None
        if not quiet:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("generating"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._task = self._bar.add_task("generate", total=total, completed=completed)

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)

    def log(self, line: str) -> None:
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=sys.stderr)

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _same_file(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


COMMAND = Command(
    name="generate",
    help="completions for admission notes with the training prompt (endpoint or transformers)",
    description=_DESCRIPTION,
    configure=_configure,
    run=_run,
    order=12,
)
