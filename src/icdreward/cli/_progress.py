"""Plain progress lines on stderr, for terminals and batch logs (SLURM) alike."""

from __future__ import annotations

import sys
import time

__all__ = ["StageLog"]


class StageLog:
    """Prints one timestamped line per call on stderr, when progress is on.

    Lines read ``icdreward COMMAND [   12.3 s] MESSAGE``: plain text with no cursor
    control, so they read the same in a terminal and in a file a scheduler writes.

    Args:
        command: the command named at the start of each line.
        mode: ``"always"`` (on), ``"never"`` (off) or ``"auto"`` (on when stderr is a
            terminal).
    """

    def __init__(self, command: str, mode: str) -> None:
        self.command = command
        self.on = mode == "always" or (mode == "auto" and sys.stderr.isatty())
        self._start = time.monotonic()
        self._last: float | None = None

    @property
    def elapsed(self) -> float:
        """Seconds since the log was made."""
        return time.monotonic() - self._start

    def __call__(self, message: str) -> None:
        """Print ``message`` with the command and the elapsed time (nothing when off)."""
        if self.on:
            self._last = time.monotonic()
            print(
                f"icdreward {self.command} [{self.elapsed:7.1f} s] {message}",
                file=sys.stderr,
                flush=True,
            )

    def every(self, seconds: float, message: str) -> None:
        """Print ``message`` unless a line was printed less than ``seconds`` ago.

        The first call always prints, so a log shows that work started.
        """
        if self._last is None or time.monotonic() - self._last >= seconds:
            self(message)
