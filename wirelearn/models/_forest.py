"""A sliding random forest that learns online at bounded cost per batch.

Trees are fitted by scikit-learn, then flattened into plain numpy arrays
(``FlatTree``) and evaluated with a vectorized level-by-level walk. Keeping no
scikit-learn ``Tree`` objects means a saved model holds only arrays, which
``FlatTree.validate`` can bounds-check on load (skops flags
``sklearn.tree._tree.Tree`` as unsafe: its node indices are used unchecked in
C).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.tree import DecisionTreeClassifier

from wirelearn.errors import ModelError
from wirelearn.models._base import OnlineClassifier, check_choice, check_int

__all__ = ["FlatTree", "SlidingForest"]

_MAX_FEATURES = ("sqrt", "log2", None)


@dataclass
class FlatTree:
    """A binary decision tree as arrays: node ``i`` tests ``X[:, feature[i]] <= threshold[i]``.

    Attributes:
        feature: ``intp[n_nodes]`` feature tested (0 at leaves, never used there).
        threshold: ``float64[n_nodes]`` split value.
        left: ``intp[n_nodes]`` left child, ``-1`` at leaves.
        right: ``intp[n_nodes]`` right child, ``-1`` at leaves.
        value: ``float64[n_nodes, k]`` what a leaf predicts (class shares, or a path length).
        columns: ``intp[k]`` where the ``k`` value columns go in the caller's output.
        depth: number of edges on the longest root-to-leaf path.
    """

    feature: NDArray[np.intp]
    threshold: NDArray[np.float64]
    left: NDArray[np.intp]
    right: NDArray[np.intp]
    value: NDArray[np.float64]
    columns: NDArray[np.intp]
    depth: int

    @classmethod
    def from_sklearn(
        cls,
        tree: Any,
        value: NDArray[np.float64],
        columns: NDArray[np.intp],
        feature_map: NDArray[np.intp] | None = None,
    ) -> FlatTree:
        """Flatten a fitted scikit-learn ``tree_``.

        Args:
            tree: the ``Tree`` object (``estimator.tree_``).
            value: per-node values to keep, ``[n_nodes, k]``.
            columns: output column of each value column.
            feature_map: maps the tree's feature numbers to input columns
                (bagging estimators train on a permutation of the features).
        """
        left = np.asarray(tree.children_left, dtype=np.intp)
        leaf = left < 0
        feature = np.where(leaf, 0, np.asarray(tree.feature, dtype=np.intp))
        if feature_map is not None:
            feature = np.where(leaf, 0, np.asarray(feature_map, dtype=np.intp)[feature])
        return cls(
            feature=feature,
            threshold=np.asarray(tree.threshold, dtype=np.float64),
            left=np.where(leaf, -1, left),
            right=np.where(leaf, -1, np.asarray(tree.children_right, dtype=np.intp)),
            value=np.ascontiguousarray(value, dtype=np.float64),
            columns=np.asarray(columns, dtype=np.intp),
            depth=int(tree.max_depth),
        )

    def apply(self, X: NDArray[np.float64]) -> NDArray[np.intp]:
        """The leaf each row reaches, walking all rows one level at a time."""
        node = np.zeros(len(X), dtype=np.intp)
        rows = np.arange(len(X))
        for _ in range(self.depth):
            go_left = X[rows, self.feature[node]] <= self.threshold[node]
            child = np.where(go_left, self.left[node], self.right[node])
            node = np.where(child >= 0, child, node)
        return node

    def validate(self, n_features: int, n_columns: int) -> None:
        """Check a loaded tree is well formed; raise ``ModelError`` if not.

        Children must come after their parent (as scikit-learn numbers them),
        which rules out cycles; every index must be in range.
        """
        n = len(self.left)
        arrays = (self.feature, self.threshold, self.right, self.value)
        ids = np.arange(n)
        internal = self.left >= 0
        indices = (self.feature, self.left, self.right, self.columns)
        ok = (
            n > 0
            and isinstance(self.depth, int)
            and all(isinstance(a, np.ndarray) and a.dtype.kind in "iu" for a in indices)
            and all(isinstance(a, np.ndarray) and len(a) == n for a in arrays)
            and self.value.ndim == 2
            and self.value.shape[1] == len(self.columns)
            and np.array_equal(internal, self.right >= 0)
            and bool(np.all(self.left[internal] > ids[internal]))
            and bool(np.all(self.right[internal] > ids[internal]))
            and bool(np.all((self.left < n) & (self.right < n)))
            and bool(np.all((self.feature >= 0) & (self.feature < n_features)))
            and bool(np.all((self.columns >= 0) & (self.columns < n_columns)))
            and bool(np.isfinite(self.value).all())
            and 0 <= self.depth < n
        )
        if not ok:
            raise ModelError("saved model holds a malformed tree")


class SlidingForest(OnlineClassifier):
    """A random forest over a sliding window of trees, registered as ``rf``.

    Each tree is fitted on one recent stretch of the stream: frames are pooled
    until there are at least ``min_samples``, then at most ``max_samples`` of
    them (a random subset) fit one new tree, and the oldest tree beyond
    ``n_trees`` is dropped. So the forest follows drift, and the work per
    batch is bounded by ``max_samples`` rows and ``n_trees`` trees however
    long the stream runs (``cost.last_samples_fitted``, ``cost.units``).
    Prediction averages the trees' class shares, aligned on ``classes_``
    (a tree knows only the classes it was fitted on).

    Args:
        n_trees: trees kept.
        max_depth: depth limit of each tree.
        max_samples: most frames one tree is fitted on.
        min_samples: frames pooled (across small batches) before a tree is fitted.
        max_features: features tried per split: ``"sqrt"``, ``"log2"`` or ``None`` (all).
        classes: labels known up front.
        seed: random seed (subsets and split features).
    """

    def __init__(
        self,
        *,
        n_trees: int = 10,
        max_depth: int = 12,
        max_samples: int = 4096,
        min_samples: int = 256,
        max_features: str | None = "sqrt",
        classes: Sequence[str] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(classes=classes, seed=seed)
        self.n_trees = check_int("n_trees", n_trees, low=1)
        self.max_depth = check_int("max_depth", max_depth, low=1, high=64)
        self.max_samples = check_int("max_samples", max_samples, low=1)
        self.min_samples = check_int("min_samples", min_samples, low=1, high=max_samples)
        self.max_features = check_choice("max_features", max_features, _MAX_FEATURES)
        self._trees: list[FlatTree] = []
        self._trees_fitted = 0
        self._pool_X: list[NDArray[np.float64]] = []
        self._pool_codes: list[NDArray[np.intp]] = []

    @property
    def has_proba(self) -> bool:
        return True

    def learn_many(self, X: ArrayLike, y: ArrayLike) -> None:
        """Pool the batch, and fit one tree once ``min_samples`` frames are pooled.

        Args:
            X: ``float[n, d]`` features (not modified).
            y: ``object[n]`` string labels (not modified).
        """
        batch = self._begin_learn(X, y)
        if batch is None:
            return
        X64, codes = batch
        pooled = sum(len(c) for c in self._pool_codes) + len(codes)
        if pooled < self.min_samples:
            self._pool_X.append(X64.copy())
            self._pool_codes.append(codes)
            return
        pool_X = np.concatenate([*self._pool_X, X64])
        pool_codes = np.concatenate([*self._pool_codes, codes])
        self._pool_X, self._pool_codes = [], []
        # A fresh generator per tree, derived from (seed, tree number): no
        # generator state to save, and a reloaded model continues identically.
        rng = np.random.default_rng([self.seed, self._trees_fitted])
        if len(pool_codes) > self.max_samples:
            keep = rng.choice(len(pool_codes), size=self.max_samples, replace=False)
            pool_X, pool_codes = pool_X[keep], pool_codes[keep]
        self._trees.append(self._fit_tree(pool_X, pool_codes, int(rng.integers(2**31 - 1))))
        self._trees_fitted += 1
        del self._trees[: -self.n_trees]
        self.cost.units = len(self._trees)
        self._count_fit(len(pool_codes))

    def _fit_tree(self, X: NDArray[np.float64], codes: NDArray[np.intp], seed: int) -> FlatTree:
        est = DecisionTreeClassifier(
            max_depth=self.max_depth, max_features=self.max_features, random_state=seed
        )
        est.fit(X, codes)
        value = est.tree_.value[:, 0, :]
        value = value / value.sum(axis=1, keepdims=True)
        return FlatTree.from_sklearn(est.tree_, value, est.classes_)

    def _ready(self) -> bool:
        return bool(self._trees)

    def predict_proba_many(self, X: ArrayLike) -> NDArray[np.float64]:
        """The trees' class shares averaged, ``float64[n, len(classes_)]``."""
        X64 = self._check_x(X)
        if not self._ready() or len(X64) == 0:
            return self._fallback_proba(len(X64))
        proba = np.zeros((len(X64), len(self._labels)))
        for tree in self._trees:
            proba[:, tree.columns] += tree.value[tree.apply(X64)]
        proba /= len(self._trees)
        return proba

    def _check_state(self) -> None:
        super()._check_state()
        if len(self._trees) > self.n_trees or (self._n_features is None and self._trees):
            raise ModelError("saved SlidingForest has an inconsistent tree list")
        for tree in self._trees:
            if not isinstance(tree, FlatTree):
                raise ModelError("saved SlidingForest holds something that is not a tree")
            tree.validate(self._n_features or 0, len(self._labels))

    @classmethod
    def _unit_test_params(cls) -> list[dict[str, Any]]:
        return [
            {"n_trees": 4, "max_depth": 6, "max_samples": 512, "min_samples": 64},
            {"n_trees": 3, "max_features": None, "min_samples": 1, "classes": ("x", "y", "z")},
        ]
