"""Gaussian naive Bayes over mini-batches, wrapped around ``GaussianNB.partial_fit``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.naive_bayes import GaussianNB

from wirelearn.errors import ModelError
from wirelearn.models._base import OnlineClassifier, check_float

__all__ = ["NaiveBayes"]


class NaiveBayes(OnlineClassifier):
    """Gaussian naive Bayes learned online, registered as ``nb``.

    scikit-learn's ``GaussianNB`` holds one row of means and variances per
    class, fixed at the first ``partial_fit``. This wrapper gives it only the
    classes it has actually seen (a class with no frames would have a prior
    of zero), and inserts a row for a new class when its first frames arrive
    (``_insert_classes``). Known classes not yet seen get probability 0.

    Args:
        var_smoothing: share of the largest feature variance added to every
            variance, for numerical stability.
        classes: labels known up front.
        seed: accepted for a uniform constructor; naive Bayes is deterministic.
    """

    def __init__(
        self,
        *,
        var_smoothing: float = 1e-9,
        classes: Sequence[str] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(classes=classes, seed=seed)
        self.var_smoothing = check_float("var_smoothing", var_smoothing, low=0.0)
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
        batch = self._begin_learn(X, y)
        if batch is None:
            return
        X64, codes = batch
        present = np.unique(codes)
        if self._nb is None:
            self._nb = GaussianNB(var_smoothing=self.var_smoothing)
            self._nb.partial_fit(X64, codes, classes=present)
        else:
            new = np.setdiff1d(present, self._nb.classes_)
            if new.size:
                self._insert_classes(new)
            self._nb.partial_fit(X64, codes)
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

    def predict_proba_many(self, X: ArrayLike) -> NDArray[np.float64]:
        """Posterior probabilities, ``float64[n, len(classes_)]``; unseen known classes get 0."""
        X64 = self._check_x(X)
        if not self._ready() or len(X64) == 0:
            return self._fallback_proba(len(X64))
        joint = self._nb.predict_joint_log_proba(X64)
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
        ):
            raise ModelError("saved NaiveBayes has an inconsistent class table")
