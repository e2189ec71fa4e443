"""The learner registry: names the CLI accepts, and how to build each learner."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

from wirelearn.errors import ConfigError
from wirelearn.models._base import MajorityBaseline, OnlineClassifier
from wirelearn.models._bayes import NaiveBayes
from wirelearn.models._forest import SlidingForest
from wirelearn.models._linear import (
    KernelSVM,
    LinearSGD,
    OnlineLogistic,
    OnlinePerceptron,
    PassiveAggressive,
)

__all__ = ["BASELINE_NAME", "MODEL_NAMES", "make_model", "model_class", "parse_model_list"]

#: The learners run by default (``all``), in display order.
MODEL_NAMES: Final[tuple[str, ...]] = ("sgd", "svm", "logistic", "pa", "perceptron", "nb", "rf")
#: The majority-class baseline, shown beside every model but not a "model" itself.
BASELINE_NAME: Final = "baseline"

_CLASSES: Final[Mapping[str, type[OnlineClassifier]]] = MappingProxyType(
    {
        "sgd": LinearSGD,
        "svm": KernelSVM,
        "logistic": OnlineLogistic,
        "pa": PassiveAggressive,
        "perceptron": OnlinePerceptron,
        "nb": NaiveBayes,
        "rf": SlidingForest,
        BASELINE_NAME: MajorityBaseline,
    }
)

_VALID = (*MODEL_NAMES, BASELINE_NAME)


def model_class(name: str) -> type[OnlineClassifier]:
    """The learner class registered under ``name``.

    Raises:
        ConfigError: for an unknown name (the message lists the valid ones).
    """
    try:
        return _CLASSES[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose from: {', '.join(_VALID)}") from None


def make_model(
    name: str, *, classes: Sequence[str] | None = None, seed: int = 0, **params: Any
) -> OnlineClassifier:
    """Build the learner registered under ``name``.

    Args:
        name: one of ``MODEL_NAMES`` or ``"baseline"``.
        classes: labels known up front (new ones may still arrive).
        seed: random seed.
        **params: the learner's own constructor arguments.

    Raises:
        ConfigError: unknown name, unknown parameter, or a bad value.

    >>> make_model("pa", C=0.5)
    PassiveAggressive(C=0.5, variant='pa1', max_fit=512, classes=None, seed=0)
    """
    cls = model_class(name)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "classes", "seed"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ConfigError(
            f"model {name!r} has no parameter {unknown[0]!r}; "
            f"its parameters are: {', '.join(sorted(accepted)) or '(none)'}"
        )
    return cls(classes=classes, seed=seed, **params)


def parse_model_list(spec: str) -> list[str]:
    """The learner names in a comma-separated list; empty or ``all`` means ``MODEL_NAMES``.

    Names are case-insensitive and duplicates are dropped; ``baseline`` is
    accepted but never implied by ``all``.

    Raises:
        ConfigError: for an unknown name (the message lists the valid ones).

    >>> parse_model_list("rf, SGD,rf")
    ['rf', 'sgd']
    >>> parse_model_list("")
    ['sgd', 'svm', 'logistic', 'pa', 'perceptron', 'nb', 'rf']
    """
    names: list[str] = []
    parts = [p.strip().lower() for p in spec.split(",") if p.strip()]
    for part in parts or ["all"]:
        expanded = list(MODEL_NAMES) if part == "all" else [part]
        for name in expanded:
            if name not in _CLASSES:
                raise ConfigError(
                    f"unknown model {name!r} in {spec!r}; choose from: {', '.join(_VALID)}, all"
                )
            if name not in names:
                names.append(name)
    return names


def _unit_test_params() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every registered ``(name, params)`` combination the contract tests instantiate."""
    for name in _VALID:
        for params in _CLASSES[name]._unit_test_params():
            yield name, params
