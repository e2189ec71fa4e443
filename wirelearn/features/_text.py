"""Text forms of addresses, vectorized over columns.

These run only where a person reads the result (``--json``, ``--csv``, the
recent-frames table, ``to_pandas()``), but they still work column-wise: MAC
addresses through a hex lookup table, IP addresses once per distinct value.
"""

from __future__ import annotations

import socket
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["ip_to_text", "mac_to_text"]

_HEX: Final = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_MAC_CHARS: Final = 17  # "aa:bb:cc:dd:ee:ff"


def mac_to_text(mac: ArrayLike) -> NDArray[np.object_]:
    """MAC addresses held as 48-bit integers, as lowercase colon-separated text.

    Args:
        mac: integers (``int64``); ``-1`` (any negative) means null.

    Returns:
        An object array of ``str``, with ``None`` where the input is null.

    >>> mac_to_text([0x0200_0000_00FF, -1]).tolist()
    ['02:00:00:00:00:ff', None]
    """
    values = np.asarray(mac, dtype=np.int64).reshape(-1)
    n = len(values)
    null = values < 0
    raw = np.where(null, 0, values).astype(">u8").view(np.uint8).reshape(n, 8)[:, 2:]
    chars = np.full((n, _MAC_CHARS), ord(":"), dtype=np.uint8)
    chars[:, 0::3] = _HEX[raw >> 4]
    chars[:, 1::3] = _HEX[raw & 0x0F]
    text = chars.view(f"S{_MAC_CHARS}").reshape(n).astype(f"U{_MAC_CHARS}").astype(object)
    text[null] = None
    return text


def ip_to_text(
    ip_version: ArrayLike, ip_bytes: ArrayLike, valid: ArrayLike | None = None
) -> NDArray[np.object_]:
    """IP addresses as text: dotted quads, and IPv6 in RFC 5952 form (as tshark prints it).

    Args:
        ip_version: 4 or 6 per row; anything else is null.
        ip_bytes: ``uint8[n, 16]`` addresses, IPv4 in the first 4 bytes.
        valid: optional per-row mask of addresses that were decoded (see
            ``FeatureBatch.ip_src_valid``); rows outside it are null.

    Returns:
        An object array of ``str``, with ``None`` where null.

    >>> import numpy as np
    >>> a = np.zeros((3, 16), dtype=np.uint8)
    >>> a[0, :4] = [192, 0, 2, 1]
    >>> a[1, :2], a[1, 15] = [0x20, 0x01], 1
    >>> ip_to_text([4, 6, -1], a).tolist()
    ['192.0.2.1', '2001::1', None]
    """
    version = np.asarray(ip_version).reshape(-1)
    addr = np.asarray(ip_bytes, dtype=np.uint8).reshape(len(version), 16)
    out = np.full(len(version), None, dtype=object)
    ok = np.ones(len(version), dtype=np.bool_) if valid is None else np.asarray(valid, bool)
    for ver, family, width in ((4, socket.AF_INET, 4), (6, socket.AF_INET6, 16)):
        rows = np.flatnonzero((version == ver) & ok)
        if not len(rows):
            continue
        # Format each distinct address once: traffic repeats a few hosts many times.
        raw = np.ascontiguousarray(addr[rows, :width])
        first, inverse = _distinct(raw.view(">u4" if width == 4 else ">u8"))
        texts = np.array(
            [socket.inet_ntop(family, raw[i].tobytes()) for i in first.tolist()], dtype=object
        )
        out[rows] = texts[inverse]
    return out


def _distinct(words: NDArray[np.unsignedinteger]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Distinct rows of an ``(m, w)`` integer array: one row index per distinct value, and
    for each row the number of its distinct value (integer keys sort far faster than bytes)."""
    m = len(words)
    order = np.lexsort(words.T[::-1]) if words.shape[1] > 1 else np.argsort(words[:, 0])
    ordered = words[order]
    new = np.ones(m, dtype=np.bool_)
    new[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    inverse = np.empty(m, dtype=np.intp)
    inverse[order] = np.cumsum(new) - 1
    return order[new], inverse
