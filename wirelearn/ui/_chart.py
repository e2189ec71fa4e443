"""Terminal charts: an accuracy-over-capture-time line chart in braille, and sparklines.

The chart is a small renderable (``__rich_console__``) that draws into whatever
width and height rich gives it, like a stock chart: one line per model, a y axis
from 0 to 100 % with labels, capture-time labels (HH:MM:SS) under the x axis and
a legend in the models' colours.

Each terminal cell holds a 2×4 grid of braille dots (U+2800..U+28FF), so a
chart of ``w × h`` cells has ``2w × 4h`` dots. Points are first averaged into
dot columns (numpy, no Python loop over history points), then drawn as
vertical spans joining each column to the previous one, so the line is
continuous however steep it is.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
from numpy.typing import ArrayLike, NDArray
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.text import Text

from wirelearn.errors import ConfigError
from wirelearn.models._snapshot import HistoryPoint

__all__ = ["BLOCKS", "BRAILLE_BASE", "AccuracyChart", "ChartSeries", "clock_text", "sparkline"]

#: The eight block characters of a sparkline, lowest first.
BLOCKS = "▁▂▃▄▅▆▇█"
#: The empty braille cell; a cell's dots are bits added to it.
BRAILLE_BASE = 0x2800
# Bit of each dot in a braille cell, indexed [row 0..3][column 0..1] (Unicode's dot numbering).
_DOT_BITS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.uint8)
_Y_TICKS = (1.0, 0.75, 0.5, 0.25, 0.0)
_AXIS_W = 5  # "100%" plus the axis character


def sparkline(values: Sequence[float], width: int) -> str:
    """The last ``width`` values (0..1) as block characters; nan is a space.

    The scale is absolute (0 → ▁, 1 → █) so that the lines of different
    models compare at a glance.

    >>> sparkline([0.0, 0.5, 1.0, float("nan")], 4)
    '▁▅█ '
    """
    if width <= 0:
        return ""
    tail = np.asarray(values[-width:], dtype=np.float64)
    if not len(tail):
        return ""
    idx = np.rint(np.clip(tail, 0.0, 1.0) * (len(BLOCKS) - 1))
    return "".join(" " if math.isnan(v) else BLOCKS[int(i)] for v, i in zip(tail, idx, strict=True))


def clock_text(ts: float, *, utc: bool = False, millis: bool = False) -> str:
    """Capture time ``ts`` (epoch seconds) as HH:MM:SS (local time unless ``utc``).

    >>> clock_text(1_700_000_000.25, utc=True, millis=True)
    '22:13:20.250'
    """
    if not math.isfinite(ts):
        return "--:--:--"
    tz = timezone.utc if utc else None
    try:
        dt = datetime.fromtimestamp(ts, tz=tz)
    except (OverflowError, OSError, ValueError):
        return "--:--:--"
    text = dt.strftime("%H:%M:%S")
    return f"{text}.{dt.microsecond // 1000:03d}" if millis else text


@dataclass(frozen=True, eq=False)
class ChartSeries:
    """One line of the chart.

    Attributes:
        name: shown in the legend.
        ts: capture times (epoch seconds), increasing.
        values: the values at those times, 0..1; nan where undefined.
        style: the rich style (colour) of the line and its legend entry.
        dashed: draw the legend entry dashed (the baseline).
    """

    name: str
    ts: NDArray[np.float64]
    values: NDArray[np.float64]
    style: str = "default"
    dashed: bool = False

    @classmethod
    def of(
        cls,
        name: str,
        ts: ArrayLike,
        values: ArrayLike,
        *,
        style: str = "default",
        dashed: bool = False,
    ) -> ChartSeries:
        """Build a series from any array-likes (checked to be the same length)."""
        t = np.asarray(ts, dtype=np.float64).ravel()
        v = np.asarray(values, dtype=np.float64).ravel()
        if len(t) != len(v):
            raise ConfigError(f"chart series {name!r}: {len(t)} times but {len(v)} values")
        return cls(name=name, ts=t, values=v, style=style, dashed=dashed)


class AccuracyChart:
    """A braille line chart of accuracy (0–100 %) over capture time, one line per series.

    Draws into the width rich gives it and into ``options.height`` (as in a
    ``Layout`` region or a ``Panel`` with a height), else into ``height`` rows.
    The last rows hold the time labels and the legend; with fewer than 4 rows
    only the plot is drawn.

    Args:
        series: the lines, drawn in order (later ones on top where they cross).
        height: rows to use when the container does not set a height.
        utc: time labels in UTC rather than local time.

    >>> from rich.console import Console
    >>> c = Console(width=30, color_system=None, legacy_windows=False, _environ={})
    >>> s = ChartSeries.of("m", [0.0, 10.0], [1.0, 1.0])
    >>> with c.capture() as cap:
    ...     c.print(AccuracyChart([s], height=4, utc=True))
    >>> cap.get().splitlines()[0]
    '100%┤⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉'
    """

    def __init__(
        self, series: Sequence[ChartSeries], *, height: int = 10, utc: bool = False
    ) -> None:
        if height < 1:
            raise ConfigError(f"chart height must be at least 1 row, not {height}")
        self.series = tuple(series)
        self.height = height
        self.utc = utc

    @classmethod
    def from_history(
        cls,
        history: Sequence[HistoryPoint],
        styles: Mapping[str, str],
        *,
        baseline: str | None = "baseline",
        order: Sequence[str] | None = None,
        height: int = 10,
        utc: bool = False,
    ) -> AccuracyChart:
        """The rolling accuracy of every model in ``history``.

        Args:
            history: snapshot history points, oldest first.
            styles: the colour of each model; models missing from it are not drawn.
            baseline: the name of the baseline (drawn first, dashed in the legend).
            order: draw order (last on top); defaults to the order of ``styles``.
            height: rows when the container sets none.
            utc: time labels in UTC.
        """
        names = list(order) if order is not None else list(styles)
        # Baseline underneath everything else.
        names.sort(key=lambda n: n != baseline)
        ts = np.fromiter((h.ts for h in history), dtype=np.float64, count=len(history))
        series = []
        for name in names:
            if name not in styles:
                continue
            vals = np.fromiter(
                (h.rolling_accuracy.get(name, math.nan) for h in history),
                dtype=np.float64,
                count=len(history),
            )
            series.append(
                ChartSeries(
                    name=name, ts=ts, values=vals, style=styles[name], dashed=name == baseline
                )
            )
        return cls(series, height=height, utc=utc)

    # --- drawing --------------------------------------------------------------------------------

    def _time_range(self) -> tuple[float, float] | None:
        """The capture-time span of every point, defined or not (the x axis is the run's time)."""
        lo, hi = math.inf, -math.inf
        for s in self.series:
            ok = np.isfinite(s.ts)
            if ok.any():
                lo = min(lo, float(s.ts[ok].min()))
                hi = max(hi, float(s.ts[ok].max()))
        return None if lo > hi else (lo, hi)

    def dots(self, width: int, height: int) -> tuple[NDArray[np.uint8], NDArray[np.int16]]:
        """Rasterise the series into a ``height × width`` cell grid.

        Returns:
            ``(bits, owner)``: the braille dot bits of each cell, and the index of
            the series drawn last in that cell (-1 for none).
        """
        bits = np.zeros((height, width), dtype=np.uint8)
        owner = np.full((height, width), -1, dtype=np.int16)
        span = self._time_range()
        if span is None or width < 1 or height < 1:
            return bits, owner
        t0, t1 = span
        dx_n, dy_n = 2 * width, 4 * height
        for k, s in enumerate(self.series):
            ok = np.isfinite(s.ts) & np.isfinite(s.values)
            if not ok.any():
                continue
            t, v = s.ts[ok], np.clip(s.values[ok], 0.0, 1.0)
            if t1 > t0:
                col = np.rint((t - t0) / (t1 - t0) * (dx_n - 1)).astype(np.int64)
            else:
                col = np.full(len(t), (dx_n - 1) // 2, dtype=np.int64)
            # Average the points that fall into the same dot column.
            sums = np.bincount(col, weights=v, minlength=dx_n)
            counts = np.bincount(col, minlength=dx_n)
            have = np.flatnonzero(counts)
            xs = np.arange(have[0], have[-1] + 1)
            ys_val = np.interp(xs, have, sums[have] / counts[have])
            ys = np.rint((1.0 - ys_val) * (dy_n - 1)).astype(np.int64)
            # Join each column to the previous one with a vertical span of dots.
            prev = np.concatenate([ys[:1], ys[:-1]])
            lo = np.minimum(prev, ys)
            hi = np.maximum(prev, ys)
            # Half of a jump belongs to each column, so slopes look symmetric.
            mid_lo = np.where(prev < ys, (prev + ys + 1) // 2, lo)
            mid_hi = np.where(prev > ys, (prev + ys) // 2, hi)
            lens = mid_hi - mid_lo + 1
            px = np.repeat(xs, lens)
            starts = np.repeat(mid_lo - np.cumsum(lens) + lens, lens)
            py = starts + np.arange(int(lens.sum()))
            # The other half: the previous column's side of the jump.
            back_lo = np.where(prev < ys, lo, mid_hi + 1)
            back_hi = np.where(prev < ys, mid_lo - 1, hi)
            blens = np.maximum(back_hi - back_lo + 1, 0)
            if blens.sum():
                bx = np.repeat(np.maximum(xs - 1, xs[0]), blens)
                bstart = np.repeat(back_lo - np.cumsum(blens) + blens, blens)
                by = bstart + np.arange(int(blens.sum()))
                px = np.concatenate([px, bx])
                py = np.concatenate([py, by])
            cy, cx = py // 4, px // 2
            np.bitwise_or.at(bits, (cy, cx), _DOT_BITS[py % 4, px % 2])
            owner[cy, cx] = k
        return bits, owner

    def _tick_rows(self, ph: int) -> dict[int, str]:
        ticks = _Y_TICKS if ph >= 5 else (1.0, 0.0) if ph >= 2 else (1.0,)
        rows: dict[int, str] = {}
        for v in ticks:
            row = round((1.0 - v) * (4 * ph - 1)) // 4
            rows.setdefault(row, f"{round(v * 100)}%")
        return rows

    def _time_labels(self, pw: int) -> str:
        """Capture-time labels under the plot: HH:MM:SS, with milliseconds when steps are short."""
        span = self._time_range()
        line = [" "] * pw
        if span is None or pw < 8:
            return "".join(line)
        t0, t1 = span
        if t1 <= t0:
            text = clock_text(t0, utc=self.utc)
            pos = (pw - len(text)) // 2
            line[pos : pos + len(text)] = list(text)
            return "".join(line)
        n = max(2, min(pw // 14 + 1, 6))
        millis = (t1 - t0) / (n - 1) < 1.0 and pw >= 12
        if millis:
            n = max(2, min(pw // 18 + 1, 6))
        label_w = 12 if millis else 8
        if pw < 2 * label_w + 1:
            n = 1
        for i in range(n):
            frac = i / (n - 1) if n > 1 else 0.0
            pos = round(frac * (pw - label_w))
            text = clock_text(t0 + frac * (t1 - t0), utc=self.utc, millis=millis)
            line[pos : pos + len(text)] = list(text)
        return "".join(line[:pw])

    def _legend(self, width: int) -> Text:
        """The legend: the top line (the best model) first, dashed ones (the baseline) last.

        Entries that do not fit are left out, so the most important stay.
        """
        solid = [s for s in self.series if not s.dashed]
        order = solid[-1:] + solid[:-1] + [s for s in self.series if s.dashed]
        line = Text()
        for s in order:
            mark = "┄┄" if s.dashed else "━━"
            entry = f"{mark} {s.name}"
            need = len(entry) + (2 if line.cell_len else 0)
            if line.cell_len + need > width:
                break
            if line.cell_len:
                line.append("  ")
            line.append(entry, style=s.style)
        return line

    def lines(self, width: int, height: int) -> list[Text]:
        """The chart as ``height`` lines of exactly ``width`` cells."""
        if width < _AXIS_W + 2 or height < 1:
            return [Text(" " * max(0, width)) for _ in range(max(0, height))]
        extra = 2 if height >= 4 else 0  # time labels + legend
        ph = height - extra
        pw = width - _AXIS_W
        bits, owner = self.dots(pw, ph)
        ticks = self._tick_rows(ph)
        out: list[Text] = []
        for row in range(ph):
            label = ticks.get(row)
            line = Text()
            line.append(f"{label:>4}┤" if label else "    │", style="dim")
            # Runs of cells with the same owner become one span.
            chars = "".join(chr(BRAILLE_BASE + b) if b else " " for b in bits[row].tolist())
            own = owner[row].tolist()
            start = 0
            for col in range(1, pw + 1):
                if col == pw or own[col] != own[start]:
                    o = own[start]
                    line.append(chars[start:col], style=self.series[o].style if o >= 0 else None)
                    start = col
            out.append(line)
        if extra:
            out.append(Text(" " * _AXIS_W + self._time_labels(pw), style="dim"))
            legend = self._legend(pw)
            legend.pad_left(_AXIS_W)
            legend.pad_right(width - legend.cell_len)
            out.append(legend)
        return out

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        height = options.height if options.height is not None else self.height
        new_line = Segment.line()
        for line in self.lines(width, height):
            yield from line.render(console)
            yield new_line


def _now() -> float:  # pragma: no cover - only for the demo below
    return time.time()


if __name__ == "__main__":  # pragma: no cover
    t = np.linspace(_now() - 600, _now(), 200)
    demo = [
        ChartSeries.of("sgd", t, 0.5 + 0.45 * np.tanh((t - t[0]) / 120), style="bright_cyan"),
        ChartSeries.of("nb", t, 0.6 + 0.1 * np.sin((t - t[0]) / 30), style="bright_magenta"),
        ChartSeries.of("baseline", t, np.full(len(t), 0.55), style="grey50", dashed=True),
    ]
    Console().print(AccuracyChart(demo, height=14))
