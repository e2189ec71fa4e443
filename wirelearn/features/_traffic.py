"""Bounded traffic-mix counters: top talkers and the protocol mix.

Updated once per batch with hash grouping and ``bincount``; tables are pruned
to their heaviest entries when they grow past a bound, so a scan of random
addresses cannot grow them without limit (the counts of the heavy hitters stay
exact unless an address was pruned and came back).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from wirelearn.features._names import ethertype_name, ip_proto_name
from wirelearn.features._schema import FeatureBatch
from wirelearn.features._stats import mix64

__all__ = ["TrafficCounter"]


def _first_seen_codes(keys: NDArray[np.uint64]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Group the rows of ``keys`` ``(n, w)``: a code per row, in order of first appearance.

    Returns the codes and, for each code, one row holding that key. A single
    column is grouped as it is; wider keys are hashed into one ``uint64`` and
    grouped by the hash, then checked against the keys themselves, falling
    back to exact (sorting) grouping if two keys ever share a hash.
    """
    n, w = keys.shape
    if w == 1:
        codes, _ = pd.factorize(keys[:, 0], sort=False)
    else:
        h = mix64(keys[:, 0])
        for j in range(1, w):
            h = mix64(h ^ keys[:, j])
        codes, _ = pd.factorize(h, sort=False)
    codes = codes.astype(np.intp, copy=False)
    rep = np.empty(int(codes.max()) + 1 if n else 0, dtype=np.intp)
    rep[codes] = np.arange(n, dtype=np.intp)  # any row of each group will do
    if w == 1 or np.array_equal(keys[rep[codes]], keys):
        return codes, rep
    # A hash collision: group exactly, then renumber groups by first appearance.
    rows = np.ascontiguousarray(keys).view(np.dtype((np.void, 8 * w))).reshape(-1)
    _, first, inv = np.unique(rows, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inv.reshape(-1)].astype(np.intp), first[order].astype(np.intp)


class _TopTable:
    """Frame and byte counts per key, pruned to ``keep`` entries past ``limit``.

    A key is a row of ``width`` ``uint64`` columns, most significant first.
    Entries are kept in insertion order, which breaks ties between equal
    counts: new keys of a batch are appended in key order, and pruning
    re-orders the survivors by count.
    """

    def __init__(self, limit: int, keep: int, width: int) -> None:
        self.limit = limit
        self.keep = keep
        self.keys = np.zeros((0, width), dtype=np.uint64)
        self.frames = np.zeros(0, dtype=np.int64)
        self.bytes = np.zeros(0, dtype=np.int64)
        self.pruned = 0

    def add(self, keys: NDArray[np.uint64], sizes: NDArray[np.int64]) -> None:
        """Count one frame of ``sizes[i]`` bytes for each key row ``keys[i]``."""
        if not len(keys):
            return
        t = len(self.frames)
        # Table keys first: they are distinct, so they get codes 0..t-1 and a
        # batch key with a code below t is one the table already holds.
        codes, rep = _first_seen_codes(np.concatenate([self.keys, keys]))
        batch = codes[t:]
        u = len(rep)
        frames = np.bincount(batch, minlength=u)
        nbytes = np.bincount(batch, weights=sizes, minlength=u).astype(np.int64)
        self.frames += frames[:t]
        self.bytes += nbytes[:t]
        if u > t:
            new_keys = keys[rep[t:] - t]
            order = np.lexsort(new_keys.T[::-1]) + t
            self.keys = np.concatenate([self.keys, keys[rep[order] - t]])
            self.frames = np.concatenate([self.frames, frames[order]])
            self.bytes = np.concatenate([self.bytes, nbytes[order]])
        if len(self.frames) > self.limit:
            top = self._ranked()[: self.keep]
            self.pruned += len(self.frames) - len(top)
            self.keys, self.frames, self.bytes = self.keys[top], self.frames[top], self.bytes[top]

    def _ranked(self) -> NDArray[np.intp]:
        """Entries by count, heaviest first; equal counts in insertion order."""
        order: NDArray[np.intp] = np.argsort(-self.frames, kind="stable")
        return order

    def top(self, n: int) -> tuple[NDArray[np.uint64], list[int], list[int]]:
        """Keys, frame counts and byte counts of the ``n`` heaviest entries."""
        idx = self._ranked()[:n]
        return self.keys[idx], self.frames[idx].tolist(), self.bytes[idx].tolist()


class TrafficCounter:
    """Counts frames and bytes per MAC, per IP, per ethertype and per IP protocol.

    Args:
        limit: entries a talker table may hold before it is pruned.
        keep: entries kept after pruning.
    """

    def __init__(self, limit: int = 20_000, keep: int = 2_000) -> None:
        self.macs = _TopTable(limit, keep, 1)
        # (version, address bytes 0-7, address bytes 8-15) as big-endian integers:
        # ordered as the 17 bytes they come from.
        self.ips = _TopTable(limit, keep, 3)
        self.ethertypes = np.zeros(0x10000, dtype=np.int64)
        self.ip_protos = np.zeros(256, dtype=np.int64)

    def update(self, fb: FeatureBatch) -> None:
        """Add a decoded batch."""
        if not len(fb):
            return
        size = fb.frame_len.astype(np.int64, copy=False)
        # A talker is counted once per frame as a source (what "talks" means).
        has_mac = fb.src_mac >= 0
        if has_mac.any():
            self.macs.add(fb.src_mac[has_mac].astype(np.uint64)[:, None], size[has_mac])
        has_ip = fb.ip_version > 0
        if has_ip.any():
            key = np.empty((int(has_ip.sum()), 3), dtype=np.uint64)
            key[:, 0] = fb.ip_version[has_ip]
            key[:, 1:] = np.ascontiguousarray(fb.ip_src[has_ip]).view(">u8")
            self.ips.add(key, size[has_ip])
        et = fb.ethertype[fb.ethertype >= 0]
        if len(et):
            self.ethertypes += np.bincount(et, minlength=0x10000)[:0x10000]
        pr = fb.ip_proto[fb.ip_proto >= 0].astype(np.int64)
        if len(pr):
            self.ip_protos += np.bincount(pr, minlength=256)[:256]

    def top_macs(self, n: int = 10) -> list[tuple[int, int, int]]:
        """``(mac, frames, bytes)`` of the heaviest source MACs."""
        keys, frames, nbytes = self.macs.top(n)
        return list(zip(keys[:, 0].tolist(), frames, nbytes, strict=True))

    def top_ips(self, n: int = 10) -> list[tuple[int, bytes, int, int]]:
        """``(ip_version, 16 address bytes, frames, bytes)`` of the heaviest source IPs."""
        keys, frames, nbytes = self.ips.top(n)
        addr = keys[:, 1:].astype(">u8").view(np.uint8).reshape(-1, 16)
        return [
            (int(keys[i, 0]), addr[i].tobytes(), frames[i], nbytes[i]) for i in range(len(keys))
        ]

    def ethertype_mix(self, n: int = 8) -> list[tuple[str, int]]:
        """``(name, frames)`` of the most frequent ethertypes (ties: lower ethertype first)."""
        return [(ethertype_name(i) or "?", c) for i, c in _top_counts(self.ethertypes, n)]

    def ip_proto_mix(self, n: int = 8) -> list[tuple[str, int]]:
        """``(name, frames)`` of the most frequent IP protocols (ties: lower number first)."""
        return [(ip_proto_name(i) or "?", c) for i, c in _top_counts(self.ip_protos, n)]


def _top_counts(counts: NDArray[np.int64], n: int) -> list[tuple[int, int]]:
    """``(index, count)`` of the ``n`` largest non-zero counts, ties by index.

    Only the non-zero entries are sorted: a few of the 65,536 ethertypes.
    """
    nz = np.flatnonzero(counts)
    order = nz[np.argsort(-counts[nz], kind="stable")][:n]
    return list(zip(order.tolist(), counts[order].tolist(), strict=True))
