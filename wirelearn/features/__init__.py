"""Vectorized frame decoding into feature columns."""

from __future__ import annotations

from wirelearn.features._decode import DECODED_LINKTYPES, decode
from wirelearn.features._mac import MacEncoder, mac_features, vendor_names
from wirelearn.features._pipeline import AVAILABLE_FEATURES, FeaturePipeline, FeatureSpec
from wirelearn.features._scale import OnlineScaler
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
from wirelearn.features._stats import DEFAULT_LAMBDAS, DampedStats, KeyTable, TrafficStats
from wirelearn.features._text import ip_to_text, mac_to_text

__all__ = [
    "AVAILABLE_FEATURES",
    "COLUMNS",
    "COLUMN_DTYPES",
    "DECODED_LINKTYPES",
    "DEFAULT_LAMBDAS",
    "STATUS_MALFORMED",
    "STATUS_NAMES",
    "STATUS_OK",
    "STATUS_TRUNCATED",
    "STATUS_UNDECODED",
    "DampedStats",
    "FeatureBatch",
    "FeaturePipeline",
    "FeatureSpec",
    "KeyTable",
    "MacEncoder",
    "OnlineScaler",
    "TrafficStats",
    "decode",
    "ip_to_text",
    "mac_features",
    "mac_to_text",
    "vendor_names",
]
