"""Linear online learners (SGD family) and an online kernel SVM, wrapped around ``partial_fit``.

scikit-learn fixes the class list on the first ``partial_fit``, yet a label
never seen before can arrive at any time. The wrappers therefore train
scikit-learn on integer codes ``0..capacity-1`` where ``capacity`` is larger
than the number of labels known: the spare one-vs-rest rows learn "never this
class", exactly what a known-but-unseen class learns, and a new label takes
the next spare row. When the spares run out the rows are copied into a larger
table (see ``_SGDFamily._grow``). Keeping ``capacity >= 3`` also keeps
scikit-learn in its multiclass mode, so one class, two classes and many
classes go through the same code.

Cost per mini-batch is bounded: each learner fits at most ``max_fit`` frames
of a batch (sampled evenly over the batch's labels, see
``OnlineClassifier._fit_rows``) in one ``partial_fit`` step, and predicts
with one matrix product in the input's own precision (``float32`` from the
feature pipeline), without scikit-learn's per-call validation.

After the first call, the ``partial_fit`` step is taken without scikit-learn's
per-call overhead (``_fast_partial_fit``): its one-vs-rest loop is run here,
sequentially, calling the same per-class ``fit_binary`` with the same seeds,
so each row it fits is bit for bit what ``partial_fit`` makes of it (a test
checks it), at a third of the cost for a batch of a thousand frames. Spare
rows but the last are not fitted (``_SGDFamily._fit_rows_of``). Within that
loop, what ``fit_binary`` derives anew on every call (seeds, penalty and
schedule codes, the per-class targets, its dataset wrapper) is derived once
(``_DirectSGD``), and its compiled SGD is called directly: at the start of a
stream a mini-batch is learned in dozens of small steps (see ``_evaluate``),
and that per-call work was a third of each step's cost. A learner checks
once, on its first such step, that the direct call gives exactly what
``fit_binary`` gives, and otherwise keeps ``fit_binary``.

scikit-learn is imported when a learner first needs it, not with this
module: a command that never learns starts a second sooner.
"""

from __future__ import annotations

import abc
import copy
import functools
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from wirelearn.errors import ConfigError, ModelError
from wirelearn.models._base import (
    OnlineClassifier,
    argmax_classes,
    check_choice,
    check_float,
    check_int,
    check_outputs,
    feature_major,
)

__all__ = [
    "MAX_FIT",
    "KernelSVM",
    "LinearSGD",
    "OnlineLogistic",
    "OnlinePerceptron",
    "PassiveAggressive",
]

SGD_LOSSES = ("hinge", "log_loss", "modified_huber", "squared_hinge", "perceptron")
PENALTIES = ("l2", "l1", "elasticnet", None)
LEARNING_RATES = ("optimal", "constant", "invscaling", "adaptive")
#: Losses whose scores scikit-learn turns into probabilities.
_PROBA_LOSSES = ("log_loss", "modified_huber")
#: Default bound on the frames one ``learn_many`` fits.
MAX_FIT = 512


def _check_max_fit(max_fit: int | None) -> int | None:
    return None if max_fit is None else check_int("max_fit", max_fit, low=1)


def _capacity(n_labels: int) -> int:
    """Rows to allocate for ``n_labels``: at least one spare, at least three in all."""
    return max(3, n_labels + 1 + n_labels // 4)


#: Rows mapped at a time when only the scores are wanted: the ``(rows, m)`` map of a
#: whole mini-batch would be tens of megabytes, and this size stays in cache.
MAP_ROWS: Final = 8192


def rbf_map(transformer: Any, X: NDArray[Any], weights: NDArray[Any] | None = None) -> NDArray[Any]:
    """A fitted ``RBFSampler`` or ``Nystroem`` applied to ``X`` in ``X``'s own precision.

    What scikit-learn's ``transform`` computes, as one matrix product and a few
    in-place operations, without its per-call checks (the caller checks ``X``).
    RFF: ``sqrt(2 / m) * cos(X @ W + b)``. Nystroem: ``exp(-gamma * |x - c|^2)``
    for every landmark ``c``, times the normalisation matrix ``N``.

    With ``weights`` (``(m, k)``), returns the map times ``weights``: a linear
    model's scores. For Nystroem that is ``K @ (N @ weights)``, which saves the
    ``(n, m) @ (m, m)`` product with the normalisation matrix. The scores are
    computed ``MAP_ROWS`` rows at a time, so the map is never held whole.
    """
    if weights is None or len(X) <= MAP_ROWS:
        return _rbf_map(transformer, X, weights)
    out = np.empty((len(X), weights.shape[1]), dtype=X.dtype)
    for i in range(0, len(X), MAP_ROWS):
        out[i : i + MAP_ROWS] = _rbf_map(transformer, X[i : i + MAP_ROWS], weights)
    return out


def _rbf_map(transformer: Any, X: NDArray[Any], weights: NDArray[Any] | None) -> NDArray[Any]:
    dtype = X.dtype
    if hasattr(transformer, "random_weights_"):  # RBFSampler (Nystroem has components_)
        m = transformer.random_weights_.shape[1]
        Z: NDArray[Any] = X @ transformer.random_weights_.astype(dtype, copy=False)
        Z += transformer.random_offset_.astype(dtype, copy=False)
        np.cos(Z, out=Z)
        scale = math.sqrt(2.0 / m)
        if weights is None:
            Z *= dtype.type(scale)
            return Z
        # The scale goes into the (m, k) weights rather than over the (n, m) map.
        out: NDArray[Any] = Z @ (weights * scale).astype(dtype, copy=False)
        return out
    landmarks = transformer.components_.astype(dtype, copy=False)
    d2 = X @ landmarks.T
    d2 *= dtype.type(-2.0)
    d2 += np.einsum("ij,ij->i", X, X)[:, None]
    d2 += np.einsum("ij,ij->i", landmarks, landmarks)[None, :]
    np.maximum(d2, 0.0, out=d2)
    d2 *= dtype.type(-transformer.gamma)
    np.exp(d2, out=d2)
    norm = transformer.normalization_.T
    right = norm if weights is None else norm @ weights
    K: NDArray[Any] = d2 @ right.astype(dtype, copy=False)
    return K


def linear_scores_t(X: NDArray[Any], coef: NDArray[Any]) -> NDArray[Any]:
    """``coef @ X.T``, class-major ``(k, n)``, in ``X``'s precision (C-contiguous or a transposed view).

    The orientation follows ``X``'s layout (``feature_major``): the one
    whose operands BLAS reads as they are.
    """
    W = coef.astype(X.dtype, copy=False)
    if feature_major(X):
        out: NDArray[Any] = W @ X.T
        return out
    rows: NDArray[Any] = X @ W.T
    view: NDArray[Any] = rows.T
    return view


def rbf_scores_t(transformer: Any, X: NDArray[Any], coef: NDArray[Any]) -> NDArray[Any]:
    """``coef @ rbf_map(transformer, X).T``: a linear model's class-major scores in kernel space.

    For a feature-major ``X`` (``feature_major``) the map is computed
    transposed, ``(m, n)``, straight from ``X``'s columns, ``MAP_ROWS``
    frames at a time; otherwise ``rbf_map`` row by row and the result is a
    transposed view.
    """
    if not feature_major(X):
        view: NDArray[Any] = rbf_map(transformer, X, coef.T).T
        return view
    out = np.empty((coef.shape[0], len(X)), dtype=X.dtype)
    for i in range(0, len(X), MAP_ROWS):
        out[:, i : i + MAP_ROWS] = _rbf_map_t(transformer, X[i : i + MAP_ROWS].T, coef)
    return out


def _rbf_map_t(transformer: Any, XT: NDArray[Any], coef: NDArray[Any]) -> NDArray[Any]:
    """``coef @ map(X).T`` from ``XT = X.T`` (``(d, n)``, row-major): ``_rbf_map`` transposed."""
    dtype = XT.dtype
    if hasattr(transformer, "random_weights_"):  # RBFSampler
        m = transformer.random_weights_.shape[1]
        Z: NDArray[Any] = transformer.random_weights_.T.astype(dtype) @ XT
        Z += transformer.random_offset_.astype(dtype)[:, None]
        np.cos(Z, out=Z)
        # The scale goes into the (k, m) weights rather than over the (m, n) map.
        scaled = (coef * math.sqrt(2.0 / m)).astype(dtype)
        out: NDArray[Any] = scaled @ Z
        return out
    landmarks = transformer.components_.astype(dtype, copy=False)
    d2 = landmarks @ XT
    d2 *= dtype.type(-2.0)
    d2 += np.einsum("ij,ij->j", XT, XT)[None, :]
    d2 += np.einsum("ij,ij->i", landmarks, landmarks)[:, None]
    np.maximum(d2, 0.0, out=d2)
    d2 *= dtype.type(-transformer.gamma)
    np.exp(d2, out=d2)
    left = coef @ transformer.normalization_
    K: NDArray[Any] = left.astype(dtype) @ d2
    return K


#: The parameters of scikit-learn's private ``fit_binary`` that ``_fast_partial_fit`` passes.
_FIT_BINARY_PARAMS = (
    "est", "i", "X", "y", "alpha", "learning_rate", "max_iter", "pos_weight", "neg_weight",
    "sample_weight", "validation_mask", "random_state",
)  # fmt: skip


def _fit_binary() -> Any:
    """scikit-learn's per-class SGD step, or None unless its signature is the one known here.

    It is private: older releases take a ``C`` argument, and a later one may change
    again, so it is only used when its parameters are exactly ``_FIT_BINARY_PARAMS``.
    """
    from sklearn.linear_model import _stochastic_gradient as _sgd

    fn = getattr(_sgd, "fit_binary", None)
    if fn is None or not hasattr(_sgd, "MAX_INT"):
        return None
    return fn if _known_signature(fn) else None


@functools.lru_cache(maxsize=4)
def _known_signature(fn: Any) -> bool:
    try:
        return tuple(inspect.signature(fn).parameters) == _FIT_BINARY_PARAMS
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class _DirectSGD:
    """``fit_binary`` for one estimator, minus the work it repeats on every call.

    ``fit_binary`` draws two seeds from the class's ``RandomState`` (one for its
    dataset wrapper, which the SGD never uses for sequential passes, one for
    the SGD's shuffle), looks up the penalty and schedule codes, builds the
    class's ``{0, 1}`` or ``{-1, +1}`` targets and a dataset wrapper, then runs
    the compiled SGD. The seeds depend only on ``random_state`` and the number
    of classes, and the codes on the configuration: here they are derived once,
    and the targets of every fitted class built in one vectorized pass.

    Attributes:
        sgd: scikit-learn's compiled ``_plain_sgd`` for ``float64``.
        dataset: its ``ArrayDataset64``.
        seeds: per class ``(dataset seed, SGD seed)``, as ``fit_binary`` draws them.
        penalty: the penalty code.
        schedule: the learning-rate code.
        l1_ratio: ``est._get_l1_ratio()``.
        negative: the target of the other classes (0 for log-loss, else -1).
    """

    sgd: Any
    dataset: Any
    seeds: tuple[tuple[int, int], ...]
    penalty: int
    schedule: int
    l1_ratio: float
    negative: float

    @classmethod
    def make(cls, est: Any) -> _DirectSGD | None:
        """The direct call for a fitted ``est``, or None if scikit-learn's internals differ."""
        try:
            from sklearn._loss._loss import CyHalfBinomialLoss
            from sklearn.linear_model import _stochastic_gradient as _sgd
            from sklearn.utils._seq_dataset import ArrayDataset64

            rs = np.random.RandomState(est.random_state)
            seeds = rs.randint(_sgd.MAX_INT, size=len(est.classes_))
            pairs = []
            for seed in seeds.tolist():
                rs.seed(seed)  # the draws of make_dataset, then of fit_binary
                pairs.append(
                    (int(rs.randint(1, np.iinfo(np.int32).max)), int(rs.randint(_sgd.MAX_INT)))
                )
            binomial = isinstance(est._loss_function_, CyHalfBinomialLoss)
            return cls(
                sgd=_sgd._plain_sgd64,
                dataset=ArrayDataset64,
                seeds=tuple(pairs),
                penalty=est._get_penalty_type(est.penalty),
                schedule=est._get_learning_rate_type(est.learning_rate),
                l1_ratio=float(est._get_l1_ratio()),
                negative=0.0 if binomial else -1.0,
            )
        except (AttributeError, ImportError, TypeError, ValueError):
            return None

    def fit(
        self,
        est: Any,
        i: int,
        X: NDArray[np.float64],
        target: NDArray[np.float64],
        sample_weight: NDArray[np.float64],
        validation_mask: NDArray[np.bool_],
    ) -> tuple[float, float]:
        """One class row's SGD pass, as ``fit_binary`` runs it; returns ``(intercept, n_iter)``.

        ``sample_weight`` (ones) and ``validation_mask`` (all False) are shared by every
        class of a step, as ``fit_binary``'s callers share them.
        """
        dataset = self.dataset(X, target, sample_weight, seed=self.seeds[i][0])
        _, intercept, _, _, n_iter = self.sgd(
            est.coef_[i],  # updated in place, as fit_binary leaves it
            est.intercept_[i],
            None,
            0,
            est._loss_function_,
            self.penalty,
            est.alpha,
            self.l1_ratio,
            dataset,
            validation_mask,
            est.early_stopping,
            None,
            int(est.n_iter_no_change),
            1,
            est.tol if est.tol is not None else -np.inf,
            int(est.fit_intercept),
            int(est.verbose),
            int(est.shuffle),
            self.seeds[i][1],
            1.0,
            1.0,
            self.schedule,
            est.eta0,
            est.power_t,
            0,
            est.t_,
            1.0,
            est.average,
        )
        return float(intercept), float(n_iter)

    def targets(self, y: NDArray[np.intp], rows: Sequence[int]) -> NDArray[np.float64]:
        """``(len(rows), n)``: 1 where ``y`` is the row's class, ``negative`` elsewhere."""
        hit = y[None, :] == np.asarray(rows, dtype=np.intp)[:, None]
        out: NDArray[np.float64] = np.where(hit, 1.0, self.negative)
        return out


def _fast_partial_fit(
    est: Any,
    X: NDArray[Any],
    y: NDArray[np.intp],
    rs: Any,
    rows: Sequence[int],
    direct: _DirectSGD | None = None,
) -> bool:
    """One ``est.partial_fit(X, y)`` of a fitted multiclass SGD classifier, minus its overhead.

    scikit-learn's ``_fit_multiclass`` validates the data, then runs one
    ``fit_binary`` per class through joblib, each making a new ``RandomState``
    from its seed (about 0.1 ms each, for 13 classes more than the SGD on a
    thousand frames). Here the same loop runs sequentially with one
    ``RandomState`` reseeded per class, which draws the same numbers: the
    result is identical. Only the plain configuration is handled (no class or
    sample weights, no averaging, no early stopping, more than two classes);
    for anything else, or a scikit-learn without these internals, this
    returns False and the caller uses ``partial_fit``.

    Only the one-vs-rest rows in ``rows`` are fitted (each exactly as
    ``partial_fit`` fits it: a row's update depends only on its own state,
    seed and ``t_``); the others are left as they are.

    Args:
        est: a fitted ``SGDClassifier`` or ``Perceptron``.
        X: ``float64[n, d]`` C-contiguous, checked finite.
        y: codes among ``est.classes_``.
        rs: a ``numpy.random.RandomState`` to reseed (any state).
        rows: the rows (classes) to fit.
        direct: run the rows through this instead of ``fit_binary`` (the same
            arithmetic, checked by the caller: ``_SGDFamily._direct_sgd``).
    """
    fit_binary = _fit_binary()
    if (
        fit_binary is None
        or not isinstance(est.random_state, int)
        or est.class_weight is not None
        or est.average
        or est.early_stopping
        or len(est.classes_) < 3
        or getattr(est, "_loss_function_", None) is None
        or X.dtype != est.coef_.dtype
    ):
        return False
    n = len(X)
    n_iter = 0.0
    sample_weight = np.ones(n, dtype=X.dtype)
    validation_mask = np.zeros(n, dtype=np.bool_)
    if direct is not None and len(direct.seeds) == len(est.classes_):
        targets = direct.targets(y, rows)
        for j, i in enumerate(rows):
            intercept, n_iter_i = direct.fit(est, i, X, targets[j], sample_weight, validation_mask)
            est.intercept_[i] = intercept
            n_iter = max(n_iter, n_iter_i)
        est.t_ += n_iter * n
        est.n_iter_ = n_iter
        return True
    rs.seed(est.random_state)
    from sklearn.linear_model._stochastic_gradient import MAX_INT

    seeds = rs.randint(MAX_INT, size=len(est.classes_))
    for i in rows:
        rs.seed(int(seeds[i]))
        _, intercept, n_iter_i = fit_binary(
            est,
            i,
            X,
            y,
            est.alpha,
            est.learning_rate,
            1,
            1.0,
            1.0,
            sample_weight,
            validation_mask=validation_mask,
            random_state=rs,
        )
        est.intercept_[i] = intercept
        n_iter = max(n_iter, n_iter_i)
    est.t_ += n_iter * n
    est.n_iter_ = n_iter
    return True


def _check_rate(learning_rate: str, alpha: float, eta0: float) -> None:
    check_choice("learning_rate", learning_rate, LEARNING_RATES)
    check_float("eta0", eta0, low=0.0, low_open=True)
    # scikit-learn's "optimal" schedule divides by alpha.
    if learning_rate == "optimal":
        check_float("alpha (with learning_rate='optimal')", alpha, low=0.0, low_open=True)


class _SGDFamily(OnlineClassifier):
    """One-vs-rest linear models trained with scikit-learn's ``partial_fit``."""

    #: The loss the estimator trains with (subclasses with a fixed loss set it).
    _fixed_loss: ClassVar[str | None] = None

    def __init__(self, *, classes: Sequence[str] | None = None, seed: int = 0) -> None:
        super().__init__(classes=classes, seed=seed)
        self._est: Any = None
        self._capacity = 0
        #: Rows left out of recent fits (see ``_fit_codes``); None: none.
        self._stale: NDArray[np.bool_] | None = None
        #: Set by subclasses: the most frames one ``learn_many`` fits (None: all).
        self.max_fit: int | None = None
        #: The direct SGD call (``_direct_sgd``); None: not checked yet, False: refused.
        self._direct: _DirectSGD | bool | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Holds compiled scikit-learn callables: never saved, derived again after a load.
        state = dict(self.__dict__)
        state.pop("_direct", None)
        return state

    @abc.abstractmethod
    def _new_estimator(self) -> Any:
        """A fresh, unfitted scikit-learn SGD-family classifier."""

    @property
    def _loss_name(self) -> str:
        return self._fixed_loss or str(getattr(self, "loss", "hinge"))

    @property
    def has_proba(self) -> bool:
        return self._loss_name in _PROBA_LOSSES

    def learn_many(self, X: ArrayLike, y: ArrayLike) -> None:
        """Learn from one mini-batch with a single ``partial_fit`` call (of at most ``max_fit`` frames).

        Args:
            X: ``float[n, d]`` features (not modified).
            y: ``object[n]`` string labels (not modified).
        """
        batch = self._begin_learn(X, y, limit=self.max_fit, f64=True)
        if batch is not None:
            self._fit_codes(self._inputs(batch[0]), batch[1])

    def _inputs(self, X: NDArray[Any]) -> NDArray[Any]:
        """What the linear model sees of ``X`` (the kernel SVM maps it first)."""
        return X

    def _project(self, X: NDArray[Any], coef: NDArray[Any]) -> NDArray[Any]:
        """``coef @ _inputs(X).T``, class-major ``(k, n)``, in ``X``'s precision."""
        return linear_scores_t(X, coef)

    def _fit_codes(self, X: NDArray[Any], codes: NDArray[np.intp]) -> None:
        X = np.ascontiguousarray(X, dtype=np.float64)
        n_labels = len(self._labels)
        if self._est is None:
            self._capacity = _capacity(n_labels)
            self._est = self._new_estimator()
            self._est.partial_fit(X, codes, classes=np.arange(self._capacity))
        else:
            if n_labels > self._capacity - 1:
                self._grow(_capacity(n_labels))
            self._fit_rows_of(X, codes)
        self.cost.units = 1
        self._count_fit(len(X))

    def _fit_rows_of(self, X: NDArray[np.float64], codes: NDArray[np.intp]) -> None:
        """One ``partial_fit`` step, leaving out the spare rows but the last.

        Spare rows (past the known labels) only learn "never this class", all
        alike up to the shuffle order, and no prediction reads them; the last
        row stands for them all. So only the rows of known labels and the last
        row are fitted, and a spare row left out takes the last row's state
        when a new label claims it. (Rows of known labels not seen yet are
        still fitted: their state must not depend on how many labels are known,
        or a label that only occurs later in the stream would change earlier
        predictions.)
        """
        est = self._est
        stale = self._stale if self._stale is not None else np.zeros(self._capacity, dtype=bool)
        rows = [*range(len(self._labels)), self._capacity - 1]
        fresh = [r for r in rows if stale[r]]
        if fresh:
            # Spare rows just claimed by new labels: start from the spare's state.
            est.coef_[fresh] = est.coef_[-1]
            est.intercept_[fresh] = est.intercept_[-1]
            stale[fresh] = False
        rs = np.random.RandomState(0)
        if _fast_partial_fit(est, X, codes, rs, rows, self._direct_sgd(X, codes, rows[0])):
            stale[:] = True
            stale[rows] = False
        else:
            left_out = np.flatnonzero(stale)
            est.coef_[left_out] = est.coef_[-1]
            est.intercept_[left_out] = est.intercept_[-1]
            stale[:] = False
            est.partial_fit(X, codes)
        self._stale = stale

    def _direct_sgd(
        self, X: NDArray[np.float64], codes: NDArray[np.intp], row: int
    ) -> _DirectSGD | None:
        """The direct SGD call for this step, or None to go through ``fit_binary``.

        The first time, this step goes through ``fit_binary`` and the direct call
        is tried on a copy of the estimator for ``row``: it is used from the next
        step on only if it gives the same coefficients, intercept and step
        count, bit for bit (else scikit-learn's internals changed: it is never
        tried again).
        """
        direct = getattr(self, "_direct", None)
        if direct is False:
            return None
        if isinstance(direct, _DirectSGD) and len(direct.seeds) == self._capacity:
            return direct
        made = _DirectSGD.make(self._est)
        if made is None or direct is None:
            self._direct = made is not None and self._check_direct(made, X, codes, row)
            return None
        self._direct = made  # a grown table: new seeds, the same (checked) call
        return made

    def _check_direct(
        self, direct: _DirectSGD, X: NDArray[np.float64], codes: NDArray[np.intp], row: int
    ) -> _DirectSGD | bool:
        """``direct`` if it fits ``row`` exactly as ``fit_binary`` does, else False."""
        via, mine = copy.deepcopy(self._est), copy.deepcopy(self._est)
        rs = np.random.RandomState(0)
        try:
            if not (
                _fast_partial_fit(via, X, codes, rs, [row])
                and _fast_partial_fit(mine, X, codes, rs, [row], direct)
            ):
                return False
        except (TypeError, ValueError):
            return False
        same = (
            np.array_equal(via.coef_[row], mine.coef_[row])
            and via.intercept_[row] == mine.intercept_[row]
            and via.t_ == mine.t_
        )
        return direct if same else False

    def _grow(self, capacity: int) -> None:
        """Enlarge the one-vs-rest table to ``capacity`` rows.

        The last row belongs to a label never seen (the invariant keeps one
        spare), so copying it gives each new row the state of a class that was
        known from the start but never appeared. Other rows are untouched, so
        existing decisions do not change. ``coef_``, ``intercept_`` and
        ``classes_`` are the only per-class state of scikit-learn's SGD
        classifiers (class weights are recomputed on every call).
        """
        est = self._est
        extra = capacity - self._capacity
        est.coef_ = np.ascontiguousarray(
            np.vstack([est.coef_, np.repeat(est.coef_[-1:], extra, 0)])
        )
        est.intercept_ = np.concatenate([est.intercept_, np.repeat(est.intercept_[-1:], extra)])
        est.classes_ = np.arange(capacity)
        if self._stale is not None:
            # The new rows are copies of the (never stale) last row.
            self._stale = np.concatenate([self._stale, np.zeros(extra, dtype=bool)])
        self._capacity = capacity

    def _ready(self) -> bool:
        return self._est is not None

    def _class_scores(self, X: NDArray[Any]) -> tuple[NDArray[Any], bool]:
        """Decision values of the known labels, class-major ``(k, n)``, and whether all are finite.

        ``coef_ @ X.T + intercept_[:, None]``: scikit-learn's ``decision_function``
        transposed, in ``X``'s precision and without its per-call checks.
        """
        k = len(self._labels)
        product = self._project(X, self._est.coef_[:k])
        intercept = self._est.intercept_[:k].astype(product.dtype)[:, None]
        if product.flags.c_contiguous:
            product += intercept
            scores = product
        else:
            # A transposed view: the intercept's addition makes the class-major copy.
            scores = np.empty(product.shape, dtype=product.dtype)
            np.add(product, intercept, out=scores)
        return scores, check_outputs(scores, X)

    def _scores(self, X: NDArray[Any]) -> NDArray[Any]:
        """Decision values ``(n, k)`` for the known labels only (spare rows dropped).

        Labels never learned score ``-inf``: a label known up front but never
        learned is never predicted (its row only learned "not this class", and
        would otherwise win where every score is low).
        """
        scores, _ = self._class_scores(X)
        scores[self._counts[: len(scores)] == 0] = -np.inf
        out: NDArray[Any] = scores.T
        return out

    _checks_outputs = True

    def _predict_codes(self, X: NDArray[Any]) -> NDArray[np.intp]:
        """The label with the largest decision value: ``np.argmax(_scores(X), axis=1)``, faster."""
        scores, finite = self._class_scores(X)
        learned = self._counts[: len(scores)] > 0
        if not finite:
            # An overflow: np.argmax over the masked scores, exactly as ``_scores`` defines it.
            scores[~learned] = -np.inf
            out: NDArray[np.intp] = np.argmax(scores, axis=0)
            return out
        return argmax_classes(scores, None if learned.all() else learned)

    def predict_proba_many(self, X: ArrayLike) -> NDArray[np.float64]:
        """Class probabilities for ``log_loss`` and ``modified_huber``, as scikit-learn computes them.

        One-vs-rest scores are mapped to ``[0, 1]`` (logistic, or the clipped
        modified-Huber line) and each row is normalised; a row of zeros becomes
        uniform.

        Raises:
            NotImplementedError: for losses without probabilities (hinge, ...).
        """
        if not self.has_proba:
            raise NotImplementedError(
                f"{type(self).__name__} with loss={self._loss_name!r} has no probabilities; "
                f"use one of {', '.join(_PROBA_LOSSES)}"
            )
        X64 = self._check_x(X)
        if not self._ready() or len(X64) == 0:
            return self._fallback_proba(len(X64))
        scores = self._scores(X64)
        if self._loss_name == "log_loss":
            # tanh form of the logistic function: no overflow warning for large margins.
            proba = 0.5 * (1.0 + np.tanh(0.5 * scores))
        else:
            proba = (np.clip(scores, -1.0, 1.0) + 1.0) / 2.0
        total = proba.sum(axis=1, keepdims=True)
        k = proba.shape[1]
        uniform = np.full_like(proba, 1.0 / k)
        out: NDArray[np.float64] = np.divide(
            proba, total, out=uniform, where=total > 0, casting="unsafe"
        )
        return out

    def _coef_width(self) -> int | None:
        """Number of inputs the linear model sees."""
        return self._n_features

    def _check_state(self) -> None:
        super()._check_state()
        if self._est is None:
            return
        coef = getattr(self._est, "coef_", None)
        if (
            not isinstance(coef, np.ndarray)
            or coef.shape != (self._capacity, self._coef_width())
            or len(self._labels) > self._capacity - 1
        ):
            raise ModelError(f"saved {type(self).__name__} has inconsistent coefficients")
        stale = getattr(self, "_stale", None)
        if stale is not None and (
            not isinstance(stale, np.ndarray)
            or stale.dtype != np.bool_
            or stale.shape != (self._capacity,)
        ):
            raise ModelError(f"saved {type(self).__name__} has an inconsistent row table")


class LinearSGD(_SGDFamily):
    """Linear classifier trained by SGD (scikit-learn ``SGDClassifier``), registered as ``sgd``.

    Hinge loss gives a linear SVM; ``log_loss`` and ``modified_huber`` also give
    probabilities.

    Args:
        loss: one of ``SGD_LOSSES``.
        penalty: ``"l2"``, ``"l1"``, ``"elasticnet"`` or ``None``.
        alpha: regularisation strength.
        learning_rate: ``"optimal"``, ``"constant"``, ``"invscaling"`` or ``"adaptive"``.
        eta0: initial learning rate (unused by ``"optimal"``).
        max_fit: the most frames one ``learn_many`` fits (sampled evenly over the
            batch's labels); None fits every frame.
        classes: labels known up front.
        seed: random seed (shuffling inside each batch).
    """

    def __init__(
        self,
        *,
        loss: str = "hinge",
        penalty: str | None = "l2",
        alpha: float = 1e-4,
        learning_rate: str = "optimal",
        eta0: float = 0.01,
        max_fit: int | None = MAX_FIT,
        classes: Sequence[str] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(classes=classes, seed=seed)
        self.max_fit = _check_max_fit(max_fit)
        self.loss = check_choice("loss", loss, SGD_LOSSES)
        self.penalty = check_choice("penalty", penalty, PENALTIES)
        self.alpha = check_float("alpha", alpha, low=0.0)
        self.learning_rate = learning_rate
        self.eta0 = eta0
        _check_rate(learning_rate, alpha, eta0)

    def _new_estimator(self) -> Any:
        from sklearn.linear_model import SGDClassifier

        return SGDClassifier(
            loss=self.loss,
            penalty=self.penalty,
            alpha=self.alpha,
            learning_rate=self.learning_rate,
            eta0=self.eta0,
            random_state=self.seed,
        )

    @classmethod
    def _unit_test_params(cls) -> list[dict[str, Any]]:
        return [{}, {"loss": "log_loss"}, {"loss": "modified_huber", "classes": ("a", "b")}]


class OnlineLogistic(_SGDFamily):
    """Logistic regression trained online (SGD with ``log_loss``), registered as ``logistic``.

    Args:
        penalty: ``"l2"``, ``"l1"``, ``"elasticnet"`` or ``None``.
        alpha: regularisation strength.
        learning_rate: ``"optimal"``, ``"constant"``, ``"invscaling"`` or ``"adaptive"``.
        eta0: initial learning rate (unused by ``"optimal"``).
        max_fit: the most frames one ``learn_many`` fits (sampled evenly over the
            batch's labels); None fits every frame.
        classes: labels known up front.
        seed: random seed.
    """

    _fixed_loss = "log_loss"

    def __init__(
        self,
        *,
        penalty: str | None = "l2",
        alpha: float = 1e-4,
        learning_rate: str = "optimal",
        eta0: float = 0.01,
        max_fit: int | None = MAX_FIT,
        classes: Sequence[str] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(classes=classes, seed=seed)
        self.max_fit = _check_max_fit(max_fit)
        self.penalty = check_choice("penalty", penalty, PENALTIES)
        self.alpha = check_float("alpha", alpha, low=0.0)
        self.learning_rate = learning_rate
        self.eta0 = eta0
        _check_rate(learning_rate, alpha, eta0)

    def _new_estimator(self) -> Any:
        from sklearn.linear_model import SGDClassifier

        return SGDClassifier(
            loss="log_loss",
            penalty=self.penalty,
            alpha=self.alpha,
            learning_rate=self.learning_rate,
            eta0=self.eta0,
            random_state=self.seed,
        )


class PassiveAggressive(_SGDFamily):
    """Passive-aggressive classifier, registered as ``pa``.

    scikit-learn 1.8 deprecated ``PassiveAggressiveClassifier``; the same
    algorithm is ``SGDClassifier(loss="hinge", penalty=None,
    learning_rate="pa1"|"pa2", eta0=C)``.

    Args:
        C: aggressiveness (PA-I: the largest step; PA-II: the regulariser).
        variant: ``"pa1"`` or ``"pa2"``.
        max_fit: the most frames one ``learn_many`` fits (sampled evenly over the
            batch's labels); None fits every frame.
        classes: labels known up front.
        seed: random seed.
    """

    def __init__(
        self,
        *,
        C: float = 1.0,
        variant: str = "pa1",
        max_fit: int | None = MAX_FIT,
        classes: Sequence[str] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(classes=classes, seed=seed)
        self.max_fit = _check_max_fit(max_fit)
        self.C = check_float("C", C, low=0.0, low_open=True)
        self.variant = check_choice("variant", variant, ("pa1", "pa2"))

    def _new_estimator(self) -> Any:
        from sklearn.linear_model import SGDClassifier

        return SGDClassifier(
            loss="hinge",
            penalty=None,
            learning_rate=self.variant,
            eta0=self.C,
            random_state=self.seed,
        )

    @classmethod
    def _unit_test_params(cls) -> list[dict[str, Any]]:
        return [{}, {"variant": "pa2", "C": 0.5}]


class OnlinePerceptron(_SGDFamily):
    """The perceptron (scikit-learn ``Perceptron``), registered as ``perceptron``.

    Args:
        penalty: ``"l2"``, ``"l1"``, ``"elasticnet"`` or ``None``.
        alpha: regularisation strength (used only with a penalty).
        eta0: learning rate.
        max_fit: the most frames one ``learn_many`` fits (sampled evenly over the
            batch's labels); None fits every frame.
        classes: labels known up front.
        seed: random seed.
    """

    _fixed_loss = "perceptron"

    def __init__(
        self,
        *,
        penalty: str | None = None,
        alpha: float = 1e-4,
        eta0: float = 1.0,
        max_fit: int | None = MAX_FIT,
        classes: Sequence[str] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(classes=classes, seed=seed)
        self.max_fit = _check_max_fit(max_fit)
        self.penalty = check_choice("penalty", penalty, PENALTIES)
        self.alpha = check_float("alpha", alpha, low=0.0)
        self.eta0 = check_float("eta0", eta0, low=0.0, low_open=True)

    def _new_estimator(self) -> Any:
        from sklearn.linear_model import Perceptron

        return Perceptron(
            penalty=self.penalty, alpha=self.alpha, eta0=self.eta0, random_state=self.seed
        )


class KernelSVM(_SGDFamily):
    """An RBF-kernel SVM made online, registered as ``svm``.

    The first ``warmup_frames`` frames are buffered; on them an RBF kernel
    approximation is fitted once (``RBFSampler``, random Fourier features, or
    ``Nystroem``, which samples landmark frames), and from then on every batch
    is mapped through it and learned by hinge-loss SGD. Until the warm-up is
    over the model predicts the majority class seen so far.

    Random Fourier features are the default: they depend on the data only
    through ``gamma``, so they need a short warm-up and represent traffic that
    looks nothing like the warm-up frames (an attack that starts later) as
    well as the rest; Nystroem landmarks drawn from attack-free early traffic
    map every later attack frame close to zero. The map is applied in the
    input's precision (``float32`` from the feature pipeline) with one matrix
    product, the same map for learning and prediction (which computes it
    transposed for a column-major input: ``rbf_scores_t``).

    Args:
        n_components: dimension of the kernel approximation.
        gamma: RBF width; ``None`` means ``1 / (d * var(X))`` on the warm-up frames.
        approximation: ``"rff"`` or ``"nystroem"``.
        warmup_frames: frames buffered before the approximation is fitted
            (Nystroem draws its landmarks among them, so needs at least
            ``n_components``).
        alpha: regularisation strength of the SGD.
        max_fit: the most frames one ``learn_many`` fits (sampled evenly over the
            batch's labels); None fits every frame.
        classes: labels known up front.
        seed: random seed (landmarks or Fourier features, and SGD shuffling).
    """

    def __init__(
        self,
        *,
        n_components: int = 64,
        gamma: float | None = None,
        approximation: str = "rff",
        warmup_frames: int = 256,
        alpha: float = 1e-4,
        max_fit: int | None = MAX_FIT,
        classes: Sequence[str] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(classes=classes, seed=seed)
        self.n_components = check_int("n_components", n_components, low=1)
        self.gamma = None if gamma is None else check_float("gamma", gamma, low=0.0, low_open=True)
        self.approximation = check_choice("approximation", approximation, ("rff", "nystroem"))
        self.warmup_frames = check_int("warmup_frames", warmup_frames, low=1)
        if approximation == "nystroem" and warmup_frames < n_components:
            # Nystroem picks its landmarks among the warm-up frames.
            raise ConfigError(
                f"warmup_frames ({warmup_frames}) must be >= n_components ({n_components}) "
                "with approximation='nystroem'"
            )
        self.alpha = check_float("alpha", alpha, low=0.0, low_open=True)
        self.max_fit = _check_max_fit(max_fit)
        self._transformer: Any = None
        self._buffer_X: list[NDArray[np.float64]] = []
        self._buffer_codes: list[NDArray[np.intp]] = []

    def _new_estimator(self) -> Any:
        from sklearn.linear_model import SGDClassifier

        return SGDClassifier(loss="hinge", alpha=self.alpha, random_state=self.seed)

    def learn_many(self, X: ArrayLike, y: ArrayLike) -> None:
        """Buffer until the warm-up is complete, then learn in kernel space.

        Args:
            X: ``float[n, d]`` features (not modified).
            y: ``object[n]`` string labels (not modified).
        """
        if self._transformer is not None:
            batch = self._begin_learn(X, y, limit=self.max_fit)
            if batch is not None:
                self._fit_codes(self._inputs(batch[0]), batch[1])
            return
        batch = self._begin_learn(X, y)
        if batch is None:
            return
        X64, codes = batch
        self._buffer_X.append(np.array(X64, dtype=np.float64))
        self._buffer_codes.append(codes)
        if self._n_learned < self.warmup_frames:
            return
        warm_X = np.concatenate(self._buffer_X)
        warm_codes = np.concatenate(self._buffer_codes)
        self._buffer_X, self._buffer_codes = [], []
        self._transformer = self._fit_transformer(warm_X)
        rows = self._fit_rows(warm_codes, self.max_fit)
        if rows is not None:
            warm_X, warm_codes = warm_X[rows], warm_codes[rows]
        self._fit_codes(self._inputs(warm_X), warm_codes)

    def _fit_transformer(self, X: NDArray[np.float64]) -> Any:
        gamma = self.gamma
        if gamma is None:
            var = float(X.var())
            gamma = 1.0 / (X.shape[1] * var) if var > 0 else 1.0 / X.shape[1]
        # Imported when first needed: the kernel maps pull in sklearn.metrics (start-up).
        from sklearn.kernel_approximation import Nystroem, RBFSampler

        if self.approximation == "nystroem":
            transformer: Any = Nystroem(
                kernel="rbf", gamma=gamma, n_components=self.n_components, random_state=self.seed
            )
        else:
            transformer = RBFSampler(
                gamma=gamma, n_components=self.n_components, random_state=self.seed
            )
        return transformer.fit(X)

    def _inputs(self, X: NDArray[Any]) -> NDArray[Any]:
        return rbf_map(self._transformer, X)

    def _project(self, X: NDArray[Any], coef: NDArray[Any]) -> NDArray[Any]:
        return rbf_scores_t(self._transformer, X, coef)

    def _coef_width(self) -> int | None:
        return self.n_components

    def _check_state(self) -> None:
        super()._check_state()
        if (self._est is None) != (self._transformer is None):
            raise ModelError("saved KernelSVM has a classifier without its kernel map")
        if self._transformer is not None:
            tr, d, m = self._transformer, self._n_features, self.n_components
            n_in = getattr(tr, "n_features_in_", None)
            if n_in != d:
                raise ModelError("saved KernelSVM kernel map does not match its feature count")
            # ``_inputs`` reads these arrays directly: their shapes must be what it expects.
            if self.approximation == "rff":
                shapes = [(tr.random_weights_, (d, m)), (tr.random_offset_, (m,))]
            else:
                shapes = [(tr.components_, (m, d)), (tr.normalization_, (m, m))]
            if not all(isinstance(a, np.ndarray) and a.shape == shape for a, shape in shapes):
                raise ModelError("saved KernelSVM kernel map has arrays of the wrong shape")

    @classmethod
    def _unit_test_params(cls) -> list[dict[str, Any]]:
        return [
            {"n_components": 30, "warmup_frames": 300, "approximation": "nystroem"},
            {"n_components": 100, "warmup_frames": 300, "gamma": 0.02},
        ]
