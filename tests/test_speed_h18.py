"""The fast prediction paths of the linear models, the kernel SVM and naive Bayes.

Each is checked against the computation it replaced (``np.argmax`` over the
masked ``(n, k)`` scores) or against scikit-learn itself, on real traffic: the
scenario captures replayed through the CLI's own pipeline, with every default
model, comparing every prediction call of the run. One differing frame fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import FIXTURES
from numpy.typing import NDArray
from sklearn.naive_bayes import GaussianNB

from wirelearn import cli
from wirelearn.models import _base as base_module
from wirelearn.models import _evaluate as evaluate_module
from wirelearn.models._anomaly import AnomalyDetector
from wirelearn.models._base import argmax_classes
from wirelearn.models._bayes import NaiveBayes
from wirelearn.models._linear import MAP_ROWS, KernelSVM, LinearSGD, _SGDFamily, rbf_scores_t

SCENARIOS = FIXTURES / "scenarios"

# --- argmax_classes ----------------------------------------------------------------------------


def _reference_argmax(scores: NDArray[Any], allowed: NDArray[np.bool_] | None) -> NDArray[np.intp]:
    masked = scores.astype(np.float64)
    if allowed is not None:
        masked[~allowed] = -np.inf
    out: NDArray[np.intp] = np.argmax(masked, axis=0)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 2, 3, 10, 13, 300])
def test_argmax_classes_equals_numpy_argmax_with_ties_and_masks(dtype: type, k: int) -> None:
    rng = np.random.default_rng(k)
    n = 3000
    smooth: NDArray[Any] = rng.standard_normal((k, n)).astype(dtype)
    # Few distinct values: most columns hold ties, which go to the first class.
    tied: NDArray[Any] = rng.integers(-2, 3, (k, n)).astype(dtype)
    for scores in (smooth, tied, np.zeros((k, n), dtype=dtype)):
        masks: list[NDArray[np.bool_] | None] = [None, np.ones(k, dtype=bool)]
        masks += [rng.random(k) < p for p in (0.2, 0.5, 0.9)]
        masks.append(np.zeros(k, dtype=bool))
        for allowed in masks:
            got = argmax_classes(scores, allowed)
            assert got.dtype == np.intp and got.shape == (n,)
            np.testing.assert_array_equal(got, _reference_argmax(scores, allowed))


def test_argmax_classes_of_no_frames() -> None:
    assert argmax_classes(np.zeros((4, 0), dtype=np.float32)).shape == (0,)
    assert argmax_classes(np.zeros((1, 0))).shape == (0,)


# --- the models against the code they replaced, on real traffic --------------------------------


def _sklearn_codes(model: _SGDFamily, X: NDArray[Any]) -> tuple[NDArray[np.intp], NDArray[Any]]:
    """scikit-learn's own float64 decision (masked as the model masks it) and each row's margin."""
    X64 = np.asarray(X, dtype=np.float64)
    inputs = model._transformer.transform(X64) if isinstance(model, KernelSVM) else X64
    k = len(model.classes_)
    scores = model._est.decision_function(inputs)[:, :k]
    scores[:, model._counts[:k] == 0] = -np.inf
    top2 = -np.sort(-scores, axis=1)[:, :2] if k > 1 else np.c_[scores, np.full(len(X), -np.inf)]
    margin = (top2[:, 0] - top2[:, 1]) / (1.0 + np.abs(scores[np.isfinite(scores)]).max())
    codes: NDArray[np.intp] = np.argmax(scores, axis=1)
    return codes, margin


def _reference_codes(
    model: Any, X: NDArray[Any], clear_frames: list[int]
) -> NDArray[np.intp] | None:
    """What ``model.predict_codes_many(X)`` must return (None: not a model checked here).

    Linear models: ``np.argmax`` over their masked ``(n, k)`` scores, chunk by
    chunk, exactly; and scikit-learn's own float64 ``decision_function``
    wherever its best two labels are not within float32 rounding of each other
    (``clear_frames`` counts those frames and all frames).
    """
    if not len(X) or not getattr(model, "_ready", lambda: False)():
        return None
    if isinstance(model, _SGDFamily):
        out = np.empty(len(X), dtype=np.intp)
        rows = base_module.PREDICT_ROWS  # read now: a test changes it
        for i in range(0, len(X), rows):
            out[i : i + rows] = np.argmax(model._scores(X[i : i + rows]), axis=1)
        theirs, margin = _sklearn_codes(model, X)
        clear = margin > 1e-4
        clear_frames[0] += int(clear.sum())
        clear_frames[1] += len(X)
        np.testing.assert_array_equal(out[clear], theirs[clear])
        return out
    if isinstance(model, NaiveBayes):
        # The bar for naive Bayes: scikit-learn's own prediction from the same state.
        held: NDArray[np.intp] = model._nb.predict(np.asarray(X, dtype=np.float64))
        return held
    return None


def _replay_checking(
    monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> dict[str, tuple[int, int]]:
    """Run ``wirelearn replay`` checking each prediction call; per model ``(calls, frames)``."""
    checked: dict[str, tuple[int, int]] = {}
    clear_frames = [0, 0]
    real = evaluate_module.Evaluator._predict_codes

    def predict(self: evaluate_module.Evaluator, model: Any, X: NDArray[Any]) -> NDArray[np.int64]:
        want = _reference_codes(
            model, X, clear_frames
        )  # before: the model has not learned this step yet
        got = real(self, model, X)
        if want is not None:
            labels = self.classes.labels
            expected = np.array([labels.index(model.classes_[c]) for c in want.tolist()])
            np.testing.assert_array_equal(got, expected, err_msg=type(model).__name__)
            calls, frames = checked.get(type(model).__name__, (0, 0))
            checked[type(model).__name__] = (calls + 1, frames + len(X))
        return got

    monkeypatch.setattr(evaluate_module.Evaluator, "_predict_codes", predict)
    assert cli.main(["replay", "--no-ui", *argv]) == 0
    # scikit-learn's float64 decision was compared on nearly every frame.
    assert clear_frames[0] > 0.99 * clear_frames[1], clear_frames
    return checked


@pytest.mark.parametrize(
    ("capture", "labels"),
    [("mixed", True), ("mixed", False), ("portscan", False), ("synflood", True)],
)
def test_predictions_equal_the_replaced_code_on_scenario_captures(
    monkeypatch: pytest.MonkeyPatch, capture: str, labels: bool
) -> None:
    argv = [str(SCENARIOS / f"{capture}.pcap"), "--batch-size", "4096"]
    if labels:
        argv += ["--labels", str(SCENARIOS / f"{capture}.labels.csv")]
    checked = _replay_checking(monkeypatch, argv)
    # Every default model of these kinds was checked on (nearly) every frame.
    kinds = {"LinearSGD", "OnlineLogistic", "PassiveAggressive", "OnlinePerceptron", "KernelSVM"}
    assert kinds | {"NaiveBayes"} <= set(checked), checked
    assert min(frames for _, frames in checked.values()) > 1000


def test_predictions_in_small_chunks_equal_the_replaced_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Chunked prediction (``PREDICT_ROWS``) goes through the same per-chunk code.
    monkeypatch.setattr(base_module, "PREDICT_ROWS", 999)
    checked = _replay_checking(
        monkeypatch,
        [str(SCENARIOS / "mixed.pcap"), "--batch-size", "8192", "--models", "sgd,nb,svm"],
    )
    assert {"LinearSGD", "NaiveBayes", "KernelSVM"} <= set(checked)


# --- edge cases of the fast paths --------------------------------------------------------------


def _with_reference(
    model: Any, X: NDArray[Any], reference: Callable[[NDArray[Any]], NDArray[np.intp]]
) -> None:
    codes, table = model.predict_codes_many(X)
    assert table == model.classes_
    np.testing.assert_array_equal(codes, reference(X))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_never_learned_labels_are_never_predicted(dtype: type) -> None:
    rng = np.random.default_rng(2)
    X: NDArray[Any] = rng.standard_normal((5000, 7)).astype(dtype)
    y = np.where(X[:, 0] > 0, "b", "d").astype(object)
    model = LinearSGD(classes=("a", "b", "c", "d", "e"), max_fit=None)
    model.learn_many(X, y)
    codes, _ = model.predict_codes_many(X)
    assert set(np.unique(codes).tolist()) <= {1, 3}
    _with_reference(model, X, lambda Z: np.argmax(model._scores(Z), axis=1))


def test_linear_overflowing_scores_take_numpys_argmax() -> None:
    """Finite inputs whose scores overflow float32: the exact old semantics, not an error."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((400, 5)).astype(np.float32)
    y = np.where(X[:, 1] > 0, "p", "q").astype(object)
    model = LinearSGD(classes=("p", "q", "r"), max_fit=None)
    model.learn_many(X, y)
    big = X * np.float32(3e38 / np.abs(X).max())
    with np.errstate(over="ignore", invalid="ignore"):
        scores = model._scores(big)
        codes, _ = model.predict_codes_many(big)
    assert not np.isfinite(scores[:, :2]).all()  # the case under test: some scores overflow
    np.testing.assert_array_equal(codes, np.argmax(scores, axis=1))
    with pytest.raises(ValueError, match="NaN or infinity"):
        model.predict_codes_many(np.full((3, 5), np.nan, dtype=np.float32))


def test_kernel_svm_predictions_equal_the_masked_argmax() -> None:
    rng = np.random.default_rng(8)
    X = rng.standard_normal((3000, 9)).astype(np.float32)
    y = np.array(["u", "v", "w"], dtype=object)[(X[:, 0] > 0).astype(int) + (X[:, 1] > 1)]
    for approximation in ("rff", "nystroem"):
        model = KernelSVM(approximation=approximation, warmup_frames=300, classes=("z", "u"))
        model.learn_many(X, y)

        def reference(Z: NDArray[Any], m: KernelSVM = model) -> NDArray[np.intp]:
            out: NDArray[np.intp] = np.argmax(m._scores(Z), axis=1)
            return out

        _with_reference(model, X, reference)


def test_naive_bayes_first_batch_without_any_variance_predicts_without_warnings() -> None:
    """Every feature constant in the first batch: scikit-learn's epsilon is 0 and it divides by 0."""
    X0 = np.array([[1.0, 2.0, -3.0]] * 6)
    y0 = np.array(["a", "b", "a", "a", "b", "a"], dtype=object)
    nb = NaiveBayes(max_fit=None)
    nb.learn_many(X0, y0)
    assert nb._nb.epsilon_ == 0.0 and not nb._nb.var_.any()
    probe = np.array([[1.0, 2.0, -3.0], [1.5, 2.0, -3.0], [0.0, 0.0, 0.0]])
    # pytest turns RuntimeWarnings into errors: none may be raised.
    proba = nb.predict_proba_many(probe)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # Identical rows for both classes: the priors decide (4 "a", 2 "b").
    np.testing.assert_allclose(proba[0], [4 / 6, 2 / 6])
    assert nb.predict_many(probe).tolist() == ["a", "a", "a"]
    # Later batches with variance: "b" frames far away are learned and predicted.
    X1 = np.array([[9.0, 9.0, 9.0], [9.5, 8.5, 9.0], [8.5, 9.5, 9.0]])
    nb.learn_many(X1, np.array(["b"] * 3, dtype=object))
    got = nb.predict_many(np.array([[1.0, 2.0, -3.0], [9.0, 9.0, 9.0], [9.2, 8.9, 9.0]]))
    assert got.tolist() == ["a", "b", "b"]


@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_naive_bayes_matches_gaussian_nb_far_from_the_origin(offset: float) -> None:
    """Centred products: features with a large common offset keep scikit-learn's argmax."""
    rng = np.random.default_rng(11)
    k, d = 6, 40
    centre = rng.normal(0, 2, (k, d)) + offset
    codes = rng.integers(0, k, 20_000)
    X = (centre[codes] + rng.standard_normal((len(codes), d)) * 1.5).astype(np.float32)
    names = np.array([f"c{i}" for i in range(k)], dtype=object)
    nb = NaiveBayes(max_fit=None)
    nb.learn_many(X[:10_000], names[codes[:10_000]])
    ref = GaussianNB().fit(X[:10_000].astype(np.float64), codes[:10_000])
    test = X[10_000:]
    got, table = nb.predict_codes_many(test)
    np.testing.assert_array_equal(np.array(table)[got], names[ref.predict(test.astype(np.float64))])
    order = [nb.classes_.index(f"c{c}") for c in ref.classes_.tolist()]
    np.testing.assert_allclose(
        nb.predict_proba_many(test)[:, order],
        ref.predict_proba(test.astype(np.float64)),
        rtol=1e-9,
        atol=1e-300,
    )


# --- the transposed kernel maps (column-major inputs) ------------------------------------------


@pytest.mark.parametrize("approximation", ["rff", "nystroem"])
def test_transposed_kernel_map_scores_match_scikit_learn(approximation: str) -> None:
    """Column-major inputs take the transposed map: the float64 scores within float32 rounding."""
    from sklearn.kernel_approximation import Nystroem, RBFSampler

    rng = np.random.default_rng(5)
    X64 = rng.standard_normal((MAP_ROWS + 3000, 23))
    transformer = (
        RBFSampler(gamma=0.05, n_components=64, random_state=1)
        if approximation == "rff"
        else Nystroem(gamma=0.05, n_components=40, random_state=1)
    ).fit(X64[:500])
    coef = rng.standard_normal((7, transformer.transform(X64[:1]).shape[1]))
    want = coef @ transformer.transform(X64).T
    by_column = np.asfortranarray(X64.astype(np.float32))
    by_row = np.ascontiguousarray(by_column)
    got = rbf_scores_t(transformer, by_column, coef)
    assert got.flags.c_contiguous and got.dtype == np.float32
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * scale)
    # The row-major path (``rbf_map``) agrees as closely.
    np.testing.assert_allclose(rbf_scores_t(transformer, by_row, coef), want, atol=2e-5 * scale)


def test_anomaly_scores_of_column_and_row_major_frames_agree() -> None:
    rng = np.random.default_rng(9)
    X = rng.standard_normal((12_000, 15)).astype(np.float32)
    X[-500:] += 6.0  # an attack unlike the grace period
    det = AnomalyDetector(method="ocsvm", grace_frames=4000, seed=2)
    det.learn_many(X[:4000])
    assert det.threshold_ is not None
    by_column, by_row = np.asfortranarray(X), np.ascontiguousarray(X)
    a, b = det.score_many(by_column), det.score_many(by_row)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max())
    far = np.abs(b - det.threshold_) > 1e-4 * np.abs(b).max()
    np.testing.assert_array_equal((a > det.threshold_)[far], (b > det.threshold_)[far])
    assert (a[-500:] > det.threshold_).mean() > 0.9
