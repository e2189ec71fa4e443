"""The dashboard as a pure function: ``render(snapshot, width=, height=, elapsed=)`` → rich renderable.

Built by composition, like rich's ``progress.py``: small column objects
(``Column``) make the tables, each panel is made from the snapshot alone, and
a layout plan (``layout_plan``) decides which panels fit. Nothing here reads a
clock, a terminal or a global; the same arguments always give the same picture.

The result is a ``Rows`` renderable: exactly ``height`` lines of exactly
``width`` cells, each a rich ``Text``. Panels are framed here rather than by
rich's ``Table``/``Panel``/``Layout``: the widths are known, so joining text
is several times cheaper, and drawing runs on a thread that shares the CPU
(and the GIL) with capture and learning.

Screen layout, top to bottom::

    header           source, link types, elapsed, frames, rates, drops, progress
    models | alerts  scores per model + baseline  |  anomaly state and latest alerts
    chart  | traffic accuracy over capture time   |  top talkers, protocol mix
    recent frames    the newest frames, coloured by label/prediction agreement

Small terminals. Every line fits ``width`` and the whole fits ``height``;
columns are dropped (lowest priority first) or ellipsized rather than
wrapped. Panels give way in this order, the first listed dropping first:

1. **traffic** — beside the chart from 110 columns, else in its own rows if 8
   spare rows remain after the chart;
2. **alerts** (anomaly runs only) — beside the models table from 120 columns,
   else in its own rows if 6 spare rows remain; the header always keeps a
   short anomaly state (threshold or grace, alert count);
3. **chart** — needs 9 spare rows once the recent-frames table has 5 rows,
   and 40 columns;
4. **recent frames** — shrinks to 2 rows, then drops;
5. **models** — keeps the best model and the baseline when rows run out;
6. **header** — always shown.

At 80×24 this leaves the header, the models table and a short recent-frames
table (9 rows); at 120×40 and 200×60 the alerts panel sits beside the models
table, and the chart and the traffic mix share a row above the recent frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from rich.cells import cell_len, set_cell_size
from rich.console import (
    Console,
    ConsoleOptions,
    JustifyMethod,
    RenderableType,
    RenderResult,
)
from rich.segment import Segment
from rich.text import Span, Text

from wirelearn.errors import ConfigError
from wirelearn.models._snapshot import AnomalyStatus, ModelScore, RecentFrame, Snapshot
from wirelearn.ui._chart import AccuracyChart, clock_text, sparkline

__all__ = [
    "BASELINE_STYLE",
    "MODEL_STYLES",
    "Column",
    "LayoutPlan",
    "Rows",
    "fit_columns",
    "layout_plan",
    "model_styles",
    "render",
    "render_waiting",
    "table_lines",
]

#: Colours of the models, in the evaluator's order (the chart and the table agree).
MODEL_STYLES: tuple[str, ...] = (
    "bright_cyan",
    "bright_magenta",
    "yellow",
    "bright_blue",
    "bright_green",
    "dark_orange",
    "orchid",
    "turquoise2",
)
#: The colour of the majority baseline.
BASELINE_STYLE = "grey50"

_AGREE, _DISAGREE, _UNLABELLED, _ALERT = "green", "red", "dim", "bold red"
_PANEL_CHROME = 4  # two border columns plus one column of padding each side
_BORDER = "bright_black"

# Layout thresholds (see the module docstring).
_RECENT_MIN = 5  # panel lines: borders, heading, two rows
_RECENT_SHORT = 8  # five rows: what the chart must leave to the recent frames
_CHART_MIN, _CHART_MAX = 9, 18
_CHART_MIN_WIDTH = 40
_TRAFFIC_BESIDE_WIDTH, _TRAFFIC_MIN_ROWS, _TRAFFIC_MAX_ROWS = 110, 8, 12
_ALERTS_BESIDE_WIDTH, _ALERTS_MIN_ROWS, _ALERTS_MAX_ROWS = 120, 6, 9

T = TypeVar("T")


# --- columns ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column(Generic[T]):
    """One table column as a small render object (rich ``ProgressColumn``-like).

    Attributes:
        header: the column heading.
        min_width: the narrowest useful width; below it the column is left out.
        max_width: the widest it grows when there is room.
        priority: lower numbers are kept first when the width runs out.
        cell: makes the cell text of one row, given the width it will get.
        justify: cell alignment.
        grow: the order in which columns take spare width (default: ``priority``).
    """

    header: str
    min_width: int
    max_width: int
    priority: int
    cell: Callable[[T, int], str | Text]
    justify: JustifyMethod = "left"
    grow: int | None = None


def fit_columns(
    columns: Sequence[Column[T]], available: int, *, gap: int = 1
) -> list[tuple[Column[T], int]]:
    """Choose the columns that fit in ``available`` cells and their widths.

    Columns are taken by priority while their minimum widths (plus ``gap``
    between columns) fit; spare cells then widen the flexible columns up to
    their maximum, in ``grow`` order. The result keeps the display order.

    >>> cols = [Column("a", 4, 4, 0, str), Column("b", 5, 9, 2, str), Column("c", 6, 6, 1, str)]
    >>> [(c.header, w) for c, w in fit_columns(cols, 13)]
    [('a', 4), ('c', 6)]
    >>> [(c.header, w) for c, w in fit_columns(cols, 20)]
    [('a', 4), ('b', 8), ('c', 6)]
    """
    chosen: set[int] = set()
    used = 0
    for i in sorted(range(len(columns)), key=lambda i: columns[i].priority):
        need = columns[i].min_width + (gap if chosen else 0)
        if used + need <= available:
            chosen.add(i)
            used += need
    widths = {i: columns[i].min_width for i in chosen}
    spare = available - used
    for i in sorted(chosen, key=lambda i: _grow_key(columns[i])):
        grow = min(spare, columns[i].max_width - widths[i])
        if grow > 0:
            widths[i] += grow
            spare -= grow
    return [(columns[i], widths[i]) for i in range(len(columns)) if i in chosen]


def _grow_key(col: Column[T]) -> int:
    return col.priority if col.grow is None else col.grow


def _clip(text: str, width: int, right: bool = False) -> str:
    """``text`` cut with an ellipsis or padded to exactly ``width`` cells.

    >>> _clip("arpspoof", 6), _clip("42", 4, right=True)
    ('arpsp…', '  42')
    """
    n = cell_len(text)
    if n > width:
        return set_cell_size(text, width - 1) + "…" if width > 0 else ""
    if n < width:
        pad = " " * (width - n)
        return pad + text if right else text + pad
    return text


def _concat(parts: Sequence[Text | str]) -> Text:
    """Join texts into one line by offsetting their spans (cheaper than ``Text.append``)."""
    plain: list[str] = []
    spans: list[Span] = []
    pos = 0
    for part in parts:
        if isinstance(part, str):
            plain.append(part)
            pos += len(part)
            continue
        p = part.plain
        if part.style:
            spans.append(Span(pos, pos + len(p), part.style))
        spans.extend(Span(sp.start + pos, sp.end + pos, sp.style) for sp in part.spans)
        plain.append(p)
        pos += len(p)
    return Text("".join(plain), spans=spans, no_wrap=True, end="")


def table_lines(
    fitted: Sequence[tuple[Column[T], int]],
    items: Sequence[T],
    *,
    row_style: Callable[[T], str] | None = None,
    header: bool = True,
) -> list[Text]:
    """The lines of a table: a bold heading, then one line per item, cells cut to width.

    Much cheaper than a rich ``Table`` (one ``Text`` per row, no wrapping
    pass): the widths are already fixed by ``fit_columns``. A cell given as
    ``Text`` keeps its style.
    """
    lines: list[Text] = []
    if header:
        plain = " ".join(_clip(c.header, w, c.justify == "right") for c, w in fitted)
        lines.append(Text(plain, style="bold", no_wrap=True, end=""))
    for item in items:
        parts: list[str] = []
        spans: list[Span] = []
        pos = 0
        for i, (col, w) in enumerate(fitted):
            if i:
                parts.append(" ")
                pos += 1
            value = col.cell(item, w)
            if isinstance(value, Text):
                cell = _clip(value.plain, w, col.justify == "right")
                if value.style:
                    spans.append(Span(pos, pos + len(cell), value.style))
            else:
                cell = _clip(value, w, col.justify == "right")
            parts.append(cell)
            pos += len(cell)
        style = row_style(item) if row_style else ""
        lines.append(Text("".join(parts), style=style, spans=spans, no_wrap=True, end=""))
    return lines


class Rows:
    """Lines of text drawn as they are: cropped to the width, never wrapped."""

    def __init__(self, lines: Sequence[Text]) -> None:
        self.lines = list(lines)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        new_line = Segment.line()
        limit = len(self.lines) if options.height is None else options.height
        for line in self.lines[:limit]:
            if line.cell_len > width:
                line = line.copy()
                line.truncate(width, overflow="ellipsis")
            yield from line.render(console)
            yield new_line


# --- formatting helpers ---------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _duration(seconds: float) -> str:
    """Seconds as H:MM:SS (with days when long).

    >>> _duration(3725.2), _duration(90061)
    ('1:02:05', '1d 01:01:01')
    """
    s = max(0, int(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{d}d {h:02d}:{m:02d}:{s:02d}" if d else f"{h}:{m:02d}:{s:02d}"


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover - unreachable


def _bar(frac: float, width: int) -> str:
    """A horizontal bar of ``width`` cells, in eighths of a cell.

    >>> _bar(0.5, 4) + "|"
    '██  |'
    """
    if width <= 0:
        return ""
    eighths = round(max(0.0, min(1.0, frac)) * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")).ljust(width)[:width]


def model_styles(snapshot: Snapshot) -> dict[str, str]:
    """The colour of each model (the baseline grey), stable for a run's model order."""
    styles: dict[str, str] = {}
    k = 0
    for m in snapshot.models:
        if m.is_baseline:
            styles[m.name] = BASELINE_STYLE
        else:
            styles[m.name] = MODEL_STYLES[k % len(MODEL_STYLES)]
            k += 1
    return styles


# --- header -----------------------------------------------------------------------------------


def _fit_line(chips: Sequence[tuple[int, Text]], width: int) -> Text:
    """One line of chips: the most important that fit in ``width``, in their given order.

    Args:
        chips: ``(priority, text)`` pairs; lower priorities are kept first.
        width: the cells available.
    """
    kept: set[int] = set()
    used = 0
    for i in sorted(range(len(chips)), key=lambda i: chips[i][0]):
        cells = chips[i][1].cell_len
        need = cells + (2 if kept else 0)
        if cells and used + need <= width:
            kept.add(i)
            used += need
    line = Text(no_wrap=True, overflow="ellipsis")
    for i, (_, chip) in enumerate(chips):
        if i in kept:
            if line.cell_len:
                line.append("  ")
            line.append_text(chip)
    return line


def _chip(label: str, value: str, style: str = "bold") -> Text:
    return Text.assemble((label + " ", "dim"), (value, style))


def _header_chips(
    snap: Snapshot, elapsed: float, now_wall: float | None, utc: bool, width: int
) -> tuple[list[tuple[int, Text]], list[tuple[int, Text]]]:
    """The chips of the header's two lines, each with its priority (lower = kept first)."""
    src = snap.source
    first = [(0, Text("wirelearn", style="bold cyan"))]
    # A long path is cut, not dropped: which source this is matters most.
    name = src.name or "(source)"
    first.append((0, Text(_clip(name, min(cell_len(name), max(12, width // 3))), style="bold")))
    if src.linktypes:
        first.append((2, Text("[" + ", ".join(src.linktypes) + "]", style="cyan")))
    first.append((3, _chip("target", snap.target)))
    first.append((0, _chip("elapsed", _duration(elapsed))))
    if snap.frames:
        span = f"{clock_text(snap.ts_first, utc=utc)}→{clock_text(snap.ts_last, utc=utc)}"
        first.append((4, _chip("capture", f"{span} ({_duration(snap.duration)})", "default")))
    live = src.bytes_total is None
    if live and now_wall is not None and snap.frames:
        lag = now_wall - snap.ts_last
        if abs(lag) < 86400:
            first.append((1, _chip("lag", f"{lag:.1f}s", "yellow" if lag > 2 else "default")))
    if snap.final:
        first.append((0, Text("finished", style="bold green")))

    second = [(0, _chip("frames", f"{snap.frames:,}"))]
    if snap.labelled:
        second.append((5, _chip("labelled", f"{snap.labelled:,}", "default")))
    second.append((1, Text(f"{snap.rate_fps:,.0f} fr/s", style="bold")))
    second.append((2, Text(f"{snap.rate_mbps:,.2f} Mbit/s", style="bold")))
    if live or src.kernel_drops:
        drops = f"{src.kernel_drops:,}"
        second.append((1, _chip("drops", drops, "bold red" if src.kernel_drops else "default")))
    if live or src.queue_depth or src.queue_dropped:
        q = f"{src.queue_depth}"
        if src.queue_dropped:
            q += f" ({src.queue_dropped:,} dropped)"
        second.append((2, _chip("queue", q, "bold red" if src.queue_dropped else "default")))
    if snap.sampling_ratio < 0.999:
        ratio = f"{100 * snap.sampling_ratio:.0f}% sampled"
        second.append((0, _chip("learning", ratio, "bold yellow")))
    for what, n in (
        ("truncated", src.truncated),
        ("malformed", src.malformed),
        ("undecoded", src.undecoded),
    ):
        if n:
            second.append((4, _chip(what, f"{n:,}", "yellow")))
    a = snap.anomaly
    if a is not None:
        if a.threshold is None:
            second.append((1, _chip("anomaly", "grace", "yellow")))
        else:
            style = "bold red" if a.alerts else "default"
            second.append((1, _chip("anomaly", f"{a.alerts:,} alerts > {a.threshold:.3g}", style)))
    return first, second


def _progress_line(snap: Snapshot, elapsed: float, width: int) -> Text | None:
    src = snap.source
    if not src.bytes_total:
        return None
    frac = min(1.0, max(0.0, src.bytes_read / src.bytes_total))
    eta = "--:--"
    if frac >= 1.0 or snap.final:
        eta = "done"
    elif src.bytes_read > 0 and elapsed > 0:
        eta = _duration(elapsed * (src.bytes_total - src.bytes_read) / src.bytes_read)
    tail = f" {100 * frac:5.1f}%  {_size(src.bytes_read)} of {_size(src.bytes_total)}  ETA {eta}"
    bar_w = max(0, min(60, width - len(tail)))
    done = round(frac * bar_w)
    return Text.assemble(
        ("━" * done, "bold green"), ("─" * (bar_w - done), "dim"), (tail, "default")
    )


def _header(
    snap: Snapshot, inner: int, elapsed: float, now_wall: float | None, utc: bool
) -> list[Text]:
    first, second = _header_chips(snap, elapsed, now_wall, utc, inner)
    lines = [_fit_line(first, inner), _fit_line(second, inner)]
    prog = _progress_line(snap, elapsed, inner)
    if prog is not None:
        lines.append(prog)
    return lines


def _header_rows(snap: Snapshot) -> int:
    return 3 if snap.source.bytes_total else 2


# --- models -----------------------------------------------------------------------------------


def _model_columns(best: str | None, styles: Mapping[str, str]) -> list[Column[ModelScore]]:
    def name(m: ModelScore, w: int) -> Text:
        mark = "*" if m.name == best else " "
        return Text(f"{mark}{m.name}", style="dim" if m.is_baseline else styles.get(m.name, ""))

    def cost(m: ModelScore, w: int) -> str:
        vals = [x for x in (m.predict_us, m.learn_us) if math.isfinite(x)]
        return f"{sum(vals):.1f}" if vals else "-"

    return [
        Column("model", 9, 14, 0, name),
        Column("roll acc", 8, 8, 1, lambda m, w: _pct(m.rolling_accuracy), "right"),
        Column("acc", 6, 6, 2, lambda m, w: _pct(m.accuracy), "right"),
        Column("macro-F1", 8, 8, 3, lambda m, w: _num(m.macro_f1), "right"),
        Column("kappa", 6, 6, 6, lambda m, w: _num(m.kappa), "right"),
        Column("µs/frame", 8, 8, 5, cost, "right"),
        Column("learned", 9, 11, 4, lambda m, w: f"{m.learned:,}", "right"),
        Column("trend", 6, 40, 7, lambda m, w: sparkline(m.spark, w)),
    ]


def _models(snap: Snapshot, styles: Mapping[str, str], inner: int, rows: int) -> list[Text]:
    models = _pick_models(snap, rows)
    fitted = fit_columns(_model_columns(snap.best, styles), inner)
    return table_lines(fitted, models, row_style=lambda m: "dim" if m.is_baseline else "")


def _pick_models(snap: Snapshot, rows: int) -> list[ModelScore]:
    """The models that fit in ``rows``: the best and the baseline first, in the snapshot's order."""
    if rows >= len(snap.models):
        return list(snap.models)
    keep: list[str] = []
    if snap.best:
        keep.append(snap.best)
    keep += [m.name for m in snap.models if m.is_baseline]
    keep += [m.name for m in snap.models if m.name not in keep]
    chosen = set(keep[: max(0, rows)])
    return [m for m in snap.models if m.name in chosen]


# --- recent frames ----------------------------------------------------------------------------


def _mac_cell(mac: str | None, vendor: str | None, width: int) -> str:
    """A MAC with its vendor; Wireshark's ``Vendor_xx:yy:zz`` form when narrow."""
    if mac is None:
        return "-"
    full = f"{mac} {vendor}" if vendor else mac
    if len(full) <= width or not vendor:
        return full
    short = f"{vendor}_{mac[9:]}" if len(mac) == 17 else mac
    return short if len(short) <= width else mac


def _endpoint(ip: str | None, port: int | None) -> str:
    if ip is None:
        return ""
    if port is None:
        return ip
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _addresses(r: RecentFrame, width: int) -> str:
    if r.ip_src is None and r.ip_dst is None:
        return ""
    return f"{_endpoint(r.ip_src, r.sport)} → {_endpoint(r.ip_dst, r.dport)}"


def _codes(r: RecentFrame, width: int) -> str:
    s = "-" if r.src_code is None else str(r.src_code)
    d = "-" if r.dst_code is None else str(r.dst_code)
    return f"{s}→{d}"


def _recent_columns(utc: bool, with_scores: bool) -> list[Column[RecentFrame]]:
    cols: list[Column[RecentFrame]] = []
    if with_scores:
        cols.append(Column("!", 1, 1, 0, lambda r, w: Text("!", style=_ALERT) if r.alert else ""))
    cols += [
        Column("time", 8, 12, 1, lambda r, w: clock_text(r.ts, utc=utc, millis=w >= 12), grow=20),
        Column("src MAC", 17, 30, 2, lambda r, w: _mac_cell(r.src_mac, r.src_vendor, w), grow=12),
        Column("dst MAC", 17, 30, 3, lambda r, w: _mac_cell(r.dst_mac, r.dst_vendor, w), grow=13),
        Column("codes", 7, 9, 9, _codes),
        Column("type", 5, 8, 7, lambda r, w: r.ethertype or "-"),
        Column("len", 5, 5, 8, lambda r, w: str(r.length), "right"),
        Column("proto", 6, 6, 11, lambda r, w: r.proto or ""),
        Column("addresses", 24, 64, 10, _addresses, grow=11),
        Column("label", 8, 12, 4, lambda r, w: r.label or ""),
        Column("pred", 8, 12, 5, lambda r, w: r.prediction or ""),
    ]
    if with_scores:
        cols.append(
            Column(
                "score", 5, 6, 6, lambda r, w: "" if r.score is None else f"{r.score:.3f}", "right"
            )
        )
    return cols


def _row_style(r: RecentFrame) -> str:
    if r.label is None:
        style = _UNLABELLED
    elif r.prediction is None:
        style = ""
    else:
        style = _AGREE if r.label == r.prediction else _DISAGREE
    return f"{style} bold" if r.alert else style


def _recent(snap: Snapshot, inner: int, rows: int, utc: bool) -> list[Text]:
    fitted = fit_columns(_recent_columns(utc, snap.anomaly is not None), inner)
    shown = snap.recent[-rows:] if rows > 0 else ()
    return table_lines(fitted, shown, row_style=_row_style)


# --- chart, traffic, alerts -------------------------------------------------------------------


def _chart(
    snap: Snapshot, styles: Mapping[str, str], inner: int, rows: int, utc: bool
) -> list[Text]:
    order = [m.name for m in snap.models]
    if snap.best in order:
        order.remove(snap.best)
        order.append(snap.best)  # the best model's line on top
    chart = AccuracyChart.from_history(snap.history, styles, order=order, utc=utc)
    return chart.lines(inner, rows)


_Section = tuple[str, list[Text]]


def _traffic_sections(snap: Snapshot, width: int) -> tuple[list[_Section], list[_Section]]:
    """The talkers (MACs, IPs) and the protocol mix (ethertypes, IP protocols), as sections."""
    t = snap.traffic
    count_w = max(
        (len(f"{n:,}") for n in [r[2] for r in t.top_macs] + [r[1] for r in t.top_ips]), default=1
    )
    room = max(0, width - count_w - 1)

    def talker(name: str, frames: int) -> Text:
        return Text.assemble((_clip(name, room), ""), " ", (f"{frames:>{count_w},}", "cyan"))

    macs = [talker(_mac_cell(mac, vendor, room), n) for mac, vendor, n, _ in t.top_macs]
    ips = [talker(ip, n) for ip, n, _ in t.top_ips]
    mixes: list[_Section] = []
    for title, items in (("ethertypes", t.ethertypes), ("IP protocols", t.ip_protos)):
        total = sum(n for _, n in items) or 1
        name_w = min(8, max((len(name) for name, _ in items), default=4))
        bar_w = max(1, width - name_w - 8)
        rows = [
            Text.assemble(
                (_clip(name, name_w), ""),
                " ",
                (_bar(n / total, bar_w), "cyan"),
                (f" {100 * n / total:5.1f}%", "dim"),
            )
            for name, n in items
        ]
        mixes.append((title, rows))
    return [("top MACs", macs), ("top IPs", ips)], mixes


def _stack(sections: Sequence[_Section], height: int) -> list[Text]:
    """Sections (a bold title, then rows) in ``height`` lines, sharing rows round-robin.

    Every section shows its top entries before any shows more; sections whose
    title does not fit are left out.
    """
    shown = [sec for sec in sections if sec[1]]
    while shown and len(shown) * 2 > height:
        shown.pop()
    counts = [0] * len(shown)
    room = height - len(shown)
    while room > 0 and any(c < len(sec[1]) for c, sec in zip(counts, shown, strict=True)):
        for i, (_, rows) in enumerate(shown):
            if room and counts[i] < len(rows):
                counts[i] += 1
                room -= 1
    lines: list[Text] = []
    for (title, rows), n in zip(shown, counts, strict=True):
        lines.append(Text(title, style="bold"))
        lines += rows[:n]
    return lines


def _traffic(snap: Snapshot, inner_w: int, inner_h: int) -> list[Text]:
    if inner_w >= 64:
        # Two columns: talkers left, protocol mix right.
        col_w = (inner_w - 2) // 2
        talkers, mixes = _traffic_sections(snap, col_w)
        left, right = _stack(talkers, inner_h), _stack(mixes, inner_h)
        lines = []
        for i in range(max(len(left), len(right))):
            a = _fit(left[i], col_w) if i < len(left) else " " * col_w
            lines.append(_concat((a, "  ", right[i] if i < len(right) else "")))
        return lines
    talkers, mixes = _traffic_sections(snap, inner_w)
    return _stack(mixes + talkers, inner_h)


def _alert_columns(a: AnomalyStatus, utc: bool) -> list[Column[dict[str, float]]]:
    thr = a.threshold

    def vs(d: dict[str, float], w: int) -> str:
        return "-" if thr is None or thr == 0 else f"×{d['score'] / thr:.2f}"

    return [
        Column("frame", 7, 10, 0, lambda d, w: f"{int(d['frame']):,}", "right"),
        Column("time", 8, 12, 2, lambda d, w: clock_text(float(d["ts"]), utc=utc, millis=w >= 12)),
        Column("score", 6, 7, 1, lambda d, w: f"{d['score']:.4f}", "right"),
        Column("vs thr", 6, 7, 3, vs, "right"),
    ]


def _alerts(snap: Snapshot, inner_w: int, inner_h: int, utc: bool) -> list[Text]:
    a = snap.anomaly
    assert a is not None
    if a.threshold is None:
        status = Text.assemble(
            ("grace period", "bold yellow"), (": learning normal traffic, no threshold yet", "")
        )
    else:
        pct = 100 * a.alerts / a.scored if a.scored else 0.0
        status = Text.assemble(
            ("threshold ", "dim"),
            (f"{a.threshold:.4g}", "bold"),
            ("  alerts ", "dim"),
            (f"{a.alerts:,}", "bold red" if a.alerts else "bold"),
            (f" of {a.scored:,} ({pct:.1f}%)", "dim"),
        )
    quality = []
    if a.auc is not None:
        quality.append(f"ROC AUC {a.auc:.3f}")
    if a.precision is not None:
        quality.append(f"precision {_pct(a.precision)}")
    if a.recall is not None:
        quality.append(f"recall {_pct(a.recall)}")
    lines = [status]
    if quality:
        lines.append(Text("  ".join(quality), style="dim"))
    room = max(0, inner_h - len(lines) - 1)  # status lines, table heading
    if a.latest_alerts and room > 0:
        fitted = fit_columns(_alert_columns(a, utc), inner_w)
        newest_first = list(reversed(a.latest_alerts[-room:]))
        lines += table_lines(fitted, newest_first, row_style=lambda d: _ALERT)
    elif not a.latest_alerts and room > 0:
        lines.append(Text("no alerts yet", style="dim"))
    return lines


# --- layout -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayoutPlan:
    """Which panels fit a terminal, and their heights in rows (0 = left out).

    Attributes:
        header: rows of the header panel.
        models: rows of the models row (the alerts panel shares it when beside).
        model_rows: table rows for models (fewer than the models when squeezed).
        chart: rows of the chart row (the traffic panel shares it when beside).
        traffic: rows of the traffic panel when in its own row, or the chart's when beside.
        traffic_beside: the traffic panel sits right of the chart.
        alerts: rows of the alerts panel when in its own row, or the models row's when beside.
        alerts_beside: the alerts panel sits right of the models table.
        recent: rows of the recent-frames panel.
    """

    header: int
    models: int
    model_rows: int
    chart: int
    traffic: int
    traffic_beside: bool
    alerts: int
    alerts_beside: bool
    recent: int

    @property
    def panels(self) -> tuple[str, ...]:
        """The names of the panels shown, top to bottom, left to right."""
        names = []
        for name, rows in (
            ("header", self.header),
            ("models", self.models),
            ("alerts", self.alerts if self.alerts_beside else 0),
            ("chart", self.chart),
            ("traffic", self.traffic if self.traffic_beside else 0),
            ("traffic", self.traffic if not self.traffic_beside else 0),
            ("alerts", self.alerts if not self.alerts_beside else 0),
            ("recent", self.recent),
        ):
            if rows > 0:
                names.append(name)
        return tuple(names)


def layout_plan(snapshot: Snapshot, width: int, height: int) -> LayoutPlan:
    """Decide which panels fit in ``width × height`` (see the module docstring for the order)."""
    if width < 1 or height < 1:
        raise ConfigError(f"terminal size must be positive, not {width}x{height}")
    header = min(height, _header_rows(snapshot) + 2)
    rest = height - header
    n_models = len(snapshot.models)
    models = min(rest, n_models + 3)
    model_rows = max(0, models - 3)
    rest -= models
    recent = rest if rest >= _RECENT_MIN else 0
    spare = rest - _RECENT_SHORT
    has_anomaly = snapshot.anomaly is not None
    alerts = 0
    alerts_beside = has_anomaly and width >= _ALERTS_BESIDE_WIDTH and models > 0
    if alerts_beside:
        # Give the alerts a few rows beside the models if there is room.
        grow = max(0, min(_ALERTS_MIN_ROWS + 1 - models, spare))
        models += grow
        spare -= grow
        alerts = models
    chart = traffic = 0
    traffic_beside = False
    if spare >= _CHART_MIN and width >= _CHART_MIN_WIDTH:
        chart = max(_CHART_MIN, min(_CHART_MAX, spare // 2 + 2))
        spare -= chart
        if width >= _TRAFFIC_BESIDE_WIDTH:
            traffic, traffic_beside = chart, True
        elif spare >= _TRAFFIC_MIN_ROWS:
            traffic = min(_TRAFFIC_MAX_ROWS, spare)
            spare -= traffic
    if has_anomaly and not alerts_beside and spare >= _ALERTS_MIN_ROWS:
        alerts = min(_ALERTS_MAX_ROWS, spare)
        spare -= alerts
    if recent:
        recent = _RECENT_SHORT + spare if spare >= 0 else rest
    return LayoutPlan(
        header=header,
        models=models,
        model_rows=model_rows,
        chart=chart,
        traffic=traffic,
        traffic_beside=traffic_beside,
        alerts=alerts,
        alerts_beside=alerts_beside,
        recent=recent,
    )


def _fit(line: Text, width: int) -> Text:
    """``line`` cut (with an ellipsis) or padded to exactly ``width`` cells, in place."""
    if line.cell_len != width:
        line.truncate(width, overflow="ellipsis", pad=True)
    return line


def _boxed(title: str, lines: Sequence[Text], width: int, height: int) -> list[Text]:
    """A rounded panel of exactly ``width × height`` cells around ``lines`` (cropped, padded).

    Drawn here rather than with rich's ``Panel``/``Layout``: with the widths
    known, joining text is several times cheaper, and drawing runs on the
    refresh thread while capture and learning want the CPU.
    """
    if width < 1 or height < 1:
        return []
    if width < _PANEL_CHROME + 1 or height < 3:
        bare = [_fit(line, width) for line in lines[:height]]
        return bare + [Text(" " * width) for _ in range(height - len(bare))]
    inner = width - _PANEL_CHROME
    top = Text("╭─", style=_BORDER)
    if title:
        label = Text(f" {title} ", style="bold")
        label.truncate(width - 4, overflow="ellipsis")
        top.append_text(label)
    top.append("─" * (width - 1 - top.cell_len) + "╮", style=_BORDER)
    out = [top]
    edge_l, edge_r = Text("│ ", style=_BORDER), Text(" │", style=_BORDER)
    for i in range(height - 2):
        body: Text | str = _fit(lines[i], inner) if i < len(lines) else " " * inner
        out.append(_concat((edge_l, body, edge_r)))
    out.append(Text("╰" + "─" * (width - 2) + "╯", style=_BORDER))
    return out


def _beside(left: list[Text], right: list[Text]) -> list[Text]:
    """Two blocks of the same height, side by side."""
    return [_concat((a, b)) for a, b in zip(left, right, strict=True)]


def render(
    snapshot: Snapshot,
    *,
    width: int,
    height: int,
    elapsed: float,
    now_wall: float | None = None,
    utc: bool = False,
) -> RenderableType:
    """The dashboard for one snapshot, exactly ``width × height`` cells.

    A pure function: the same arguments give the same picture. Which panels
    are shown depends on the size (``layout_plan``).

    Args:
        snapshot: the state to show.
        width: terminal columns.
        height: terminal rows to fill.
        elapsed: wall-clock seconds since the run started (header, ETA).
        now_wall: the wall clock (epoch seconds), to show how far a live
            capture lags; None to leave it out.
        utc: show capture times in UTC rather than local time.

    Raises:
        ConfigError: a non-positive size.
    """
    plan = layout_plan(snapshot, width, height)
    styles = model_styles(snapshot)
    inner = width - _PANEL_CHROME
    lines = _boxed("", _header(snapshot, inner, elapsed, now_wall, utc), width, plan.header)
    if plan.models:
        n = len(snapshot.classes)
        title = f"models · target {snapshot.target} · {n} class{'' if n == 1 else 'es'}"
        if plan.alerts_beside:
            alerts_w = max(44, min(64, width * 3 // 10))
            models_w = width - alerts_w
            models = _models(snapshot, styles, models_w - _PANEL_CHROME, plan.model_rows)
            alerts = _alerts(snapshot, alerts_w - _PANEL_CHROME, plan.models - 2, utc)
            lines += _beside(
                _boxed(title, models, models_w, plan.models),
                _boxed("anomaly alerts", alerts, alerts_w, plan.models),
            )
        else:
            models = _models(snapshot, styles, inner, plan.model_rows)
            lines += _boxed(title, models, width, plan.models)
    if plan.chart:
        title = "rolling accuracy over capture time"
        if plan.traffic_beside:
            traffic_w = max(44, min(72, width * 2 // 5))
            chart_w = width - traffic_w
            chart = _chart(snapshot, styles, chart_w - _PANEL_CHROME, plan.chart - 2, utc)
            traffic = _traffic(snapshot, traffic_w - _PANEL_CHROME, plan.chart - 2)
            lines += _beside(
                _boxed(title, chart, chart_w, plan.chart),
                _boxed("traffic", traffic, traffic_w, plan.chart),
            )
        else:
            chart = _chart(snapshot, styles, inner, plan.chart - 2, utc)
            lines += _boxed(title, chart, width, plan.chart)
    if plan.traffic and not plan.traffic_beside:
        traffic = _traffic(snapshot, inner, plan.traffic - 2)
        lines += _boxed("traffic", traffic, width, plan.traffic)
    if plan.alerts and not plan.alerts_beside:
        alerts = _alerts(snapshot, inner, plan.alerts - 2, utc)
        lines += _boxed("anomaly alerts", alerts, width, plan.alerts)
    if plan.recent:
        title = f"recent frames · best model {snapshot.best}" if snapshot.best else "recent frames"
        recent = _recent(snapshot, inner, plan.recent - 3, utc)
        lines += _boxed(title, recent, width, plan.recent)
    lines += [Text(" " * width) for _ in range(height - len(lines))]
    return Rows(lines[:height])


def render_waiting(
    *, width: int, height: int, elapsed: float, source: str | None = None
) -> RenderableType:
    """What the dashboard shows before the first snapshot arrives."""
    what = f" from {source}" if source else ""
    text = Text.assemble(
        ("wirelearn", "bold cyan"),
        f"  waiting for the first frames{what}…  ",
        ("elapsed ", "dim"),
        (_duration(elapsed), "bold"),
        no_wrap=True,
        overflow="ellipsis",
    )
    return Rows(_boxed("", [text], width, min(height, 3)))
