"""wirelearn: a packet-capture network analyzer for the terminal that learns from its traffic."""

from __future__ import annotations

from wirelearn import errors
from wirelearn.capture import FrameBatch, Interface, MemorySource, Source
from wirelearn.errors import WirelearnError

__version__ = "0.1.0"

__all__ = [
    "FrameBatch",
    "Interface",
    "MemorySource",
    "Source",
    "WirelearnError",
    "__version__",
    "errors",
]
