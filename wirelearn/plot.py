"""Plots of a run: accuracy over capture time per model, the anomaly score, attack phases.

Input is a snapshot's history (``Snapshot.history``) or the ``--metrics``
file that ``MetricsWriter`` writes (JSON Lines of ``Snapshot.to_dict()``, or
CSV). ``wirelearn plot METRICS.jsonl -o FILE.png`` calls ``plot_history``.

matplotlib comes from the ``plot`` extra and is imported only when a plot is
drawn. Figures are built on matplotlib's object API (``Figure`` with the Agg
canvas), never pyplot, so no display and no global state are involved.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from wirelearn.errors import ConfigError, DependencyError, FormatError, InputError, OutputError
from wirelearn.models._snapshot import SNAPSHOT_VERSION, HistoryPoint, Snapshot
from wirelearn.ui._chart import clock_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

__all__ = [
    "BASELINE_COLOR",
    "PLOT_COLORS",
    "PLOT_FORMATS",
    "attack_phases",
    "history_figure",
    "plot_history",
    "plot_metrics_file",
    "read_metrics",
]

#: Line colours of the models, in order (matplotlib's "tab10" without its grey).
PLOT_COLORS: tuple[str, ...] = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#d62728",
)
#: The majority baseline: grey and dashed.
BASELINE_COLOR = "#7f7f7f"
#: The output formats, by file extension.
PLOT_FORMATS: tuple[str, ...] = ("png", "svg", "pdf")

_PHASE_COLORS = ("#fbb4ae", "#b3cde3", "#ccebc5", "#decbe4", "#fed9a6", "#e5d8bd")
_THRESHOLD_COLOR = "#d62728"
_SCORE_COLOR = "#6a3d9a"
_TIME_AXES = ("seconds", "clock")

Phase = tuple[float, float, str]


def _matplotlib() -> tuple[type[Figure], type[FuncFormatter], type[Patch]]:
    """``(Figure, FuncFormatter, Patch)``, or a DependencyError naming the extra."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
        from matplotlib.ticker import FuncFormatter
    except ImportError as exc:
        raise DependencyError("plotting needs matplotlib: pip install 'wirelearn[plot]'") from exc
    return Figure, FuncFormatter, Patch


# --- reading --metrics files ------------------------------------------------------------------


def _float(value: Any) -> float:
    """A JSON/CSV number, with null/empty as nan."""
    if value is None or value == "":
        return math.nan
    return float(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


def _point_from_dict(d: dict[str, Any]) -> HistoryPoint:
    """A history point from one ``HistoryPoint`` dict (``to_dict(history=True)``)."""
    return HistoryPoint(
        ts=float(d["ts"]),
        frames=int(d["frames"]),
        rolling_accuracy={str(k): _float(v) for k, v in d["rolling_accuracy"].items()},
        accuracy={str(k): _float(v) for k, v in d.get("accuracy", {}).items()},
        anomaly_mean=_opt_float(d.get("anomaly_mean")),
        anomaly_max=_opt_float(d.get("anomaly_max")),
        threshold=_opt_float(d.get("threshold")),
        labels={str(k): int(v) for k, v in (d.get("labels") or {}).items()},
    )


def _point_from_snapshot(d: dict[str, Any]) -> HistoryPoint:
    """A history point from one snapshot line: its time, the models' scores, the anomaly state."""
    models = d["models"]
    a = d.get("anomaly") or {}
    return HistoryPoint(
        ts=float(d["ts_last"]),
        frames=int(d.get("frames", 0)),
        rolling_accuracy={str(m["name"]): _float(m.get("rolling_accuracy")) for m in models},
        accuracy={str(m["name"]): _float(m.get("accuracy")) for m in models},
        anomaly_mean=_opt_float(a.get("last_score_mean")),
        anomaly_max=_opt_float(a.get("last_score_max")),
        threshold=_opt_float(a.get("threshold")),
        # Label counts are not in the snapshot's JSON form yet; used when present.
        labels={str(k): int(v) for k, v in (d.get("label_counts") or {}).items()},
    )


def _read_jsonl(path: str, f: Any) -> list[HistoryPoint]:
    points: list[HistoryPoint] = []
    history: list[HistoryPoint] | None = None
    for n, line in enumerate(f, start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FormatError(f"line {n}: not JSON ({exc.msg})", path=path) from exc
        if not isinstance(d, dict) or "models" not in d or "ts_last" not in d:
            raise FormatError(f"line {n}: not a wirelearn metrics record", path=path)
        version = d.get("version", SNAPSHOT_VERSION)
        if not isinstance(version, int) or version > SNAPSHOT_VERSION:
            raise FormatError(
                f"line {n}: metrics version {version!r} is newer than this wirelearn reads "
                f"({SNAPSHOT_VERSION})",
                path=path,
            )
        try:
            if isinstance(d.get("history"), list):
                # A line written with its history is the fuller record (it has label counts).
                history = [_point_from_dict(h) for h in d["history"]]
            point = _point_from_snapshot(d)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FormatError(f"line {n}: bad metrics record ({exc!r})", path=path) from exc
        # The final snapshot repeats the last mini-batch's state: keep one point.
        if points and points[-1].ts == point.ts and points[-1].frames == point.frames:
            points[-1] = point
        else:
            points.append(point)
    return history if history else points


def _read_csv(path: str, f: Any) -> list[HistoryPoint]:
    reader = csv.DictReader(f)
    need = {"seq", "ts", "frames", "model", "rolling_accuracy", "accuracy"}
    if reader.fieldnames is None or not need <= set(reader.fieldnames):
        raise FormatError(f"not a wirelearn metrics CSV (needs columns {sorted(need)})", path=path)
    # One row per snapshot and model: gather the rows of each snapshot (in file order).
    records: dict[tuple[str, str, str], dict[str, Any]] = {}
    try:
        for row in reader:
            key = (row["seq"], row["ts"], row["frames"])
            rec = records.setdefault(
                key,
                {"ts": float(row["ts"]), "frames": int(row["frames"]), "roll": {}, "acc": {}},
            )
            rec["roll"][row["model"]] = _float(row["rolling_accuracy"])
            rec["acc"][row["model"]] = _float(row["accuracy"])
            rec["threshold"] = _opt_float(row.get("anomaly_threshold"))
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"line {reader.line_num}: bad metrics row ({exc!r})", path=path) from exc
    points: list[HistoryPoint] = []
    for rec in records.values():
        point = HistoryPoint(
            ts=rec["ts"],
            frames=rec["frames"],
            rolling_accuracy=rec["roll"],
            accuracy=rec["acc"],
            threshold=rec["threshold"],
        )
        if points and points[-1].ts == point.ts and points[-1].frames == point.frames:
            points[-1] = point
        else:
            points.append(point)
    return points


def read_metrics(path: str | os.PathLike[str]) -> list[HistoryPoint]:
    """The accuracy-over-capture-time history recorded in a ``--metrics`` file.

    JSON Lines hold one ``Snapshot.to_dict()`` per line, which leaves the
    history out: each line becomes one point (its ``ts_last``, every model's
    rolling and cumulative accuracy, the anomaly score and threshold). If a
    line carries its ``history`` (``to_dict(history=True)``), the last such
    history is returned instead, with its label counts. CSV files (one row per
    snapshot and model) give the same points without anomaly scores.

    Raises:
        InputError: the file cannot be read.
        FormatError: a line that is not a metrics record, or no records at all.
    """
    p = os.fspath(path)
    try:
        with open(p, encoding="utf-8", newline="") as f:
            points = _read_csv(p, f) if p.lower().endswith(".csv") else _read_jsonl(p, f)
    except UnicodeDecodeError as exc:
        raise FormatError(f"not a text metrics file ({exc.reason})", path=p) from exc
    except OSError as exc:
        raise InputError(exc.strerror or str(exc), path=p) from exc
    if not points:
        raise FormatError("no metrics records", path=p)
    return points


# --- attack phases ----------------------------------------------------------------------------


def attack_phases(history: Sequence[HistoryPoint], *, normal: str = "benign") -> list[Phase]:
    """Where the labels say an attack was: ``(t0, t1, label)`` from growing label counts.

    Between two history points, every label other than ``normal`` whose
    count grew marks that interval; touching intervals of one label merge.
    The times are as fine as the history (one point per snapshot).

    >>> h = [HistoryPoint(float(t), t, {}, {}, labels=c) for t, c in enumerate(
    ...     [{"benign": 5}, {"benign": 9, "scan": 2}, {"benign": 9, "scan": 6}, {"benign": 12, "scan": 6}])]
    >>> attack_phases(h)
    [(0.0, 2.0, 'scan')]
    """
    open_at: dict[str, float] = {}
    last_at: dict[str, float] = {}
    phases: list[Phase] = []
    prev: dict[str, int] = {}
    prev_ts: float | None = None
    for point in history:
        start = point.ts if prev_ts is None else prev_ts
        grown = {k for k, v in point.labels.items() if k != normal and v > prev.get(k, 0)}
        for label in list(open_at):
            if label not in grown:
                phases.append((open_at.pop(label), last_at.pop(label), label))
        for label in sorted(grown):
            open_at.setdefault(label, start)
            last_at[label] = point.ts
        prev, prev_ts = point.labels, point.ts
    phases += [(t0, last_at[label], label) for label, t0 in open_at.items()]
    return sorted(phases)


# --- drawing ----------------------------------------------------------------------------------


def _history(
    source: Sequence[HistoryPoint] | Snapshot | str | os.PathLike[str],
) -> list[HistoryPoint]:
    if isinstance(source, Snapshot):
        return list(source.history)
    if isinstance(source, str | os.PathLike):
        return read_metrics(source)
    return list(source)


def _model_names(history: Sequence[HistoryPoint]) -> list[str]:
    names: dict[str, None] = {}
    for point in history:
        names.update(dict.fromkeys(point.rolling_accuracy))
    return list(names)


def history_figure(
    history: Sequence[HistoryPoint] | Snapshot | str | os.PathLike[str],
    *,
    anomaly: bool | None = None,
    attack_phases: Sequence[Phase] | None = None,
    normal_label: str = "benign",
    baseline: str = "baseline",
    size: tuple[int, int] = (1200, 800),
    dpi: int = 100,
    title: str | None = None,
    time_axis: str = "seconds",
    utc: bool = False,
) -> Figure:
    """The figure that ``plot_history`` saves (see there for the arguments)."""
    points = _history(history)
    if not points:
        raise InputError("nothing to plot: the history has no points")
    w, h = size
    if not (isinstance(w, int) and isinstance(h, int) and 50 <= w <= 20000 and 50 <= h <= 20000):
        raise ConfigError(f"size must be (width, height) in pixels, 50 to 20000 each, not {size!r}")
    if not 10 <= dpi <= 1200:
        raise ConfigError(f"dpi must be between 10 and 1200, not {dpi!r}")
    if time_axis not in _TIME_AXES:
        raise ConfigError(f"time_axis must be one of {', '.join(_TIME_AXES)}, not {time_axis!r}")
    figure_cls, formatter_cls, patch_cls = _matplotlib()

    has_scores = any(p.anomaly_mean is not None or p.anomaly_max is not None for p in points)
    with_anomaly = has_scores if anomaly is None else anomaly
    phases = list(attack_phases) if attack_phases is not None else _phases_of(points, normal_label)

    fig = figure_cls(figsize=(w / dpi, h / dpi), dpi=dpi, layout="constrained")
    if with_anomaly:
        ax, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
        axes = [ax, ax2]
    else:
        ax = fig.subplots(1, 1)
        axes = [ax]
    t0 = points[0].ts
    clock = time_axis == "clock"
    xs = [p.ts if clock else p.ts - t0 for p in points]

    colour = iter(PLOT_COLORS * 4)
    for name in _model_names(points):
        ys = [100 * p.rolling_accuracy.get(name, math.nan) for p in points]
        if name == baseline:
            ax.plot(
                xs,
                ys,
                color=BASELINE_COLOR,
                linestyle="--",
                linewidth=1.4,
                label=f"{name} (majority)",
            )
        else:
            ax.plot(xs, ys, color=next(colour), linewidth=1.8, label=name)
    ax.set_ylim(-2, 102)
    ax.set_ylabel("rolling accuracy (%)")
    ax.grid(True, alpha=0.3)
    frames = points[-1].frames
    ax.set_title(title or f"wirelearn: accuracy over capture time ({frames:,} frames)")

    if with_anomaly:
        # Scores until the grace period ended (the threshold is set after the batch that
        # ends it) come from a detector that was still learning normal: leave them out.
        ready = [points[0].threshold is not None] + [p.threshold is not None for p in points[:-1]]
        if not any(ready):
            ready = [True] * len(points)
        mean = [
            p.anomaly_mean if ok and p.anomaly_mean is not None else math.nan
            for p, ok in zip(points, ready, strict=True)
        ]
        peak = [
            p.anomaly_max if ok and p.anomaly_max is not None else math.nan
            for p, ok in zip(points, ready, strict=True)
        ]
        thr = [math.nan if p.threshold is None else p.threshold for p in points]
        if not ready[0]:
            end = xs[ready.index(True)]
            ax2.axvspan(xs[0], end, color="#d9d9d9", alpha=0.6, linewidth=0, label="grace period")
        ax2.plot(xs, mean, color=_SCORE_COLOR, linewidth=1.5, label="mean score per batch")
        ax2.plot(
            xs, peak, color=_SCORE_COLOR, linewidth=0.8, alpha=0.5, label="max score per batch"
        )
        ax2.plot(
            xs,
            thr,
            color=_THRESHOLD_COLOR,
            linestyle="--",
            linewidth=1.4,
            drawstyle="steps-post",
            label="alert threshold",
        )
        ax2.set_ylabel("anomaly score")
        ax2.grid(True, alpha=0.3)

    shade = dict(zip(sorted({label for _, _, label in phases}), _PHASE_COLORS * 4, strict=False))
    for a in axes:
        for p0, p1, label in phases:
            x0, x1 = (p0, p1) if clock else (p0 - t0, p1 - t0)
            a.axvspan(x0, x1, color=shade[label], alpha=0.6, linewidth=0, zorder=0)

    bottom = axes[-1]
    if clock:
        tz = "UTC" if utc else "local time"
        bottom.set_xlabel(f"capture time (HH:MM:SS, {tz})")
        bottom.xaxis.set_major_formatter(formatter_cls(lambda x, _pos: clock_text(x, utc=utc)))
    else:
        bottom.set_xlabel("capture time (s since the first frame)")
    for a in axes:
        handles, labels = a.get_legend_handles_labels()
        if a is ax:
            # One legend entry per attack label, not per shaded span.
            for label, col in shade.items():
                handles.append(patch_cls(facecolor=col, alpha=0.6, label=f"attack: {label}"))
                labels.append(f"attack: {label}")
        a.legend(handles, labels, loc="lower right", fontsize="small", framealpha=0.85)
    return fig


def _phases_of(points: Sequence[HistoryPoint], normal: str) -> list[Phase]:
    # history_figure's ``attack_phases`` argument hides the function of that name.
    return attack_phases(points, normal=normal)


def plot_history(
    history: Sequence[HistoryPoint] | Snapshot | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    anomaly: bool | None = None,
    attack_phases: Sequence[Phase] | None = None,
    normal_label: str = "benign",
    baseline: str = "baseline",
    size: tuple[int, int] = (1200, 800),
    dpi: int = 100,
    title: str | None = None,
    time_axis: str = "seconds",
    utc: bool = False,
) -> str:
    """Plot rolling accuracy over capture time per model (and the anomaly score) to a file.

    The top panel has one line per model and the majority baseline dashed;
    the bottom panel (when the run scored anomalies) the mean and maximum
    anomaly score per mini-batch with the alert threshold. Attack phases are
    shaded on both.

    Args:
        history: history points, a snapshot (its ``history``), or a ``--metrics`` file.
        out: the image to write; ``.png``, ``.svg`` or ``.pdf``.
        anomaly: draw the anomaly panel (None: when there are scores).
        attack_phases: ``(t0, t1, label)`` in capture time to shade; None derives
            them from the label counts of the history (``attack_phases()``).
        normal_label: the label that is not an attack.
        baseline: the baseline model's name (drawn grey and dashed).
        size: ``(width, height)`` in pixels (PNG size exactly).
        dpi: dots per inch.
        title: the title (default: accuracy over capture time with the frame count).
        time_axis: ``"seconds"`` since the first frame, or ``"clock"`` (HH:MM:SS).
        utc: clock times in UTC rather than local time.

    Returns:
        The path written.

    Raises:
        ConfigError: an unknown format or a bad option.
        DependencyError: matplotlib is not installed.
        InputError: an unreadable or empty metrics file (``FormatError`` if malformed).
        OutputError: the image cannot be written.
    """
    path = os.fspath(out)
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in PLOT_FORMATS:
        raise ConfigError(
            f"{path}: the plot format comes from the extension: one of "
            f"{', '.join('.' + f for f in PLOT_FORMATS)}"
        )
    fig = history_figure(
        history,
        anomaly=anomaly,
        attack_phases=attack_phases,
        normal_label=normal_label,
        baseline=baseline,
        size=size,
        dpi=dpi,
        title=title,
        time_axis=time_axis,
        utc=utc,
    )
    try:
        fig.savefig(path, format=ext, dpi=dpi)
    except OSError as exc:
        raise OutputError(exc.strerror or str(exc), path=path) from exc
    return path


def plot_metrics_file(
    metrics: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    normal_label: str = "benign",
    size: tuple[int, int] = (1200, 800),
    time_axis: str = "seconds",
    utc: bool = False,
) -> str:
    """``wirelearn plot METRICS -o OUT``: ``plot_history`` of a ``--metrics`` file.

    Raises:
        The errors of ``read_metrics`` and ``plot_history``.
    """
    return plot_history(
        read_metrics(metrics),
        out,
        normal_label=normal_label,
        size=size,
        time_axis=time_axis,
        utc=utc,
    )
