"""The online learner contract: configuration, labels, mini-batch learning.

Modelled on river's ``base/base.py`` (configuration from the ``__init__``
signature) and ``base/classifier.py`` (``MiniBatchClassifier``), but over
numpy mini-batches: ``X`` is ``float[n, d]``, ``y`` is ``object[n]`` of string
labels, and labels become integer codes once per batch with ``np.unique``, so
no Python object is made per frame.
"""

from __future__ import annotations

import abc
import inspect
import numbers
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from wirelearn.errors import ConfigError, ModelError

__all__ = [
    "Cost",
    "Estimator",
    "LabelCodes",
    "MajorityBaseline",
    "OnlineClassifier",
    "all_finite",
    "argmax_classes",
    "as_float",
    "check_outputs",
    "feature_major",
]

_E = TypeVar("_E", bound="Estimator")
_T = TypeVar("_T")

#: Largest seed scikit-learn accepts as ``random_state``.
_MAX_SEED = 2**32 - 1

#: Rows a model predicts at a time (``predict_codes_many``), so its temporaries stay small.
PREDICT_ROWS: Final = 16384

_Float = np.float32 | np.float64


def all_finite(X: NDArray[np.floating[Any]]) -> bool:
    """Whether every value of ``X`` is finite.

    A row holding NaN or infinity has a non-finite sum, so one matrix-vector
    product (memory speed, no ``(n, d)`` temporary) settles the usual case;
    only a non-finite sum (or an overflow of large values) costs the exact check.
    """
    if X.ndim == 2 and X.dtype in (np.float32, np.float64) and X.size > 0:
        # An overflowing sum (or inf - inf) only sends us to the exact check.
        with np.errstate(all="ignore"):
            sums = X @ np.ones(X.shape[1], dtype=X.dtype)
        if bool(np.isfinite(sums).all()):
            return True
    return bool(np.isfinite(X).all())


def feature_major(X: NDArray[Any]) -> bool:
    """Whether each feature of ``X`` is contiguous (column-major, as the feature pipeline makes it).

    Then ``X.T`` is a row-major ``(d, n)`` array, and products of the form
    ``W @ X.T`` read it in place: ``X @ W.T`` would make BLAS pack a
    column-major ``X`` row by row, which costs more than the product itself.
    """
    return X.ndim == 2 and X.shape[1] > 1 and X.strides[0] == X.itemsize < X.strides[1]


def as_float(X: ArrayLike, *, finite: bool = True) -> NDArray[Any]:
    """``X`` as a 2-D float array: ``float32`` and ``float64`` as they are (no copy), else ``float64``.

    Args:
        X: the input.
        finite: check every value is finite (False when the caller checks what
            it computes from ``X`` instead, or does not read the values).

    Raises:
        ValueError: not 2-D, not numeric, or holding NaN or infinity.
    """
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"X must be 2-D (frames x features), got shape {arr.shape}")
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"X must be numeric, got dtype {arr.dtype}")
    if arr.dtype != np.float32 and arr.dtype != np.float64:
        arr = arr.astype(np.float64)
    if finite and len(arr) and not all_finite(arr):
        raise _not_finite()
    return arr


def _not_finite() -> ValueError:
    return ValueError("X contains NaN or infinity; the feature pipeline must fill nulls")


def check_outputs(out: NDArray[Any], X: NDArray[Any]) -> bool:
    """Raise the "X contains NaN" error if ``X`` does, found through what was computed from it.

    A product of ``X`` is non-finite wherever a row of ``X`` is, so checking a
    model's ``(n, k)`` scores replaces checking its ``(n, d)`` inputs; only a
    non-finite output (or an overflow) costs the full check.

    Returns:
        Whether every value of ``out`` is finite (False: an overflow of finite inputs).
    """
    if np.isfinite(out).all():
        return True
    if not all_finite(X):
        raise _not_finite()
    return False


def argmax_classes(
    scores: NDArray[Any], allowed: NDArray[np.bool_] | None = None
) -> NDArray[np.intp]:
    """``np.argmax(scores, axis=0)`` of class-major scores ``(k, n)``, classes not ``allowed`` left out.

    The same codes as ``np.argmax`` over the scores with the left-out rows set
    to ``-inf`` (ties go to the first class), for finite scores; the caller
    checks they are (``check_outputs``). numpy's argmax over a short axis
    works row by row (about 45 ns per frame for ten classes); here it is one
    vectorized pass per class over ``n`` frames, a quarter of the time.

    Args:
        scores: ``(k, n)`` finite scores, one row per class.
        allowed: ``bool[k]`` the classes that may be predicted (None: all). With
            none allowed every code is 0, as ``np.argmax`` of ``-inf`` rows gives.
    """
    k, n = scores.shape
    rows = list(range(k)) if allowed is None else np.flatnonzero(allowed).tolist()
    if len(rows) <= 1:
        return np.full(n, rows[0] if rows else 0, dtype=np.intp)
    # A class index is written only where its score beats every earlier one, and indices
    # grow, so ``maximum`` keeps the last (i.e. the first-maximum) winner: no masked writes.
    small = np.uint8 if rows[-1] < 256 else np.intp
    code = np.full(n, rows[0], dtype=small)
    beat = np.empty(n, dtype=np.bool_)
    tag = np.empty(n, dtype=small)
    top = scores[rows[0]].copy()
    for j in rows[1:]:
        row = scores[j]
        np.greater(row, top, out=beat)
        np.multiply(beat, small(j), out=tag)
        np.maximum(code, tag, out=code)
        np.maximum(top, row, out=top)
    return code.astype(np.intp, copy=False)


class Estimator:
    """Configuration plumbing shared by learners and detectors.

    Every constructor argument is keyword-only and stored under its own name,
    so ``_get_params()``, ``clone()`` and ``repr()`` come from the signature.
    """

    def _get_params(self) -> dict[str, Any]:
        """The constructor arguments, read back from the attributes of the same name."""
        signature = inspect.signature(type(self).__init__)
        return {
            name: getattr(self, name)
            for name, param in signature.parameters.items()
            if name != "self" and param.kind is not inspect.Parameter.VAR_KEYWORD
        }

    def clone(self: _E, **new_params: Any) -> _E:
        """A new, unfitted estimator with the same configuration.

        Args:
            **new_params: constructor arguments to change in the copy.
        """
        return type(self)(**{**self._get_params(), **new_params})

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={value!r}" for name, value in self._get_params().items())
        return f"{type(self).__name__}({args})"

    @classmethod
    def _unit_test_params(cls) -> list[dict[str, Any]]:
        """Constructor arguments the contract tests instantiate (small and fast)."""
        return [{}]

    def _check_state(self) -> None:
        """Re-validate a loaded object; raise ``ModelError`` if it is inconsistent."""
        try:
            self.clone()
        except ConfigError as exc:
            raise ModelError(f"saved {type(self).__name__} has invalid parameters: {exc}") from exc


class LabelCodes:
    """Labels of a mini-batch given as codes into a label table: ``labels[codes]``.

    What ``OnlineClassifier.learn_codes_many`` takes in place of an
    ``object[n]`` label array: the evaluator holds the labels as codes
    already, and hashing tens of thousands of label strings again in every
    model costs more than most models' learning. One instance can be given to
    several learners: the work they all need (factorizing the codes, the rows
    of each label) is done once and kept.

    Args:
        codes: ``int[n]`` indices into ``labels``.
        labels: the label table.

    Raises:
        ValueError: codes not 1-D integers, or out of the table's range.
    """

    __slots__ = ("_factorized", "_rows", "_shared", "codes", "labels")

    def __init__(self, codes: ArrayLike, labels: Sequence[str]) -> None:
        arr = np.asarray(codes)
        if arr.ndim != 1 or (arr.dtype.kind not in "iu" and len(arr)):
            raise ValueError(f"codes must be a 1-D integer array, got {arr.dtype} {arr.shape}")
        table = tuple(str(label) for label in labels)
        if len(arr) and (int(arr.min()) < 0 or int(arr.max()) >= len(table)):
            raise ValueError(f"codes must be in [0, {len(table)}), the size of the label table")
        self.codes: NDArray[np.intp] = arr.astype(np.intp, copy=False)
        self.labels = table
        self._factorized: tuple[NDArray[np.intp], list[str]] | None = None
        self._rows: dict[int, NDArray[np.intp]] = {}
        self._shared: dict[Hashable, Any] = {}

    def __len__(self) -> int:
        return len(self.codes)

    def factorized(self) -> tuple[NDArray[np.intp], list[str]]:
        """``(local, uniq)``: codes renumbered by first appearance, and their labels."""
        if self._factorized is None:
            local, present = pd.factorize(self.codes, sort=False)
            self._factorized = (
                local.astype(np.intp, copy=False),
                [self.labels[i] for i in present.tolist()],
            )
        return self._factorized

    def rows_of(self, local: int) -> NDArray[np.intp]:
        """The rows holding the ``local``-th label of ``factorized()``, in order."""
        rows = self._rows.get(local)
        if rows is None:
            rows = self._rows[local] = np.flatnonzero(self.factorized()[0] == local)
        return rows

    def shared(self, key: Hashable, make: Callable[[], _T]) -> _T:
        """``make()``, computed by the first learner that asks and reused by the others.

        Learners given these labels with the same features at the same point of
        the stream pick the same rows to fit and need the same copies of them.
        ``key`` must name every input of ``make`` besides these labels; arrays
        are named by ``id``, so ``make``'s result must hold a reference to each
        (an array kept alive cannot hand its ``id`` to another).
        """
        if key in self._shared:
            out: _T = self._shared[key]
            return out
        value = self._shared[key] = make()
        return value


@dataclass
class Cost:
    """Deterministic work counters, so tests can check cost without timing.

    Attributes:
        learn_calls: ``learn_many`` calls that had at least one frame.
        fit_calls: vectorized fits of the underlying estimators (one
            ``partial_fit`` or one tree fit each).
        samples_fitted: rows passed to those fits, in total.
        last_samples_fitted: rows fitted during the latest ``learn_many``.
        units: sub-models alive (trees in a forest; 1 for a fitted linear model).
    """

    learn_calls: int = 0
    fit_calls: int = 0
    samples_fitted: int = 0
    last_samples_fitted: int = 0
    units: int = 0


class OnlineClassifier(Estimator, abc.ABC):
    """A classifier that learns from mini-batches of frames, test-then-train.

    ``classes_`` lists the labels known so far in a stable order: the
    ``classes`` given at construction first, then new labels in the order they
    first appeared. Probability columns follow that order.

    Before the first ``learn_many`` ``predict_many`` returns the first known
    class (or ``None`` when none is known) and never raises; learners that
    need a warm-up predict the majority class seen so far until they are ready.

    Args:
        classes: labels known up front (optional; new ones may still arrive).
        seed: seed for every random choice the learner makes.
    """

    def __init__(self, *, classes: Sequence[str] | None = None, seed: int = 0) -> None:
        self.classes = _check_classes(classes)
        self.seed = check_int("seed", seed, low=0, high=_MAX_SEED)
        self._labels: list[str] = list(self.classes or ())
        self._index: dict[str, int] = {label: i for i, label in enumerate(self._labels)}
        self._counts: NDArray[np.int64] = np.zeros(len(self._labels), dtype=np.int64)
        self._n_features: int | None = None
        self._n_learned = 0
        self.cost = Cost()

    # -- the contract -----------------------------------------------------------------

    @abc.abstractmethod
    def learn_many(self, X: ArrayLike, y: ArrayLike) -> None:
        """Learn from one mini-batch; an empty batch is a no-op.

        Args:
            X: ``float[n, d]`` features (not modified).
            y: ``object[n]`` string labels (not modified); unseen labels are added
                to ``classes_``.
        """

    def learn_codes_many(self, X: ArrayLike, y: LabelCodes) -> None:
        """``learn_many(X, y.labels[y.codes])``, without building the label array.

        This is what the evaluator uses (it holds the labels as codes already),
        as ``predict_codes_many`` is for predictions; learners given the same
        ``y`` share its encoding work.

        Args:
            X: ``float[n, d]`` features (not modified).
            y: the labels as codes into a table.
        """
        if not isinstance(y, LabelCodes):
            raise TypeError(f"y must be LabelCodes, got {type(y).__name__}")
        # Every learner's learn_many hands its labels straight to _begin_learn.
        self.learn_many(X, cast(Any, y))

    def predict_proba_many(self, X: ArrayLike) -> NDArray[np.float64]:
        """Class probabilities, ``float64[n, len(classes_)]``, columns in ``classes_`` order.

        Raises:
            NotImplementedError: for learners with no calibrated scores (hinge
                loss, perceptron, ...). This is not an error in the stream: such
                learners still predict labels, and callers check ``has_proba``.
        """
        # Not every online learner has probabilities; inventing them (e.g. a
        # softmax of margins) would be misleading, so the default refuses.
        raise NotImplementedError(f"{type(self).__name__} does not predict probabilities")

    def predict_many(self, X: ArrayLike) -> NDArray[np.object_]:
        """Predicted labels, ``object[n]``: the argmax of ``predict_proba_many``."""
        codes, labels = self.predict_codes_many(X)
        table = np.empty(len(labels), dtype=object)
        table[:] = labels
        out: NDArray[np.object_] = table[codes]
        return out

    def predict_codes_many(self, X: ArrayLike) -> tuple[NDArray[np.intp], tuple[str | None, ...]]:
        """Predicted labels as codes into a label table: ``labels[codes]`` is ``predict_many(X)``.

        This is what the evaluator uses: scoring needs codes, and building a
        Python label per frame only to turn it back into a code costs more
        than most models' predictions.
        """
        Xf = self._check_x(X, finite=not self._checks_outputs)
        if not self._ready() or len(Xf) == 0:
            return np.zeros(len(Xf), dtype=np.intp), (self._fallback_label(),)
        n = len(Xf)
        if n <= PREDICT_ROWS:
            return self._predict_codes(Xf), tuple(self._labels)
        # In row chunks: a model's temporaries (scores, copies, kernel maps) are a
        # chunk's, not a whole mini-batch's.
        codes = np.empty(n, dtype=np.intp)
        for i in range(0, n, PREDICT_ROWS):
            codes[i : i + PREDICT_ROWS] = self._predict_codes(Xf[i : i + PREDICT_ROWS])
        return codes, tuple(self._labels)

    #: Whether ``_predict_codes`` checks its outputs (``check_outputs``), so that
    #: ``predict_codes_many`` need not check every input value first.
    _checks_outputs: bool = False

    def _predict_codes(self, X: NDArray[Any]) -> NDArray[np.intp]:
        """Codes into ``classes_`` for a checked, non-empty batch of a ready learner."""
        codes: NDArray[np.intp] = np.argmax(self.predict_proba_many(X), axis=1)
        return codes

    @property
    def has_proba(self) -> bool:
        """Whether ``predict_proba_many`` is implemented for this configuration."""
        return type(self).predict_proba_many is not OnlineClassifier.predict_proba_many

    @property
    def classes_(self) -> tuple[str, ...]:
        """Labels known so far: the given ``classes`` first, then new ones by first appearance."""
        return tuple(self._labels)

    @property
    def n_learned(self) -> int:
        """Frames learned so far."""
        return self._n_learned

    @property
    def n_features_in_(self) -> int | None:
        """Feature count fixed by the first non-empty batch (``None`` before)."""
        return self._n_features

    def _check_state(self) -> None:
        super()._check_state()
        if len(self._labels) != len(self._index) or len(self._counts) != len(self._labels):
            raise ModelError(f"saved {type(self).__name__} has an inconsistent label table")
        if any(self._index.get(label) != i for i, label in enumerate(self._labels)):
            raise ModelError(f"saved {type(self).__name__} has an inconsistent label table")

    # -- helpers for subclasses ---------------------------------------------------------

    def _ready(self) -> bool:
        """Whether the learner can predict on its own (else the fallback is used)."""
        return self._n_learned > 0

    def _check_x(self, X: ArrayLike, *, finite: bool = True) -> NDArray[Any]:
        """``X`` as a checked 2-D float array, ``float32`` kept as it is (see ``as_float``)."""
        arr = np.asarray(X)
        d = self._n_features
        if arr.ndim == 2 and len(arr) and d is not None and arr.shape[1] != d:
            raise ModelError(
                f"{type(self).__name__} was trained on {d} features, got {arr.shape[1]}"
            )
        return as_float(arr, finite=finite)

    def _begin_learn(
        self,
        X: ArrayLike,
        y: ArrayLike,
        *,
        limit: int | None = None,
        balanced: bool = True,
        reads_x: bool = True,
        f64: bool = False,
    ) -> tuple[NDArray[Any], NDArray[np.intp]] | None:
        """Validate a batch, encode its labels and pick the rows to fit; ``None`` if it is empty.

        Updates ``classes_``, the label counts, ``n_learned`` and ``cost``, so
        subclasses only fit; nothing is updated if the batch is refused.

        Args:
            X: the features.
            y: the labels, or ``LabelCodes``.
            limit: the most rows to fit (see ``_fit_rows``); None for all.
            balanced: how rows are sampled beyond ``limit`` (see ``_fit_rows``).
            reads_x: False for a learner that never reads the values (the
                baseline): they are not checked.
            f64: return the rows as a C-contiguous ``float64`` array (what
                scikit-learn's SGD fits), else in ``X``'s own dtype and layout.

        Returns:
            ``(X, codes)`` of the rows to fit: all of them up to ``limit``, else
            the sample ``_fit_rows`` picks. Only their values are checked to be
            finite. With ``LabelCodes`` the picking, the copy and the check are
            shared by the learners given the same ``y`` (``LabelCodes.shared``).
        """
        X64 = self._check_x(X, finite=False)
        if isinstance(y, LabelCodes):
            if len(y.codes) != len(X64):
                raise ValueError(f"y must hold {len(X64)} labels, got {len(y.codes)}")
            if len(X64) == 0:
                return None
            local, uniq = y.factorized()
            # Every learner given this batch at this point of the stream picks the same
            # rows: the first one picks them, copies them and checks their values.
            key = ("fit", id(X64), self.seed, self._n_learned, limit, balanced, f64)
            _, rows, X_fit = y.shared(
                key, lambda: (X64, *self._pick_rows(X64, local, limit, balanced, y.rows_of, f64))
            )
            if reads_x:
                y.shared(("finite", id(X_fit)), lambda: (X_fit, as_float(X_fit)))
        else:
            labels = np.asarray(y)
            if labels.ndim != 1 or len(labels) != len(X64):
                raise ValueError(f"y must be 1-D with {len(X64)} labels, got shape {labels.shape}")
            if len(X64) == 0:
                return None
            local, uniq = pd.factorize(labels, sort=False, use_na_sentinel=True)
            if (local < 0).any():
                raise ValueError("y contains None; drop unlabelled frames before learn_many")
            rows, X_fit = self._pick_rows(X64, local, limit, balanced, None, f64)
            if reads_x:
                as_float(X_fit)
        codes = self._commit_labels(local, uniq)
        self._n_features = X64.shape[1]
        self._counts += np.bincount(codes, minlength=len(self._labels))
        self._n_learned += len(codes)
        self.cost.learn_calls += 1
        self.cost.last_samples_fitted = 0
        return X_fit, codes if rows is None else codes[rows]

    def _pick_rows(
        self,
        X: NDArray[Any],
        local: NDArray[np.intp],
        limit: int | None,
        balanced: bool,
        groups: Callable[[int], NDArray[np.intp]] | None,
        f64: bool,
    ) -> tuple[NDArray[np.intp] | None, NDArray[Any]]:
        """``(rows, X[rows])`` of a batch to fit (rows None: all; see ``_fit_rows``).

        Picked from the batch-local codes, before any state changes.
        """
        rows = self._fit_rows(local, limit, balanced=balanced, groups=groups)
        X_fit = X if rows is None else X[rows]
        if f64:
            X_fit = np.ascontiguousarray(X_fit, dtype=np.float64)
        return rows, X_fit

    def _commit_labels(self, local: NDArray[np.intp], uniq: Any) -> NDArray[np.intp]:
        """Codes into ``classes_`` of factorized labels, adding new labels by first appearance.

        Labels are compared as strings (as ``classes_`` holds them).
        """
        texts = [str(u) for u in uniq]
        new = [t for t in dict.fromkeys(texts) if t not in self._index]
        for label in new:
            self._index[label] = len(self._labels)
            self._labels.append(label)
        if new:
            self._counts = np.concatenate([self._counts, np.zeros(len(new), dtype=np.int64)])
        lookup = np.array([self._index[t] for t in texts], dtype=np.intp)
        out: NDArray[np.intp] = lookup[local]
        return out

    def _fit_rows(
        self,
        codes: NDArray[np.intp],
        limit: int | None,
        *,
        balanced: bool = True,
        groups: Callable[[int], NDArray[np.intp]] | None = None,
    ) -> NDArray[np.intp] | None:
        """The rows of a batch to fit when it holds more than ``limit`` frames (None: all).

        Balanced: each label gets an equal share of ``limit`` and a label with
        fewer frames keeps them all, its unused share going to the others
        (water-filling), so a rare attack is not drowned by the bulk of the
        traffic. Otherwise a uniform sample, which keeps the label proportions
        (what a count-based learner needs). Rows stay in stream order. The
        generator is derived from ``(seed, frames learned so far)``, so a
        reloaded learner continues exactly as the saved one would have.
        ``groups(c)``, when given, returns the rows of code ``c`` (shared work).
        """
        n = len(codes)
        if limit is None or n <= limit:
            return None
        rng = np.random.default_rng([self.seed, self._n_learned])
        if not balanced:
            return np.sort(rng.choice(n, size=limit, replace=False))
        counts = np.bincount(codes)
        present = np.flatnonzero(counts)
        share = _water_fill(counts[present], limit)
        picked = []
        for label, take in zip(present.tolist(), share.tolist(), strict=True):
            # A few labels: one comparison pass each is cheaper than sorting the batch.
            rows = groups(label) if groups is not None else np.flatnonzero(codes == label)
            picked.append(rows if take >= len(rows) else rng.choice(rows, take, replace=False))
        return np.sort(np.concatenate(picked))

    def _decode(self, codes: NDArray[np.integer[Any]]) -> NDArray[np.object_]:
        labels: NDArray[np.object_] = np.asarray(self._labels, dtype=object)[codes]
        return labels

    def _count_fit(self, n_samples: int, fits: int = 1) -> None:
        self.cost.fit_calls += fits
        self.cost.samples_fitted += n_samples
        self.cost.last_samples_fitted += n_samples

    def _fallback_label(self) -> str | None:
        """The majority class so far, else the first known class, else ``None``."""
        if self._counts.sum() > 0:
            return self._labels[int(np.argmax(self._counts))]
        return self._labels[0] if self._labels else None

    def _fallback_labels(self, n: int) -> NDArray[np.object_]:
        """``_fallback_label()`` for ``n`` frames."""
        return np.full(n, self._fallback_label(), dtype=object)

    def _fallback_proba(self, n: int) -> NDArray[np.float64]:
        """Label frequencies so far, else uniform over the known classes."""
        k = len(self._labels)
        total = self._counts.sum()
        if total > 0:
            row = self._counts / total
        else:
            row = np.full(k, 1.0 / k) if k else np.zeros(0)
        return np.tile(row, (n, 1))


class MajorityBaseline(OnlineClassifier):
    """Predicts the most frequent label so far; shown beside every model, registered as ``baseline``.

    Probabilities are the label frequencies so far. Ties go to the label
    first in ``classes_``.

    Args:
        classes: labels known up front.
        seed: accepted for a uniform constructor; the baseline is deterministic.
    """

    def __init__(self, *, classes: Sequence[str] | None = None, seed: int = 0) -> None:
        super().__init__(classes=classes, seed=seed)

    def learn_many(self, X: ArrayLike, y: ArrayLike) -> None:
        """Count the batch's labels (``X`` is only checked).

        Args:
            X: ``float[n, d]`` features (not modified).
            y: ``object[n]`` string labels (not modified).
        """
        # The baseline never reads the values: only the shape is checked.
        if self._begin_learn(X, y, reads_x=False) is not None:
            self.cost.units = 1

    def predict_proba_many(self, X: ArrayLike) -> NDArray[np.float64]:
        """Label frequencies so far, the same for every row."""
        return self._fallback_proba(len(self._check_x(X, finite=False)))

    def predict_many(self, X: ArrayLike) -> NDArray[np.object_]:
        """The majority label so far for every row."""
        return self._fallback_labels(len(self._check_x(X, finite=False)))

    def predict_codes_many(self, X: ArrayLike) -> tuple[NDArray[np.intp], tuple[str | None, ...]]:
        """The majority label so far for every row, as codes (all 0) into a one-label table."""
        n = len(self._check_x(X, finite=False))
        return np.zeros(n, dtype=np.intp), (self._fallback_label(),)

    @classmethod
    def _unit_test_params(cls) -> list[dict[str, Any]]:
        return [{}, {"classes": ("a", "b")}]


def _water_fill(counts: NDArray[np.int64], limit: int) -> NDArray[np.int64]:
    """Shares of ``limit`` per group: equal, but never more than a group has, summing to ``limit``.

    >>> _water_fill(np.array([10, 500, 300]), 400).tolist()
    [10, 195, 195]
    """
    share = np.zeros(len(counts), dtype=np.int64)
    left, todo = int(limit), np.argsort(counts, kind="stable")
    for i, g in enumerate(todo.tolist()):
        fair = left // (len(todo) - i)
        share[g] = min(int(counts[g]), fair)
        left -= int(share[g])
    # Hand out what integer division left over, one frame each, to groups with room.
    for g in todo[::-1].tolist():
        if left <= 0:
            break
        if share[g] < counts[g]:
            share[g] += 1
            left -= 1
    return share


# -- constructor validation helpers -------------------------------------------------------


def _check_classes(classes: Sequence[str] | None) -> tuple[str, ...] | None:
    if classes is None:
        return None
    if isinstance(classes, str):
        raise ConfigError(f"classes must be a sequence of labels, not the string {classes!r}")
    labels = tuple(classes)
    bad = [c for c in labels if not isinstance(c, str) or not c]
    if bad:
        raise ConfigError(f"classes must be non-empty strings, got {bad[0]!r}")
    if len(set(labels)) != len(labels):
        raise ConfigError(f"classes has duplicate labels: {list(labels)}")
    return labels


def check_int(name: str, value: Any, *, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]``, or ``ConfigError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    number = int(value)
    if number < low or (high is not None and number > high):
        upper = "" if high is None else f" and <= {high}"
        raise ConfigError(f"{name} must be >= {low}{upper}, got {value}")
    return number


def check_float(
    name: str, value: Any, *, low: float, high: float | None = None, low_open: bool = False
) -> float:
    """``value`` as a finite float in range, or ``ConfigError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    number = float(value)
    too_low = number <= low if low_open else number < low
    if not np.isfinite(number) or too_low or (high is not None and number > high):
        bound = f"> {low}" if low_open else f">= {low}"
        upper = "" if high is None else f" and <= {high}"
        raise ConfigError(f"{name} must be {bound}{upper}, got {value!r}")
    return number


def check_choice(name: str, value: Any, allowed: Sequence[Any]) -> Any:
    """``value`` if it is one of ``allowed``, or ``ConfigError`` listing them."""
    if value not in allowed or isinstance(value, bool):
        choices = ", ".join(repr(a) for a in allowed)
        raise ConfigError(f"{name} must be one of {choices}; got {value!r}")
    return value
