"""The first mini-batch (the learners' warm-up) made cheaper without changing what is learned.

At the start of a stream the evaluator learns a mini-batch in dozens of
growing steps. What every step paid regardless of its size is now paid once:
the rows sampled for a fit, their copy and check (shared by the learners
given one ``LabelCodes``), and ``fit_binary``'s per-call set-up (the linear
learners call scikit-learn's compiled SGD directly, after checking once that
it gives exactly what ``fit_binary`` gives). These are checked bit for bit
against the code they replace.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import numpy as np
import pytest
from conftest import FIXTURES
from numpy.typing import NDArray

from wirelearn.capture import open_capture
from wirelearn.features._decode import decode
from wirelearn.features._pipeline import FeaturePipeline
from wirelearn.models import _base as base_module
from wirelearn.models._base import LabelCodes
from wirelearn.models._evaluate import Evaluator, LabelledBatch
from wirelearn.models._linear import _DirectSGD
from wirelearn.models._registry import make_model

LABELS = ("dns", "tls", "http", "ssh", "ntp", "portscan", "synflood")


def _steps(n: int, first: int = 64, share: float = 0.125) -> list[tuple[int, int]]:
    """The evaluator's learning steps over ``n`` frames (``Evaluator._steps``, defaults)."""
    out, lo = [], 0
    while lo < n:
        hi = min(n, lo + max(first, int(lo * share)))
        out.append((lo, hi))
        lo = hi
    return out


def _stream(n: int, *, seed: int, d: int = 12) -> tuple[NDArray[np.float32], NDArray[np.intp]]:
    """Column-major float32 frames (as the feature pipeline makes them); labels arrive over time."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.5, size=(len(LABELS), d))
    # Label j can occur only after frame j * n / 10: the label table grows mid-stream.
    which = rng.integers(0, len(LABELS), n)
    which = np.minimum(which, np.arange(n) * 10 // n)
    X = centres[which] + rng.normal(0, 0.6, size=(n, d))
    return np.asfortranarray(X, dtype=np.float32), which.astype(np.intp)


LINEAR = [
    ("sgd", {}),
    ("sgd", {"loss": "modified_huber"}),
    ("logistic", {}),
    ("pa", {}),
    ("pa", {"variant": "pa2"}),
    ("perceptron", {}),
    ("svm", {}),
]


@pytest.mark.parametrize(("name", "params"), LINEAR)
def test_direct_sgd_learns_bit_for_bit_what_fit_binary_learns(
    name: str, params: dict[str, Any]
) -> None:
    # Warm-up steps (64 frames growing by an eighth), labels appearing mid-stream so the
    # one-vs-rest table grows (new seeds): the same coefficients as through fit_binary.
    X, y = _stream(12_000, seed=1)
    direct = make_model(name, seed=4, **params)
    plain = make_model(name, seed=4, **params)
    for lo, hi in _steps(len(X)):
        direct.learn_codes_many(X[lo:hi], LabelCodes(y[lo:hi], LABELS))
    with mock.patch.object(_DirectSGD, "make", return_value=None) as made:
        for lo, hi in _steps(len(X)):
            plain.learn_codes_many(X[lo:hi], LabelCodes(y[lo:hi], LABELS))
    assert made.call_count == 1  # refused once, then never tried again
    assert isinstance(direct._direct, _DirectSGD)  # type: ignore[attr-defined]
    assert plain._direct is False  # type: ignore[attr-defined]
    a, b = direct._est, plain._est  # type: ignore[attr-defined]
    assert a.coef_.shape[0] > 3 + 2  # the table grew at least once
    rows = [*range(len(direct.classes_)), -1]
    np.testing.assert_array_equal(a.coef_[rows], b.coef_[rows])
    np.testing.assert_array_equal(a.intercept_[rows], b.intercept_[rows])
    assert a.t_ == b.t_
    assert direct.predict_many(X).tolist() == plain.predict_many(X).tolist()


def test_direct_sgd_is_refused_when_it_differs_from_fit_binary() -> None:
    # The one-time check: a direct call that does not reproduce fit_binary is never used.
    X, y = _stream(3000, seed=2)
    model = make_model("sgd")
    real = _DirectSGD.fit

    def off_by_one(self: _DirectSGD, est: Any, i: int, X: Any, target: Any) -> tuple[float, float]:
        intercept, n_iter = real(self, est, i, X, target)
        return intercept + 1.0, n_iter

    with mock.patch.object(_DirectSGD, "fit", off_by_one):
        for lo, hi in _steps(len(X)):
            model.learn_codes_many(X[lo:hi], LabelCodes(y[lo:hi], LABELS))
    assert model._direct is False  # type: ignore[attr-defined]


def test_saved_learner_drops_the_direct_call() -> None:
    X, y = _stream(3000, seed=3)
    model = make_model("logistic")
    for lo, hi in _steps(len(X)):
        model.learn_codes_many(X[lo:hi], LabelCodes(y[lo:hi], LABELS))
    assert isinstance(model._direct, _DirectSGD)  # type: ignore[attr-defined]
    assert "_direct" not in model.__getstate__()  # type: ignore[attr-defined]


def test_learners_sharing_labels_pick_and_copy_the_rows_once() -> None:
    # Six learners with the same seed and max_fit, one LabelCodes per step: the rows are
    # sampled once per step, and every learner learns exactly what it learns alone.
    X, y = _stream(20_000, seed=5)
    names = ["sgd", "logistic", "pa", "perceptron"]
    alone = {n: make_model(n) for n in names}
    shared = {n: make_model(n) for n in names}
    steps = _steps(len(X))
    for lo, hi in steps:
        for n in names:
            alone[n].learn_codes_many(X[lo:hi], LabelCodes(y[lo:hi], LABELS))
    real = base_module.OnlineClassifier._fit_rows
    with mock.patch.object(
        base_module.OnlineClassifier, "_fit_rows", autospec=True, side_effect=real
    ) as picks:
        for lo, hi in steps:
            # As the evaluator does: one features array and one LabelCodes per step.
            coded, Xs = LabelCodes(y[lo:hi], LABELS), X[lo:hi]
            for n in names:
                shared[n].learn_codes_many(Xs, coded)
    assert picks.call_count == len(steps)
    for n in names:
        a, b = alone[n]._est, shared[n]._est  # type: ignore[attr-defined]
        np.testing.assert_array_equal(a.coef_, b.coef_)
        np.testing.assert_array_equal(a.intercept_, b.intercept_)


def test_shared_rows_are_not_reused_for_other_features() -> None:
    # The shared rows are keyed by the features array: other features, other rows' values.
    X, y = _stream(1000, seed=6)
    coded = LabelCodes(y, LABELS)
    a, b = make_model("sgd", max_fit=100), make_model("sgd", max_fit=100)
    a.learn_codes_many(X, coded)
    b.learn_codes_many(X * 2, coded)
    assert not np.array_equal(a._est.coef_, b._est.coef_)  # type: ignore[attr-defined]
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        make_model("pa").learn_codes_many(bad, coded)


# --- through the evaluator ----------------------------------------------------------------------


def _first_batch(name: str) -> LabelledBatch:
    path = FIXTURES / "scenarios" / f"{name}.pcap"
    with open_capture(str(path)) as source:
        frames = next(iter(source))
    fb = decode(frames)
    labels = np.full(len(fb), "other", dtype=object)
    labels[fb.dport == 53] = "dns"
    labels[fb.dport == 443] = "tls"
    labels[fb.tcp_flags == 0x02] = "syn"
    return LabelledBatch(fb, labels)


def test_pipeline_transform_is_called_once_for_the_batch_that_fixes_scaling() -> None:
    # The batch holding the end of scale_frames is scaled in two parts, without calling
    # the public transform again (a timer wrapped around it would count them twice).
    lb = _first_batch("mixed")
    pipe = FeaturePipeline(scale_frames=500)
    ref = FeaturePipeline(scale_frames=500)
    calls = []
    real = pipe.transform

    def counted(fb: Any) -> NDArray[np.float32]:
        calls.append(len(fb))
        return real(fb)

    pipe.transform = counted  # type: ignore[method-assign]
    out = pipe.transform(lb.features)
    assert calls == [len(lb.features)] and len(lb.features) > 500
    head = ref.transform(lb.features.slice(0, 500))
    tail = ref.transform(lb.features.slice(500, len(lb.features)))
    np.testing.assert_array_equal(out, np.concatenate([head, tail]))


def test_first_batch_through_the_evaluator_learns_as_before() -> None:
    # The evaluator's own warm-up steps on real traffic: the linear learners end with the
    # coefficients the fit_binary path gives.
    lb = _first_batch("mixed")
    names = ["sgd", "logistic", "pa", "perceptron", "svm", "nb", "rf"]

    def run(**patch: Any) -> Evaluator:
        models = {n: make_model(n) for n in names}
        ev = Evaluator(models, FeaturePipeline(scale_frames=500))
        if patch:
            with mock.patch.object(_DirectSGD, "make", **patch):
                ev.step(lb)
        else:
            ev.step(lb)
        return ev

    fast, plain = run(), run(return_value=None)
    for a, b in zip(fast.states, plain.states, strict=True):
        est_a: Any = getattr(a.model, "_est", None)
        est_b: Any = getattr(b.model, "_est", None)
        if est_a is not None:
            np.testing.assert_array_equal(est_a.coef_, est_b.coef_)
            np.testing.assert_array_equal(est_a.intercept_, est_b.intercept_)
        assert a.cum.total == b.cum.total
