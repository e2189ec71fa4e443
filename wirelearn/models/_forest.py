"""A sliding random forest that learns online at bounded cost per batch.

Trees are fitted by scikit-learn, then flattened into plain numpy arrays
(``FlatTree``) and evaluated with a vectorized level-by-level walk. Keeping no
scikit-learn ``Tree`` objects means a saved model holds only arrays, which
``FlatTree.validate`` can bounds-check on load (skops flags
``sklearn.tree._tree.Tree`` as unsafe: its node indices are used unchecked in
C). For ``float32`` inputs (what the feature pipeline gives) the forest walks
its trees with scikit-learn's compiled ``Tree.apply`` on ``Tree`` objects it
rebuilds in memory from the (checked) arrays, never saved: about twice as
fast as the numpy walk, with the same decisions (``x <= threshold`` in
double precision, as ``FlatTree.apply``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from wirelearn.errors import ModelError
from wirelearn.models._base import OnlineClassifier, check_choice, check_int

__all__ = ["FlatTree", "SlidingForest", "TreeStack"]

_MAX_FEATURES = ("sqrt", "log2", None)
#: Deepest trees ``TreeStack`` pads into perfect trees (2**depth leaves each); deeper
#: ensembles are walked tree by tree.
MAX_STACK_DEPTH = 14
#: Rows walked together: their indices and the gathered values stay in cache.
_CHUNK = 1024
#: Rows per scikit-learn ``Tree.apply`` call in ``SlidingForest`` (float32 inputs).
_APPLY_ROWS = 8192
#: The same for inputs that are not row-major (each row's values are far apart).
_APPLY_ROWS_STRIDED = 2048


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

    def to_sklearn(self, n_features: int) -> Any:
        """The tree as a scikit-learn ``Tree``, for its compiled ``apply`` (never saved).

        Leaves keep their node numbers, so ``Tree.apply`` gives rows of ``value``.
        """
        from sklearn.tree._tree import NODE_DTYPE, TREE_UNDEFINED, Tree

        n = len(self.left)
        leaf = self.left < 0
        nodes = np.zeros(n, dtype=NODE_DTYPE)
        nodes["left_child"] = self.left
        nodes["right_child"] = self.right
        nodes["feature"] = np.where(leaf, TREE_UNDEFINED, self.feature)
        nodes["threshold"] = np.where(leaf, float(TREE_UNDEFINED), self.threshold)
        tree = Tree(n_features, np.ones(1, dtype=np.intp), 1)
        tree.__setstate__(
            {
                "max_depth": self.depth,
                "node_count": n,
                "nodes": nodes,
                "values": np.zeros((n, 1, 1)),
            }
        )
        return tree

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


class TreeStack:
    """Several ``FlatTree``\\ s padded into perfect trees and walked all at once.

    Every tree becomes a perfect binary tree of the ensemble's depth ``D``
    (node ``p`` has children ``2p + 1`` and ``2p + 2``): a leaf above depth
    ``D`` becomes a chain of pass-through nodes (threshold ``+inf``, always
    left) ending at a copy of it. All trees then advance one level per step
    with a handful of numpy operations over a ``(rows, trees)`` array of node
    indices, instead of a few operations per tree and level. Thresholds are
    compared as the trees were grown (``x <= threshold`` goes left); for
    ``float32`` inputs they are rounded down to ``float32``, which decides
    every comparison exactly as in ``float64``.

    Args:
        trees: the trees, each at most ``MAX_STACK_DEPTH`` deep.
        values: per tree, what each of its nodes holds ``(n_nodes, k)`` (the
            caller's columns, already aligned).
    """

    def __init__(self, trees: Sequence[FlatTree], values: Sequence[NDArray[np.float64]]) -> None:
        depth = max((t.depth for t in trees), default=0)
        if depth > MAX_STACK_DEPTH:
            raise ValueError(f"trees of depth {depth} are too deep to stack")
        self.depth = depth
        self.n_trees = len(trees)
        stride = 1 << depth  # internal nodes per tree, 2**D - 1, plus one unused
        n = len(trees)
        feature = np.zeros((n, stride), dtype=np.intp)
        threshold = np.full((n, stride), np.inf)
        leaves = np.zeros((n, stride), dtype=np.intp)
        for i, tree in enumerate(trees):
            pos = np.zeros(1, dtype=np.intp)  # the tree's node at each perfect position
            for level in range(depth):
                inner = tree.left[pos] >= 0
                first = (1 << level) - 1
                feature[i, first : first + len(pos)] = np.where(inner, tree.feature[pos], 0)
                threshold[i, first : first + len(pos)] = np.where(
                    inner, tree.threshold[pos], np.inf
                )
                children = np.empty(2 * len(pos), dtype=np.intp)
                children[0::2] = np.where(inner, tree.left[pos], pos)
                children[1::2] = np.where(inner, tree.right[pos], pos)
                pos = children
            leaves[i] = pos
        self._feature = feature.reshape(-1).astype(np.int32)
        self._thr64 = threshold.reshape(-1)
        # The largest float32 <= each threshold: float32 x > it exactly when x > threshold.
        thr32 = self._thr64.astype(np.float32)
        over = thr32.astype(np.float64) > self._thr64
        thr32[over] = np.nextafter(thr32[over], np.float32(-np.inf))
        self._thr32 = thr32
        k = values[0].shape[1] if len(values) else 0
        self.values = np.zeros((n * stride, k), dtype=np.float64)
        for i, value in enumerate(values):
            self.values[i * stride : (i + 1) * stride] = value[leaves[i]]
        # Index arithmetic on global node numbers g = tree * stride + p: the child of g
        # is 2 g + 1 + go - tree * stride.
        self._step = (1 - np.arange(n, dtype=np.int32) * stride)[None, :]
        self._base = (np.arange(n, dtype=np.int32) * stride)[None, :]

    def _walk(self, X: NDArray[np.floating[Any]]) -> Iterator[tuple[int, NDArray[np.int32]]]:
        """``(start, leaves)`` for each chunk of rows: ``leaves[i, t]`` is a row of ``values``."""
        n, d = X.shape
        if not n or not self.n_trees:
            return
        thr = self._thr32 if X.dtype == np.float32 else self._thr64
        # Values are read straight from X's memory, row- or column-major, without a copy.
        if not (X.flags.c_contiguous or X.flags.f_contiguous):
            X = np.ascontiguousarray(X)
        flat = X.reshape(-1, order="A")
        row_step, col_step = (d, 1) if X.flags.c_contiguous else (1, n)
        feature = self._feature * np.int32(col_step) if col_step != 1 else self._feature
        if max(n * row_step, d * col_step) >= 2**31:
            feature = feature.astype(np.intp)
        first_leaf = (1 << self.depth) - 1
        for start in range(0, n, _CHUNK):
            m = min(_CHUNK, n - start)
            rows = (np.arange(start, start + m, dtype=feature.dtype) * row_step)[:, None]
            g = np.repeat(self._base, m, axis=0)
            f = np.empty(g.shape, dtype=feature.dtype)
            th = np.empty(g.shape, dtype=thr.dtype)
            xv = np.empty(g.shape, dtype=X.dtype)
            go = np.empty(g.shape, dtype=np.bool_)
            for _ in range(self.depth):
                np.take(feature, g, out=f)
                np.take(thr, g, out=th)
                f += rows
                np.take(flat, f, out=xv)
                np.greater(xv, th, out=go)
                g *= 2
                g += self._step
                g += go
            g -= first_leaf
            yield start, g

    def leaves(self, X: NDArray[np.floating[Any]]) -> NDArray[np.intp]:
        """Row ``i``, column ``t``: the row of ``values`` that tree ``t`` gives ``X[i]``."""
        out = np.empty((len(X), self.n_trees), dtype=np.intp)
        for start, g in self._walk(X):
            out[start : start + len(g)] = g
        return out

    def sum_values(self, X: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
        """The trees' values for every row, summed over the trees: ``(n, k)``."""
        k = self.values.shape[1]
        out = np.zeros((len(X), k))
        flat = self.values[:, 0] if k == 1 else self.values
        for start, g in self._walk(X):
            # Gathered chunk by chunk, while the leaves are still in cache.
            part = flat[g].sum(axis=1)
            out[start : start + len(g)] = part[:, None] if k == 1 else part
        return out


def _take_rows(parts: Sequence[NDArray[Any]], rows: NDArray[np.intp]) -> NDArray[Any]:
    """``np.concatenate(parts)[rows]`` for sorted ``rows``, copying only those rows."""
    ends = np.cumsum([len(p) for p in parts])
    cut = np.searchsorted(rows, ends[:-1])
    starts = np.concatenate([[0], ends[:-1]])
    pieces = [
        part[sel - start]
        for part, sel, start in zip(parts, np.split(rows, cut), starts.tolist(), strict=True)
    ]
    return np.concatenate(pieces)


class SlidingForest(OnlineClassifier):
    """A random forest over a sliding window of trees, registered as ``rf``.

    Each tree is fitted on one recent stretch of the stream: frames are pooled
    until there are at least ``min_samples``, then at most ``max_samples`` of
    them (a random subset) fit one new tree, and the oldest tree beyond
    ``n_trees`` is dropped. So the forest follows drift, and the work per
    batch is bounded by ``max_samples`` rows and ``n_trees`` trees however
    long the stream runs (``cost.last_samples_fitted``, ``cost.units``).
    A pool larger than ``max_samples`` is sampled evenly over its labels
    (``OnlineClassifier._fit_rows``), so a rare attack is not drowned out.

    Prediction averages the trees' class shares, aligned on ``classes_``, each
    class over the trees that know it: a tree fitted before a class first
    appeared has no opinion on it (as in Learn++.NC, Muhlbaier et al. 2009),
    where a plain average would let every older tree vote against it until it
    slid out of the window. The shares are then normalised to sum to 1.

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
        n_trees: int = 6,
        max_depth: int = 8,
        max_samples: int = 2048,
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
        # The trees stacked for prediction, rebuilt when a tree or a label is added.
        self._stack: TreeStack | None = None
        self._stack_key: tuple[int, int] | None = None
        # scikit-learn Trees and aligned leaf values for float32 inputs (same life cycle).
        self._compiled: list[tuple[Any, NDArray[np.float32]]] | None = None
        self._compiled_key: tuple[int, int] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # The stack is derived from the trees: never saved, rebuilt (from checked trees).
        state = dict(self.__dict__)
        state["_stack"] = state["_stack_key"] = None
        state["_compiled"] = state["_compiled_key"] = None
        return state

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
        parts = [*self._pool_X, X64]
        pool_codes = np.concatenate([*self._pool_codes, codes])
        self._pool_X, self._pool_codes = [], []
        # A fresh generator per tree, derived from (seed, tree number): no
        # generator state to save, and a reloaded model continues identically.
        rng = np.random.default_rng([self.seed, self._trees_fitted])
        keep = self._fit_rows(pool_codes, self.max_samples)
        if keep is None:
            pool_X = np.concatenate(parts)  # at most max_samples rows
        else:
            # Only the kept rows are copied (a mini-batch is far larger than
            # max_samples): the same rows as from the concatenated pool.
            pool_X, pool_codes = _take_rows(parts, keep), pool_codes[keep]
        self._trees.append(self._fit_tree(pool_X, pool_codes, int(rng.integers(2**31 - 1))))
        self._trees_fitted += 1
        del self._trees[: -self.n_trees]
        self.cost.units = len(self._trees)
        self._count_fit(len(pool_codes))

    def _fit_tree(self, X: NDArray[np.float64], codes: NDArray[np.intp], seed: int) -> FlatTree:
        from sklearn.tree import DecisionTreeClassifier

        est = DecisionTreeClassifier(
            max_depth=self.max_depth, max_features=self.max_features, random_state=seed
        )
        est.fit(X, codes)
        value = est.tree_.value[:, 0, :]
        value = value / value.sum(axis=1, keepdims=True)
        return FlatTree.from_sklearn(est.tree_, value, est.classes_)

    def _ready(self) -> bool:
        return bool(self._trees)

    def _stacked(self) -> TreeStack | None:
        """The trees as one ``TreeStack`` (None if they are too deep to stack)."""
        key = (self._trees_fitted, len(self._labels))
        if getattr(self, "_stack_key", None) != key:
            self._stack, self._stack_key = None, key
            if max(t.depth for t in self._trees) <= MAX_STACK_DEPTH:
                values = []
                for tree in self._trees:
                    value = np.zeros((len(tree.value), len(self._labels)))
                    value[:, tree.columns] = tree.value
                    values.append(value)
                self._stack = TreeStack(self._trees, values)
        return self._stack

    def _voters(self) -> NDArray[np.float64]:
        """For each class, the number of trees that know it."""
        voters = np.zeros(len(self._labels))
        for tree in self._trees:
            voters[tree.columns] += 1.0
        return voters

    def _compiled_trees(self) -> list[tuple[Any, NDArray[np.float32]]]:
        """Per tree: a scikit-learn ``Tree`` and its leaf values over ``classes_``, each
        class divided by the number of trees that know it (``float32``: shares of at
        most ``n_trees`` trees need no more, and half the memory traffic)."""
        key = (self._trees_fitted, len(self._labels))
        if getattr(self, "_compiled_key", None) != key or self._compiled is None:
            k = len(self._labels)
            voters = self._voters()
            compiled = []
            for tree in self._trees:
                value = np.zeros((len(tree.value), k), dtype=np.float32)
                value[:, tree.columns] = tree.value / np.maximum(voters[tree.columns], 1.0)
                compiled.append((tree.to_sklearn(self._n_features or 0), value))
            self._compiled, self._compiled_key = compiled, key
        return self._compiled

    def _proba(self, X: NDArray[Any]) -> NDArray[np.floating[Any]]:
        """Averaged class shares of a checked, non-empty batch, each row summing to 1."""
        if X.dtype == np.float32:
            compiled = self._compiled_trees()
            proba32 = np.empty((len(X), len(self._labels)), dtype=np.float32)
            # Tree.apply reads any strides: no row-major copy of X (the feature
            # pipeline gives column-major batches, and a transposing copy costs
            # more than walking them). Strided rows are walked in smaller blocks,
            # so the columns the trees read stay in cache.
            step = _APPLY_ROWS if X.flags.c_contiguous else _APPLY_ROWS_STRIDED
            # Row blocks, so each tree's gathered shares are added while still in cache.
            for lo in range(0, len(X), step):
                rows = X[lo : lo + step]
                part = proba32[lo : lo + step]
                # np.take gathers whole rows several times faster than value[leaves];
                # the sum runs tree by tree in the same order as ever (0 + x is x).
                first, *others = compiled
                np.take(first[1], first[0].apply(rows), axis=0, out=part)
                for tree, value in others:
                    part += np.take(value, tree.apply(rows), axis=0)
            proba32 /= proba32.sum(axis=1, keepdims=True)
            return proba32
        stack = self._stacked()
        if stack is not None:
            proba = stack.sum_values(X)
        else:
            proba = np.zeros((len(X), len(self._labels)))
            for tree in self._trees:
                proba[:, tree.columns] += tree.value[tree.apply(X)]
        proba /= np.maximum(self._voters(), 1.0)
        proba /= proba.sum(axis=1, keepdims=True)
        return proba

    def predict_proba_many(self, X: ArrayLike) -> NDArray[np.float64]:
        """The trees' class shares averaged, ``float64[n, len(classes_)]``."""
        Xf = self._check_x(X)
        if not self._ready() or len(Xf) == 0:
            return self._fallback_proba(len(Xf))
        return self._proba(Xf).astype(np.float64, copy=False)

    def _predict_codes(self, X: NDArray[Any]) -> NDArray[np.intp]:
        # The argmax of exactly what predict_proba_many returns (widening is exact).
        codes: NDArray[np.intp] = np.argmax(self._proba(X), axis=1)
        return codes

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
