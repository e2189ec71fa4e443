"""The snapshot schema: everything a view may know about a run, at one moment.

The evaluator yields ``Snapshot`` objects; the dashboard, the progress line,
``--metrics`` and the plot consume them and never reach into capture. A
snapshot is immutable; ``to_dict()`` gives its JSON form (one line of
``--metrics`` JSONL), without the per-frame arrays of the last mini-batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from wirelearn.features._schema import FeatureBatch

__all__ = [
    "SNAPSHOT_VERSION",
    "AnomalyStatus",
    "BatchResult",
    "HistoryPoint",
    "ModelScore",
    "RecentFrame",
    "Snapshot",
    "SourceStatus",
    "TrafficMix",
]

SNAPSHOT_VERSION = 1


def _clean(value: Any) -> Any:
    """JSON-safe: nan/inf become None, tuples become lists."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value


@dataclass(frozen=True)
class ModelScore:
    """Prequential scores of one model (or the majority baseline).

    Cumulative metrics cover every labelled frame so far; ``rolling_*`` cover
    the last window of labelled frames. Undefined values are ``nan``.
    """

    name: str
    accuracy: float
    macro_f1: float
    kappa: float
    rolling_accuracy: float
    rolling_macro_f1: float
    rolling_kappa: float
    recall: dict[str, float]
    rolling_recall: dict[str, float]
    scored: int
    learned: int
    predict_us: float
    learn_us: float
    is_baseline: bool = False
    spark: tuple[float, ...] = ()


@dataclass(frozen=True)
class AnomalyStatus:
    """State of the unsupervised anomaly detector."""

    in_grace: bool
    threshold: float | None
    scored: int
    alerts: int
    last_score_mean: float
    last_score_max: float
    auc: float | None = None
    precision: float | None = None
    recall: float | None = None
    latest_alerts: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class RecentFrame:
    """One row of the recent-frames table: the only per-frame object, for people to read."""

    frame: int
    ts: float
    src_mac: str | None
    dst_mac: str | None
    src_vendor: str | None
    dst_vendor: str | None
    src_code: int | None
    dst_code: int | None
    ethertype: str | None
    length: int
    ip_src: str | None
    ip_dst: str | None
    proto: str | None
    sport: int | None
    dport: int | None
    label: str | None
    prediction: str | None
    score: float | None
    alert: bool


@dataclass(frozen=True)
class TrafficMix:
    """Top talkers and protocol mix so far (bounded tables)."""

    top_macs: tuple[tuple[str, str | None, int, int], ...] = ()  # (mac, vendor, frames, bytes)
    top_ips: tuple[tuple[str, int, int], ...] = ()  # (ip, frames, bytes)
    ethertypes: tuple[tuple[str, int], ...] = ()  # (name, frames)
    ip_protos: tuple[tuple[str, int], ...] = ()  # (name, frames)


@dataclass(frozen=True)
class SourceStatus:
    """What the source reports: counts, progress and losses."""

    name: str
    linktypes: tuple[str, ...] = ()
    frames: int = 0
    bytes: int = 0
    bytes_read: int = 0
    bytes_total: int | None = None
    kernel_drops: int = 0
    queue_depth: int = 0
    queue_dropped: int = 0
    queue_dropped_frames: int = 0
    discarded_bytes: int = 0
    oversize_dropped: int = 0
    truncated_records: int = 0
    truncated: int = 0
    malformed: int = 0
    undecoded: int = 0


@dataclass(frozen=True)
class HistoryPoint:
    """One point of the accuracy-over-capture-time history."""

    ts: float
    frames: int
    rolling_accuracy: dict[str, float]
    accuracy: dict[str, float]
    anomaly_mean: float | None = None
    anomaly_max: float | None = None
    threshold: float | None = None
    labels: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class BatchResult:
    """The per-frame outcome of the last mini-batch, for per-frame outputs (``--json``, ``-w``).

    Not part of the JSON form of a snapshot.
    """

    features: FeatureBatch
    labels: NDArray[np.object_]
    predictions: Mapping[str, NDArray[np.object_]]
    scores: NDArray[np.float64] | None
    alerts: NDArray[np.bool_] | None


@dataclass(frozen=True)
class Snapshot:
    """The state of a run after one mini-batch.

    Attributes:
        seq: 1-based mini-batch number.
        ts_first: capture time of the first frame (epoch seconds).
        ts_last: capture time of the last frame.
        frames: frames seen so far (decoded and evaluated or sampled out).
        bytes: captured bytes seen so far.
        labelled: frames with a label so far.
        evaluated: frames predicted so far (less than ``frames`` when sampling).
        target: what is predicted (``service``, ``rules``, ``labels``, ``anomaly``).
        classes: the class labels seen so far.
        models: scores per model, the baseline last.
        best: the name of the best model on rolling macro-F1, or None.
        anomaly: anomaly-detector status, if one runs.
        recent: the latest frames, newest last.
        traffic: talkers and protocol mix.
        source: the source's counters.
        rate_fps: frames per second of capture time over the last window.
        rate_mbps: Mbit/s of capture time over the last window.
        sampling_ratio: fraction of frames the learner evaluated (1.0 unless behind).
        history: accuracy over capture time (bounded, oldest first).
        batch: the last mini-batch's per-frame results (not serialised).
        final: True for the last snapshot of a run.
    """

    seq: int
    ts_first: float
    ts_last: float
    frames: int
    bytes: int
    labelled: int
    evaluated: int
    target: str
    classes: tuple[str, ...]
    models: tuple[ModelScore, ...]
    best: str | None
    anomaly: AnomalyStatus | None
    recent: tuple[RecentFrame, ...]
    traffic: TrafficMix
    source: SourceStatus
    rate_fps: float
    rate_mbps: float
    sampling_ratio: float
    history: tuple[HistoryPoint, ...]
    batch: BatchResult | None = field(default=None, compare=False, repr=False)
    final: bool = False

    @property
    def duration(self) -> float:
        """Capture-time seconds between the first and the last frame."""
        return max(0.0, self.ts_last - self.ts_first)

    def model(self, name: str) -> ModelScore | None:
        """The scores of the model called ``name``, if it runs."""
        for m in self.models:
            if m.name == name:
                return m
        return None

    def to_dict(self, *, history: bool = False, recent: bool = False) -> dict[str, Any]:
        """The JSON-ready form; ``history`` and ``recent`` are left out unless asked for."""
        d: dict[str, Any] = {"version": SNAPSHOT_VERSION}
        for key in (
            "seq",
            "ts_first",
            "ts_last",
            "frames",
            "bytes",
            "labelled",
            "evaluated",
            "target",
            "classes",
            "best",
            "rate_fps",
            "rate_mbps",
            "sampling_ratio",
            "final",
        ):
            d[key] = getattr(self, key)
        d["models"] = [asdict(m) for m in self.models]
        d["anomaly"] = None if self.anomaly is None else asdict(self.anomaly)
        d["traffic"] = asdict(self.traffic)
        d["source"] = asdict(self.source)
        if history:
            d["history"] = [asdict(h) for h in self.history]
        if recent:
            d["recent"] = [asdict(r) for r in self.recent]
        return dict(_clean(d))
