"""Unsupervised online anomaly scores per frame, with a Kitsune-style grace period.

As in Kitsune (Mirsky et al., NDSS 2018) the detector learns what normal
traffic looks like during a grace period at the start of the stream, assumed
attack-free, and then only scores: an attack that arrives later can never
become part of "normal" by being learned. (``adapt=True`` lets it keep
following slow drift, from frames that raised no alert only.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from wirelearn.errors import ConfigError, ModelError
from wirelearn.models._base import (
    Cost,
    Estimator,
    as_float,
    check_choice,
    check_float,
    check_int,
    check_outputs,
)
from wirelearn.models._forest import MAX_STACK_DEPTH, FlatTree, TreeStack
from wirelearn.models._linear import rbf_map, rbf_scores_t

__all__ = ["ANOMALY_METHODS", "AnomalyDetector"]

ANOMALY_METHODS = ("iforest", "ocsvm")
_EULER_GAMMA = 0.5772156649015329


def _average_path_length(n: NDArray[np.float64]) -> NDArray[np.float64]:
    """c(n): the mean depth of an unsuccessful search in a binary tree of ``n`` points."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    big = n > 2
    out[n == 2] = 1.0
    out[big] = 2.0 * (np.log(n[big] - 1.0) + _EULER_GAMMA) - 2.0 * (n[big] - 1.0) / n[big]
    return out


class AnomalyDetector(Estimator):
    """An online anomaly detector: higher score = more anomalous.

    The first ``grace_frames`` frames are only learned (Kitsune's grace
    period), exactly that many whatever the batch sizes: they fill a ring
    buffer of the last ``window`` frames, and when the grace ends the model is
    fitted on that window and the alert threshold is set from the scores of
    the window's frames::

        q = quantile(grace_scores, threshold_quantile)
        threshold_ = q + threshold_margin * (q - median(grace_scores))

    i.e. a high quantile pushed out by a multiple of its distance from the
    median. Unlike "quantile times a margin" this works whatever the sign and
    scale of the scores (the one-class SVM's scores are mostly negative). The
    defaults give Kitsune's rule: the highest score of a grace frame.

    After the grace period the model is fixed, as in Kitsune: later frames are
    scored, never learned, so an attack cannot teach the detector that it is
    normal. With ``adapt=True`` the detector keeps learning after the grace,
    but only from frames whose score is at most ``threshold_``; they enter
    the window, and every ``refit_frames`` of them ``refit_trees`` trees are
    regrown (``"iforest"``) or the SVM takes a step (``"ocsvm"``).

    Methods:
        ``"ocsvm"`` (the default): an RBF one-class SVM made online: a
        ``Nystroem`` map with ``n_components`` landmarks fitted on the grace
        window, then ``SGDOneClassSVM``. Score: minus its decision function,
        computed as one matrix product in the input's precision. Frames far from
        every landmark score highest (up to the SVM's offset), which is what an
        attack unlike anything in the grace period looks like.

        ``"iforest"``: an isolation forest. ``n_trees`` trees, each grown by
        scikit-learn on ``tree_samples`` frames of the window and flattened into
        arrays; scored with all trees walked at once (``TreeStack``), at a cost
        per frame of about ``n_trees * log2(tree_samples)`` node visits. Score:
        ``2 ** (-mean normalised path length)`` in ``(0, 1)``. With many
        features and few of them telling, paths rarely split on the telling
        ones, so its scores separate less than the SVM's.

    Args:
        method: ``"ocsvm"`` or ``"iforest"``.
        grace_frames: frames learned before scoring and alerting start.
        window: frames kept for (re)fitting.
        n_trees: iforest: trees kept.
        tree_samples: iforest: frames each tree is grown on.
        refit_frames: with ``adapt``: learned frames between two updates.
        refit_trees: with ``adapt``, iforest: trees replaced by each update.
        n_components: ocsvm: landmarks of the kernel map.
        nu: ocsvm: upper bound on the share of training frames outside the boundary.
        threshold_quantile: quantile of the grace scores the threshold starts from.
        threshold_margin: how far past that quantile the threshold sits (see above).
        adapt: keep learning after the grace period, from frames below the threshold.
        seed: random seed.
    """

    def __init__(
        self,
        *,
        method: str = "ocsvm",
        grace_frames: int = 1000,
        window: int = 4096,
        n_trees: int = 32,
        tree_samples: int = 256,
        refit_frames: int = 2048,
        refit_trees: int = 8,
        n_components: int = 32,
        nu: float = 0.05,
        threshold_quantile: float = 1.0,
        threshold_margin: float = 0.0,
        adapt: bool = False,
        seed: int = 0,
    ) -> None:
        self.method = check_choice("method", method, ANOMALY_METHODS)
        self.grace_frames = check_int("grace_frames", grace_frames, low=2)
        self.window = check_int("window", window, low=2)
        self.n_trees = check_int("n_trees", n_trees, low=1)
        self.tree_samples = check_int("tree_samples", tree_samples, low=2, high=2**MAX_STACK_DEPTH)
        self.refit_frames = check_int("refit_frames", refit_frames, low=1)
        self.refit_trees = check_int("refit_trees", refit_trees, low=1, high=n_trees)
        self.n_components = check_int("n_components", n_components, low=1)
        self.nu = check_float("nu", nu, low=0.0, high=1.0, low_open=True)
        self.threshold_quantile = check_float(
            "threshold_quantile", threshold_quantile, low=0.0, high=1.0
        )
        self.threshold_margin = check_float("threshold_margin", threshold_margin, low=0.0)
        if not isinstance(adapt, bool):
            raise ConfigError(f"adapt must be True or False, got {adapt!r}")
        self.adapt = adapt
        self.seed = check_int("seed", seed, low=0, high=2**32 - 1)
        if method == "ocsvm" and min(grace_frames, window) < n_components:
            # The Nystroem landmarks are drawn from the grace window.
            raise ConfigError(
                f"grace_frames ({grace_frames}) and window ({window}) must be >= "
                f"n_components ({n_components}) with method='ocsvm'"
            )
        #: The alert threshold, set when the grace period ends (``None`` before).
        self.threshold_: float | None = None
        self.cost = Cost()
        self._n_learned = 0
        self._n_features: int | None = None
        self._ring: NDArray[np.float64] | None = None
        self._ring_pos = 0
        self._ring_fill = 0
        self._since_refit = 0
        self._trees: list[FlatTree] = []
        self._trees_fitted = 0
        self._kernel_map: Any = None
        self._svm: Any = None
        # The trees stacked for scoring (derived, never saved).
        self._stack: TreeStack | None = None
        self._stack_key: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_stack"] = state["_stack_key"] = None
        return state

    @property
    def n_learned(self) -> int:
        """Frames learned so far (the grace frames, and with ``adapt`` the normal ones after)."""
        return self._n_learned

    @property
    def n_features_in_(self) -> int | None:
        """Feature count fixed by the first non-empty batch (``None`` before)."""
        return self._n_features

    @property
    def in_grace(self) -> bool:
        """Whether the grace period is still running (no scores, no alerts)."""
        return self.threshold_ is None

    # -- learning -----------------------------------------------------------------------

    def learn_many(self, X: ArrayLike) -> None:
        """Learn from one mini-batch (unsupervised); an empty batch is a no-op.

        During the grace period the frames up to the ``grace_frames``-th are
        learned, and the grace ends on that frame; after it, nothing is learned
        unless ``adapt`` (then only frames scoring at most ``threshold_``).

        Args:
            X: ``float[n, d]`` features (not modified).
        """
        Xf = self._check_x(X, finite=False)
        if len(Xf) == 0:
            return
        self.cost.learn_calls += 1
        self.cost.last_samples_fitted = 0
        if not (self.in_grace or self.adapt):
            return  # fixed after the grace period (see the class docstring)
        self._n_features = Xf.shape[1]
        if self.threshold_ is None:  # the grace period
            part = as_float(Xf[: self.grace_frames - self._n_learned])
            self._push(part)
            self._n_learned += len(part)
            if self._n_learned >= self.grace_frames:
                self._end_grace()
            return
        normal = Xf[self._score(Xf) <= self.threshold_]
        if not len(normal):
            return
        self._push(normal)
        self._n_learned += len(normal)
        self._since_refit += len(normal)
        if self._since_refit < self.refit_frames:
            return
        self._since_refit = 0
        if self.method == "ocsvm":
            self._svm.partial_fit(rbf_map(self._kernel_map, self._window_frames()))
            self._count_fit(self._ring_fill)
        else:
            self._grow_trees(self.refit_trees)

    def _end_grace(self) -> None:
        window = self._window_frames()
        if self.method == "iforest":
            self._grow_trees(self.n_trees)
        else:
            from sklearn.kernel_approximation import Nystroem
            from sklearn.linear_model import SGDOneClassSVM

            self._kernel_map = Nystroem(
                kernel="rbf",
                gamma=self._gamma(window),
                n_components=self.n_components,
                random_state=self.seed,
            ).fit(window)
            self._svm = SGDOneClassSVM(nu=self.nu, random_state=self.seed)
            self._svm.partial_fit(rbf_map(self._kernel_map, window))
            self._count_fit(len(window))
            self.cost.units = 1
        scores = self._score(window)
        q = float(np.quantile(scores, self.threshold_quantile))
        self.threshold_ = q + self.threshold_margin * (q - float(np.median(scores)))
        self._since_refit = 0

    @staticmethod
    def _gamma(X: NDArray[np.float64]) -> float:
        var = float(X.var())
        d = int(X.shape[1])
        return 1.0 / (d * var) if var > 0 else 1.0 / d

    def _grow_trees(self, count: int) -> None:
        """Grow ``count`` isolation trees on the window; drop the oldest beyond ``n_trees``."""
        # Imported here: sklearn.ensemble costs a quarter second of start-up, and
        # only the "iforest" method needs it.
        from sklearn.ensemble import IsolationForest

        window = self._window_frames()
        psi = min(self.tree_samples, len(window))
        rng = np.random.default_rng([self.seed, self._trees_fitted])
        forest = IsolationForest(
            n_estimators=count, max_samples=psi, random_state=int(rng.integers(2**31 - 1))
        ).fit(window)
        norm = float(_average_path_length(np.array([psi]))[0]) or 1.0
        for est, features in zip(forest.estimators_, forest.estimators_features_, strict=True):
            tree = est.tree_
            # compute_node_depths counts the root as 1; path lengths count edges.
            depth = tree.compute_node_depths() - 1.0
            path = depth + _average_path_length(tree.n_node_samples)
            self._trees.append(
                FlatTree.from_sklearn(
                    tree, (path / norm)[:, None], np.zeros(1, dtype=np.intp), features
                )
            )
        self._trees_fitted += count
        del self._trees[: -self.n_trees]
        self.cost.units = len(self._trees)
        self._count_fit(count * psi, fits=1)

    def _count_fit(self, n_samples: int, fits: int = 1) -> None:
        self.cost.fit_calls += fits
        self.cost.samples_fitted += n_samples
        self.cost.last_samples_fitted += n_samples

    def _push(self, X: NDArray[Any]) -> None:
        if self._ring is None:
            self._ring = np.empty((self.window, X.shape[1]))
        tail = X[-self.window :]
        index = (self._ring_pos + np.arange(len(tail))) % self.window
        self._ring[index] = tail
        self._ring_pos = int((self._ring_pos + len(tail)) % self.window)
        self._ring_fill = min(self.window, self._ring_fill + len(tail))

    def _window_frames(self) -> NDArray[np.float64]:
        assert self._ring is not None  # only called after a non-empty batch
        return self._ring[: self._ring_fill]

    # -- scoring ------------------------------------------------------------------------

    def score_many(self, X: ArrayLike) -> NDArray[np.float64]:
        """Anomaly scores, ``float64[n]``, higher = more anomalous; 0 during the grace period."""
        Xf = self._check_x(X, finite=False)
        if self.in_grace or len(Xf) == 0:
            return np.zeros(len(Xf))
        return self._score(Xf)

    def alerts_many(self, X: ArrayLike) -> NDArray[np.bool_]:
        """Whether each frame's score is above ``threshold_``; all ``False`` during grace."""
        Xf = self._check_x(X, finite=False)
        if self.threshold_ is None or len(Xf) == 0:
            return np.zeros(len(Xf), dtype=bool)
        return self._score(Xf) > self.threshold_

    def _stacked(self) -> TreeStack:
        if getattr(self, "_stack_key", None) != self._trees_fitted or self._stack is None:
            self._stack = TreeStack(self._trees, [t.value for t in self._trees])
            self._stack_key = self._trees_fitted
        return self._stack

    def _score(self, X: NDArray[Any]) -> NDArray[np.float64]:
        if self.method == "ocsvm":
            # SGDOneClassSVM.decision_function is Z @ coef_ - offset_; the score is minus that.
            decision = rbf_scores_t(self._kernel_map, X, self._svm.coef_[None, :])[0]
            out: NDArray[np.float64] = float(self._svm.offset_[0]) - decision.astype(np.float64)
            check_outputs(out, X)
            return out
        as_float(X)  # the trees would send NaN down a branch without a word
        path = self._stacked().sum_values(X)[:, 0]
        scores: NDArray[np.float64] = 2.0 ** (-path / len(self._trees))
        return scores

    def _check_x(self, X: ArrayLike, *, finite: bool = True) -> NDArray[Any]:
        arr = np.asarray(X)
        if arr.ndim != 2 or arr.dtype.kind not in "fiub":
            raise ValueError(f"X must be a 2-D numeric array, got {arr.dtype} {arr.shape}")
        if len(arr) and self._n_features is not None and arr.shape[1] != self._n_features:
            raise ModelError(
                f"AnomalyDetector was trained on {self._n_features} features, got {arr.shape[1]}"
            )
        return as_float(arr, finite=finite)

    def _check_state(self) -> None:
        super()._check_state()
        d = self._n_features
        fitted = (self.method == "iforest" and bool(self._trees)) or self._svm is not None
        ok = (
            (self.threshold_ is None) != fitted
            and (self.threshold_ is None or np.isfinite(self.threshold_))
            and (
                self._ring is None
                or (
                    self._ring.shape == (self.window, d)
                    and 0 <= self._ring_pos < self.window
                    and 0 <= self._ring_fill <= self.window
                )
            )
            and len(self._trees) <= self.n_trees
            and all(isinstance(t, FlatTree) for t in self._trees)
            and all(isinstance(t.depth, int) and t.depth <= MAX_STACK_DEPTH for t in self._trees)
        )
        if ok and self._kernel_map is not None:
            # ``rbf_map`` reads these arrays directly: their shapes must be what it expects.
            km, m = self._kernel_map, self.n_components
            svm = self._svm
            ok = all(
                isinstance(a, np.ndarray) and a.shape == shape
                for a, shape in (
                    (km.components_, (m, d)),
                    (km.normalization_, (m, m)),
                    (getattr(svm, "coef_", None), (m,)),
                    (getattr(svm, "offset_", None), (1,)),
                )
            )
        if not ok:
            raise ModelError("saved AnomalyDetector has inconsistent state")
        for tree in self._trees:
            tree.validate(d or 0, 1)

    @classmethod
    def _unit_test_params(cls) -> list[dict[str, Any]]:
        return [
            {"method": "iforest", "grace_frames": 1000, "window": 2048, "n_trees": 32},
            {"grace_frames": 1000, "n_components": 32},
        ]
