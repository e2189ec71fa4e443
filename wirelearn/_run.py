"""Wiring a source into the learning pipeline and into the views, for every source command.

``run_learning`` is what ``replay``, ``live``, ``serial``, ``connect``,
``listen`` and stdin share: filter, limit, ``-w``, pacing, mini-batches,
decoding, labels, test-then-train, and then the dashboard or the progress line,
``--json``, ``--metrics``, the final summary, ``--save-models`` and ``--plot``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from wirelearn._signals import Interrupted, StopSignals
from wirelearn.capture._batch import FrameBatch
from wirelearn.capture._source import Source
from wirelearn.capture._writer import Writer, open_writer
from wirelearn.errors import WirelearnError
from wirelearn.features._decode import decode
from wirelearn.features._mac import vendor_names
from wirelearn.features._pipeline import FeaturePipeline
from wirelearn.features._text import ip_to_text, mac_to_text
from wirelearn.models._evaluate import Evaluator, LabelledBatch
from wirelearn.models._labels import make_label_provider
from wirelearn.models._snapshot import Snapshot, SourceStatus
from wirelearn.outputs import (
    CsvFrameWriter,
    JsonFrameWriter,
    MetricsWriter,
    ProgressLine,
    print_summary,
)
from wirelearn.pipeline import MiniBatcher, limit, pace, tee, where

__all__ = [
    "Interrupted",
    "ReadProgress",
    "RunResult",
    "StopSignals",
    "build_evaluator",
    "frame_stream",
    "run_learning",
]


def source_status(source: Source) -> Callable[[], SourceStatus]:
    """A callable reading the source's live counters into a ``SourceStatus``."""

    def status() -> SourceStatus:
        s = source.stats
        return SourceStatus(
            name=source.name,
            frames=s.frames,
            bytes=s.bytes,
            bytes_read=s.bytes_read,
            bytes_total=s.bytes_total,
            kernel_drops=s.kernel_drops,
            queue_depth=s.queue_depth,
            queue_dropped=s.queue_dropped,
            queue_dropped_frames=s.queue_dropped_frames,
            discarded_bytes=s.discarded_bytes,
            oversize_dropped=s.oversize_dropped,
            truncated_records=s.truncated_records,
        )

    return status


class ReadProgress:
    """How far into its input the frames handed on so far are: bytes, for the progress bar.

    A file reader reads ahead of the frames it yields (whole batches, and pacing
    holds them back further), so its file position says little about the frames
    being shown. Each source batch is marked with the input bytes read before and
    after it; when a frame is handed on (after the filter, ``-c`` and pacing), the
    input position is interpolated within its batch by frame number.

    Args:
        source: the source whose ``stats.bytes_read`` is followed.
    """

    def __init__(self, source: Source) -> None:
        self.source = source
        #: (first frame, last frame, bytes before, bytes after) of batches not yet passed.
        self._marks: deque[tuple[int, int, int, int]] = deque()
        self._before = 0
        self._bytes = 0
        self._read_all = False  # the source has no more batches
        self._done = False  # ... and the stream handed on all it had

    @property
    def bytes(self) -> int:
        """Input bytes behind the frames handed on (all that was read, once the stream ended)."""
        return self.source.stats.bytes_read if self._done else self._bytes

    def mark(self, stream: Iterator[FrameBatch]) -> Iterator[FrameBatch]:
        """Pass the source's batches on, noting where each lies in the input."""
        for batch in stream:
            after = self.source.stats.bytes_read
            if len(batch):
                self._marks.append((int(batch.frame[0]), int(batch.frame[-1]), self._before, after))
            self._before = after
            yield batch
            del batch  # not held while the next batch is read
        self._read_all = True

    def passed(self, stream: Iterator[FrameBatch]) -> Iterator[FrameBatch]:
        """Pass batches on, moving the position to the last frame of each."""
        for batch in stream:
            if len(batch):
                self._at(int(batch.frame[-1]))
            yield batch
            del batch
        # Ended with the input (not stopped by -c or --duration): all of it is behind us.
        self._done = self._read_all

    def _at(self, frame: int) -> None:
        marks = self._marks
        while marks and marks[0][1] <= frame:
            self._bytes = max(self._bytes, marks.popleft()[3])
        if marks and marks[0][0] <= frame:
            first, last, before, after = marks[0]
            share = (frame - first + 1) / (last - first + 1)
            self._bytes = max(self._bytes, before + int((after - before) * share))


def _with_bytes_read(
    status: Callable[[], SourceStatus], progress: ReadProgress
) -> Callable[[], SourceStatus]:
    """``status`` with ``bytes_read`` taken from ``progress`` (frames shown, not read ahead)."""

    def adjusted() -> SourceStatus:
        return replace(status(), bytes_read=progress.bytes)

    return adjusted


def frame_stream(
    source: Source,
    *,
    bpf: str | None = None,
    count: int | None = None,
    duration: float | None = None,
    writer: Writer | None = None,
    speed: float | None = None,
    progress: ReadProgress | None = None,
) -> Iterator[FrameBatch]:
    """The source's batches after ``-f``, ``-c``/``--duration``, ``-w`` and ``--speed``.

    With ``progress``, the stream also moves it along (see ``ReadProgress``).
    """
    stream: Iterator[FrameBatch] = iter(source)
    if progress is not None:
        stream = progress.mark(stream)
    if bpf:
        from wirelearn.capture._bpf import BpfFilter

        filt = BpfFilter(bpf)
        stream = where(stream, filt.mask)
    if count is not None or duration is not None:
        stream = limit(stream, count=count, duration=duration)
    if writer is not None:
        stream = tee(stream, writer)
    if speed is not None:
        stream = pace(stream, speed)
    if progress is not None:
        stream = progress.passed(stream)
    return stream


@dataclass
class LearningSetup:
    """What ``build_evaluator`` made from the options."""

    evaluator: Evaluator
    labels: Any
    pipeline: FeaturePipeline
    models: dict[str, Any]
    anomaly: Any
    target: str


def build_evaluator(args: argparse.Namespace, source: Source | None) -> LearningSetup:
    """Make the label provider, feature pipeline, models and evaluator from CLI options."""
    from wirelearn.models._anomaly import AnomalyDetector
    from wirelearn.models._base import MajorityBaseline
    from wirelearn.models._registry import make_model, parse_model_list

    target = args.target
    if target is None:
        target = "labels" if args.labels else "rules" if args.label_rule else "service"
    labels = make_label_provider(
        target=args.target,
        rules=args.label_rule or (),
        default_label=args.default_label,
        labels_path=args.labels,
    )
    features = None
    if args.features:
        features = [f.strip() for f in args.features.split(",") if f.strip()]
    # Scaling moments and the anomaly detector's normal model come from the same grace frames.
    pipeline = FeaturePipeline(
        features=features, exclude=labels.defining_columns, seed=args.seed, scale_frames=args.grace
    )
    classes = labels.classes
    models: dict[str, Any] = {}
    anomaly: Any = None
    baseline: Any = None
    if args.load_models:
        from wirelearn.models._persist import load_models

        loaded = load_models(args.load_models, feature_names=list(pipeline.feature_names))
        for name, model in loaded.items():
            if name == "anomaly":
                anomaly = model
            elif name == "baseline":
                baseline = model
            else:
                models[name] = model
    elif target != "anomaly":
        sgd_params = {"loss": args.sgd_loss} if args.sgd_loss else {}
        for name in parse_model_list(args.models or ""):
            params = sgd_params if name == "sgd" else {}
            models[name] = make_model(name, classes=classes, seed=args.seed, **params)
    if target != "anomaly" and baseline is None:
        baseline = MajorityBaseline(classes=classes)
    if anomaly is None and (target == "anomaly" or not args.no_anomaly):
        anomaly = AnomalyDetector(grace_frames=args.grace, seed=args.seed)
    pressure = None
    if source is not None and hasattr(source, "depth") and hasattr(source, "max_batches"):

        def pressure() -> float:
            return float(source.depth()) / max(1, int(source.max_batches))  # type: ignore[attr-defined]

    evaluator = Evaluator(
        models,
        pipeline,
        baseline=baseline,
        anomaly=anomaly,
        target=target,
        learn=not args.no_learn,
        window=args.window,
        normal_label=args.normal_label,
        pressure=pressure,
        source_status=source_status(source) if source is not None else None,
        vendor_names=lambda m: vendor_names(m, short=True),
        mac_text=mac_to_text,
        ip_text=lambda v, a: ip_to_text(v, a),
    )
    return LearningSetup(evaluator, labels, pipeline, models, anomaly, target)


@dataclass
class RunResult:
    """How a run ended."""

    final: Snapshot
    error: WirelearnError | None = None
    interrupted: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if self.error is None else self.error.exit_code


def _stderr(msg: str) -> None:
    with contextlib.suppress(OSError):
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()


def run_learning(
    source: Source,
    args: argparse.Namespace,
    *,
    stdout: TextIO | None = None,
    on_open: Callable[[], None] | None = None,
) -> int:
    """Run the whole pipeline on ``source`` with the CLI options; return the exit code.

    The final summary is printed however the run ends (end of input, ``-c``,
    Ctrl-C, SIGTERM, an error in the input); output files are flushed and
    closed, and models saved when asked.
    """
    out = stdout or sys.stdout
    setup = build_evaluator(args, source)
    ev = setup.evaluator
    writer = open_writer(args.write) if getattr(args, "write", None) else None
    frame_out: JsonFrameWriter | CsvFrameWriter | None = None
    model_names = [st.name for st in ev.states]
    if getattr(args, "json", False):
        frame_out = JsonFrameWriter(out, model_names)
    elif getattr(args, "csv", False):
        frame_out = CsvFrameWriter(out, model_names)
    metrics = MetricsWriter(args.metrics) if args.metrics else None

    from wirelearn.ui import Dashboard, should_use_dashboard

    use_ui = should_use_dashboard(
        stdout_isatty=out.isatty(),
        no_ui=args.no_ui,
        json_to_stdout=frame_out is not None,
        env=os.environ,
    )
    if not use_ui:
        # Only the dashboard shows vendors, and the first lookup imports scapy's database.
        ev.vendor_names = None
    progress = None if use_ui else ProgressLine(sys.stderr, every=args.progress_every)
    speed = None if getattr(args, "topspeed", False) else getattr(args, "speed", None)
    read_progress = None
    status = ev.source_status
    if source.stats.bytes_total is not None and status is not None:
        read_progress = ReadProgress(source)
        ev.source_status = _with_bytes_read(status, read_progress)
    stream = frame_stream(
        source,
        bpf=args.filter,
        count=args.count,
        duration=args.duration,
        writer=writer,
        speed=speed,
        progress=read_progress,
    )
    interval = args.batch_interval
    if interval is None and (speed is not None or not source.at_top_speed):
        # Live and paced sources close mini-batches on capture time too, so views keep moving.
        interval = 1.0
    labeler = setup.labels

    def labelled(frames: Iterator[FrameBatch]) -> Iterator[LabelledBatch]:
        # Each read batch is decoded and labelled as it comes, so a mini-batch holds
        # columns, never frame bytes (about three times as big) nor a joined copy of them.
        for fbatch in frames:
            fb = decode(fbatch)
            part = LabelledBatch(features=fb, labels=labeler.labels(fb, fbatch))
            del fbatch
            yield part
            del part

    mini = MiniBatcher(labelled(stream), args.batch_size, interval, join=LabelledBatch.concat)

    def show(snap: Snapshot) -> None:
        if snap.batch is not None and frame_out is not None:
            frame_out.write(snap.batch.features, snap.batch)
        if metrics is not None:
            metrics.write(snap)
        if dash is not None:
            dash.update(snap)
        elif progress is not None:
            progress.update(snap)

    result = RunResult(final=ev.snapshot(final=True))
    dash = Dashboard(source=source.name) if use_ui else None
    signals = StopSignals()
    t0 = time.monotonic()
    with signals, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        in_step = False
        try:
            if on_open is not None:
                on_open()
            with dash if dash is not None else contextlib.nullcontext():
                for part in mini:
                    in_step = True
                    snap = ev.step(part)
                    in_step = False
                    show(snap)
                    # Neither the last batch nor its snapshot is held while the next is read.
                    del snap, part
        except (KeyboardInterrupt, Interrupted):
            result.interrupted = True
            # Frames read before the stop still count, unless the stop came mid-step.
            pending = mini.flush()
            if pending is not None and not in_step:
                with contextlib.suppress(Exception, KeyboardInterrupt, Interrupted):
                    show(ev.step(pending))
        except WirelearnError as exc:
            result.error = exc
        finally:
            signals.shutting_down()
            with contextlib.suppress(Exception):
                source.close()
            result.final = ev.snapshot(final=True)
            closing_errors: list[WirelearnError] = []
            for closer in (
                (lambda: writer.close()) if writer is not None else None,
                (lambda: metrics.write(result.final)) if metrics is not None else None,
                (lambda: metrics.close()) if metrics is not None else None,
            ):
                if closer is None:
                    continue
                try:
                    closer()
                except WirelearnError as exc:
                    closing_errors.append(exc)
            if result.error is None and closing_errors:
                result.error = closing_errors[0]
        for w in caught:
            result.warnings.append(str(w.message))
    for msg in source.stats.warnings:
        result.warnings.append(msg)
    elapsed = time.monotonic() - t0
    try:
        # The summary goes to stdout unless stdout carries per-frame records.
        summary_to = sys.stderr if frame_out is not None else out
        print_summary(result.final, summary_to)
        if progress is not None and not use_ui:
            _stderr(ProgressLine.line(result.final, elapsed))
        post_errors = _after_run(args, setup, result)
    finally:
        signals.restore()
    for msg in dict.fromkeys(result.warnings):
        _stderr(f"wirelearn: warning: {msg}")
    if result.interrupted:
        _stderr("wirelearn: stopped")
    error = result.error or (post_errors[0] if post_errors else None)
    if error is not None:
        _stderr(f"wirelearn: error: {error}")
        return error.exit_code
    return 0


def _after_run(
    args: argparse.Namespace, setup: LearningSetup, result: RunResult
) -> list[WirelearnError]:
    errors: list[WirelearnError] = []
    if args.save_models:
        try:
            from wirelearn.models._persist import save_models

            models: dict[str, Any] = dict(setup.models)
            if setup.anomaly is not None:
                models["anomaly"] = setup.anomaly
            save_models(args.save_models, models, feature_names=list(setup.pipeline.feature_names))
            _stderr(f"wirelearn: saved {len(models)} models to {args.save_models}")
        except WirelearnError as exc:
            errors.append(exc)
    if args.plot:
        try:
            from wirelearn.plot import plot_history

            plot_history(list(result.final.history), args.plot, normal_label=args.normal_label)
            _stderr(f"wirelearn: wrote {args.plot}")
        except WirelearnError as exc:
            errors.append(exc)
    return errors
