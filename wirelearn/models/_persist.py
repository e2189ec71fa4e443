"""Saving and loading learners in skops format, with an explicit allow-list of types.

A skops file names the types it needs; nothing is imported or built until
the loader says which types it trusts. ``load_model`` asks skops for the
types outside its own default trust (``get_untrusted_types``), accepts them
only if each is on wirelearn's allow-list (``_allowed``), and refuses the
whole file otherwise, so a file naming ``os.system`` or any other outside
type fails with ``ModelError`` before any of it is constructed. The
allow-list is: the wirelearn classes below, by exact name; and, from a few
scikit-learn and numpy modules that are already imported, classes only
(scikit-learn estimators, numpy arrays, scalars and dtypes), minus the types
skops itself marks unsafe (``sklearn.tree._tree.Tree``, which the forest
never saves: see ``_forest.py``).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeAlias

import numpy as np
import skops.io as sio
from sklearn.base import BaseEstimator
from skops.io.exceptions import UNTRUSTED_TYPE_REASONS

from wirelearn.errors import ConfigError, ModelError, OutputError
from wirelearn.models._anomaly import AnomalyDetector
from wirelearn.models._base import Cost, MajorityBaseline, OnlineClassifier
from wirelearn.models._bayes import NaiveBayes
from wirelearn.models._forest import FlatTree, SlidingForest
from wirelearn.models._linear import (
    KernelSVM,
    LinearSGD,
    OnlineLogistic,
    OnlinePerceptron,
    PassiveAggressive,
)

__all__ = [
    "MANIFEST_NAME",
    "ManifestEntry",
    "ModelManifest",
    "load_model",
    "load_models",
    "read_manifest",
    "save_model",
    "save_models",
]

Model: TypeAlias = OnlineClassifier | AnomalyDetector

#: The manifest ``save_models`` writes next to the ``.skops`` files.
MANIFEST_NAME: Final = "manifest.json"
_FORMAT: Final = "wirelearn-models"
_FORMAT_VERSION: Final = 1
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

_TRUSTED_CLASSES: Final[tuple[type, ...]] = (
    AnomalyDetector,
    Cost,
    FlatTree,
    KernelSVM,
    LinearSGD,
    MajorityBaseline,
    NaiveBayes,
    OnlineLogistic,
    OnlinePerceptron,
    PassiveAggressive,
    SlidingForest,
)
_TRUSTED_NAMES: Final[frozenset[str]] = frozenset(
    f"{cls.__module__}.{cls.__qualname__}" for cls in _TRUSTED_CLASSES
)
#: Modules whose classes may appear in a saved model (beyond skops' defaults).
_SKLEARN_PREFIXES: Final = (
    "sklearn.linear_model.",
    "sklearn.naive_bayes.",
    "sklearn.kernel_approximation.",
)
_NUMPY_PREFIX: Final = "numpy."


def _allowed(type_name: str) -> bool:
    """Whether a type named in a skops file may be loaded (see the module docstring)."""
    if type_name in UNTRUSTED_TYPE_REASONS:
        return False
    if type_name in _TRUSTED_NAMES:
        return True
    if not type_name.startswith((*_SKLEARN_PREFIXES, _NUMPY_PREFIX)):
        return False
    module_name, _, attr = type_name.rpartition(".")
    # Look only at modules already imported: a file must not make us import anything.
    module = sys.modules.get(module_name)
    obj = getattr(module, attr, None) if module is not None else None
    if not isinstance(obj, type):
        return False
    if type_name.startswith(_NUMPY_PREFIX):
        return issubclass(obj, (np.generic, np.ndarray, np.dtype))
    return issubclass(obj, BaseEstimator)


def save_model(model: Model, path: str | os.PathLike[str]) -> None:
    """Write one learner or detector to ``path`` in skops format (atomically).

    Args:
        model: an ``OnlineClassifier`` or ``AnomalyDetector``.
        path: the file to write (conventionally ``*.skops``).

    Raises:
        OutputError: the file cannot be written.
    """
    if not isinstance(model, (OnlineClassifier, AnomalyDetector)):
        raise TypeError(f"cannot save {type(model).__name__}: not a wirelearn model")
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"cannot write model: {exc.strerror or exc}", path=str(target)) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            sio.dump(model, handle)
        os.replace(tmp, target)
    except OSError as exc:
        raise OutputError(f"cannot write model: {exc.strerror or exc}", path=str(target)) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_model(path: str | os.PathLike[str]) -> Model:
    """Read a learner or detector written by ``save_model``, trusting only allow-listed types.

    Args:
        path: the ``.skops`` file.

    Raises:
        ModelError: the file is missing or unreadable, is not a skops file, is
            corrupt, names a type outside the allow-list (nothing is built
            then), or does not hold a consistent wirelearn model.
    """
    where = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model file: {exc.strerror or exc}", path=where) from exc
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # zipfile, json and skops errors alike: the file is unusable
        raise ModelError(f"not a readable skops model file ({exc})", path=where) from exc
    refused = sorted(t for t in untrusted if not _allowed(t))
    if refused:
        raise ModelError(
            f"refusing to load: the file needs types outside the allow-list: {', '.join(refused)}",
            path=where,
        )
    try:
        model = sio.loads(data, trusted=untrusted)
    except Exception as exc:  # audited types, but content that cannot be rebuilt
        raise ModelError(f"corrupt model file ({type(exc).__name__}: {exc})", path=where) from exc
    if not isinstance(model, (OnlineClassifier, AnomalyDetector)):
        raise ModelError(f"the file holds a {type(model).__name__}, not a model", path=where)
    try:
        model._check_state()
    except ModelError as exc:
        raise ModelError(exc.message, path=where) from exc
    except Exception as exc:  # a tampered attribute of the wrong type
        raise ModelError(f"inconsistent model ({type(exc).__name__}: {exc})", path=where) from exc
    return model


@dataclass(frozen=True)
class ManifestEntry:
    """One saved model, as listed in the manifest.

    Attributes:
        name: the name it was saved under (its file is ``<name>.skops``).
        type: its class name.
        classes: its ``classes_`` when saved (empty for a detector).
        n_learned: frames it had learned.
    """

    name: str
    type: str
    classes: tuple[str, ...]
    n_learned: int


@dataclass(frozen=True)
class ModelManifest:
    """What ``save_models`` wrote.

    Attributes:
        feature_names: the feature columns the models were trained on, if given.
        models: one entry per model, in the order saved.
        wirelearn_version: the version that wrote them.
    """

    feature_names: tuple[str, ...] | None
    models: tuple[ManifestEntry, ...]
    wirelearn_version: str


def save_models(
    directory: str | os.PathLike[str],
    models: Mapping[str, Model],
    *,
    feature_names: Sequence[str] | None = None,
) -> ModelManifest:
    """Save several models as ``<name>.skops`` files plus a JSON manifest.

    Args:
        directory: created if missing.
        models: name -> model; names are file stems (letters, digits, ``_.-``).
        feature_names: the feature columns the models were trained on.

    Returns:
        The manifest written to ``directory/manifest.json``.

    Raises:
        ConfigError: a bad name, or ``feature_names`` that do not match a model.
        OutputError: the directory or a file cannot be written.
    """
    import wirelearn

    names = tuple(feature_names) if feature_names is not None else None
    entries = []
    for name, model in models.items():
        _check_name(name)
        n_features = model.n_features_in_
        if names is not None and n_features is not None and n_features != len(names):
            raise ConfigError(
                f"model {name!r} has {n_features} features but {len(names)} feature names were given"
            )
        classes = model.classes_ if isinstance(model, OnlineClassifier) else ()
        entries.append(ManifestEntry(name, type(model).__name__, classes, model.n_learned))
    manifest = ModelManifest(names, tuple(entries), wirelearn.__version__)
    root = Path(directory)
    try:
        # Not group/world-writable whatever the umask: nobody else may swap a model in.
        root.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create directory: {exc.strerror or exc}", path=str(root)
        ) from exc
    for name, model in models.items():
        save_model(model, root / f"{name}.skops")
    document = {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "wirelearn_version": manifest.wirelearn_version,
        "feature_names": None if names is None else list(names),
        "models": [
            {
                "name": e.name,
                "file": f"{e.name}.skops",
                "type": e.type,
                "classes": list(e.classes),
                "n_learned": e.n_learned,
            }
            for e in entries
        ],
    }
    path = root / MANIFEST_NAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(document, indent=2) + "\n")
    except OSError as exc:
        raise OutputError(f"cannot write manifest: {exc.strerror or exc}", path=str(path)) from exc
    return manifest


def read_manifest(directory: str | os.PathLike[str]) -> ModelManifest:
    """Read and check the manifest ``save_models`` wrote.

    Raises:
        ModelError: missing, not JSON, another format or a newer version, or malformed.
    """
    path = Path(directory) / MANIFEST_NAME
    where = str(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"cannot read manifest: {exc.strerror or exc}", path=where) from exc
    except ValueError as exc:
        raise ModelError(f"manifest is not valid JSON ({exc})", path=where) from exc
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        raise ModelError(f"not a {_FORMAT} manifest", path=where)
    version = document.get("format_version")
    if not isinstance(version, int) or version > _FORMAT_VERSION:
        raise ModelError(
            f"manifest format_version {version!r} is not supported (up to {_FORMAT_VERSION})",
            path=where,
        )
    try:
        features = document["feature_names"]
        entries = tuple(
            ManifestEntry(
                name=_check_name(str(m["name"]), where),
                type=str(m["type"]),
                classes=tuple(str(c) for c in m["classes"]),
                n_learned=int(m["n_learned"]),
            )
            for m in document["models"]
        )
        return ModelManifest(
            feature_names=None if features is None else tuple(str(f) for f in features),
            models=entries,
            wirelearn_version=str(document.get("wirelearn_version", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"malformed manifest ({type(exc).__name__}: {exc})", path=where) from exc


def load_models(
    directory: str | os.PathLike[str], *, feature_names: Sequence[str] | None = None
) -> dict[str, Model]:
    """Load every model listed in ``directory/manifest.json``.

    Args:
        directory: what ``save_models`` wrote.
        feature_names: this run's feature columns; if given, they must equal the
            saved ones.

    Returns:
        name -> model, in the manifest's order.

    Raises:
        ModelError: a bad manifest or model file, a model that does not match
            its manifest entry, or different feature columns.
    """
    manifest = read_manifest(directory)
    if (
        feature_names is not None
        and manifest.feature_names is not None
        and tuple(feature_names) != manifest.feature_names
    ):
        raise ModelError(
            f"the models were trained on features {list(manifest.feature_names)}, "
            f"this run has {list(feature_names)}",
            path=str(directory),
        )
    models: dict[str, Model] = {}
    for entry in manifest.models:
        # The file name comes from the checked name, never from the manifest's "file".
        path = Path(directory) / f"{entry.name}.skops"
        model = load_model(path)
        classes = model.classes_ if isinstance(model, OnlineClassifier) else ()
        if type(model).__name__ != entry.type or classes != entry.classes:
            raise ModelError(
                f"model does not match its manifest entry {entry.name!r}", path=str(path)
            )
        models[entry.name] = model
    return models


def _check_name(name: str, manifest: str | None = None) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        message = (
            f"model name {name!r} must be 1-64 letters, digits, '_', '.' or '-' "
            "and start with a letter or digit"
        )
        if manifest is not None:
            raise ModelError(message, path=manifest)
        raise ConfigError(message)
    return name
