"""MAC addresses: first-seen display codes, model-facing features, vendor names.

Three views of the same ``int64`` column (48-bit addresses, ``-1`` for null):

* ``MacEncoder`` gives each address a small integer in order of first
  appearance, for the dashboard ("host 3 talks to host 7"). The codes are
  arbitrary, so models never see them.
* ``mac_features`` gives models something meaningful: a hash of the vendor
  part (OUI) into ``[0, 1)`` plus the address bits that carry meaning
  (group/multicast, broadcast, locally administered).
* ``vendor_names`` looks the OUI up in scapy's copy of the Wireshark
  manufacturer database, for display.
"""

from __future__ import annotations

import functools
from typing import Final

import numpy as np
from numpy.typing import NDArray

from wirelearn.errors import ConfigError
from wirelearn.features._stats import KeyTable, mix64

__all__ = ["MAC_FEATURES", "MacEncoder", "mac_features", "vendor_names"]

_I64 = NDArray[np.int64]
_F64 = NDArray[np.float64]

#: The names ``mac_features`` returns, in order.
MAC_FEATURES: Final[tuple[str, ...]] = ("oui", "multicast", "broadcast", "local")

_BROADCAST: Final = 0xFFFFFFFFFFFF
_GROUP_BIT: Final = 1 << 40  # I/G bit: least significant bit of the first octet
_LOCAL_BIT: Final = 1 << 41  # U/L bit: second least significant bit of the first octet


class MacEncoder:
    """Online first-seen integer codes for MAC addresses, bounded in memory.

    An address never seen before gets the next code (0, 1, 2, ...); ``-1``
    (null) stays ``-1``. Encoding never raises. Beyond ``max_entries`` the least
    recently seen address is forgotten (counted in ``evictions``); if it comes
    back it gets a new code. Work per batch is ``numpy.unique``-like grouping
    plus vectorized table lookups, never a Python loop over frames.

    Args:
        max_entries: the most addresses remembered.

    >>> enc = MacEncoder()
    >>> enc.encode(np.array([0xAA, -1, 0xBB, 0xAA])).tolist()
    [0, -1, 1, 0]
    """

    def __init__(self, max_entries: int = 65536) -> None:
        if int(max_entries) < 1:
            raise ConfigError(f"max_entries must be at least 1, not {max_entries}")
        self.max_entries = int(max_entries)
        self._table = KeyTable(1, self.max_entries)
        self._next_code = 0
        self._seen = 0  # frames encoded so far: the recency clock

    @property
    def evictions(self) -> int:
        """Addresses forgotten so far to stay within ``max_entries``."""
        return self._table.evictions

    def __len__(self) -> int:
        return len(self._table)

    def encode(self, macs: NDArray[np.integer]) -> _I64:
        """The code of each address (``int64[n]``), assigning codes to new ones in order."""
        macs = np.asarray(macs, dtype=np.int64)
        out = np.full(len(macs), -1, dtype=np.int64)
        rows = np.flatnonzero(macs >= 0)
        if len(rows) == 0:
            return out
        uniq, first, inverse = np.unique(macs[rows], return_index=True, return_inverse=True)
        # Recency: the position of each address's last occurrence in the stream so far.
        last = np.zeros(len(uniq), dtype=np.int64)
        np.maximum.at(last, inverse, rows)
        last += self._seen
        self._seen += len(macs)
        keys = uniq.astype(np.uint64)
        slots = self._table.lookup(keys)
        codes = np.zeros((len(uniq), 1), dtype=np.float64)
        known = slots >= 0
        codes[known, 0] = self._table.values[slots[known], 0]
        # New addresses are numbered in order of first appearance in the batch.
        new = np.flatnonzero(~known)
        new = new[np.argsort(first[new], kind="stable")]
        codes[new, 0] = self._next_code + np.arange(len(new))
        self._next_code += len(new)
        self._table.store(keys, slots, last, codes)
        out[rows] = codes[inverse, 0].astype(np.int64)
        return out


def mac_features(macs: NDArray[np.integer], *, seed: int = 0) -> dict[str, _F64]:
    """Model-facing features of each address, NaN where the address is null.

    Returns:
        ``oui``: the 24-bit vendor part hashed (with ``seed``) into ``[0, 1)``, so
        that one vendor is one stable value without implying an order between
        vendors; ``multicast`` (group bit), ``broadcast`` (all ones) and
        ``local`` (locally administered bit) as 0.0/1.0.

    >>> f = mac_features(np.array([0xFFFFFFFFFFFF, 0x01005E000001, 0x00000C123456, -1]))
    >>> f["broadcast"].tolist(), f["multicast"].tolist()[:3], bool(np.isnan(f["oui"][3]))
    ([1.0, 0.0, 0.0, nan], [1.0, 1.0, 0.0], True)
    """
    m = np.asarray(macs, dtype=np.int64)
    null = m < 0
    oui = (m >> 24).astype(np.uint64) ^ np.uint64(seed & 0xFFFFFFFFFFFFFFFF)
    # Top 53 bits of a 64-bit hash: uniform in [0, 1) with full float64 resolution.
    h = (mix64(oui) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    out = {
        "oui": h,
        "multicast": ((m & _GROUP_BIT) != 0).astype(np.float64),
        "broadcast": (m == _BROADCAST).astype(np.float64),
        "local": ((m & _LOCAL_BIT) != 0).astype(np.float64),
    }
    for v in out.values():
        v[null] = np.nan
    return out


@functools.lru_cache(maxsize=4096)
def _vendor_of_oui(oui: int, short: bool) -> str | None:
    """The manufacturer of one 24-bit OUI, or None (memoized: the lookup is a pure function)."""
    from scapy.config import conf  # scapy is slow to import; only the dashboard needs vendors

    db = conf.manufdb
    if db is None:
        return None
    key = f"{oui >> 16 & 0xFF:02X}:{oui >> 8 & 0xFF:02X}:{oui & 0xFF:02X}"
    entry = db.d.get(key)
    if not entry:
        return None
    name = entry[0] if short else entry[1]
    return str(name) if name else None


def vendor_names(macs: NDArray[np.integer], *, short: bool = False) -> NDArray[np.object_]:
    """The manufacturer of each address from its OUI, None when unknown or null.

    Looks up each distinct OUI once (and memoizes across calls) in scapy's
    manufacturer database (``scapy.config.conf.manufdb``). Locally administered
    and group addresses have no registered vendor, so they give None.

    Args:
        macs: 48-bit addresses, ``-1`` for null.
        short: the short name ("Cisco") instead of the full one ("Cisco Systems, Inc").
    """
    m = np.asarray(macs, dtype=np.int64)
    out = np.full(len(m), None, dtype=object)
    registered = (m >= 0) & ((m & (_GROUP_BIT | _LOCAL_BIT)) == 0)
    rows = np.flatnonzero(registered)
    if len(rows) == 0:
        return out
    ouis, inverse = np.unique(m[rows] >> 24, return_inverse=True)
    names = np.empty(len(ouis), dtype=object)
    names[:] = [_vendor_of_oui(int(o), short) for o in ouis]
    out[rows] = names[inverse]
    return out
