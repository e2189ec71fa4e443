"""Online learners, labels and the test-then-train evaluator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wirelearn.models._anomaly import AnomalyDetector
from wirelearn.models._base import Cost, MajorityBaseline, OnlineClassifier
from wirelearn.models._bayes import NaiveBayes
from wirelearn.models._forest import SlidingForest
from wirelearn.models._labels import (
    SERVICE_CLASSES,
    TARGETS,
    AnomalyTarget,
    FileLabels,
    LabelProvider,
    RuleLabels,
    ServiceTarget,
    make_label_provider,
    parse_label_rule,
)
from wirelearn.models._linear import (
    KernelSVM,
    LinearSGD,
    OnlineLogistic,
    OnlinePerceptron,
    PassiveAggressive,
)
from wirelearn.models._registry import (
    BASELINE_NAME,
    MODEL_NAMES,
    make_model,
    model_class,
    parse_model_list,
)

__all__: list[str] = [
    "BASELINE_NAME",
    "MODEL_NAMES",
    "SERVICE_CLASSES",
    "TARGETS",
    "AnomalyDetector",
    "AnomalyTarget",
    "Cost",
    "FileLabels",
    "KernelSVM",
    "LabelProvider",
    "LinearSGD",
    "MajorityBaseline",
    "ModelManifest",
    "NaiveBayes",
    "OnlineClassifier",
    "OnlineLogistic",
    "OnlinePerceptron",
    "PassiveAggressive",
    "RuleLabels",
    "ServiceTarget",
    "SlidingForest",
    "load_model",
    "load_models",
    "make_label_provider",
    "make_model",
    "model_class",
    "parse_label_rule",
    "parse_model_list",
    "read_manifest",
    "save_model",
    "save_models",
]

if TYPE_CHECKING:
    from wirelearn.models._persist import (
        ModelManifest,
        load_model,
        load_models,
        read_manifest,
        save_model,
        save_models,
    )

#: Persistence imports skops (and through it pytest): about a second of start-up
#: that only ``--save-models``/``--load-models`` need, so it is imported on first use.
_PERSIST = frozenset(
    ("ModelManifest", "load_model", "load_models", "read_manifest", "save_model", "save_models")
)


def __getattr__(name: str) -> Any:
    if name in _PERSIST:
        from wirelearn.models import _persist

        return getattr(_persist, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PERSIST})
