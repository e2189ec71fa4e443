"""Clean stops: SIGTERM behaves like Ctrl-C, and a second signal aborts at once."""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any

__all__ = ["Interrupted", "StopSignals", "install_early_sigterm"]


class Interrupted(BaseException):
    """SIGTERM arrived: stop cleanly, like Ctrl-C (a BaseException so nothing swallows it)."""


class StopSignals:
    """Turns SIGTERM into ``Interrupted`` while active; a second SIGINT/SIGTERM aborts at once."""

    def __init__(self) -> None:
        self.stopping = False
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            # Second signal while shutting down: give up on the summary.
            os._exit(130)
        raise Interrupted(signal.Signals(signum).name)

    def __enter__(self) -> StopSignals:
        if threading_is_main():
            self._old[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._handler)
        return self

    def shutting_down(self) -> None:
        """From now on, a second Ctrl-C or SIGTERM aborts without the summary."""
        self.stopping = True
        if threading_is_main():
            signal.signal(signal.SIGINT, self._handler)
            signal.signal(signal.SIGTERM, self._handler)

    def __exit__(self, *exc: object) -> None:
        # Once shutting down, the abort handlers stay until ``restore``: the summary,
        # saved models and plots come after the ``with`` block and a second signal
        # there must still abort with 130.
        if not self.stopping:
            self.restore()

    def restore(self) -> None:
        """Put back the handlers that were there before (default Ctrl-C)."""
        if threading_is_main():
            for sig, old in self._old.items():
                signal.signal(sig, old)
            signal.signal(signal.SIGINT, signal.default_int_handler)


def threading_is_main() -> bool:
    """Whether this is the main thread (the only one that may set signal handlers)."""
    return threading.current_thread() is threading.main_thread()


def install_early_sigterm() -> None:
    """Make SIGTERM raise ``Interrupted`` from process start (imports take seconds)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    if threading_is_main():
        signal.signal(signal.SIGTERM, handler)
