"""The fixed feature columns, their types, and the ``FeatureBatch`` that holds them.

The column names and meanings are a contract: ``--json``, ``--csv``,
``read_frames()``, Parquet and the Spark engine all use them.

Inside a ``FeatureBatch`` every column is a plain numpy array. Integer columns
that can be null use ``-1`` as the null sentinel (every real value is
non-negative); MAC addresses are 48-bit integers in ``int64`` with ``-1`` for
null; IP addresses are ``uint8[n, 16]`` (IPv4 in the first 4 bytes) and are null
where ``ip_version == 0``. ``to_pandas()`` turns sentinels into pandas nulls.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final

import numpy as np
from numpy.typing import NDArray

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

#: Public columns, in output order, with their pandas dtypes.
COLUMN_DTYPES: Final[dict[str, str]] = {
    "frame": "int64",
    "ts": "float64",
    "linktype": "int64",
    "cap_len": "int64",
    "frame_len": "int64",
    "dst_mac": "string",
    "src_mac": "string",
    "ethertype": "Int64",
    "vlan": "Int64",
    "payload_len": "Int64",
    "ip_version": "Int64",
    "ip_src": "string",
    "ip_dst": "string",
    "ip_proto": "Int64",
    "ttl": "Int64",
    "sport": "Int64",
    "dport": "Int64",
    "tcp_flags": "Int64",
}

COLUMNS: Final[tuple[str, ...]] = tuple(COLUMN_DTYPES)

#: ``FeatureBatch.status`` codes. "Truncated" and "malformed" are kept apart.
STATUS_OK: Final = 0
#: A header runs past the captured bytes: what fits is filled, the rest is null.
STATUS_TRUNCATED: Final = 1
#: A header is present but impossible (bad IP version, IHL < 5, TCP offset < 5, ...).
STATUS_MALFORMED: Final = 2
#: The link type is not one wirelearn decodes; link-independent columns only.
STATUS_UNDECODED: Final = 3

STATUS_NAMES: Final[dict[int, str]] = {
    STATUS_OK: "ok",
    STATUS_TRUNCATED: "truncated",
    STATUS_MALFORMED: "malformed",
    STATUS_UNDECODED: "undecoded",
}

_I64 = NDArray[np.int64]
_I32 = NDArray[np.int32]


@dataclass(frozen=True, eq=False)
class FeatureBatch:
    """The decoded columns of one ``FrameBatch``, one numpy array per column.

    See the module docstring for the null conventions. ``status`` holds one of
    the ``STATUS_*`` codes per frame.
    """

    frame: _I64
    ts_ns: _I64
    linktype: _I64
    cap_len: _I64
    frame_len: _I64
    dst_mac: _I64
    src_mac: _I64
    ethertype: _I32
    vlan: _I32
    payload_len: _I32
    ip_version: NDArray[np.int8]
    ip_src: NDArray[np.uint8]
    ip_dst: NDArray[np.uint8]
    ip_proto: NDArray[np.int16]
    ttl: NDArray[np.int16]
    sport: _I32
    dport: _I32
    tcp_flags: _I32
    status: NDArray[np.uint8]

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def ts(self) -> NDArray[np.float64]:
        """Timestamps as float epoch seconds."""
        return self.ts_ns / 1e9

    def take(self, index: NDArray[np.bool_] | NDArray[np.integer]) -> FeatureBatch:
        """The selected rows, as a new batch."""
        return FeatureBatch(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @classmethod
    def concat(cls, batches: list[FeatureBatch]) -> FeatureBatch:
        """Concatenate batches row-wise."""
        return cls(
            **{f.name: np.concatenate([getattr(b, f.name) for b in batches]) for f in fields(cls)}
        )
