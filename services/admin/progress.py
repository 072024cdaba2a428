"""A progress line for ``eraser register`` on folders, on stderr (stdout is the results).

On a terminal it is a bar redrawn in place; otherwise (a log file, a CI job) a ``progress`` line
at each tenth, so a long run still shows it is moving without flooding the log.
"""

from __future__ import annotations

from typing import TextIO

_WIDTH = 30


class Progress:
    """Counts files done out of ``total`` and shows it on ``stream``."""

    def __init__(self, total: int, stream: TextIO, noun: str = "images") -> None:
        self._total = total
        self._stream = stream
        self._noun = noun
        self._done = 0
        self._terminal = stream.isatty()

    def advance(self) -> None:
        """One more file done."""
        self._done += 1
        if self._terminal:
            self._draw()
        elif self._done == self._total or self._tenth(self._done) > self._tenth(self._done - 1):
            self._stream.write(f"progress\t{self._done}/{self._total} {self._noun}\n")
            self._stream.flush()

    def note(self, line: str) -> None:
        """Write a line of its own (an error, a warning) without garbling the bar."""
        if self._terminal:
            self._stream.write("\r\x1b[K")
        self._stream.write(f"{line}\n")
        if self._terminal:
            self._draw()

    def close(self) -> None:
        """End the bar's line."""
        if self._terminal and self._done:
            self._stream.write("\n")
            self._stream.flush()

    def _tenth(self, done: int) -> int:
        return done * 10 // max(self._total, 1)

    def _draw(self) -> None:
        filled = self._done * _WIDTH // max(self._total, 1)
        bar = "#" * filled + "-" * (_WIDTH - filled)
        self._stream.write(f"\r[{bar}] {self._done}/{self._total} {self._noun}")
        self._stream.flush()
