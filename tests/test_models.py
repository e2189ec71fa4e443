"""Learners, anomaly detector, registry and persistence: behaviour beyond the generic contract."""

from __future__ import annotations

import io
import json
import os
import sys
import time
import zipfile
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import skops.io as sio
from numpy.typing import ArrayLike, NDArray
from sklearn.linear_model import SGDClassifier
from sklearn.linear_model import _stochastic_gradient as _sgd
from sklearn.metrics import roc_auc_score
from sklearn.naive_bayes import GaussianNB

import wirelearn.models as wm
from wirelearn.errors import ConfigError, ModelError
from wirelearn.models import _linear
from wirelearn.models._base import LabelCodes, OnlineClassifier
from wirelearn.models._checks import (
    check_batch_learning,
    check_inputs_not_mutated,
    check_new_class,
    make_blobs,
)
from wirelearn.models._persist import _allowed
from wirelearn.models._registry import MODEL_NAMES, make_model, parse_model_list

LABELS = ["dns", "tls", "http", "portscan"]


def _stream(
    n_batches: int, batch: int, *, seed: int, d: int = 10, labels: list[str] = LABELS
) -> list[tuple[NDArray[np.float64], NDArray[np.object_]]]:
    """Batches of a separable multi-class problem with overlapping, scaled classes."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.5, size=(len(labels), d))
    out = []
    for _ in range(n_batches):
        which = rng.integers(0, len(labels), batch)
        X = centres[which] + rng.normal(0, 0.5, size=(batch, d))
        out.append((X, np.asarray(labels, dtype=object)[which]))
    return out


# -- learning --------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_learns_separable_problem_online(name: str) -> None:
    model = make_model(name, classes=("dns", "tls"))
    correct = total = 0
    for i, (X, y) in enumerate(_stream(12, 2048, seed=1)):
        if i >= 2:  # test-then-train, scored after a short warm-up
            correct += int(np.sum(model.predict_many(X) == y))
            total += len(y)
        model.learn_many(X, y)
    assert correct / total > 0.9, (name, correct / total)
    assert set(model.classes_) == set(LABELS) and model.classes_[:2] == ("dns", "tls")


def test_baseline_is_majority_so_far() -> None:
    model = make_model("baseline", classes=("a", "b"))
    X = np.zeros((4, 3))
    assert model.predict_many(X).tolist() == ["a"] * 4
    np.testing.assert_allclose(model.predict_proba_many(X), 0.5)
    model.learn_many(X[:3], np.array(["c", "b", "c"], dtype=object))
    assert model.classes_ == ("a", "b", "c")
    assert model.predict_many(X).tolist() == ["c"] * 4
    np.testing.assert_allclose(model.predict_proba_many(X[:1]), [[0, 1 / 3, 2 / 3]])


def test_sgd_partial_fit_called_once_per_batch() -> None:
    # The first batch goes through partial_fit; later ones through the same
    # one-vs-rest loop without scikit-learn's per-call overhead: one SGD pass
    # per class row and batch, never one per frame. The second batch still goes
    # through ``fit_binary``, while the direct call is checked against it once.
    model = make_model("sgd")
    batches = _stream(13, 4096, seed=2, d=20)
    with (
        mock.patch.object(
            SGDClassifier, "partial_fit", autospec=True, side_effect=SGDClassifier.partial_fit
        ) as spy,
        mock.patch.object(
            _sgd, "fit_binary", autospec=True, side_effect=_sgd.fit_binary
        ) as per_class,
        mock.patch.object(_sgd, "_plain_sgd64", side_effect=_sgd._plain_sgd64) as passes,
    ):
        for X, y in batches:
            model.learn_many(X, y)
    assert spy.call_count == 1
    rows = model._est.coef_.shape[0]  # type: ignore[attr-defined]
    # The first batch fits every row; later ones the four labels' and the last.
    fitted = len(LABELS) + 1
    assert per_class.call_count == rows + fitted + 1  # + the check, through fit_binary
    assert passes.call_count == rows + fitted * (len(batches) - 1) + 2  # + the check, both ways
    assert isinstance(model._direct, _linear._DirectSGD)  # type: ignore[attr-defined]
    assert model.cost.fit_calls == len(batches)


def test_spare_rows_start_from_the_last_row() -> None:
    # Spare rows but the last are left out of the fits; a new label claiming one
    # starts from the last row's state, as if it had learned "never this class".
    model = make_model("sgd", seed=1)
    for X, y in _stream(4, 800, seed=3, d=10, labels=["dns", "tls", "http", "ntp"]):
        model.learn_many(X, y)
    est = model._est  # type: ignore[attr-defined]
    assert est.coef_.shape[0] == 6  # 4 labels, 2 spares
    assert model._stale.tolist() == [False] * 4 + [True, False]  # type: ignore[attr-defined]
    spare = est.coef_[-1].copy()
    X, y = _stream(1, 800, seed=4, d=10, labels=["dns", "tls", "ssh"])[0]
    with mock.patch("wirelearn.models._linear._fast_partial_fit", return_value=True):
        model.learn_many(X, y)  # no fit: only the bookkeeping around it
    assert model.classes_[4] == "ssh"
    np.testing.assert_array_equal(est.coef_[4], spare)
    assert not model._stale.any()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("sgd", {}),
        ("sgd", {"loss": "modified_huber"}),
        ("logistic", {}),
        ("pa", {}),
        ("perceptron", {}),
        ("svm", {"warmup_frames": 300}),
    ],
)
def test_fast_partial_fit_is_bit_for_bit_partial_fit(name: str, params: dict[str, Any]) -> None:
    # The same stream learned twice, once with the fast path switched off: the
    # coefficients, intercepts and step counters must be identical.
    batches = _stream(8, 700, seed=5, d=12)
    fast = make_model(name, seed=3, **params)
    slow = make_model(name, seed=3, **params)
    for X, y in batches:
        fast.learn_many(X, y)
    with mock.patch("wirelearn.models._linear._fast_partial_fit", return_value=False) as off:
        # (switched off, the left-out rows are brought back and partial_fit fits them all)
        for X, y in batches:
            slow.learn_many(X, y)
    assert off.call_count >= len(batches) - 1
    a, b = fast._est, slow._est  # type: ignore[attr-defined]
    # Every label is in the first batch: the fast path fits their rows and the last
    # (spare) row, and leaves the other spares, which no prediction reads.
    fitted = [*range(len(LABELS)), -1]
    np.testing.assert_array_equal(a.coef_[fitted], b.coef_[fitted])
    np.testing.assert_array_equal(a.intercept_[fitted], b.intercept_[fitted])
    assert a.t_ == b.t_
    assert fast.predict_many(batches[0][0]).tolist() == slow.predict_many(batches[0][0]).tolist()


def test_fast_path_only_with_the_known_fit_binary_signature() -> None:
    # The private helper's signature is checked: the fast path is taken with this
    # scikit-learn, and an older one (with a ``C`` argument) falls back to partial_fit.
    from wirelearn.models import _linear

    assert _linear._fit_binary() is _sgd.fit_binary

    def old_fit_binary(est, i, X, y, alpha, C, learning_rate, max_iter, pos_weight,  # type: ignore[no-untyped-def]
                       neg_weight, sample_weight, validation_mask=None, random_state=None):  # fmt: skip
        raise AssertionError("must not be called")

    model = make_model("sgd")
    X, y = _stream(1, 300, seed=2, d=6)[0]
    model.learn_many(X, y)
    est = model._est  # type: ignore[attr-defined]
    codes = np.zeros(len(X), dtype=np.intp)
    with mock.patch.object(_sgd, "fit_binary", old_fit_binary):
        assert _linear._fit_binary() is None
        args = (est, X.astype(np.float64), codes, np.random.RandomState(0), [0])
        assert _linear._fast_partial_fit(*args) is False
    assert _linear._fast_partial_fit(*args) is True


def test_learn_codes_many_is_learn_many() -> None:
    batches = _stream(6, 900, seed=7, d=8)
    table = ("spare", *LABELS[::-1])
    for name in MODEL_NAMES:
        a = make_model(name, seed=1)
        b = make_model(name, seed=1)
        for X, y in batches:
            a.learn_many(X, y)
            codes = np.array([table.index(label) for label in y], dtype=np.intp)
            b.learn_codes_many(X, LabelCodes(codes, table))
        assert a.classes_ == b.classes_, name
        assert a.predict_many(batches[0][0]).tolist() == b.predict_many(batches[0][0]).tolist()
    with pytest.raises(ValueError, match="codes must be in"):
        LabelCodes(np.array([0, 2]), ("a", "b"))
    with pytest.raises(ValueError, match="1-D integer"):
        LabelCodes(np.array([0.0, 1.0]), ("a", "b"))


def test_one_label_codes_shared_by_every_learner() -> None:
    # The evaluator gives one LabelCodes to all learners: sharing must not change what
    # any of them learns.
    batches = _stream(5, 3000, seed=8, d=8)
    table = tuple(LABELS)
    alone = {name: make_model(name, seed=2) for name in MODEL_NAMES}
    shared = {name: make_model(name, seed=2) for name in MODEL_NAMES}
    for X, y in batches:
        codes = np.array([table.index(label) for label in y], dtype=np.intp)
        coded = LabelCodes(codes, table)
        for name in MODEL_NAMES:
            alone[name].learn_codes_many(X, LabelCodes(codes, table))
            shared[name].learn_codes_many(X, coded)
    X = batches[0][0]
    for name in MODEL_NAMES:
        assert alone[name].predict_many(X).tolist() == shared[name].predict_many(X).tolist()


@pytest.mark.parametrize("name", ["sgd", "logistic", "pa", "perceptron", "nb"])
def test_linear_models_are_fast(name: str) -> None:
    # A loose bound on CPU time: unloaded these run at 300k-500k frames/s, and
    # 130k on a saturated 2-CPU box; a per-frame ``partial_fit`` loop manages a
    # few hundred. So it catches per-frame work without flaking under load (the
    # exact check is the call count in ``test_sgd_partial_fit_called_once_per_batch``).
    X, y = make_blobs(["a", "b", "c", "d", "e"], 50_000, seed=3)
    model = make_model(name)
    start = time.process_time()
    for i in range(0, len(X), 4096):
        model.predict_many(X[i : i + 4096])
        model.learn_many(X[i : i + 4096], y[i : i + 4096])
    rate = len(X) / max(time.process_time() - start, 1e-9)
    assert rate > 25_000, f"{name}: {rate:.0f} frames/s"


def test_sgd_growth_keeps_existing_decisions() -> None:
    model = wm.LinearSGD()
    X, y = make_blobs(["a", "b"], 1000, seed=4)
    model.learn_many(X, y)
    before = model._scores(X)
    capacity = model._capacity
    model._grow(capacity + 5)
    np.testing.assert_array_equal(model._scores(X), before)
    # The new rows are copies of a never-seen class: they score every frame low.
    full = model._est.decision_function(X)
    assert full.shape == (len(X), capacity + 5)
    assert np.all(full[:, capacity:] < full[:, :2].max(axis=1, keepdims=True))


def test_sgd_new_labels_force_growth_and_are_learned() -> None:
    model = wm.LinearSGD(loss="log_loss")
    labels = [f"c{i}" for i in range(12)]
    for i in range(1, len(labels) + 1):
        X, y = make_blobs(labels[:i], 800, seed=20 + i)
        model.learn_many(X, y)
    assert model._capacity >= 13
    X, y = make_blobs(labels, 2000, seed=5)
    assert np.mean(model.predict_many(X) == y) > 0.95
    np.testing.assert_allclose(model.predict_proba_many(X).sum(axis=1), 1.0)


def test_naive_bayes_streamed_matches_batch_fit() -> None:
    # Classes arrive out of order (c, then a, then b), so rows are inserted
    # before and between existing ones; the result must equal one batch fit.
    X1, y1 = make_blobs(["c"], 500, seed=6)
    X2, y2 = make_blobs(["a", "c"], 500, seed=7)
    X3, y3 = make_blobs(["b", "a", "c"], 500, seed=8)
    model = wm.NaiveBayes(classes=("a", "b", "c", "unused"))
    for X, y in ((X1, y1), (X2, y2), (X3, y3)):
        model.learn_many(X, y)
    X_all, y_all = np.vstack([X1, X2, X3]), np.concatenate([y1, y2, y3])
    reference = GaussianNB(var_smoothing=1e-9).fit(X_all, y_all)
    X_test, _ = make_blobs(["a", "b", "c"], 300, seed=9)
    X_test = X_test * 0.3  # between the classes, where probabilities are not all 0/1
    proba = model.predict_proba_many(X_test)
    assert model.classes_ == ("a", "b", "c", "unused")
    np.testing.assert_allclose(proba[:, 3], 0.0)
    np.testing.assert_allclose(proba[:, :3], reference.predict_proba(X_test), atol=1e-6)


def test_forest_cost_per_batch_stays_flat() -> None:
    model = wm.SlidingForest(n_trees=5, max_samples=512, min_samples=128)
    rng = np.random.default_rng(10)
    fitted, alive = [], []
    for X, y in _stream(200, 1024, seed=11):
        # Batch sizes vary; the cost must not follow them, nor the stream length.
        size = int(rng.integers(1, 1024))
        model.learn_many(X[:size], y[:size])
        fitted.append(model.cost.last_samples_fitted)
        alive.append(model.cost.units)
    assert max(fitted) <= 512 and max(alive) == 5
    assert alive[-150:] == [5] * 150
    assert model.cost.fit_calls <= 200
    # Cost in the last 50 batches is no higher than in batches 20-70.
    assert sum(fitted[-50:]) <= 1.2 * sum(fitted[20:70])


def test_forest_follows_drift() -> None:
    model = wm.SlidingForest(n_trees=4, max_samples=1024)
    stream = _stream(30, 1024, seed=12)
    for X, y in stream[:15]:
        model.learn_many(X, y)
    swap = {"dns": "tls", "tls": "dns", "http": "http", "portscan": "portscan"}
    drifted = [(X, np.array([swap[v] for v in y], dtype=object)) for X, y in stream[15:]]
    for X, y in drifted[:6]:  # n_trees + 2 batches: every old tree is gone
        model.learn_many(X, y)
    X, y = drifted[-1]
    assert np.mean(model.predict_many(X) == y) > 0.9


def test_bad_inputs_raise() -> None:
    model = wm.LinearSGD()
    X, y = make_blobs(["a", "b"], 100)
    model.learn_many(X, y)
    with pytest.raises(ModelError, match="trained on 20 features, got 5"):
        model.predict_many(X[:, :5])
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.learn_many(bad, y)
    with pytest.raises(ValueError, match="y must be 1-D with 100 labels"):
        model.learn_many(X, y[:50])
    with pytest.raises(ValueError, match="None"):
        model.learn_many(X[:2], np.array(["a", None], dtype=object))
    assert model.n_learned == 100


# -- the checks themselves can fail --------------------------------------------------------


class _Mutating(wm.MajorityBaseline):
    def learn_many(self, X: ArrayLike, y: ArrayLike) -> None:
        super().learn_many(X, y)
        np.asarray(y)[:1] = "oops"


class _NoNewClasses(wm.LinearSGD):
    def learn_many(self, X: ArrayLike, y: ArrayLike) -> None:
        y = np.asarray(y)
        keep = np.isin(y, ["a", "b"])
        super().learn_many(np.asarray(X)[keep], y[keep])


class _PerFrame(wm.NaiveBayes):
    def learn_many(self, X: ArrayLike, y: ArrayLike) -> None:
        X, y = np.asarray(X), np.asarray(y)
        for i in range(0, len(X), 512):
            super().learn_many(X[i : i + 512], y[i : i + 512])


@pytest.mark.parametrize(
    ("model", "check"),
    [
        (_Mutating(), check_inputs_not_mutated),
        (_NoNewClasses(), check_new_class),
        (_PerFrame(), check_batch_learning),
    ],
    ids=["mutates-y", "ignores-new-class", "fits-in-pieces"],
)
def test_checks_catch_broken_learners(model: OnlineClassifier, check: Any) -> None:
    with pytest.raises((AssertionError, ValueError)):
        check(model)


# -- anomaly detection --------------------------------------------------------------------


def _normal_traffic(n: int, rng: np.random.Generator, d: int = 8) -> NDArray[np.float64]:
    centres = np.random.default_rng(100).normal(0, 3, size=(3, d))
    return centres[rng.integers(0, 3, n)] + rng.normal(size=(n, d))


@pytest.mark.parametrize(
    "params", wm.AnomalyDetector._unit_test_params(), ids=lambda p: str(p.get("method", "iforest"))
)
def test_anomaly_detector_finds_injected_anomalies(params: dict[str, Any]) -> None:
    rng = np.random.default_rng(13)
    detector = wm.AnomalyDetector(**params, seed=1)
    grace = detector.grace_frames
    for start in range(0, grace, 400):  # grace: learn only
        X = _normal_traffic(min(400, grace - start), rng)
        assert not detector.alerts_many(X).any()
        np.testing.assert_array_equal(detector.score_many(X), 0.0)
        assert detector.in_grace and detector.threshold_ is None
        detector.learn_many(X)
    assert not detector.in_grace and detector.threshold_ is not None
    scores, truth, alerts = [], [], []
    for _ in range(10):  # test-then-train, with 2% anomalies injected
        X = _normal_traffic(1000, rng)
        bad = rng.random(1000) < 0.02
        X[bad] = rng.uniform(-12, 12, size=(int(bad.sum()), X.shape[1]))
        scores.append(detector.score_many(X))
        alerts.append(detector.alerts_many(X))
        truth.append(bad)
        detector.learn_many(X)
    s, t, a = np.concatenate(scores), np.concatenate(truth), np.concatenate(alerts)
    assert roc_auc_score(t, s) >= 0.9
    np.testing.assert_array_equal(a, s > detector.threshold_)
    assert a[t].mean() > 0.5 and a[~t].mean() < 0.05


def test_anomaly_threshold_follows_documented_rule() -> None:
    rng = np.random.default_rng(14)
    detector = wm.AnomalyDetector(
        grace_frames=1500, window=1000, threshold_quantile=0.99, threshold_margin=0.5
    )
    X = _normal_traffic(1500, rng)
    detector.learn_many(X)
    grace_scores = detector.score_many(X[-1000:])  # the window holds the last 1000 frames
    q = np.quantile(grace_scores, 0.99)
    assert detector.threshold_ == pytest.approx(q + 0.5 * (q - np.median(grace_scores)))


def test_anomaly_cost_is_bounded() -> None:
    # adapt: after the grace the forest keeps refitting (on frames below the threshold).
    detector = wm.AnomalyDetector(
        method="iforest",
        grace_frames=500,
        n_trees=16,
        tree_samples=128,
        refit_frames=1000,
        refit_trees=4,
        adapt=True,
    )
    rng = np.random.default_rng(15)
    per_batch = []
    for _ in range(60):
        detector.learn_many(_normal_traffic(700, rng))
        per_batch.append(detector.cost.last_samples_fitted)
    assert max(per_batch[1:]) <= 4 * 128
    assert detector.cost.units == 16


def test_anomaly_config_errors() -> None:
    with pytest.raises(ConfigError, match="method must be one of 'iforest', 'ocsvm'"):
        wm.AnomalyDetector(method="kitsune")
    with pytest.raises(ConfigError, match="n_components"):
        wm.AnomalyDetector(method="ocsvm", grace_frames=10, n_components=64)


# -- registry ----------------------------------------------------------------------------


def test_parse_model_list() -> None:
    assert parse_model_list("sgd,rf") == ["sgd", "rf"]
    assert parse_model_list("") == list(MODEL_NAMES)
    assert parse_model_list(" all ") == list(MODEL_NAMES)
    assert parse_model_list("RF, baseline,rf") == ["rf", "baseline"]
    assert "baseline" not in MODEL_NAMES
    with pytest.raises(ConfigError, match=r"unknown model 'svn'.*sgd, svm, logistic"):
        parse_model_list("sgd,svn")


def test_make_model_validates() -> None:
    assert isinstance(make_model("rf", seed=3, n_trees=2), wm.SlidingForest)
    with pytest.raises(ConfigError, match="unknown model 'xgb'; choose from: sgd"):
        make_model("xgb")
    with pytest.raises(ConfigError, match="has no parameter 'n_tress'; its parameters are"):
        make_model("rf", n_tress=5)
    with pytest.raises(ConfigError, match="loss must be one of 'hinge', 'log_loss'"):
        make_model("sgd", loss="hinge2")
    with pytest.raises(ConfigError, match="seed must be >= 0"):
        make_model("nb", seed=-1)
    with pytest.raises(ConfigError, match="duplicate"):
        make_model("pa", classes=["a", "a"])


def test_exported_names() -> None:
    mine = {
        "AnomalyDetector",
        "Cost",
        "KernelSVM",
        "LinearSGD",
        "MODEL_NAMES",
        "MajorityBaseline",
        "NaiveBayes",
        "OnlineClassifier",
        "OnlineLogistic",
        "OnlinePerceptron",
        "PassiveAggressive",
        "SlidingForest",
        "load_model",
        "load_models",
        "make_model",
        "parse_model_list",
        "save_model",
        "save_models",
    }
    assert mine <= set(wm.__all__)
    assert all(hasattr(wm, name) for name in wm.__all__)


# -- persistence -------------------------------------------------------------------------


def _trained(name: str = "rf") -> OnlineClassifier:
    model = make_model(name)
    for X, y in _stream(3, 1024, seed=16):
        model.learn_many(X, y)
    return model


def test_detector_save_load_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(17)
    detector = wm.AnomalyDetector(grace_frames=600, refit_frames=500)
    detector.learn_many(_normal_traffic(700, rng))
    wm.save_model(detector, tmp_path / "det.skops")
    loaded = wm.load_model(tmp_path / "det.skops")
    assert isinstance(loaded, wm.AnomalyDetector)
    X = _normal_traffic(500, rng)
    np.testing.assert_array_equal(loaded.score_many(X), detector.score_many(X))
    for d in (detector, loaded):
        d.learn_many(X)
        d.learn_many(X)
    np.testing.assert_array_equal(loaded.score_many(X), detector.score_many(X))
    assert loaded.threshold_ == detector.threshold_


def test_allow_list() -> None:
    assert _allowed("wirelearn.models._forest.SlidingForest")
    assert _allowed("sklearn.linear_model._stochastic_gradient.SGDClassifier")
    assert _allowed("numpy.ndarray")
    for name in (
        "posix.system",
        "os.system",
        "builtins.eval",
        "numpy.load",  # a function, not a class
        "sklearn.linear_model._base.make_dataset",
        "sklearn.tree._tree.Tree",  # skops: unchecked node indices
        "sklearn.tree._classes.DecisionTreeClassifier",  # module not on the list
        "wirelearn.models._persist.Path",
        "numpy.ctypeslib.nonexistent",
    ):
        assert not _allowed(name), name


def test_file_naming_os_system_is_refused(tmp_path: Path) -> None:
    model = _trained("sgd")
    model.hook = os.system  # type: ignore[attr-defined]
    path = tmp_path / "evil.skops"
    sio.dump(model, path)
    assert "system" in " ".join(sio.get_untrusted_types(file=path))
    with pytest.raises(ModelError, match=r"evil\.skops: refusing to load.*system"):
        wm.load_model(path)


class Trap:
    """Records any construction: a loader that trusts it would run this code."""

    fired: list[str] = []  # noqa: RUF012 - deliberately shared: it is the side effect

    def __setstate__(self, state: dict[str, Any]) -> None:
        Trap.fired.append("setstate")

    def __new__(cls, *args: Any) -> Trap:
        Trap.fired.append("new")
        return super().__new__(cls)


def test_type_outside_allow_list_is_never_constructed(tmp_path: Path) -> None:
    model = _trained("nb")
    model.extra = Trap()  # type: ignore[attr-defined]
    Trap.fired.clear()
    path = tmp_path / "trap.skops"
    sio.dump(model, path)
    with pytest.raises(ModelError, match=r"outside the allow-list: .*Trap"):
        wm.load_model(path)
    assert Trap.fired == []


def test_unimported_module_in_file_is_never_imported(tmp_path: Path) -> None:
    # A module whose import leaves a mark; the file names a class in it.
    mark = tmp_path / "imported.txt"
    (tmp_path / "h4_evil_module.py").write_text(
        f"open({str(mark)!r}, 'w').write('ran')\nclass Payload:\n    pass\n"
    )
    model = _trained("logistic")
    model.extra = Trap()  # type: ignore[attr-defined]
    path = tmp_path / "model.skops"
    sio.dump(model, path)
    Trap.fired.clear()
    # Rename the Trap node to a class in the unimported module.
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    schema = json.loads(members["schema.json"])
    node = schema["content"]["content"]["extra"]
    assert node["__class__"] == "Trap"
    node["__module__"], node["__class__"] = "h4_evil_module", "Payload"
    members["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(ModelError, match=r"h4_evil_module\.Payload"):
            wm.load_model(path)
    finally:
        sys.path.remove(str(tmp_path))
    assert not mark.exists() and "h4_evil_module" not in sys.modules
    assert Trap.fired == []


def test_corrupt_files_are_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.skops"
    wm.save_model(_trained("pa"), good)
    data = good.read_bytes()
    cases = {
        "truncated.skops": data[: len(data) // 2],
        "empty.skops": b"",
        "garbage.skops": bytes(range(256)) * 8,
    }
    # A valid zip whose schema is not JSON.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("schema.json", "{not json")
    cases["badschema.skops"] = buffer.getvalue()
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ModelError, match=name.replace(".", r"\.")):
            wm.load_model(tmp_path / name)
    with pytest.raises(ModelError, match="cannot read model file"):
        wm.load_model(tmp_path / "missing.skops")
    sio.dump({"not": "a model"}, tmp_path / "dict.skops")
    with pytest.raises(ModelError, match="holds a dict, not a model"):
        wm.load_model(tmp_path / "dict.skops")


def test_malformed_tree_is_refused(tmp_path: Path) -> None:
    model = _trained("rf")
    assert isinstance(model, wm.SlidingForest)
    tree = model._trees[0]
    internal = np.flatnonzero(tree.left >= 0)[0]
    tree.left[internal] = 10**6  # out of range: must not reach the predictor
    wm.save_model(model, tmp_path / "rf.skops")
    with pytest.raises(ModelError, match="malformed tree"):
        wm.load_model(tmp_path / "rf.skops")


def test_save_and_load_models_with_manifest(tmp_path: Path) -> None:
    models = {"sgd": _trained("sgd"), "rf": _trained("rf"), "baseline": _trained("baseline")}
    detector = wm.AnomalyDetector(grace_frames=500)
    detector.learn_many(_stream(1, 600, seed=18)[0][0])
    features = [f"f{i}" for i in range(10)]
    manifest = wm.save_models(
        tmp_path / "run", {**models, "anomaly": detector}, feature_names=features
    )
    written = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert [m["name"] for m in written["models"]] == ["sgd", "rf", "baseline", "anomaly"]
    assert written["feature_names"] == features
    assert written["models"][0]["classes"] == list(models["sgd"].classes_)
    assert manifest.models[3].type == "AnomalyDetector"

    loaded = wm.load_models(tmp_path / "run", feature_names=features)
    X, _ = _stream(1, 300, seed=19)[0]
    for name, model in models.items():
        restored = loaded[name]
        assert isinstance(restored, OnlineClassifier)
        np.testing.assert_array_equal(restored.predict_many(X), model.predict_many(X))
    assert wm.read_manifest(tmp_path / "run").feature_names == tuple(features)

    with pytest.raises(ModelError, match="trained on features"):
        wm.load_models(tmp_path / "run", feature_names=features[::-1])
    with pytest.raises(ConfigError, match=r"model name '\.\./x'"):
        wm.save_models(tmp_path / "run2", {"../x": models["sgd"]})
    with pytest.raises(ConfigError, match="10 features but 2 feature names"):
        wm.save_models(tmp_path / "run3", models, feature_names=["a", "b"])

    # A tampered manifest cannot point outside the directory, nor swap models.
    written["models"][0]["name"] = "../../etc/passwd"
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(written))
    with pytest.raises(ModelError, match="model name"):
        wm.load_models(tmp_path / "run")
    written["models"][0]["name"] = "rf"
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(written))
    with pytest.raises(ModelError, match="does not match its manifest entry 'rf'"):
        wm.load_models(tmp_path / "run")
    (tmp_path / "run" / "manifest.json").write_text("[]")
    with pytest.raises(ModelError, match="not a wirelearn-models manifest"):
        wm.load_models(tmp_path / "run")


def test_forest_float32_walk_matches_the_float64_walk() -> None:
    # float32 inputs go through scikit-learn's compiled Tree.apply on trees rebuilt from
    # the flat arrays; float64 inputs through the numpy walk. Every float32 value is a
    # float64 value, compared with the same thresholds: the same leaves, so the same
    # shares up to float32 rounding, and the same predictions.
    batches = _stream(12, 2000, seed=11, d=16)
    model = make_model("rf", seed=4)
    for X, y in batches:
        model.learn_many(X.astype(np.float32), y)
    X32 = np.concatenate([X for X, _ in batches[:3]]).astype(np.float32)
    p32 = model.predict_proba_many(X32)
    p64 = model.predict_proba_many(X32.astype(np.float64))
    np.testing.assert_allclose(p32, p64, atol=1e-6)
    assert p32.dtype == np.float64
    codes, labels = model.predict_codes_many(X32)
    np.testing.assert_array_equal(codes, np.argmax(p32, axis=1))
    assert [labels[c] for c in codes[:50]] == model.predict_many(X32[:50]).tolist()
    # A value on a threshold (as near as float32 gets) must go the same way in both walks.
    t = model._trees[0]  # type: ignore[attr-defined]
    inner = np.flatnonzero(t.left >= 0)
    edge = X32[:64].copy()
    edge[:, t.feature[inner[0]]] = np.float32(t.threshold[inner[0]])
    np.testing.assert_allclose(
        model.predict_proba_many(edge), model.predict_proba_many(edge.astype(np.float64)), atol=1e-6
    )


def test_all_finite_fast_check_agrees_with_isfinite() -> None:
    from wirelearn.models._base import all_finite

    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        X = rng.normal(size=(300, 7)).astype(dtype)
        assert all_finite(X) and all_finite(np.asfortranarray(X)) and all_finite(X[:, ::2])
        for bad in (np.nan, np.inf, -np.inf):
            Y = X.copy()
            Y[123, 4] = bad
            assert not all_finite(Y)
        # Row sums that overflow although every value is finite: the exact check decides.
        big = np.full((3, 4), np.finfo(dtype).max / 2, dtype=dtype)
        assert all_finite(big)
        # inf + -inf in one row sums to NaN: still caught.
        Y = X.copy()
        Y[5, 0], Y[5, 1] = np.inf, -np.inf
        assert not all_finite(Y)
    assert all_finite(np.zeros((0, 3))) and all_finite(np.zeros((4, 0)))
