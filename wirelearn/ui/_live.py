"""The live dashboard: the latest snapshot, drawn on rich's own refresh thread.

The pipeline calls ``Dashboard.update(snapshot)``, which only stores a
reference; rich's ``Live`` refresh thread (a daemon, like rich's
``_RefreshThread``) calls ``render`` a few times a second. Capture and
learning therefore never wait for drawing, and never print.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.live import Live
from rich.panel import Panel
from rich.segment import Segment
from rich.text import Text

from wirelearn.errors import ConfigError
from wirelearn.models._snapshot import Snapshot
from wirelearn.ui._render import render, render_waiting

__all__ = ["MAX_REFRESH_PER_SECOND", "Dashboard", "should_use_dashboard"]

#: The fastest refresh allowed: more costs CPU that capture and learning need.
MAX_REFRESH_PER_SECOND = 4.0


def should_use_dashboard(
    stdout_isatty: bool, no_ui: bool, json_to_stdout: bool, env: Mapping[str, str]
) -> bool:
    """Whether to show the live dashboard.

    On by default when stdout is a terminal. Off when stdout is piped, with
    ``--no-ui``, when per-frame output (``--json -``, ``--csv -``, frame lines)
    goes to stdout, when ``TERM=dumb``, or when ``CI`` is set to anything but
    an empty string, ``0`` or ``false``.

    >>> should_use_dashboard(True, False, False, {"TERM": "xterm-256color"})
    True
    >>> should_use_dashboard(True, False, False, {"TERM": "dumb"})
    False
    """
    if not stdout_isatty or no_ui or json_to_stdout:
        return False
    if env.get("TERM", "").strip().lower() == "dumb":
        return False
    ci = env.get("CI")
    return ci is None or ci.strip().lower() in ("", "0", "false")


class _Lines:
    """Lines rendered earlier, replayed as they are (the cache of one frame of the dashboard)."""

    def __init__(self, lines: list[list[Segment]]) -> None:
        self.lines = lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        new_line = Segment.line()
        for line in self.lines:
            yield from line
            yield new_line


class _BudgetLive(Live):
    """``Live`` that skips refreshes to keep its thread within a CPU budget.

    Each refresh's CPU time (rendering plus writing the terminal codes) is
    measured; the next one waits until that cost is at most ``budget`` of the
    elapsed wall clock. A small terminal refreshes at the full rate, a huge one
    less often, and capture and learning keep the rest of the CPU.
    """

    def __init__(
        self,
        *,
        budget: float,
        clock: Callable[[], float],
        cpu_time: Callable[[], float],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.budget = budget
        self.clock = clock
        self.cpu_time = cpu_time
        self.refreshes = 0
        self.skipped = 0
        self.cpu_spent = 0.0
        self._next = -math.inf

    def refresh(self) -> None:
        now = self.clock()
        if self.is_started and now < self._next:
            self.skipped += 1
            return
        t0 = self.cpu_time()
        super().refresh()
        cost = max(0.0, self.cpu_time() - t0)
        self.cpu_spent += cost
        self.refreshes += 1
        self._next = now + cost / self.budget


class Dashboard:
    """The live terminal dashboard, refreshed from rich's own thread.

    Use as a context manager around the run; call ``update`` with every
    snapshot. After the ``with`` block ends, print the final summary.

    Args:
        console: where to draw (default: a new ``Console()`` on stdout).
        refresh_per_second: redraws per second, above 0 and at most 4.
        cpu_budget: the most of one CPU the drawing thread may use, (0, 1]; refreshes
            are skipped to stay under it. One refresh costs about 4 ms of CPU at 80x24
            and 14 ms at 160x50, so the default (3 %) gives 4 and about 2 refreshes/s.
        get_time: the wall clock for elapsed time and ETA (injected in tests).
        get_wall: the epoch wall clock, to show how far a live capture lags
            behind capture time; None to leave it out.
        screen: draw on the alternate screen (full screen, restored on exit);
            False draws inline, one row short of the terminal.
        utc: show capture times in UTC rather than local time.
        source: the source's name, shown until the first snapshot arrives.

    Raises:
        ConfigError: a refresh rate or CPU budget out of range.

    After the block: ``renders`` counts the frames rendered, ``refreshes`` and
    ``skipped`` the refreshes done and skipped for the CPU budget, ``cpu_spent``
    the CPU seconds they took, and ``error`` an exception raised while drawing
    (re-raised by ``__exit__``: it is a bug).
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        refresh_per_second: float = 4.0,
        cpu_budget: float = 0.03,
        get_time: Callable[[], float] = time.monotonic,
        get_wall: Callable[[], float] | None = time.time,
        screen: bool = True,
        utc: bool = False,
        source: str | None = None,
    ) -> None:
        if not 0 < refresh_per_second <= MAX_REFRESH_PER_SECOND:
            raise ConfigError(
                f"refresh_per_second must be above 0 and at most {MAX_REFRESH_PER_SECOND:g}, "
                f"not {refresh_per_second!r}"
            )
        if not 0 < cpu_budget <= 1:
            raise ConfigError(f"cpu_budget must be above 0 and at most 1, not {cpu_budget!r}")
        self.console = console if console is not None else Console()
        self.cpu_budget = float(cpu_budget)
        self.refresh_per_second = float(refresh_per_second)
        self.get_time = get_time
        self.get_wall = get_wall
        self.screen = screen
        self.utc = utc
        self.source = source
        self.renders = 0
        self.refreshes = self.skipped = 0
        self.cpu_spent = 0.0
        self.error: BaseException | None = None
        self._snapshot: Snapshot | None = None
        self._start: float | None = None
        self._live: _BudgetLive | None = None
        self._cache_key: tuple[Snapshot, int, int, int] | None = None
        self._cache: _Lines | None = None

    @property
    def snapshot(self) -> Snapshot | None:
        """The latest snapshot given to ``update``."""
        return self._snapshot

    def update(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` for the next refresh. Cheap: never draws, never waits for a lock."""
        # One reference assignment is atomic; the refresh thread reads it once per frame.
        self._snapshot = snapshot

    def _size(self) -> tuple[int, int]:
        width, height = self.console.size
        return max(1, width), max(1, height if self.screen else height - 1)

    def _renderable(self) -> RenderableType:
        """Called by ``Live`` on its refresh thread: the current frame of the dashboard."""
        try:
            width, height = self._size()
            elapsed = self.get_time() - (self._start or 0.0)
            snap = self._snapshot
            if snap is None:
                return render_waiting(
                    width=width, height=height, elapsed=elapsed, source=self.source
                )
            # Same snapshot, size and second as last time: replay the lines drawn then.
            key = (snap, width, height, int(elapsed))
            cached = self._cache_key
            if (
                cached is not None
                and cached[0] is snap
                and cached[1:] == key[1:]
                and self._cache is not None
            ):
                return self._cache
            now_wall = self.get_wall() if self.get_wall is not None else None
            view = render(
                snap, width=width, height=height, elapsed=elapsed, now_wall=now_wall, utc=self.utc
            )
            options = self.console.options.update(width=width, height=height)
            self._cache = _Lines(self.console.render_lines(view, options, pad=False))
            self._cache_key = key
            self.renders += 1
            return self._cache
        except Exception as exc:
            # Keep the run going (the capture must not stop for a drawing bug) but report it.
            self.error = exc
            return Panel(Text(f"dashboard error: {exc!r}", style="bold red"), height=3)

    def __enter__(self) -> Dashboard:
        self._start = self.get_time()
        self._live = _BudgetLive(
            budget=self.cpu_budget,
            clock=time.monotonic,
            cpu_time=time.thread_time,
            console=self.console,
            get_renderable=self._renderable,
            refresh_per_second=self.refresh_per_second,
            screen=self.screen,
            transient=not self.screen,
            auto_refresh=True,
            vertical_overflow="crop",
        )
        # start() without a first refresh: every frame is drawn on Live's thread.
        self._live.start(refresh=False)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        live, self._live = self._live, None
        if live is not None:
            # rich's stop() only signals its refresh thread; wait for it so that nothing
            # draws after the caller starts printing the summary.
            thread = getattr(live, "_refresh_thread", None)
            live.stop()
            if thread is not None:
                thread.join(timeout=5.0)
            self.refreshes, self.skipped, self.cpu_spent = (
                live.refreshes,
                live.skipped,
                live.cpu_spent,
            )
        if self.error is not None and exc is None:
            raise self.error
