"""Stopping a long-running command the same way on Ctrl-C and on SIGTERM.

Used in the main process of ``python -m local demo`` and ``python -m local up``: both run the
stack inside ``with`` blocks, so turning every stop request into KeyboardInterrupt is what makes
them release the ports, worker processes and temporary folders they hold.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from typing import Any


def wait_for_interrupt() -> None:
    """Block until Ctrl-C or SIGTERM (``terminate_on_sigterm``) raises KeyboardInterrupt.

    Short sleeps, not one long one: the kernel may deliver the signal to any of the stack's
    threads, and only the main thread runs Python's handler, when it next wakes up.
    """
    while True:
        time.sleep(0.5)


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """SIGTERM and SIGINT raise KeyboardInterrupt, so ``with`` blocks clean up as on Ctrl-C."""

    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _raise)
    # Ctrl-C must stop us even when started from a shell that ignores SIGINT in background jobs.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
