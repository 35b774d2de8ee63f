"""One progress line ("sent 40/100") that stays readable in a terminal and in a log.

In a terminal the line is rewritten in place; piped or captured, a line is printed at most every
``every_s`` seconds and at the end, so logs show progress without a line per message.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(
        self, label: str, total: int, stream: TextIO | None = None, every_s: float = 5.0
    ) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stdout
        self.every_s = every_s
        self.done = 0
        self._tty = self.stream.isatty()
        self._last_print = 0.0
        self._open = False  # a terminal line without its newline yet

    def update(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        now = time.monotonic()
        if self._tty:
            self.stream.write(f"\r{self.text()}")
            self._open = True
        elif now - self._last_print >= self.every_s:
            self.stream.write(f"{self.text()}\n")
            self._last_print = now
        self.stream.flush()

    def text(self) -> str:
        return f"{self.label} {self.done}/{self.total}"

    def finish(self) -> None:
        """The final count, on a line of its own."""
        prefix = "\r" if self._tty else ""
        self.stream.write(f"{prefix}{self.text()}\n")
        self.stream.flush()
        self._open = False

    def close_line(self) -> None:
        """End a half-written terminal line before anything else is printed (Ctrl-C)."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False
