"""Termination signals in the CLI: no half-written file is left behind.

A scheduler (Slurm, Kubernetes, systemd) stops a job with SIGTERM, whose default
action ends the process at once: no ``finally`` runs, so a command that writes
``.NAME.PID.partial`` and renames it on success would leave the partial file. Inside
:func:`terminating_cleanly`:

* SIGTERM and SIGHUP delete the registered files, print one line
  (``icdreward: terminated by SIGTERM``) and raise :class:`Terminated`, a
  ``SystemExit(128 + signal)`` (143 for SIGTERM, the status a shell reports for a
  process it killed), so that every ``finally`` and context manager runs on the way
  out (caches are flushed, files closed); the console script
  (:func:`icdreward.cli.run`) then ends the process with ``os._exit``, because a
  worker thread may still be inside torch, and finalising the interpreter under it
  can abort the process;
* SIGINT deletes the registered files, then does what it did before (Python raises
  :class:`KeyboardInterrupt`, which the CLI reports as ``interrupted``, status 130).

The files are deleted in the handler itself, before anything unwinds, so that a slow
shutdown cut short by the scheduler's SIGKILL still leaves none. A signal that was
ignored (``SIG_IGN``, as ``nohup`` sets SIGHUP) stays ignored, and a handler that the
host installed is still called after the files are gone. Handlers are installed only
while the context is active, only from the main thread (where Python runs them), and
the previous ones are restored when it ends; importing this module changes nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["terminating_cleanly"]

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

# The signals that end the command with 128 + signum; SIGHUP does not exist on Windows.
_TERMINATING = tuple(
    s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None
)

_registered: list[Path] = []
_previous: dict[int, _Handler] = {}
_depth = 0


@contextlib.contextmanager
def terminating_cleanly(*paths: Path) -> Iterator[None]:
    """While active, a termination signal deletes ``paths`` and ends the command.

    ``paths`` need not exist yet (register a file before creating it, so that no
    signal falls between the two). Contexts nest: the handlers are installed by the
    outermost one and restored when it ends; each context's paths are registered for
    its own duration. Outside the main thread (where Python cannot install signal
    handlers) the context does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    global _depth
    if _depth == 0:
        _install()
    _depth += 1
    _registered.extend(paths)
    try:
        yield
    finally:
        for path in paths:
            _registered.remove(path)
        _depth -= 1
        if _depth == 0:
            _restore()


def _install() -> None:
    for signum in (*_TERMINATING, signal.SIGINT):
        previous = signal.getsignal(signum)
        if previous == signal.SIG_IGN:
            continue  # whoever started us asked for this signal to be ignored
        if signum == signal.SIGINT and not callable(previous):
            continue  # SIGINT with its default action is not Python's to intercept
        _previous[signum] = previous
        signal.signal(signum, _handle)


def _restore() -> None:
    while _previous:
        signum, previous = _previous.popitem()
        signal.signal(signum, previous)


def _handle(signum: int, frame: FrameType | None) -> None:
    for path in _registered:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
    previous = _previous.get(signum)
    if callable(previous):
        previous(signum, frame)  # SIGINT: Python's handler raises KeyboardInterrupt
        return
    from icdreward.cli._app import PROG  # here: _app imports this module

    name = signal.Signals(signum).name
    # os.write, not print: the signal may have interrupted a write to sys.stderr, and
    # a buffered stream refuses to be re-entered.
    with contextlib.suppress(OSError):
        os.write(2, f"{PROG}: terminated by {name}\n".encode())
    raise Terminated(128 + signum)


class Terminated(SystemExit):
    """Raised in the main thread by SIGTERM or SIGHUP inside :func:`terminating_cleanly`.

    A :class:`SystemExit`, so every ``finally`` runs on the way out; ``main`` returns
    its status, and the console script (:func:`icdreward.cli.run`) ends the process.
    """
