"""Streaming classification metrics over a growing set of classes.

A ``ConfusionMatrix`` is updated once per mini-batch with one ``bincount``;
``RollingConfusion`` keeps the last few mini-batches so that a rolling window
can be subtracted out exactly. Metrics that are undefined (nothing scored yet)
are ``nan``.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from numpy.typing import NDArray

__all__ = ["ClassIndex", "ConfusionMatrix", "RollingConfusion", "binary_auc"]


class ClassIndex:
    """Maps class labels to stable integer indices, adding new labels as they appear.

    >>> ci = ClassIndex(["dns"])
    >>> ci.encode(np.array(["tls", "dns", "tls"], dtype=object)).tolist()
    [1, 0, 1]
    >>> ci.labels
    ('dns', 'tls')
    """

    def __init__(self, labels: tuple[str, ...] | list[str] = ()) -> None:
        self._index: dict[str, int] = {}
        self._labels: list[str] = []
        for label in labels:
            self.add(label)

    def add(self, label: str) -> int:
        """The index of ``label``, adding it if new."""
        i = self._index.get(label)
        if i is None:
            i = len(self._labels)
            self._index[label] = i
            self._labels.append(label)
        return i

    def encode(self, y: NDArray[np.object_]) -> NDArray[np.int64]:
        """Indices of an array of labels (one dict lookup per distinct label)."""
        if len(y) == 0:
            return np.zeros(0, dtype=np.int64)
        uniq, inv = np.unique(y.astype(str), return_inverse=True)
        codes = np.array([self.add(str(u)) for u in uniq], dtype=np.int64)
        return codes[inv.reshape(-1)]

    @property
    def labels(self) -> tuple[str, ...]:
        """Labels in index order."""
        return tuple(self._labels)

    def __len__(self) -> int:
        return len(self._labels)


class ConfusionMatrix:
    """A confusion matrix (rows: truth, columns: prediction) that grows with the class set."""

    def __init__(self, k: int = 0) -> None:
        self.m = np.zeros((k, k), dtype=np.int64)

    def _grow(self, k: int) -> None:
        if k > self.m.shape[0]:
            m = np.zeros((k, k), dtype=np.int64)
            old = self.m.shape[0]
            m[:old, :old] = self.m
            self.m = m

    def update(self, truth: NDArray[np.int64], pred: NDArray[np.int64], k: int) -> None:
        """Add a batch of (truth, prediction) index pairs; ``k`` is the class count."""
        self._grow(k)
        if len(truth):
            k = self.m.shape[0]
            self.m += np.bincount(truth * k + pred, minlength=k * k).reshape(k, k)

    @classmethod
    def from_codes(cls, codes: NDArray[np.int64], k: int) -> ConfusionMatrix:
        """A ``k``-class matrix from pair codes ``truth * k + prediction`` (one ``bincount``).

        >>> ConfusionMatrix.from_codes(np.array([0, 3, 3, 1]), 2).m.tolist()
        [[1, 1], [0, 2]]
        """
        out = cls()
        out.m = np.bincount(codes, minlength=k * k).reshape(k, k)
        return out

    def add(self, other: ConfusionMatrix, sign: int = 1) -> None:
        """Add (or subtract, with ``sign=-1``) another matrix."""
        self._grow(other.m.shape[0])
        k = other.m.shape[0]
        self.m[:k, :k] += sign * other.m

    @property
    def total(self) -> int:
        """Frames counted."""
        return int(self.m.sum())

    def accuracy(self) -> float:
        """Fraction of correct predictions."""
        t = self.total
        return float(np.trace(self.m)) / t if t else math.nan

    def recall(self) -> NDArray[np.float64]:
        """Per-class recall (nan for classes never seen as truth)."""
        support = self.m.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(support > 0, np.diag(self.m) / np.maximum(support, 1), np.nan)

    def macro_f1(self) -> float:
        """Macro-averaged F1 over the classes present in the truth or the predictions."""
        if not self.total:
            return math.nan
        tp = np.diag(self.m).astype(np.float64)
        support = self.m.sum(axis=1)
        predicted = self.m.sum(axis=0)
        present = (support + predicted) > 0
        denom = support + predicted
        f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
        return float(f1[present].mean())

    def kappa(self) -> float:
        """Cohen's kappa: agreement beyond chance (0 for a constant predictor)."""
        t = self.total
        if not t:
            return math.nan
        po = float(np.trace(self.m)) / t
        pe = float((self.m.sum(axis=1) * self.m.sum(axis=0)).sum()) / (t * t)
        if pe >= 1.0:
            return 0.0 if po >= 1.0 else math.nan
        return (po - pe) / (1 - pe)


class RollingConfusion:
    """A confusion matrix over the last ``window`` frames, kept as whole mini-batches.

    The window holds the most recent mini-batches whose sizes add up to at least
    ``window`` frames; older batches are subtracted out exactly.
    """

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError("window must be at least 1 frame")
        self.window = window
        self.current = ConfusionMatrix()
        self._parts: deque[ConfusionMatrix] = deque()

    def update(self, truth: NDArray[np.int64], pred: NDArray[np.int64], k: int) -> None:
        """Add a mini-batch and drop the batches that fell out of the window."""
        part = ConfusionMatrix(k)
        part.update(truth, pred, k)
        self.add(part)

    def add(self, part: ConfusionMatrix) -> None:
        """Add a mini-batch's matrix (kept, not copied) and drop the batches out of the window."""
        self._parts.append(part)
        self.current.add(part)
        while len(self._parts) > 1 and self.current.total - self._parts[0].total >= self.window:
            self.current.add(self._parts.popleft(), sign=-1)


def binary_auc(scores: NDArray[np.float64], positive: NDArray[np.bool_]) -> float:
    """ROC AUC of ``scores`` for the ``positive`` class (Mann-Whitney, ties count half).

    >>> binary_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True]))
    0.75
    """
    npos = int(positive.sum())
    nneg = len(positive) - npos
    if npos == 0 or nneg == 0:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s), dtype=np.float64)
    # Average ranks over ties.
    _, first, counts = np.unique(s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[:] = np.repeat(avg, counts)
    r = np.empty_like(ranks)
    r[order] = ranks
    return float((r[positive].sum() - npos * (npos + 1) / 2.0) / (npos * nneg))
