"""Vectorized frame decoding into feature columns."""

from __future__ import annotations

from wirelearn.features._schema import (
    COLUMN_DTYPES,
    COLUMNS,
    STATUS_MALFORMED,
    STATUS_NAMES,
    STATUS_OK,
    STATUS_TRUNCATED,
    STATUS_UNDECODED,
    FeatureBatch,
)

__all__ = [
    "COLUMNS",
    "COLUMN_DTYPES",
    "STATUS_MALFORMED",
    "STATUS_NAMES",
    "STATUS_OK",
    "STATUS_TRUNCATED",
    "STATUS_UNDECODED",
    "FeatureBatch",
]
