"""The fixed feature columns, their types, and the ``FeatureBatch`` that holds them.

The column names and meanings are a contract: ``--json``, ``--csv``,
``read_frames()``, Parquet and the Spark engine all use them.

Inside a ``FeatureBatch`` every column is a plain numpy array. Integer columns
that can be null use ``-1`` as the null sentinel (every real value is
non-negative), ``ip_version`` included; MAC addresses are 48-bit integers in
``int64`` with ``-1`` for null; IP addresses are ``uint8[n, 16]`` (IPv4 in the
first 4 bytes) and are valid where ``ip_src_valid`` / ``ip_dst_valid`` say so.
Those two masks matter only for frames whose IP header is cut short or
impossible (the version is known but an address is not); when a batch is built
without them they default to ``ip_version`` being 4 or 6, so ``ip_version > 0``
stays a good test for "has IP addresses" on well-formed traffic.

``to_pandas()`` and ``to_records()`` turn sentinels into nulls and addresses
into text.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from numpy.typing import NDArray

from wirelearn.features._text import ip_to_text, mac_to_text

if TYPE_CHECKING:
    import pandas as pd

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


#: Columns that are nullable integers, with ``-1`` for null inside the batch.
_NULLABLE_INT: Final = tuple(c for c, t in COLUMN_DTYPES.items() if t == "Int64")


def _no_mask() -> NDArray[np.bool_]:
    return np.zeros(0, dtype=np.bool_)


@dataclass(frozen=True, eq=False)
class FeatureBatch:
    """The decoded columns of one ``FrameBatch``, one numpy array per column.

    See the module docstring for the null conventions. ``status`` holds one of
    the ``STATUS_*`` codes per frame. ``ip_src_valid`` and ``ip_dst_valid`` may
    be omitted; they are then derived from ``ip_version``.
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
    ip_src_valid: NDArray[np.bool_] = field(default_factory=_no_mask)
    ip_dst_valid: NDArray[np.bool_] = field(default_factory=_no_mask)

    def __post_init__(self) -> None:
        n = len(self.frame)
        has_ip = (self.ip_version == 4) | (self.ip_version == 6)
        for name in ("ip_src_valid", "ip_dst_valid"):
            if n and not len(getattr(self, name)):
                # Left out: derive it once here (the dataclass is frozen).
                object.__setattr__(self, name, has_ip.copy())
        for f in fields(self):
            if len(getattr(self, f.name)) != n:
                raise ValueError(
                    f"FeatureBatch.{f.name} has {len(getattr(self, f.name))} rows, not {n}"
                )

    def __len__(self) -> int:
        return len(self.frame)

    @classmethod
    def empty(cls) -> FeatureBatch:
        """A batch of no frames, with every column's dtype."""
        z64 = np.zeros(0, dtype=np.int64)
        z32 = np.zeros(0, dtype=np.int32)
        z16 = np.zeros(0, dtype=np.int16)
        return cls(
            frame=z64,
            ts_ns=z64,
            linktype=z64,
            cap_len=z64,
            frame_len=z64,
            dst_mac=z64,
            src_mac=z64,
            ethertype=z32,
            vlan=z32,
            payload_len=z32,
            ip_version=np.zeros(0, dtype=np.int8),
            ip_src=np.zeros((0, 16), dtype=np.uint8),
            ip_dst=np.zeros((0, 16), dtype=np.uint8),
            ip_proto=z16,
            ttl=z16,
            sport=z32,
            dport=z32,
            tcp_flags=z32,
            status=np.zeros(0, dtype=np.uint8),
        )

    @property
    def ts(self) -> NDArray[np.float64]:
        """Timestamps as float epoch seconds (rounded once, not via a float of the ns count)."""
        seconds, nanos = np.divmod(self.ts_ns, 1_000_000_000)
        ts: NDArray[np.float64] = seconds + nanos / 1e9
        return ts

    def take(self, index: NDArray[np.bool_] | NDArray[np.integer] | slice) -> FeatureBatch:
        """The selected rows, as a new batch (views of these columns for a ``slice``)."""
        return FeatureBatch(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def slice(self, start: int, stop: int) -> FeatureBatch:
        """Rows ``start:stop``, as views of this batch's columns."""
        return self.take(slice(start, stop))

    @classmethod
    def concat(cls, batches: list[FeatureBatch]) -> FeatureBatch:
        """Concatenate batches row-wise (no batches give an empty batch)."""
        if not batches:
            return cls.empty()
        return cls(
            **{f.name: np.concatenate([getattr(b, f.name) for b in batches]) for f in fields(cls)}
        )

    # --- output -------------------------------------------------------------------------------

    def text_columns(self) -> dict[str, NDArray[Any]]:
        """The public columns in ``COLUMNS`` order, nulls as ``None`` and addresses as text.

        Integer columns without nulls stay ``int64``/``float64`` arrays; nullable
        ones and text are object arrays. This is the common ground of
        ``to_pandas()``, ``to_records()`` and CSV writers.
        """
        out: dict[str, NDArray[Any]] = {}
        for name in COLUMNS:
            if name == "ts":
                out[name] = self.ts
            elif name in ("dst_mac", "src_mac"):
                out[name] = mac_to_text(getattr(self, name))
            elif name == "ip_src":
                out[name] = ip_to_text(self.ip_version, self.ip_src, self.ip_src_valid)
            elif name == "ip_dst":
                out[name] = ip_to_text(self.ip_version, self.ip_dst, self.ip_dst_valid)
            elif name in _NULLABLE_INT:
                values = getattr(self, name)
                column = values.astype(np.int64).astype(object)
                column[values < 0] = None
                out[name] = column
            else:
                out[name] = getattr(self, name).astype(np.int64)
        return out

    def to_pandas(self) -> pd.DataFrame:
        """The public columns as a DataFrame with ``COLUMN_DTYPES``, sentinels as ``<NA>``.

        Built column by column (no per-row objects except the address strings).
        """
        import pandas as pd

        data: dict[str, Any] = {}
        for name, dtype in COLUMN_DTYPES.items():
            if name == "ts":
                data[name] = self.ts
            elif dtype == "Int64":
                values = getattr(self, name)
                data[name] = pd.arrays.IntegerArray(values.astype(np.int64), values < 0)
            elif dtype == "string":
                if name in ("dst_mac", "src_mac"):
                    text = mac_to_text(getattr(self, name))
                else:
                    valid = self.ip_src_valid if name == "ip_src" else self.ip_dst_valid
                    text = ip_to_text(self.ip_version, getattr(self, name), valid)
                data[name] = pd.array(text, dtype="string")
            else:
                data[name] = getattr(self, name).astype(dtype)
        frame: pd.DataFrame = pd.DataFrame(data, columns=list(COLUMNS))
        return frame

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per frame with exactly the ``COLUMNS`` keys, nulls as ``None``."""
        columns = self.text_columns()
        lists = [columns[name].tolist() for name in COLUMNS]
        return [dict(zip(COLUMNS, row, strict=True)) for row in zip(*lists, strict=True)]
