"""Gaussian naive Bayes over mini-batches, wrapped around ``GaussianNB.partial_fit``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from wirelearn.errors import ModelError
from wirelearn.models._base import (
    OnlineClassifier,
    argmax_classes,
    check_float,
    check_int,
    check_outputs,
)

__all__ = ["NaiveBayes"]

#: Rows of the float64 copies ``_joint_t`` makes at a time (they stay in cache).
_NB_ROWS = 2048
#: Class means further than this from the origin (in some feature) are centred first.
#: Nearer (the feature pipeline's standardised features), the expanded squares of
#: unit-scale features lose at most about two digits of a float64, and centring
#: would cost a pass over every block (measured 80 ns per frame).
_CENTRE_FROM = 16.0


def _zero_var_floor(theta: NDArray[np.float64], var_smoothing: float) -> float:
    """The variance a class gets for a feature with none, at prediction.

    Only happens when every feature of the first batch was constant:
    scikit-learn adds ``var_smoothing`` times the largest variance of each
    batch to every variance, which is then 0, and its likelihood divides by
    zero (NaN scores and a RuntimeWarning). Here such a variance is
    ``var_smoothing`` (at least 1e-12) times the squared scale of the class
    means (at least 1): a class still wins where its constant values are
    matched exactly, and loses quickly away from them.
    """
    scale = max(1.0, float(np.max(theta * theta)) if theta.size else 1.0)
    return max(var_smoothing, 1e-12) * scale


def _partial_fit(nb: Any, X: NDArray[np.float64], codes: NDArray[np.intp]) -> None:
    """``nb.partial_fit(X, codes)`` for a fitted ``GaussianNB`` that holds every class of ``codes``.

    The same arithmetic in the same order as scikit-learn's ``_partial_fit``
    and ``_update_mean_variance``, so the same results to the last bit: each
    class's mean and variance come from its rows in stream order, as one
    row-major block (what ``X[y == c]`` gives), and the merge with the past
    statistics is the same formula, for all classes at once. What goes is
    scikit-learn's fixed cost (validation, a mask and a copy per class), a few
    milliseconds per call.
    """
    eps = nb.var_smoothing * np.max(np.var(X, axis=0))
    nb.epsilon_ = eps
    nb.var_[:, :] -= eps  # scikit-learn takes the new epsilon out, then puts it back
    # Rows grouped by class, stream order kept within a class: one sort, one copy.
    order = np.argsort(codes, kind="stable")
    cls = codes[order]
    starts = np.flatnonzero(np.r_[True, cls[1:] != cls[:-1]]).tolist()
    Xs = X[order]
    ends = [*starts[1:], len(cls)]
    new_mu = np.stack([np.mean(Xs[a:b], axis=0) for a, b in zip(starts, ends, strict=True)])
    new_var = np.stack([np.var(Xs[a:b], axis=0) for a, b in zip(starts, ends, strict=True)])
    rows = np.searchsorted(nb.classes_, cls[starts])
    n_new = np.diff([*starts, len(cls)])[:, None]
    n_past = nb.class_count_[rows][:, None]
    mu, var = nb.theta_[rows], nb.var_[rows]
    n_total = n_past + n_new
    total_mu = (n_new * new_mu + n_past * mu) / n_total
    ssd = n_past * var + n_new * new_var + (n_new * n_past / n_total) * (mu - new_mu) ** 2
    total_var = ssd / n_total
    first = n_past[:, 0] == 0  # a class's first frames: the batch statistics as they are
    total_mu[first], total_var[first] = new_mu[first], new_var[first]
    nb.theta_[rows], nb.var_[rows] = total_mu, total_var
    nb.class_count_[rows] += n_new[:, 0]
    nb.var_[:, :] += eps
    nb.class_prior_ = nb.class_count_ / np.sum(nb.class_count_)


class NaiveBayes(OnlineClassifier):
    """Gaussian naive Bayes learned online, registered as ``nb``.

    scikit-learn's ``GaussianNB`` holds one row of means and variances per
    class, fixed at the first ``partial_fit``. This wrapper gives it only the
    classes it has actually seen (a class with no frames would have a prior
    of zero), and inserts a row for a new class when its first frames arrive
    (``_insert_classes``). Known classes not yet seen get probability 0.

    A batch larger than ``max_fit`` is sampled uniformly (so the class counts,
    which are the priors, keep their proportions). Prediction expands the
    Gaussian log-likelihood ``sum((x - mu)^2 / var)`` into two matrix products
    instead of one pass over the batch per class.

    Args:
        var_smoothing: share of the largest feature variance added to every
            variance, for numerical stability.
        max_fit: the most frames one ``learn_many`` fits (a uniform sample); None
            fits every frame.
        classes: labels known up front.
        seed: seeds the sampling of large batches.
    """

    def __init__(
        self,
        *,
        var_smoothing: float = 1e-9,
        max_fit: int | None = 4096,
        classes: Sequence[str] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(classes=classes, seed=seed)
        self.var_smoothing = check_float("var_smoothing", var_smoothing, low=0.0)
        self.max_fit = None if max_fit is None else check_int("max_fit", max_fit, low=1)
        self._nb: Any = None

    @property
    def has_proba(self) -> bool:
        return True

    def learn_many(self, X: ArrayLike, y: ArrayLike) -> None:
        """Learn from one mini-batch with a single ``partial_fit`` call.

        Args:
            X: ``float[n, d]`` features (not modified).
            y: ``object[n]`` string labels (not modified).
        """
        batch = self._begin_learn(X, y, limit=self.max_fit, balanced=False)
        if batch is None:
            return
        X64, codes = batch
        X64 = np.asarray(X64, dtype=np.float64)
        present = np.unique(codes)
        if self._nb is None:
            from sklearn.naive_bayes import GaussianNB

            self._nb = GaussianNB(var_smoothing=self.var_smoothing)
            self._nb.partial_fit(X64, codes, classes=present)
        else:
            new = np.setdiff1d(present, self._nb.classes_)
            if new.size:
                self._insert_classes(new)
            _partial_fit(self._nb, X64, codes)
        self.cost.units = 1
        self._count_fit(len(X64))

    def _insert_classes(self, new: NDArray[np.intp]) -> None:
        """Add rows for classes about to be learned for the first time.

        ``GaussianNB`` keeps ``classes_`` sorted and indexes its arrays with
        ``searchsorted``, so rows are inserted in sorted position. Their mean
        and variance are overwritten by the coming ``partial_fit`` (a class
        with no past frames takes the batch statistics as they are); the
        variance starts at ``epsilon_`` because ``partial_fit`` subtracts it
        from every row before updating.
        """
        nb = self._nb
        merged = np.union1d(nb.classes_, new)
        old = np.isin(merged, nb.classes_)
        theta = np.zeros((len(merged), nb.theta_.shape[1]))
        var = np.full_like(theta, nb.epsilon_)
        count = np.zeros(len(merged))
        theta[old], var[old], count[old] = nb.theta_, nb.var_, nb.class_count_
        nb.classes_, nb.theta_, nb.var_, nb.class_count_ = merged, theta, var, count
        nb.class_prior_ = count / count.sum()

    def _ready(self) -> bool:
        return self._nb is not None

    def _joint(self, X: NDArray[Any]) -> NDArray[np.float64]:
        """``GaussianNB``'s joint log-likelihood, ``(n, classes held)`` (a view of ``_joint_t``)."""
        out: NDArray[np.float64] = self._joint_t(X).T
        return out

    def _terms(
        self,
    ) -> tuple[
        NDArray[np.float64] | None, NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]
    ]:
        """``(centre, quad, lin, const)`` of the joint log-likelihood, for every class held.

        Class ``c``'s is ``const_c + quad_c @ (x - centre)**2 + lin_c @ (x - centre)``:
        ``GaussianNB``'s ``log prior - 0.5 sum(log(2 pi var) + (x - mu)^2 / var)``
        expanded around ``centre``: the mean of the class means when that is far
        from the origin (some ``|centre_j| > _CENTRE_FROM``), which keeps the
        terms small, else 0 (``None``). On real traffic the joint
        log-likelihoods reach 1e10 where a class has a tiny variance, so they
        are good to about 1e-5 absolute (scikit-learn's own are no better); the
        argmax is scikit-learn's on the test data and on every frame of the
        1M-frame benchmark capture.
        """
        nb = self._nb
        var = nb.var_
        if not (var > 0).all():
            var = np.where(var > 0, var, _zero_var_floor(nb.theta_, self.var_smoothing))
        inv = 1.0 / var
        mean: NDArray[np.float64] = nb.theta_.mean(axis=0)
        centre, mu = None, nb.theta_
        # Close to the origin (the feature pipeline's standardised features), centring
        # would cost a pass over every block and gain no digit that matters.
        if np.abs(mean).max(initial=0.0) > _CENTRE_FROM:
            centre, mu = mean, mu - mean
        # The -0.5 goes into the weights: a power of two, so the products are exact halves.
        quad = -0.5 * inv
        lin = mu * inv
        with np.errstate(divide="ignore"):
            const = np.log(nb.class_prior_) - 0.5 * np.log(2.0 * np.pi * var).sum(axis=1)
        const -= 0.5 * np.einsum("ij,ij->i", mu * mu, inv)
        return centre, quad, lin, const

    def _joint_t(self, X: NDArray[Any]) -> NDArray[np.float64]:
        """The joint log-likelihood class-major, ``(classes held, n)``, in float64 (see ``_terms``).

        Two matrix products for all classes; a test checks the probabilities
        against scikit-learn's to 1e-9.
        """
        centre, quad, lin, const = self._terms()
        joint = np.empty((len(const), len(X)))
        quad_t, lin_t = quad.T, lin.T
        # Row blocks that stay in cache: the float64 copies are made block by block, in X's
        # own layout (measured: as fast as the class-major products of X.T).
        for lo in range(0, len(X), _NB_ROWS):
            x = np.asarray(X[lo : lo + _NB_ROWS], dtype=np.float64)
            if centre is not None:
                x = x - centre  # not in place: a float64 X is not copied
            block = (x * x) @ quad_t
            block += x @ lin_t
            np.add(block.T, const[:, None], out=joint[:, lo : lo + _NB_ROWS])
        return joint

    _checks_outputs = True

    def _predict_codes(self, X: NDArray[Any]) -> NDArray[np.intp]:
        # float64: with float32 scores (and a rounding bound, rescoring the unsure frames) a
        # tenth of real frames were unsure (tiny variances: the expanded terms cancel).
        joint = self._joint_t(X)
        held = np.asarray(self._nb.classes_, dtype=np.intp)
        if check_outputs(joint, X):
            out: NDArray[np.intp] = held[argmax_classes(joint)]
        else:
            out = held[np.argmax(joint, axis=0)]
        return out

    def predict_proba_many(self, X: ArrayLike) -> NDArray[np.float64]:
        """Posterior probabilities, ``float64[n, len(classes_)]``; unseen known classes get 0."""
        X64 = self._check_x(X)
        if not self._ready() or len(X64) == 0:
            return self._fallback_proba(len(X64))
        joint = self._joint(X64)
        joint = joint - joint.max(axis=1, keepdims=True)
        seen = np.exp(joint)
        seen /= seen.sum(axis=1, keepdims=True)
        proba = np.zeros((len(X64), len(self._labels)))
        proba[:, self._nb.classes_] = seen
        return proba

    def _check_state(self) -> None:
        super()._check_state()
        if self._nb is None:
            return
        nb_classes = np.asarray(getattr(self._nb, "classes_", []))
        if (
            nb_classes.ndim != 1
            or nb_classes.dtype.kind not in "iu"
            or not np.all((nb_classes >= 0) & (nb_classes < len(self._labels)))
            or np.asarray(self._nb.theta_).shape != (len(nb_classes), self._n_features)
            or np.asarray(self._nb.var_).shape != (len(nb_classes), self._n_features)
            or np.asarray(self._nb.class_prior_).shape != (len(nb_classes),)
        ):
            raise ModelError("saved NaiveBayes has an inconsistent class table")
