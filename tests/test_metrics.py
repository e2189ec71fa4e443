"""Streaming metrics against scikit-learn's batch metrics on the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, recall_score, roc_auc_score

from wirelearn.models._metrics import ClassIndex, ConfusionMatrix, RollingConfusion, binary_auc


def _stream(seed: int, n: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.array(["a", "b", "c", "d"], dtype=object)
    truth = labels[rng.integers(0, 4, n)]
    pred = np.where(rng.random(n) < 0.7, truth, labels[rng.integers(0, 4, n)])
    return truth, pred


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cumulative_metrics_equal_sklearn(seed: int) -> None:
    truth, pred = _stream(seed)
    ci = ClassIndex()
    cm = ConfusionMatrix()
    for s in range(0, len(truth), 700):  # classes appear over time: the matrix grows
        t, p = ci.encode(truth[s : s + 700]), ci.encode(pred[s : s + 700])
        cm.update(t, p, len(ci))
    assert cm.accuracy() == pytest.approx(accuracy_score(truth, pred))
    assert cm.kappa() == pytest.approx(cohen_kappa_score(truth, pred))
    assert cm.macro_f1() == pytest.approx(f1_score(truth, pred, average="macro"))
    rec = recall_score(truth, pred, average=None, labels=list(ci.labels))
    assert cm.recall() == pytest.approx(rec)


def test_rolling_window_equals_metrics_of_last_batches() -> None:
    truth, pred = _stream(7, 10_000)
    ci = ClassIndex(["a", "b", "c", "d"])
    roll = RollingConfusion(window=2000)
    for s in range(0, 10_000, 500):
        roll.update(ci.encode(truth[s : s + 500]), ci.encode(pred[s : s + 500]), 4)
    # The window holds whole batches adding up to at least 2000 frames: here exactly 2000.
    assert roll.current.total == 2000
    assert roll.current.accuracy() == pytest.approx(accuracy_score(truth[-2000:], pred[-2000:]))


def test_undefined_metrics_are_nan_and_constant_predictor_kappa_zero() -> None:
    cm = ConfusionMatrix()
    assert np.isnan(cm.accuracy()) and np.isnan(cm.macro_f1()) and np.isnan(cm.kappa())
    ci = ClassIndex()
    t = ci.encode(np.array(["x", "y", "x", "x"], dtype=object))
    p = ci.encode(np.array(["x", "x", "x", "x"], dtype=object))
    cm.update(t, p, len(ci))
    assert cm.kappa() == pytest.approx(0.0)
    assert cm.accuracy() == pytest.approx(0.75)


def test_binary_auc_equals_sklearn_with_ties() -> None:
    rng = np.random.default_rng(3)
    pos = rng.random(3000) < 0.2
    scores = np.round(rng.normal(size=3000) + pos * 1.5, 1)  # rounding makes many ties
    assert binary_auc(scores, pos) == pytest.approx(roc_auc_score(pos, scores))
    assert np.isnan(binary_auc(scores, np.zeros(3000, dtype=bool)))
