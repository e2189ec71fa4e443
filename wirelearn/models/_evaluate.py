"""Prequential (test-then-train) evaluation over mini-batches, as a generator of snapshots.

For every mini-batch: build the model inputs, **predict with every model**,
score the predictions against the labels, and only then let the models learn
from the labelled frames. A frame's prediction therefore always comes from a
model that has not trained on it. Modelled on river's
``evaluate/progressive_validation.py``: the loop is a generator; printers and
dashboards sit on top of it.

At the start of a stream a mini-batch is evaluated in *learning steps*,
predict-then-learn step by step: with mini-batches of thousands of frames the
models would otherwise predict the whole first one before learning anything,
and a class that first appears mid-batch would be predicted wrong up to the
end of that batch. A step is ``first_step`` frames or ``step_share`` of all
the frames evaluated before it, whichever is more, so a model is never
further behind the stream than that share (an eighth by default), while
steps grow geometrically. Once ``warm_frames`` frames have been evaluated
(65,536 by default: a new class by then costs a few thousand wrong
predictions either way) the share becomes ``warm_share`` (a half), so that
steps reach a whole mini-batch sooner: every step costs each learner a fixed
overhead besides its per-frame work. With mini-batches of 65,536 frames that
is about fifty steps in the first mini-batch, two in the second, and one per
mini-batch from then on.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from wirelearn.capture._batch import FrameBatch, linktype_name
from wirelearn.errors import ConfigError
from wirelearn.features._names import ethertype_name, ip_proto_name
from wirelearn.features._schema import (
    STATUS_MALFORMED,
    STATUS_TRUNCATED,
    STATUS_UNDECODED,
    FeatureBatch,
)
from wirelearn.features._traffic import TrafficCounter
from wirelearn.models._base import LabelCodes
from wirelearn.models._metrics import ClassIndex, ConfusionMatrix, RollingConfusion
from wirelearn.models._snapshot import (
    AnomalyStatus,
    BatchResult,
    HistoryPoint,
    ModelScore,
    RecentFrame,
    Snapshot,
    SourceStatus,
    TrafficMix,
)

__all__ = ["Evaluator", "LabelledBatch", "prequential"]


class Classifier(Protocol):
    """What the evaluator needs of a classifier (see ``OnlineClassifier``).

    A classifier may also have ``predict_codes_many(X) -> (codes, labels)``
    (``OnlineClassifier`` does), which the evaluator then prefers: it saves
    turning every prediction into a Python label and back.
    """

    def learn_many(self, X: NDArray[Any], y: NDArray[np.object_]) -> None: ...

    def predict_many(self, X: NDArray[Any]) -> NDArray[np.object_]: ...


class Detector(Protocol):
    """What the evaluator needs of an anomaly detector (see ``AnomalyDetector``)."""

    threshold_: float | None

    def learn_many(self, X: NDArray[Any]) -> None: ...

    def score_many(self, X: NDArray[Any]) -> NDArray[np.float64]: ...


class Featurizer(Protocol):
    """What the evaluator needs of the feature pipeline."""

    def transform(self, fb: FeatureBatch) -> NDArray[np.float32]: ...

    def mac_codes(self, fb: FeatureBatch) -> tuple[NDArray[np.int64], NDArray[np.int64]]: ...


@dataclass(frozen=True, eq=False)
class LabelledBatch:
    """A mini-batch ready for evaluation: decoded columns and labels (None = unlabelled).

    ``frames``, the raw frames, is optional: the evaluator never reads them, and
    ``wirelearn replay`` drops them once a read batch is decoded and labelled, so a
    mini-batch holds no frame bytes.
    """

    features: FeatureBatch
    labels: NDArray[np.object_]
    frames: FrameBatch | None = None

    def __len__(self) -> int:
        return len(self.features)

    @property
    def ts_ns(self) -> NDArray[np.int64]:
        """Capture times, so that a ``MiniBatcher`` can cut labelled batches."""
        return self.features.ts_ns

    def slice(self, start: int, stop: int) -> LabelledBatch:
        """Frames ``start:stop`` (views)."""
        frames = None if self.frames is None else self.frames.slice(start, stop)
        return LabelledBatch(
            self.features.slice(start, stop), self.labels[start:stop], frames=frames
        )

    @classmethod
    def concat(cls, parts: list[LabelledBatch]) -> LabelledBatch:
        """Join batches row-wise (raw frames only if every part has them)."""
        frames = [p.frames for p in parts]
        return cls(
            FeatureBatch.concat([p.features for p in parts]),
            np.concatenate([p.labels for p in parts]),
            frames=None
            if None in frames
            else FrameBatch.concat(f for f in frames if f is not None),
        )


#: Bins of the anomaly-score histograms the ROC AUC is computed from.
_AUC_BINS = 1 << 18


def _auc_bins(scores: NDArray[np.float64]) -> NDArray[np.intp]:
    """Histogram bins of scores of any sign and scale, in score order.

    ``s / (1 + |s|)`` maps the real line onto ``(-1, 1)`` keeping the order;
    the bins are equal slices of that interval (about 2e-5 wide around 0.5,
    where the isolation forest's scores lie).
    """
    u = scores / (1.0 + np.abs(scores))
    b = ((u + 1.0) * (_AUC_BINS / 2)).astype(np.intp)
    out: NDArray[np.intp] = np.clip(b, 0, _AUC_BINS - 1)
    return out


def _hist_auc(pos: NDArray[np.int64], neg: NDArray[np.int64]) -> float:
    """ROC AUC from per-bin counts (Mann-Whitney; pairs in the same bin count half)."""
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    if not n_pos or not n_neg:
        return math.nan
    below = np.cumsum(neg) - neg
    wins = float(np.dot(pos, below)) + 0.5 * float(np.dot(pos, neg))
    return wins / (n_pos * n_neg)


class _Predictions(Mapping[str, NDArray[np.object_]]):
    """Each model's predicted labels for a mini-batch, turned into labels when first read.

    Args:
        codes: per model, a class index per evaluated frame.
        names: the label of each class index (None for "no prediction").
        idx: the frames evaluated, or None for all of them.
        n: frames in the mini-batch (the ones not evaluated get None).
    """

    def __init__(
        self,
        codes: dict[str, NDArray[np.int64]],
        names: NDArray[np.object_],
        idx: NDArray[np.int64] | None,
        n: int,
    ) -> None:
        self._codes = codes
        self._names = names
        self._idx = idx
        self._n = n
        self._labels: dict[str, NDArray[np.object_]] = {}

    def __getitem__(self, name: str) -> NDArray[np.object_]:
        out = self._labels.get(name)
        if out is None:
            pred: NDArray[np.object_] = self._names[self._codes[name]]
            if self._idx is not None:
                full = np.full(self._n, None, dtype=object)
                full[self._idx] = pred
                pred = full
            out = self._labels[name] = pred
        return out

    def at(self, name: str, rows: NDArray[np.int64]) -> NDArray[np.object_]:
        """``self[name][rows]``, without building the labels of the other rows."""
        done = self._labels.get(name)
        if done is not None:
            return done[rows]
        codes = self._codes[name]
        if self._idx is None:
            out: NDArray[np.object_] = self._names[codes[rows]]
            return out
        # Rows sampled out of the evaluation have no prediction.
        pos = np.minimum(np.searchsorted(self._idx, rows), max(len(self._idx) - 1, 0))
        out = np.full(len(rows), None, dtype=object)
        if len(self._idx):
            hit = self._idx[pos] == rows
            out[hit] = self._names[codes[pos[hit]]]
        return out

    def __iter__(self) -> Iterator[str]:
        return iter(self._codes)

    def __len__(self) -> int:
        return len(self._codes)


class _ModelState:
    def __init__(self, name: str, model: Classifier, window: int, is_baseline: bool) -> None:
        self.name = name
        self.model = model
        self.is_baseline = is_baseline
        self.cum = ConfusionMatrix()
        self.roll = RollingConfusion(window)
        self.learned = 0
        self.predicted = 0
        self.predict_s = 0.0
        self.learn_s = 0.0
        self.spark: deque[float] = deque(maxlen=40)


def _recall_dict(values: NDArray[np.float64], labels: tuple[str, ...]) -> dict[str, float]:
    return {labels[i]: float(values[i]) for i in range(min(len(values), len(labels)))}


class Evaluator:
    """The test-then-train loop's state: models, metrics, anomaly detector, traffic and history.

    Args:
        models: the classifiers to evaluate, by name.
        featurizer: turns a ``FeatureBatch`` into the model inputs.
        baseline: the majority-class baseline, shown as its own row.
        anomaly: an unsupervised detector, or None.
        target: the name of what is predicted, for display.
        learn: False to only score (``--no-learn``).
        window: frames in the rolling metrics window.
        normal_label: the label that means "not an attack", for anomaly precision/recall.
        recent: rows kept for the recent-frames table.
        history_max: history points kept (older ones are thinned, never unbounded).
        pressure: returns how full the capture queue is (0..1); above one half the
            learner evaluates an explicit sample of each mini-batch and says so.
        source_status: returns the source's counters for the snapshot.
        vendor_names: maps MACs to vendor names for the recent-frames table.
        mac_text, ip_text: text conversion helpers.
        clock: the timer used to measure per-frame cost.
        first_step: frames in the first learning step (see the module docstring).
        step_share: a learning step's size as a share of the frames evaluated before it.
        warm_frames: frames evaluated after which steps grow by ``warm_share`` instead.
        warm_share: ``step_share`` once ``warm_frames`` frames have been evaluated.
    """

    def __init__(
        self,
        models: Mapping[str, Classifier],
        featurizer: Featurizer,
        *,
        baseline: Classifier | None = None,
        anomaly: Detector | None = None,
        target: str = "labels",
        learn: bool = True,
        window: int = 10_000,
        normal_label: str = "benign",
        recent: int = 30,
        history_max: int = 2_000,
        pressure: Callable[[], float] | None = None,
        source_status: Callable[[], SourceStatus] | None = None,
        vendor_names: Callable[[NDArray[np.int64]], NDArray[np.object_]] | None = None,
        mac_text: Callable[[NDArray[np.int64]], NDArray[np.object_]] | None = None,
        ip_text: Callable[[NDArray[np.int8], NDArray[np.uint8]], NDArray[np.object_]] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        first_step: int = 64,
        step_share: float = 0.125,
        warm_frames: int = 65_536,
        warm_share: float = 0.5,
    ) -> None:
        if window < 1:
            raise ConfigError(f"--window must be at least 1 frame, not {window}")
        if first_step < 1:
            raise ConfigError(f"first_step must be at least 1 frame, not {first_step}")
        if not 0.0 < step_share <= 1.0:
            raise ConfigError(f"step_share must be in (0, 1], not {step_share}")
        if not 0.0 < warm_share <= 1.0:
            raise ConfigError(f"warm_share must be in (0, 1], not {warm_share}")
        if warm_frames < 0:
            raise ConfigError(f"warm_frames must be at least 0, not {warm_frames}")
        self.first_step = int(first_step)
        self.step_share = float(step_share)
        self.warm_frames = int(warm_frames)
        self.warm_share = float(warm_share)
        self.states = [_ModelState(n, m, window, False) for n, m in models.items()]
        if baseline is not None:
            self.states.append(_ModelState("baseline", baseline, window, True))
        self.featurizer = featurizer
        self.anomaly = anomaly
        self.target = target
        self.learn = learn
        self.normal_label = normal_label
        self.recent_n = recent
        self.history_max = history_max
        self.pressure = pressure
        self.source_status = source_status
        self.vendor_names = vendor_names
        self.mac_text = mac_text
        self.ip_text = ip_text
        self.clock = clock
        self.classes = ClassIndex()
        self.traffic = TrafficCounter()
        self.history: list[HistoryPoint] = []
        self._history_stride = 1
        self._since_point = 0
        self.seq = 0
        self.frames = 0
        self.bytes = 0
        self.labelled = 0
        self.evaluated = 0
        self.status_counts = np.zeros(4, dtype=np.int64)
        self.ts_first: float | None = None
        self.ts_last = 0.0
        self.linktypes: set[int] = set()
        self._rate: deque[tuple[float, int, int]] = deque()
        self.recent: deque[RecentFrame] = deque(maxlen=recent)
        self.label_counts: dict[str, int] = {}
        # anomaly bookkeeping
        self.anomaly_scored = 0
        self.anomaly_alerts = 0
        self.latest_alerts: deque[dict[str, Any]] = deque(maxlen=20)
        # Score histograms of attack (positive) and normal frames: the ROC AUC over the
        # whole stream in bounded memory, updated in O(batch).
        self._auc_pos = np.zeros(_AUC_BINS, dtype=np.int64)
        self._auc_neg = np.zeros(_AUC_BINS, dtype=np.int64)
        self._auc: float | None = None
        self._auc_stale = False
        self._alert_tp = self._alert_fp = self._alert_fn = 0
        self._last_scores: NDArray[np.float64] | None = None

    # --- one mini-batch -------------------------------------------------------------------------

    def _sample(self, n: int) -> NDArray[np.int64]:
        p = 0.0 if self.pressure is None else float(self.pressure())
        if p <= 0.5 or n == 0:
            return np.arange(n, dtype=np.int64)
        # Behind: evaluate an even, explicit sample; the ratio is reported in every snapshot.
        ratio = max(0.05, 1.0 - p)
        step = max(1, round(1.0 / ratio))
        return np.arange(0, n, step, dtype=np.int64)

    def step(self, lb: LabelledBatch) -> Snapshot:
        """Predict, score, then learn on one mini-batch; return the snapshot after it."""
        fb, y = lb.features, lb.labels
        n = len(fb)
        self.seq += 1
        if n:
            ts = fb.ts_ns
            if self.ts_first is None:
                self.ts_first = float(ts[0]) / 1e9
            self.ts_last = float(ts[-1]) / 1e9
            self.frames += n
            self.bytes += int(fb.cap_len.sum())
            self.status_counts += np.bincount(fb.status, minlength=4)[:4]
            lt = fb.linktype
            # Almost always one link type per batch: skip sorting the column then.
            first_lt = int(lt[0])
            if first_lt not in self.linktypes or not bool((lt == first_lt).all()):
                self.linktypes.update(int(x) for x in np.unique(lt).tolist())
            self.traffic.update(fb)
        idx = self._sample(n)
        m = len(idx)
        self.evaluated += m
        X = self.featurizer.transform(fb) if n else np.zeros((0, 0), dtype=np.float32)
        whole = m == n
        Xs = X if whole else X[idx]
        ys = y if whole else y[idx]
        truth = self._label_codes(ys)  # -1: unlabelled
        has_label = truth >= 0
        if has_label.any():
            counts = np.bincount(truth[has_label])
            self.labelled += int(counts.sum())
            labels = self.classes.labels
            for code in np.flatnonzero(counts).tolist():
                name = labels[code]
                self.label_counts[name] = self.label_counts.get(name, 0) + int(counts[code])

        # Every row is filled: the learning steps cover the mini-batch.
        pcodes = {st.name: np.empty(m, dtype=np.int64) for st in self.states}
        det = self.anomaly
        scores_s = np.full(m, np.nan) if det is not None else None
        # Test-then-train, one learning step at a time (see the module docstring).
        for lo, hi in self._steps(m):
            Xc = Xs[lo:hi]
            for st in self.states:
                t0 = self.clock()
                pcodes[st.name][lo:hi] = self._predict_codes(st.model, Xc)
                st.predict_s += self.clock() - t0
                st.predicted += hi - lo
            if det is not None and scores_s is not None and det.threshold_ is not None:
                scores_s[lo:hi] = det.score_many(Xc)
            if not self.learn:
                continue
            # Learn only after every model has predicted: test-then-train.
            hl = has_label[lo:hi]
            if hl.any():
                every = bool(hl.all())
                Xl = Xc if every else Xc[hl]
                yl = ys[lo:hi] if every else ys[lo:hi][hl]
                # The labels as codes into the evaluator's table, for learners that take
                # them (shared: the learners split the encoding work of the step).
                coded = LabelCodes(truth[lo:hi] if every else truth[lo:hi][hl], self.classes.labels)
                for st in self.states:
                    t0 = self.clock()
                    fast_learn = getattr(st.model, "learn_codes_many", None)
                    if fast_learn is not None:
                        fast_learn(Xl, coded)
                    else:
                        st.model.learn_many(Xl, yl)
                    st.learn_s += self.clock() - t0
                    st.learned += len(yl)
            if det is not None:
                det.learn_many(Xc)

        k = len(self.classes) + 1  # one extra column for "no prediction"
        names = np.empty(k, dtype=object)
        names[: k - 1] = self.classes.labels
        every_label = bool(has_label.all())
        # truth * k, shared by every model's confusion codes truth * k + prediction.
        tk = (truth if every_label else truth[has_label]) * k
        for st in self.states:
            pc = pcodes[st.name]
            # A model with nothing learned yet predicts None: counted as wrong.
            pc[pc < 0] = k - 1
            if len(tk):
                # One bincount per model, shared by the cumulative and rolling matrices.
                part = ConfusionMatrix.from_codes(tk + (pc if every_label else pc[has_label]), k)
                st.cum.add(part)
                st.roll.add(part)
        # Labels per frame only for whoever reads them (--json, -w, the recent frames).
        predictions = _Predictions(pcodes, names, None if whole else idx, n)

        scores = alerts = None
        if det is not None and scores_s is not None and m:
            scored = ~np.isnan(scores_s)  # frames scored after the grace period
            thr = det.threshold_
            alerts_s = np.zeros(m, dtype=bool)
            if thr is not None:
                alerts_s[scored] = scores_s[scored] > thr
            scores = np.full(n, np.nan)
            scores[idx] = scores_s
            alerts = np.zeros(n, dtype=bool)
            alerts[idx] = alerts_s
            n_scored = int(scored.sum())
            self.anomaly_scored += n_scored
            self.anomaly_alerts += int(alerts_s.sum())
            if n_scored:
                self._last_scores = scores_s[scored]
            ref = scored & has_label
            if ref.any():
                pos = truth[ref] != self._normal_code()
                self._keep_auc(scores_s[ref], pos)
                if thr is not None:
                    al = alerts_s[ref]
                    self._alert_tp += int((al & pos).sum())
                    self._alert_fp += int((al & ~pos).sum())
                    self._alert_fn += int((~al & pos).sum())
            if alerts_s.any():
                for j in np.flatnonzero(alerts)[-5:].tolist():
                    self.latest_alerts.append(
                        {
                            "frame": int(fb.frame[j]),
                            "ts": float(fb.ts_ns[j]) / 1e9,
                            "score": float(scores[j]),
                        }
                    )

        result = BatchResult(
            features=fb, labels=y, predictions=predictions, scores=scores, alerts=alerts
        )
        self._update_recent(fb, y, predictions, scores, alerts)
        self._update_rate(n, int(fb.cap_len.sum()) if n else 0)
        for st in self.states:
            st.spark.append(st.roll.current.accuracy())
        self._update_history()
        return self.snapshot(result)

    # --- bookkeeping ----------------------------------------------------------------------------

    def _steps(self, m: int) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` of each learning step of a mini-batch of ``m`` frames."""
        if not self.learn:
            yield 0, m
            return
        before = self.evaluated - m  # frames evaluated before this mini-batch
        lo = 0
        while lo < m:
            seen = before + lo
            share = self.step_share if seen < self.warm_frames else self.warm_share
            hi = min(m, lo + max(self.first_step, int(seen * share)))
            yield lo, hi
            lo = hi

    def _label_codes(self, y: NDArray[np.object_]) -> NDArray[np.int64]:
        """Class indices of labels (adding new ones), -1 for unlabelled frames."""
        if not len(y):
            return np.zeros(0, dtype=np.int64)
        codes, uniq = pd.factorize(y, sort=False, use_na_sentinel=True)
        lookup = np.array([self.classes.add(str(u)) for u in uniq] + [-1], dtype=np.int64)
        out: NDArray[np.int64] = lookup[codes]  # code -1 picks the -1 at the end
        return out

    def _predict_codes(self, model: Classifier, X: NDArray[Any]) -> NDArray[np.int64]:
        """A model's predictions as class indices (adding new labels), -1 for "no prediction"."""
        fast = getattr(model, "predict_codes_many", None)
        if fast is not None:
            codes, labels = fast(X)
            lookup = np.array(
                [-1 if label is None else self.classes.add(str(label)) for label in labels],
                dtype=np.int64,
            )
            out: NDArray[np.int64] = lookup[codes]
            return out
        return self._label_codes(np.asarray(model.predict_many(X), dtype=object))

    def _normal_code(self) -> int:
        """The class index of ``normal_label`` (-1 while it has not been seen)."""
        labels = self.classes.labels
        return labels.index(self.normal_label) if self.normal_label in labels else -1

    def _keep_auc(self, scores: NDArray[np.float64], pos: NDArray[np.bool_]) -> None:
        bins = _auc_bins(scores)
        # In place: a bincount would allocate and add the whole 2**18-bin histogram.
        np.add.at(self._auc_pos, bins[pos], 1)
        np.add.at(self._auc_neg, bins[~pos], 1)
        self._auc_stale = True

    def _current_auc(self) -> float | None:
        if self._auc_stale:
            a = _hist_auc(self._auc_pos, self._auc_neg)
            self._auc = None if math.isnan(a) else a
            self._auc_stale = False
        return self._auc

    def _update_rate(self, n: int, nbytes: int) -> None:
        self._rate.append((self.ts_last, n, nbytes))
        while len(self._rate) > 2 and self.ts_last - self._rate[0][0] > 5.0:
            self._rate.popleft()

    def _rates(self) -> tuple[float, float]:
        if len(self._rate) < 2:
            return 0.0, 0.0
        span = self._rate[-1][0] - self._rate[0][0]
        if span <= 0:
            return 0.0, 0.0
        frames = sum(r[1] for r in list(self._rate)[1:])
        nbytes = sum(r[2] for r in list(self._rate)[1:])
        return frames / span, nbytes * 8 / span / 1e6

    def _update_history(self) -> None:
        self._since_point += 1
        if self._since_point < self._history_stride:
            return
        self._since_point = 0
        last = self._last_scores
        self.history.append(
            HistoryPoint(
                ts=self.ts_last,
                frames=self.frames,
                rolling_accuracy={st.name: st.roll.current.accuracy() for st in self.states},
                accuracy={st.name: st.cum.accuracy() for st in self.states},
                anomaly_mean=None if last is None or not len(last) else float(np.nanmean(last)),
                anomaly_max=None if last is None or not len(last) else float(np.nanmax(last)),
                threshold=None if self.anomaly is None else self.anomaly.threshold_,
                labels=dict(self.label_counts),
            )
        )
        if len(self.history) > self.history_max:
            # Thin evenly and halve the sampling rate, so memory stays bounded on endless streams.
            self.history = self.history[::2]
            self._history_stride *= 2

    def _update_recent(
        self,
        fb: FeatureBatch,
        y: NDArray[np.object_],
        predictions: _Predictions,
        scores: NDArray[np.float64] | None,
        alerts: NDArray[np.bool_] | None,
    ) -> None:
        n = len(fb)
        if not n or not self.recent_n:
            return
        sel = np.arange(max(0, n - self.recent_n), n)
        part = fb.take(sel)
        macs_d = self._text_macs(part.dst_mac)
        macs_s = self._text_macs(part.src_mac)
        vend_d = self._vendors(part.dst_mac)
        vend_s = self._vendors(part.src_mac)
        dcode, scode = self.featurizer.mac_codes(part)
        ips_s = self._text_ips(part.ip_version, part.ip_src)
        ips_d = self._text_ips(part.ip_version, part.ip_dst)
        best = self.best_model()
        bpred = None
        if best is not None and best in predictions:
            # Only these rows' labels: the whole column is built only if someone reads it.
            bpred = predictions.at(best, sel)
        for j, i in enumerate(sel.tolist()):
            self.recent.append(
                RecentFrame(
                    frame=int(part.frame[j]),
                    ts=float(part.ts_ns[j]) / 1e9,
                    src_mac=macs_s[j],
                    dst_mac=macs_d[j],
                    src_vendor=vend_s[j],
                    dst_vendor=vend_d[j],
                    src_code=int(scode[j]) if scode[j] >= 0 else None,
                    dst_code=int(dcode[j]) if dcode[j] >= 0 else None,
                    ethertype=ethertype_name(int(part.ethertype[j])),
                    length=int(part.frame_len[j]),
                    ip_src=ips_s[j],
                    ip_dst=ips_d[j],
                    proto=ip_proto_name(int(part.ip_proto[j])),
                    sport=int(part.sport[j]) if part.sport[j] >= 0 else None,
                    dport=int(part.dport[j]) if part.dport[j] >= 0 else None,
                    label=None if y[i] is None else str(y[i]),
                    prediction=None if bpred is None or bpred[j] is None else str(bpred[j]),
                    score=None if scores is None or math.isnan(scores[i]) else float(scores[i]),
                    alert=bool(alerts[i]) if alerts is not None else False,
                )
            )

    def _text_macs(self, macs: NDArray[np.int64]) -> list[str | None]:
        if self.mac_text is not None:
            return list(self.mac_text(macs).tolist())
        return [
            None if m < 0 else ":".join(f"{(m >> s) & 0xFF:02x}" for s in range(40, -8, -8))
            for m in macs.tolist()
        ]

    def _vendors(self, macs: NDArray[np.int64]) -> list[str | None]:
        if self.vendor_names is None:
            return [None] * len(macs)
        return list(self.vendor_names(macs).tolist())

    def _text_ips(self, version: NDArray[np.int8], addr: NDArray[np.uint8]) -> list[str | None]:
        if self.ip_text is not None:
            return list(self.ip_text(version, addr).tolist())
        import ipaddress

        out: list[str | None] = []
        for v, a in zip(version.tolist(), addr, strict=True):
            if v == 4:
                out.append(str(ipaddress.IPv4Address(bytes(a[:4]))))
            elif v == 6:
                out.append(str(ipaddress.IPv6Address(bytes(a))))
            else:
                out.append(None)
        return out

    # --- reading the state ----------------------------------------------------------------------

    def best_model(self) -> str | None:
        """The non-baseline model with the best rolling macro-F1 (ties: cumulative accuracy)."""
        best, key = None, (-1.0, -1.0)
        for st in self.states:
            if st.is_baseline or not st.cum.total:
                continue
            f1 = st.roll.current.macro_f1()
            acc = st.cum.accuracy()
            k = (f1 if not math.isnan(f1) else -1.0, acc if not math.isnan(acc) else -1.0)
            if k > key:
                best, key = st.name, k
        return best

    def _scores(self) -> tuple[ModelScore, ...]:
        labels = self.classes.labels
        out = []
        for st in self.states:
            out.append(
                ModelScore(
                    name=st.name,
                    accuracy=st.cum.accuracy(),
                    macro_f1=st.cum.macro_f1(),
                    kappa=st.cum.kappa(),
                    rolling_accuracy=st.roll.current.accuracy(),
                    rolling_macro_f1=st.roll.current.macro_f1(),
                    rolling_kappa=st.roll.current.kappa(),
                    recall=_recall_dict(st.cum.recall(), labels),
                    rolling_recall=_recall_dict(st.roll.current.recall(), labels),
                    scored=st.cum.total,
                    learned=st.learned,
                    predict_us=st.predict_s / st.predicted * 1e6 if st.predicted else math.nan,
                    learn_us=st.learn_s / st.learned * 1e6 if st.learned else math.nan,
                    is_baseline=st.is_baseline,
                    spark=tuple(st.spark),
                )
            )
        return tuple(out)

    def _anomaly_status(self) -> AnomalyStatus | None:
        det = self.anomaly
        if det is None:
            return None
        last = self._last_scores
        auc = self._current_auc()
        prec = rec = None
        if self._alert_tp + self._alert_fp:
            prec = self._alert_tp / (self._alert_tp + self._alert_fp)
        if self._alert_tp + self._alert_fn:
            rec = self._alert_tp / (self._alert_tp + self._alert_fn)
        return AnomalyStatus(
            in_grace=det.threshold_ is None,
            threshold=det.threshold_,
            scored=self.anomaly_scored,
            alerts=self.anomaly_alerts,
            last_score_mean=float(np.nanmean(last)) if last is not None and len(last) else math.nan,
            last_score_max=float(np.nanmax(last)) if last is not None and len(last) else math.nan,
            auc=auc,
            precision=prec,
            recall=rec,
            latest_alerts=tuple(self.latest_alerts),
        )

    def _traffic(self) -> TrafficMix:
        t = self.traffic
        macs = t.top_macs(10)
        mac_arr = np.array([m for m, _, _ in macs], dtype=np.int64)
        mtext = self._text_macs(mac_arr)
        mvend = self._vendors(mac_arr)
        ips = t.top_ips(10)
        if ips:
            ver = np.array([v for v, _, _, _ in ips], dtype=np.int8)
            addr = np.frombuffer(b"".join(a for _, a, _, _ in ips), dtype=np.uint8).reshape(-1, 16)
            itext = self._text_ips(ver, addr)
        else:
            itext = []
        return TrafficMix(
            top_macs=tuple((mtext[i] or "?", mvend[i], f, b) for i, (_, f, b) in enumerate(macs)),
            top_ips=tuple((itext[i] or "?", f, b) for i, (_, _, f, b) in enumerate(ips)),
            ethertypes=tuple(t.ethertype_mix()),
            ip_protos=tuple(t.ip_proto_mix()),
        )

    def _source(self) -> SourceStatus:
        base = self.source_status() if self.source_status is not None else SourceStatus(name="")
        return replace(
            base,
            linktypes=tuple(linktype_name(lt) for lt in sorted(self.linktypes)),
            truncated=int(self.status_counts[STATUS_TRUNCATED]),
            malformed=int(self.status_counts[STATUS_MALFORMED]),
            undecoded=int(self.status_counts[STATUS_UNDECODED]),
        )

    def snapshot(self, batch: BatchResult | None = None, *, final: bool = False) -> Snapshot:
        """The current state as an immutable snapshot."""
        fps, mbps = self._rates()
        return Snapshot(
            seq=self.seq,
            ts_first=self.ts_first if self.ts_first is not None else 0.0,
            ts_last=self.ts_last,
            frames=self.frames,
            bytes=self.bytes,
            labelled=self.labelled,
            evaluated=self.evaluated,
            target=self.target,
            classes=self.classes.labels,
            models=self._scores(),
            best=self.best_model(),
            anomaly=self._anomaly_status(),
            recent=tuple(self.recent),
            traffic=self._traffic(),
            source=self._source(),
            rate_fps=fps,
            rate_mbps=mbps,
            sampling_ratio=self.evaluated / self.frames if self.frames else 1.0,
            history=tuple(self.history),
            batch=batch,
            final=final,
        )


def prequential(stream: Iterable[LabelledBatch], evaluator: Evaluator) -> Iterator[Snapshot]:
    """Run test-then-train over ``stream``, yielding a snapshot after every mini-batch.

    The last snapshot yielded has ``final=True`` (also when the stream is empty).
    Closing the generator early (Ctrl-C) leaves ``evaluator`` in a consistent
    state, so ``evaluator.snapshot(final=True)`` gives the summary.
    """
    for lb in stream:
        yield evaluator.step(lb)
    yield evaluator.snapshot(final=True)
