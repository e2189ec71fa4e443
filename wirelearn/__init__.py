"""wirelearn: a packet-capture network analyzer for the terminal that learns from its traffic.

The public surface is re-exported here; the subpackages are ``wirelearn.capture``
(sources, readers, writers, BPF), ``wirelearn.features`` (vectorized decoding
and learning features) and ``wirelearn.models`` (online learners, labels and
the test-then-train evaluator). Errors are in ``wirelearn.errors``.
"""

from __future__ import annotations

from wirelearn import errors
from wirelearn._api import read_frames
from wirelearn.capture import FrameBatch, Interface, MemorySource, Source, open_capture
from wirelearn.errors import WirelearnError
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
