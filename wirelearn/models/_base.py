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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from wirelearn.errors import ConfigError, ModelError

__all__ = ["Cost", "Estimator", "MajorityBaseline", "OnlineClassifier"]

_E = TypeVar("_E", bound="Estimator")

#: Largest seed scikit-learn accepts as ``random_state``.
_MAX_SEED = 2**32 - 1


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
        X64 = self._check_x(X)
        if not self._ready():
            return self._fallback_labels(len(X64))
        return self._decode(np.argmax(self.predict_proba_many(X64), axis=1))

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

    def _check_x(self, X: ArrayLike) -> NDArray[np.float64]:
        """``X`` as a 2-D float64 array (no copy when it already is one), checked."""
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise ValueError(f"X must be 2-D (frames x features), got shape {arr.shape}")
        if arr.dtype.kind not in "fiub":
            raise ValueError(f"X must be numeric, got dtype {arr.dtype}")
        X64 = np.asarray(arr, dtype=np.float64)
        n, d = X64.shape
        if n == 0:
            return X64
        if self._n_features is not None and d != self._n_features:
            raise ModelError(
                f"{type(self).__name__} was trained on {self._n_features} features, got {d}"
            )
        if not np.isfinite(X64).all():
            raise ValueError("X contains NaN or infinity; the feature pipeline must fill nulls")
        return X64

    def _begin_learn(
        self, X: ArrayLike, y: ArrayLike
    ) -> tuple[NDArray[np.float64], NDArray[np.intp]] | None:
        """Validate a batch and encode its labels; ``None`` for an empty batch.

        Updates ``classes_``, the label counts, ``n_learned`` and ``cost``, so
        subclasses only fit.
        """
        X64 = self._check_x(X)
        labels = np.asarray(y)
        if labels.ndim != 1 or len(labels) != len(X64):
            raise ValueError(f"y must be 1-D with {len(X64)} labels, got shape {labels.shape}")
        if len(X64) == 0:
            return None
        codes = self._encode(labels)
        self._n_features = X64.shape[1]
        self._counts += np.bincount(codes, minlength=len(self._labels))
        self._n_learned += len(codes)
        self.cost.learn_calls += 1
        self.cost.last_samples_fitted = 0
        return X64, codes

    def _encode(self, labels: NDArray[Any]) -> NDArray[np.intp]:
        """Integer codes into ``classes_``, adding new labels by first appearance."""
        if labels.dtype == object and (labels == np.array(None, dtype=object)).any():
            raise ValueError("y contains None; drop unlabelled frames before learn_many")
        uniq, first, inverse = np.unique(
            labels.astype(np.str_), return_index=True, return_inverse=True
        )
        new = [str(uniq[i]) for i in np.argsort(first) if str(uniq[i]) not in self._index]
        for label in new:
            self._index[label] = len(self._labels)
            self._labels.append(label)
        if new:
            self._counts = np.concatenate([self._counts, np.zeros(len(new), dtype=np.int64)])
        lookup = np.array([self._index[str(u)] for u in uniq], dtype=np.intp)
        return lookup[inverse.reshape(-1)]

    def _decode(self, codes: NDArray[np.integer[Any]]) -> NDArray[np.object_]:
        labels: NDArray[np.object_] = np.asarray(self._labels, dtype=object)[codes]
        return labels

    def _count_fit(self, n_samples: int, fits: int = 1) -> None:
        self.cost.fit_calls += fits
        self.cost.samples_fitted += n_samples
        self.cost.last_samples_fitted += n_samples

    def _fallback_labels(self, n: int) -> NDArray[np.object_]:
        """The majority class so far, else the first known class, else ``None``."""
        if self._counts.sum() > 0:
            label: str | None = self._labels[int(np.argmax(self._counts))]
        else:
            label = self._labels[0] if self._labels else None
        return np.full(n, label, dtype=object)

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
        if self._begin_learn(X, y) is not None:
            self.cost.units = 1

    def predict_proba_many(self, X: ArrayLike) -> NDArray[np.float64]:
        """Label frequencies so far, the same for every row."""
        return self._fallback_proba(len(self._check_x(X)))

    def predict_many(self, X: ArrayLike) -> NDArray[np.object_]:
        """The majority label so far for every row."""
        return self._fallback_labels(len(self._check_x(X)))

    @classmethod
    def _unit_test_params(cls) -> list[dict[str, Any]]:
        return [{}, {"classes": ("a", "b")}]


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
