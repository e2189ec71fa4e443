"""Outputs that consume decoded batches or snapshots: frame lines, JSON, CSV, metrics, summary.

Per-frame text is only built here, where a person or another tool reads it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import IO, Any, TextIO

import numpy as np
from numpy.typing import NDArray
from rich.console import Console
from rich.table import Table

from wirelearn.errors import ConfigError, OutputError
from wirelearn.features._names import ethertype_name, ip_proto_name
from wirelearn.features._schema import FeatureBatch
from wirelearn.models._snapshot import BatchResult, Snapshot

__all__ = [
    "CsvFrameWriter",
    "FrameLinePrinter",
    "JsonFrameWriter",
    "MetricsWriter",
    "ProgressLine",
    "open_text_output",
    "render_summary",
]

_TCP_FLAGS = "FSRPAUECN"  # FIN SYN RST PSH ACK URG ECE CWR NS (AE), bit 0 first


def open_text_output(path: str) -> TextIO:
    """Open ``path`` for writing text (``-`` is stdout), mapping errors to ``OutputError``."""
    if path == "-":
        return sys.stdout
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        return os.fdopen(fd, "w", encoding="utf-8", newline="")
    except OSError as exc:
        raise OutputError(exc.strerror or str(exc), path=path) from exc


def _extra_columns(result: BatchResult | None, models: list[str]) -> dict[str, NDArray[Any]]:
    if result is None:
        return {}
    extra: dict[str, NDArray[Any]] = {"label": result.labels}
    for name in models:
        extra[f"pred_{name}"] = result.predictions.get(
            name, np.full(len(result.labels), None, dtype=object)
        )
    if result.scores is not None:
        scores = result.scores.astype(object)
        scores[np.isnan(result.scores)] = None
        extra["anomaly_score"] = scores
    return extra


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


class _Sink:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(
                exc.strerror or str(exc), path=getattr(self.stream, "name", "<output>")
            ) from exc


class JsonFrameWriter(_Sink):
    """One JSON object per frame with exactly the feature columns (plus learning results).

    Args:
        stream: where to write (JSON Lines).
        models: the model names whose predictions are added as ``pred_<name>``.
    """

    def __init__(self, stream: IO[str], models: list[str] | None = None) -> None:
        super().__init__(stream)
        self.models = list(models or [])

    def write(self, fb: FeatureBatch, result: BatchResult | None = None) -> None:
        """Write every frame of ``fb``."""
        if not len(fb):
            return
        cols = fb.text_columns()
        cols.update(_extra_columns(result, self.models))
        names = list(cols)
        lists = [cols[k].tolist() for k in names]
        dumps = json.dumps
        lines = [
            dumps(dict(zip(names, map(_plain, row), strict=True)))
            for row in zip(*lists, strict=True)
        ]
        self._write("\n".join(lines) + "\n")


class CsvFrameWriter(_Sink):
    """CSV with a header of the feature columns (plus learning results); nulls are empty."""

    def __init__(self, stream: IO[str], models: list[str] | None = None) -> None:
        super().__init__(stream)
        self.models = list(models or [])
        self._writer = csv.writer(stream, lineterminator="\n")
        self._header = False

    def write(self, fb: FeatureBatch, result: BatchResult | None = None) -> None:
        """Write every frame of ``fb``."""
        cols = fb.text_columns()
        cols.update(_extra_columns(result, self.models))
        if not self._header:
            self._writer.writerow(list(cols))
            self._header = True
        if not len(fb):
            return
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        lists = [cols[k].tolist() for k in cols]
        w.writerows(
            [["" if v is None else _plain(v) for v in row] for row in zip(*lists, strict=True)]
        )
        self._write(buf.getvalue())


def _flags_text(flags: int) -> str:
    return "".join(c for i, c in enumerate(_TCP_FLAGS) if flags >> i & 1) or "."


class FrameLinePrinter(_Sink):
    """A tcpdump-like line per frame: number, time, addresses, protocol, length.

    Args:
        stream: where to write.
        utc: print times in UTC rather than local time.
    """

    def __init__(self, stream: IO[str], *, utc: bool = False) -> None:
        super().__init__(stream)
        self.tz = timezone.utc if utc else None

    def write(self, fb: FeatureBatch, result: BatchResult | None = None) -> None:
        """Write every frame of ``fb`` as one line."""
        if not len(fb):
            return
        cols = fb.text_columns()
        lines = []
        for i in range(len(fb)):
            ts = datetime.fromtimestamp(float(cols["ts"][i]), tz=self.tz).strftime("%H:%M:%S.%f")
            parts = [f"{int(fb.frame[i]):>6}", ts]
            ipv = int(fb.ip_version[i])
            sport, dport = int(fb.sport[i]), int(fb.dport[i])
            if ipv in (4, 6) and cols["ip_src"][i] is not None:
                src = cols["ip_src"][i] + (f".{sport}" if sport >= 0 else "")
                dst = (cols["ip_dst"][i] or "?") + (f".{dport}" if dport >= 0 else "")
                proto = ip_proto_name(int(fb.ip_proto[i])) or f"IPv{ipv}"
                parts.append(f"IP{'6' if ipv == 6 else ''} {src} > {dst}: {proto}")
                if int(fb.tcp_flags[i]) >= 0:
                    parts.append(f"[{_flags_text(int(fb.tcp_flags[i]))}]")
            else:
                smac, dmac = cols["src_mac"][i], cols["dst_mac"][i]
                if smac is not None or dmac is not None:
                    parts.append(f"{smac or '?'} > {dmac or '?'}")
                et = int(fb.ethertype[i])
                if et >= 0:
                    parts.append(ethertype_name(et) or "")
            if int(fb.vlan[i]) >= 0:
                parts.append(f"vlan {int(fb.vlan[i])}")
            parts.append(f"length {int(fb.frame_len[i])}")
            if result is not None and result.labels[i] is not None:
                parts.append(f"label={result.labels[i]}")
            lines.append(" ".join(parts))
        self._write("\n".join(lines) + "\n")


class MetricsWriter:
    """Writes the snapshot history as JSON Lines (``.jsonl``/``.json``) or CSV (``.csv``).

    JSONL holds one snapshot per line (``Snapshot.to_dict()``); CSV holds one
    row per snapshot and model.

    Args:
        path: the file to write.
        every: write every n-th snapshot (the final one is always written).
    """

    CSV_FIELDS = (
        "seq",
        "ts",
        "frames",
        "labelled",
        "model",
        "accuracy",
        "macro_f1",
        "kappa",
        "rolling_accuracy",
        "rolling_macro_f1",
        "rolling_kappa",
        "scored",
        "learned",
        "predict_us",
        "learn_us",
        "anomaly_threshold",
        "anomaly_alerts",
        "anomaly_auc",
    )

    def __init__(self, path: str, *, every: int = 1) -> None:
        lower = path.lower()
        if lower.endswith(".csv"):
            self.fmt = "csv"
        elif lower.endswith((".jsonl", ".json", ".ndjson")):
            self.fmt = "jsonl"
        else:
            raise ConfigError(f"--metrics {path}: use a .jsonl or .csv file name")
        self.path = path
        self.every = max(1, every)
        self._file = open_text_output(path)
        self._csv = csv.writer(self._file, lineterminator="\n") if self.fmt == "csv" else None
        if self._csv is not None:
            self._csv.writerow(self.CSV_FIELDS)
        self._count = 0

    def write(self, snap: Snapshot) -> None:
        """Record one snapshot (subject to ``every``)."""
        self._count += 1
        if not snap.final and self._count % self.every:
            return
        try:
            if self._csv is None:
                # The final line carries the whole history, so `wirelearn plot` can redraw it.
                self._file.write(json.dumps(snap.to_dict(history=snap.final)) + "\n")
            else:
                a = snap.anomaly
                for m in snap.models:
                    self._csv.writerow(
                        [
                            snap.seq,
                            f"{snap.ts_last:.6f}",
                            snap.frames,
                            snap.labelled,
                            m.name,
                            *(_plain(getattr(m, k)) for k in self.CSV_FIELDS[5:15]),
                            "" if a is None or a.threshold is None else a.threshold,
                            "" if a is None else a.alerts,
                            "" if a is None or a.auc is None else a.auc,
                        ]
                    )
            self._file.flush()
        except OSError as exc:
            raise OutputError(exc.strerror or str(exc), path=self.path) from exc

    def close(self) -> None:
        """Flush and close."""
        try:
            self._file.close()
        except OSError as exc:
            raise OutputError(exc.strerror or str(exc), path=self.path) from exc


def _pct(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:5.1f}%"


def _num(x: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if x is None or math.isnan(x) else fmt.format(x)


def render_summary(snap: Snapshot) -> Table:
    """The final summary: one row per model and the baseline, with the run's totals as caption."""
    title = f"wirelearn summary: {snap.frames:,} frames, {snap.labelled:,} labelled, target {snap.target}"
    table = Table(title=title, title_justify="left", expand=False)
    for col, just in (
        ("model", "left"),
        ("accuracy", "right"),
        ("macro-F1", "right"),
        ("kappa", "right"),
        ("rolling acc", "right"),
        ("scored", "right"),
        ("learned", "right"),
        ("µs/frame", "right"),
    ):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for m in snap.models:
        cost = (0 if math.isnan(m.predict_us) else m.predict_us) + (
            0 if math.isnan(m.learn_us) else m.learn_us
        )
        name = f"{m.name}{' *' if m.name == snap.best else ''}"
        table.add_row(
            name,
            _pct(m.accuracy),
            _num(m.macro_f1),
            _num(m.kappa),
            _pct(m.rolling_accuracy),
            f"{m.scored:,}",
            f"{m.learned:,}",
            _num(cost, "{:.2f}") if m.scored or m.learned else "-",
            style="dim" if m.is_baseline else None,
        )
    notes = []
    if snap.best:
        notes.append(f"* best model: {snap.best}")
    if snap.sampling_ratio < 0.999:
        notes.append(f"learner sampled {100 * snap.sampling_ratio:.1f}% of frames (it fell behind)")
    src = snap.source
    losses = []
    if src.kernel_drops:
        losses.append(f"{src.kernel_drops:,} kernel drops")
    if src.queue_dropped:
        losses.append(
            f"{src.queue_dropped_frames:,} frames ({src.queue_dropped:,} batches) dropped by a full queue"
        )
    for what, n in (
        ("truncated", src.truncated),
        ("malformed", src.malformed),
        ("undecoded", src.undecoded),
    ):
        if n:
            losses.append(f"{n:,} {what}")
    if src.discarded_bytes:
        losses.append(f"{src.discarded_bytes:,} garbage bytes skipped")
    if losses:
        notes.append("; ".join(losses))
    a = snap.anomaly
    if a is not None:
        thr = "learning (grace period)" if a.threshold is None else f"threshold {a.threshold:.4g}"
        extra = ""
        if a.auc is not None:
            extra = f", ROC AUC {a.auc:.3f}"
        if a.precision is not None or a.recall is not None:
            extra += (
                f", alert precision {_pct(a.precision).strip()} recall {_pct(a.recall).strip()}"
            )
        notes.append(f"anomaly: {a.alerts:,} alerts of {a.scored:,} scored, {thr}{extra}")
    if notes:
        table.caption = "\n".join(notes)
        table.caption_justify = "left"
    return table


class ProgressLine:
    """One plain progress line on stderr every few seconds (no terminal, ``--no-ui``).

    Args:
        stream: where to write (stderr).
        every: seconds of wall clock between lines.
        clock: the wall clock (injected in tests).
    """

    def __init__(
        self, stream: TextIO, *, every: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stream = stream
        self.every = every
        self.clock = clock
        self._start = clock()
        self._last = self._start

    def update(self, snap: Snapshot) -> None:
        """Print a line if ``every`` seconds passed since the last one."""
        now = self.clock()
        if now - self._last < self.every:
            return
        self._last = now
        self.stream.write(self.line(snap, now - self._start) + "\n")
        self.stream.flush()

    @staticmethod
    def line(snap: Snapshot, elapsed: float) -> str:
        """The progress line for a snapshot after ``elapsed`` wall-clock seconds."""
        parts = [f"[{elapsed:7.1f}s] {snap.frames:,} frames"]
        if elapsed > 0:
            parts.append(f"{snap.frames / elapsed:,.0f} frames/s processed")
        src = snap.source
        if src.bytes_total:
            parts.append(f"{100 * src.bytes_read / src.bytes_total:.0f}% read")
        if snap.best:
            m = snap.model(snap.best)
            if m is not None:
                parts.append(f"best {m.name} acc {_pct(m.rolling_accuracy).strip()}")
        if snap.anomaly is not None:
            parts.append(f"{snap.anomaly.alerts:,} alerts")
        if src.kernel_drops:
            parts.append(f"{src.kernel_drops:,} drops")
        if snap.sampling_ratio < 0.999:
            parts.append(f"sampling {100 * snap.sampling_ratio:.0f}%")
        return " | ".join(parts)


def print_summary(
    snap: Snapshot, stream: TextIO | None = None, *, width: int | None = None
) -> None:
    """Print the final summary table (plain text when ``stream`` is not a terminal)."""
    out = stream or sys.stdout
    if width is None and not out.isatty():
        width = 110  # not a terminal: wide enough that no column is cut
    console = Console(file=out, width=width, highlight=False)
    console.print(render_summary(snap))
