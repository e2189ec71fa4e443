"""The Python API beside the CLI: read a capture into a DataFrame of feature columns."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, BinaryIO

from wirelearn.capture._reader import open_capture
from wirelearn.features._decode import decode
from wirelearn.features._schema import FeatureBatch
from wirelearn.pipeline import limit, where

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["read_frames"]


def read_frames(
    src: str | os.PathLike[str] | BinaryIO,
    *,
    count: int | None = None,
    bpf: str | None = None,
) -> pd.DataFrame:
    """Read a capture into a DataFrame with one row per frame and the fixed feature columns.

    Args:
        src: a pcap/pcapng path (gzip'd or not), ``"-"`` for stdin, or a binary file object.
        count: read at most this many frames (after ``bpf``).
        bpf: a libpcap filter expression; only matching frames are returned.

    Returns:
        A DataFrame whose columns are ``wirelearn.features.COLUMNS``, with nullable
        dtypes (``Int64``, ``string``) where a field can be missing.

    Raises:
        InputError: the capture cannot be read. Frames before a fault in the middle
            of a file are not returned in that case; use ``open_capture`` to keep them.

    Example:
        >>> df = read_frames("fixtures/scenarios/mixed.pcap", count=3)  # doctest: +SKIP
        >>> list(df.columns)[:4]  # doctest: +SKIP
        ['frame', 'ts', 'linktype', 'cap_len']
    """
    with open_capture(src) as source:
        stream = iter(source)
        if bpf:
            from wirelearn.capture._bpf import BpfFilter

            stream = where(stream, BpfFilter(bpf).mask)
        if count is not None:
            stream = limit(stream, count=count)
        parts = [decode(b) for b in stream]
    return FeatureBatch.concat(parts).to_pandas()
