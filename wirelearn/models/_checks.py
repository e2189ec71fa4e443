"""Contract checks every learner must pass (river's ``checks/``, over mini-batches).

``yield_checks(model)`` yields the checks that apply to a learner; each check
takes a fresh, unfitted learner and raises ``AssertionError`` on a breach.
``tests/test_models_contract.py`` runs every registered learner against
every check. Data are well separated Gaussian blobs, one centre per label,
derived from the label itself so every check agrees on where a class lives.
"""

from __future__ import annotations

import tempfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from wirelearn.models._base import OnlineClassifier

__all__ = ["check_estimator", "make_blobs", "yield_checks"]

Check = Callable[[OnlineClassifier], None]

_D = 20
_BATCH = 500


def make_blobs(
    labels: Sequence[str],
    n: int,
    *,
    seed: int = 0,
    d: int = _D,
    weights: Sequence[float] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.object_]]:
    """``n`` frames around one centre per label, plus their labels.

    The centre of a label depends only on the label (and ``d``), so separate
    calls agree. Centres are 6 units apart on average, noise has unit variance.

    Args:
        labels: the labels to draw from.
        n: number of frames.
        seed: seed for which label each frame gets and for the noise.
        d: number of features.
        weights: label probabilities (uniform if omitted).
    """
    rng = np.random.default_rng(seed)
    centres = np.stack(
        [np.random.default_rng(zlib.crc32(label.encode())).normal(0, 3, d) for label in labels]
    )
    p = None if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)
    which = rng.choice(len(labels), size=n, p=p)
    X = centres[which] + rng.normal(size=(n, d))
    y = np.asarray(labels, dtype=object)[which]
    return X, y


def _learn_batches(
    model: OnlineClassifier, X: NDArray[np.floating[Any]], y: NDArray[np.object_]
) -> None:
    for start in range(0, len(X), _BATCH):
        model.learn_many(X[start : start + _BATCH], y[start : start + _BATCH])


def _assert_labels(pred: NDArray[np.object_], n: int, allowed: Sequence[str | None]) -> None:
    assert isinstance(pred, np.ndarray) and pred.dtype == object, pred
    assert pred.shape == (n,), pred.shape
    assert set(pred.tolist()) <= set(allowed), (set(pred.tolist()), allowed)


def _assert_proba(model: OnlineClassifier, X: NDArray[np.float64]) -> None:
    proba = model.predict_proba_many(X)
    assert proba.dtype == np.float64 and proba.shape == (len(X), len(model.classes_)), proba.shape
    assert np.all(proba >= 0) and np.all(proba <= 1 + 1e-9)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)


def check_predict_before_learning(model: OnlineClassifier) -> None:
    """Predicting before any learning returns the fallback and does not raise."""
    X, _ = make_blobs(["a"], 7)
    fallback = model.classes_[0] if model.classes_ else None
    pred = model.predict_many(X)
    _assert_labels(pred, 7, [fallback])
    assert model.predict_many(X[:0]).shape == (0,)
    if model.has_proba:
        proba = model.predict_proba_many(X)
        assert proba.shape == (7, len(model.classes_))
        if model.classes_:
            np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert model.n_learned == 0


def check_learn_empty_batch(model: OnlineClassifier) -> None:
    """An empty batch changes nothing, before and after real learning."""
    empty_X, empty_y = np.zeros((0, _D)), np.zeros(0, dtype=object)
    before = (model.classes_, model.n_learned, model.n_features_in_)
    model.learn_many(empty_X, empty_y)
    assert (model.classes_, model.n_learned, model.n_features_in_) == before
    X, y = make_blobs(["a", "b"], 600)
    _learn_batches(model, X, y)
    expected = model.predict_many(X)
    model.learn_many(empty_X, empty_y)
    assert model.n_learned == 600
    np.testing.assert_array_equal(model.predict_many(X), expected)


def check_new_class(model: OnlineClassifier) -> None:
    """A label never seen before is added, and predicted once it dominates."""
    X, y = make_blobs(["a", "b"], 1000, seed=1)
    _learn_batches(model, X, y)
    known = model.classes_
    assert "c" not in known
    X, y = make_blobs(["a", "b", "c"], 3000, seed=2, weights=[1, 1, 8])
    _learn_batches(model, X, y)
    assert model.classes_ == (*known, "c"), model.classes_
    X_c, _ = make_blobs(["c"], 400, seed=3)
    pred = model.predict_many(X_c)
    assert np.mean(pred == "c") > 0.9, np.mean(pred == "c")
    if model.has_proba:
        _assert_proba(model, X_c)


def check_many_new_classes(model: OnlineClassifier) -> None:
    """Labels keep arriving one after another (beyond any initial allocation)."""
    labels = [f"k{i}" for i in range(9)]
    for i in range(1, len(labels) + 1):
        X, y = make_blobs(labels[:i], 600, seed=10 + i)
        _learn_batches(model, X, y)
    assert set(labels) <= set(model.classes_)
    X, y = make_blobs(labels, 900, seed=99)
    accuracy = np.mean(model.predict_many(X) == y)
    if model.cost.fit_calls:  # the baseline cannot separate anything
        assert accuracy > 0.7, accuracy
    if model.has_proba:
        _assert_proba(model, X)


def check_inputs_not_mutated(model: OnlineClassifier) -> None:
    """``X`` and ``y`` are never modified (and read-only arrays are accepted)."""
    X, y = make_blobs(["a", "b", "c"], 700, seed=4)
    features: NDArray[np.floating[Any]]
    for features in (X, X.astype(np.float32)):
        X_copy, y_copy = features.copy(), y.copy()
        features.setflags(write=False)
        y.setflags(write=False)
        _learn_batches(model, features, y)
        model.predict_many(features)
        if model.has_proba:
            model.predict_proba_many(features)
        np.testing.assert_array_equal(features, X_copy)
        np.testing.assert_array_equal(y, y_copy)
        y = y.copy()


def check_seed_reproducible(model: OnlineClassifier) -> None:
    """Two fresh learners with the same seed, fed the same data, agree exactly."""
    twin = model.clone()
    X, y = make_blobs(["a", "b", "c"], 1500, seed=5)
    X_test, _ = make_blobs(["a", "b", "c"], 300, seed=6)
    for m in (model, twin):
        _learn_batches(m, X, y)
    np.testing.assert_array_equal(model.predict_many(X_test), twin.predict_many(X_test))
    if model.has_proba:
        np.testing.assert_array_equal(
            model.predict_proba_many(X_test), twin.predict_proba_many(X_test)
        )


def check_save_load(model: OnlineClassifier) -> None:
    """A saved and loaded learner predicts the same, and keeps learning the same way."""
    from wirelearn.models._persist import load_model, save_model

    X, y = make_blobs(["a", "b", "c"], 1200, seed=7)
    X_more, y_more = make_blobs(["a", "b", "c", "d"], 1200, seed=8)
    X_test, _ = make_blobs(["a", "b", "c", "d"], 300, seed=9)
    _learn_batches(model, X, y)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.skops"
        save_model(model, path)
        loaded = load_model(path)
    assert type(loaded) is type(model) and repr(loaded) == repr(model)
    assert isinstance(loaded, OnlineClassifier)
    assert loaded.classes_ == model.classes_ and loaded.n_learned == model.n_learned
    np.testing.assert_array_equal(loaded.predict_many(X_test), model.predict_many(X_test))
    for m in (model, loaded):
        _learn_batches(m, X_more, y_more)
    assert loaded.classes_ == model.classes_ and loaded.n_learned == 2400
    np.testing.assert_array_equal(loaded.predict_many(X_test), model.predict_many(X_test))
    if model.has_proba:
        np.testing.assert_array_equal(
            loaded.predict_proba_many(X_test), model.predict_proba_many(X_test)
        )


def check_clone(model: OnlineClassifier) -> None:
    """``clone()`` is unfitted, with the same parameters; learning does not change parameters."""
    params = model._get_params()
    X, y = make_blobs(["a", "b", "c"], 700, seed=10)
    _learn_batches(model, X, y)
    assert model._get_params() == params
    fresh = model.clone()
    assert type(fresh) is type(model) and fresh._get_params() == params
    assert fresh.n_learned == 0 and fresh.classes_ == (model.classes or ())
    assert fresh.cost.fit_calls == 0
    assert repr(fresh) == repr(model)
    _assert_labels(fresh.predict_many(X[:5]), 5, [model.classes[0] if model.classes else None])


def check_single_class(model: OnlineClassifier) -> None:
    """Batches holding one class only work, and so does a learner that saw one class."""
    X_a, y_a = make_blobs(["a"], 700, seed=11)
    _learn_batches(model, X_a, y_a)
    pred = model.predict_many(X_a)
    _assert_labels(pred, len(X_a), model.classes_)
    assert np.all(pred == "a")
    if model.has_proba:
        _assert_proba(model, X_a)
    X_b, y_b = make_blobs(["b"], 700, seed=12)
    _learn_batches(model, X_b, y_b)
    _assert_labels(model.predict_many(X_b), len(X_b), model.classes_)
    if model.has_proba:
        _assert_proba(model, X_b)


def check_proba(model: OnlineClassifier) -> None:
    """Probability rows are in [0, 1], sum to 1, and agree with ``predict_many``."""
    X, y = make_blobs(["a", "b", "c"], 1500, seed=13)
    _learn_batches(model, X, y)
    _assert_proba(model, X)
    proba = model.predict_proba_many(X)
    confident = proba.max(axis=1) > 0.6  # away from ties
    argmax = np.asarray(model.classes_, dtype=object)[proba.argmax(axis=1)]
    np.testing.assert_array_equal(argmax[confident], model.predict_many(X)[confident])


def check_no_proba(model: OnlineClassifier) -> None:
    """A learner without probabilities says so with ``NotImplementedError``."""
    X, y = make_blobs(["a", "b"], 600, seed=14)
    _learn_batches(model, X, y)
    try:
        model.predict_proba_many(X)
    except NotImplementedError:
        return
    raise AssertionError("has_proba is False but predict_proba_many returned")


def check_batch_learning(model: OnlineClassifier) -> None:
    """Learning is vectorized: a bounded number of fits per batch, never one per frame."""
    X, y = make_blobs(["a", "b", "c", "d", "e"], 50_000, seed=15)
    batches = 0
    for start in range(0, len(X), 4096):
        model.learn_many(X[start : start + 4096], y[start : start + 4096])
        model.predict_many(X[start : start + 4096])
        batches += 1
    assert model.n_learned == len(X)
    assert model.cost.learn_calls == batches
    assert model.cost.fit_calls <= batches + 1, (model.cost.fit_calls, batches)


def yield_checks(model: OnlineClassifier) -> Iterator[Check]:
    """The checks that apply to ``model``, each to be called on a fresh clone."""
    yield check_predict_before_learning
    yield check_learn_empty_batch
    yield check_new_class
    yield check_many_new_classes
    yield check_inputs_not_mutated
    yield check_seed_reproducible
    yield check_save_load
    yield check_clone
    yield check_single_class
    yield check_proba if model.has_proba else check_no_proba
    yield check_batch_learning


def check_estimator(model: OnlineClassifier) -> None:
    """Run every applicable check on a fresh clone of ``model``."""
    for check in yield_checks(model):
        check(model.clone())
