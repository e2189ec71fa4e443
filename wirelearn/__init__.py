"""wirelearn: a packet-capture network analyzer for the terminal that learns from its traffic.

The public surface is re-exported here; the subpackages are ``wirelearn.capture``
(sources, readers, writers, BPF), ``wirelearn.features`` (vectorized decoding
and learning features) and ``wirelearn.models`` (online learners, labels and
the test-then-train evaluator). Errors are in ``wirelearn.errors``.

The re-exports are loaded on first use (PEP 562), so that ``import wirelearn.cli``
stays light: the command line decides how numpy, pandas and friends are loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from wirelearn import errors
from wirelearn.errors import WirelearnError

if TYPE_CHECKING:
    from wirelearn._api import read_frames
    from wirelearn.capture import FrameBatch, Interface, MemorySource, Source, open_capture
    from wirelearn.features import COLUMNS, FeatureBatch, decode

__version__ = "0.1.0"

__all__ = [
    "COLUMNS",
    "FeatureBatch",
    "FrameBatch",
    "Interface",
    "MemorySource",
    "Source",
    "WirelearnError",
    "__version__",
    "decode",
    "errors",
    "open_capture",
    "read_frames",
]

_LAZY = {
    "read_frames": "wirelearn._api",
    "FrameBatch": "wirelearn.capture",
    "Interface": "wirelearn.capture",
    "MemorySource": "wirelearn.capture",
    "Source": "wirelearn.capture",
    "open_capture": "wirelearn.capture",
    "COLUMNS": "wirelearn.features",
    "FeatureBatch": "wirelearn.features",
    "decode": "wirelearn.features",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wirelearn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
